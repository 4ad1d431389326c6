// TandemNode: the node runtime. It drives the pure consensus core (TandemConsensus) on the event loop: ticks from
// a timer, messages from the peer transport, proposals and reads from the sidecar; and it carries out the core's
// effects in the order the core's `Ready` prescribes: persist (on the disk thread, one fsync per batch), then send,
// then hand committed entries to the applier, then release reads and report proposals.
//
// It reaches the world only through three boundaries (NodeEnvironment.swift): a clock and scheduler, a disk and a
// peer messenger. Production wires them to the event loop, the WAL on its disk thread and the peer transport; the
// node simulator wires them to simulated ones and runs this very type. It must never apply anything itself (the
// sidecar's applier does), never block its thread, and never send a message before what it promises is on disk.

import Foundation
import Logging
import TandemConsensus
import TandemNet
import TandemStorage
import TandemTransport

/// Everything the runtime needs, resolved from configuration.
public struct ReplicaConfig: Sendable {
    public var raft: RaftConfig
    /// The other members, with their peer addresses.
    public var peers: [PeerEndpoint]
    public var peerListenHost: String
    public var peerListenPort: UInt16
    public var auth: PeerAuth
    public var dataDirectory: String
    /// True when the app keeps its state in memory: every committed entry is handed out again after a restart.
    public var replayWholeLogOnStart = false
    public var tickIntervalMs: Int64 = 10
    public var transport = PeerTransportOptions()
    /// How this node asks to be admitted when it starts with no state and is not a founding member (nil: it is
    /// one, or it waits to be added by an operator).
    public var join: JoinSettings?
    /// When the leader promotes learners on its own.
    public var promotion = PromotionSettings()
    /// This node's peer address as others dial it (shown by `GET /members`; a joiner sends it).
    public var advertisedAddress: String?

    public init(
        raft: RaftConfig, peers: [PeerEndpoint], peerListenHost: String, peerListenPort: UInt16, auth: PeerAuth,
        dataDirectory: String
    ) {
        self.raft = raft
        self.peers = peers
        self.peerListenHost = peerListenHost
        self.peerListenPort = peerListenPort
        self.auth = auth
        self.dataDirectory = dataDirectory
    }
}

/// What becomes of a proposal: appended at an index (it will be applied when committed), refused (appended
/// nowhere), or unknown (a forward whose answer never came: it may have been appended and may still commit).
public enum ProposalResult: Sendable {
    case accepted(index: UInt64, term: UInt64)
    case rejected(ProposalError)
    case unknown
}

/// Receives what the runtime produces, on the loop thread.
public protocol ReplicaDelegate: AnyObject {
    /// Committed entries in log order, each handed out once per process lifetime.
    func replica(_ replica: ReplicaRuntime, didCommit entries: [Entry])
    /// Role, term or leader changed.
    func replica(_ replica: ReplicaRuntime, didChangeRole change: RoleChange)
}

/// Counters the runtime keeps for /metrics.
public struct ReplicaCounters: Sendable {
    public var elections: UInt64 = 0
    public var leaderChanges: UInt64 = 0
    public var fsyncCount: UInt64 = 0
    public var fsyncMicrosTotal: Int64 = 0
    public var fsyncMicrosMax: Int64 = 0
    public var walBytes: Int64 = 0
    public var entriesPersisted: UInt64 = 0
    public var messagesSent: UInt64 = 0
    public var messagesDropped: UInt64 = 0
    public var undecodableFrames: UInt64 = 0
    /// Frames refused by the transport for being above the frame limit (the core resends smaller batches).
    public var framesDroppedTooLarge: UInt64 = 0
    /// Commit latency: proposal accepted on the leader to committed, in microseconds.
    public var commitLatencyMicros = LatencySamples()
}

/// A fixed-size ring of recent latency samples, for quantiles in /metrics without unbounded memory.
public struct LatencySamples: Sendable {
    private var samples = [Int64](repeating: 0, count: 1024)
    private var next = 0
    public private(set) var count = 0

    mutating func record(_ micros: Int64) {
        samples[next] = micros
        next = (next + 1) % samples.count
        count += 1
    }

    public func quantile(_ q: Double) -> Int64 {
        let filled = Array(samples.prefix(min(count, samples.count))).sorted()
        guard !filled.isEmpty else { return 0 }
        return filled[min(filled.count - 1, Int(Double(filled.count - 1) * q))]
    }
}

public final class ReplicaRuntime {
    public let config: ReplicaConfig
    let log: Logger
    var raft: RaftNode
    let clock: NodeClock
    let disk: NodeDisk
    let messenger: PeerMessenger
    private var tickTimer: NodeTimer?
    private var appliedFlushTimer: NodeTimer?
    public weak var delegate: ReplicaDelegate?
    /// The hard state last made durable, and a newer commit index not yet written (it needs no fsync of its own).
    var lastPersistedHardState = TandemConsensus.HardState()
    var unsyncedCommitIndex: UInt64?
    /// True while a Ready's persistence runs on the disk thread. Invariant: at most one Ready is outstanding.
    private var persistInFlight = false
    private var readyScheduled = false
    /// Proposal and read ids must never repeat across restarts of this node: the leader answers a repeated
    /// forward id with the original outcome, and applied entries are matched to waiting clients by id. So the
    /// sequence carries this run's durable incarnation in its high bits (see `NodeIncarnation`), not the clock.
    private var nextSequence: UInt64
    private var sequenceLimit: UInt64
    /// Proposals waiting to hear whether they were appended (bounded by the core's own caps, plus a sweep).
    private var pendingProposals: [ProposalID: (ProposalResult) -> Void] = [:]
    private var pendingReads: [ReadID: (Result<UInt64, ReadError>) -> Void] = [:]
    /// Leader-side accept times of proposals, to measure commit latency (bounded by the uncommitted cap).
    private var acceptedAtMicros: [UInt64: Int64] = [:]
    /// The highest index the applier reported applied, and the highest one made durable.
    var appliedIndex: UInt64 = 0
    var durableAppliedIndex: UInt64 = 0
    public private(set) var counters = ReplicaCounters()
    /// The applied index recorded on disk at start: a durable app has everything up to here.
    public let recoveredAppliedIndex: UInt64
    /// The previous run of this node ended without a graceful stop.
    public let previousRunCrashed: Bool
    /// After a crash, entries up to this index may already have reached the app: they are delivered again marked
    /// as redeliveries. Zero after a graceful stop. Bounded: the applier never runs more than `redeliveryWindow`
    /// entries ahead of the applied index on disk.
    public let redeliveryThrough: UInt64
    public static let redeliveryWindow: UInt64 = 256
    /// The sidecar's apply state saved by the last graceful stop (opaque here), if any.
    public let recoveredApplyPayload: [UInt8]?
    /// Called when the applied index on disk advanced (an applier held at the redelivery window may go on).
    public var onDurableAppliedAdvance: (() -> Void)?
    private var appliedFlushInFlight = false
    private var retryTimer: NodeTimer?
    public let recoveryNote: String?
    /// Whether the log on disk recorded a configuration (a compaction, an installed snapshot or an admission wrote
    /// one): then the membership is the persisted one, whatever the settings say.
    public let hasRecordedConfiguration: Bool
    var membership = MembershipState()
    var stopped = false
    /// Frames of types at or above `applicationFrameTypeMin` are not consensus messages: they go to this handler
    /// (e.g. the sidecar's divergence digests), with the payload valid only during the call.
    public var onApplicationFrame: ((NodeID, UInt8, UnsafeRawBufferPointer) -> Void)?
    public static let applicationFrameTypeMin: UInt8 = 0x40
    /// Called when the disk fails: a failed fsync is fatal (PostgreSQL's "fsyncgate").
    public var onFatalDiskError: ((WALError) -> Void)?

    // MARK: snapshots (ReplicaRuntime+Snapshots.swift)
    /// The node's snapshot files; nil when this node keeps none (the node simulator).
    public let snapshots: SnapshotStore?
    /// The newest complete, verified snapshot on disk.
    public internal(set) var latestSnapshot: SnapshotInfo?
    /// A snapshot the sidecar must restore into the app before it applies anything (see `init`).
    public let startupRestore: SnapshotInfo?
    /// Why this replica's app cannot be rebuilt after a restart, if it cannot (reported by /readyz and /status).
    public internal(set) var cannotRebuildReason: String?
    /// A change of the log's start found necessary at start, written by `start()` before anything else.
    var pendingBaseChange: LogBaseChange?
    public weak var snapshotDelegate: ReplicaSnapshotDelegate?
    /// Transfers of this node's snapshot to followers (leader), and the one transfer it receives (follower).
    var outgoingTransfers: [NodeID: OutgoingTransfer] = [:]
    var incomingTransfer: IncomingTransfer?
    var receiveState = SnapshotReceiveState()
    /// The sender of the offer being handled (the staging file it opens belongs to that transfer).
    var offerFrom: NodeID?
    /// The cluster configuration the latest Offer carried (for the transfer it names): the installed log's start.
    var offeredConfiguration: (transferID: UInt64, configuration: ClusterConfiguration?)?
    var lastRefetchRequestMs: Int64 = .min / 2
    /// Runs snapshot file work (verification, fsync) off the loop thread, apart from the WAL's thread.
    lazy var snapshotWorker = BackgroundWorker(name: "tandem-snapshot", clock: clock)
    public internal(set) var snapshotCounters = SnapshotCounters()
    var nextTransferID: UInt64 = 0
    /// Followers that needed a snapshot this node could not give (it has none carrying the app's state).
    public internal(set) var unrebuildablePeers: Set<NodeID> = []

    /// The production node: the loop's clock, the WAL in `config.dataDirectory`, the peer transport.
    public convenience init(loop: EventLoop, config: ReplicaConfig, log: Logger) throws {
        let (disk, recovery) = try WALNodeDisk.open(config: config, loop: loop)
        let snapshots = try SnapshotStore(directory: config.dataDirectory + "/snapshots")
        try self.init(
            config: config, clock: LoopClock(loop: loop), disk: disk, recovery: recovery, snapshotStore: snapshots,
            messenger: TransportMessenger(loop: loop, config: config),
            seed: UInt64(truncatingIfNeeded: EventLoop.wallClockMs()) ^ recovery.incarnation, log: log)
    }

    /// A node on the given boundaries (the simulator passes simulated ones). `seed` drives election timeouts.
    public init(
        config: ReplicaConfig, clock: NodeClock, disk: NodeDisk, recovery: NodeRecovery,
        snapshotStore: SnapshotStore? = nil, messenger: PeerMessenger, seed: UInt64, log: Logger
    ) throws {
        self.config = config
        self.clock = clock
        self.disk = disk
        self.messenger = messenger
        self.log = log
        var hard = recovery.hardState
        var recovery = recovery
        let previousRun = recovery.previousRun
        snapshots = snapshotStore
        latestSnapshot = snapshotStore?.latestVerified()
        nextSequence = recovery.incarnation << NodeIncarnation.sequenceBits
        sequenceLimit = nextSequence + (1 << NodeIncarnation.sequenceBits) - 1
        // After a graceful stop the checkpoint's applied index is exact (it may be ahead of the WAL's lazily
        // written one); after a crash the WAL's is a lower bound, and the entries after it that the applier may
        // have reached are delivered again, marked.
        var applied = recovery.appliedIndex
        if previousRun.cleanStop, let checkpoint = previousRun.checkpoint {
            applied = max(applied, min(checkpoint.appliedIndex, recovery.entries.last?.index ?? recovery.base.index))
        }
        // A snapshot on disk newer than the app's applied index: an installation that stopped before the log
        // was reset (or a durable app whose applied index lags it). The snapshot is committed state, so it wins:
        // the log restarts after it and the sidecar restores the app from it before applying anything.
        var restoreAtStart: SnapshotInfo?
        var baseChangeAtStart: LogBaseChange?
        if let snapshot = latestSnapshot, snapshot.id.index > max(applied, recovery.base.index) {
            let base = LogBase(index: snapshot.id.index, term: snapshot.id.term)
            // The configuration at the snapshot: what the entries kept say, else what the log had at its base
            // (a snapshot received just before a crash: the leader's entries after it correct it).
            recovery.baseConfiguration =
                (recovery.entries.last { $0.index <= base.index && $0.kind == .configuration }?.data)
                ?? recovery.baseConfiguration
            let stored = StoredLogBase(
                index: base.index, term: base.term, configuration: recovery.baseConfiguration)
            if let kept = recovery.entries.firstIndex(where: { $0.index == base.index }),
                recovery.entries[kept].term == base.term
            {
                recovery.entries.removeFirst(kept + 1)
                baseChangeAtStart = .compact(stored)
            } else {
                recovery.entries.removeAll()
                baseChangeAtStart = .reset(stored)
            }
            recovery.base = base
            applied = base.index
            restoreAtStart = snapshot
        }
        let lastIndex = recovery.entries.last?.index ?? recovery.base.index
        // An applied entry was committed: a commit index on disk behind it (it is written lazily) is raised to it,
        // so the core never hands out again what the applier recorded as applied.
        hard.commitIndex = max(hard.commitIndex, min(applied, lastIndex), recovery.base.index)
        recoveredAppliedIndex = applied
        previousRunCrashed = !previousRun.cleanStop
        if previousRun.cleanStop {
            // What a crash before that stop left uncertain and no run has handed out since stays marked.
            let carried = previousRun.checkpoint?.redeliveryThrough ?? 0
            redeliveryThrough = carried > applied ? carried : 0
        } else {
            redeliveryThrough = applied + Self.redeliveryWindow
        }
        recoveredApplyPayload = previousRun.checkpoint?.payload
        var handOutAfter = min(applied, hard.commitIndex)
        if config.replayWholeLogOnStart {
            // An in-memory app is rebuilt at every start: from the latest snapshot and the log after it, or, when
            // the log was never compacted, from the whole log.
            if let snapshot = latestSnapshot, snapshot.id.index >= recovery.base.index,
                snapshot.id.index <= hard.commitIndex
            {
                handOutAfter = snapshot.id.index
                restoreAtStart = snapshot
            } else {
                handOutAfter = recovery.base.index
                if recovery.base.index > 0 {
                    cannotRebuildReason =
                        "the log is compacted through index \(recovery.base.index) and no snapshot is on disk to "
                        + "rebuild the in-memory app from"
                }
            }
        }
        startupRestore = restoreAtStart
        pendingBaseChange = baseChangeAtStart
        raft = RaftNode(
            config: config.raft,
            recovered: RecoveredState(
                hardState: hard, entries: recovery.entries, handOutAfter: handOutAfter, base: recovery.base,
                baseConfiguration: recovery.baseConfiguration.flatMap(ClusterConfiguration.init(decoding:))),
            seed: seed)
        appliedIndex = handOutAfter
        durableAppliedIndex = applied
        lastPersistedHardState = hard
        recoveryNote = recovery.note
        hasRecordedConfiguration = recovery.baseConfiguration != nil
        membership.removal = Self.recordedRemoval(config.dataDirectory)
        counters.walBytes = recovery.walBytes
    }

    /// Starts the disk, the peer listener and dialers, and the tick timer.
    public func start() throws {
        // Every append the core may build must fit a frame (a programmer error in the derivation otherwise).
        config.raft.validate(frameLimit: config.transport.maxFramePayloadBytes)
        transferOptions.validate(frameLimit: config.transport.maxFramePayloadBytes)
        disk.start()
        if let change = pendingBaseChange {
            pendingBaseChange = nil
            var job = PersistJob()
            job.logBase = change
            job.appliedIndex = appliedIndex > 0 ? appliedIndex : nil
            disk.submit(job) { [unowned self] outcome in self.recordDisk(outcome) }
        }
        try messenger.start(for: self)
        startMembership()
        syncAddressBook()
        tickTimer = clock.every(ms: config.tickIntervalMs) { [unowned self] in self.onTick() }
        appliedFlushTimer = clock.every(ms: 1000) { [unowned self] in self.flushAppliedIndex() }
        scheduleReady()
    }

    /// The port the peer listener is bound to.
    public var peerPort: UInt16 { messenger.listenPort }

    /// Stops the node. `checkpointPayload` is non-nil for a graceful stop in which the applier finished every
    /// entry it started: then the exact applied index and the payload are written, and the next start delivers
    /// nothing twice. Without it, the next start treats this run as crashed.
    public func stop(checkpointPayload: [UInt8]? = nil) {
        guard !stopped else { return }
        stopped = true
        tickTimer?.cancel()
        appliedFlushTimer?.cancel()
        retryTimer?.cancel()
        if appliedIndex > durableAppliedIndex || unsyncedCommitIndex != nil {
            var job = PersistJob()
            job.appliedIndex = appliedIndex
            job.hardState = unsyncedCommitHardState
            disk.submit(job) { _ in }
        }
        messenger.stop()
        snapshotWorker.stop()
        for transfer in outgoingTransfers.values { transfer.reader.close() }
        outgoingTransfers.removeAll()
        // A staging file being received is left as it is (the snapshot worker may still be writing to it): the next
        // run resumes from it.
        incomingTransfer = nil
        disk.stop()  // Finishes every queued job first.
        guard let checkpointPayload, !config.replayWholeLogOnStart else { return }
        do {
            try disk.finish(
                ApplyCheckpoint(
                    appliedIndex: appliedIndex,
                    redeliveryThrough: redeliveryThrough > appliedIndex ? redeliveryThrough : 0,
                    payload: checkpointPayload))
            log.info("stopped gracefully", metadata: ["appliedIndex": "\(appliedIndex)"])
        } catch {
            log.error("cannot write the apply checkpoint: the next start redelivers", metadata: ["error": "\(error)"])
        }
    }

    /// Whether the applier may hand `index` to the app now: never more than `redeliveryWindow` entries beyond the
    /// applied index on disk, so that after a crash at most that many are delivered twice. When the answer is no,
    /// the applied index is being written; `onDurableAppliedAdvance` tells when to ask again.
    public func mayApply(_ index: UInt64) -> Bool {
        if index > durableAppliedIndex + Self.redeliveryWindow / 2 { flushAppliedIndex() }
        return index <= durableAppliedIndex + Self.redeliveryWindow
    }

    // MARK: inputs

    private func onTick() {
        if membership.removal != nil { return }
        // The wall clock lets a leader stamp Tandem-Time on entries it did not propose itself (forwards, no-ops).
        raft.tick(nowMs: clock.nowMs(), wallTimeMs: clock.wallClockMs())
        tickSnapshotTransfers()
        tickMembership()
        scheduleReady()
    }

    /// A fresh proposal id of this node (unique for the process lifetime; the origin id disambiguates nodes).
    public func makeProposalID() -> ProposalID {
        ProposalID(origin: config.raft.id, sequence: takeSequence())
    }

    func takeSequence() -> UInt64 {
        clock.assertOnOwnThread()
        if nextSequence >= sequenceLimit {
            // 2^40 ids in one run: move to a fresh incarnation rather than wrap into ids already used.
            do {
                let incarnation = try disk.nextIncarnation()
                nextSequence = incarnation << NodeIncarnation.sequenceBits
                sequenceLimit = nextSequence + (1 << NodeIncarnation.sequenceBits) - 1
            } catch {
                log.critical("cannot record a new incarnation: stopping", metadata: ["error": "\(error)"])
                onFatalDiskError?(.io(operation: "incarnation", path: config.dataDirectory, errno: EIO))
            }
        }
        defer { nextSequence += 1 }
        return nextSequence
    }

    /// Proposes `data` under `id`. `completion` hears whether it was appended (on this node or, forwarded, on the
    /// leader); it may run before `propose` returns (an immediate refusal). The entry itself reaches the delegate
    /// when committed, carrying `id`.
    public func propose(_ data: [UInt8], id: ProposalID, completion: @escaping (ProposalResult) -> Void) {
        clock.assertOnOwnThread()
        do throws(ProposalError) {
            try raft.propose(data, id: id, wallTimeMs: clock.wallClockMs(), nowMs: clock.nowMs())
            pendingProposals[id] = completion
            scheduleReady()
        } catch {
            completion(.rejected(error))
        }
    }

    /// Asks for a read index (ReadIndex or lease). The completion gets the index to wait for before serving.
    public func read(mode: ReadMode, completion: @escaping (Result<UInt64, ReadError>) -> Void) {
        let id = ReadID(origin: config.raft.id, sequence: takeSequence())
        pendingReads[id] = completion
        raft.requestRead(id: id, mode: mode, nowMs: clock.nowMs())
        scheduleReady()
    }

    public func transferLeadership(to target: NodeID) throws(TransferError) {
        try raft.transferLeadership(to: target, nowMs: clock.nowMs())
        scheduleReady()
    }

    /// The applier finished `index` (in order). Persisted lazily: with the next batch, or within a second.
    public func markApplied(_ index: UInt64) {
        clock.assertOnOwnThread()
        precondition(index > appliedIndex, "applied index must grow: \(index) after \(appliedIndex)")
        appliedIndex = index
    }

    public var status: NodeStatus { raft.status }

    public var transportStatus: [LinkStatus] { messenger.peerStatuses }
    public var currentAppliedIndex: UInt64 { appliedIndex }

    public func phi(for peer: NodeID) -> Double { raft.phi(for: peer, nowMs: clock.nowMs()) }

    // MARK: the Ready loop

    func scheduleReady() {
        guard !readyScheduled, !stopped else { return }
        readyScheduled = true
        clock.soon { [weak self] in self?.processReady() }
    }

    private func processReady() {
        clock.assertOnOwnThread()
        readyScheduled = false
        guard !stopped else { return }
        if persistInFlight {
            // Heartbeats and their answers do not wait for the disk (see `RaftNode.takeMessagesFreeOfDisk`).
            for message in raft.takeMessagesFreeOfDisk() { send(message) }
            return
        }
        guard let ready = raft.takeReady() else { return }
        // Step 0: what the core lets leave before the disk (a leader's appends: its fsync and the followers' run
        // side by side).
        for message in ready.messagesBeforePersist { send(message) }
        guard ready.mustSync else {
            // Only the commit index moved, if anything: no fsync (the core says so); it is written with the next
            // batch that must be synced.
            if let hard = ready.hardState { unsyncedCommitIndex = hard.commitIndex }
            carryOut(ready)
            return
        }
        var job = PersistJob()
        job.truncateFrom = ready.truncateFromIndex
        job.entries = ready.entriesToPersist.map(EntryPayload.encode)
        if let hard = ready.hardState {
            job.hardState = Self.storageHardState(hard)
        } else {
            job.hardState = unsyncedCommitHardState
        }
        if appliedIndex > durableAppliedIndex { job.appliedIndex = appliedIndex }
        if let installed = ready.installedBase {
            // The app holds the snapshot's state (the sidecar restored it before the core took it): the log now
            // starts after it, and the applied index is recorded with it in the same sync.
            let stored = StoredLogBase(
                index: installed.base.index, term: installed.base.term, configuration: raft.baseConfiguration.encoded)
            job.logBase = installed.discardedSuffix ? .reset(stored) : .compact(stored)
            job.appliedIndex = max(job.appliedIndex ?? 0, appliedIndex)
        }
        let appliedInJob = job.appliedIndex
        let persistedHard = job.hardState.map {
            TandemConsensus.HardState(term: $0.term, votedFor: $0.votedFor.map(NodeID.init), commitIndex: $0.commit)
        }
        persistInFlight = true
        counters.entriesPersisted += UInt64(job.entries.count)
        submitPersist(job, ready: ready, appliedInJob: appliedInJob, persistedHard: persistedHard)
    }

    /// Runs a Ready's persistence; carries the Ready out only once it is durable. Running out of descriptors is
    /// the one disk error that is retried (nothing was written); every other one is fatal.
    private func submitPersist(
        _ job: PersistJob, ready: Ready, appliedInJob: UInt64?, persistedHard: TandemConsensus.HardState?
    ) {
        disk.submit(job) { [unowned self] outcome in
            if case .descriptorsExhausted = outcome.error, !self.stopped {
                self.log.warning("out of file descriptors for the WAL: retrying the write in 100 ms")
                self.retryTimer = self.clock.after(ms: 100) { [unowned self] in
                    self.submitPersist(job, ready: ready, appliedInJob: appliedInJob, persistedHard: persistedHard)
                }
                return
            }
            self.persistInFlight = false
            self.recordDisk(outcome)
            guard outcome.error == nil else { return }  // Fatal: nothing of this Ready may be carried out.
            if let applied = appliedInJob { self.noteDurableApplied(applied) }
            if let persistedHard {
                self.lastPersistedHardState = persistedHard
                if self.unsyncedCommitIndex.map({ $0 <= persistedHard.commitIndex }) ?? false {
                    self.unsyncedCommitIndex = nil
                }
            }
            guard !self.stopped else { return }
            self.carryOut(ready)
        }
    }

    /// The durable term and vote with the commit index not yet written, if one is waiting (nil otherwise).
    private var unsyncedCommitHardState: StoredHardState? {
        unsyncedCommitIndex.map {
            Self.storageHardState(
                TandemConsensus.HardState(
                    term: lastPersistedHardState.term, votedFor: lastPersistedHardState.votedFor, commitIndex: $0))
        }
    }

    private static func storageHardState(_ hard: TandemConsensus.HardState) -> StoredHardState {
        StoredHardState(term: hard.term, votedFor: hard.votedFor?.rawValue, commit: hard.commitIndex)
    }

    func recordDisk(_ outcome: PersistOutcome) {
        if let error = outcome.error {
            log.critical("disk failure: stopping (a failed fsync is never retried)", metadata: ["error": "\(error)"])
            onFatalDiskError?(error)
            return
        }
        counters.fsyncCount += 1
        counters.fsyncMicrosTotal += outcome.fsyncMicros
        counters.fsyncMicrosMax = max(counters.fsyncMicrosMax, outcome.fsyncMicros)
        counters.walBytes = outcome.walBytes
    }

    /// Steps 2-5 of the Ready contract, once step 1 (persistence) is done.
    private func carryOut(_ ready: Ready) {
        // Persist before send: nothing of a Ready is carried out while its persistence is still running.
        precondition(!persistInFlight, "a Ready carried out before its persistence completed")
        for message in ready.messages { send(message) }
        if let change = ready.roleChange { noteRoleChange(change) }
        for peer in ready.snapshotsNeeded { startSnapshotTransfer(to: peer) }
        if !ready.committedEntries.isEmpty {
            noteCommitLatency(ready.committedEntries)
            delegate?.replica(self, didCommit: ready.committedEntries)
        }
        for (id, index) in ready.readyReads { pendingReads.removeValue(forKey: id)?(.success(index)) }
        for (id, error) in ready.failedReads { pendingReads.removeValue(forKey: id)?(.failure(error)) }
        for (id, index, term) in ready.acceptedProposals {
            if raft.currentRole == .leader { acceptedAtMicros[index] = clock.nowMicros() }
            pendingProposals.removeValue(forKey: id)?(.accepted(index: index, term: term))
        }
        for (id, error) in ready.rejectedProposals { pendingProposals.removeValue(forKey: id)?(.rejected(error)) }
        for id in ready.unknownProposals { pendingProposals.removeValue(forKey: id)?(.unknown) }
        raft.advance(ready)
        // Membership work waits for the next tick (10 ms) unless a change is waiting for its commit, the leader
        // changed or the configuration did: the write path does not pay for it on every Ready.
        if !membership.waiters.isEmpty || ready.roleChange != nil || raft.configuration != membership.bookConfiguration
        {
            tickMembership()
        }
        scheduleReady()
    }

    private func noteRoleChange(_ change: RoleChange) {
        if change.role == .candidate { counters.elections += 1 }
        if change.role == .leader || change.leader != nil { counters.leaderChanges += 1 }
        if change.role != .leader { acceptedAtMicros.removeAll() }
        log.info(
            "role changed",
            metadata: [
                "role": "\(change.role.rawValue)", "term": "\(change.term)",
                "leader": "\(change.leader?.rawValue ?? "none")",
            ])
        delegate?.replica(self, didChangeRole: change)
    }

    private func noteCommitLatency(_ entries: [Entry]) {
        guard !acceptedAtMicros.isEmpty else { return }
        let now = clock.nowMicros()
        for entry in entries {
            if let start = acceptedAtMicros.removeValue(forKey: entry.index) {
                counters.commitLatencyMicros.record(now - start)
            }
        }
    }

    private func flushAppliedIndex() {
        guard appliedIndex > durableAppliedIndex, !appliedFlushInFlight, !stopped else { return }
        var job = PersistJob()
        job.appliedIndex = appliedIndex
        let target = appliedIndex
        appliedFlushInFlight = true
        disk.submit(job) { [unowned self] outcome in
            self.appliedFlushInFlight = false
            if case .descriptorsExhausted = outcome.error { return }  // Written again with the next batch.
            self.recordDisk(outcome)
            if outcome.error == nil { self.noteDurableApplied(target) }
        }
    }

    func noteDurableApplied(_ index: UInt64) {
        guard index > durableAppliedIndex else { return }
        durableAppliedIndex = index
        onDurableAppliedAdvance?()
    }

    // MARK: transport

    func send(_ message: Message) {
        let outcome = messenger.send(message)
        if outcome.isQueued {
            counters.messagesSent += 1
            return
        }
        counters.messagesDropped += 1
        // Raft retransmits its own messages. A forward that never left is the core's to settle (it resends or
        // refuses it); a read request that never left was confirmed by no one: fail it now, retryable.
        switch message {
        case .proposalForward:
            raft.notDelivered(message, nowMs: clock.nowMs())
            scheduleReady()
        case .readIndexRequest(let request):
            for read in request.reads { pendingReads.removeValue(forKey: read)?(.failure(.noLeader)) }
        default:
            break
        }
    }

    func noteUndecodableFrame() { counters.undecodableFrames += 1 }

    /// Sends an application frame to every peer (dropped for peers that are not connected).
    public func broadcast(type: UInt8, payload: [UInt8]) {
        precondition(type >= Self.applicationFrameTypeMin, "frame types below 0x40 belong to consensus")
        for peer in raft.configuration.members where peer != config.raft.id {
            _ = messenger.send(type: type, payload: payload, to: peer)
        }
    }

    // MARK: inputs from the peers

    /// A frame arrived from an authenticated peer.
    public func receive(frameOfType type: UInt8, payload: UnsafeRawBufferPointer, from peer: NodeID) {
        clock.assertOnOwnThread()
        if type == snapshotRequestFrameType {
            receiveSnapshotRequest(from: peer)
            return
        }
        if SnapshotTransferCodec.handles(frameType: type) {
            receiveSnapshotFrame(type: type, payload: payload, from: peer)
            return
        }
        if MembershipFrames.handles(frameType: type) {
            receiveMembershipFrame(type: type, payload: payload, from: peer, isStranger: false)
            return
        }
        if type >= Self.applicationFrameTypeMin {
            onApplicationFrame?(peer, type, payload)
            return
        }
        // A removed node takes no part: consensus traffic from its former peers is not for it any more.
        if membership.removal != nil { return }
        // A bad frame from an authenticated peer is dropped without effect and ends its link: the peer is broken or
        // compromised, and a flood of bad frames then costs it a reconnect and a handshake per frame.
        func disconnect(_ what: String, _ reason: String) {
            counters.undecodableFrames += 1
            log.warning(
                "\(what) from peer; closing its link", metadata: ["peer": "\(peer)", "reason": "\(reason)"])
            messenger.closeLink(to: peer, reason: "\(what): \(reason)")
        }
        do {
            let message = try ConsensusCodec.decode(type: type, payload: payload)
            guard message.from == peer else {
                disconnect("a message in another node's name", "from \(message.from) on the link of \(peer)")
                return
            }
            // The core checks what only it knows (a term far above ours, an acknowledgement beyond its log):
            // a refusal is a bad frame like an undecodable one.
            if let refusal = raft.step(message, nowMs: clock.nowMs()) {
                disconnect("a refused message", "\(refusal)")
                return
            }
            scheduleReady()
        } catch {
            disconnect("an undecodable frame", "\(error)")
        }
    }

    /// A link to `peer` is (again) up.
    public func linkUp(to peer: NodeID) {
        log.info("peer connected", metadata: ["peer": "\(peer)"])
        // Forwards sent on the old link may have died with it: the core sends them again on this one.
        raft.linkUp(to: peer, nowMs: clock.nowMs())
        scheduleReady()
    }

    /// `closedByPeer`: the other end closed it (see `RaftNode.linkDown`).
    public func linkDown(to peer: NodeID, reason: String, closedByPeer: Bool = false) {
        log.info("peer disconnected", metadata: ["peer": "\(peer)", "reason": "\(reason)"])
        snapshotLinkDown(to: peer)
        raft.linkDown(to: peer, closedByPeer: closedByPeer, nowMs: clock.nowMs())
        scheduleReady()
    }

    /// The messenger dropped a frame to `peer`. Raft retransmits what a full buffer or a missing link dropped; a
    /// frame too large is resent smaller by the core, but it must never go unseen.
    public func frameDropped(to peer: NodeID, type: UInt8, payloadBytes: Int, tooLarge: Bool) {
        guard tooLarge else { return }
        counters.framesDroppedTooLarge += 1
        log.warning(
            "a frame larger than the peer frame limit was dropped",
            metadata: ["peer": "\(peer)", "type": "\(type)", "bytes": "\(payloadBytes)"])
    }

    /// A frame from an authenticated node outside the address book: only a request to join (or the answer to
    /// this node's own) is heard; nothing from a stranger reaches the consensus core.
    public func receiveFromStranger(frameOfType type: UInt8, payload: UnsafeRawBufferPointer, from peer: NodeID) {
        clock.assertOnOwnThread()
        guard MembershipFrames.handles(frameType: type) else {
            if ConsensusCodec.FrameType(rawValue: type) != nil { noticeStranger(peer) }
            return
        }
        receiveMembershipFrame(type: type, payload: payload, from: peer, isStranger: true)
        scheduleReady()
    }

    public func peerRefused(remoteAddress: String, reason: String) {
        log.warning("refused a peer connection", metadata: ["remote": "\(remoteAddress)", "reason": "\(reason)"])
    }
}

extension ReplicaRuntime {
    /// Runs slow snapshot file work off the loop thread (and apart from the WAL's); `completion` runs on the
    /// runtime's thread.
    public func runInBackground<Result>(
        _ work: @escaping @Sendable () -> Result, completion: @escaping (Result) -> Void
    ) {
        snapshotWorker.run(work, completion: completion)
    }

    /// The highest commit index recovered from disk (0 for a node that never took part).
    public var hasHistory: Bool { raft.commitIndex > 0 || raft.lastIndex > 0 }

    /// Retained entries in `(after, through]` (the log before its base is gone: a caller replays from a snapshot).
    public func entries(after start: UInt64, through end: UInt64) -> [Entry] {
        let first = max(start, raft.logBase.index) + 1
        guard end >= first else { return [] }
        return (first...end).compactMap { raft.entry(at: $0) }
    }

    /// The log's current start.
    public var logBase: LogBase { raft.logBase }
}

extension ReplicaRuntime {
    /// Gives `body` the core in place. Calling a getter on `raft` (a class's stored struct) copies the whole core
    /// first, log and all; an `inout` access does not. For the paths that run on every tick or every batch.
    @inline(__always)
    func withRaftInPlace<Result>(_ body: (inout RaftNode) -> Result) -> Result {
        body(&raft)
    }
}
