// The plain data the consensus core speaks in: identities, log entries, durable state, configuration and errors.

/// The stable name of one cluster member (for example "n1").
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The name as configured.
    public let rawValue: String
    /// Wraps a configured member name.
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
    public static func < (lhs: NodeID, rhs: NodeID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Identifies one proposal across the cluster: the node that took it from a client and that node's sequence number.
/// The origin uses it to answer its client once it applies the entry that carries it.
public struct ProposalID: Hashable, Sendable, CustomStringConvertible {
    public let origin: NodeID
    public let sequence: UInt64
    public init(origin: NodeID, sequence: UInt64) {
        self.origin = origin
        self.sequence = sequence
    }
    public var description: String { "\(origin)#\(sequence)" }
}

/// Identifies one read request; the node that took it from a client is its origin.
public struct ReadID: Hashable, Sendable, CustomStringConvertible {
    public let origin: NodeID
    public let sequence: UInt64
    public init(origin: NodeID, sequence: UInt64) {
        self.origin = origin
        self.sequence = sequence
    }
    public var description: String { "read \(origin)#\(sequence)" }
}

/// What an entry means to the runtime. Raw values are stable on disk and on the wire: a new kind takes a new value,
/// so logs written before it still decode.
public enum EntryKind: UInt8, Sendable {
    /// Appended by every new leader so that it commits an entry of its own term; the runtime applies nothing.
    case noop = 0
    /// A client write: `data` goes to the application.
    case normal = 1
    /// A membership change: `data` is the whole new configuration (`ClusterConfiguration.encoded`). The core acts
    /// on it when it is appended; the application applies nothing.
    case configuration = 2
}

/// One replicated log entry.
public struct Entry: Equatable, Sendable {
    public var term: UInt64
    public var index: UInt64
    public var kind: EntryKind
    /// The leader's wall clock when it appended the entry; never decreasing along the log (Tandem-Time).
    public var timeMs: Int64
    /// Who proposed it, so that the origin node can answer its client after applying. Nil for no-ops.
    public var proposal: ProposalID?
    /// Opaque payload (the HTTP request, encoded by the sidecar).
    public var data: [UInt8]

    public init(term: UInt64, index: UInt64, kind: EntryKind, timeMs: Int64, proposal: ProposalID?, data: [UInt8]) {
        self.term = term
        self.index = index
        self.kind = kind
        self.timeMs = timeMs
        self.proposal = proposal
        self.data = data
    }

    /// The bytes this entry costs in batch sizing, flow control and the uncommitted-bytes cap: exactly its encoded
    /// size in an append (`encodedSizeBytes`, WireSize.swift), so a batch sized with it is the size that is sent.
    public var sizeBytes: Int { encodedSizeBytes }
}

/// The state that must be durable before any message produced together with it is sent.
public struct HardState: Equatable, Sendable {
    public var term: UInt64
    public var votedFor: NodeID?
    public var commitIndex: UInt64
    public init(term: UInt64 = 0, votedFor: NodeID? = nil, commitIndex: UInt64 = 0) {
        self.term = term
        self.votedFor = votedFor
        self.commitIndex = commitIndex
    }
}

/// The point the log starts after: entries through `index` are covered by a snapshot (or were compacted away);
/// `term` is the term of the entry at `index` (0,0 = the log starts at index 1).
public struct LogBase: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var index: UInt64
    public var term: UInt64
    public init(index: UInt64, term: UInt64) {
        self.index = index
        self.term = term
    }
    /// No snapshot: the log starts at index 1.
    public static let empty = LogBase(index: 0, term: 0)
    public var description: String { "\(index)@\(term)" }
}

/// What the runtime read back from disk when the node starts.
public struct RecoveredState: Sendable {
    public var hardState: HardState
    /// The persisted log, contiguous and starting at `base.index + 1`.
    public var entries: [Entry]
    /// Committed entries up to here are not handed out again (`Ready.committedEntries` starts after it): the
    /// runtime passes what its app durably applied, or 0 when an in-memory app needs the whole log again.
    /// Invariant: at least `base.index` (the app state restored from the snapshot covers the base).
    public var handOutAfter: UInt64
    /// Where the persisted log starts: the last compaction or installed snapshot the runtime recorded. The commit
    /// index is at least `base.index` (only committed entries are ever covered by a snapshot).
    public var base: LogBase
    /// The configuration in force at `base.index` (the one the snapshot there carried, or the log held when it was
    /// compacted). Nil: unknown, the node takes `RaftConfig.initialConfiguration` (right for a log that was never
    /// compacted past a configuration entry; a runtime that does not record it yet passes nil).
    public var baseConfiguration: ClusterConfiguration?

    public init(
        hardState: HardState = HardState(), entries: [Entry] = [], handOutAfter: UInt64 = 0, base: LogBase = .empty,
        baseConfiguration: ClusterConfiguration? = nil
    ) {
        self.hardState = hardState
        self.entries = entries
        self.handOutAfter = handOutAfter
        self.base = base
        self.baseConfiguration = baseConfiguration
    }
}

/// The role a node plays in its current term.
public enum Role: String, Sendable {
    case follower
    /// Asking for pre-votes: the term is not raised until a quorum says it would vote.
    case preCandidate
    case candidate
    case leader
}

/// How a read confirms that the leader's commit index is current.
public enum ReadMode: Sendable {
    /// The leader confirms its leadership with a quorum round sent after the read arrived.
    case readIndex
    /// The leader skips the round while its lease is valid; otherwise it falls back to a ReadIndex round.
    case lease
}

/// Why a proposal was refused. A refused proposal was not appended to any log.
public enum ProposalError: Error, Equatable, Sendable {
    /// No leader is known; retry after an election.
    case noLeader
    /// The uncommitted bytes, or the number of forwarded proposals awaiting an answer, are at their cap.
    case overloaded
    /// The payload exceeds `RaftConfig.maxMessageBytes`.
    case tooLarge
    /// The leader is handing off leadership and accepts no writes until the transfer ends.
    case leadershipTransferInProgress
}

/// Why a read could not be served.
public enum ReadError: Error, Equatable, Sendable {
    case noLeader
    /// This node, or the leader the read went to, lost leadership before confirming it.
    case notLeader
    /// Too many reads are waiting for confirmation.
    case overloaded
    /// No confirmation arrived within `RaftConfig.readTimeoutMs`.
    case timeout
}

/// Why a leadership transfer was refused.
public enum TransferError: Error, Equatable, Sendable {
    case notLeader
    case unknownTarget
    case targetIsSelf
    case alreadyInProgress
}
