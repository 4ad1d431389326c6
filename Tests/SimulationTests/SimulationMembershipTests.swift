import Foundation
import TandemConsensus
import TandemSimulator
import XCTest

/// Membership changes in the simulator: scripted schedules (growing, shrinking, removing the leader, and the two
/// schedules of the 2015 raft-dev report on single-server changes) under crashes and partitions, and a seeded swarm
/// of runs where an operator keeps changing the membership during chaos. Every run keeps the simulator's safety
/// checks (one leader per term, committed entries never lost, state machine equality, linearizability) and the
/// membership ones (only voters lead, single-server steps, no two disjoint majorities).
///
/// `TANDEM_SIM_MEMBERSHIP_SEEDS=<n>` sets how many swarm seeds (default 100); `TANDEM_SIM_SEED=<s>` reruns one.
final class SimulationMembershipTests: XCTestCase {
    let n1 = NodeID("n1"), n2 = NodeID("n2"), n3 = NodeID("n3"), n4 = NodeID("n4"), n5 = NodeID("n5")
    let n6 = NodeID("n6")

    func simulation(voters: Int, spares: Int, seed: UInt64, faults: FaultProfile = .none) -> Simulation {
        var options = SimulationOptions(seed: seed, faults: faults)
        options.nodeCount = voters
        options.spareNodes = spares
        let simulation = Simulation(options: options)
        simulation.runUntil(ms: 10_000) { simulation.leaderID != nil }
        XCTAssertNotNil(simulation.leaderID, "a first leader")
        return simulation
    }

    /// Proposes `change` at the leader, retrying while it is refused for a transient reason (no leader, an earlier
    /// change or the leader's first commit pending, a hand-off), and waits until a leader committed it.
    func apply(
        _ change: MembershipChange, in simulation: Simulation, file: StaticString = #filePath, line: UInt = #line
    ) {
        var index: UInt64?
        let deadlineMs = simulation.nowMs + 10_000
        while index == nil && simulation.nowMs < deadlineMs && simulation.violation == nil {
            switch simulation.proposeMembershipChange(change) {
            case .success(let at): index = at
            case .failure(.notLeader), .failure(.changeInProgress), .failure(.notYetCommittedInTerm),
                .failure(.leadershipTransferInProgress):
                simulation.runUntil(ms: simulation.nowMs + 20)
            case .failure(let error):
                XCTFail("\(change) refused: \(error)", file: file, line: line)
                return
            }
        }
        guard let index else {
            XCTFail("\(change) never accepted: \(simulation.violation ?? "no violation")", file: file, line: line)
            return
        }
        // Committed, or overwritten by a new leader (then the caller's final configuration check tells).
        simulation.runUntil(ms: simulation.nowMs + 10_000) {
            simulation.committedConfiguration == simulation.node(simulation.leaderID ?? self.n1)?.configuration
                && simulation.leaderCommitted(index)
        }
    }

    func finish(_ simulation: Simulation, file: StaticString = #filePath, line: UInt = #line) {
        let report = simulation.finish()
        XCTAssertNil(report.violation, "\(report)", file: file, line: line)
    }

    func testGrowingThreeToFiveByAddingLearnersAndPromotingThemUnderACrashAndAPartition() {
        let simulation = simulation(voters: 3, spares: 2, seed: 11)
        simulation.startClients()
        apply(.addLearner(n4), in: simulation)
        simulation.crash(n2)
        apply(.addLearner(n5), in: simulation)
        simulation.runUntil(ms: simulation.nowMs + 300)
        simulation.restart(n2)
        apply(.promote(n4), in: simulation)
        // A voter that does not lead is cut off: the promotion commits with four of the five.
        simulation.isolate([[n1, n2, n3].first { $0 != simulation.leaderID }!])
        apply(.promote(n5), in: simulation)
        simulation.runUntil(ms: simulation.nowMs + 500)
        finish(simulation)
        XCTAssertEqual(simulation.committedConfiguration, ClusterConfiguration(voters: [n1, n2, n3, n4, n5]))
        XCTAssertEqual(simulation.node(simulation.leaderID!)?.configuration.voters.count, 5)
    }

    func testShrinkingFiveToThreeUnderACrash() {
        let simulation = simulation(voters: 5, spares: 0, seed: 12)
        simulation.startClients()
        let leader = simulation.leaderID!
        let others = simulation.nodeIDs.filter { $0 != leader }
        apply(.remove(others[0]), in: simulation)
        simulation.crash(others[1])
        apply(.remove(others[2]), in: simulation)
        simulation.restart(others[1])
        simulation.runUntil(ms: simulation.nowMs + 500)
        finish(simulation)
        XCTAssertEqual(simulation.committedConfiguration.voters.count, 3)
        XCTAssertFalse(simulation.committedConfiguration.contains(others[0]))
        XCTAssertFalse(simulation.committedConfiguration.contains(others[2]))
    }

    func testRemovingTheLeaderHandsOffAndTheRestKeepsServing() {
        let simulation = simulation(voters: 3, spares: 0, seed: 13, faults: lightFaults())
        simulation.startClients()
        simulation.runUntil(ms: simulation.nowMs + 500)
        let old = simulation.leaderID!
        apply(.remove(old), in: simulation)
        simulation.runUntil(ms: simulation.nowMs + 2000) { simulation.leaderID != nil && simulation.leaderID != old }
        XCTAssertNotEqual(simulation.leaderID, old)
        XCTAssertNotEqual(simulation.node(old)?.currentRole, .leader, "the removed leader stepped down")
        simulation.runUntil(ms: simulation.nowMs + 1000)
        finish(simulation)
        XCTAssertFalse(simulation.committedConfiguration.contains(old))
        XCTAssertEqual(simulation.committedConfiguration.voters.count, 2)
    }

    /// raft-dev 2015, first schedule: in a 4-node cluster, leader L1 appends "add n5" reaching only n5 and is cut
    /// off; a new leader L2 of the rest then appends "add n6". Without the rule that a leader first commits an
    /// entry of its term, L2's change is two steps from L1's, and {L1, n5, x} and {y, z, n6} could both decide.
    func testRacingAddsAcrossALeaderChangeInAFourNodeCluster() {
        let simulation = simulation(voters: 4, spares: 2, seed: 14)
        apply(.addLearner(n5), in: simulation)
        apply(.addLearner(n6), in: simulation)
        let l1 = simulation.leaderID!
        simulation.isolate([l1, n5])
        XCTAssertNoThrow(try simulation.proposeMembershipChange(.promote(n5)).get(), "appended on L1 (and n5) only")
        simulation.runUntil(ms: simulation.nowMs + 3000) { simulation.leaderID.map { $0 != l1 } ?? false }
        let l2 = simulation.leaderID!
        XCTAssertNotEqual(l2, l1)
        // At once: L2 has not committed its no-op, so it must refuse.
        XCTAssertEqual(simulation.proposeMembershipChange(.promote(n6)), .failure(.notYetCommittedInTerm))
        apply(.promote(n6), in: simulation)
        simulation.healPartition()
        simulation.runUntil(ms: simulation.nowMs + 1000)
        finish(simulation)
        XCTAssertTrue(simulation.committedConfiguration.isVoter(n6))
        XCTAssertTrue(simulation.committedConfiguration.isLearner(n5), "L1's entry was truncated everywhere")
        XCTAssertEqual(simulation.node(n5)?.configuration, simulation.committedConfiguration, "n5 rolled back")
    }

    /// raft-dev 2015, second schedule: an add and a remove racing across a leader change (L1 cut off with a learner
    /// appends its promotion; the rest elect L2, which removes L1).
    func testAnAddRacingARemoveAcrossALeaderChange() {
        let simulation = simulation(voters: 4, spares: 1, seed: 15)
        apply(.addLearner(n5), in: simulation)
        let l1 = simulation.leaderID!
        simulation.isolate([l1, n5])
        XCTAssertNoThrow(try simulation.proposeMembershipChange(.promote(n5)).get())
        simulation.runUntil(ms: simulation.nowMs + 3000) { simulation.leaderID.map { $0 != l1 } ?? false }
        XCTAssertNotEqual(simulation.leaderID, l1)
        apply(.remove(l1), in: simulation)
        simulation.healPartition()
        simulation.runUntil(ms: simulation.nowMs + 1000)
        finish(simulation)
        XCTAssertFalse(simulation.committedConfiguration.contains(l1))
        XCTAssertTrue(simulation.committedConfiguration.isLearner(n5))
    }

    func testMembershipChurnSwarmKeepsEverySafetyProperty() {
        let environment = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let one = environment["TANDEM_SIM_SEED"].flatMap(UInt64.init) {
            seeds = [one]
        } else {
            let count = environment["TANDEM_SIM_MEMBERSHIP_SEEDS"].flatMap(UInt64.init) ?? 100
            seeds = (0..<count).map { 900_001 + $0 }
        }
        let started = Date()
        var failures = 0
        var committed = 0
        var seedsWithChanges = 0
        for seed in seeds {
            let simulation = Simulation(options: .membershipChurn(seed: seed))
            simulation.tracing = seeds.count == 1 && environment["TANDEM_SIM_VERBOSE"] != nil
            let report = simulation.run()
            if seeds.count == 1 {
                print(report)
                for line in simulation.trace { print("  " + line) }
            }
            committed += report.configurationsCommitted
            if report.configurationsCommitted > 0 { seedsWithChanges += 1 }
            if let violation = report.violation {
                failures += 1
                XCTFail(
                    """
                    seed \(seed) violated: \(violation)
                    \(report)
                    reproduce: TANDEM_SIM_SEED=\(seed) swift test --filter SimulationMembershipTests
                    """)
                if failures >= 5 { break }
            }
        }
        print(
            "membership simulation: \(seeds.count) seeds, \(failures) failing, \(committed) configurations committed "
                + "in \(seedsWithChanges) seeds, \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        if seeds.count >= 50 {
            XCTAssertGreaterThanOrEqual(seedsWithChanges * 10, seeds.count * 9, "most seeds change the membership")
        }
    }

    func lightFaults() -> FaultProfile {
        var faults = FaultProfile()
        faults.jitterMs = 5
        faults.maxDiskLatencyMs = 2
        return faults
    }
}
