import TandemConsensus
import XCTest

/// Log compaction and snapshots: the core keeps the log base, lists followers that need a snapshot, and installs
/// the snapshots its runtime restored.
final class SnapshotTests: XCTestCase {
    private let n1 = NodeID("n1"), n2 = NodeID("n2"), n3 = NodeID("n3")

    private func entry(_ index: UInt64, term: UInt64) -> Entry {
        Entry(term: term, index: index, kind: .normal, timeMs: Int64(index), proposal: nil, data: [UInt8(index % 256)])
    }

    /// A follower n2 of a three-node cluster, recovered with `entries` and `commit`, that heard n1 lead `term`.
    private func follower(entries: [Entry], commit: UInt64, term: UInt64 = 2) -> RaftNode {
        var node = RaftNode(
            config: RaftConfig(id: n2, peers: [n1, n2, n3]),
            recovered: RecoveredState(hardState: HardState(term: term, commitIndex: commit), entries: entries),
            seed: 1)
        node.step(.heartbeat(Heartbeat(from: n1, to: n2, term: term, commitIndex: commit, round: 1)), nowMs: 0)
        while node.hasReady { node.advance(node.ready()) }
        XCTAssertEqual(node.knownLeader, n1)
        return node
    }

    private func writeAndApply(_ cluster: inout TestCluster, at leader: NodeID, _ range: ClosedRange<Int>) throws {
        for k in range { try cluster.propose("w\(k)", at: leader, sequence: UInt64(k)) }
        let live = cluster.ids.filter { !cluster.down.contains($0) && !cluster.blocked.contains([leader, $0]) }
        XCTAssertNotNil(
            cluster.run(untilWithinMs: 2000) { c in live.allSatisfy { c.appliedPayloads($0).count == range.upperBound }
            },
            "writes \(range) applied everywhere reachable")
    }

    // MARK: Compaction

    func testCompactionIsClampedToWhatIsCarriedOutAndDurableAndKeepsTheClusterWorking() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        try writeAndApply(&cluster, at: leader, 1...20)
        for id in cluster.ids {
            let carriedOut = cluster.nodes[id]!.status.carriedOutIndex
            let base = try XCTUnwrap(cluster.compact(id, through: 1000), "compacts what it carried out")
            XCTAssertEqual(base.index, carriedOut, "clamped to the carried-out index")
            XCTAssertEqual(cluster.nodes[id]!.logBase, base)
            XCTAssertEqual(cluster.nodes[id]!.status.logBaseIndex, base.index)
            XCTAssertNil(cluster.nodes[id]!.entry(at: base.index), "compacted")
            XCTAssertNil(cluster.compact(id, through: base.index), "nothing more to drop")
        }
        try writeAndApply(&cluster, at: leader, 21...40)
        XCTAssertTrue(cluster.snapshotListings.isEmpty, "followers that keep up need no snapshot")
        for id in cluster.ids { XCTAssertEqual(cluster.appliedPayloads(id), (1...40).map { "w\($0)" }) }

        // A new leader elected from compacted logs carries on.
        cluster.crash(leader)
        let next = cluster.electLeader()
        XCTAssertNotEqual(next, leader)
        try writeAndApply(&cluster, at: next, 41...45)
        XCTAssertTrue(cluster.snapshotListings.isEmpty)
    }

    func testCompactionNeverDropsWhatIsNotYetDurable() throws {
        var node = RaftNode(config: RaftConfig(id: n1, peers: [n1]), recovered: RecoveredState(), seed: 1)
        var now: Int64 = 0
        while node.currentRole != .leader {
            now += 10
            node.tick(nowMs: now)
            while node.hasReady { node.advance(node.ready()) }
        }
        // Stamped by a wall clock a minute ahead of the next one.
        try node.propose([1], id: ProposalID(origin: n1, sequence: 1), wallTimeMs: now + 60_000, nowMs: now)
        let ready = node.ready()  // Taken, not yet advanced: nothing in it is durable or carried out.
        XCTAssertEqual(ready.entriesToPersist.map(\.index), [2])
        let stamped = ready.entriesToPersist[0].timeMs
        XCTAssertEqual(node.compactLog(through: 2)?.index, 1, "only the no-op that was advanced past")
        node.advance(ready)
        while node.hasReady { node.advance(node.ready()) }
        XCTAssertEqual(node.compactLog(through: 2), LogBase(index: 2, term: node.currentTerm))
        XCTAssertEqual(node.lastIndex, 2)
        try node.propose([2], id: ProposalID(origin: n1, sequence: 2), wallTimeMs: now, nowMs: now)
        let next = node.ready()
        XCTAssertEqual(next.entriesToPersist.map(\.index), [3], "the log goes on after its base")
        XCTAssertGreaterThanOrEqual(next.entriesToPersist[0].timeMs, stamped, "log time does not go back")

        // A leader holds every committed entry: a snapshot its log disagrees with was never committed.
        node.advance(next)
        while node.hasReady { node.advance(node.ready()) }
        XCTAssertFalse(node.installSnapshot(LogBase(index: 9, term: node.currentTerm), from: n1))
        XCTAssertEqual(node.logBase.index, 2)
        XCTAssertFalse(node.hasReady)
    }

    func testADeposedLeaderInstallsASnapshotCommittedInALaterTermAndStepsDown() throws {
        // n1 led term 2 and appended entries the others never got; they elected n2 in term 3 and committed past it.
        var node = RaftNode(
            config: RaftConfig(id: n1, peers: [n1, n2, n3]),
            recovered: RecoveredState(
                hardState: HardState(term: 2, votedFor: n1, commitIndex: 3),
                entries: (1...3).map { entry($0, term: 1) } + (4...6).map { entry($0, term: 2) }),
            seed: 1)
        var now: Int64 = 0
        while node.currentRole != .leader && now < 10_000 {
            now += 10
            node.tick(nowMs: now)
            while node.hasReady {
                let ready = node.ready()
                node.advance(ready)
                for message in ready.messages {
                    switch message {
                    case .preVoteRequest(let m):
                        let grant = VoteResponse(from: m.to, to: n1, term: m.term, granted: true)
                        node.step(.preVoteResponse(grant), nowMs: now)
                    case .voteRequest(let m):
                        node.step(
                            .voteResponse(VoteResponse(from: m.to, to: n1, term: m.term, granted: true)), nowMs: now)
                    default:
                        break
                    }
                }
            }
        }
        XCTAssertEqual(node.currentRole, .leader)
        while node.hasReady { node.advance(node.ready()) }
        let term = node.currentTerm
        XCTAssertFalse(node.installSnapshot(LogBase(index: 5, term: 1), from: n2), "never committed: refused")
        XCTAssertEqual(node.currentRole, .leader)
        XCTAssertTrue(node.installSnapshot(LogBase(index: 5, term: term + 1), from: n2))
        XCTAssertEqual(node.currentRole, .follower)
        XCTAssertEqual(node.logBase, LogBase(index: 5, term: term + 1))
        XCTAssertEqual(node.lastIndex, 5, "its own entries of an older term are gone")
        let ready = node.ready()
        XCTAssertEqual(ready.installedBase?.discardedSuffix, true)
        XCTAssertEqual(ready.roleChange?.role, .follower)
    }

    // MARK: Snapshot transfer

    func testAFollowerFarBehindIsListedInstallsTheSnapshotAndCatchesUpByAppends() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        try writeAndApply(&cluster, at: leader, 1...5)
        cluster.crash(follower)
        try writeAndApply(&cluster, at: leader, 6...30)
        let base = try XCTUnwrap(cluster.compact(leader, through: 25))
        XCTAssertEqual(base.index, 25)

        cluster.restart(follower)
        let listed = cluster.run(untilWithinMs: 3000) { c in c.snapshotListings.contains { $0.follower == follower } }
        XCTAssertNotNil(listed, "the leader lists the follower whose next entry it compacted")
        XCTAssertEqual(cluster.snapshotListings.map(\.leader), [leader])
        XCTAssertEqual(cluster.nodes[leader]!.status.peers.first { $0.id == follower }?.awaitingSnapshot, true)
        let appendsBefore = appends(in: cluster, to: follower).count
        cluster.run(forMs: 1)
        XCTAssertEqual(appends(in: cluster, to: follower).count, appendsBefore, "no append while it waits")

        let caughtUp = cluster.run(untilWithinMs: 3000) { c in
            c.appliedPayloads(follower).count == 30
                && c.nodes[leader]!.status.peers.first { $0.id == follower }?.matchIndex == c.nodes[leader]!.lastIndex
        }
        XCTAssertNotNil(caughtUp, "installed \(cluster.installs), applied \(cluster.appliedPayloads(follower).count)")
        XCTAssertEqual(cluster.installs.map(\.follower), [follower])
        XCTAssertEqual(cluster.nodes[follower]!.logBase.index, cluster.snapshots[leader]!.base.index)
        XCTAssertEqual(cluster.nodes[leader]!.status.peers.first { $0.id == follower }?.awaitingSnapshot, false)
        XCTAssertEqual(cluster.appliedPayloads(follower), (1...30).map { "w\($0)" }, "snapshot, then the entries after")
        XCTAssertTrue(
            appends(in: cluster, to: follower).dropFirst(appendsBefore).allSatisfy { $0.prevLogIndex >= base.index },
            "appends resume after the base")
        try writeAndApply(&cluster, at: leader, 31...35)
        XCTAssertEqual(cluster.snapshotListings.count, 1, "listed once")
        XCTAssertEqual(cluster.disks[follower]!.base, cluster.nodes[follower]!.logBase, "the base was made durable")
    }

    func testALeaderThatCompactsPastAnIsolatedReplicatingFollowerSwitchesItToSnapshot() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        try writeAndApply(&cluster, at: leader, 1...10)
        cluster.isolate([follower])  // Replicating: the appends sent now are lost, next index runs ahead.
        try writeAndApply(&cluster, at: leader, 11...40)
        XCTAssertEqual(cluster.appliedPayloads(follower).count, 10)
        XCTAssertNotNil(cluster.compact(leader, through: 38))
        XCTAssertTrue(cluster.snapshotListings.isEmpty)

        cluster.heal()
        let caughtUp = cluster.run(untilWithinMs: 3000) { c in c.appliedPayloads(follower).count == 40 }
        XCTAssertNotNil(caughtUp, "applied \(cluster.appliedPayloads(follower).count)")
        XCTAssertEqual(cluster.leader, leader)
        XCTAssertEqual(cluster.snapshotListings.map(\.follower), [follower])
        XCTAssertEqual(cluster.installs.count, 1)
        XCTAssertEqual(cluster.appliedPayloads(follower), (1...40).map { "w\($0)" })
    }

    func testAFailedTransferIsRetriedAfterAnElectionTimeoutAndNotBefore() throws {
        var cluster = TestCluster(size: 3)
        let electionTimeoutMs = RaftConfig(id: n1, peers: [n1, n2, n3]).electionTimeoutMs
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        cluster.crash(follower)
        try writeAndApply(&cluster, at: leader, 1...20)
        XCTAssertNotNil(cluster.compact(leader, through: 20))
        cluster.failSnapshotsTo = [follower]
        cluster.restart(follower)

        XCTAssertNotNil(cluster.run(untilWithinMs: 3000) { c in c.snapshotListings.count == 1 })
        let firstListing = cluster.snapshotListings[0].atMs
        let reportedAt = firstListing + cluster.latencyMs  // The transfer fails when it ends.
        XCTAssertNotNil(cluster.run(untilWithinMs: 3 * electionTimeoutMs) { c in c.snapshotListings.count == 2 })
        let retry = cluster.snapshotListings[1].atMs
        XCTAssertGreaterThanOrEqual(retry - reportedAt, electionTimeoutMs, "no retry before the pause")
        XCTAssertLessThanOrEqual(retry - reportedAt, electionTimeoutMs + 300, "but soon after it")
        XCTAssertTrue(cluster.installs.isEmpty)

        cluster.failSnapshotsTo = []
        let caughtUp = cluster.run(untilWithinMs: 3 * electionTimeoutMs) { c in c.appliedPayloads(follower).count == 20
        }
        XCTAssertNotNil(caughtUp, "listings \(cluster.snapshotListings.count)")
        XCTAssertEqual(cluster.installs.count, 1)
        XCTAssertEqual(cluster.leader, leader, "a failing transfer costs no election")
    }

    func testAnInstalledSnapshotWhoseAcknowledgementIsLostEndsInAProbeSoonAfterTheSuccessReport() throws {
        var cluster = TestCluster(size: 3)
        let heartbeatMs = RaftConfig(id: n1, peers: [n1, n2, n3]).heartbeatIntervalMs
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        cluster.crash(follower)
        try writeAndApply(&cluster, at: leader, 1...20)
        XCTAssertNotNil(cluster.compact(leader, through: 20))
        cluster.restart(follower)
        XCTAssertNotNil(cluster.run(untilWithinMs: 3000) { c in !c.snapshotListings.isEmpty })
        cluster.blocked.insert([follower, leader])  // The follower's answers are lost; the stream gets through.
        XCTAssertNotNil(cluster.run(untilWithinMs: 100) { c in !c.installs.isEmpty })
        let reportedAt = cluster.nowMs  // The transfer is reported as it ends.
        try cluster.propose("w21", at: leader, sequence: 21)
        cluster.run(forMs: heartbeatMs)
        XCTAssertEqual(
            cluster.nodes[leader]!.status.peers.first { $0.id == follower }?.awaitingSnapshot, true,
            "still waiting for the acknowledgement")
        XCTAssertEqual(cluster.appliedPayloads(follower).count, 20)
        cluster.heal()
        let caughtUp = cluster.run(untilWithinMs: 1000) { c in c.appliedPayloads(follower).count == 21 }
        XCTAssertNotNil(caughtUp, "the leader probes past the snapshot once the success report's pause is over")
        XCTAssertGreaterThanOrEqual(cluster.nowMs - reportedAt, 2 * heartbeatMs, "not before the pause")
        XCTAssertEqual(cluster.snapshotListings.count, 1, "without streaming the snapshot again")
    }

    // MARK: Installing

    func testAStaleSnapshotIsRefusedAndChangesNothing() {
        var node = follower(entries: (1...10).map { entry($0, term: 1) }, commit: 6)
        XCTAssertFalse(node.installSnapshot(LogBase(index: 6, term: 1), from: n1))
        XCTAssertFalse(node.installSnapshot(LogBase(index: 4, term: 1), from: n1))
        XCTAssertFalse(node.hasReady)
        XCTAssertEqual(node.logBase, .empty)
        XCTAssertEqual(node.lastIndex, 10)
        XCTAssertEqual(node.commitIndex, 6)
    }

    func testASnapshotMatchingTheLogKeepsTheEntriesAfterItAndIsAcknowledgedAfterPersistence() throws {
        var node = follower(entries: (1...10).map { entry($0, term: 1) }, commit: 3)
        XCTAssertTrue(node.installSnapshot(LogBase(index: 6, term: 1), from: n1))
        XCTAssertEqual(node.logBase, LogBase(index: 6, term: 1))
        XCTAssertEqual(node.lastIndex, 10)
        XCTAssertNil(node.entry(at: 6))
        XCTAssertEqual(node.entry(at: 7), entry(7, term: 1))
        XCTAssertEqual(node.commitIndex, 6)
        let ready = node.ready()
        XCTAssertEqual(ready.installedBase, InstalledBase(base: LogBase(index: 6, term: 1), discardedSuffix: false))
        XCTAssertTrue(ready.mustSync)
        XCTAssertEqual(ready.hardState?.commitIndex, 6)
        XCTAssertTrue(ready.committedEntries.isEmpty, "the app holds everything through the base")
        XCTAssertTrue(ready.messagesBeforePersist.isEmpty)
        let ack = try XCTUnwrap(appendResponses(ready.messages).first)
        XCTAssertEqual(ack.to, n1)
        XCTAssertTrue(ack.success)
        XCTAssertEqual(ack.matchIndex, 6)
        node.advance(ready)
        XCTAssertEqual(node.status.carriedOutIndex, 6)
        XCTAssertEqual(node.status.logBaseIndex, 6)

        // Appends go on from the kept entries; one whose previous index is below the base is answered as committed.
        node.step(
            .appendEntries(
                AppendEntries(
                    from: n1, to: n2, term: 2, prevLogIndex: 2, prevLogTerm: 1, entries: [entry(3, term: 1)],
                    leaderCommit: 9)), nowMs: 10)
        let answer = node.ready()
        XCTAssertEqual(appendResponses(answer.messages).map(\.matchIndex), [6])
        XCTAssertTrue(appendResponses(answer.messages).allSatisfy(\.success))
        node.advance(answer)
        node.step(
            .appendEntries(
                AppendEntries(
                    from: n1, to: n2, term: 2, prevLogIndex: 6, prevLogTerm: 1,
                    entries: (7...9).map { entry($0, term: 1) },
                    leaderCommit: 9)), nowMs: 20)
        let commit = node.ready()
        XCTAssertEqual(commit.committedEntries.map(\.index), [7, 8, 9])
    }

    func testASnapshotTheLogDisagreesWithDiscardsTheWholeLog() throws {
        var node = follower(entries: (1...10).map { entry($0, term: 1) }, commit: 3)
        XCTAssertTrue(node.installSnapshot(LogBase(index: 8, term: 2), from: n3))
        XCTAssertEqual(node.logBase, LogBase(index: 8, term: 2))
        XCTAssertEqual(node.lastIndex, 8)
        XCTAssertNil(node.entry(at: 9))
        let ready = node.ready()
        XCTAssertEqual(ready.installedBase, InstalledBase(base: LogBase(index: 8, term: 2), discardedSuffix: true))
        XCTAssertTrue(ready.entriesToPersist.isEmpty)
        XCTAssertNil(ready.truncateFromIndex)
        XCTAssertTrue(appendResponses(ready.messages).isEmpty, "n3 is not the known leader: nobody to acknowledge")
        node.advance(ready)
        // The log goes on after the base.
        node.step(
            .appendEntries(
                AppendEntries(
                    from: n1, to: n2, term: 2, prevLogIndex: 8, prevLogTerm: 2, entries: [entry(9, term: 2)],
                    leaderCommit: 9)), nowMs: 10)
        let next = node.ready()
        XCTAssertEqual(next.entriesToPersist.map(\.index), [9])
        XCTAssertEqual(next.committedEntries.map(\.index), [9])
        XCTAssertEqual(appendResponses(next.messages).map(\.matchIndex), [9])
    }

    func testTwoInstallsBeforeAReadyAreRecordedAsOneAndAResetWins() {
        var node = follower(entries: (1...10).map { entry($0, term: 1) }, commit: 3)
        XCTAssertTrue(node.installSnapshot(LogBase(index: 12, term: 2), from: n1))
        XCTAssertTrue(node.installSnapshot(LogBase(index: 14, term: 2), from: n1))
        let ready = node.ready()
        XCTAssertEqual(ready.installedBase, InstalledBase(base: LogBase(index: 14, term: 2), discardedSuffix: true))
        XCTAssertEqual(appendResponses(ready.messages).map(\.matchIndex), [12, 14])
    }

    // MARK: Restart

    func testANodeRestartsFromABaseAndHandsOutOnlyWhatFollowsTheRestoredState() {
        let recovered = RecoveredState(
            hardState: HardState(term: 3, commitIndex: 5),  // Written lazily: behind the base.
            entries: (11...15).map { entry($0, term: 3) }, handOutAfter: 10, base: LogBase(index: 10, term: 2))
        var node = RaftNode(config: RaftConfig(id: n2, peers: [n1, n2, n3]), recovered: recovered, seed: 1)
        XCTAssertEqual(node.logBase, LogBase(index: 10, term: 2))
        XCTAssertEqual(node.commitIndex, 10, "the base is committed")
        XCTAssertEqual(node.lastIndex, 15)
        XCTAssertNil(node.entry(at: 10))
        XCTAssertEqual(node.entry(at: 11)?.term, 3)
        XCTAssertEqual(node.status.logBaseIndex, 10)
        node.step(.heartbeat(Heartbeat(from: n1, to: n2, term: 3, commitIndex: 13, round: 1)), nowMs: 0)
        let ready = node.ready()
        XCTAssertEqual(ready.committedEntries.map(\.index), [11, 12, 13])
    }

    func testAClusterWhoseNodesAllCompactedRestartsFromItsDisks() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        try writeAndApply(&cluster, at: leader, 1...15)
        for id in cluster.ids { XCTAssertNotNil(cluster.compact(id, through: 12)) }
        for id in cluster.ids { cluster.crash(id) }
        for (k, id) in cluster.ids.enumerated() { cluster.restart(id, seed: UInt64(100 + k)) }
        for id in cluster.ids {
            XCTAssertEqual(cluster.nodes[id]!.logBase.index, 12)
            XCTAssertEqual(cluster.appliedPayloads(id), (1...15).map { "w\($0)" }, "restored, then replayed")
        }
        let next = cluster.electLeader()
        try writeAndApply(&cluster, at: next, 16...20)
        for id in cluster.ids { XCTAssertEqual(cluster.appliedPayloads(id), (1...20).map { "w\($0)" }) }
    }

    func testAFollowerRestartedFromItsSnapshotCatchesUpWithoutOne() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        try writeAndApply(&cluster, at: leader, 1...10)
        XCTAssertEqual(cluster.compact(follower, through: 10)?.index, 10)
        cluster.crash(follower)
        try writeAndApply(&cluster, at: leader, 11...20)
        cluster.restart(follower)
        XCTAssertEqual(cluster.appliedPayloads(follower).count, 10, "the app restored from its snapshot")
        XCTAssertNotNil(cluster.run(untilWithinMs: 3000) { c in c.appliedPayloads(follower).count == 20 })
        XCTAssertEqual(cluster.appliedPayloads(follower), (1...20).map { "w\($0)" })
        XCTAssertTrue(cluster.snapshotListings.isEmpty, "the leader still had what it needed")
    }

    // MARK: Helpers

    private func appends(in cluster: TestCluster, to id: NodeID) -> [AppendEntries] {
        cluster.sent.compactMap { if case .appendEntries(let m) = $0, m.to == id { return m } else { return nil } }
    }

    private func appendResponses(_ messages: [Message]) -> [AppendResponse] {
        messages.compactMap { if case .appendResponse(let m) = $0 { return m } else { return nil } }
    }
}
