import TandemConsensus
import XCTest

/// Stories of forwarded writes whose answers are slow or lost: each is appended at most once, and a client is
/// never told "not written" about a write that may have been appended.
final class ForwardingTests: XCTestCase {
    private func forward(_ id: ProposalID, _ text: String, from: NodeID, to: NodeID, term: UInt64) -> Message {
        .proposalForward(
            ProposalForward(
                from: from, to: to, term: term, proposals: [ForwardedProposal(id: id, data: Array(text.utf8))]))
    }

    private func copies(of id: ProposalID, in node: RaftNode) -> Int {
        guard node.lastIndex > 0 else { return 0 }
        return (1...node.lastIndex).filter { node.entry(at: $0)?.proposal == id }.count
    }

    func testAResendArrivingAfterThousandsOfOtherForwardsIsNotAppendedAgain() {
        var cluster = TestCluster(size: 3) { $0.maxUncommittedBytes = 64 << 20 }
        let leader = cluster.electLeader()
        let (slow, busy) = (cluster.followers(of: leader)[0], cluster.followers(of: leader)[1])
        let term = cluster.nodes[leader]!.currentTerm
        let id = ProposalID(origin: slow, sequence: 1)
        cluster.nodes[leader]!.step(forward(id, "once", from: slow, to: leader, term: term), nowMs: cluster.nowMs)
        cluster.drain(leader)
        // Another follower forwards more writes than the old fixed-size outcome table held (4096), within a second.
        for sequence in 1...5000 {
            let other = ProposalID(origin: busy, sequence: UInt64(sequence))
            cluster.nodes[leader]!.step(forward(other, "w", from: busy, to: leader, term: term), nowMs: cluster.nowMs)
            if sequence % 500 == 0 {
                cluster.drain(leader)
                cluster.run(forMs: 100)
            }
        }
        // The slow follower's resend of the first forward arrives now.
        cluster.nodes[leader]!.step(forward(id, "once", from: slow, to: leader, term: term), nowMs: cluster.nowMs)
        cluster.drain(leader)
        XCTAssertEqual(copies(of: id, in: cluster.nodes[leader]!), 1, "a resend must find the original outcome")
    }

    func testAnUnansweredForwardIsResentThenGivenUpAsUnknownAfterThePatience() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        cluster.blocked.insert([leader, follower])  // Answers (and heartbeats) from the leader are lost.
        let patience = cluster.nodes[follower]!.config.forwardPatienceMs
        let id = ProposalID(origin: follower, sequence: 7)
        try cluster.propose("slow", at: follower, sequence: 7)
        cluster.run(forMs: patience / 2)
        let forwardsSent = { (c: TestCluster) in
            c.sent.filter {
                if case .proposalForward(let f) = $0 {
                    return f.from == follower && f.proposals.contains { $0.id == id }
                }
                return false
            }.count
        }
        XCTAssertGreaterThan(forwardsSent(cluster), 1, "resent while unanswered")
        XCTAssertEqual(copies(of: id, in: cluster.nodes[leader]!), 1, "every copy reached the leader; appended once")
        cluster.run(forMs: patience)
        XCTAssertEqual(cluster.unknown[follower] ?? [], [id], "given up: its fate is unknown, not refused")
        XCTAssertTrue(cluster.rejected[follower]?.isEmpty ?? true)
        let sentWhenGivenUp = forwardsSent(cluster)
        cluster.run(forMs: 2 * patience)
        XCTAssertEqual(forwardsSent(cluster), sentWhenGivenUp, "never resent after giving up")
    }

    func testARefusalFromALeaderRestartedInTheSameTermIsReportedUnknown() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        let term = cluster.nodes[leader]!.currentTerm
        cluster.blocked.insert([leader, follower])  // The leader's answer is lost...
        let id = ProposalID(origin: follower, sequence: 3)
        try cluster.propose("maybe", at: follower, sequence: 3)
        cluster.run(forMs: 20)
        XCTAssertEqual(copies(of: id, in: cluster.nodes[leader]!), 1, "appended by the leader")
        cluster.crash(leader)  // ...and the leader dies before answering, then comes back in the same term.
        cluster.restart(leader)
        cluster.heal()
        XCTAssertEqual(cluster.nodes[leader]!.currentTerm, term)
        XCTAssertNotEqual(cluster.nodes[leader]!.currentRole, .leader)
        cluster.nodes[follower]!.linkUp(to: leader, nowMs: cluster.nowMs)  // The link is replaced: resend.
        cluster.drain(follower)
        cluster.run(forMs: 30)
        XCTAssertTrue(
            cluster.rejected[follower]?.isEmpty ?? true,
            "a refusal after a resend may come from a node that forgot appending it: never a definite no")
        XCTAssertEqual(cluster.unknown[follower] ?? [], [id])
    }

    func testAForwardThatNeverLeftIsRefusedForCertain() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        try cluster.nodes[follower]!.propose(
            Array("x".utf8), id: ProposalID(origin: follower, sequence: 9), wallTimeMs: 0, nowMs: cluster.nowMs)
        let ready = cluster.nodes[follower]!.ready()
        let forwardMessage = try XCTUnwrap(
            ready.messages.first {
                if case .proposalForward = $0 { return true }
                return false
            })
        cluster.nodes[follower]!.advance(ready)
        cluster.nodes[follower]!.notDelivered(forwardMessage, nowMs: cluster.nowMs)  // The transport refused it.
        cluster.drain(follower)
        XCTAssertEqual(cluster.rejected[follower]?.map(\.id), [ProposalID(origin: follower, sequence: 9)])
        XCTAssertEqual(cluster.rejected[follower]?.first?.error, .noLeader)
    }
}
