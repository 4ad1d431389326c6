// Log compaction and snapshot transfer, as the runtime does them: a node snapshots its application and compacts
// its log now and then; a leader streams its latest snapshot to each follower its core lists; the stream crosses
// the same faulty network as messages (delayed, lost, duplicated, cut by partitions and crashes), and the follower
// restores the application from it and installs it in its core.

import TandemConsensus

extension Simulation {
    /// The time to the next compaction: the configured interval, give or take half.
    func compactionPeriodMicros() -> Int64 {
        guard options.compactionIntervalMs > 0 else { return .max / 2 }
        return options.compactionIntervalMs * 500 + randomMicros(upToMs: options.compactionIntervalMs)
    }

    /// Snapshots the application at what it applied (durable with the log's commit index), then compacts the log a
    /// random distance behind the snapshot and records the new base on disk.
    func compact(_ index: Int) {
        // A Ready on its way to disk, or an installed snapshot not yet recorded, would make the disk's snapshot and
        // log disagree after a crash; the next period tries again.
        guard nodes[index].isUp, nodes[index].readyInFlight == nil, nodes[index].pendingInstall == nil else { return }
        let app = nodes[index].app
        if app.appliedIndex > nodes[index].snapshot?.base.index ?? 0 {
            nodes[index].snapshot = SimSnapshot(
                base: LogBase(index: app.appliedIndex, term: app.appliedTerm), app: app,
                configuration: nodes[index].raft!.configuration(at: app.appliedIndex))
            // The snapshot holds committed state: a restart hands out only what follows it.
            nodes[index].disk.hardState.commitIndex = max(nodes[index].disk.hardState.commitIndex, app.appliedIndex)
        }
        guard let snapshot = nodes[index].snapshot else { return }
        let retained = rng.next() % (options.maxRetainedEntries + 1)
        guard snapshot.base.index > retained,
            let base = nodes[index].raft!.compactLog(through: snapshot.base.index - retained)
        else { return }
        let dropped = Int(base.index - nodes[index].disk.base.index)
        precondition(dropped <= nodes[index].disk.entries.count, "compacted entries that are not on disk")
        if base.index > snapshot.base.index {
            fail("\(nodes[index].id) compacted through \(base.index), beyond its snapshot at \(snapshot.base.index)")
            return
        }
        nodes[index].disk.entries.removeFirst(dropped)
        nodes[index].disk.base = base
        nodes[index].disk.baseConfiguration = nodes[index].raft!.baseConfiguration
        report.compactions += 1
        note("\(nodes[index].id) compacts through \(base)")
    }

    /// The leader's runtime streams its latest snapshot to `peer`, and learns how the stream ended.
    func sendSnapshot(from index: Int, to peer: NodeID) {
        guard let raft = nodes[index].raft else { return }
        guard let snapshot = nodes[index].pendingInstall ?? nodes[index].snapshot,
            snapshot.base.index >= raft.logBase.index
        else {
            fail("\(nodes[index].id) must send a snapshot but holds none covering its log base \(raft.logBase)")
            return
        }
        report.snapshotsSent += 1
        note("\(nodes[index].id) streams snapshot \(snapshot.base) to \(peer)")
        let to = self.index(of: peer)
        // A stream takes longer than a message; it dies with a partition or a loss, and may arrive twice (a retried
        // transfer the sender believed lost).
        let transferMicros = faults.baseDelayMs * 1000 + randomMicros(upToMs: faults.jitterMs + 50) + 1
        let delivered = !blocked.contains(Link(from: index, to: to)) && !(chaosActive && unit() < faults.dropRate)
        if delivered {
            let incarnation = nodes[to].incarnation
            queue.push(
                .deliverSnapshot(snapshot, from: index, to: to, incarnation: incarnation),
                atMicros: nowMicros + transferMicros)
            if chaosActive && unit() < faults.duplicateRate {
                queue.push(
                    .deliverSnapshot(snapshot, from: index, to: to, incarnation: incarnation),
                    atMicros: nowMicros + transferMicros + randomMicros(upToMs: 200) + 1)
            }
        }
        // The outcome reaches the leader when the stream ends; losing its end makes a delivered transfer look failed.
        let succeeded = delivered && !(chaosActive && unit() < faults.dropRate)
        queue.push(
            .snapshotReport(leader: index, incarnation: nodes[index].incarnation, peer: peer, succeeded: succeeded),
            atMicros: nowMicros + transferMicros + randomMicros(upToMs: faults.jitterMs) + 1)
    }

    func onSnapshotReport(_ index: Int, _ incarnation: Int, peer: NodeID, succeeded: Bool) {
        guard nodes[index].isUp, nodes[index].incarnation == incarnation else { return }
        if deferIfStalled(
            index, .snapshotReport(leader: index, incarnation: incarnation, peer: peer, succeeded: succeeded))
        {
            return
        }
        nodes[index].raft!.reportSnapshot(to: peer, succeeded: succeeded, nowMs: localMs(index))
        afterStep(index)
    }

    /// A follower's runtime received a snapshot: unless its core already committed that far, it restores the
    /// application from it and installs it.
    func onDeliverSnapshot(_ snapshot: SimSnapshot, from: Int, to index: Int, _ incarnation: Int) {
        guard nodes[index].isUp, nodes[index].incarnation == incarnation else { return }
        let event = SimEvent.deliverSnapshot(snapshot, from: from, to: index, incarnation: incarnation)
        if deferIfStalled(index, event) { return }
        if nodes[index].readyInFlight != nil {
            // The application must not be replaced under a Ready whose entries it has yet to apply.
            queue.push(event, atMicros: nowMicros + 1000)
            return
        }
        let raft = nodes[index].raft!
        guard snapshot.base.index > raft.commitIndex else { return }  // Stale: the runtime drops it unrestored.
        let position = Int(snapshot.base.index) - 1
        guard position < committedLog.count, committedLog[position].term == snapshot.base.term,
            snapshot.app.appliedIndex == snapshot.base.index
        else {
            fail("\(nodes[from].id) sent a snapshot at \(snapshot.base) that is not a committed state")
            return
        }
        let expected =
            committedConfigurations.last { $0.index <= snapshot.base.index }?.configuration
            ?? ClusterConfiguration(voters: Array(nodes.prefix(options.nodeCount).map(\.id)))
        if snapshot.configuration != expected {
            fail(
                "\(nodes[from].id) sent a snapshot at \(snapshot.base) carrying "
                    + "\(snapshot.configuration.map { "\($0)" } ?? "no configuration"), committed there: \(expected)")
            return
        }
        nodes[index].app = snapshot.app
        nodes[index].pendingInstall = snapshot
        guard
            nodes[index].raft!.installSnapshot(
                snapshot.base, configuration: snapshot.configuration, from: nodes[from].id)
        else {
            fail(
                "\(nodes[index].id) (\(raft.currentRole), term \(raft.currentTerm)) refused a committed snapshot at "
                    + "\(snapshot.base) beyond its commit index \(raft.commitIndex)")
            return
        }
        report.snapshotsInstalled += 1
        note("\(nodes[index].id) installs snapshot \(snapshot.base) from \(nodes[from].id)")
        serveWaitingReads(index)
        afterStep(index)
    }
}
