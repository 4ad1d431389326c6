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

    /// Found by the stability benchmark, where one follower's writes were throttled to 20 IOPS on a disk the other
    /// nodes share: the leader stepped down through check-quorum with every node and link up. A node carried out
    /// nothing while an fsync ran, heartbeat answers included, so a node whose fsync outlasted the election
    /// timeout fell silent for as long. Here every node's fsync takes up to 1.8 s (seconds, as on a saturated
    /// or throttled device; below the leader's stall limit of 2 s) from the 3rd second on, under a steady stream of
    /// writes: not one election may start, and the writes still commit once the disks recover.
    func testFsyncsSlowerThanTheElectionTimeoutOnEveryNodeStartNoElection() {
        var options = NodeSimulationOptions.withoutFaults(seed: 0x5107_d15c)
        options.chaosMs = 30_000
        options.slowDiskLatencyMs = 1_800
        options.slowDiskCount = options.nodeCount
        options.slowDiskAfterMs = 3_000
        let report = NodeSimulation(options: options).run()
        XCTAssertNil(report.violation)
        XCTAssertGreaterThan(report.electionsBeforeSlowDisks, 0, "a leader was elected before the disks slowed")
        XCTAssertEqual(
            report.elections, report.electionsBeforeSlowDisks,
            "elections started while every node and link was up, only the disks slow")
        XCTAssertGreaterThan(report.committed, 100, "the writes committed")
    }

    /// The other side of the rule above: a leader's heartbeats leave while its fsync runs only for the stall limit
    /// (twice the election timeout). Here the leader's disk hangs for 8 s under a steady stream of writes: the
    /// leader must go quiet, another node must take over and commit the writes sent meanwhile, and once the disk
    /// comes back every node must converge on one log with nothing acknowledged lost.
    func testALeaderWhoseDiskHangsHandsTheLeadershipOver() throws {
        var options = NodeSimulationOptions.withoutFaults(seed: 0xd15c_4a96)
        options.chaosMs = 20_000
        options.hungLeaderDiskAtMs = 4_000
        options.hungLeaderDiskForMs = 8_000
        let report = NodeSimulation(options: options).run()
        XCTAssertNil(report.violation)
        XCTAssertNotNil(report.hungLeader, "a leader was elected before its disk hung")
        let takeoverMs = try XCTUnwrap(report.otherLeaderAfterHangMs, "another node took the leadership over")
        print(
            "hung leader disk: another leader after \(takeoverMs) ms (simulated), \(report.appliedElsewhereDuringHang) "
                + "entries applied elsewhere during the hang, \(report.elections) elections, \(report.committed) writes"
        )
        // The stall limit (2 s), then the followers' detector and a pre-vote and a vote (the election timeout is
        // 1 s, randomized up to 2 s).
        XCTAssertLessThanOrEqual(takeoverMs, 4_000, "the takeover took longer than the stall limit and an election")
        XCTAssertGreaterThan(report.appliedElsewhereDuringHang, 50, "the other nodes committed writes during the hang")
    }

    /// Found by the swarm: a node crashed after its app got an entry the disk had not recorded as applied, came
    /// back, and was stopped gracefully before that entry came round again; the next start must still mark it.
    /// The seed fails when a clean stop forgets the crash's redelivery window (checked by reverting that fix). It
    /// changes when the runtime's timing does: the first one stopped reaching this schedule once heartbeats no
    /// longer waited for the disk; the swarm's 150th, 162nd, 165th and 166th seeds reach it now.
    func testAGracefulStopAfterACrashStillMarksWhatTheCrashLeftUncertain() {
        let options = NodeSimulationOptions.swarm(seed: 398_165_365_350)
        let report = NodeSimulation(options: options).run()
        XCTAssertNil(report.violation, "\(options)")
        XCTAssertGreaterThan(report.redeliveries, 0, "the schedule still redelivers after the graceful restart")
    }
}
