import TandemConsensus
import XCTest

/// A small deterministic harness for scenario tests: nodes tick every 10 ms, messages take `latencyMs`, every Ready
/// is carried out at once in the documented order, and links can be cut. Time advances in 1 ms steps.
struct TestCluster {
    var nodes: [NodeID: RaftNode] = [:]
    var disks: [NodeID: RecoveredState] = [:]
    var applied: [NodeID: [Entry]] = [:]
    var readyReads: [NodeID: [(id: ReadID, index: UInt64)]] = [:]
    var failedReads: [NodeID: [(id: ReadID, error: ReadError)]] = [:]
    var rejected: [NodeID: [(id: ProposalID, error: ProposalError)]] = [:]
    var accepted: [NodeID: [ProposalID]] = [:]
    var unknown: [NodeID: [ProposalID]] = [:]
    /// Messages in flight with their delivery time, in sending order.
    var inFlight: [(atMs: Int64, message: Message)] = []
    var blocked: Set<[NodeID]> = []
    var down: Set<NodeID> = []
    /// Frozen processes: they neither tick nor read messages, which wait for them in flight.
    var stalled: Set<NodeID> = []
    var nowMs: Int64 = 0
    var latencyMs: Int64 = 2
    let ids: [NodeID]
    let tune: (inout RaftConfig) -> Void
    /// Every message sent, for assertions on what crossed the network.
    var sent: [Message] = []
    /// The transport's frame limit: a message whose payload encodes larger is dropped, as the transport drops it.
    var maxPayloadBytes = Int.max
    var droppedTooLarge = 0

    // MARK: Snapshots
    /// Each node's latest snapshot on its disk: its log base point and the entries its app had applied through it.
    var snapshots: [NodeID: TestSnapshot] = [:]
    /// Every `Ready.snapshotsNeeded` listing: when, by which leader, for which follower.
    var snapshotListings: [(atMs: Int64, leader: NodeID, follower: NodeID)] = []
    /// Transfers in progress; each ends after `latencyMs` with an install and a report (or a failed report).
    var transfers: [(atMs: Int64, leader: NodeID, follower: NodeID, snapshot: TestSnapshot)] = []
    /// Transfers to these followers fail (reported to the leader as failed, nothing installed).
    var failSnapshotsTo: Set<NodeID> = []
    /// Snapshots installed, by follower, with their base.
    var installs: [(follower: NodeID, base: LogBase)] = []

    init(size: Int, tune: @escaping (inout RaftConfig) -> Void = { _ in }) {
        self.init(ids: (1...size).map { NodeID("n\($0)") }, tune: tune)
    }

    init(ids: [NodeID], tune: @escaping (inout RaftConfig) -> Void = { _ in }) {
        self.ids = ids
        self.tune = tune
        for (k, id) in ids.enumerated() {
            disks[id] = RecoveredState()
            nodes[id] = makeNode(id, seed: UInt64(k + 1) * 7919)
        }
    }

    func makeNode(_ id: NodeID, seed: UInt64) -> RaftNode {
        var config = RaftConfig(id: id, peers: ids)
        tune(&config)
        return RaftNode(config: config, recovered: disks[id]!, seed: seed)
    }

    // MARK: Time

    mutating func run(forMs ms: Int64) {
        for _ in 0..<ms { step() }
    }

    /// Runs until `condition` holds (checked every ms); returns the elapsed time, or nil after `limitMs`.
    @discardableResult
    mutating func run(untilWithinMs limitMs: Int64, _ condition: (TestCluster) -> Bool) -> Int64? {
        let start = nowMs
        while nowMs - start < limitMs {
            if condition(self) { return nowMs - start }
            step()
        }
        return condition(self) ? nowMs - start : nil
    }

    mutating func step() {
        nowMs += 1
        finishTransfers()
        let due = inFlight.filter { $0.atMs <= nowMs && !stalled.contains($0.message.to) }
        inFlight.removeAll { $0.atMs <= nowMs && !stalled.contains($0.message.to) }
        for (_, message) in due where !down.contains(message.to) {
            nodes[message.to]!.step(message, nowMs: nowMs)
            drain(message.to)
        }
        if nowMs % 10 == 0 {
            for id in ids where !down.contains(id) && !stalled.contains(id) {
                nodes[id]!.tick(nowMs: nowMs)
                drain(id)
            }
        }
    }

    /// Carries out every pending Ready of `id` in the documented order.
    mutating func drain(_ id: NodeID) {
        while nodes[id]!.hasReady {
            let ready = nodes[id]!.ready()
            if let installed = ready.installedBase {
                if installed.discardedSuffix {
                    disks[id]!.entries = []
                } else {
                    disks[id]!.entries.removeAll { $0.index <= installed.base.index }
                }
                disks[id]!.base = installed.base
                disks[id]!.baseConfiguration = nodes[id]!.baseConfiguration
            }
            let base = disks[id]!.base.index
            if let first = ready.entriesToPersist.first {
                disks[id]!.entries.removeSubrange(Int(first.index - base - 1)...)
                disks[id]!.entries.append(contentsOf: ready.entriesToPersist)
            } else if let truncate = ready.truncateFromIndex {
                disks[id]!.entries.removeAll { $0.index >= truncate }
            }
            for follower in ready.snapshotsNeeded {
                snapshotListings.append((nowMs, id, follower))
                transfers.append((nowMs + latencyMs, id, follower, snapshots[id]!))
            }
            if let hardState = ready.hardState { disks[id]!.hardState = hardState }
            for message in ready.messagesBeforePersist + ready.messages {  // Persisting is instant here.
                sent.append(message)
                if blocked.contains([message.from, message.to]) { continue }
                if message.encodedSizeBytes > maxPayloadBytes {
                    droppedTooLarge += 1
                    continue
                }
                inFlight.append((nowMs + latencyMs, message))
            }
            applied[id, default: []].append(contentsOf: ready.committedEntries)
            readyReads[id, default: []].append(contentsOf: ready.readyReads)
            failedReads[id, default: []].append(contentsOf: ready.failedReads)
            rejected[id, default: []].append(contentsOf: ready.rejectedProposals)
            accepted[id, default: []].append(contentsOf: ready.acceptedProposals.map(\.id))
            unknown[id, default: []].append(contentsOf: ready.unknownProposals)
            nodes[id]!.advance(ready)
        }
    }

    // MARK: Faults

    /// Cuts every link between `group` and the rest, both ways.
    mutating func isolate(_ group: Set<NodeID>) {
        for a in ids where group.contains(a) {
            for b in ids where !group.contains(b) {
                blocked.insert([a, b])
                blocked.insert([b, a])
            }
        }
    }

    mutating func heal() { blocked = [] }

    /// Unfreezes a stalled node. Its timer fires before it reads the messages that queued up, the worst order.
    mutating func wake(_ id: NodeID) {
        stalled.remove(id)
        nodes[id]!.tick(nowMs: nowMs)
        drain(id)
    }

    /// The runtime's compaction: snapshots the app at what it applied, then compacts the log through `index` (the
    /// core clamps it) and records the new base on disk. Returns the new base, or nil.
    @discardableResult
    mutating func compact(_ id: NodeID, through index: UInt64) -> LogBase? {
        let appliedEntries = applied[id] ?? []
        if let last = appliedEntries.last, last.index > snapshots[id]?.base.index ?? 0 {
            snapshots[id] = TestSnapshot(
                base: LogBase(index: last.index, term: last.term), applied: appliedEntries,
                configuration: nodes[id]!.configuration(at: last.index))
            // What the app holds is committed: a restart hands out entries after it only.
            disks[id]!.hardState.commitIndex = max(disks[id]!.hardState.commitIndex, last.index)
        }
        guard let base = nodes[id]!.compactLog(through: index) else { return nil }
        precondition(base.index <= snapshots[id]!.base.index, "compacted beyond the snapshot")
        disks[id]!.entries.removeAll { $0.index <= base.index }
        disks[id]!.base = base
        disks[id]!.baseConfiguration = nodes[id]!.baseConfiguration
        return base
    }

    /// Ends the snapshot transfers that are due: the follower restores and installs, and the leader is told.
    mutating func finishTransfers() {
        let due = transfers.filter { $0.atMs <= nowMs }
        transfers.removeAll { $0.atMs <= nowMs }
        for transfer in due {
            let (leader, follower, snapshot) = (transfer.leader, transfer.follower, transfer.snapshot)
            let reachable =
                !down.contains(follower) && !blocked.contains([leader, follower]) && !failSnapshotsTo.contains(follower)
            if reachable && snapshot.base.index > nodes[follower]!.commitIndex {
                applied[follower] = snapshot.applied  // Restored, and durable with the snapshot.
                snapshots[follower] = snapshot
                let installed = nodes[follower]!.installSnapshot(
                    snapshot.base, configuration: snapshot.configuration, from: leader)
                precondition(installed, "a snapshot beyond the commit index is installed")
                installs.append((follower, snapshot.base))
                drain(follower)
            }
            guard !down.contains(leader) else { continue }
            nodes[leader]!.reportSnapshot(to: follower, succeeded: reachable, nowMs: nowMs)
            drain(leader)
        }
    }

    mutating func crash(_ id: NodeID) {
        down.insert(id)
        inFlight.removeAll { $0.message.to == id }
    }

    /// Crashes `id` and starts it again with an empty data directory (a lost or replaced disk, same id).
    mutating func wipe(_ id: NodeID, seed: UInt64 = 99) {
        crash(id)
        disks[id] = RecoveredState()
        snapshots[id] = nil
        restart(id, seed: seed)
    }

    /// Restarts `id` from its disk: the app from its snapshot (if any), the log from its base.
    mutating func restart(_ id: NodeID, seed: UInt64 = 99) {
        down.remove(id)
        disks[id]!.handOutAfter = snapshots[id]?.base.index ?? 0
        applied[id] = snapshots[id]?.applied ?? []
        nodes[id] = makeNode(id, seed: seed)
    }

    // MARK: Queries

    var leaders: [NodeID] { ids.filter { !down.contains($0) && nodes[$0]!.currentRole == .leader } }

    /// The single live leader with the highest term, if any.
    var leader: NodeID? {
        leaders.max { nodes[$0]!.currentTerm < nodes[$1]!.currentTerm }
    }

    mutating func electLeader(file: StaticString = #filePath, line: UInt = #line) -> NodeID {
        let elapsed = run(untilWithinMs: 5000) { cluster in
            guard let leader = cluster.leader else { return false }
            let node = cluster.nodes[leader]!
            return node.term(at: node.commitIndex) == node.currentTerm
        }
        XCTAssertNotNil(elapsed, "no leader committed within 5 s", file: file, line: line)
        return leader!
    }

    func followers(of leader: NodeID) -> [NodeID] { ids.filter { $0 != leader } }

    mutating func propose(_ text: String, at id: NodeID, sequence: UInt64) throws(ProposalError) {
        try nodes[id]!.propose(
            Array(text.utf8), id: ProposalID(origin: id, sequence: sequence), wallTimeMs: nowMs,
            nowMs: nowMs)
        drain(id)
    }

    mutating func read(_ sequence: UInt64, at id: NodeID, mode: ReadMode) -> ReadID {
        let readID = ReadID(origin: id, sequence: sequence)
        nodes[id]!.requestRead(id: readID, mode: mode, nowMs: nowMs)
        drain(id)
        return readID
    }

    func appliedPayloads(_ id: NodeID) -> [String] {
        (applied[id] ?? []).filter { $0.kind == .normal }.map { String(decoding: $0.data, as: UTF8.self) }
    }
}

/// A test node's snapshot: the log point it covers and the app's state there (the entries it had applied).
struct TestSnapshot {
    var base: LogBase
    var applied: [Entry]
    /// The cluster configuration in force at `base.index`, carried with the snapshot.
    var configuration: ClusterConfiguration? = nil
}
