// TandemSimulator: a deterministic simulator for the consensus core.
//
// It owns a virtual world: N `RaftNode`s in one thread, one seeded PRNG, virtual time in microseconds, a network that
// delays, drops, duplicates, reorders and partitions messages, disks that hold exactly what each node persisted from
// its Ready batches (a crash loses the rest), per-node clock drift and stalls, and clients whose history is checked
// for linearizability. After every event it checks Raft's safety properties; a run is a pure function of its seed.
//
// It must never read the real clock, use unseeded randomness, or reach into a node's private state: it sees the core
// only through its public API, exactly as the runtime will.

import TandemConsensus
import TandemLinearizability

/// What one simulated run does.
public struct SimulationOptions: Sendable {
    public var seed: UInt64
    public var nodeCount: Int = 3
    /// How long faults are injected before everything heals.
    public var chaosDurationMs: Int64 = 5000
    /// After healing, a leader must commit and every node apply it within this.
    public var livenessBoundMs: Int64 = 10_000
    public var faults: FaultProfile
    /// Each node's runtime ticks the core this often (on its own, possibly drifting, clock).
    public var tickIntervalMs: Int64 = 10
    public var clientCount: Int = 5
    /// A client waits up to this long between operations.
    public var clientThinkMs: Int64 = 30
    public var keys: [String] = ["a", "b"]
    /// A client gives up on an operation after this; a write's outcome then stays unknown.
    public var operationTimeoutMs: Int64 = 1500
    /// Adjusts each node's consensus configuration (defaults otherwise).
    public var tuning: @Sendable (inout RaftConfig) -> Void = { _ in }
    /// A description of `tuning`, for reports.
    public var timing = "defaults"
    /// Each node snapshots its application and compacts its log about this often (0: never). The compaction stops
    /// a random distance, up to `maxRetainedEntries`, behind its snapshot.
    public var compactionIntervalMs: Int64 = 0
    public var maxRetainedEntries: UInt64 = 0
    /// Nodes that exist beside the `nodeCount` initial voters but start outside the configuration: a leader may add
    /// them (as learners, then promote them).
    public var spareNodes = 0
    /// Mean membership changes the simulated operator proposes per second during chaos (0: none): add a spare as a
    /// learner, promote a learner, or remove a member (the leader too), keeping at least `minimumVoters`.
    public var membershipChangesPerSecond: Double = 0
    public var minimumVoters = 1

    public init(seed: UInt64, faults: FaultProfile = .none) {
        self.seed = seed
        self.faults = faults
    }

    /// The CI profile: a seed-drawn cluster size and fault profile in which every fault class is enabled.
    public static func everyFault(seed: UInt64) -> SimulationOptions {
        var rng = SplitMix64(seed: seed ^ 0x5EED_FA17)
        var options = SimulationOptions(seed: seed, faults: .everyFault(&rng))
        options.nodeCount = [1, 3, 3, 3, 5][Int(rng.next() % 5)]
        // Vary the timing too: a longer check-quorum window widens the time a deposed leader believes it leads,
        // and a low phi threshold makes elections frequent; both make read-safety bugs visible.
        let electionTimeoutMs: Int64 = [1000, 1000, 1500, 3000][Int(rng.next() % 4)]
        let phiThreshold: Double = [8, 8, 3][Int(rng.next() % 3)]
        options.tuning = { config in
            config.electionTimeoutMs = electionTimeoutMs
            config.phiThreshold = phiThreshold
        }
        options.timing = "election=\(electionTimeoutMs)ms phi=\(phiThreshold)"
        // Compaction: from off to every 100 ms keeping nothing, so that followers that fell behind a partition or a
        // crash often need a snapshot, which then travels through the same faulty network.
        options.compactionIntervalMs = [0, 100, 250, 500, 1000][Int(rng.next() % 5)]
        options.maxRetainedEntries = [0, 5, 20, 100][Int(rng.next() % 4)]
        if options.compactionIntervalMs > 0 {
            options.timing += " compaction=\(options.compactionIntervalMs)ms/\(options.maxRetainedEntries)"
        }
        return options
    }

    /// The membership CI profile: every fault class enabled, 3 or 5 initial voters and two spare nodes, and a
    /// simulated operator that keeps adding, promoting and removing members (the leader too) during the chaos.
    public static func membershipChurn(seed: UInt64) -> SimulationOptions {
        var options = everyFault(seed: seed)
        var rng = SplitMix64(seed: seed ^ 0x00C0_FFEE)
        options.nodeCount = [3, 3, 5][Int(rng.next() % 3)]
        options.spareNodes = 2
        options.minimumVoters = 2
        options.membershipChangesPerSecond = [1.0, 2.0, 4.0][Int(rng.next() % 3)]
        options.chaosDurationMs = 4000
        options.timing += " membership=\(options.membershipChangesPerSecond)/s"
        return options
    }
}

/// The outcome of a run.
public struct SimulationReport: Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var faults: FaultProfile
    public var nodeCount: Int
    public var timing: String
    /// The first safety or liveness property that failed, if any.
    public var violation: String?
    public var highestTerm: UInt64 = 0
    public var committedEntries: Int = 0
    public var acknowledgedWrites = 0
    public var unknownWrites = 0
    public var servedReads = 0
    public var crashes = 0
    public var partitions = 0
    /// Time from healing to a leader committing in its term with every node applied up to it.
    public var healToConvergedMs: Int64?
    public var linearizability: CheckResult?
    public var events = 0
    /// Log compactions, snapshot transfers started by leaders, and snapshots installed by followers.
    public var compactions = 0
    public var snapshotsSent = 0
    public var snapshotsInstalled = 0
    /// Installed snapshots whose Ready kept the log after the base (the rest reset the whole log).
    public var installsKeepingSuffix = 0
    /// Membership changes proposed and accepted by a leader, refused, and committed configurations seen.
    public var membershipProposed = 0
    public var membershipRefused = 0
    public var configurationsCommitted = 0

    public var description: String {
        "seed \(seed) nodes=\(nodeCount) [\(faults)] [\(timing)] term=\(highestTerm) committed=\(committedEntries) "
            + "writes ok=\(acknowledgedWrites) unknown=\(unknownWrites) reads=\(servedReads) crashes=\(crashes) "
            + "partitions=\(partitions) compactions=\(compactions) snapshots sent=\(snapshotsSent) "
            + "installed=\(snapshotsInstalled) (\(installsKeepingSuffix) keeping the log after) "
            + "membership proposed=\(membershipProposed) refused=\(membershipRefused) "
            + "committed=\(configurationsCommitted) healToConverged=\(healToConvergedMs.map { "\($0)ms" } ?? "-") "
            + "events=\(events) violation=\(violation ?? "none")"
    }
}

enum SimEvent {
    case tick(node: Int, incarnation: Int)
    case deliver(Message, to: Int, incarnation: Int)
    /// A snapshot streamed by `from` arrives at `to` (the stream died if `to` crashed since it started).
    case deliverSnapshot(SimSnapshot, from: Int, to: Int, incarnation: Int)
    /// The stream from `leader` to `peer` ended; the leader's runtime reports it to its core.
    case snapshotReport(leader: Int, incarnation: Int, peer: NodeID, succeeded: Bool)
    case diskDone(node: Int, incarnation: Int)
    case crash
    case restart(node: Int)
    case partition
    /// Heals the partition numbered `generation`, unless a newer one replaced it.
    case heal(generation: Int)
    case stall
    case clientStep(client: Int)
    case clientTimeout(client: Int, operation: Int)
    case livenessProbe
    case membershipChange
    /// `node`'s transport reports its link to `peer` closed (`closedByPeer`: reset or ended from the other side) or
    /// open again, as a real one does when a process dies or a partition resets and heals connections.
    case link(node: Int, incarnation: Int, peer: NodeID, up: Bool, closedByPeer: Bool)
}

/// A snapshot of the simulated application: its log point and its whole state there.
struct SimSnapshot {
    var base: LogBase
    var app: KVApp
    /// The cluster configuration in force at `base.index`, which travels with the snapshot.
    var configuration: ClusterConfiguration?
}

/// One simulated machine: the core, its disk, its application and its clock.
struct SimNode {
    let id: NodeID
    var raft: RaftNode?
    /// Bumped at each crash: messages and timers addressed to an older incarnation are dropped (TCP died with it).
    var incarnation = 0
    /// The log and hard state on disk. Its base is where the stored entries start; `snapshot` covers it.
    var disk = RecoveredState()
    /// The application snapshot on disk. Invariant: at or beyond `disk.base` (compaction never passes it).
    var snapshot: SimSnapshot?
    /// A snapshot restored and installed whose Ready (`installedBase`) is not yet on disk: it reaches the disk
    /// with that Ready, and a crash before loses both.
    var pendingInstall: SimSnapshot?
    var nextCompactionMicros: Int64 = 0
    var app = KVApp()
    var clockOffsetMicros: Int64
    var clockRate: Double
    /// The Ready whose fsync is in progress; lost if the node crashes first.
    var readyInFlight: Ready?
    /// A commit index written without an fsync (`Ready.mustSync` false): lost if the node crashes before the next
    /// synced batch carries it to disk.
    var unsyncedCommitIndex: UInt64?
    /// Confirmed reads waiting for the application to reach their index.
    var waitingReads: [(id: ReadID, index: UInt64)] = []
    var stalledUntilMicros: Int64 = 0
    var lastCommitSeen: UInt64 = 0
    var lastRole: Role = .follower
    var lastTerm: UInt64 = 0

    var isUp: Bool { raft != nil }
}

/// A deterministic simulated cluster. `run()` performs a whole seeded run; the other methods let tests script one.
public final class Simulation {
    public let options: SimulationOptions
    var rng: SplitMix64
    var queue = EventQueue<SimEvent>(capacity: 2_000_000)
    public internal(set) var nowMicros: Int64 = 0
    var nodes: [SimNode] = []
    var faults: FaultProfile
    var chaosActive = false
    var clientsActive = true
    var blocked: Set<Link> = []
    /// Links whose connections the current partition reset (both ends were told): told again when it heals.
    var resetLinks: Set<Link> = []
    var partitionGeneration = 0
    var report: SimulationReport

    // Safety registries (see Simulation+Checks.swift).
    var leaderOfTerm: [UInt64: Int] = [:]
    var committedLog: [Entry] = []
    var entriesSeen: [EntryKey: (entry: Entry, prevTerm: UInt64)] = [:]
    /// Every committed configuration entry, in index order (to check the configuration a snapshot carries).
    var committedConfigurations: [(index: UInt64, configuration: ClusterConfiguration)] = []
    /// The configuration of the highest committed configuration entry (the initial one before any).
    public internal(set) var committedConfiguration: ClusterConfiguration

    // Clients (see Simulation+Clients.swift).
    var clients: [SimClient] = []
    var history: [KVOperation] = []
    var excludedOperations: Set<Int> = []
    var pendingWrites: [ProposalID: Int] = [:]
    var pendingReads: [ReadID: Int] = [:]
    var nextSequence: UInt64 = 1

    /// Role transitions observed after each event: (time, node, role, term). Bounded by the run's length.
    public internal(set) var roleHistory: [(timeMs: Int64, node: NodeID, role: Role, term: UInt64)] = []
    var healedAtMicros: Int64?
    /// When set, notable events are recorded in `trace` (for debugging one seed).
    public var tracing = false
    public internal(set) var trace: [String] = []

    func note(_ text: @autoclosure () -> String) {
        if tracing { trace.append("\(nowMs) ms: " + text()) }
    }

    public init(options: SimulationOptions) {
        self.options = options
        rng = SplitMix64(seed: options.seed)
        faults = options.faults
        report = SimulationReport(
            seed: options.seed, faults: options.faults, nodeCount: options.nodeCount,
            timing: options.timing)
        let ids = (1...(options.nodeCount + options.spareNodes)).map { NodeID("n\($0)") }
        committedConfiguration = ClusterConfiguration(voters: Array(ids.prefix(options.nodeCount)))
        for id in ids {
            let drift = faults.maxClockDrift * (2 * unit() - 1)
            let offset = Int64(rng.next() % 1_000_000_000)
            nodes.append(SimNode(id: id, clockOffsetMicros: offset, clockRate: 1 + drift))
        }
        for index in nodes.indices { boot(index) }
        clients = (0..<options.clientCount).map { SimClient(id: $0) }
    }

    public var nowMs: Int64 { nowMicros / 1000 }
    public var nodeIDs: [NodeID] { nodes.map(\.id) }
    public var violation: String? { report.violation }

    // MARK: Whole run

    /// Runs chaos, heals, checks liveness and the clients' history. Stops at the first violation.
    public func run() -> SimulationReport {
        // Faults start once the first leader is up, so that every run spends its chaos with a working cluster.
        runUntil(ms: nowMs + 10_000) { self.leaderID != nil }
        scheduleChaos()
        startClients()
        runUntil(ms: nowMs + options.chaosDurationMs)
        return finish()
    }

    /// Starts the clients' closed loops (scripted runs call this, then `runUntil`, then `finish`).
    public func startClients() {
        for client in clients.indices {
            queue.push(.clientStep(client: client), atMicros: nowMicros + randomMicros(upToMs: 50))
        }
    }

    /// Heals every fault, requires a leader to commit and every node to converge in time, then checks the history.
    public func finish() -> SimulationReport {
        if report.violation == nil { healEverything() }
        if report.violation == nil { runUntilConverged() }
        if report.violation == nil { finalChecks() }
        return report
    }

    /// The live leader with the highest term, if any.
    public var leaderID: NodeID? {
        nodes.filter { $0.raft?.currentRole == .leader }.max { $0.raft!.currentTerm < $1.raft!.currentTerm }?.id
    }

    /// The live node's core, for inspection.
    public func node(_ id: NodeID) -> RaftNode? { nodes[index(of: id)].raft }

    /// The report so far.
    public var currentReport: SimulationReport { report }

    /// Processes events until virtual time reaches `ms`, a violation is found, or `until` returns true.
    public func runUntil(ms: Int64, until stop: () -> Bool = { false }) {
        let endMicros = ms * 1000
        while report.violation == nil, let next = queue.nextTimeMicros, next <= endMicros {
            let (timeMicros, event) = queue.pop()!
            nowMicros = timeMicros
            report.events += 1
            handle(event)
            if stop() { return }
        }
        if report.violation == nil { nowMicros = max(nowMicros, endMicros) }
    }

    func handle(_ event: SimEvent) {
        switch event {
        case .tick(let node, let incarnation): onTick(node, incarnation)
        case .deliver(let message, let node, let incarnation): onDeliver(message, node, incarnation)
        case .deliverSnapshot(let snapshot, let from, let to, let incarnation):
            onDeliverSnapshot(snapshot, from: from, to: to, incarnation)
        case .snapshotReport(let leader, let incarnation, let peer, let succeeded):
            onSnapshotReport(leader, incarnation, peer: peer, succeeded: succeeded)
        case .diskDone(let node, let incarnation): onDiskDone(node, incarnation)
        case .crash: crashRandomNode()
        case .restart(let node): restart(node)
        case .partition: startRandomPartition()
        case .heal(let generation): if generation == partitionGeneration { healPartition() }
        case .stall: stallRandomNode()
        case .clientStep(let client): clientStep(client)
        case .clientTimeout(let client, let operation): clientTimeout(client, operation)
        case .livenessProbe: break
        case .membershipChange: randomMembershipChange()
        case .link(let node, let incarnation, let peer, let up, let closedByPeer):
            onLink(node, incarnation, peer: peer, up: up, closedByPeer: closedByPeer)
        }
    }

    // MARK: Nodes

    func localMs(_ index: Int) -> Int64 {
        (nodes[index].clockOffsetMicros + Int64(Double(nowMicros) * nodes[index].clockRate)) / 1000
    }

    func boot(_ index: Int) {
        // Every simulated node is in every address book; the first `nodeCount` are the initial voters, and a spare
        // starts outside the configuration (so it never campaigns) until a leader adds it.
        var config = RaftConfig(id: nodes[index].id, peers: nodes.map(\.id))
        config.initialConfiguration = ClusterConfiguration(voters: Array(nodes.prefix(options.nodeCount).map(\.id)))
        config.minimumVoters = options.minimumVoters
        options.tuning(&config)
        var recovered = nodes[index].disk
        // The application keeps its state in memory: restored from its snapshot, then the log after it replays.
        recovered.handOutAfter = nodes[index].snapshot?.base.index ?? 0
        nodes[index].raft = RaftNode(config: config, recovered: recovered, seed: rng.next())
        nodes[index].app = nodes[index].snapshot?.app ?? KVApp()
        nodes[index].pendingInstall = nil
        nodes[index].nextCompactionMicros = nowMicros + compactionPeriodMicros()
        nodes[index].lastCommitSeen = 0
        nodes[index].lastRole = .follower
        nodes[index].lastTerm = recovered.hardState.term
        scheduleTick(index, afterMicros: randomMicros(upToMs: options.tickIntervalMs))
    }

    func scheduleTick(_ index: Int, afterMicros: Int64) {
        queue.push(.tick(node: index, incarnation: nodes[index].incarnation), atMicros: nowMicros + afterMicros)
    }

    /// Defers an event for a stalled node to the end of its stall; returns true if it did.
    func deferIfStalled(_ index: Int, _ event: SimEvent) -> Bool {
        guard nodes[index].stalledUntilMicros > nowMicros else { return false }
        queue.push(event, atMicros: nodes[index].stalledUntilMicros)
        return true
    }

    func onTick(_ index: Int, _ incarnation: Int) {
        guard nodes[index].isUp, nodes[index].incarnation == incarnation else { return }
        if nodes[index].stalledUntilMicros > nowMicros {
            // A stalled process misses its ticks; the next one fires when it wakes, late.
            queue.push(.tick(node: index, incarnation: incarnation), atMicros: nodes[index].stalledUntilMicros)
            return
        }
        if options.compactionIntervalMs > 0 && nowMicros >= nodes[index].nextCompactionMicros {
            nodes[index].nextCompactionMicros = nowMicros + compactionPeriodMicros()
            compact(index)
        }
        nodes[index].raft!.tick(nowMs: localMs(index), wallTimeMs: nowMs)
        afterStep(index)
        let intervalMicros = Int64(Double(options.tickIntervalMs * 1000) / nodes[index].clockRate)
        scheduleTick(index, afterMicros: max(1, intervalMicros))
    }

    func onLink(_ index: Int, _ incarnation: Int, peer: NodeID, up: Bool, closedByPeer: Bool) {
        guard nodes[index].isUp, nodes[index].incarnation == incarnation else { return }
        let event = SimEvent.link(node: index, incarnation: incarnation, peer: peer, up: up, closedByPeer: closedByPeer)
        if deferIfStalled(index, event) { return }
        if up {
            nodes[index].raft!.linkUp(to: peer, nowMs: localMs(index))
        } else {
            nodes[index].raft!.linkDown(to: peer, closedByPeer: closedByPeer, nowMs: localMs(index))
        }
        afterStep(index)
    }

    func onDeliver(_ message: Message, _ index: Int, _ incarnation: Int) {
        guard nodes[index].isUp, nodes[index].incarnation == incarnation else { return }
        if deferIfStalled(index, .deliver(message, to: index, incarnation: incarnation)) { return }
        nodes[index].raft!.step(message, nowMs: localMs(index))
        afterStep(index)
    }

    /// After any input to a node: check the safety properties, then carry out its effects.
    func afterStep(_ index: Int) {
        observe(index)
        pump(index)
    }

    /// Takes Ready batches while the node has them, carrying each out (at once, or after a simulated fsync).
    func pump(_ index: Int) {
        if report.violation == nil, nodes[index].isUp, nodes[index].readyInFlight != nil {
            // What may leave while the disk works goes now, as in the runtime.
            let free = nodes[index].raft!.takeMessagesFreeOfDisk()
            checkFreeOfDisk(index, free)
            for message in free { send(message) }
        }
        var rounds = 0
        while report.violation == nil, nodes[index].isUp, nodes[index].readyInFlight == nil,
            nodes[index].raft!.hasReady
        {
            rounds += 1
            precondition(rounds < 10_000, "a node keeps producing Ready batches without input")
            let ready = nodes[index].raft!.ready()
            checkReady(index, ready)
            // What the core lets leave before the disk goes now, as in the runtime.
            for message in ready.messagesBeforePersist { send(message) }
            let latencyMs = faults.maxDiskLatencyMs > 0 ? Int64(rng.next() % UInt64(faults.maxDiskLatencyMs + 1)) : 0
            if latencyMs == 0 {
                complete(index, ready)
            } else {
                nodes[index].readyInFlight = ready
                queue.push(
                    .diskDone(node: index, incarnation: nodes[index].incarnation),
                    atMicros: nowMicros + latencyMs * 1000)
            }
        }
    }

    func onDiskDone(_ index: Int, _ incarnation: Int) {
        guard nodes[index].isUp, nodes[index].incarnation == incarnation,
            let ready = nodes[index].readyInFlight
        else { return }
        nodes[index].readyInFlight = nil
        complete(index, ready)
        observe(index)
        pump(index)
    }

    /// Carries out one Ready in the documented order: persist, send, apply, release reads and proposals, advance.
    func complete(_ index: Int, _ ready: Ready) {
        persist(index, ready)
        for message in ready.messages { send(message) }
        for peer in ready.snapshotsNeeded { sendSnapshot(from: index, to: peer) }
        for entry in ready.committedEntries { apply(index, entry) }
        for read in ready.readyReads { nodes[index].waitingReads.append(read) }
        for (id, _) in ready.failedReads { readFailed(id) }
        for (id, _) in ready.rejectedProposals { writeRejected(id) }
        nodes[index].raft!.advance(ready)
        serveWaitingReads(index)
    }

    func persist(_ index: Int, _ ready: Ready) {
        guard ready.mustSync else {
            // Not synced: only a commit index, which a crash may lose (the runtime writes it without an fsync).
            if let hardState = ready.hardState { nodes[index].unsyncedCommitIndex = hardState.commitIndex }
            return
        }
        if let installed = ready.installedBase {
            guard let snapshot = nodes[index].pendingInstall, snapshot.base == installed.base else {
                fail("\(nodes[index].id) reports an installed base \(installed.base) it was not given")
                return
            }
            nodes[index].snapshot = snapshot
            nodes[index].pendingInstall = nil
            if !installed.discardedSuffix { report.installsKeepingSuffix += 1 }
            if installed.discardedSuffix {
                nodes[index].disk.entries = []
            } else {
                let drop = min(
                    Int(installed.base.index - nodes[index].disk.base.index), nodes[index].disk.entries.count)
                nodes[index].disk.entries.removeFirst(drop)
            }
            nodes[index].disk.base = installed.base
            nodes[index].disk.baseConfiguration = snapshot.configuration
        }
        let base = nodes[index].disk.base.index
        if let first = ready.entriesToPersist.first {
            precondition(first.index > base, "a Ready persists an entry at or before the log base")
            let keep = Int(first.index - base - 1)
            precondition(keep <= nodes[index].disk.entries.count, "a Ready left a gap in the log on disk")
            nodes[index].disk.entries.removeSubrange(keep...)
            nodes[index].disk.entries.append(contentsOf: ready.entriesToPersist)
        } else if let truncate = ready.truncateFromIndex {
            let keep = Int(max(truncate, base + 1) - base - 1)
            nodes[index].disk.entries.removeSubrange(min(keep, nodes[index].disk.entries.count)...)
        }
        if let hardState = ready.hardState {
            nodes[index].disk.hardState = hardState
        } else if let commit = nodes[index].unsyncedCommitIndex {
            nodes[index].disk.hardState.commitIndex = max(nodes[index].disk.hardState.commitIndex, commit)
        }
        nodes[index].unsyncedCommitIndex = nil
    }

    func apply(_ index: Int, _ entry: Entry) {
        checkApply(index, entry)
        guard report.violation == nil else { return }
        nodes[index].app.apply(entry)
        if let proposal = entry.proposal, proposal.origin == nodes[index].id {
            writeApplied(proposal, at: index)
        }
    }

    // MARK: Helpers

    func unit() -> Double { Double(rng.next() >> 11) / Double(1 << 53) }

    func randomMicros(upToMs ms: Int64) -> Int64 { ms <= 0 ? 0 : Int64(rng.next() % UInt64(ms * 1000)) }

    func index(of id: NodeID) -> Int { nodes.firstIndex { $0.id == id }! }

    func fail(_ message: String) {
        if report.violation == nil { report.violation = "t=\(nowMs)ms: " + message }
    }
}
