// What a message from a peer may hold. A peer is authenticated but may be faulty (a bug, a corrupted disk, an old
// or hostile build): everything it sends is checked here before the core acts on it, and a message that could not
// have been sent by a correct node is refused whole. The codec refuses such a message as undecodable (the runtime
// counts and logs it); `RaftNode.step` checks again, with what only the node knows, and drops it.

extension Message {
    /// The highest term a message may carry: half the range, so that a node that adopted it can still campaign
    /// (`term + 1`) for longer than any cluster will live. A term above it is refused, never adopted.
    public static let termMax = UInt64.max / 2
    /// The highest log index a message may carry (the same bound; an index is also an array offset, which fits
    /// in an `Int` below it).
    public static let indexMax = UInt64.max / 2
    /// How far above its own term a node follows a message: a correct peer gets there one election at a time.
    /// A jump larger than this is a faulty peer, which would otherwise drag every node's term toward `termMax`.
    public static let termLeadMax: UInt64 = 1 << 32

    /// Why this message could not have come from a correct peer (its fields alone say so), or nil when it is well
    /// formed: node ids as a configuration allows them, terms and indexes within their bounds, and appended entries
    /// contiguous right after `prevLogIndex` with terms that never go down and never exceed the message's term.
    public var malformation: String? {
        guard from.isWellFormed else { return "sender id" }
        guard to.isWellFormed else { return "receiver id" }
        guard from != to else { return "sender is the receiver" }
        guard term <= Self.termMax else { return "term beyond the maximum" }
        switch self {
        case .preVoteRequest(let m), .voteRequest(let m):
            guard m.term > 0, m.lastLogTerm <= m.term else { return "last log term above the campaign term" }
            guard m.lastLogIndex <= Self.indexMax else { return "last log index beyond the maximum" }
        case .preVoteResponse, .voteResponse, .heartbeatResponse, .timeoutNow:
            break
        case .appendEntries(let m):
            return Self.malformation(of: m)
        case .appendResponse(let m):
            guard m.matchIndex <= Self.indexMax, m.rejectedIndex <= Self.indexMax, m.hintIndex <= Self.indexMax
            else { return "append response index beyond the maximum" }
            guard m.hintTerm <= m.term else { return "hint term above the message term" }
        case .heartbeat(let m):
            guard m.commitIndex <= Self.indexMax else { return "commit index beyond the maximum" }
        case .proposalForward(let m):
            guard m.proposals.allSatisfy({ $0.id.origin.isWellFormed }) else { return "proposal origin id" }
        case .proposalForwardResponse(let m):
            for (id, outcome) in m.outcomes {
                guard id.origin.isWellFormed else { return "proposal origin id" }
                if case .accepted(let index, let term) = outcome, index > Self.indexMax || term > Self.termMax {
                    return "accepted proposal position beyond the maximum"
                }
            }
        case .readIndexRequest(let m):
            guard m.reads.allSatisfy({ $0.origin.isWellFormed }) else { return "read origin id" }
        case .readIndexResponse(let m):
            for (id, outcome) in m.outcomes {
                guard id.origin.isWellFormed else { return "read origin id" }
                if case .ready(let index) = outcome, index > Self.indexMax { return "read index beyond the maximum" }
            }
        }
        return nil
    }

    private static func malformation(of m: AppendEntries) -> String? {
        guard m.term > 0, m.prevLogTerm <= m.term else { return "previous log term above the message term" }
        guard m.prevLogIndex <= indexMax, m.leaderCommit <= indexMax else { return "index beyond the maximum" }
        guard UInt64(m.entries.count) <= indexMax - m.prevLogIndex else { return "entry index beyond the maximum" }
        var previousTerm = m.prevLogTerm
        for (k, entry) in m.entries.enumerated() {
            guard entry.index == m.prevLogIndex + 1 + UInt64(k) else {
                return "entry indexes not contiguous after the previous log index"
            }
            guard entry.term > 0, entry.term >= previousTerm, entry.term <= m.term else {
                return "entry terms out of order or above the message term"
            }
            if let proposal = entry.proposal, !proposal.origin.isWellFormed { return "entry proposal origin id" }
            if entry.kind == .configuration && entry.configuration == nil { return "undecodable configuration entry" }
            previousTerm = entry.term
        }
        return nil
    }
}

extension NodeID {
    /// The longest id a peer may send (Linux host names, the default ids, are at most 64 bytes).
    public static let lengthMax = 64

    /// Whether the id is one a configuration allows: 1...64 ASCII letters, digits, ".", "_" or "-", starting with
    /// a letter or digit. Ids reach headers, JSON, metrics labels and log lines, so nothing else is accepted.
    public var isWellFormed: Bool {
        let bytes = rawValue.utf8
        guard (1...Self.lengthMax).contains(bytes.count), let first = bytes.first, Self.isLetterOrDigit(first) else {
            return false
        }
        return bytes.allSatisfy {
            Self.isLetterOrDigit($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_")
                || $0 == UInt8(ascii: "-")
        }
    }

    private static func isLetterOrDigit(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return false
        }
    }
}

/// Why the core refused a message without acting on it (`RaftNode.step`).
public struct MessageRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
