import TandemConsensus
import XCTest

/// Stories of followers that fell behind, or lost their log, and must be brought back by the same leader.
final class CatchUpTests: XCTestCase {
    func testAFollowerWipedUnderTheSameLeaderIsCaughtUpFromItsEmptyLog() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        for k in 1...20 { try cluster.propose("w\(k)", at: leader, sequence: UInt64(k)) }
        XCTAssertNotNil(cluster.run(untilWithinMs: 500) { c in c.ids.allSatisfy { c.appliedPayloads($0).count == 20 } })

        cluster.wipe(follower)
        try cluster.propose("w21", at: leader, sequence: 21)
        let caughtUp = cluster.run(untilWithinMs: 3000) { c in
            c.nodes[follower]!.lastIndex == c.nodes[leader]!.lastIndex && c.appliedPayloads(follower).count == 21
        }
        XCTAssertNotNil(caughtUp, "the wiped follower stays at index \(cluster.nodes[follower]!.lastIndex)")
        XCTAssertEqual(cluster.leader, leader, "caught up by the leader that recorded its old match")
        XCTAssertEqual(cluster.appliedPayloads(follower), (1...21).map { "w\($0)" })
        XCTAssertEqual(cluster.nodes[leader]!.replicationDiagnostics(for: follower)?.lostLogResets, 1, "counted")
        let other = cluster.followers(of: leader)[1]
        XCTAssertEqual(cluster.nodes[leader]!.replicationDiagnostics(for: other)?.lostLogResets, 0)
    }
}
