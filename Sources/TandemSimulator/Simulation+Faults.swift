// The simulated network, crashes, restarts, stalls and partitions.

import Foundation
import TandemConsensus

/// A directed link between two nodes (by index).
struct Link: Hashable {
    var from: Int
    var to: Int
}

extension Simulation {
    // MARK: Network

    func send(_ message: Message) {
        let from = index(of: message.from), to = index(of: message.to)
        if blocked.contains(Link(from: from, to: to)) { return }
        if chaosActive && unit() < faults.dropRate { return }
        let copies = chaosActive && unit() < faults.duplicateRate ? 2 : 1
        for _ in 0..<copies {
            let delayMicros = faults.baseDelayMs * 1000 + randomMicros(upToMs: faults.jitterMs)
            queue.push(
                .deliver(message, to: to, incarnation: nodes[to].incarnation), atMicros: nowMicros + max(1, delayMicros)
            )
        }
    }

    // MARK: Scripted faults (also used by tests)

    /// Crashes a node: its process state, unsynced Ready and open connections are gone; its disk survives.
    public func crash(_ id: NodeID) { crash(index(of: id)) }

    /// Restarts a crashed node from what it persisted.
    public func restart(_ id: NodeID) { restart(index(of: id)) }

    /// Cuts every link between `group` and the other nodes, both ways.
    public func isolate(_ group: Set<NodeID>) {
        let inside = Set(group.map { index(of: $0) })
        blocked = []
        for a in nodes.indices where inside.contains(a) {
            for b in nodes.indices where !inside.contains(b) {
                blocked.insert(Link(from: a, to: b))
                blocked.insert(Link(from: b, to: a))
            }
        }
    }

    /// Cuts one direction of one link.
    public func block(from: NodeID, to: NodeID) { blocked.insert(Link(from: index(of: from), to: index(of: to))) }

    /// Restores every link; the connections a resetting partition closed come back (both ends are told).
    public func healPartition() {
        if !blocked.isEmpty { note("heal") }
        blocked = []
        for link in resetLinks { tellLink(link.from, about: link.to, up: true, closedByPeer: false) }
        resetLinks = []
    }

    /// Tells node `index` that its link to node `peer` closed or came back, after every message `peer` already sent
    /// it has arrived (a connection's end comes after its bytes, as TCP's FIN or reset follows the data before it).
    func tellLink(_ index: Int, about peer: Int, up: Bool, closedByPeer: Bool) {
        guard nodes[index].isUp else { return }
        let event = SimEvent.link(
            node: index, incarnation: nodes[index].incarnation, peer: nodes[peer].id, up: up, closedByPeer: closedByPeer
        )
        queue.push(event, atMicros: nowMicros + (faults.baseDelayMs + faults.jitterMs) * 1000 + 1)
    }

    /// Freezes a node's process (no ticks, no message handling) for `ms`; its clock keeps running.
    public func stall(_ id: NodeID, forMs ms: Int64) {
        let i = index(of: id)
        nodes[i].stalledUntilMicros = max(nodes[i].stalledUntilMicros, nowMicros + ms * 1000)
    }

    func crash(_ index: Int) {
        guard nodes[index].isUp else { return }
        report.crashes += 1
        note("crash \(nodes[index].id)")
        nodes[index].raft = nil
        nodes[index].readyInFlight = nil
        nodes[index].pendingInstall = nil
        nodes[index].unsyncedCommitIndex = nil
        nodes[index].waitingReads = []
        nodes[index].incarnation += 1
        nodes[index].stalledUntilMicros = 0
        abandonClientOperations(on: index)
        // The dead process's kernel closes its connections: every live peer sees its link reset at once.
        // (Not across a partition that drops packets: the reset never arrives there.)
        for peer in nodes.indices where peer != index && !blocked.contains(Link(from: index, to: peer)) {
            tellLink(peer, about: index, up: false, closedByPeer: true)
        }
    }

    func restart(_ index: Int) {
        guard !nodes[index].isUp else { return }
        note("restart \(nodes[index].id)")
        boot(index)
        for peer in nodes.indices where peer != index { tellLink(peer, about: index, up: true, closedByPeer: false) }
    }

    // MARK: Random faults

    func scheduleChaos() {
        chaosActive = true
        scheduleNext(.crash, rate: faults.crashesPerSecond)
        scheduleNext(.partition, rate: faults.partitionsPerSecond)
        scheduleNext(.stall, rate: faults.stallsPerSecond)
        scheduleNext(.membershipChange, rate: options.membershipChangesPerSecond)
    }

    /// Schedules the next event of a Poisson process with `rate` per second.
    func scheduleNext(_ event: SimEvent, rate: Double) {
        guard chaosActive, rate > 0 else { return }
        let waitS = -log(max(unit(), 1e-12)) / rate
        queue.push(event, atMicros: nowMicros + Int64(waitS * 1_000_000))
    }

    func crashRandomNode() {
        guard chaosActive else { return }
        let up = nodes.indices.filter { nodes[$0].isUp }
        if let victim = up.randomElement(using: &rng) {
            crash(victim)
            let downMs = 50 + Int64(rng.next() % 3000)
            queue.push(.restart(node: victim), atMicros: nowMicros + downMs * 1000)
        }
        scheduleNext(.crash, rate: faults.crashesPerSecond)
    }

    func startRandomPartition() {
        guard chaosActive else { return }
        report.partitions += 1
        let n = nodes.count
        var order = Array(nodes.indices)
        order.shuffle(using: &rng)
        switch rng.next() % 4 {
        case 3 where leaderID != nil:  // The leader cut off: the case that tests stale reads and lease safety.
            isolate([leaderID!])
        case 0, 3:  // Symmetric: a minority (or an even split) cut off.
            let size = 1 + Int(rng.next() % UInt64(max(1, n / 2)))
            isolate(Set(order.prefix(size).map { nodes[$0].id }))
        case 1:  // Asymmetric: some directions of some links fail.
            blocked = []
            for _ in 0..<(1 + Int(rng.next() % UInt64(n))) {
                let a = order[Int(rng.next() % UInt64(n))], b = order[Int(rng.next() % UInt64(n))]
                if a != b { blocked.insert(Link(from: a, to: b)) }
            }
        default:  // Bridge: two sides that only one node can talk to.
            blocked = []
            let bridge = order[0]
            let sideA = Set(order.dropFirst().prefix((n - 1) / 2))
            for a in sideA {
                for b in nodes.indices where b != bridge && !sideA.contains(b) {
                    blocked.insert(Link(from: a, to: b))
                    blocked.insert(Link(from: b, to: a))
                }
            }
        }
        if rng.next() % 2 == 0 {
            // A partition that resets connections (a firewall rejecting both ways): both ends of every link cut
            // both ways see it close. (One that resets one side and silently drops the other is the case the
            // closed-link shortcut trusts the network not to produce; see RaftConfig.)
            for link in blocked where blocked.contains(Link(from: link.to, to: link.from)) {
                resetLinks.insert(link)
                tellLink(link.from, about: link.to, up: false, closedByPeer: true)
            }
        }
        note("partition \(blocked.map { "\(nodes[$0.from].id)->\(nodes[$0.to].id)" }.sorted())")
        let healMs = 200 + Int64(rng.next() % 3000)
        partitionGeneration += 1
        queue.push(.heal(generation: partitionGeneration), atMicros: nowMicros + healMs * 1000)
        scheduleNext(.partition, rate: faults.partitionsPerSecond)
    }

    func stallRandomNode() {
        guard chaosActive else { return }
        let up = nodes.indices.filter { nodes[$0].isUp }
        if let victim = up.randomElement(using: &rng) {
            let ms = 100 + Int64(rng.next() % 1500)
            note("stall \(nodes[victim].id) for \(ms) ms")
            stall(nodes[victim].id, forMs: ms)
        }
        scheduleNext(.stall, rate: faults.stallsPerSecond)
    }

    // MARK: Healing and liveness

    /// Stops injecting faults: links heal, crashed nodes restart, messages are no longer lost or duplicated.
    func healEverything() {
        chaosActive = false
        clientsActive = false
        healPartition()
        for index in nodes.indices where !nodes[index].isUp { restart(index) }
        healedAtMicros = nowMicros
    }

    /// After healing: waits until a leader has committed an entry of its term and every node applied up to it.
    func runUntilConverged() {
        let startMicros = nowMicros
        let deadlineMs = nowMs + options.livenessBoundMs
        var converged = false
        while !converged && report.violation == nil && nowMs < deadlineMs {
            runUntil(ms: min(deadlineMs, nowMs + 20))
            converged = isConverged()
        }
        if report.violation != nil { return }
        guard converged else {
            fail("liveness: no leader committed and converged within \(options.livenessBoundMs)ms after healing")
            return
        }
        report.healToConvergedMs = (nowMicros - startMicros) / 1000
        // Let in-flight client operations settle so their outcomes are recorded, then let every node catch up.
        runUntil(ms: nowMs + 500)
        let settleDeadlineMs = nowMs + 2000
        while report.violation == nil && nowMs < settleDeadlineMs && !allApplicationsCaughtUp() {
            runUntil(ms: nowMs + 20)
        }
        if report.violation == nil && !allApplicationsCaughtUp() {
            fail("liveness: the nodes did not all apply the committed log within 2 s of converging")
        }
    }

    func allApplicationsCaughtUp() -> Bool {
        let members = convergenceMembers()
        let commit = members.compactMap { nodes[$0].raft?.commitIndex }.max() ?? 0
        return members.allSatisfy {
            nodes[$0].isUp && nodes[$0].app.appliedIndex == commit && nodes[$0].readyInFlight == nil
        }
    }

    /// The nodes that must converge: the members of the configuration of the live leader with the highest term (of
    /// the latest committed configuration when there is none). Removed and never-added nodes receive no log.
    func convergenceMembers() -> [Int] {
        let configuration = leaderID.flatMap { nodes[index(of: $0)].raft?.configuration } ?? committedConfiguration
        return nodes.indices.filter { configuration.contains(nodes[$0].id) }
    }

    func isConverged() -> Bool {
        guard let leader = nodes.indices.first(where: { nodes[$0].raft?.currentRole == .leader }) else { return false }
        let raft = nodes[leader].raft!
        let commit = raft.commitIndex
        guard raft.term(at: commit) == raft.currentTerm else { return false }
        // Every member follows this leader in its term: a stale leader that has not yet heard of a newer term
        // does not count. A leader whose own removal committed is handing off, not converged.
        guard raft.committedConfiguration.isVoter(nodes[leader].id) else { return false }
        return nodes.filter { raft.configuration.contains($0.id) }.allSatisfy {
            $0.isUp && $0.raft!.currentTerm == raft.currentTerm && $0.raft!.knownLeader == nodes[leader].id
                && $0.app.appliedIndex >= commit && $0.readyInFlight == nil
        }
    }
}
