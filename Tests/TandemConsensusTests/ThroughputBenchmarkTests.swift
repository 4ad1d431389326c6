import Foundation
import TandemConsensus
import XCTest

/// How many entries per second the core itself replicates and commits on three nodes when the network and disk
/// cost nothing. Skipped unless `TANDEM_BENCH=1` (run it with `-c release`).
final class ThroughputBenchmarkTests: XCTestCase {
    func testCoreReplicatesAndCommitsEntriesOnThreeNodes() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["TANDEM_BENCH"] != nil, "set TANDEM_BENCH=1")
        var cluster = TestCluster(size: 3)
        cluster.latencyMs = 0
        let leader = cluster.electLeader()
        let payload = String(repeating: "x", count: 256)
        let entries = 200_000, batch = 100
        let started = Date()
        var sequence: UInt64 = 0
        for _ in 0..<(entries / batch) {
            for _ in 0..<batch {
                sequence += 1
                try cluster.nodes[leader]!.propose(
                    Array(payload.utf8), id: ProposalID(origin: leader, sequence: sequence), wallTimeMs: 0,
                    nowMs: cluster.nowMs)
            }
            cluster.drain(leader)
            cluster.run(forMs: 1)
            cluster.applied = [:]  // Keep memory flat: only the count matters here.
        }
        cluster.run(forMs: 5)
        let seconds = Date().timeIntervalSince(started)
        XCTAssertEqual(cluster.nodes[leader]!.commitIndex, UInt64(entries) + 1)
        print(
            "core throughput: \(entries) entries of 256 B committed on 3 nodes in "
                + "\(String(format: "%.2f", seconds)) s = \(Int(Double(entries) / seconds)) entries/s")
    }
}
