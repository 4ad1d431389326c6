import TandemConsensus
import XCTest

/// Messages a faulty or hostile peer could send: the core must refuse them without trapping, now or later.
final class HostileMessageTests: XCTestCase {
    private let n1 = NodeID("n1"), n2 = NodeID("n2"), n3 = NodeID("n3")

    private func node(_ id: NodeID, recovered: RecoveredState = RecoveredState(), peers: [NodeID]? = nil) -> RaftNode {
        RaftNode(config: RaftConfig(id: id, peers: peers ?? [n1, n2, n3]), recovered: recovered, seed: 1)
    }

    /// Carries out every Ready at once (persisting is implied), as a runtime would.
    private func drain(_ node: inout RaftNode) {
        while node.hasReady {
            let ready = node.ready()
            node.advance(ready)
        }
    }

    private func tick(_ node: inout RaftNode, from startMs: Int64, throughMs endMs: Int64) {
        for t in stride(from: startMs, through: endMs, by: 10) {
            node.tick(nowMs: t)
            drain(&node)
        }
    }

    private func entry(_ index: UInt64, term: UInt64) -> Entry {
        Entry(term: term, index: index, kind: .normal, timeMs: 1, proposal: nil, data: [1])
    }

    func testATermThatLeavesNoRoomToCampaignIsNeverAdopted() {
        var follower = node(n2)
        follower.step(.heartbeat(Heartbeat(from: n1, to: n2, term: .max, commitIndex: 0, round: 1)), nowMs: 0)
        drain(&follower)
        XCTAssertEqual(follower.currentTerm, 0, "a term with no successor is refused")
        // Adopted, it made the next campaign trap at `term + 1`; refused, the node campaigns as usual.
        tick(&follower, from: 10, throughMs: 5000)
        XCTAssertEqual(follower.currentRole, .preCandidate)
        XCTAssertEqual(follower.currentTerm, 0)
    }

    func testATermFarAheadOfOursIsRefused() {
        var follower = node(n2)
        follower.step(.heartbeat(Heartbeat(from: n1, to: n2, term: 1 << 40, commitIndex: 0, round: 1)), nowMs: 0)
        drain(&follower)
        XCTAssertEqual(follower.currentTerm, 0)
        XCTAssertNil(follower.knownLeader)
        follower.step(.heartbeat(Heartbeat(from: n1, to: n2, term: 1000, commitIndex: 0, round: 1)), nowMs: 1)
        XCTAssertEqual(follower.currentTerm, 1000, "an ordinary jump ahead is still followed")
    }

    /// A node that persisted the last term (before terms were bounded) must start and stay up, never campaigning.
    func testANodeThatPersistedTheLastTermNeverTrapsAtRestart() {
        for peers in [[n1, n2, n3], [n2]] {
            var restarted = node(n2, recovered: RecoveredState(hardState: HardState(term: .max)), peers: peers)
            tick(&restarted, from: 0, throughMs: 5000)
            XCTAssertEqual(restarted.currentTerm, .max)
            XCTAssertEqual(restarted.currentRole, .follower, "no campaign: the term has no successor")
        }
    }

    func testAnAppendWhoseEntriesDoNotFollowThePreviousIndexContiguouslyIsRefused() {
        let batches: [(String, UInt64, UInt64, [Entry])] = [
            ("a gap", 0, 0, [entry(1, term: 1), entry(3, term: 1)]),
            ("not right after prevLogIndex", 0, 0, [entry(5, term: 1)]),
            ("a repeated index", 0, 0, [entry(1, term: 1), entry(1, term: 1)]),
            ("an entry above the message term", 0, 0, [entry(1, term: 9)]),
            ("terms going down", 0, 0, [entry(1, term: 2), entry(2, term: 1)]),
            ("an entry below prevLogTerm", 1, 2, [entry(2, term: 1)]),
            ("an entry of term 0", 0, 0, [entry(1, term: 0)]),
        ]
        for (what, prevIndex, prevTerm, entries) in batches {
            var follower = node(n2)
            follower.step(
                .appendEntries(
                    AppendEntries(
                        from: n1, to: n2, term: 2, prevLogIndex: prevIndex, prevLogTerm: prevTerm, entries: entries,
                        leaderCommit: 0)), nowMs: 0)
            drain(&follower)
            XCTAssertEqual(follower.lastIndex, 0, "\(what): nothing appended")
            XCTAssertEqual(follower.currentTerm, 0, "\(what): the message had no say in the term")
        }
    }

    func testAnAcknowledgementBeyondTheLeadersLogIsRefused() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        let last = cluster.nodes[leader]!.lastIndex
        let bogus = AppendResponse(
            from: follower, to: leader, term: cluster.nodes[leader]!.currentTerm, success: true,
            matchIndex: last + 100, rejectedIndex: 0, hintIndex: 0, hintTerm: 0)
        cluster.nodes[leader]!.step(.appendResponse(bogus), nowMs: cluster.nowMs)
        cluster.drain(leader)
        XCTAssertLessThanOrEqual(
            cluster.nodes[leader]!.status.peers.first { $0.id == follower }!.matchIndex, last,
            "an acknowledgement of entries the leader never had is ignored")
        // Taken, it pointed the follower's next index past the log, and the next commit broadcast trapped.
        try cluster.propose("w1", at: leader, sequence: 1)
        XCTAssertNotNil(cluster.run(untilWithinMs: 1000) { c in c.ids.allSatisfy { c.appliedPayloads($0) == ["w1"] } })
    }

    /// Found by the consensus-codec fuzz target: a peer claiming to lead our own term trapped the real leader
    /// ("two leaders in term"), and made a follower switch leaders within a term.
    func testAPeerClaimingToLeadATermThatHasAnotherLeaderIsRefused() {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let (f1, f2) = (cluster.followers(of: leader)[0], cluster.followers(of: leader)[1])
        let term = cluster.nodes[leader]!.currentTerm
        let claims: [(NodeID, NodeID)] = [(f1, leader), (f2, f1)]
        for (from, to) in claims {
            for claim in [
                Message.heartbeat(Heartbeat(from: from, to: to, term: term, commitIndex: 0, round: 1)),
                .appendEntries(
                    AppendEntries(
                        from: from, to: to, term: term, prevLogIndex: 0, prevLogTerm: 0, entries: [], leaderCommit: 0)),
            ] {
                cluster.nodes[to]!.step(claim, nowMs: cluster.nowMs)
                cluster.drain(to)
            }
        }
        XCTAssertEqual(cluster.nodes[leader]!.currentRole, .leader)
        XCTAssertEqual(cluster.nodes[f1]!.knownLeader, leader, "the follower keeps the leader of its term")
    }
}
