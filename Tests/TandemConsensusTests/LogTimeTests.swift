import TandemConsensus
import XCTest

/// `Tandem-Time` along the log: never decreasing, and never frozen by one leader whose clock ran ahead.
final class LogTimeTests: XCTestCase {
    func testLogTimeKeepsMovingAfterALeaderWhoseClockRanAheadIsReplaced() throws {
        var cluster = TestCluster(size: 3)
        let first = cluster.electLeader()
        let yearMs: Int64 = 365 * 24 * 3_600_000
        // The first leader's wall clock is a year ahead of everyone else's.
        try cluster.nodes[first]!.propose(
            Array("ahead".utf8), id: ProposalID(origin: first, sequence: 1), wallTimeMs: cluster.nowMs + yearMs,
            nowMs: cluster.nowMs)
        cluster.drain(first)
        cluster.run(forMs: 100)
        cluster.crash(first)
        let second = try XCTUnwrap(
            cluster.run(untilWithinMs: 5000) { c in c.leader != nil && c.leader != first }.flatMap { _ in cluster.leader
            })
        cluster.run(forMs: 100)
        var times: [Int64] = []
        for sequence in 1...3 {
            try cluster.nodes[second]!.propose(
                Array("w\(sequence)".utf8), id: ProposalID(origin: second, sequence: UInt64(sequence)),
                wallTimeMs: cluster.nowMs, nowMs: cluster.nowMs)
            cluster.drain(second)
            let node = cluster.nodes[second]!
            times.append(try XCTUnwrap(node.entry(at: node.lastIndex)).timeMs)
            cluster.run(forMs: 500)
        }
        XCTAssertGreaterThanOrEqual(times[0], yearMs, "log time never goes back")
        XCTAssertGreaterThanOrEqual(times[1] - times[0], 450, "log time moves on at the real rate: \(times)")
        XCTAssertGreaterThanOrEqual(times[2] - times[1], 450, "log time moves on at the real rate: \(times)")
    }
}
