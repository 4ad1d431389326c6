import Logging
import TandemConsensus
import TandemStorage
import TandemTransport

@testable import TandemNode

/// Virtual time and one queue of events shared by every simulated node: deterministic for a seed.
final class SimWorld {
    private(set) var nowMicros: Int64 = 0
    var rng: SplitMix64
    private var heap: [(atMicros: Int64, sequence: UInt64, action: () -> Void)] = []
    private var sequence: UInt64 = 0

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    func schedule(afterMicros: Int64, _ action: @escaping () -> Void) {
        sequence += 1
        heap.append((nowMicros + max(0, afterMicros), sequence, action))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.before(heap[child], heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    /// Runs events until virtual time reaches `us` (or `stop` says so after an event).
    func run(untilMicros us: Int64, stop: () -> Bool = { false }) {
        while let first = heap.first, first.atMicros <= us {
            popFirst()
            nowMicros = max(nowMicros, first.atMicros)
            first.action()
            if stop() { return }
        }
        nowMicros = max(nowMicros, us)
    }

    private func popFirst() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count && Self.before(heap[left], heap[smallest]) { smallest = left }
            if right < heap.count && Self.before(heap[right], heap[smallest]) { smallest = right }
            guard smallest != parent else { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }

    private static func before(
        _ a: (atMicros: Int64, sequence: UInt64, action: () -> Void),
        _ b: (atMicros: Int64, sequence: UInt64, action: () -> Void)
    ) -> Bool {
        a.atMicros != b.atMicros ? a.atMicros < b.atMicros : a.sequence < b.sequence
    }

    func random(below bound: UInt64) -> UInt64 { bound == 0 ? 0 : rng.next() % bound }
    func chance(_ probability: Double) -> Bool { Double(rng.next() >> 11) / Double(1 << 53) < probability }
}

/// A flag shared by everything one run of one node scheduled: once the process dies, its timers and callbacks
/// do nothing (they died with it).
final class Liveness {
    var isAlive = true
}

final class SimTimer: NodeTimer {
    var isCancelled = false
    func cancel() { isCancelled = true }
}

/// `NodeClock` on virtual time; a node's clock may be offset from the world's (its wall clock too).
final class SimClock: NodeClock {
    let world: SimWorld
    let liveness: Liveness
    let wallOffsetMs: Int64

    init(world: SimWorld, liveness: Liveness, wallOffsetMs: Int64) {
        self.world = world
        self.liveness = liveness
        self.wallOffsetMs = wallOffsetMs
    }

    func nowMs() -> Int64 { world.nowMicros / 1000 + 1_000_000 }
    func nowMicros() -> Int64 { world.nowMicros + 1_000_000_000 }
    func wallClockMs() -> Int64 { 1_700_000_000_000 + world.nowMicros / 1000 + wallOffsetMs }
    func assertOnOwnThread() {}

    func after(ms: Int64, _ handler: @escaping () -> Void) -> NodeTimer {
        let timer = SimTimer()
        let liveness = self.liveness
        world.schedule(afterMicros: ms * 1000) {
            guard liveness.isAlive, !timer.isCancelled else { return }
            handler()
        }
        return timer
    }

    func every(ms: Int64, _ handler: @escaping () -> Void) -> NodeTimer {
        let timer = SimTimer()
        repeatEvery(ms: ms, timer: timer, handler)
        return timer
    }

    private func repeatEvery(ms: Int64, timer: SimTimer, _ handler: @escaping () -> Void) {
        let liveness = self.liveness
        world.schedule(afterMicros: ms * 1000) { [weak self] in
            guard liveness.isAlive, !timer.isCancelled, let self else { return }
            handler()
            self.repeatEvery(ms: ms, timer: timer, handler)
        }
    }

    func soon(_ handler: @escaping () -> Void) {
        let liveness = self.liveness
        world.schedule(afterMicros: 0) {
            guard liveness.isAlive else { return }
            handler()
        }
    }
}

/// What survives a crash of a node's process: the synced part of its disk, and its restart records.
final class DurableDisk {
    var entries: [WALEntry] = []
    var hardState: StoredHardState?
    var appliedIndex: UInt64 = 0
    var checkpoint: ApplyCheckpoint?
    var isRunningMarked = false
    var incarnation: UInt64 = NodeIncarnation.firstIncarnation - 1

    func apply(_ job: PersistJob) {
        if let index = job.truncateFrom, index <= UInt64(entries.count) {
            entries.removeSubrange(Int(index - 1)...)
        }
        if let first = job.entries.first {
            precondition(first.index <= UInt64(entries.count) + 1, "a job left a gap in the log on disk")
            entries.removeSubrange(min(Int(first.index - 1), entries.count)...)
            entries.append(contentsOf: job.entries)
        }
        if let hard = job.hardState { hardState = hard }
        if let applied = job.appliedIndex { appliedIndex = max(appliedIndex, applied) }
    }

    /// What a new run finds, and the marker and incarnation it writes before anything else.
    func recover() throws -> NodeRecovery {
        let previousRun = ApplyCheckpoint.Recovered(cleanStop: !isRunningMarked, checkpoint: checkpoint)
        isRunningMarked = true
        incarnation += 1
        let hard =
            hardState.map {
                TandemConsensus.HardState(term: $0.term, votedFor: $0.votedFor.map(NodeID.init), commitIndex: $0.commit)
            } ?? TandemConsensus.HardState()
        return NodeRecovery(
            entries: try entries.map { try EntryPayload.decode($0) }, hardState: hard, appliedIndex: appliedIndex,
            previousRun: previousRun, incarnation: incarnation)
    }
}

/// `NodeDisk` whose jobs complete, in order, after a simulated fsync latency; a crash loses the jobs not completed.
final class SimDisk: NodeDisk {
    let world: SimWorld
    let liveness: Liveness
    let durable: DurableDisk
    /// Per node and run: the longest fsync, and the chance that one fails (fatal for the node).
    var maxLatencyMs: Int64
    var failureChance: Double
    /// Until then, no job completes (a hung device): the ones due meanwhile complete, in order, when it ends.
    var hungUntilMicros: Int64 = 0
    private var pending: [(job: PersistJob, fails: Bool, completion: (PersistOutcome) -> Void)] = []
    private var lastCompletionMicros: Int64 = 0

    init(world: SimWorld, liveness: Liveness, durable: DurableDisk, maxLatencyMs: Int64, failureChance: Double) {
        self.world = world
        self.liveness = liveness
        self.durable = durable
        self.maxLatencyMs = maxLatencyMs
        self.failureChance = failureChance
    }

    func start() {}

    func submit(_ job: PersistJob, completion: @escaping (PersistOutcome) -> Void) {
        let latencyMicros = Int64(world.random(below: UInt64(maxLatencyMs * 1000 + 1)))
        pending.append((job, world.chance(failureChance), completion))
        lastCompletionMicros = max(lastCompletionMicros, world.nowMicros + latencyMicros, hungUntilMicros)
        completeFirst(atMicros: lastCompletionMicros)
    }

    /// One completion event: at `atMicros`, the first pending job completes (every event completes the first, so
    /// the order holds however the events are moved by a hang).
    private func completeFirst(atMicros: Int64) {
        let liveness = self.liveness
        world.schedule(afterMicros: atMicros - world.nowMicros) { [weak self] in
            guard liveness.isAlive, let self, !self.pending.isEmpty else { return }
            if self.hungUntilMicros > self.world.nowMicros {
                self.completeFirst(atMicros: self.hungUntilMicros)
                return
            }
            let (job, fails, completion) = self.pending.removeFirst()
            if fails {
                completion(PersistOutcome(error: .io(operation: "fsync", path: "sim", errno: 5)))
                return
            }
            self.durable.apply(job)
            completion(PersistOutcome())
        }
    }

    func stop() {
        for (job, _, _) in pending { durable.apply(job) }  // A stop finishes the queue, as the disk thread does.
        pending.removeAll()
    }

    func finish(_ checkpoint: ApplyCheckpoint) throws {
        durable.checkpoint = checkpoint
        durable.isRunningMarked = false
    }

    func nextIncarnation() throws -> UInt64 {
        durable.incarnation += 1
        return durable.incarnation
    }
}

/// The links between simulated nodes: TCP-like (in order per link, lost with the link), with delays and cuts.
final class SimNetwork {
    let world: SimWorld
    /// Nodes by id: the live runtime (nil while down) and its liveness.
    var runtimes: [NodeID: (runtime: ReplicaRuntime, liveness: Liveness)] = [:]
    /// Links cut until a time, by (from, to).
    var cutUntilMicros: [[NodeID]: Int64] = [:]
    /// Bumped when a link breaks: frames in flight on the old connection are lost.
    private var epochs: [[NodeID]: Int] = [:]
    private var lastDeliveryMicros: [[NodeID]: Int64] = [:]
    var maxLatencyMicros: Int64 = 3000
    private(set) var framesDelivered = 0
    private(set) var framesDroppedTooLarge = 0
    /// Links closed by a node because of a bad frame (`PeerMessenger.closeLink`).
    private(set) var droppedLinks = 0

    init(world: SimWorld) { self.world = world }

    func isCut(_ from: NodeID, _ to: NodeID) -> Bool { (cutUntilMicros[[from, to]] ?? 0) > world.nowMicros }

    /// Cuts both directions between `node` and every other node for `forMicros`; the links come back (and each side
    /// hears "link up") afterwards.
    func cut(_ node: NodeID, from others: [NodeID], forMicros: Int64) {
        for other in others where other != node {
            for pair in [[node, other], [other, node]] {
                cutUntilMicros[pair] = world.nowMicros + forMicros
                epochs[pair, default: 0] += 1
            }
        }
        world.schedule(afterMicros: forMicros + 1) { [weak self] in
            guard let self else { return }
            for other in others where other != node && !self.isCut(node, other) {
                self.reconnected(node, other)
            }
        }
    }

    /// One side closed the link between `a` and `b` (a bad frame): what was in flight on it is lost, and it comes
    /// back (each side hears "link up") a reconnect later, unless it is cut by then.
    func dropLink(_ a: NodeID, _ b: NodeID) {
        for pair in [[a, b], [b, a]] { epochs[pair, default: 0] += 1 }
        droppedLinks += 1
        world.schedule(afterMicros: 1000) { [weak self] in
            guard let self, !self.isCut(a, b) else { return }
            self.reconnected(a, b)
        }
    }

    /// A link (re)connected: each live side is told, as the transport tells the runtime.
    func reconnected(_ a: NodeID, _ b: NodeID) {
        for (side, peer) in [(a, b), (b, a)] {
            guard let node = runtimes[side], node.liveness.isAlive else { continue }
            node.runtime.linkUp(to: peer)
        }
    }

    /// A node's process ended: its connections break.
    func processDied(_ node: NodeID) {
        for key in Array(epochs.keys) + runtimes.keys.flatMap({ [[node, $0], [$0, node]] })
        where key.contains(node) {
            epochs[key, default: 0] += 1
        }
    }

    func send(type: UInt8, payload: [UInt8], from: NodeID, to: NodeID, frameLimit: Int) -> SendOutcome {
        guard payload.count <= frameLimit else {
            framesDroppedTooLarge += 1
            return .droppedTooLarge
        }
        guard !isCut(from, to), let receiver = runtimes[to], receiver.liveness.isAlive else {
            return .droppedNotConnected
        }
        let link = [from, to]
        let epoch = epochs[link, default: 0]
        let latency = 100 + Int64(world.random(below: UInt64(maxLatencyMicros)))
        let at = max(lastDeliveryMicros[link] ?? 0, world.nowMicros + latency)
        lastDeliveryMicros[link] = at
        let liveness = receiver.liveness
        world.schedule(afterMicros: at - world.nowMicros) { [weak self] in
            guard let self, self.epochs[link, default: 0] == epoch, liveness.isAlive,
                let node = self.runtimes[to], node.liveness === liveness
            else { return }
            self.framesDelivered += 1
            payload.withUnsafeBytes { node.runtime.receive(frameOfType: type, payload: $0, from: from) }
        }
        return .queued
    }
}

/// `PeerMessenger` of one node on the simulated network; frames go through the real codec.
final class SimMessenger: PeerMessenger {
    let network: SimNetwork
    let selfID: NodeID
    let frameLimit: Int
    private weak var runtime: ReplicaRuntime?

    init(network: SimNetwork, selfID: NodeID, frameLimit: Int) {
        self.network = network
        self.selfID = selfID
        self.frameLimit = frameLimit
    }

    var listenPort: UInt16 { 0 }
    var peerStatuses: [LinkStatus] { [] }
    func start(for runtime: ReplicaRuntime) throws { self.runtime = runtime }
    func stop() {}
    func closeLink(to peer: NodeID, reason: String) { network.dropLink(selfID, peer) }

    func send(_ message: Message) -> SendOutcome {
        let (type, payload) = ConsensusCodec.encode(message)
        return send(type: type, payload: payload, to: message.to)
    }

    func send(type: UInt8, payload: [UInt8], to peer: NodeID) -> SendOutcome {
        let outcome = network.send(type: type, payload: payload, from: selfID, to: peer, frameLimit: frameLimit)
        if outcome != .queued {
            runtime?.frameDropped(
                to: peer, type: type, payloadBytes: payload.count, tooLarge: outcome == .droppedTooLarge)
        }
        return outcome
    }
}

extension Logger {
    static let silent = Logger(label: "tandem-sim") { _ in SwiftLogNoOpLogHandler() }
}
