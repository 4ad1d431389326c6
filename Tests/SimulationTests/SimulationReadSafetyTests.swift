import TandemConsensus
import TandemLinearizability
import TandemSimulator
import XCTest

/// Scripted simulator stories about reads: a leader cut off from its quorum must not serve stale reads.
final class SimulationReadSafetyTests: XCTestCase {
    /// The leader is isolated while clients keep writing on the majority side and reading everywhere; the history
    /// stays linearizable because the old leader neither confirms ReadIndex rounds nor keeps its lease.
    func testAnIsolatedLeaderServesNoStaleReads() {
        for seed in UInt64(1)...5 {
            var options = SimulationOptions(seed: seed)
            options.clientCount = 8
            options.keys = ["k"]
            options.tuning = { $0.electionTimeoutMs = 3000 }  // A long check-quorum window: the old leader lingers.
            let simulation = Simulation(options: options)
            simulation.startClients()
            simulation.runUntil(ms: 8000)
            guard let old = simulation.leaderID else { return XCTFail("seed \(seed): no leader") }
            simulation.isolate([old])
            simulation.runUntil(ms: 12000)
            let report = simulation.finish()
            XCTAssertNil(report.violation, "seed \(seed): \(report)")
            XCTAssertEqual(report.linearizability, .linearizable, "seed \(seed)")
            XCTAssertGreaterThan(report.servedReads, 10, "seed \(seed): the scenario exercised reads")
        }
    }
}
