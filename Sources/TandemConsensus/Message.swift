// Messages between consensus nodes. Every case is plain data with public fields so that the transport can encode it.

/// A request for a vote or, with `Message.preVoteRequest`, for a promise to vote without raising anyone's term.
public struct VoteRequest: Equatable, Sendable {
    public var from: NodeID, to: NodeID
    /// The term the candidate campaigns for (its current term plus one for a pre-vote).
    public var term: UInt64
    public var lastLogIndex: UInt64, lastLogTerm: UInt64
    /// Set when the old leader asked for this election (TimeoutNow): voters skip their leader stickiness.
    public var leadershipTransfer: Bool
    public init(
        from: NodeID, to: NodeID, term: UInt64, lastLogIndex: UInt64, lastLogTerm: UInt64, leadershipTransfer: Bool
    ) {
        self.from = from
        self.to = to
        self.term = term
        self.lastLogIndex = lastLogIndex
        self.lastLogTerm = lastLogTerm
        self.leadershipTransfer = leadershipTransfer
    }
}

/// The answer to a (pre-)vote request. A grant carries the requested term; a refusal carries the voter's term.
public struct VoteResponse: Equatable, Sendable {
    public var from: NodeID, to: NodeID, term: UInt64
    public var granted: Bool
    public init(from: NodeID, to: NodeID, term: UInt64, granted: Bool) {
        self.from = from
        self.to = to
        self.term = term
        self.granted = granted
    }
}

/// Entries after `prevLogIndex`, accepted only if the receiver's entry at `prevLogIndex` has `prevLogTerm`.
public struct AppendEntries: Equatable, Sendable {
    public var from: NodeID, to: NodeID, term: UInt64
    public var prevLogIndex: UInt64, prevLogTerm: UInt64
    public var entries: [Entry]
    public var leaderCommit: UInt64
    public init(
        from: NodeID, to: NodeID, term: UInt64, prevLogIndex: UInt64, prevLogTerm: UInt64, entries: [Entry],
        leaderCommit: UInt64
    ) {
        self.from = from
        self.to = to
        self.term = term
        self.prevLogIndex = prevLogIndex
        self.prevLogTerm = prevLogTerm
        self.entries = entries
        self.leaderCommit = leaderCommit
    }
}

/// The answer to an append. On success `matchIndex` is the last index known to match the leader's log.
/// On refusal, `rejectedIndex` echoes the `prevLogIndex` refused, and the hint lets the leader skip a whole term:
/// the follower's log has no entry after `hintIndex` that could match, and its entry there has `hintTerm`.
public struct AppendResponse: Equatable, Sendable {
    public var from: NodeID, to: NodeID, term: UInt64
    public var success: Bool
    public var matchIndex: UInt64
    public var rejectedIndex: UInt64
    public var hintIndex: UInt64, hintTerm: UInt64
    public init(
        from: NodeID, to: NodeID, term: UInt64, success: Bool, matchIndex: UInt64, rejectedIndex: UInt64,
        hintIndex: UInt64, hintTerm: UInt64
    ) {
        self.from = from
        self.to = to
        self.term = term
        self.success = success
        self.matchIndex = matchIndex
        self.rejectedIndex = rejectedIndex
        self.hintIndex = hintIndex
        self.hintTerm = hintTerm
    }
}

/// The leader's periodic liveness signal. `round` numbers the leader's confirmation rounds (ReadIndex and lease).
/// `commitIndex` is capped at what the receiver is known to hold.
public struct Heartbeat: Equatable, Sendable {
    public var from: NodeID, to: NodeID, term: UInt64
    public var commitIndex: UInt64
    public var round: UInt64
    public init(from: NodeID, to: NodeID, term: UInt64, commitIndex: UInt64, round: UInt64) {
        self.from = from
        self.to = to
        self.term = term
        self.commitIndex = commitIndex
        self.round = round
    }
}

/// Acknowledges a heartbeat round. Also sent with the receiver's higher term to a stale leader.
public struct HeartbeatResponse: Equatable, Sendable {
    public var from: NodeID, to: NodeID, term: UInt64
    public var round: UInt64
    public init(from: NodeID, to: NodeID, term: UInt64, round: UInt64) {
        self.from = from
        self.to = to
        self.term = term
        self.round = round
    }
}

/// The leader tells a caught-up follower to campaign at once (leadership transfer).
public struct TimeoutNow: Equatable, Sendable {
    public var from: NodeID, to: NodeID, term: UInt64
    public init(from: NodeID, to: NodeID, term: UInt64) {
        self.from = from
        self.to = to
        self.term = term
    }
}

/// One proposal a follower took from its client and passes to the leader.
public struct ForwardedProposal: Equatable, Sendable {
    public var id: ProposalID
    public var data: [UInt8]
    public init(id: ProposalID, data: [UInt8]) {
        self.id = id
        self.data = data
    }
}

/// Proposals forwarded by a follower. The term is informational: forwards never change anyone's term.
public struct ProposalForward: Equatable, Sendable {
    public var from: NodeID, to: NodeID, term: UInt64
    public var proposals: [ForwardedProposal]
    public init(from: NodeID, to: NodeID, term: UInt64, proposals: [ForwardedProposal]) {
        self.from = from
        self.to = to
        self.term = term
        self.proposals = proposals
    }
}

/// The fate of one forwarded proposal at the node it was forwarded to.
public enum ProposalOutcome: Equatable, Sendable {
    case accepted(index: UInt64, term: UInt64)
    case rejected(ProposalError)
}

/// The answers to forwarded proposals.
public struct ProposalForwardResponse: Equatable, Sendable {
    public var from: NodeID, to: NodeID, term: UInt64
    public var outcomes: [ProposalID: ProposalOutcome]
    public init(from: NodeID, to: NodeID, term: UInt64, outcomes: [ProposalID: ProposalOutcome]) {
        self.from = from
        self.to = to
        self.term = term
        self.outcomes = outcomes
    }
}

/// Reads a follower took from its clients and asks the leader to confirm.
public struct ReadIndexRequest: Equatable, Sendable {
    public var from: NodeID, to: NodeID, term: UInt64
    public var reads: [ReadID]
    public var mode: ReadMode
    public init(from: NodeID, to: NodeID, term: UInt64, reads: [ReadID], mode: ReadMode) {
        self.from = from
        self.to = to
        self.term = term
        self.reads = reads
        self.mode = mode
    }
}

/// The outcome of one forwarded read: the index to wait for, or why it failed.
public enum ReadOutcome: Equatable, Sendable {
    case ready(index: UInt64)
    case failed(ReadError)
}

/// The leader's answers to forwarded reads.
public struct ReadIndexResponse: Equatable, Sendable {
    public var from: NodeID, to: NodeID, term: UInt64
    public var outcomes: [ReadID: ReadOutcome]
    public init(from: NodeID, to: NodeID, term: UInt64, outcomes: [ReadID: ReadOutcome]) {
        self.from = from
        self.to = to
        self.term = term
        self.outcomes = outcomes
    }
}

/// Everything one consensus node sends another.
public enum Message: Equatable, Sendable {
    case preVoteRequest(VoteRequest)
    case preVoteResponse(VoteResponse)
    case voteRequest(VoteRequest)
    case voteResponse(VoteResponse)
    case appendEntries(AppendEntries)
    case appendResponse(AppendResponse)
    case heartbeat(Heartbeat)
    case heartbeatResponse(HeartbeatResponse)
    case timeoutNow(TimeoutNow)
    case proposalForward(ProposalForward)
    case proposalForwardResponse(ProposalForwardResponse)
    case readIndexRequest(ReadIndexRequest)
    case readIndexResponse(ReadIndexResponse)

    /// The sender.
    public var from: NodeID {
        switch self {
        case .preVoteRequest(let m), .voteRequest(let m): m.from
        case .preVoteResponse(let m), .voteResponse(let m): m.from
        case .appendEntries(let m): m.from
        case .appendResponse(let m): m.from
        case .heartbeat(let m): m.from
        case .heartbeatResponse(let m): m.from
        case .timeoutNow(let m): m.from
        case .proposalForward(let m): m.from
        case .proposalForwardResponse(let m): m.from
        case .readIndexRequest(let m): m.from
        case .readIndexResponse(let m): m.from
        }
    }

    /// The receiver.
    public var to: NodeID {
        switch self {
        case .preVoteRequest(let m), .voteRequest(let m): m.to
        case .preVoteResponse(let m), .voteResponse(let m): m.to
        case .appendEntries(let m): m.to
        case .appendResponse(let m): m.to
        case .heartbeat(let m): m.to
        case .heartbeatResponse(let m): m.to
        case .timeoutNow(let m): m.to
        case .proposalForward(let m): m.to
        case .proposalForwardResponse(let m): m.to
        case .readIndexRequest(let m): m.to
        case .readIndexResponse(let m): m.to
        }
    }

    /// The sender's term (for a pre-vote request, the term it would campaign for).
    public var term: UInt64 {
        switch self {
        case .preVoteRequest(let m), .voteRequest(let m): m.term
        case .preVoteResponse(let m), .voteResponse(let m): m.term
        case .appendEntries(let m): m.term
        case .appendResponse(let m): m.term
        case .heartbeat(let m): m.term
        case .heartbeatResponse(let m): m.term
        case .timeoutNow(let m): m.term
        case .proposalForward(let m): m.term
        case .proposalForwardResponse(let m): m.term
        case .readIndexRequest(let m): m.term
        case .readIndexResponse(let m): m.term
        }
    }

    /// Forwards and their answers are requests between nodes, not protocol steps: they never change a term.
    var isTermAgnostic: Bool {
        switch self {
        case .proposalForward, .proposalForwardResponse, .readIndexRequest, .readIndexResponse: true
        default: false
        }
    }

    /// Only the leader of a term sends these, so receiving one names the leader.
    var isFromLeader: Bool {
        switch self {
        case .appendEntries, .heartbeat, .timeoutNow: true
        default: false
        }
    }

    /// Approximate encoded size, used by the simulator and by metrics.
    public var sizeBytes: Int {
        if case .appendEntries(let m) = self { return 64 + m.entries.reduce(0) { $0 + $1.sizeBytes } }
        return 64
    }
}
