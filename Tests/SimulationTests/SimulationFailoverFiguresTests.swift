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
    /// (a) the first pre-vote and (b) a new leader committing in its term. `silently`: the leader's host vanishes
    /// (it is cut off first, so no peer sees its connections reset, as after a power loss) and only the detectors
    /// can tell; otherwise its process dies on a live host and the peers see their links to it reset.
    func measureFailover(seed: UInt64, silently: Bool) -> Failover? {
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
        if silently { simulation.isolate([old]) }
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

    func percentile(_ values: [Int64], _ p: Double) -> Int64 {
        values[min(values.count - 1, Int(Double(values.count) * p))]
    }

    func figures(silently: Bool) -> (detection: [Int64], failover: [Int64]) {
        let runs = (UInt64(1)...60).compactMap { measureFailover(seed: $0, silently: silently) }
        XCTAssertEqual(runs.count, 60, "every run elected a leader and recovered")
        let detection = runs.map(\.detectionMs).sorted(), failover = runs.map(\.newLeaderCommittedMs).sorted()
        print(
            """
            failover figures (simulated, defaults: heartbeat 100 ms, phi 8, election timeout 1 s, 3 nodes, \
            1-3 ms network, \(runs.count) leader crashes, \(silently ? "the host vanishing" : "the process killed")):
              crash -> detection (first pre-vote): p50 \(percentile(detection, 0.5)) ms, p90 \(percentile(detection, 0.9)) ms, \
            min \(detection.first!) ms, max \(detection.last!) ms
              crash -> new leader committed:       p50 \(percentile(failover, 0.5)) ms, p90 \(percentile(failover, 0.9)) ms, \
            min \(failover.first!) ms, max \(failover.last!) ms
            """)
        return (detection, failover)
    }

    /// A killed leader process on a live host: its peers see their links reset, wait the two heartbeats a live
    /// leader would need to dial again, and elect; a new leader commits within half a second.
    func testAKilledLeaderProcessIsReplacedWithinHalfASecond() {
        let (detection, failover) = figures(silently: false)
        XCTAssertGreaterThanOrEqual(detection.first ?? 0, 200, "the closed links are given two heartbeats")
        XCTAssertLessThanOrEqual(percentile(detection, 0.5), 350, "detection right after the wait")
        XCTAssertLessThanOrEqual(percentile(failover, 0.9), 500, "a new leader commits within 0.5 s")
    }

    /// A leader whose host vanished (no connection is reset): only the detectors tell, in about 0.9 s.
    func testAVanishedLeaderHostIsDetectedInAboutNineHundredMillisecondsAndReplacedWithinOneAndAHalfSeconds() {
        let (detection, failover) = figures(silently: true)
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
