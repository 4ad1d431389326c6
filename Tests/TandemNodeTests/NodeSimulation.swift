import Logging
import TandemConsensus
import TandemStorage
import TandemTransport

@testable import TandemNode

/// The faults and shape of one seeded run.
struct NodeSimulationOptions: CustomStringConvertible {
    var seed: UInt64
    var nodeCount = 3
    /// Node ids of 40 characters (pod names), which make every entry's encoding longer.
    var longIDs = false
    var chaosMs: Int64 = 10_000
    var settleMs: Int64 = 10_000
    var crashesPerSecond = 0.3
    var gracefulRestartsPerSecond = 0.3
    /// Cuts of one node's links for longer than the election timeout.
    var blipsPerSecond = 0.3
    /// Restarts of an app alone (its sidecar keeps running), and of a whole pod (sidecar crash and app restart).
    var appRestartsPerSecond = 0.2
    var podCrashesPerSecond = 0.1
    /// The longest fsync on an ordinary disk, and on the one slow disk (if any).
    var diskLatencyMs: Int64 = 3
    var slowDiskLatencyMs: Int64 = 0
    /// How many nodes (the first ones) have the slow disk, and from when in the run (0: from the start).
    var slowDiskCount = 1
    var slowDiskAfterMs: Int64 = 0
    /// From then, for that long, no fsync of the node leading at that moment completes (a hung device).
    var hungLeaderDiskAtMs: Int64 = 0
    var hungLeaderDiskForMs: Int64 = 0
    var fsyncFailureChance = 0.0
    /// Some proposals are large (tens to hundreds of KiB) against a small message and frame limit.
    var largeEntries = false

    /// No crash, restart or link cut: only what a test sets on top (slow or hung disks).
    static func withoutFaults(seed: UInt64) -> NodeSimulationOptions {
        var options = NodeSimulationOptions(seed: seed)
        options.crashesPerSecond = 0
        options.gracefulRestartsPerSecond = 0
        options.blipsPerSecond = 0
        options.appRestartsPerSecond = 0
        options.podCrashesPerSecond = 0
        return options
    }

    /// A random mix of faults for `seed` (a swarm: every run has a different profile).
    static func swarm(seed: UInt64) -> NodeSimulationOptions {
        var rng = SplitMix64(seed: seed ^ 0x5eed)
        func pick(_ values: [Double]) -> Double { values[Int(rng.next() % UInt64(values.count))] }
        var options = NodeSimulationOptions(seed: seed)
        options.nodeCount = rng.next() % 4 == 0 ? 5 : 3
        options.longIDs = rng.next() % 2 == 0
        options.crashesPerSecond = pick([0, 0.2, 0.5, 1])
        options.gracefulRestartsPerSecond = pick([0, 0.2, 0.5])
        options.blipsPerSecond = pick([0, 0.2, 0.5])
        options.appRestartsPerSecond = pick([0, 0.2, 0.5])
        options.podCrashesPerSecond = pick([0, 0.1, 0.3])
        options.slowDiskLatencyMs = Int64(pick([0, 0, 200, 800]))
        options.fsyncFailureChance = pick([0, 0, 0.001, 0.005])
        options.largeEntries = rng.next() % 3 == 0
        return options
    }

    var description: String {
        "seed \(seed): \(nodeCount) nodes, longIDs \(longIDs), crashes/s \(crashesPerSecond), graceful/s "
            + "\(gracefulRestartsPerSecond), blips/s \(blipsPerSecond), app restarts/s \(appRestartsPerSecond), pod "
            + "crashes/s \(podCrashesPerSecond), slow disk \(slowDiskLatencyMs) ms, fsync "
            + "failures \(fsyncFailureChance), large entries \(largeEntries)"
    }
}

/// What a run saw.
struct NodeSimulationReport {
    var violation: String?
    var committed = 0
    var proposals = 0
    var rejected = 0
    var unknown = 0
    var crashes = 0
    var gracefulRestarts = 0
    var blips = 0
    var fsyncFailures = 0
    var appRestarts = 0
    var redeliveries = 0
    /// Elections started over the whole run (`ReplicaCounters.elections` summed over the nodes at the end), and
    /// up to the moment the slow disks began when `slowDiskAfterMs` is set.
    var elections: UInt64 = 0
    var electionsBeforeSlowDisks: UInt64 = 0
    /// With `hungLeaderDiskAtMs`: the leader whose disk hung, how long after the hang began another node led, and
    /// how many entries the other nodes' apps applied during the hang (the fewest of them).
    var hungLeader: NodeID?
    var otherLeaderAfterHangMs: Int64?
    var appliedElsewhereDuringHang: UInt64 = 0
}

/// The app beside one node: durable across its sidecar's restarts, it records every index it is handed. It may
/// be down for a while (its own restart): the applier then waits, never skips.
final class ModelApp {
    var lastIndex: UInt64 = 0
    var downUntilMicros: Int64 = 0
}

/// The sidecar applier's contract, on the model app: entries in order from the recovered applied index, none
/// skipped, each at most `redeliveryWindow` beyond the applied index on disk, repeats after a crash marked.
final class ModelApplier: ReplicaDelegate {
    unowned let simulation: NodeSimulation
    let slot: Int
    unowned let runtime: ReplicaRuntime
    private var queue: [Entry] = []
    private(set) var appliedIndex: UInt64

    init(simulation: NodeSimulation, slot: Int, runtime: ReplicaRuntime) {
        self.simulation = simulation
        self.slot = slot
        self.runtime = runtime
        appliedIndex = runtime.recoveredAppliedIndex
    }

    func replica(_ replica: ReplicaRuntime, didCommit entries: [Entry]) {
        queue.append(contentsOf: entries.filter { $0.index > appliedIndex })
        drain()
    }

    func replica(_ replica: ReplicaRuntime, didChangeRole change: RoleChange) {}

    func drain() {
        guard simulation.slots[slot].applier === self else { return }  // Its process died.
        if simulation.slots[slot].app.downUntilMicros > simulation.world.nowMicros {
            // The app is restarting: retry later, as the applier does with backoff.
            simulation.world.schedule(afterMicros: 50_000) { [weak self] in self?.drain() }
            return
        }
        while let entry = queue.first {
            guard entry.index > appliedIndex else {
                queue.removeFirst()
                continue
            }
            guard entry.index == appliedIndex + 1 else {
                simulation.fail("node \(slot) was handed index \(entry.index) after \(appliedIndex): a gap")
                return
            }
            guard runtime.mayApply(entry.index) else { return }  // `resume` comes with the disk's progress.
            queue.removeFirst()
            simulation.deliver(entry, toApp: slot, markedRedelivery: entry.index <= runtime.redeliveryThrough)
            appliedIndex = entry.index
            runtime.markApplied(entry.index)
        }
    }
}

/// N real `ReplicaRuntime`s on a simulated clock, disks and network, with a model applier and app each; crashes,
/// graceful restarts, link cuts beyond the election timeout, slow and failing fsyncs, long ids, large entries.
final class NodeSimulation {
    final class Slot {
        let id: NodeID
        let durable = DurableDisk()
        let app = ModelApp()
        var runtime: ReplicaRuntime?
        var liveness: Liveness?
        var applier: ModelApplier?
        var disk: SimDisk?
        /// How the last run of this node ended, and what its applier had applied when it stopped gracefully:
        /// nothing up to there may ever reach the app again.
        var lastStopWasGraceful = false
        var gracefullyAppliedThrough: UInt64 = 0
        var diskLatencyMs: Int64

        init(id: NodeID, diskLatencyMs: Int64) {
            self.id = id
            self.diskLatencyMs = diskLatencyMs
        }
    }

    let options: NodeSimulationOptions
    let world: SimWorld
    let network: SimNetwork
    var slots: [Slot] = []
    var report = NodeSimulationReport()
    private var chaosEndsMicros: Int64 = 0
    /// The one committed entry at each index (term, proposal, data), as first applied anywhere.
    private var committed: [UInt64: Entry] = [:]
    private var proposalIndex: [ProposalID: UInt64] = [:]
    private var refused: Set<ProposalID> = []
    private var settleProposals: Set<ProposalID> = []

    init(options: NodeSimulationOptions) {
        self.options = options
        world = SimWorld(seed: options.seed)
        network = SimNetwork(world: world)
        for k in 1...options.nodeCount {
            let name = options.longIDs ? "tandem-replica-\(k)-" + String(repeating: "x", count: 24) : "n\(k)"
            let slow = k <= options.slowDiskCount && options.slowDiskLatencyMs > 0 && options.slowDiskAfterMs == 0
            slots.append(
                Slot(id: NodeID(name), diskLatencyMs: slow ? options.slowDiskLatencyMs : options.diskLatencyMs))
        }
    }

    var ids: [NodeID] { slots.map(\.id) }
    var quorum: Int { slots.count / 2 + 1 }

    /// The last events, printed with a violation.
    private var trace: [String] = []

    func note(_ event: String) {
        trace.append("t=\(world.nowMicros / 1000)ms \(event)")
        if trace.count > 40 { trace.removeFirst() }
    }

    func fail(_ message: String) {
        guard report.violation == nil else { return }
        report.violation = "t=\(world.nowMicros / 1000)ms: \(message)\nlast events:\n" + trace.joined(separator: "\n")
    }

    // MARK: the run

    func run() -> NodeSimulationReport {
        for slot in slots.indices { boot(slot) }
        chaosEndsMicros = options.chaosMs * 1000
        scheduleClient()
        scheduleChaos()
        if options.slowDiskAfterMs > 0 && options.slowDiskLatencyMs > 0 {
            world.schedule(afterMicros: options.slowDiskAfterMs * 1000) { [weak self] in
                guard let self else { return }
                self.report.electionsBeforeSlowDisks = self.electionsSoFar
                for slot in self.slots.prefix(self.options.slowDiskCount) {
                    slot.diskLatencyMs = self.options.slowDiskLatencyMs
                    slot.disk?.maxLatencyMs = self.options.slowDiskLatencyMs
                }
            }
        }
        if options.hungLeaderDiskAtMs > 0 && options.hungLeaderDiskForMs > 0 {
            world.schedule(afterMicros: options.hungLeaderDiskAtMs * 1000) { [weak self] in self?.hangLeaderDisk() }
        }
        world.run(untilMicros: chaosEndsMicros) { report.violation != nil }
        guard report.violation == nil else { return report }
        // Calm: every node up, links healed, disks sound; the cluster must converge and keep committing.
        for slot in slots {
            slot.disk?.failureChance = 0
            slot.diskLatencyMs = options.diskLatencyMs
            slot.disk?.maxLatencyMs = options.diskLatencyMs
        }
        for slot in slots.indices where slots[slot].runtime == nil { boot(slot) }
        world.run(untilMicros: world.nowMicros + 3_000_000) { report.violation != nil }
        for _ in 0..<5 { propose(settling: true) }
        world.run(untilMicros: world.nowMicros + options.settleMs * 1000) { report.violation != nil }
        guard report.violation == nil else { return report }
        checkConvergence()
        report.elections = electionsSoFar
        return report
    }

    /// Hangs the current leader's disk, then watches for another leader and for the others' progress meanwhile.
    private func hangLeaderDisk() {
        guard let leader = slots.first(where: { $0.runtime?.status.role == .leader }), let disk = leader.disk else {
            return
        }
        let startMicros = world.nowMicros
        let endMicros = startMicros + options.hungLeaderDiskForMs * 1000
        disk.hungUntilMicros = endMicros
        report.hungLeader = leader.id
        note("disk of leader \(leader.id) hangs until t=\(endMicros / 1000)ms")
        let others = slots.filter { $0 !== leader }
        let appliedAtStart = others.map(\.app.lastIndex)
        func watch() {
            world.schedule(afterMicros: 1000) { [weak self] in
                guard let self, self.world.nowMicros < endMicros else { return }
                if self.report.otherLeaderAfterHangMs == nil,
                    others.contains(where: { $0.runtime?.status.role == .leader })
                {
                    self.report.otherLeaderAfterHangMs = (self.world.nowMicros - startMicros) / 1000
                }
                watch()
            }
        }
        watch()
        world.schedule(afterMicros: endMicros - startMicros) { [weak self] in
            guard let self else { return }
            self.report.appliedElsewhereDuringHang =
                zip(others, appliedAtStart).map { $0.app.lastIndex - $1 }.min() ?? 0
        }
    }

    private var electionsSoFar: UInt64 { slots.compactMap { $0.runtime?.counters.elections }.reduce(0, +) }

    private func checkConvergence() {
        let applied = slots.map { $0.app.lastIndex }
        let commits = slots.compactMap { $0.runtime?.status.commitIndex }
        guard Set(applied).count == 1, let commit = commits.max(), applied[0] == commit else {
            fail("no convergence after the calm: apps at \(applied), commit indexes \(commits)")
            return
        }
        let settled = settleProposals.filter { proposalIndex[$0] != nil }
        if settled.isEmpty {
            fail("none of the writes proposed after the calm committed: the cluster is stuck")
        }
        report.committed = committed.values.filter { $0.proposal != nil }.count
    }

    // MARK: nodes

    func boot(_ index: Int) {
        let slot = slots[index]
        let liveness = Liveness()
        let clock = SimClock(
            world: world, liveness: liveness, wallOffsetMs: Int64(world.random(below: 2000)) - 1000)
        let disk = SimDisk(
            world: world, liveness: liveness, durable: slot.durable, maxLatencyMs: slot.diskLatencyMs,
            failureChance: world.nowMicros < chaosEndsMicros ? options.fsyncFailureChance : 0)
        var raft = RaftConfig(id: slot.id, peers: ids)
        if options.largeEntries {
            raft.maxMessageBytes = 512 * 1024
            raft.maxUncommittedBytes = 4 << 20
        }
        var config = ReplicaConfig(
            raft: raft, peers: ids.filter { $0 != slot.id }.map { PeerEndpoint(id: $0, host: "sim", port: 0) },
            peerListenHost: "sim", peerListenPort: 0, auth: .none, dataDirectory: "/nonexistent")
        // The tightest frame limit the configuration allows: every append the core builds must still fit.
        config.transport.maxFramePayloadBytes = raft.largestAppendPayloadBytes
        do {
            let recovery = try slot.durable.recover()
            let messenger = SimMessenger(
                network: network, selfID: slot.id, frameLimit: config.transport.maxFramePayloadBytes)
            let runtime = try ReplicaRuntime(
                config: config, clock: clock, disk: disk, recovery: recovery, messenger: messenger,
                seed: world.rng.next(), log: .silent)
            let applier = ModelApplier(simulation: self, slot: index, runtime: runtime)
            runtime.delegate = applier
            runtime.onDurableAppliedAdvance = { [weak applier] in applier?.drain() }
            runtime.onFatalDiskError = { [unowned self] _ in
                self.report.fsyncFailures += 1
                self.crash(index)
                self.scheduleRestart(index)
            }
            slot.runtime = runtime
            slot.liveness = liveness
            slot.applier = applier
            slot.disk = disk
            network.runtimes[slot.id] = (runtime, liveness)
            note(
                "boot \(slot.id): recovered applied \(runtime.recoveredAppliedIndex), redelivery through "
                    + "\(runtime.redeliveryThrough), app at \(slot.app.lastIndex), disk applied \(slot.durable.appliedIndex)"
            )
            try runtime.start()
        } catch {
            fail("node \(slot.id) cannot start: \(error)")
            return
        }
        // Its peers notice the new process when its connections come up.
        world.schedule(afterMicros: 2000) { [weak self] in
            guard let self, liveness.isAlive else { return }
            for other in self.ids where other != slot.id && !self.network.isCut(slot.id, other) {
                self.network.reconnected(slot.id, other)
            }
        }
    }

    /// kill -9: the process and everything it had not synced are gone; its app keeps running.
    func crash(_ index: Int) {
        let slot = slots[index]
        guard slot.liveness != nil else { return }
        endProcess(slot, graceful: false)
        report.crashes += 1
        note("crash \(slot.id): app at \(slot.app.lastIndex), disk applied \(slot.durable.appliedIndex)")
    }

    /// The process is gone: what it scheduled does nothing, its connections break, its objects are dropped.
    private func endProcess(_ slot: Slot, graceful: Bool) {
        slot.liveness?.isAlive = false
        network.processDied(slot.id)
        network.runtimes[slot.id] = nil
        slot.runtime = nil
        slot.liveness = nil
        slot.applier = nil
        slot.disk = nil
        slot.lastStopWasGraceful = graceful
    }

    /// SIGTERM: the runtime stops (writing its checkpoint), then the process exits.
    func stopGracefully(_ index: Int) {
        let slot = slots[index]
        guard let runtime = slot.runtime, slot.liveness != nil else { return }
        slot.gracefullyAppliedThrough = slot.applier?.appliedIndex ?? 0
        runtime.stop(checkpointPayload: [])
        endProcess(slot, graceful: true)
        report.gracefulRestarts += 1
        note(
            "graceful stop \(slot.id): app at \(slot.app.lastIndex), checkpoint "
                + "\(slot.durable.checkpoint?.appliedIndex ?? 0), disk applied \(slot.durable.appliedIndex)")
    }

    /// The app goes away for a while and comes back with its (durable) state.
    private func restartApp(_ index: Int) {
        report.appRestarts += 1
        slots[index].app.downUntilMicros = world.nowMicros + 100_000 + Int64(world.random(below: 1_400_000))
        note("app of \(slots[index].id) restarts")
    }

    private func scheduleRestart(_ index: Int) {
        world.schedule(afterMicros: 100_000 + Int64(world.random(below: 1_500_000))) { [weak self] in
            guard let self, self.slots[index].runtime == nil else { return }
            self.boot(index)
        }
    }

    // MARK: what the apps see

    func deliver(_ entry: Entry, toApp index: Int, markedRedelivery: Bool) {
        let slot = slots[index]
        if entry.index <= slot.app.lastIndex {
            report.redeliveries += 1
            if !markedRedelivery {
                fail("\(slot.id)'s app got index \(entry.index) twice without the redelivery mark")
            } else if slot.lastStopWasGraceful && entry.index <= slot.gracefullyAppliedThrough {
                fail("\(slot.id)'s app got index \(entry.index) again, applied before a graceful stop")
            }
            return
        }
        guard entry.index == slot.app.lastIndex + 1 else {
            fail("\(slot.id)'s app went from index \(slot.app.lastIndex) to \(entry.index)")
            return
        }
        slot.app.lastIndex = entry.index
        if let known = committed[entry.index] {
            if known.term != entry.term || known.proposal != entry.proposal || known.data != entry.data {
                fail("two different entries applied at index \(entry.index)")
            }
            return
        }
        committed[entry.index] = entry
        guard let proposal = entry.proposal else { return }
        if let other = proposalIndex[proposal] {
            fail("proposal \(proposal) committed twice, at \(other) and \(entry.index)")
        }
        if refused.contains(proposal) {
            fail("proposal \(proposal) was refused (definitely not appended) yet committed at \(entry.index)")
        }
        proposalIndex[proposal] = entry.index
    }

    // MARK: clients

    private func scheduleClient() {
        world.schedule(afterMicros: 5_000 + Int64(world.random(below: 20_000))) { [weak self] in
            guard let self, self.world.nowMicros < self.chaosEndsMicros else { return }
            self.propose(settling: false)
            self.scheduleClient()
        }
    }

    private func propose(settling: Bool) {
        let live = slots.filter { $0.runtime != nil }
        guard !live.isEmpty else { return }
        let slot = live[Int(world.random(below: UInt64(live.count)))]
        guard let runtime = slot.runtime else { return }
        let size =
            options.largeEntries && world.chance(0.2)
            ? 20_000 + Int(world.random(below: 400_000)) : 1 + Int(world.random(below: 300))
        var data = [UInt8](repeating: 0, count: size)
        for k in 0..<min(size, 16) { data[k] = UInt8(truncatingIfNeeded: world.rng.next()) }
        let id = runtime.makeProposalID()
        report.proposals += 1
        if settling { settleProposals.insert(id) }
        runtime.propose(data, id: id) { [weak self] result in
            guard let self else { return }
            switch result {
            case .accepted: break
            case .rejected:
                self.report.rejected += 1
                self.refused.insert(id)
                if let index = self.proposalIndex[id] {
                    self.fail("proposal \(id) refused after it committed at \(index)")
                }
            case .unknown: self.report.unknown += 1
            }
        }
    }

    // MARK: faults

    private func scheduleChaos() {
        world.schedule(afterMicros: 100_000) { [weak self] in
            guard let self, self.world.nowMicros < self.chaosEndsMicros - 1_000_000 else { return }
            self.chaosStep()
            self.scheduleChaos()
        }
    }

    private func chaosStep() {
        let down = slots.filter { $0.runtime == nil }.count
        let mayTakeDown = down < slots.count - quorum
        let index = Int(world.random(below: UInt64(slots.count)))
        if mayTakeDown && slots[index].runtime != nil && world.chance(options.crashesPerSecond / 10) {
            crash(index)
            scheduleRestart(index)
        } else if mayTakeDown && slots[index].runtime != nil && world.chance(options.gracefulRestartsPerSecond / 10) {
            stopGracefully(index)
            scheduleRestart(index)
        } else if mayTakeDown && slots[index].runtime != nil && world.chance(options.podCrashesPerSecond / 10) {
            crash(index)
            restartApp(index)
            scheduleRestart(index)
        } else if world.chance(options.appRestartsPerSecond / 10) {
            restartApp(index)
        } else if world.chance(options.blipsPerSecond / 10) {
            report.blips += 1
            // Longer than the election timeout (1 s, randomized to 2 s): the leader's links are cut too.
            network.cut(slots[index].id, from: ids, forMicros: 1_200_000 + Int64(world.random(below: 1_800_000)))
        }
    }
}
