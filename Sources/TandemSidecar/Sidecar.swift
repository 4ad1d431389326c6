// TandemSidecar: the process around the layers. It owns the client listener and its proxy path to the local
// app, the admin listener, metrics, readiness and the shutdown sequence; later it owns the node runtime that
// drives the consensus core. It must never parse bytes itself (TandemHTTP does), never call libevent directly
// (TandemNet does), and never block the loop thread.

import Glibc
import Logging
import TandemConfig
import TandemConsensus
import TandemNet
import TandemNode
import TandemStatusPage

/// Everything the sidecar needs to run, resolved from configuration by the executable.
public struct SidecarOptions: Sendable {
    public var nodeID = "tandem"
    public var proxy = ProxySettings()
    public var adminHost = "0.0.0.0"
    public var adminPort: UInt16 = 9400
    public var adminToken: String?
    /// The node runtime's configuration (consensus, peers, data directory, authentication).
    public var replica: ReplicaConfig?
    public var writePath = WritePathSettings()
    public var overload = OverloadSettings()
    /// Readiness fails when this replica's applied index trails the commit index by more than this many entries.
    public var readyLagMaxEntries: UInt64 = 1000
    /// How long SIGTERM waits for in-flight requests before closing them.
    public var drainTimeoutMs: Int64 = 10_000
    public var appProbeIntervalMs: Int64 = 1_000
    /// `TANDEM_APPLY_PIPELINE`: committed writes sent to the app ahead of their answers (1...256).
    public var applyPipeline = 16

    public init() {}
}

/// Rate limits and queueing (README, "Overload").
public struct OverloadSettings: Sendable {
    public var rateLimit: RateLimit?
    public var globalRateLimit: RateLimit?
    public var rateLimitKey: RateLimitKey = .ip
    /// Keys the per-key rate limiter remembers; beyond them (all still owing), keys share one overflow limit.
    public var rateLimitKeys = 100_000
    public var queueTargetMs: Int64 = 5
    /// Reads waiting for a slot towards the app.
    public var readQueueCapacity = 1024
    public init() {}
}

/// The running sidecar. Create it, then call `run()` on the thread that created it.
public final class Sidecar {
    private let options: SidecarOptions
    private let log: Logger
    private let loop: EventLoop
    private let metrics = Metrics()
    private let health = AppHealth()
    private let proxy: ProxyServer
    private let admin: AdminServer
    private let probe: AppProbe
    private let writePath: WritePath?
    private let admission: Admission
    private var handoffTimer: TandemNet.Timer?
    /// Each peer's phi, sampled every second over the last minute, for the status page's charts (bounded).
    private var phiHistory: [String: [(tMs: Int64, phi: Double)]] = [:]
    private var phiSampler: TandemNet.Timer?
    private var signalWatchers: [SignalWatcher] = []
    private var drainTimer: TandemNet.Timer?
    private var isStoppingReplication = false
    private var isStopped = false
    private var isDraining = false
    private let startedAtMs = EventLoop.preciseNowMs()

    public init(options: SidecarOptions, log: Logger) throws {
        self.options = options
        self.log = log
        ignoreBrokenPipeSignals()
        loop = try EventLoop()
        admin = try AdminServer(
            loop: loop, host: options.adminHost, port: options.adminPort, metrics: metrics,
            adminToken: options.adminToken,
            limits: AdminLimits(
                headerTimeoutMs: options.proxy.headerTimeoutMs, idleTimeoutMs: options.proxy.idleTimeoutMs))
        proxy = try ProxyServer(loop: loop, settings: options.proxy, metrics: metrics, health: health, log: log)
        probe = AppProbe(loop: loop, host: options.proxy.upstreamHost, port: options.proxy.upstreamPort, health: health)
        if let replicaConfig = options.replica {
            let runtime = try ReplicaRuntime(loop: loop, config: replicaConfig, log: log)
            if let note = runtime.recoveryNote { log.warning("\(note)") }
            runtime.onFatalDiskError = { error in
                log.critical("exiting: the disk failed", metadata: ["error": "\(error)"])
                exit(74)
            }
            writePath = WritePath(
                loop: loop, runtime: runtime, upstreamHost: options.proxy.upstreamHost,
                upstreamPort: options.proxy.upstreamPort, settings: options.writePath,
                maxBodyBytes: Int(options.proxy.limits.bodyMaxBytes), metrics: metrics, log: log)
            writePath?.applier.connectTimeoutMs = options.proxy.upstreamConnectTimeoutMs
            writePath?.applier.pipelineLimit = options.applyPipeline
        } else {
            writePath = nil
        }
        proxy.writePath = writePath
        admission = Admission(
            loop: loop, rateLimit: options.overload.rateLimit, globalRateLimit: options.overload.globalRateLimit,
            rateLimitKey: options.overload.rateLimitKey, rateLimitKeys: options.overload.rateLimitKeys,
            queueTargetMs: options.overload.queueTargetMs,
            writeQueueCapacity: options.writePath.maxPendingWrites,
            readQueueCapacity: options.overload.readQueueCapacity,
            metrics: metrics)
        proxy.admission = admission
        proxy.writePathSettings = options.writePath
        proxy.nodeID = options.nodeID
        admin.handler = { [unowned self] method, path, query in
            self.adminRoute(method: method, path: path, query: query)
        }
        if let runtime = writePath?.runtime {
            let members = MembersAdmin(runtime: runtime)
            admin.actionHandler = { request in members.answer(request) }
        }
        // Only a refused connection says the app process is gone; a slow probe under load must never trigger a
        // replay into an app that still holds its state.
        health.onRefused = { [unowned self] in self.writePath?.appSeenDown() }
        health.onProbeConnected = { [unowned self] in self.writePath?.appProbeConnected() }
        health.onChange = { [unowned self] reachable in
            if reachable {
                self.log.info("app answers", metadata: ["upstream": "\(self.upstreamAddress)"])
                self.writePath?.appRestarted()
            } else {
                self.log.warning("app unreachable", metadata: ["upstream": "\(self.upstreamAddress)"])
            }
        }
    }

    private var upstreamAddress: String { "\(options.proxy.upstreamHost):\(options.proxy.upstreamPort)" }

    /// Serves until SIGTERM or SIGINT, then drains and returns the exit code (0).
    public func run() -> Int32 {
        for signalNumber in [SIGTERM, SIGINT] {
            signalWatchers.append(
                SignalWatcher(loop: loop, signal: signalNumber) { [unowned self] number in
                    self.beginShutdown(signal: number)
                })
        }
        probe.start(intervalMs: options.appProbeIntervalMs)
        phiSampler = TandemNet.Timer(loop: loop, priority: .control) { [unowned self] in self.samplePhi() }
        phiSampler?.scheduleRepeating(everyMs: 1000)
        do {
            try writePath?.runtime.start()
        } catch {
            log.critical("cannot start the node runtime", metadata: ["error": "\(error)"])
            return 1
        }
        log.info(
            "listening",
            metadata: [
                "node": "\(options.nodeID)",
                "client": "\(options.proxy.listenHost):\(proxy.port)",
                "admin": "\(options.adminHost):\(admin.port)",
                "peer": "\(options.replica?.peerListenHost ?? "-"):\(writePath?.runtime.peerPort ?? 0)",
                "upstream": "\(upstreamAddress)",
            ])
        loop.run()
        log.info("stopped")
        return 0
    }

    private func beginShutdown(signal number: Int32) {
        guard !isDraining else {
            log.warning("second signal: stopping now")
            finishShutdown()
            return
        }
        isDraining = true
        log.info("draining", metadata: ["signal": "\(number)", "inFlight": "\(proxy.sessionCount)"])
        drainTimer = TandemNet.Timer(loop: loop, priority: .control) { [unowned self] in
            self.log.warning(
                "drain timeout: closing the remaining connections", metadata: ["open": "\(self.proxy.sessionCount)"])
            self.finishShutdown()
        }
        drainTimer?.schedule(afterMs: options.drainTimeoutMs)
        handOffLeadership { [unowned self] in
            self.proxy.onAllSessionsEnded = { [unowned self] in self.finishShutdown() }
            self.proxy.beginDrain()
        }
    }

    /// A leader that is asked to stop hands leadership to its most caught-up peer first, so writes resume
    /// without waiting for an election timeout. Waits at most two seconds, then drains anyway.
    private func handOffLeadership(then next: @escaping () -> Void) {
        guard let runtime = writePath?.runtime, runtime.status.role == .leader,
            let target = runtime.status.peers.max(by: { $0.matchIndex < $1.matchIndex })
        else {
            next()
            return
        }
        do {
            try runtime.transferLeadership(to: target.id)
            log.info("handing leadership over before stopping", metadata: ["to": "\(target.id)"])
        } catch {
            log.warning("cannot hand leadership over", metadata: ["error": "\(error)"])
            next()
            return
        }
        let deadline = EventLoop.preciseNowMs() + 2_000
        handoffTimer = TandemNet.Timer(loop: loop, priority: .control) { [unowned self] in
            if runtime.status.role != .leader || EventLoop.preciseNowMs() >= deadline {
                self.handoffTimer?.invalidate()
                next()
            }
        }
        handoffTimer?.scheduleRepeating(everyMs: 20)
    }

    private func finishShutdown() {
        proxy.onAllSessionsEnded = nil
        drainTimer?.invalidate()
        proxy.closeAll()
        guard let writePath, !isStoppingReplication else {
            writePath?.stop()  // A second signal: stop now; the next start redelivers what was in flight.
            finishStopping()
            return
        }
        isStoppingReplication = true
        writePath.stopGracefully(graceMs: 5_000) { [unowned self] in self.finishStopping() }
    }

    private func finishStopping() {
        guard !isStopped else { return }
        isStopped = true
        admission.stop()
        probe.stop()
        phiSampler?.invalidate()
        admin.close()
        for watcher in signalWatchers { watcher.invalidate() }
        loop.stop()
    }

    // MARK: admin endpoints

    private func adminRoute(method: String, path: String, query: String) -> AdminResponse {
        switch (method, path) {
        case ("GET", "/healthz"), ("HEAD", "/healthz"):
            return .json(200, "{\"status\":\"ok\"}")
        case ("GET", "/readyz"), ("HEAD", "/readyz"):
            let reasons = readinessProblems()
            let list = reasons.map { jsonString($0) }.joined(separator: ",")
            return .json(reasons.isEmpty ? 200 : 503, "{\"ready\":\(reasons.isEmpty),\"reasons\":[\(list)]}")
        case ("GET", "/metrics"):
            publishProcessGauges()
            return AdminResponse(
                status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics.render())
        case ("GET", "/status"):
            return .json(200, statusJSON())
        case ("GET", "/"):
            return AdminResponse(status: 200, contentType: "text/html; charset=utf-8", body: statusPage())
        case ("POST", "/admin/transfer-leadership"):
            return transferLeadership(query: query)
        default:
            return .json(404, errorJSON("not_found", "no endpoint \(method) \(path)", false))
        }
    }

    private func transferLeadership(query: String) -> AdminResponse {
        guard let runtime = writePath?.runtime else {
            return .json(409, errorJSON("no_replication", "this node runs without replication", false))
        }
        let target = query.split(separator: "&").compactMap { pair -> String? in
            let parts = pair.split(separator: "=", maxSplits: 1)
            return parts.count == 2 && parts[0] == "to" ? String(parts[1]) : nil
        }.first
        guard let target, !target.isEmpty else {
            return .json(400, errorJSON("bad_request", "name the new leader: ?to=<node id>", false))
        }
        do {
            try runtime.transferLeadership(to: NodeID(target))
            log.info("leadership transfer requested", metadata: ["to": "\(target)"])
            return .json(200, "{\"transferring\":true,\"to\":\(jsonString(target))}")
        } catch {
            let leader = runtime.status.leader?.rawValue
            let text: String
            switch error {
            case .notLeader: text = "this node is not the leader" + (leader.map { "; ask \($0)" } ?? "")
            case .unknownTarget: text = "\(target) is not a member"
            case .targetIsSelf: text = "\(target) is already the leader"
            case .alreadyInProgress: text = "a transfer is already in progress"
            }
            return .json(409, errorJSON("transfer_refused", text, true))
        }
    }

    private func readinessProblems() -> [String] {
        var reasons: [String] = []
        if isDraining { reasons.append("draining") }
        if !health.isReachable { reasons.append("app_unreachable") }
        if let writePath {
            let status = writePath.runtime.status
            if status.leader == nil { reasons.append("no_leader") }
            if writePath.applier.isStalled { reasons.append("apply_stalled") }
            if status.commitIndex > writePath.appliedIndex + options.readyLagMaxEntries { reasons.append("lagging") }
            if writePath.divergence.isDiverged { reasons.append("diverged") }
            if writePath.repair.isRepairing { reasons.append("repairing") }
            if writePath.stoppedByDivergence != nil { reasons.append("stopped_diverged") }
            if writePath.isReplaying { reasons.append("replaying") }
            if !writePath.hasCaughtUp { reasons.append("catching_up") }
            if writePath.restoringAtStart { reasons.append("restoring_snapshot") }
            if case .restoring = writePath.snapshots?.phase { reasons.append("restoring_snapshot") }
            if case .restoreFailed = writePath.snapshots?.phase { reasons.append("snapshot_restore_failed") }
            if writePath.awaitingAppRestart { reasons.append("awaiting_app_restart") }
            if writePath.runtime.cannotRebuildReason != nil { reasons.append("cannot_rebuild") }
            if writePath.runtime.isJoining { reasons.append("joining") }
            if writePath.runtime.isRemoved { reasons.append("removed") }
        }
        return reasons
    }

    private func statusJSON() -> String {
        guard let writePath else {
            return "{\"id\":\(jsonString(options.nodeID)),\"role\":\"standalone\",\"term\":0,\"leader\":null,"
                + "\"commitIndex\":0,\"appliedIndex\":0,\"digest\":null,\"diverged\":false,\"peers\":[],"
                + "\"cluster\":null}"
        }
        let runtime = writePath.runtime
        let status = runtime.status
        let links = Dictionary(runtime.transportStatus.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let now = EventLoop.preciseNowMs()
        func role(_ isVoter: Bool?) -> String { isVoter.map { $0 ? "\"voter\"" : "\"learner\"" } ?? "null" }
        func number(_ value: UInt64?) -> String { value.map(String.init) ?? "null" }
        // Only the leader tracks replication: elsewhere match index and lag are unknown (null), not 0.
        let leads = status.role == .leader
        let voters = Dictionary(
            runtime.membershipView.members.map { ($0.id, $0.isVoter) }, uniquingKeysWith: { first, _ in first })
        let peers = status.peers.map { peer -> String in
            let link = links[peer.id]
            let lastContact = peer.lastContactMs.map { String(max(0, now - $0)) } ?? "null"
            let lag = status.commitIndex > peer.matchIndex ? status.commitIndex - peer.matchIndex : 0
            return "{\"id\":\(jsonString(peer.id.rawValue)),\"address\":\(jsonString(link?.address ?? "")),"
                + "\"role\":\(role(voters[peer.id])),"
                + "\"connected\":\(link?.connected ?? false),\"phi\":\(jsonNumber(runtime.phi(for: peer.id))),"
                + "\"matchIndex\":\(number(leads ? peer.matchIndex : nil)),\"lagEntries\":\(number(leads ? lag : nil)),"
                + "\"lastContactMs\":\(lastContact)}"
        }.joined(separator: ",")
        // The members as the leader sees them; reading it keeps a follower fetching it while /status is polled.
        let cluster =
            runtime.leaderMembershipView.flatMap { seen -> String? in
                guard let leader = seen.view.leader else { return nil }
                let members = seen.view.members.map { member in
                    "{\"id\":\(jsonString(member.id.rawValue)),\"address\":\(member.address.map(jsonString) ?? "null"),"
                        + "\"role\":\(role(member.isVoter)),\"matchIndex\":\(number(member.matchIndex)),"
                        + "\"lagEntries\":\(number(member.lagEntries))}"
                }.joined(separator: ",")
                return "{\"asSeenBy\":\(jsonString(leader.rawValue)),\"ageMs\":\(seen.ageMs),\"members\":[\(members)]}"
            } ?? "null"
        let leader = status.leader.map { jsonString($0.rawValue) } ?? "null"
        return "{\"id\":\(jsonString(options.nodeID)),\"role\":\(jsonString(Self.roleName(status.role))),"
            + "\"term\":\(status.term),\"leader\":\(leader),\"commitIndex\":\(status.commitIndex),"
            + "\"appliedIndex\":\(writePath.appliedIndex),\"digest\":\(jsonString(writePath.applier.digest.hex)),"
            + "\"digestIndex\":\(writePath.applier.digest.index),\"diverged\":\(writePath.divergence.isDiverged),"
            + "\"repair\":{\"phase\":\(jsonString(writePath.repair.phase.description)),"
            + "\"completed\":\(writePath.repair.completed)},"
            + "\"lastIndex\":\(status.lastIndex),\"snapshot\":\(snapshotJSON(writePath)),"
            + "\"app\":{\"address\":\(jsonString(upstreamAddress)),\"reachable\":\(health.isReachable),"
            + "\"applyStalled\":\(writePath.applier.isStalled),"
            + "\"applier\":\(jsonString(writePath.applier.activity)),\"queued\":\(writePath.applier.backlog),"
            + "\"restartCheck\":\(jsonString(writePath.restartCheckState))},"
            + "\"draining\":\(isDraining),\"uptimeMs\":\(EventLoop.preciseNowMs() - startedAtMs),\"peers\":[\(peers)],"
            + "\"cluster\":\(cluster)}"
    }

    /// The snapshot part of /status: the latest snapshot, the log's start, and why this replica or a follower
    /// cannot be rebuilt, if so.
    private func snapshotJSON(_ writePath: WritePath) -> String {
        let runtime = writePath.runtime
        let latest = runtime.latestSnapshot.map {
            "{\"index\":\($0.id.index),\"term\":\($0.id.term),\"bytes\":\($0.fileBytes)}"
        }
        let hooks = writePath.snapshots?.hasAppHooks ?? false
        var problem = runtime.cannotRebuildReason
        if problem == nil && !hooks && runtime.logBase.index > 0 {
            problem = "no TANDEM_SNAPSHOT_SAVE/TANDEM_SNAPSHOT_RESTORE: a replica that loses its data cannot be rebuilt"
        }
        let unrebuildable = runtime.unrebuildablePeers.sorted().map { jsonString($0.rawValue) }.joined(separator: ",")
        return "{\"latest\":\(latest ?? "null"),\"logStartIndex\":\(runtime.logBase.index + 1),"
            + "\"appHooks\":\(hooks),\"cannotRebuild\":\(problem.map(jsonString) ?? "null"),"
            + "\"unrebuildablePeers\":[\(unrebuildable)]}"
    }

    private func samplePhi() {
        guard let runtime = writePath?.runtime else { return }
        let now = EventLoop.preciseNowMs()
        for peer in runtime.status.peers {
            var samples = phiHistory[peer.id.rawValue, default: []]
            samples.append((now, runtime.phi(for: peer.id)))
            samples.removeAll { now - $0.tMs > StatusPage.chartWindowMs }
            phiHistory[peer.id.rawValue] = samples
        }
    }

    /// The admin port's human page: members, roles, indexes, lag, and each peer's phi over the last minute.
    private func statusPage() -> String {
        let now = EventLoop.preciseNowMs()
        guard let writePath else {
            let model = StatusPageModel(
                nodeID: options.nodeID, role: "standalone", term: 0, leader: nil, commitIndex: 0, appliedIndex: 0,
                diverged: false, peers: [], nowMs: now)
            return StatusPage.render(model)
        }
        let runtime = writePath.runtime
        let status = runtime.status
        let links = Dictionary(runtime.transportStatus.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        func role(_ isVoter: Bool) -> StatusPageModel.MemberRole { isVoter ? .voter : .learner }
        // Only the leader tracks every peer; a follower hears from its leader alone, so for the others a missing
        // contact or a zero match index means "not tracked here" and is shown as unknown.
        let leads = status.role == .leader
        let voters = Dictionary(
            runtime.membershipView.members.map { ($0.id, $0.isVoter) }, uniquingKeysWith: { first, _ in first })
        let peers = status.peers.map { peer in
            let lastContact: StatusPageModel.LastContact =
                peer.lastContactMs.map { .heard(msAgo: max(0, now - $0)) }
                ?? (leads || peer.id == status.leader ? .never : .unknown)
            return StatusPageModel.Peer(
                id: peer.id.rawValue, address: links[peer.id]?.address ?? "", role: voters[peer.id].map(role),
                connected: links[peer.id]?.connected ?? false,
                phi: runtime.phi(for: peer.id), matchIndex: leads ? peer.matchIndex : nil,
                lagEntries: leads
                    ? (status.commitIndex > peer.matchIndex ? status.commitIndex - peer.matchIndex : 0) : nil,
                lastContact: lastContact, phiHistory: phiHistory[peer.id.rawValue] ?? [])
        }
        let cluster = runtime.leaderMembershipView.flatMap { seen -> StatusPageModel.Cluster? in
            guard let leader = seen.view.leader else { return nil }
            return StatusPageModel.Cluster(
                asSeenBy: leader.rawValue, ageMs: seen.ageMs,
                members: seen.view.members.map {
                    StatusPageModel.Cluster.Member(
                        id: $0.id.rawValue, address: $0.address, role: role($0.isVoter), matchIndex: $0.matchIndex,
                        lagEntries: $0.lagEntries)
                })
        }
        let model = StatusPageModel(
            nodeID: options.nodeID, role: Self.roleName(status.role), term: status.term,
            leader: status.leader?.rawValue,
            commitIndex: status.commitIndex, appliedIndex: min(writePath.appliedIndex, status.commitIndex),
            diverged: writePath.divergence.isDiverged, peers: peers, cluster: cluster, nowMs: now,
            phiThreshold: runtime.config.raft.phiThreshold)
        return StatusPage.render(model)
    }

    /// The contract names three roles; a pre-candidate is still a follower to the outside.
    static func roleName(_ role: Role) -> String {
        switch role {
        case .leader: return "leader"
        case .candidate: return "candidate"
        case .follower, .preCandidate: return "follower"
        }
    }

    private func publishProcessGauges() {
        metrics.setGauge(
            "tandem_app_reachable", help: "1 when the local app accepts connections.", value: health.isReachable ? 1 : 0
        )
        metrics.setGauge(
            "tandem_process_resident_memory_bytes", help: "Resident set size of this process.",
            value: Double(residentMemoryBytes()))
        metrics.setGauge(
            "tandem_concurrency_limit", help: "Adaptive concurrency limit, by lane.",
            value: Double(admission.readLimit), labels: "lane=\"read\"")
        metrics.setGauge(
            "tandem_concurrency_limit", help: "Adaptive concurrency limit, by lane.",
            value: Double(admission.writeLimit), labels: "lane=\"write\"")
        metrics.setCounter(
            "tandem_rate_limit_overflow_total",
            help: "Requests limited in the shared overflow bucket because the key table was full of keys that owe.",
            value: Double(admission.rateLimitOverflowChecks))
        metrics.setCounter(
            "tandem_admin_connections_evicted_total",
            help: "Quiet admin connections closed to make room for a new one at the cap.",
            value: Double(admin.evictedSessions))
        metrics.setGauge(
            "tandem_queue_length", help: "Requests waiting for a slot, by lane.",
            value: Double(admission.readQueueLength), labels: "lane=\"read\"")
        metrics.setGauge(
            "tandem_queue_length", help: "Requests waiting for a slot, by lane.",
            value: Double(admission.writeQueueLength), labels: "lane=\"write\"")
        guard let writePath else { return }
        let runtime = writePath.runtime
        let status = runtime.status
        let counters = runtime.counters
        for role in ["follower", "candidate", "leader"] {
            metrics.setGauge(
                "tandem_role", help: "1 for this node's current role.",
                value: Self.roleName(status.role) == role ? 1 : 0, labels: "role=\"\(role)\"")
        }
        metrics.setGauge("tandem_term", help: "The current term.", value: Double(status.term))
        metrics.setGauge(
            "tandem_commit_index", help: "The highest log index known committed.", value: Double(status.commitIndex))
        metrics.setGauge(
            "tandem_applied_index", help: "The highest log index applied to the local app.",
            value: Double(writePath.appliedIndex))
        metrics.setGauge(
            "tandem_last_index", help: "The highest index in the local log.", value: Double(status.lastIndex))
        metrics.setGauge(
            "tandem_apply_backlog_entries", help: "Committed entries waiting to be applied.",
            value: Double(writePath.applier.backlog))
        metrics.setGauge(
            "tandem_diverged",
            help: "1 when a majority of the cluster agrees on applied outcomes that differ from this replica's.",
            value: writePath.divergence.isDiverged ? 1 : 0)
        for (result, value) in [
            ("started", writePath.repair.started), ("completed", writePath.repair.completed),
            ("gave_up", writePath.repair.gaveUp),
        ] {
            metrics.setCounter(
                "tandem_divergence_repairs_total",
                help:
                    "Repairs of this replica from the leader's snapshot (TANDEM_DIVERGENCE_ACTION=repair), by result.",
                value: Double(value), labels: "result=\"\(result)\"")
        }
        metrics.setCounter(
            "tandem_digest_comparisons_total",
            help: "Verdicts this replica reached on its own digests against the other members'.",
            value: Double(writePath.divergence.comparisons))
        metrics.setGauge(
            "tandem_wal_size_bytes", help: "Bytes in the write-ahead log.", value: Double(counters.walBytes))
        metrics.setGauge(
            "tandem_uncommitted_bytes", help: "Uncommitted entry bytes (leader).",
            value: Double(status.uncommittedBytes))
        metrics.setCounter(
            "tandem_elections_total", help: "Elections this node started.", value: Double(counters.elections))
        metrics.setCounter(
            "tandem_leader_changes_total", help: "Changes of the known leader.", value: Double(counters.leaderChanges))
        metrics.setCounter(
            "tandem_fsync_total", help: "fsync calls on the write-ahead log.", value: Double(counters.fsyncCount))
        metrics.setCounter(
            "tandem_fsync_seconds_total", help: "Time spent in write-ahead log syncs.",
            value: Double(counters.fsyncMicrosTotal) / 1e6)
        metrics.setGauge(
            "tandem_fsync_max_seconds", help: "The slowest write-ahead log sync so far.",
            value: Double(counters.fsyncMicrosMax) / 1e6)
        for quantile in [0.5, 0.99] {
            metrics.setGauge(
                "tandem_commit_latency_seconds", help: "Leader commit latency over the last 1024 commits.",
                value: Double(counters.commitLatencyMicros.quantile(quantile)) / 1e6, labels: "quantile=\"\(quantile)\""
            )
        }
        let snapshotCounters = runtime.snapshotCounters
        for (name, help, value) in [
            ("tandem_snapshots_taken_total", "Snapshots this node took.", snapshotCounters.taken),
            (
                "tandem_log_compactions_total", "Times the log was compacted behind a snapshot.",
                snapshotCounters.compactions
            ),
            ("tandem_snapshot_sends_total", "Snapshot transfers to followers started.", snapshotCounters.sendsStarted),
            (
                "tandem_snapshot_send_failures_total", "Snapshot transfers to followers that failed.",
                snapshotCounters.sendsFailed
            ),
            ("tandem_snapshot_sent_bytes_total", "Snapshot bytes sent to followers.", snapshotCounters.bytesSent),
            ("tandem_snapshot_installs_total", "Snapshots received and installed.", snapshotCounters.installs),
            (
                "tandem_snapshot_receive_failures_total", "Snapshot receptions that failed.",
                snapshotCounters.receiveFailures
            ),
            ("tandem_snapshot_received_bytes_total", "Snapshot bytes received.", snapshotCounters.bytesReceived),
            (
                "tandem_snapshot_unrebuildable_total", "Followers that needed a snapshot this node could not give.",
                snapshotCounters.unrebuildable
            ),
            ("tandem_snapshot_restores_total", "App restores from a snapshot.", writePath.snapshots?.restores ?? 0),
            (
                "tandem_snapshot_restore_failures_total", "App restores that failed.",
                writePath.snapshots?.restoreFailures ?? 0
            ),
            (
                "tandem_snapshot_take_failures_total", "Snapshots that could not be taken.",
                writePath.snapshots?.takeFailures ?? 0
            ),
        ] {
            metrics.setCounter(name, help: help, value: Double(value))
        }
        metrics.setGauge(
            "tandem_log_start_index", help: "The first index kept in the log (after compaction).",
            value: Double(runtime.logBase.index + 1))
        metrics.setGauge(
            "tandem_snapshot_index", help: "Index of the latest snapshot on disk (0: none).",
            value: Double(runtime.latestSnapshot?.id.index ?? 0))
        metrics.setCounter(
            "tandem_applied_entries_total", help: "Entries applied to the local app.",
            value: Double(writePath.applier.appliedCount))
        metrics.setCounter(
            "tandem_apply_retries_total", help: "Apply attempts retried because the app was unreachable.",
            value: Double(writePath.applier.retryCount))
        metrics.setCounter(
            "tandem_peer_messages_dropped_total",
            help: "Consensus messages dropped (peer not connected or buffer full).",
            value: Double(counters.messagesDropped))
        for peer in status.peers {
            let label = "peer=\"\(peer.id.rawValue)\""
            metrics.setGauge(
                "tandem_peer_phi", help: "Phi-accrual suspicion of each peer.", value: runtime.phi(for: peer.id),
                labels: label)
            metrics.setGauge(
                "tandem_peer_match_index", help: "Highest index known replicated on each peer (leader).",
                value: Double(peer.matchIndex), labels: label)
            let lag = status.commitIndex > peer.matchIndex ? status.commitIndex - peer.matchIndex : 0
            metrics.setGauge(
                "tandem_peer_lag_entries", help: "Entries each peer trails the commit index by (leader).",
                value: Double(lag), labels: label)
        }
        for link in runtime.transportStatus {
            metrics.setGauge(
                "tandem_peer_connected", help: "1 while an authenticated link to the peer is up.",
                value: link.connected ? 1 : 0, labels: "peer=\"\(link.id.rawValue)\"")
        }
    }
}

/// Resident set size from /proc/self/statm (pages), for the metrics endpoint.
func residentMemoryBytes() -> Int {
    guard let file = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(file) }
    var size = 0
    var resident = 0
    guard fscanf_statm(file, &size, &resident) else { return 0 }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

private func fscanf_statm(_ file: UnsafeMutablePointer<FILE>, _ size: inout Int, _ resident: inout Int) -> Bool {
    var buffer = [CChar](repeating: 0, count: 128)
    guard fgets(&buffer, Int32(buffer.count), file) != nil else { return false }
    let fields = String(cString: buffer).split(separator: " ")
    guard fields.count >= 2, let total = Int(fields[0]), let rss = Int(fields[1]) else { return false }
    size = total
    resident = rss
    return true
}
