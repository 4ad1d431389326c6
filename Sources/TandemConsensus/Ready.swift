/// A batch of effects the runtime must carry out, taken with `RaftNode.ready()`.
///
/// The ORDER is part of the contract:
/// 0. `messagesBeforePersist` may be sent at once, before step 1 (the core decides which: see the field).
/// 1. If `installedBase` is set, record it first (the snapshot it stands for is already restored and durable).
///    Persist `entriesToPersist` and then `hardState`, and fsync when `mustSync` says so. If `truncateFromIndex` is
///    set, first delete every stored entry with an index at or above it (the new entries replace a conflicting
///    suffix). In general the entries replace any stored entry at the same or a higher index. When `mustSync` is
///    false the hard state may be written without an fsync (or with the next batch that is synced).
///    `snapshotsNeeded` may be started at any time (streaming a snapshot promises nothing about this disk).
/// 2. Then send `messages` (they may promise what step 1 made durable: votes, acknowledged entries).
/// 3. Then apply `committedEntries` to the application, in order.
/// 4. Then release `readyReads` (serve each once the local applied index reaches its index), fail `failedReads`,
///    and report `acceptedProposals` / `rejectedProposals` to whoever waits for them.
/// 5. Then call `RaftNode.advance(_:)` with this Ready. Only one Ready may be outstanding at a time.
///
/// While one is outstanding, `RaftNode.takeMessagesFreeOfDisk()` hands out heartbeats and their answers in a term
/// already durable: send them at once, so that a slow fsync does not silence the node.
public struct Ready: Sendable {
    /// Non-nil when term, vote or commit index changed since the last Ready.
    public var hardState: HardState?
    /// New or replacing entries, contiguous and in index order.
    public var entriesToPersist: [Entry] = []
    /// Set when `entriesToPersist` overwrites entries handed out before: delete stored entries from this index first.
    public var truncateFromIndex: UInt64?
    /// Messages to send after step 1.
    public var messages: [Message] = []
    /// Messages that may leave before step 1 completes: a leader's appends and heartbeats in a Ready that changes
    /// neither term nor vote (etcd's "leader's parallel write"). Safe because they promise nothing about the
    /// leader's disk: the leader counts its own log towards commit only once it is durable (after `advance`).
    public var messagesBeforePersist: [Message] = []
    /// Whether step 1 needs an fsync: new entries, a truncation, or a new term or vote (etcd's `MustSync`). A
    /// Ready whose only durable change is the commit index need not be synced: a restarted node learns the commit
    /// index again from the leader, and never applies more than it recorded as applied.
    public var mustSync = false
    /// Entries that are committed and not yet handed out, in index order.
    public var committedEntries: [Entry] = []
    /// Reads confirmed: each may be served once this node has applied `index`.
    public var readyReads: [(id: ReadID, index: UInt64)] = []
    /// Reads that failed; nothing was served for them.
    public var failedReads: [(id: ReadID, error: ReadError)] = []
    /// Proposals appended to the leader's log (possibly forwarded and answered by the leader). Not yet committed:
    /// the client is answered when the entry with this proposal id is applied.
    public var acceptedProposals: [(id: ProposalID, index: UInt64, term: UInt64)] = []
    /// Proposals refused; none of them was appended.
    public var rejectedProposals: [(id: ProposalID, error: ProposalError)] = []
    /// Forwarded proposals whose fate this node cannot learn (no answer within the patience, or the leader or term
    /// changed, or a refusal after a resend): they may have been appended and may still commit.
    public var unknownProposals: [ProposalID] = []
    /// Non-nil when the role, term or known leader changed (for logs and metrics).
    public var roleChange: RoleChange?
    /// Followers whose next entry is at or before the log base: the runtime must stream its latest snapshot to each
    /// (once per listing; the peer stays in the `snapshot` state, receiving no appends, until it acknowledges an index
    /// >= the base via an AppendResponse, or `reportSnapshot(succeeded: false)` sends it back to probing after a pause
    /// of at least one election timeout so a failing transfer is not retried in a tight loop). After
    /// `reportSnapshot(succeeded: true)` with no acknowledgement, the leader probes past the snapshot after two heartbeat
    /// intervals.
    public var snapshotsNeeded: [NodeID] = []
    /// Set after `RaftNode.installSnapshot`: the runtime records it durably before sending this Ready's messages.
    /// `discardedSuffix` is true when the whole previous log was dropped (WAL reset), false when only entries through
    /// `base.index` were dropped (WAL compaction).
    public var installedBase: InstalledBase?

    public init() {}

    /// True when the batch carries nothing.
    public var isEmpty: Bool {
        hardState == nil && entriesToPersist.isEmpty && messages.isEmpty && messagesBeforePersist.isEmpty
            && committedEntries.isEmpty
            && readyReads.isEmpty && failedReads.isEmpty && acceptedProposals.isEmpty
            && rejectedProposals.isEmpty && unknownProposals.isEmpty && roleChange == nil
            && snapshotsNeeded.isEmpty && installedBase == nil
    }
}

/// A snapshot installed on this node (`Ready.installedBase`): the new log base, and how much of the stored log goes.
public struct InstalledBase: Equatable, Sendable {
    public var base: LogBase
    /// True: every stored entry is dropped (the log did not hold the base's entry). False: only those through
    /// `base.index` are (the entries after it are kept, as the log held the base with the same term). The stored
    /// log may end before `base.index` (the entries up to it were still waiting to be persisted): it is then left
    /// empty, and this Ready's `entriesToPersist` start at `base.index + 1`.
    public var discardedSuffix: Bool
    public init(base: LogBase, discardedSuffix: Bool) {
        self.base = base
        self.discardedSuffix = discardedSuffix
    }
}

/// A change of role, term or leader.
public struct RoleChange: Equatable, Sendable {
    public var role: Role
    public var term: UInt64
    public var leader: NodeID?
}

/// What the node knows about one peer, for `/status` and metrics.
public struct PeerStatus: Equatable, Sendable {
    public var id: NodeID
    /// Highest index known to be replicated on the peer (leader only, else 0).
    public var matchIndex: UInt64
    /// Next index the leader will send (leader only, else 0).
    public var nextIndex: UInt64
    /// Appends in flight and their entry bytes (leader only).
    public var inflightMessages: Int
    public var inflightBytes: Int
    /// When this node last received any message from the peer, on this node's clock; nil if never.
    public var lastContactMs: Int64?
    /// Suspicion level of the peer as of this node's last tick.
    public var phi: Double
    /// The leader waits for the peer to install a snapshot (listed in `Ready.snapshotsNeeded`) and sends it no
    /// appends meanwhile (leader only).
    public var awaitingSnapshot: Bool
}

/// A snapshot of the node's state.
public struct NodeStatus: Equatable, Sendable {
    public var id: NodeID
    public var role: Role
    public var term: UInt64
    public var leader: NodeID?
    public var commitIndex: UInt64
    /// The last committed index the runtime carried out (handed to its applier; not necessarily applied yet).
    public var carriedOutIndex: UInt64
    public var lastIndex: UInt64
    /// The index the log starts after (`RaftNode.logBase`): entries through it are covered by a snapshot.
    public var logBaseIndex: UInt64
    /// The last index this node knows to be on its own disk.
    public var persistedIndex: UInt64
    /// Whether lease reads are served right now without a round (leader only).
    public var leaseValid: Bool
    /// Uncommitted entry bytes counted against `maxUncommittedBytes` (leader only).
    public var uncommittedBytes: Int
    public var peers: [PeerStatus]
}
