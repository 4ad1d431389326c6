import Foundation
import TandemConsensus
import TandemLinearizability
import TandemSimulator
import XCTest

/// The seeded simulator as a test: every seed draws a cluster size and a fault profile with every fault class
/// enabled, runs chaos, heals, and must show no safety violation, a linearizable history and timely recovery.
///
/// `TANDEM_SIM_SEEDS=<n>` sets how many seeds (default 500); `TANDEM_SIM_SEED=<s>` reruns one seed verbosely.
final class SimulationSwarmTests: XCTestCase {
    func testEverySeedKeepsSafetyLinearizabilityAndLiveness() {
        let environment = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let one = environment["TANDEM_SIM_SEED"].flatMap(UInt64.init) {
            seeds = [one]
        } else {
            let count = environment["TANDEM_SIM_SEEDS"].flatMap(Int.init) ?? 500
            let base = environment["TANDEM_SIM_BASE"].flatMap(UInt64.init) ?? 1
            seeds = (0..<UInt64(count)).map { base + $0 }
        }
        let started = Date()
        var failures = 0
        var worstHealMs: Int64 = 0
        var timedOutChecks = 0
        var snapshots = SnapshotTally()
        for (done, seed) in seeds.enumerated() {
            if seeds.count >= 2000 && done > 0 && done % 1000 == 0 {
                print(
                    "simulation progress: \(done) seeds, \(failures) failing, "
                        + "\(String(format: "%.0f", Date().timeIntervalSince(started))) s")
            }
            let simulation = Simulation(options: .everyFault(seed: seed))
            simulation.tracing = seeds.count == 1 && environment["TANDEM_SIM_VERBOSE"] != nil
            let report = simulation.run()
            if seeds.count == 1 {
                print(report)
                if environment["TANDEM_SIM_VERBOSE"] != nil {
                    for line in simulation.trace { print("  " + line) }
                }
            }
            worstHealMs = max(worstHealMs, report.healToConvergedMs ?? 0)
            snapshots.add(report)
            if report.linearizability == .timedOut { timedOutChecks += 1 }
            if let violation = report.violation {
                failures += 1
                XCTFail(
                    """
                    seed \(seed) violated: \(violation)
                    \(report)
                    reproduce: TANDEM_SIM_SEED=\(seed) swift test --filter SimulationSwarmTests
                    """)
                if failures >= 5 { break }
            }
        }
        let seconds = Date().timeIntervalSince(started)
        print(
            "simulation: \(seeds.count) seeds, \(failures) failing, worst heal-to-converged \(worstHealMs) ms, "
                + "\(timedOutChecks) linearizability checks timed out, \(String(format: "%.1f", seconds)) s")
        print(snapshots)
        if seeds.count >= 100 {
            XCTAssertGreaterThanOrEqual(
                snapshots.seedsWithInstalls * 3, snapshots.eligibleSeeds,
                "compaction makes followers that fell behind need snapshots in many seeds: \(snapshots)")
        }
    }

    /// Compaction at its most aggressive (every ~100 ms, keeping nothing behind the snapshot) over every-fault seeds:
    /// safety and liveness hold, and most multi-node seeds do install snapshots, so the path is exercised.
    /// `TANDEM_SIM_SNAPSHOT_SEEDS=<n>` sets how many seeds (default 30).
    func testAggressiveCompactionInstallsSnapshotsInMostSeedsAndKeepsEverySafetyProperty() {
        let environment = ProcessInfo.processInfo.environment
        let count = environment["TANDEM_SIM_SNAPSHOT_SEEDS"].flatMap(UInt64.init) ?? 30
        var tally = SnapshotTally()
        var failures = 0
        for seed in 500_001..<(500_001 + count) {
            var options = SimulationOptions.everyFault(seed: seed)
            options.compactionIntervalMs = 100
            options.maxRetainedEntries = 0
            options.timing += " (compaction forced to 100ms/0)"
            let report = Simulation(options: options).run()
            tally.add(report)
            if let violation = report.violation {
                failures += 1
                XCTFail("seed \(seed) violated: \(violation)\n\(report)")
                if failures >= 5 { break }
            }
        }
        print(tally)
        XCTAssertGreaterThan(tally.eligibleSeeds, 0)
        XCTAssertGreaterThanOrEqual(tally.seedsWithInstalls * 2, tally.eligibleSeeds, "\(tally)")
    }
}

/// How much of the compaction and snapshot path a set of seeds exercised.
struct SnapshotTally: CustomStringConvertible {
    var seeds = 0
    /// Seeds with more than one node and compaction on: the only ones where a snapshot can be needed.
    var eligibleSeeds = 0
    var seedsWithInstalls = 0
    var compactions = 0
    var sent = 0
    var installed = 0
    var keepingSuffix = 0

    mutating func add(_ report: SimulationReport) {
        seeds += 1
        if report.nodeCount > 1 && report.compactions > 0 { eligibleSeeds += 1 }
        if report.snapshotsInstalled > 0 { seedsWithInstalls += 1 }
        compactions += report.compactions
        sent += report.snapshotsSent
        installed += report.snapshotsInstalled
        keepingSuffix += report.installsKeepingSuffix
    }

    var description: String {
        "snapshots: \(seedsWithInstalls) of \(eligibleSeeds) eligible seeds (of \(seeds)) installed one; "
            + "\(compactions) compactions, \(sent) transfers started, \(installed) installed "
            + "(\(keepingSuffix) keeping the log after the base)"
    }
}
