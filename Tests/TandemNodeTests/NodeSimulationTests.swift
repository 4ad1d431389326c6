import Foundation
import XCTest

/// The real `ReplicaRuntime` in the seeded node simulator. `TANDEM_NODE_SIM_SEEDS=<n>` sets how many seeds run
/// (CI runs the default), `TANDEM_NODE_SIM_SEED=<s>` reruns one.
final class NodeSimulationTests: XCTestCase {
    func testSeededSwarmOfRealRuntimesKeepsEveryWriteOnceInOneOrder() {
        let environment = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let one = environment["TANDEM_NODE_SIM_SEED"].flatMap(UInt64.init) {
            seeds = [one]
        } else {
            let count = environment["TANDEM_NODE_SIM_SEEDS"].flatMap(UInt64.init) ?? 200
            seeds = (1...count).map { $0 &* 0x9E37_79B9 }
        }
        var totals = NodeSimulationReport()
        for seed in seeds {
            let options = NodeSimulationOptions.swarm(seed: seed)
            let report = NodeSimulation(options: options).run()
            if let violation = report.violation {
                XCTFail(
                    "\(options)\n\(violation)\nrerun: TANDEM_NODE_SIM_SEED=\(seed) swift test --filter NodeSimulationTests"
                )
                return
            }
            totals.committed += report.committed
            totals.crashes += report.crashes
            totals.gracefulRestarts += report.gracefulRestarts
            totals.blips += report.blips
            totals.fsyncFailures += report.fsyncFailures
            totals.appRestarts += report.appRestarts
            totals.redeliveries += report.redeliveries
            totals.unknown += report.unknown
            totals.rejected += report.rejected
        }
        print(
            "node simulation: \(seeds.count) seeds, \(totals.committed) writes committed, \(totals.crashes) crashes, "
                + "\(totals.gracefulRestarts) graceful restarts, \(totals.blips) link cuts, \(totals.fsyncFailures) "
                + "fsync failures, \(totals.appRestarts) app restarts, \(totals.redeliveries) marked redeliveries, \(totals.unknown) unknown, "
                + "\(totals.rejected) refused")
        XCTAssertGreaterThan(totals.committed, seeds.count * 10, "the runs did commit writes")
    }

    /// Found by the swarm: a node crashed after its app got an entry the disk had not recorded as applied, came
    /// back, and was stopped gracefully before that entry came round again; the next start must still mark it.
    func testAGracefulStopAfterACrashStillMarksWhatTheCrashLeftUncertain() {
        let options = NodeSimulationOptions.swarm(seed: 2_654_435_769)
        let report = NodeSimulation(options: options).run()
        XCTAssertNil(report.violation, "\(options)")
        XCTAssertGreaterThan(report.redeliveries, 0, "the schedule still redelivers after the graceful restart")
    }
}
