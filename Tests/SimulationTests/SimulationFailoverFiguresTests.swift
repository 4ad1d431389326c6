import Foundation
import TandemConsensus
import TandemSimulator
import XCTest

/// Failover figures at the default settings, measured in simulated time, printed for BENCHMARKS.md.
final class SimulationFailoverFiguresTests: XCTestCase {
    struct Failover {
        var detectionMs: Int64
        var newLeaderCommittedMs: Int64
    }

    /// Elects a leader, lets the detectors learn 3 s of heartbeats under client load, crashes the leader, and times
    /// (a) the first pre-vote (a follower's phi crossed the threshold) and (b) a new leader committing in its term.
    func measureFailover(seed: UInt64) -> Failover? {
        var options = SimulationOptions(seed: seed)
        options.faults.baseDelayMs = 1
        options.faults.jitterMs = 2
        let simulation = Simulation(options: options)
        simulation.runUntil(ms: 10_000) { simulation.leaderID != nil }
        simulation.startClients()
        simulation.runUntil(ms: simulation.nowMs + 3000)
        guard let old = simulation.leaderID else { return nil }
        let crashMs = simulation.nowMs
        let transitionsBefore = simulation.roleHistory.count
        simulation.crash(old)
        simulation.runUntil(ms: crashMs + 10_000) {
            guard let leader = simulation.leaderID, leader != old, let node = simulation.node(leader) else {
                return false
            }
            return node.term(at: node.commitIndex) == node.currentTerm
        }
        let committedMs = simulation.nowMs
        guard let detection = simulation.roleHistory[transitionsBefore...].first(where: { $0.role == .preCandidate })
        else { return nil }
        return Failover(detectionMs: detection.timeMs - crashMs, newLeaderCommittedMs: committedMs - crashMs)
    }

    func testLeaderCrashIsDetectedInAboutNineHundredMillisecondsAndFailoverCommitsWithinOneAndAHalfSeconds() {
        let runs = (UInt64(1)...60).compactMap(measureFailover(seed:))
        XCTAssertEqual(runs.count, 60, "every run elected a leader and recovered")
        let detection = runs.map(\.detectionMs).sorted(), failover = runs.map(\.newLeaderCommittedMs).sorted()
        func percentile(_ values: [Int64], _ p: Double) -> Int64 {
            values[min(values.count - 1, Int(Double(values.count) * p))]
        }
        print(
            """
            failover figures (simulated, defaults: heartbeat 100 ms, phi 8, election timeout 1 s, 3 nodes, \
            1-3 ms network, \(runs.count) leader crashes):
              crash -> detection (first pre-vote): p50 \(percentile(detection, 0.5)) ms, p90 \(percentile(detection, 0.9)) ms, \
            min \(detection.first!) ms, max \(detection.last!) ms
              crash -> new leader committed:       p50 \(percentile(failover, 0.5)) ms, p90 \(percentile(failover, 0.9)) ms, \
            min \(failover.first!) ms, max \(failover.last!) ms
            """)
        XCTAssertGreaterThanOrEqual(percentile(detection, 0.5), 750, "no hair trigger")
        XCTAssertLessThanOrEqual(percentile(detection, 0.5), 1000, "detection about 0.9 s")
        XCTAssertLessThanOrEqual(percentile(failover, 0.9), 1500, "a new leader commits within 1.5 s")
    }

    func testFaultFreeRunsWithTwentyMillisecondsOfJitterHaveNoElectionAfterTheFirst() {
        var extraElections = 0
        var simulatedMs: Int64 = 0
        for seed in UInt64(1)...5 {
            var options = SimulationOptions(seed: seed)
            options.faults.baseDelayMs = 1
            options.faults.jitterMs = 20
            let simulation = Simulation(options: options)
            simulation.runUntil(ms: 10_000) { simulation.leaderID != nil }
            guard let leader = simulation.leaderID else { return XCTFail("seed \(seed): no leader") }
            let term = simulation.node(leader)!.currentTerm
            let start = simulation.roleHistory.count
            simulation.startClients()
            simulation.runUntil(ms: simulation.nowMs + 60_000)
            simulatedMs += 60_000
            let later = simulation.roleHistory[start...].filter { $0.role != .follower }
            extraElections += later.count
            XCTAssertEqual(simulation.leaderID, leader, "seed \(seed)")
            XCTAssertEqual(simulation.node(leader)!.currentTerm, term, "seed \(seed): no new term")
            XCTAssertGreaterThan(simulation.currentReport.acknowledgedWrites, 1000, "seed \(seed): under load")
        }
        print(
            "fault-free with 20 ms jitter: \(simulatedMs / 1000) s simulated, \(extraElections) elections after the first"
        )
        XCTAssertEqual(extraElections, 0)
    }
}
