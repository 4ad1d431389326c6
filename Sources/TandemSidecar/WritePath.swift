import Logging
import TandemConfig
import TandemConsensus
import TandemHTTP
import TandemNet
import TandemNode
import TandemStorage

/// How a replicated write ended for the client that sent it.
enum WriteOutcome {
    /// Applied locally: the answer is this node's app's response to the entry at `index`.
    case applied(AppliedResponse, index: UInt64)
    /// Tandem's own error; for `commit_timeout` the outcome is unknown (the entry may still commit).
    case failed(TandemErrorResponse)
}

/// Settings of the replicated write and read paths.
public struct WritePathSettings: Sendable {
    public var writeTimeoutMs: Int64 = 5_000
    public var maxPendingWrites = 1024
    public var readWaitMaxMs: Int64 = 2_000
    public var defaultReadConsistency: ReadConsistency = .local
    public var idempotencyTTLMs: Int64 = 24 * 3_600_000
    public var appState: AppState = .durable
    /// `TANDEM_SNAPSHOT_SAVE`; nil when the app is not snapshotted (then `snapshotRestore` is nil too).
    public var snapshotSave: AppHook?
    /// `TANDEM_SNAPSHOT_RESTORE`.
    public var snapshotRestore: AppHook?
    /// `TANDEM_SNAPSHOT_EVERY`.
    public var snapshotCadence: SnapshotCadence = .entries(10_000)
    /// `TANDEM_LOG_RETAIN`: entries kept behind a snapshot for slow followers.
    public var logRetainEntries: UInt64 = 5_000
    /// `TANDEM_DIVERGENCE_ACTION`.
    public var divergenceAction: DivergenceAction = .flag
    /// `TANDEM_STATE_DIGEST`; nil to compare digests of the apply responses.
    public var stateDigest: AppHook?
    /// `TANDEM_SNAPSHOT_TIMEOUT`: the longest a save or restore hook may run.
    public var snapshotTimeoutMs: Int64 = 600_000
    /// `TANDEM_IDEMPOTENCY_MAX_BYTES`: the idempotency table's byte bound (keys, and separately responses).
    public var idempotencyMaxBytes = 64 << 20
    public init() {}
}

/// The write path and the consistent-read waits, between client sessions and the node runtime: proposes writes,
/// matches applied entries back to the clients waiting for them, and wakes reads waiting for an applied index.
final class WritePath: ReplicaDelegate, ReplicaSnapshotDelegate {
    let runtime: ReplicaRuntime
    let applier: Applier
    private let settings: WritePathSettings
    private let loop: EventLoop
    private let log: Logger
    private let metrics: Metrics

    private struct PendingWrite {
        var completion: (WriteOutcome) -> Void
        var deadlineMs: Int64
    }
    /// How long writes in flight at a leader change still wait for their entry to commit under the new leader.
    static let leaderChangeGraceMs: Int64 = 1500
    /// Writes proposed by this node and not yet answered. Bounded by `maxPendingWrites` (then 503 overloaded).
    private var pendingWrites: [ProposalID: PendingWrite] = [:]
    /// Reads waiting until this replica applies an index, by that index. Bounded by client connections.
    private var appliedWaiters: [UInt64: [AppliedWaiter]] = [:]
    private var allWaiters: [AppliedWaiter] = []
    private var sweepTimer: TandemNet.Timer!
    private var digestTimer: TandemNet.Timer!
    let divergence: DivergenceMonitor
    private var lastReportedBlockIndex: UInt64 = 0
    private(set) var role: Role = .follower
    private(set) var leader: TandemConsensus.NodeID?
    private(set) var term: UInt64 = 0
    /// The commit index this node knew last (from the runtime), for readiness lag.
    var commitIndex: UInt64 { runtime.status.commitIndex }
    var appliedIndex: UInt64 { applier.appliedIndex }
    /// While replaying the log into a restarted in-memory app, up to this index: client traffic waits.
    private(set) var replayingThrough: UInt64?
    /// The highest index reported to the runtime as applied (a replay goes back below it; the runtime never does).
    private var reportedAppliedIndex: UInt64 = 0
    var isReplaying: Bool { replayingThrough != nil }
    /// This replica has, once, applied everything committed while a leader was known: until then it holds client
    /// traffic (503 not_ready), so a restarted node never serves a state older than what it acknowledged before.
    private(set) var hasCaughtUp = false
    /// Set when an in-memory app refused connections; cleared by the replay that follows its return.
    private(set) var appDownEpisode = false
    /// An in-memory app, this node restarted with history, and no snapshot to reset the app from: the app may
    /// still hold its state (only Tandem restarted) or not (both did). Tandem does not guess: it waits until it
    /// sees the app refuse a connection (a restart), then replays the whole log.
    private(set) var awaitingAppRestart = false
    /// Snapshots and compaction; nil when the runtime keeps no snapshot files.
    private(set) var snapshots: SnapshotManager?
    /// A restore the runtime asked for at start (a snapshot newer than the app's applied index, or an in-memory
    /// app rebuilt from its latest snapshot) has not finished: nothing is served or applied until it has.
    private(set) var restoringAtStart = false
    private var snapshotRetry: TandemNet.Timer?
    /// The latest state digest taken (`TANDEM_STATE_DIGEST`).
    private var lastStateDigest: (index: UInt64, digest: UInt64)?
    /// The listening socket of the in-memory app whose state this replica tracks (see `appConnectionLost`).
    private var appListener: AppListener?
    private var appReturnWatch: TandemNet.Timer?
    private var listenerRecheck: TandemNet.Timer?
    private let upstreamPort: UInt16
    /// Whether the app's listener can be seen here: only an app on loopback is surely in this network namespace.
    private let appListenerVisible: Bool

    private func readAppListener() -> AppListener? {
        appListenerVisible ? AppListener.read(port: upstreamPort) : nil
    }
    /// Set once `TANDEM_DIVERGENCE_ACTION=stop` (or a repair that gave up) stopped this replica, with the reason.
    private(set) var stoppedByDivergence: String?
    /// `TANDEM_DIVERGENCE_ACTION=repair`: the repair of this replica, when it is found diverged.
    private(set) var repair = DivergenceRepair()
    /// Retries saving the diverged copy while other snapshot work runs (its own timer: `snapshotRetry` may be busy).
    private var repairRetry: TandemNet.Timer?

    init(
        loop: EventLoop, runtime: ReplicaRuntime, upstreamHost: String, upstreamPort: UInt16,
        settings: WritePathSettings, maxBodyBytes: Int, metrics: Metrics, log: Logger
    ) {
        self.loop = loop
        self.runtime = runtime
        self.upstreamPort = upstreamPort
        appListenerVisible = AppListener.isLoopback(host: upstreamHost)
        self.settings = settings
        self.metrics = metrics
        self.log = log
        // An in-memory app starts from what the runtime hands out first: the whole log, or the entries after the
        // snapshot it is restored from.
        let startAfter = settings.appState == .memory ? runtime.currentAppliedIndex : runtime.recoveredAppliedIndex
        self.applier = Applier(
            loop: loop, upstreamHost: upstreamHost, upstreamPort: upstreamPort, startAfter: startAfter,
            idempotencyTTLMs: settings.idempotencyTTLMs, idempotencyMaxBytes: settings.idempotencyMaxBytes,
            responseBodyMaxBytes: max(maxBodyBytes, 16 << 20), log: log)
        divergence = DivergenceMonitor(
            peers: runtime.config.peers.map(\.id), resumedAfter: startAfter,
            comparesStates: settings.stateDigest != nil, log: log, metrics: metrics)
        applier.onApplied = { [unowned self] entry, response in self.onApplied(entry, response) }
        if settings.stateDigest != nil {
            // A state digest is taken with the applier paused right after its index: with pipelining, the app must
            // not have been sent anything beyond that index yet.
            let every = stateDigestEvery
            applier.pipelineStopsAfter = { $0 % every == 0 }
        }
        if runtime.snapshots != nil {
            snapshots = SnapshotManager(
                loop: loop, runtime: runtime, applier: applier, upstreamHost: upstreamHost,
                upstreamPort: upstreamPort, settings: settings, log: log)
        }
        if settings.appState == .durable {
            applier.redeliveryThrough = runtime.redeliveryThrough
            applier.mayApply = { [unowned runtime] index in runtime.mayApply(index) }
            runtime.onDurableAppliedAdvance = { [unowned applier] in applier.resume() }
            applier.restore(
                idempotency: Self.rebuildIdempotency(
                    runtime: runtime, through: startAfter, ttlMs: settings.idempotencyTTLMs,
                    maxBytes: settings.idempotencyMaxBytes, log: log))
        }
        if settings.appState == .memory {
            applier.onAppRefused = { [unowned self] in self.appSeenDown() }
            applier.isHoldingForRestartCheck = { [unowned self] in
                // With the app's listener tracked, every new connection is checked before anything is sent on it:
                // the app may have restarted while no connection was open (an app closing idle ones).
                self.appDownEpisode || self.awaitingAppRestart || self.runtime.cannotRebuildReason != nil
                    || self.appListener?.inodes.isEmpty == false
            }
            applier.onConnectedWhileHolding = { [unowned self] in self.connectedWhileHolding() }
            applier.onConnected = { [unowned self] in
                // The first app seen is the one whose state is tracked (a restart handled later records its own);
                // a listener not seen yet (read a moment too early) is looked for again.
                if self.appListener?.inodes.isEmpty ?? true { self.appListener = self.readAppListener() }
            }
            applier.onConnectionLost = { [unowned self] idle in self.appConnectionLost(idle: idle) }
            if runtime.startupRestore == nil && runtime.hasHistory && runtime.cannotRebuildReason == nil {
                awaitingAppRestart = true
                log.warning(
                    "in-memory app and no snapshot to reset it from: waiting to see the app restart",
                    metadata: ["hint": "restart the app, or set TANDEM_SNAPSHOT_SAVE and TANDEM_SNAPSHOT_RESTORE"])
            }
        }
        if let reason = runtime.cannotRebuildReason { log.error("this replica cannot rebuild its app: \(reason)") }
        runtime.delegate = self
        runtime.snapshotDelegate = self
        snapshots?.othersAppliedIndex = { [unowned self] in self.divergence.othersAppliedIndex }
        if let snapshot = runtime.startupRestore { restoreAtStart(snapshot) } else { takeBaselineIfNeeded() }
        runtime.onApplicationFrame = { [unowned self] peer, type, payload in
            guard type == DivergenceMonitor.frameType else { return }
            self.divergence.onReport(from: peer, payload: payload)
            self.checkDivergenceAction()
        }
        divergence.broadcast = { [unowned runtime] payload in
            runtime.broadcast(type: DivergenceMonitor.frameType, payload: payload)
        }
        digestTimer = TandemNet.Timer(loop: loop) { [unowned self] in
            self.broadcastDigest()
            self.carryOut(self.repair.tick(self.repairSituation, nowMs: EventLoop.preciseNowMs()))
        }
        digestTimer.scheduleRepeating(everyMs: 1000)
        sweepTimer = TandemNet.Timer(loop: loop) { [unowned self] in self.sweepDeadlines() }
        sweepTimer.scheduleRepeating(everyMs: 50)
    }

    /// Every node (whatever its role) tells its peers its digest at its applied index, once a second (with
    /// `TANDEM_STATE_DIGEST`: its latest state digest).
    private func broadcastDigest() {
        if settings.stateDigest != nil {
            if let last = lastStateDigest { divergence.reportCurrent(index: last.index, digest: last.digest) }
            return
        }
        divergence.reportCurrent(index: applier.digest.index, digest: applier.digest.value)
    }

    /// The app's state digest is taken at every multiple of this index (`TANDEM_STATE_DIGEST`): fixed indexes, so
    /// that every replica's digests meet at the same ones.
    var stateDigestEvery: UInt64 {
        if case .entries(let count) = settings.snapshotCadence, count < ApplyDigest.blockSize { return max(count, 1) }
        return ApplyDigest.blockSize
    }

    private func takeStateDigest(_ hook: AppHook) {
        snapshots?.stateDigest(hook) { [weak self] index, digest in
            guard let self, let digest else { return }
            self.lastStateDigest = (index, digest)
            self.divergence.recordApplied(index: index, digest: digest)
            self.divergence.reportOnce(index: index, digest: digest)
            self.checkDivergenceAction()
        }
    }

    /// What a replica found diverged does (`TANDEM_DIVERGENCE_ACTION`): `stop` stops applying and serving (it
    /// stays up, for inspection, and says why on /readyz and in its log) until it is rebuilt; `repair` starts the
    /// repair (`DivergenceRepair`); `flag` only reports it.
    func checkDivergenceAction() {
        guard divergence.isDiverged, stoppedByDivergence == nil else { return }
        switch settings.divergenceAction {
        case .flag:
            return
        case .stop:
            stopForDivergence("this replica's state differs from the majority's (TANDEM_DIVERGENCE_ACTION=stop)")
        case .repair:
            carryOut(repair.diverged(repairSituation, nowMs: EventLoop.preciseNowMs()))
        }
    }

    private func stopForDivergence(_ reason: String) {
        guard stoppedByDivergence == nil else { return }
        stoppedByDivergence = reason
        log.critical(
            "this replica stops applying and serving", metadata: ["reason": "\(reason)", "next": "README, Runbook"])
        applier.halt()
    }

    // MARK: divergence repair

    private var repairSituation: DivergenceRepair.Situation {
        let me = runtime.config.raft.id
        let authoritative = leader.map { $0 != me && divergence.majorityMembers.contains($0) } ?? false
        return DivergenceRepair.Situation(isLeader: role == .leader, leaderIsAuthoritative: authoritative)
    }

    private func carryOut(_ actions: [DivergenceRepair.Action]) {
        for action in actions {
            log.warning(
                "divergence repair", metadata: ["step": "\(action)", "phase": "\(repair.phase)"])
            switch action {
            case .transferLeadership:
                // To a member whose state the repair will copy: any of the majority that agreed.
                guard let target = divergence.majorityMembers.sorted().first else { continue }
                do { try runtime.transferLeadership(to: target) } catch {
                    log.warning("handing leadership over failed", metadata: ["to": "\(target)", "error": "\(error)"])
                }
            case .saveCopy:
                saveDivergedCopy()
            case .requestSnapshot:
                runtime.requestAppRebuild(
                    reason: "this replica's state differs from the majority's: it is being repaired from the "
                        + "leader's snapshot (TANDEM_DIVERGENCE_ACTION=repair)")
            case .markRepaired:
                divergence.reset()
                log.warning(
                    "this replica was repaired from the leader's snapshot and serves again",
                    metadata: ["applied": "\(applier.appliedIndex)", "repairs": "\(repair.completed)"])
            case .stop(let reason):
                stopForDivergence(reason)
            }
        }
    }

    /// Saves the app's diverged state aside, once no other snapshot work runs.
    private func saveDivergedCopy() {
        guard let snapshots else {
            carryOut(repair.copySaved(ok: false, repairSituation, nowMs: EventLoop.preciseNowMs()))
            return
        }
        guard snapshots.phase == .idle, !applier.isPaused else {
            repairRetry = TandemNet.Timer(loop: loop) { [weak self] in self?.saveDivergedCopy() }
            repairRetry?.schedule(afterMs: 200)
            return
        }
        snapshots.saveDivergedCopy { [weak self] info in
            guard let self else { return }
            self.carryOut(self.repair.copySaved(ok: info != nil, self.repairSituation, nowMs: EventLoop.preciseNowMs()))
        }
    }

    /// Every completed digest block is reported too, so no block goes unjudged however fast writes come.
    private func reportCompletedBlock() {
        guard let block = applier.digest.lastCompletedBlock, block.index != lastReportedBlockIndex else { return }
        lastReportedBlockIndex = block.index
        divergence.reportOnce(index: block.index, digest: block.digest)
    }

    /// The idempotency table's decisions for entries 1...index (a durable app keeps its state across this node's
    /// restart, so the keys it applied must keep being deduplicated): the table saved in the latest snapshot at or
    /// below `index`, then the log after it, with the responses the last graceful stop saved.
    private static func rebuildIdempotency(
        runtime: ReplicaRuntime, through index: UInt64, ttlMs: Int64, maxBytes: Int, log: Logger
    ) -> IdempotencyTable {
        var table = IdempotencyTable(ttlMs: ttlMs, maxBytes: maxBytes)
        var after: UInt64 = 0
        if let snapshot = runtime.latestSnapshot, snapshot.id.index <= index,
            let state = SnapshotManager.readTandemState(snapshot)
        {
            table = state.idempotency
            after = snapshot.id.index
        } else if runtime.logBase.index > 0 {
            log.warning(
                "the log is compacted and no snapshot holds the idempotency table: older keys are forgotten",
                metadata: ["logStart": "\(runtime.logBase.index + 1)"])
        }
        let saved = runtime.recoveredApplyPayload.flatMap(IdempotencyTable.decodeResponses) ?? [:]
        for entry in runtime.entries(after: after, through: index) where entry.kind == .normal {
            guard let command = try? WriteCommand.decode(entry.data) else { continue }
            table.rebuild(command: command, index: entry.index, timeMs: entry.timeMs, responses: saved)
        }
        if table.count > 0 {
            log.info(
                "idempotency keys restored from the log",
                metadata: ["keys": "\(table.count)", "savedResponses": "\(saved.count)"])
        }
        return table
    }

    /// A graceful stop: the entry being applied finishes (at most `graceMs`), then the runtime writes the exact
    /// applied index and the stored responses, so the next start delivers nothing twice. `completion` runs after.
    func stopGracefully(graceMs: Int64, completion: @escaping () -> Void) {
        applier.finishCurrent(timeoutMs: graceMs) { [unowned self] settled in
            if !settled {
                self.log.warning("stopping with an entry in flight to the app: the next start redelivers it")
            }
            self.stop(checkpointPayload: settled ? self.applier.idempotency.encodedResponses() : nil)
            completion()
        }
    }

    func stop(checkpointPayload: [UInt8]? = nil) {
        snapshots?.stop()
        snapshotRetry?.invalidate()
        sweepTimer.invalidate()
        digestTimer.invalidate()
        applier.stop()
        // Their fate is unknown (they may be appended, even committed): never report that as a definite failure.
        for (_, pending) in pendingWrites {
            pending.completion(
                .failed(
                    Self.error(
                        504, "commit_timeout",
                        "this node stopped before the write's outcome was known; retry with the same Idempotency-Key")))
        }
        pendingWrites.removeAll()
        runtime.stop(checkpointPayload: checkpointPayload)
    }

    // MARK: writes

    func submitWrite(_ command: WriteCommand, completion: @escaping (WriteOutcome) -> Void) {
        loop.assertOnLoopThread()
        precondition(pendingWrites.count <= settings.maxPendingWrites, "pending writes beyond their bound")
        guard pendingWrites.count < settings.maxPendingWrites else {
            metrics.recordShed("pending_writes")
            completion(.failed(Self.error(503, "overloaded", "too many writes waiting to commit", retryAfter: 1)))
            return
        }
        let id = runtime.makeProposalID()
        pendingWrites[id] = PendingWrite(
            completion: completion, deadlineMs: EventLoop.preciseNowMs() + settings.writeTimeoutMs)
        runtime.propose(command.encoded(), id: id) { [unowned self] result in
            // A refused proposal was appended nowhere: a definite failure, safe to report as such.
            if case .rejected(let error) = result {
                if error == .overloaded { self.metrics.recordShed("uncommitted_bytes") }
                self.pendingWrites.removeValue(forKey: id)?.completion(.failed(Self.answer(for: error)))
            }
        }
    }

    private static func answer(for error: ProposalError) -> TandemErrorResponse {
        switch error {
        case .noLeader: return Self.error(503, "no_leader", "no leader is known; retry shortly", retryAfter: 1)
        case .leadershipTransferInProgress:
            return Self.error(503, "no_leader", "leadership is being handed over; retry shortly", retryAfter: 1)
        case .overloaded: return Self.error(503, "overloaded", "the log has too many uncommitted bytes", retryAfter: 1)
        case .tooLarge:
            return TandemErrorResponse(
                status: 413, code: "body_too_large", message: "the write is too large for the log", retryable: false)
        }
    }

    static func error(_ status: Int, _ code: String, _ message: String, retryAfter: Int? = nil) -> TandemErrorResponse {
        TandemErrorResponse(
            status: status, code: code, message: message, retryable: true, retryAfterSeconds: retryAfter)
    }

    // MARK: reads

    /// Calls `completion(true)` once this replica has applied `index`, or `false` after `timeoutMs`.
    func waitUntilApplied(_ index: UInt64, timeoutMs: Int64, completion: @escaping (Bool) -> Void) {
        if applier.appliedIndex >= index {
            completion(true)
            return
        }
        let waiter = AppliedWaiter(
            index: index, deadlineMs: EventLoop.preciseNowMs() + timeoutMs, completion: completion)
        appliedWaiters[index, default: []].append(waiter)
        allWaiters.append(waiter)
    }

    /// A linearizable (ReadIndex) or lease read: the index to wait for, confirmed by the leader.
    func confirmRead(mode: ReadMode, completion: @escaping (Result<UInt64, ReadError>) -> Void) {
        runtime.read(mode: mode, completion: completion)
    }

    // MARK: runtime callbacks

    func replica(_ replica: ReplicaRuntime, didCommit entries: [Entry]) {
        applier.enqueue(entries)
    }

    func replica(_ replica: ReplicaRuntime, didChangeRole change: RoleChange) {
        let leaderChanged = change.leader != leader
        role = change.role
        leader = change.leader
        term = change.term
        checkCaughtUp()
        // The repair hears of the new role at its next tick (`digestTimer`), not here: this runs while the runtime
        // carries out a Ready, where a leadership transfer would change the core between ready() and advance().
        if leaderChanged && change.leader != nil {
            // A write forwarded to the old leader either reached the new leader's log (and then commits within a
            // few heartbeats) or is lost: waiting the whole write timeout for it only delays the honest 504.
            let cap = EventLoop.preciseNowMs() + Self.leaderChangeGraceMs
            for id in Array(pendingWrites.keys) where pendingWrites[id]!.deadlineMs > cap {
                pendingWrites[id]!.deadlineMs = cap
            }
        }
    }

    /// A connection to an in-memory app closed: did the app restart? Its listening socket answers that exactly
    /// when the app is in this network namespace (`AppListener`): the same socket, the same process, nothing to
    /// rebuild (an app closing idle connections costs nothing); none, the app is down; another, a new process,
    /// rebuilt at once, however quickly it came back. When Tandem cannot see the listener, an idle connection the
    /// app closed counts as a restart if hooks make that exact and cheap to recover from (restore, short replay);
    /// without hooks only a refused connection counts.
    private func appConnectionLost(idle: Bool, recheck: Bool = true) {
        switch AppListener.change(from: appListener, to: readAppListener()) {
        case .same:
            // A process that exits closes its connections and its listener one after the other: look once more.
            guard recheck else { return }
            listenerRecheck = TandemNet.Timer(loop: loop) { [weak self] in
                self?.appConnectionLost(idle: idle, recheck: false)
            }
            listenerRecheck?.schedule(afterMs: 50)
        case .gone:
            log.warning("the app's listening socket is gone: the app is down")
            appSeenDown()
            watchForAppReturn()
        case .replaced:
            log.warning("the app's listening socket changed: the app restarted (rebuilding its state)")
            appSeenDown()
            if idle { retryAppRestarted(afterMs: 0) }
        case .unknown:
            guard idle, let snapshots, snapshots.hasAppHooks, runtime.latestSnapshot != nil, !isReplaying,
                snapshots.phase == .idle
            else { return }
            log.info("the app closed its connection: treating it as a restart (restore, then replay)")
            appDownEpisode = true
            retryAppRestarted(afterMs: 100)
        }
    }

    /// Where this replica stands on whether its in-memory app restarted, for /status.
    var restartCheckState: String {
        if appDownEpisode { return "app seen down: rebuilding it when it is back" }
        if awaitingAppRestart { return "waiting to see the app restart" }
        if let reason = runtime.cannotRebuildReason { return reason }
        if isReplaying { return "replaying" }
        return appListener.map { $0.inodes.isEmpty ? "listener not visible" : "tracking the app's listener" } ?? "none"
    }

    /// The health probe connected to the app: an in-memory app back on its port between two probes, with no
    /// write since, is found by its new listening socket within one probe interval.
    func appProbeConnected() {
        guard settings.appState == .memory else { return }
        if appListener?.inodes.isEmpty ?? true {
            appListener = readAppListener()
            return
        }
        guard !appDownEpisode,
            AppListener.change(from: appListener, to: readAppListener()) == .replaced
        else { return }
        log.warning("the app's listening socket changed between two probes: the app restarted (rebuilding its state)")
        appSeenDown()
        appRestarted()
    }

    /// The applier connected and holds its request until this replica knows the app is the process it tracks.
    private func connectedWhileHolding() {
        if !appDownEpisode && !awaitingAppRestart && runtime.cannotRebuildReason == nil {
            switch AppListener.change(from: appListener, to: readAppListener()) {
            case .same, .unknown:
                applier.releaseHeld()
                return
            case .gone, .replaced:
                log.warning("the app's listening socket changed while no connection was open: the app restarted")
                appSeenDown()
            }
        }
        appRestarted()
    }

    /// Looks for the app's new listening socket every 100 ms while the app is down, and rebuilds the app as soon
    /// as one appears (the health probe may never see the app down if it comes back between two probes).
    private func watchForAppReturn() {
        appReturnWatch = TandemNet.Timer(loop: loop) { [weak self] in
            guard let self else { return }
            guard self.appDownEpisode else {
                self.appReturnWatch?.cancel()
                return
            }
            if let now = self.readAppListener(), !now.inodes.isEmpty {
                self.appReturnWatch?.cancel()
                self.appRestarted()
            }
        }
        appReturnWatch?.scheduleRepeating(everyMs: 100)
    }

    /// The app refused a connection: if it comes back it is a new process, and an in-memory app lost its state.
    func appSeenDown() {
        guard settings.appState == .memory else { return }
        appDownEpisode = true
        awaitingAppRestart = false
    }

    /// The app was seen gone (connection refused) and back: with an in-memory app its state is gone, so the
    /// retained log is replayed into it from the start before the node serves again. Called by the probe and by
    /// the applier, whichever sees the app first; one replay per episode.
    func appRestarted() {
        guard appDownEpisode else { return }
        appDownEpisode = false
        // The process being rebuilt now is the one tracked from here on.
        appListener = readAppListener()
        guard settings.appState == .memory, applier.appliedIndex > 0 else {
            applier.releaseHeld()
            return
        }
        // A take or a digest waiting for answers from the process that died would wait for ever.
        snapshots?.abandonPauseForLostApp()
        let through = applier.appliedIndex
        if let snapshots, snapshots.hasAppHooks, let snapshot = runtime.latestSnapshot, snapshot.id.index <= through,
            snapshot.id.index >= runtime.logBase.index
        {
            // The app is rebuilt from the latest snapshot and the log after it.
            log.warning(
                "the app restarted: restoring it from the latest snapshot, then replaying the log after it",
                metadata: ["snapshot": "\(snapshot.id.index)", "through": "\(through)"])
            replayingThrough = through
            // Whatever was in flight went to the process that died: it is applied again after the rebuild.
            applier.forgetRequestsToLostApp()
            snapshots.restore(snapshot) { [unowned self] result in
                switch result {
                case .success(let restored):
                    let state = restored.state
                    let through = max(through, restored.replacedAppliedIndex)
                    applier.replay(
                        history: runtime.entries(after: state.appliedIndex, through: through),
                        after: state.appliedIndex, idempotency: applier.idempotency, digest: applier.digest)
                    // A snapshot that covers every applied entry leaves nothing to replay: the replay is over.
                    replayingThrough = state.appliedIndex >= through ? nil : through
                    snapshots.resumeAfterRestore()
                    checkCaughtUp()
                case .failure:
                    appDownEpisode = true  // The app may not be up yet: tried again shortly.
                    retryAppRestarted(afterMs: 500)
                }
            }
            return
        }
        guard runtime.logBase.index == 0 else {
            log.error(
                "the app restarted but the log is compacted and there is no snapshot to restore it from",
                metadata: ["base": "\(runtime.logBase.index)"])
            return
        }
        log.warning(
            "the app restarted: replaying the log into it before serving again", metadata: ["through": "\(through)"])
        replayingThrough = through
        applier.replayFromStart(history: runtime.entries(after: 0, through: through))
    }

    private func retryAppRestarted(afterMs delay: Int64) {
        snapshotRetry = TandemNet.Timer(loop: loop) { [weak self] in self?.appRestarted() }
        snapshotRetry?.schedule(afterMs: delay)
    }

    // MARK: snapshots

    /// A restore the runtime found necessary at start: done before anything is applied or served.
    private func restoreAtStart(_ snapshot: SnapshotInfo) {
        guard let snapshots else { return }
        restoringAtStart = true
        snapshots.restore(snapshot) { [unowned self] result in
            switch result {
            case .success:
                restoringAtStart = false
                if runtime.currentAppliedIndex < snapshot.id.index { runtime.appStateReplaced(at: snapshot.id.index) }
                reportedAppliedIndex = max(reportedAppliedIndex, snapshot.id.index)
                snapshots.resumeAfterRestore()
                checkCaughtUp()
            case .failure:
                // The app may be starting: try again shortly; nothing is applied meanwhile.
                snapshotRetry = TandemNet.Timer(loop: loop) { [weak self] in self?.restoreAtStart(snapshot) }
                snapshotRetry?.schedule(afterMs: 1000)
            }
        }
    }

    /// An in-memory app with hooks, at the very first start: a snapshot of its empty state at index 0, so that a
    /// later restart of Tandem alone can reset the app before replaying (it never has to guess whether the app kept
    /// its state).
    private func takeBaselineIfNeeded() {
        guard settings.appState == .memory, let snapshots, snapshots.hasAppHooks, runtime.latestSnapshot == nil,
            !runtime.hasHistory, applier.appliedIndex == 0
        else { return }
        snapshots.take { [weak self] info in
            guard let self, info == nil, self.applier.appliedIndex == 0 else { return }
            self.snapshotRetry = TandemNet.Timer(loop: self.loop) { [weak self] in self?.takeBaselineIfNeeded() }
            self.snapshotRetry?.schedule(afterMs: 500)
        }
    }

    func replica(_ replica: ReplicaRuntime, restore snapshot: SnapshotInfo, completion: @escaping (Bool) -> Void) {
        guard let snapshots else {
            completion(false)
            return
        }
        snapshots.restore(snapshot) { [unowned self] result in
            switch result {
            case .success(let restored):
                let state = restored.state
                // What the app had applied before: entries after the snapshot up to it are replayed (a repair
                // replaces a state that was ahead of the leader's snapshot). Read now, not when the restore was
                // asked for: the entries in flight then were answered while the restore waited for them.
                let through = max(restored.replacedAppliedIndex, replayingThrough ?? 0)
                reportedAppliedIndex = max(reportedAppliedIndex, state.appliedIndex)
                replayingThrough = nil
                awaitingAppRestart = false  // The app holds the snapshot's state now, whatever it held before.
                appDownEpisode = false
                completion(true)
                let replays = through > state.appliedIndex && state.appliedIndex >= runtime.logBase.index
                if replays {
                    log.info(
                        "replaying the log after the restored snapshot",
                        metadata: ["after": "\(state.appliedIndex)", "through": "\(through)"])
                    replayingThrough = through
                    applier.replay(
                        history: runtime.entries(after: state.appliedIndex, through: through),
                        after: state.appliedIndex, idempotency: applier.idempotency, digest: applier.digest)
                }
                carryOut(repair.restored(replaying: replays))
                snapshots.resumeAfterRestore()
                // Nothing may follow to apply (the snapshot covered the whole log): readiness must not wait for it.
                checkCaughtUp()
            case .failure:
                completion(false)
            }
        }
    }

    func replica(_ replica: ReplicaRuntime, canInstall snapshot: SnapshotInfo) -> Bool {
        SnapshotManager.carriesAppState(snapshot)
    }

    /// The commit index this replica must apply before serving: the one known when it first heard of a leader.
    /// A fixed target, because under a steady write load the moving commit index is always a little ahead.
    private var catchUpTarget: UInt64?

    private func checkCaughtUp() {
        guard !hasCaughtUp else { return }
        let status = runtime.status
        guard status.leader != nil, status.commitIndex > 0 else { return }
        let target = catchUpTarget ?? status.commitIndex
        catchUpTarget = target
        if applier.appliedIndex >= target {
            hasCaughtUp = true
            log.info("caught up: serving clients", metadata: ["applied": "\(applier.appliedIndex)"])
        }
    }

    /// Why client requests must wait, or nil when they may be served.
    var notServingReason: String? {
        if let stoppedByDivergence { return stoppedByDivergence }
        if repair.isRepairing { return "this replica's state differs from the majority's: repair: \(repair.phase)" }
        if restoringAtStart { return "this replica is restoring its app from a snapshot" }
        if case .restoreFailed(let reason) = snapshots?.phase {
            return "restoring the app from a snapshot failed: \(reason)"
        }
        if case .restoring = snapshots?.phase { return "this replica is restoring its app from a snapshot" }
        if awaitingAppRestart {
            return "in-memory app with no snapshot to reset it from: waiting to see the app restart"
        }
        if let reason = runtime.cannotRebuildReason { return reason }
        if isReplaying { return "this replica is replaying the log into its restarted app" }
        if !hasCaughtUp { return "this replica has not caught up with the cluster yet" }
        return nil
    }

    private func onApplied(_ entry: Entry, _ response: AppliedResponse?) {
        loop.assertOnLoopThread()
        defer { checkCaughtUp() }
        if entry.index > reportedAppliedIndex {
            runtime.markApplied(entry.index)
            reportedAppliedIndex = entry.index
        }
        if let through = replayingThrough {
            if entry.index >= through {
                replayingThrough = nil
                log.info("replay finished: serving again", metadata: ["index": "\(entry.index)"])
                carryOut(repair.replayFinished())
            }
            if entry.index <= through { return }  // a replayed entry: nobody waits for it any more
        }
        // While a repair runs the state is about to be replaced: neither compared nor snapshotted (a snapshot of it
        // would end the request for the leader's).
        if !repair.isRepairing {
            if let hook = settings.stateDigest {
                // Before a snapshot that may be due at the same index: the digest's index is fixed, the snapshot's
                // not.
                if entry.index % stateDigestEvery == 0 { takeStateDigest(hook) }
            } else if entry.kind == .normal {
                divergence.recordApplied(index: entry.index, digest: applier.digest.value)
                reportCompletedBlock()
            }
            snapshots?.noteApplied()
        }
        checkDivergenceAction()
        if let id = entry.proposal, id.origin == runtime.config.raft.id,
            let pending = pendingWrites.removeValue(forKey: id)
        {
            let answer = response ?? Applier.tandemAnswer(500, "bad_entry", "the entry carried no request")
            pending.completion(.applied(answer, index: entry.index))
        }
        if let waiters = appliedWaiters.removeValue(forKey: entry.index) {
            for waiter in waiters { waiter.fire(true) }
        }
    }

    private func sweepDeadlines() {
        // Catching up can end without an apply (a restored snapshot that covers the whole log).
        checkCaughtUp()
        let now = EventLoop.preciseNowMs()
        for (id, pending) in pendingWrites where pending.deadlineMs <= now {
            pendingWrites.removeValue(forKey: id)
            metrics.recordCommitTimeout()
            pending.completion(
                .failed(
                    Self.error(
                        504, "commit_timeout",
                        "the write did not commit in time; it may still commit: retry with the same Idempotency-Key")))
        }
        guard !allWaiters.isEmpty else { return }
        allWaiters.removeAll { waiter in
            if waiter.isDone { return true }
            guard waiter.deadlineMs <= now else { return false }
            waiter.fire(false)
            appliedWaiters[waiter.index]?.removeAll { $0 === waiter }
            if appliedWaiters[waiter.index]?.isEmpty == true { appliedWaiters[waiter.index] = nil }
            return true
        }
    }
}

/// A read waiting for this replica to apply an index; fired exactly once (applied, or timed out).
final class AppliedWaiter {
    let index: UInt64
    let deadlineMs: Int64
    private var completion: ((Bool) -> Void)?

    init(index: UInt64, deadlineMs: Int64, completion: @escaping (Bool) -> Void) {
        self.index = index
        self.deadlineMs = deadlineMs
        self.completion = completion
    }

    var isDone: Bool { completion == nil }

    func fire(_ applied: Bool) {
        let completion = self.completion
        self.completion = nil
        completion?(applied)
    }
}
