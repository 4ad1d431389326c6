import TandemConsensus
import XCTest

/// Stories of elections, partitions and recovery, told against the deterministic `TestCluster`.
final class ElectionScenarioTests: XCTestCase {
    func testThreeNodesElectOneLeaderThatCommitsANoopOfItsTerm() {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        XCTAssertEqual(cluster.leaders, [leader], "exactly one leader")
        let term = cluster.nodes[leader]!.currentTerm
        let first = cluster.nodes[leader]!.entry(at: 1)
        XCTAssertEqual(first?.kind, .noop, "a new leader's first act is a no-op")
        XCTAssertEqual(first?.term, term)
        cluster.run(forMs: 300)
        for id in cluster.ids {
            XCTAssertEqual(cluster.nodes[id]!.knownLeader, leader, "\(id) follows the leader")
            XCTAssertEqual(cluster.applied[id]?.first?.kind, .noop, "\(id) applied the no-op")
        }
    }

    func testPartitionedLeaderIsReplacedStepsDownAndLosesItsUncommittedWrite() throws {
        var cluster = TestCluster(size: 3)
        let old = cluster.electLeader()
        let oldTerm = cluster.nodes[old]!.currentTerm
        cluster.isolate([old])
        try cluster.propose("lost", at: old, sequence: 1)  // Appended by the cut-off leader, never committed.

        let stepDown = cluster.run(untilWithinMs: 2000) { $0.nodes[old]!.currentRole != .leader }
        XCTAssertNotNil(stepDown, "check-quorum deposes a leader that hears no quorum")
        XCTAssertLessThanOrEqual(stepDown ?? .max, 1100, "within about one election timeout")
        let replaced = cluster.run(untilWithinMs: 3000) { c in c.leaders.contains { $0 != old } }
        XCTAssertNotNil(replaced, "the majority elects a new leader")
        let newLeader = cluster.leaders.first { $0 != old }!
        XCTAssertGreaterThan(cluster.nodes[newLeader]!.currentTerm, oldTerm)
        try cluster.propose("kept", at: newLeader, sequence: 2)

        cluster.heal()
        let converged = cluster.run(untilWithinMs: 2000) { $0.appliedPayloads(old) == ["kept"] }
        XCTAssertNotNil(converged, "the old leader rejoins, drops its uncommitted entry and applies the new one")
        XCTAssertEqual(cluster.nodes[old]!.knownLeader, newLeader)
        for id in cluster.ids { XCTAssertFalse(cluster.appliedPayloads(id).contains("lost"), "\(id) never applies it") }
    }

    func testStaleLeaderStepsDownWhenItHearsAHigherTerm() {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let term = cluster.nodes[leader]!.currentTerm
        let other = cluster.followers(of: leader)[0]
        cluster.nodes[leader]!.step(
            .heartbeat(
                Heartbeat(
                    from: other, to: leader, term: term + 2, commitIndex: 0,
                    round: 1)), nowMs: cluster.nowMs)
        XCTAssertEqual(cluster.nodes[leader]!.currentRole, .follower)
        XCTAssertEqual(cluster.nodes[leader]!.currentTerm, term + 2)
        XCTAssertEqual(cluster.nodes[leader]!.knownLeader, other, "the sender of a heartbeat leads the newer term")
    }

    func testStaleLeaderIsToldAboutTheNewTermWhenItsHeartbeatArrives() {
        var node = RaftNode(
            config: RaftConfig(id: NodeID("n2"), peers: [NodeID("n1"), NodeID("n2"), NodeID("n3")]),
            recovered: RecoveredState(hardState: HardState(term: 9)), seed: 1)
        node.step(
            .heartbeat(Heartbeat(from: NodeID("n1"), to: NodeID("n2"), term: 4, commitIndex: 0, round: 1)),
            nowMs: 5)
        let ready = node.ready()
        XCTAssertEqual(ready.messages.map(\.term), [9], "the stale leader gets an answer carrying the newer term")
        XCTAssertEqual(node.currentTerm, 9)
    }

    func testPreVoteKeepsARejoiningNodeFromDisruptingTheCluster() {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let term = cluster.nodes[leader]!.currentTerm
        let loner = cluster.followers(of: leader)[0]
        cluster.isolate([loner])
        cluster.run(forMs: 6000)  // It suspects the leader and asks for pre-votes, again and again, in vain.
        XCTAssertEqual(cluster.nodes[loner]!.currentTerm, term, "failed pre-votes never raise the term")
        XCTAssertTrue(cluster.sent.contains { if case .preVoteRequest = $0 { $0.from == loner } else { false } })
        cluster.heal()
        cluster.run(forMs: 2000)
        XCTAssertEqual(cluster.leaders, [leader], "the leader keeps its leadership")
        XCTAssertEqual(cluster.nodes[leader]!.currentTerm, term, "and its term")
        XCTAssertEqual(cluster.nodes[loner]!.knownLeader, leader, "the loner rejoins as a follower")
    }

    func testStickyVotersIgnoreAVoteRequestWhileTheirLeaderIsAlive() {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0], other = cluster.followers(of: leader)[1]
        let term = cluster.nodes[follower]!.currentTerm
        cluster.nodes[follower]!.step(
            .voteRequest(
                VoteRequest(
                    from: other, to: follower, term: term + 1, lastLogIndex: 100, lastLogTerm: term,
                    leadershipTransfer: false)), nowMs: cluster.nowMs)
        XCTAssertEqual(cluster.nodes[follower]!.currentTerm, term, "a live leader is not deposed by one node")
        XCTAssertFalse(
            cluster.nodes[follower]!.ready().messages.contains { if case .voteResponse = $0 { true } else { false } })
    }

    func testNodeWithAStaleLogCannotWinAVote() {
        var node = RaftNode(
            config: RaftConfig(id: NodeID("n1"), peers: [NodeID("n1"), NodeID("n2"), NodeID("n3")]),
            recovered: RecoveredState(
                hardState: HardState(term: 3),
                entries: [
                    Entry(term: 2, index: 1, kind: .noop, timeMs: 0, proposal: nil, data: []),
                    Entry(term: 3, index: 2, kind: .noop, timeMs: 0, proposal: nil, data: []),
                ]), seed: 1)
        node.tick(nowMs: 0)
        node.tick(nowMs: 5000)  // Long after start: the restart stickiness no longer applies.
        node.step(
            .voteRequest(
                VoteRequest(
                    from: NodeID("n2"), to: NodeID("n1"), term: 4, lastLogIndex: 5,
                    lastLogTerm: 2, leadershipTransfer: false)), nowMs: 5001)
        let ready = node.ready()
        XCTAssertEqual(
            ready.messages,
            [
                .voteResponse(
                    VoteResponse(
                        from: NodeID("n1"), to: NodeID("n2"), term: 4,
                        granted: false))
            ])
        XCTAssertNil(ready.hardState?.votedFor, "no vote was recorded")
    }

    func testAVoteIsPersistedInTheSameReadyThatSendsIt() {
        var node = RaftNode(
            config: RaftConfig(id: NodeID("n1"), peers: [NodeID("n1"), NodeID("n2"), NodeID("n3")]),
            recovered: RecoveredState(), seed: 1)
        node.tick(nowMs: 0)
        node.tick(nowMs: 5000)
        node.step(
            .voteRequest(
                VoteRequest(
                    from: NodeID("n2"), to: NodeID("n1"), term: 1, lastLogIndex: 0,
                    lastLogTerm: 0, leadershipTransfer: false)), nowMs: 5001)
        let ready = node.ready()
        XCTAssertEqual(
            ready.hardState, HardState(term: 1, votedFor: NodeID("n2"), commitIndex: 0),
            "the runtime persists the vote (step 1) before it sends the grant (step 2)")
        XCTAssertEqual(ready.messages.count, 1)
    }

    func testARestartedNodeRemembersItsVoteAndDoesNotVoteTwiceInATerm() {
        let peers = [NodeID("n1"), NodeID("n2"), NodeID("n3")]
        let recovered = RecoveredState(hardState: HardState(term: 1, votedFor: NodeID("n2")))
        var node = RaftNode(config: RaftConfig(id: NodeID("n1"), peers: peers), recovered: recovered, seed: 1)
        node.tick(nowMs: 0)
        node.tick(nowMs: 5000)
        node.step(
            .voteRequest(
                VoteRequest(
                    from: NodeID("n3"), to: NodeID("n1"), term: 1, lastLogIndex: 0,
                    lastLogTerm: 0, leadershipTransfer: false)), nowMs: 5001)
        XCTAssertEqual(
            node.ready().messages,
            [
                .voteResponse(
                    VoteResponse(
                        from: NodeID("n1"), to: NodeID("n3"),
                        term: 1, granted: false))
            ])
    }

    func testAFollowerThatStalledSuspectsNoOneWhenItWakes() {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        cluster.run(forMs: 2000)
        let sleeper = cluster.followers(of: leader)[0]
        let term = cluster.nodes[sleeper]!.currentTerm
        cluster.stalled.insert(sleeper)
        cluster.run(forMs: 2500)  // Longer than the election timeout: without the guard it would campaign at once.
        cluster.wake(sleeper)
        XCTAssertEqual(cluster.nodes[sleeper]!.currentRole, .follower, "its own stall is not the leader's failure")
        cluster.run(forMs: 1000)
        XCTAssertEqual(cluster.nodes[sleeper]!.currentTerm, term)
        XCTAssertEqual(cluster.nodes[sleeper]!.knownLeader, leader)
        XCTAssertFalse(cluster.sent.contains { if case .preVoteRequest = $0 { $0.from == sleeper } else { false } })
    }

    func testALeaderThatStalledKeepsLeadingWhenItsFollowersStillHearIt() {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        cluster.run(forMs: 2000)
        cluster.stalled.insert(leader)
        cluster.run(forMs: 720)  // Shorter than the followers' detection time, longer than the 700 ms lease.
        cluster.wake(leader)
        XCTAssertEqual(cluster.nodes[leader]!.currentRole, .leader, "check-quorum does not count our own silence")
        XCTAssertFalse(cluster.nodes[leader]!.leaseValid, "but the lease, measured in time, has run out")
    }

    func testLeaderCrashIsDetectedAndANewLeaderCommitsWithinOneAndAHalfSeconds() {
        var cluster = TestCluster(size: 3)
        let old = cluster.electLeader()
        cluster.run(forMs: 3000)  // Heartbeat history for the detectors.
        cluster.crash(old)
        let recovered = cluster.run(untilWithinMs: 3000) { c in
            guard let leader = c.leader, leader != old else { return false }
            let node = c.nodes[leader]!
            return node.entry(at: node.commitIndex)?.term == node.currentTerm
        }
        XCTAssertNotNil(recovered)
        XCTAssertLessThan(recovered ?? .max, 1500, "failover target: a new leader commits within 1.5 s")
    }
}
