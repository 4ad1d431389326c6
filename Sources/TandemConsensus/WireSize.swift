// The exact encoded size of consensus messages in the peer protocol's binary layout (documented at the top of
// TandemTransport/ConsensusCodec.swift). It lives in the core, which has no dependency on the transport, so that
// batch sizing and flow control count the bytes that really cross the wire: an estimate that is short by the
// length of a node id per entry builds appends larger than the frame limit, which are dropped on every retry.
// TandemTransportTests holds these figures equal to the codec's output for every message shape.

/// Sizes of the fields of the consensus wire layout, in bytes.
public enum WireSize {
    /// A string: u16 length + UTF-8 bytes.
    public static func string(_ value: String) -> Int { 2 + value.utf8.count }

    /// A node id on the wire.
    public static func nodeID(_ id: NodeID) -> Int { string(id.rawValue) }

    /// The part every message starts with: from, to, term u64.
    public static func common(from: NodeID, to: NodeID) -> Int { nodeID(from) + nodeID(to) + 8 }

    /// A proposal or read id: origin string + sequence u64.
    public static func proposalID(_ id: ProposalID) -> Int { nodeID(id.origin) + 8 }
    public static func readID(_ id: ReadID) -> Int { nodeID(id.origin) + 8 }

    /// An entry's fixed fields: term u64, index u64, kind u8, timeMs i64, hasProposal u8, data length u32.
    public static let entryFixedBytes = 8 + 8 + 1 + 8 + 1 + 4

    /// An append without its entries: common, prevLogIndex u64, prevLogTerm u64, leaderCommit u64, count u32.
    public static func appendEntriesFixed(from: NodeID, to: NodeID) -> Int {
        common(from: from, to: to) + 8 + 8 + 8 + 4
    }

    /// A forward without its proposals: common, count u32.
    public static func proposalForwardFixed(from: NodeID, to: NodeID) -> Int { common(from: from, to: to) + 4 }

    /// One forwarded proposal: id, data blob (u32 length + bytes).
    public static func forwardedProposal(_ proposal: ForwardedProposal) -> Int {
        proposalID(proposal.id) + 4 + proposal.data.count
    }
}

extension Entry {
    /// Exactly the bytes this entry takes inside an AppendEntries payload.
    public var encodedSizeBytes: Int {
        WireSize.entryFixedBytes + (proposal.map(WireSize.proposalID) ?? 0) + data.count
    }
}

extension AppendEntries {
    /// Exactly the bytes of this message's payload.
    public var encodedSizeBytes: Int {
        entries.reduce(WireSize.appendEntriesFixed(from: from, to: to)) { $0 + $1.encodedSizeBytes }
    }
}

extension Message {
    /// Exactly the bytes of this message's frame payload (the frame header is not included).
    public var encodedSizeBytes: Int {
        switch self {
        case .preVoteRequest(let m), .voteRequest(let m): return WireSize.common(from: m.from, to: m.to) + 8 + 8 + 1
        case .preVoteResponse(let m), .voteResponse(let m): return WireSize.common(from: m.from, to: m.to) + 1
        case .appendEntries(let m): return m.encodedSizeBytes
        case .appendResponse(let m): return WireSize.common(from: m.from, to: m.to) + 1 + 8 * 4
        case .heartbeat(let m): return WireSize.common(from: m.from, to: m.to) + 8 + 8
        case .heartbeatResponse(let m): return WireSize.common(from: m.from, to: m.to) + 8
        case .timeoutNow(let m): return WireSize.common(from: m.from, to: m.to)
        case .proposalForward(let m):
            return m.proposals.reduce(WireSize.proposalForwardFixed(from: m.from, to: m.to)) {
                $0 + WireSize.forwardedProposal($1)
            }
        case .proposalForwardResponse(let m):
            return m.outcomes.reduce(WireSize.common(from: m.from, to: m.to) + 4) { total, item in
                switch item.value {
                case .accepted: return total + WireSize.proposalID(item.key) + 1 + 8 + 8
                case .rejected: return total + WireSize.proposalID(item.key) + 1 + 1
                }
            }
        case .readIndexRequest(let m):
            return m.reads.reduce(WireSize.common(from: m.from, to: m.to) + 1 + 4) { $0 + WireSize.readID($1) }
        case .readIndexResponse(let m):
            return m.outcomes.reduce(WireSize.common(from: m.from, to: m.to) + 4) { total, item in
                switch item.value {
                case .ready: return total + WireSize.readID(item.key) + 1 + 8
                case .failed: return total + WireSize.readID(item.key) + 1 + 1
                }
            }
        }
    }
}

extension RaftConfig {
    /// The largest AppendEntries payload this node can build: a batch of several entries stays within
    /// `maxMessageBytes`, and a single entry, always allowed, carries at most `maxMessageBytes` of data plus its
    /// header and the ids. The transport's frame limit must be at least this on every node (appends go to every
    /// peer, and any member can be the proposal's origin), or catch-up appends are dropped: `validate(frameLimit:)`.
    public var largestAppendPayloadBytes: Int {
        let longest = peers.max { $0.rawValue.utf8.count < $1.rawValue.utf8.count } ?? id
        let single =
            WireSize.appendEntriesFixed(from: longest, to: longest) + WireSize.entryFixedBytes
            + WireSize.proposalID(ProposalID(origin: longest, sequence: 0)) + maxMessageBytes
        return max(single, maxMessageBytes)
    }

    /// Checks that frames of `maxFramePayloadBytes` carry every append and forward this node builds. A caller
    /// that configures the transport must call it: a limit below this drops catch-up appends on every retry.
    public func validate(frameLimit maxFramePayloadBytes: Int) {
        precondition(
            maxFramePayloadBytes >= largestAppendPayloadBytes,
            "the peer frame limit (\(maxFramePayloadBytes) bytes) is below the largest append "
                + "(\(largestAppendPayloadBytes) bytes): derive it from maxMessageBytes")
    }
}
