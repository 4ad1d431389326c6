// TandemConsensus: Tandem's quorum core.
//
// It owns the replicated log's protocol: leader election (pre-vote, check-quorum, phi-accrual suspicion with a
// randomized election timeout as the fallback), log replication with flow control, commitment, ReadIndex and lease
// reads, proposal forwarding and leadership transfer. It is a deterministic value: the runtime feeds it ticks,
// messages and client requests with the time they happened, and takes back batches of effects (`Ready`).
//
// It must never do I/O, read a clock, sleep, spawn work, or draw randomness other than from the seeded generator
// it is given; and it must never let one node's suspicion decide membership: suspicion only starts a pre-vote.

/// One member's consensus state machine. See `Ready` for the order in which the runtime must carry out its effects.
///
/// Typical driving loop (one thread):
/// ```
/// node.tick(nowMs: clock.now)              // every ~10 ms
/// node.step(message, nowMs: clock.now)     // for each message received
/// while node.hasReady { let rd = node.ready(); persist(rd); send(rd); apply(rd); release(rd); node.advance(rd) }
/// ```
public struct RaftNode: Sendable {
    public let config: RaftConfig
    /// The other members of the configuration in force (voters and learners), sorted: the leader replicates to
    /// each. Follows `configuration` (see `reconcileConfiguration`).
    var others: [NodeID]
    /// The configuration in force: the last one in this node's log, committed or not (`committedConfiguration`
    /// is the last committed one). `others`, the progress map and every quorum follow it.
    public internal(set) var configuration: ClusterConfiguration
    /// Every node this one accepts messages from: its address book and every member of a configuration it held.
    var knownPeers: Set<NodeID>
    /// Set when the leader's removal committed and it started handing off: it steps down by then at the latest.
    var removalHandoffDeadlineMs: Int64?
    let detectorConfig: PhiAccrualDetector.Config

    // MARK: Durable state (handed out in Ready.hardState)
    /// Invariant: never decreases.
    var term: UInt64
    /// Invariant: a candidate has voted for itself.
    var votedFor: NodeID?
    var log: RaftLog

    // MARK: Volatile state
    /// Invariant: `role == .leader` exactly when `leader == config.id`.
    var role: Role = .follower
    var leader: NodeID?
    var rng: SplitMix64
    /// This node's clock as of the last call (monotonic: a smaller time passed in is ignored).
    var nowMs: Int64 = .min
    /// When this node first saw the clock; until `leaderStickinessMs` after it, it grants no vote (restart safety).
    var startedAtMs: Int64?
    var lastTickMs: Int64?
    /// When this node last heard from the leader of its term (starts at `startedAtMs`).
    var lastLeaderContactMs: Int64 = .min
    /// When the link to the leader was closed from the leader's end (EOF or reset) and not reopened since; see
    /// `linkDown(to:closedByPeer:nowMs:)`.
    var leaderLinkClosedAtMs: Int64?
    /// The randomized fallback: a follower or candidate that hears nothing by then starts a pre-vote.
    var electionDeadlineMs: Int64 = .max
    /// Set when phi crossed the threshold for the leader: the pre-vote starts then (a small random delay later).
    var phiElectionAtMs: Int64?
    /// When a campaign next re-sends its requests to members that have not answered.
    var voteResendDueMs: Int64 = .max
    /// Whether the current campaign was asked for by the old leader (TimeoutNow).
    var campaignIsTransfer = false
    /// (Pre-)votes received in the current campaign: true for a grant.
    var votes: [NodeID: Bool] = [:]
    /// One detector per other member, fed by every message from it.
    var detectors: [NodeID: PhiAccrualDetector] = [:]

    // MARK: Leader state
    /// Per-follower replication state; non-empty only on the leader.
    var progress: [NodeID: Progress] = [:]
    var heartbeatDueMs: Int64 = .max
    /// Check-quorum window start; moved forward after a local stall so our own silence is not held against peers.
    var checkQuorumSinceMs: Int64 = .min
    /// Bytes of this leader's uncommitted proposals. Invariant: `0 <= uncommittedBytes`.
    var uncommittedBytes = 0
    var transfer: LeadershipTransfer?
    /// Once TimeoutNow was sent in this term, no lease is granted again in it: the target's election skips stickiness.
    var leaseDisabledInTerm = false
    var reads = ReadState()
    /// The fate of forwarded proposals this node answered, so a repeated forward gets the same answer.
    var forwardOutcomes: ForwardOutcomeTable
    /// The difference between the wall clock and `nowMs` as last told by `propose` (stamps `Entry.timeMs`).
    var wallOffsetMs: Int64 = 0
    /// The log time when this node became leader, and its own clock then: log time carries on from there at the
    /// rate of this node's clock (see `entryTimeMs`).
    var termTimeBase: (timeMs: Int64, atMs: Int64)?

    // MARK: Follower state
    /// Proposals forwarded to the leader and not yet answered (see Forwarding.swift).
    /// Invariant: `pendingForwards.count <= config.maxPendingForwards`.
    var pendingForwards: [ProposalID: PendingForward] = [:]

    // MARK: Effects not yet handed out
    var pending = Ready()
    /// Deferred sends, flushed when the Ready is taken so that many calls share one message.
    var needsAppendBroadcast = false
    var needsCommitBroadcast = false
    var outgoingForwards: [NodeID: [ForwardedProposal]] = [:]
    var outgoingReadOutcomes: [NodeID: [ReadID: ReadOutcome]] = [:]
    var lastHandedHardState: HardState
    /// The hard state the runtime confirmed as durable (advanced past).
    var durableHardState: HardState
    var lastReportedRole: RoleChange
    /// The Ready handed out and not yet advanced.
    var outstanding: OutstandingReady?
    /// The last committed index the runtime carried out (handed to its applier and advanced past).
    var carriedOutIndex: UInt64

    struct LeadershipTransfer {
        var target: NodeID
        var deadlineMs: Int64
        var timeoutNowSent = false
    }

    struct OutstandingReady {
        var hardState: HardState?
        var lastPersisted: (index: UInt64, term: UInt64)?
        var handedOutThrough: UInt64
        /// When it was handed out (this node's clock).
        var sinceMs: Int64
    }

    /// Creates a node from what its runtime recovered from disk. `seed` drives its election timeouts only.
    public init(config: RaftConfig, recovered: RecoveredState, seed: UInt64) {
        config.validate()
        self.config = config
        log = RaftLog(recovered: recovered, bootstrap: config.bootstrapConfiguration)
        configuration = log.configuration
        others = log.configuration.members.filter { $0 != config.id }.sorted()
        knownPeers = Set(config.peers).union(log.configuration.members).subtracting([config.id])
        var detector = PhiAccrualDetector.Config()
        detector.threshold = config.phiThreshold
        detector.minStdDevMs = config.phiMinStdDevMs
        detector.acceptablePauseMs = config.phiAcceptablePauseMs
        detector.sampleWindow = config.phiSampleWindow
        detector.warmUpMs = config.heartbeatIntervalMs
        detector.localPauseThresholdMs = config.localPauseThresholdMs
        detector.localPauseQuietMs = config.localPauseQuietMs
        detectorConfig = detector
        for peer in knownPeers { detectors[peer] = PhiAccrualDetector(config: detector) }
        term = recovered.hardState.term
        votedFor = recovered.hardState.votedFor
        rng = SplitMix64(seed: seed)
        forwardOutcomes = ForwardOutcomeTable(
            capacity: config.forwardOutcomeCapacity, retentionMs: config.forwardOutcomeRetentionMs)
        lastHandedHardState = recovered.hardState
        durableHardState = recovered.hardState
        carriedOutIndex = recovered.handOutAfter
        lastReportedRole = RoleChange(role: .follower, term: recovered.hardState.term, leader: nil)
    }

    // MARK: Public API

    /// This node's clock advanced (call every ~10 ms). Drives heartbeats, suspicion, timeouts and check-quorum.
    /// `wallTimeMs`, when given, is the wall clock at the same instant: a leader stamps entries it appends for
    /// forwarded proposals and no-ops with it (otherwise with the wall clock last passed to `propose`).
    public mutating func tick(nowMs: Int64, wallTimeMs: Int64? = nil) {
        observeClock(nowMs)
        if let wallTimeMs { wallOffsetMs = wallTimeMs - self.nowMs }
        let stalled = noteLocalStall()
        var leaderVerdict: PhiAccrualDetector.Verdict?
        for peer in detectors.keys {
            let verdict = detectors[peer]!.onTick(nowMs: self.nowMs)
            if peer == leader { leaderVerdict = verdict }
        }
        if role == .leader {
            tickLeader(stalled: stalled)
        } else {
            tickElection(leaderVerdict: leaderVerdict, stalled: stalled)
        }
        expireReads()
        tickForwards()
        checkInvariants()
    }

    /// A message from another member arrived. A message that is not addressed to this node, comes from an unknown
    /// sender, or could not have been sent by a correct member (`refusal(of:)`) is dropped without effect: the
    /// reason is returned, for the runtime to count and log.
    @discardableResult
    public mutating func step(_ message: Message, nowMs: Int64) -> MessageRefusal? {
        observeClock(nowMs)
        if let refusal = refusal(of: message) { return refusal }
        let from = message.from
        if detectors[from] == nil { detectors[from] = PhiAccrualDetector(config: detectorConfig) }
        detectors[from]!.onHeartbeat(nowMs: self.nowMs)
        progress[from]?.lastHeardMs = self.nowMs
        if message.isTermAgnostic || admitTerm(of: message) {
            dispatch(message)
        }
        checkInvariants()
        return nil
    }

    /// Why this node must not act on `message`, or nil. Besides what the message's fields alone rule out
    /// (`Message.malformation`), a term more than `Message.termLeadMax` above ours, a claim to lead a term that
    /// has another leader, and an acknowledgement of entries this leader never had (it would point the follower's
    /// next index past the log).
    public func refusal(of message: Message) -> MessageRefusal? {
        guard message.to == config.id else { return MessageRefusal("addressed to another node") }
        guard message.from != config.id, knownPeers.contains(message.from) else {
            return MessageRefusal("from a node that is not another member")
        }
        if let problem = message.malformation { return MessageRefusal(problem) }
        if !message.isTermAgnostic && message.term > term && message.term - term > Message.termLeadMax {
            return MessageRefusal("term \(message.term) too far above ours (\(term))")
        }
        if message.isFromLeader && message.term == term
            && (role == .leader || (leader != nil && leader != message.from))
        {
            // At most one leader per term: a second claimant is faulty (and trapped a leader's acceptLeader).
            return MessageRefusal("claims to lead term \(term), which has another leader")
        }
        if case .appendResponse(let response) = message, response.success, response.term == term,
            response.matchIndex > log.lastIndex
        {
            return MessageRefusal("acknowledges index \(response.matchIndex) beyond our log (\(log.lastIndex))")
        }
        return nil
    }

    /// Whether `ready()` has something to hand out. False while a Ready is outstanding (not yet advanced).
    public var hasReady: Bool {
        guard outstanding == nil else { return false }
        return !pending.isEmpty || needsAppendBroadcast || needsCommitBroadcast || reads.roundNeeded
            || !outgoingForwards.isEmpty || !outgoingReadOutcomes.isEmpty || hardState != lastHandedHardState
            || log.hasUnstable || log.hasCommittedToApply || currentRoleChange != lastReportedRole
    }

    /// Takes the pending batch of effects when there is one (`hasReady`), else nil. A mutating call, so that a
    /// runtime holding the node in a class asks in place: calling the `hasReady` getter on a class's stored
    /// struct copies the whole node first.
    public mutating func takeReady() -> Ready? {
        hasReady ? ready() : nil
    }

    /// Takes the pending batch of effects. Carry it out in the order documented on `Ready`, then call `advance`.
    public mutating func ready() -> Ready {
        precondition(outstanding == nil, "advance the previous Ready before taking another")
        flushDeferredSends()
        var batch = pending
        pending = Ready()
        let state = hardState
        if state != lastHandedHardState {
            batch.hardState = state
            lastHandedHardState = state
        }
        let unstable = log.takeUnstable()
        batch.entriesToPersist = unstable.entries
        batch.truncateFromIndex = unstable.truncateFrom
        batch.committedEntries = log.takeCommitted(maxCount: config.maxCommittedEntriesPerReady)
        let change = currentRoleChange
        if change != lastReportedRole {
            batch.roleChange = change
            lastReportedRole = change
        }
        // Step 1's sync, and what may leave before it, are the core's to decide (the runtime and the simulator
        // both follow these fields, so the order that ships is the order that is tested).
        let termOrVoteChanged = state.term != durableHardState.term || state.votedFor != durableHardState.votedFor
        batch.mustSync =
            !batch.entriesToPersist.isEmpty || batch.truncateFromIndex != nil || termOrVoteChanged
            || batch.installedBase != nil
        if role == .leader && !termOrVoteChanged {
            var held: [Message] = []
            for message in batch.messages {
                switch message {
                case .appendEntries, .heartbeat: batch.messagesBeforePersist.append(message)
                default: held.append(message)
                }
            }
            batch.messages = held
        }
        outstanding = OutstandingReady(
            hardState: batch.hardState,
            lastPersisted: unstable.entries.last.map { ($0.index, $0.term) }, handedOutThrough: log.handedOutIndex,
            sinceMs: nowMs)
        checkInvariants()
        return batch
    }

    /// Messages that may leave while a Ready is outstanding (its persistence still running), taken out of the next
    /// batch: heartbeats and their answers in a term already durable here. They promise nothing about this node's
    /// disk (no entry, no vote), and liveness must not wait for it. When they waited, a node whose fsync took longer
    /// than the election timeout fell silent for that long: a leader whose followers' disks stalled together
    /// stepped down through check-quorum, and followers suspected a leader whose own disk stalled, with no node
    /// or link down. Empty when no Ready is outstanding (`ready()` hands everything out then) or when the term is
    /// not yet durable.
    ///
    /// A leader's heartbeats are free only for `leaderDiskStallLimitMs`: a leader whose disk has not finished one
    /// Ready by then goes quiet again, so that a disk that hangs does not hold the leadership (and every write) while
    /// the followers could elect a leader whose disk works.
    public mutating func takeMessagesFreeOfDisk() -> [Message] {
        guard let outstanding, term == durableHardState.term else { return [] }
        let durableTerm = durableHardState.term
        let heartbeatsFree = role != .leader || nowMs - outstanding.sinceMs < leaderDiskStallLimitMs
        func isFree(_ message: Message) -> Bool {
            switch message {
            case .heartbeat(let beat): return heartbeatsFree && beat.term == durableTerm
            case .heartbeatResponse(let answer): return answer.term == durableTerm
            default: return false
            }
        }
        guard pending.messages.contains(where: isFree) else { return [] }
        var free: [Message] = []
        var held: [Message] = []
        for message in pending.messages {
            if isFree(message) { free.append(message) } else { held.append(message) }
        }
        pending.messages = held
        return free
    }

    /// How long a leader's disk may take over one Ready while the leader still heartbeats: twice the election
    /// timeout (2 s by default). Followers then suspect it within about another election timeout.
    public var leaderDiskStallLimitMs: Int64 { config.electionTimeoutMs * 2 }

    /// The runtime carried out everything in `ready` (persisted, sent, applied, released).
    public mutating func advance(_ ready: Ready) {
        guard let done = outstanding else { preconditionFailure("advance without an outstanding Ready") }
        outstanding = nil
        if let last = done.lastPersisted { log.persisted(through: last.index, term: last.term) }
        if let state = done.hardState { durableHardState = state }
        // An installed snapshot may have moved it past what that Ready handed out.
        carriedOutIndex = max(carriedOutIndex, done.handedOutThrough)
        // A one-node cluster wins its election with its own vote alone, which counts only once durable: otherwise
        // a crash could let it lead the same term twice with different entries.
        if role == .candidate && isSoleVoter && durableHardState.term == term
            && durableHardState.votedFor == config.id
        {
            becomeLeader()
        }
        // The leader counts its own log toward commit only once it is durable, so this may commit.
        if role == .leader { maybeCommit() }
        checkInvariants()
    }

    /// The state to persist: term, vote and commit index.
    public var hardState: HardState { HardState(term: term, votedFor: votedFor, commitIndex: log.committedIndex) }

    var currentRoleChange: RoleChange { RoleChange(role: role, term: term, leader: leader) }

    /// The entry at `index` in this node's log, if present (for the runtime and the simulator's checks); nil at or
    /// before the log base (`logBase`), whose entries were compacted.
    public func entry(at index: UInt64) -> Entry? { log.entry(at: index) }

    /// The term of the entry at `index`: also known at the log base (`logBase.term`); nil before it or past the log.
    public func term(at index: UInt64) -> UInt64? { log.term(at: index) }

    /// The index of the last entry in this node's log.
    public var lastIndex: UInt64 { log.lastIndex }

    /// Phi for `peer` at `nowMs` (0 for self, unknown peers, and during warm-up or a local pause).
    public func phi(for peer: NodeID, nowMs: Int64) -> Double {
        detectors[peer]?.phi(nowMs: nowMs) ?? 0
    }

    // MARK: Clock

    mutating func observeClock(_ now: Int64) {
        if startedAtMs == nil {
            startedAtMs = now
            lastLeaderContactMs = now
            nowMs = now
            electionDeadlineMs = now + randomElectionTimeoutMs()
        }
        nowMs = max(nowMs, now)
    }

    /// Notices that this node's own ticks ran late; returns true after a stall.
    mutating func noteLocalStall() -> Bool {
        defer { lastTickMs = nowMs }
        guard let last = lastTickMs, nowMs - last > config.localPauseThresholdMs else { return false }
        return true
    }

    /// A timeout drawn from [electionTimeout, 2 x electionTimeout).
    mutating func randomElectionTimeoutMs() -> Int64 {
        config.electionTimeoutMs + Int64(rng.next() % UInt64(config.electionTimeoutMs))
    }

    /// Whether a leader is presumed alive, which makes this node refuse (pre-)votes. Also true for a while after
    /// start, because a restarted node cannot remember whose lease it may have backed.
    var leaderSeemsAlive: Bool {
        role == .leader || (nowMs - lastLeaderContactMs < config.leaderStickinessMs && !leaderLinkGone)
    }

    mutating func send(_ message: Message) {
        pending.messages.append(message)
    }

    func checkInvariants() {
        log.checkInvariants()
        precondition((role == .leader) == (leader == config.id), "leader field disagrees with role")
        precondition(role != .leader || progress.count == others.count, "leader without progress for every peer")
        precondition(configuration == log.configuration, "configuration not reconciled with the log")
        precondition(role != .candidate || votedFor == config.id, "candidate has not voted for itself")
        precondition(term >= lastHandedHardState.term, "term went backwards")
        precondition(carriedOutIndex <= log.handedOutIndex, "applied beyond handed out")
        precondition(uncommittedBytes >= 0, "negative uncommitted bytes")
        precondition(pendingForwards.count <= config.maxPendingForwards, "forward map overflow")
        precondition(reads.pendingCount <= config.maxPendingReads + 1, "read queue overflow")
    }
}

extension RaftNode {
    /// The role in the current term (cheaper than `status`).
    public var currentRole: Role { role }
    /// The current term.
    public var currentTerm: UInt64 { term }
    /// The leader this node knows for its current term, if any.
    public var knownLeader: NodeID? { leader }
    /// The highest index this node knows to be committed.
    public var commitIndex: UInt64 { log.committedIndex }
}
