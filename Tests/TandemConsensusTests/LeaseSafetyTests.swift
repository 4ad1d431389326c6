import TandemConsensus
import XCTest

/// The leader lease against the elections it must outlast: a lease read is served without a quorum round only
/// while no other node can have become leader, under every detector setting the configuration accepts.
final class LeaseSafetyTests: XCTestCase {
    /// A hair-trigger detector the configuration accepts (TANDEM_PHI_THRESHOLD=0.1, TANDEM_PHI_ACCEPTABLE_PAUSE=0ms,
    /// TANDEM_PHI_MIN_STDDEV=1ms): a follower suspects its leader after about one heartbeat of silence.
    static func hairTrigger(_ config: inout RaftConfig) {
        config.phiThreshold = 0.1
        config.phiAcceptablePauseMs = 0
        config.phiMinStdDevMs = 1
    }

    /// The leader loses one follower (which then cannot win a pre-vote while the other follower still hears the
    /// leader), keeps leading with the other, serves lease reads, and is then cut off from that one too. The
    /// follower that backed the lease must not elect itself (with the cut-off follower's vote) while the lease
    /// holds, neither while it still hears the leader nor right after the last round it acknowledged, or the old
    /// leader serves stale reads. A client reads at the old leader every 5 ms throughout.
    func checkNoLeaseReadOutlivesTheLeadership(
        tune: @escaping (inout RaftConfig) -> Void, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        var cluster = TestCluster(size: 3, tune: tune)
        let old = cluster.electLeader()
        cluster.run(forMs: 1000)
        let loner = cluster.followers(of: old)[1]
        let oldTerm = cluster.nodes[old]!.currentTerm
        cluster.blocked.formUnion([[old, loner], [loner, old]])

        var sequence: UInt64 = 0
        var newLeader: NodeID?
        var leaseReadsAfterNewLeader: [Int64] = []
        var leaseReadsBeforeFullCut = 0
        var laterWriteIndex: UInt64?
        var staleReads: [(atMs: Int64, index: UInt64)] = []
        let start = cluster.nowMs
        while cluster.nowMs - start < 5000 {
            cluster.step()
            let elapsed = cluster.nowMs - start
            if elapsed == 2000 { cluster.isolate([old]) }  // Now the backer loses the leader too.
            if newLeader == nil {
                newLeader = cluster.leaders.first { $0 != old && cluster.nodes[$0]!.currentTerm > oldTerm }
                if let leader = newLeader {
                    try cluster.propose("after", at: leader, sequence: 1)
                    laterWriteIndex = cluster.nodes[leader]!.lastIndex
                }
            }
            // Every ms once another leader exists (the old one may step down within a message delay).
            let probeNow = newLeader != nil && cluster.nodes[old]!.currentRole == .leader
            guard elapsed % 5 == 0 || probeNow else { continue }
            // A lease read served at once skipped the quorum round: it relies on the lease alone.
            sequence += 1
            let before = cluster.readyReads[old]?.count ?? 0
            _ = cluster.read(sequence, at: old, mode: .lease)
            guard let servedNow = cluster.readyReads[old]?.dropFirst(before).first else { continue }
            if elapsed < 2000 { leaseReadsBeforeFullCut += 1 }
            if newLeader != nil { leaseReadsAfterNewLeader.append(elapsed) }
            if let write = laterWriteIndex, let leader = newLeader, cluster.nodes[leader]!.commitIndex >= write,
                servedNow.index < write
            {
                staleReads.append((elapsed, servedNow.index))
            }
        }

        XCTAssertGreaterThan(
            leaseReadsBeforeFullCut, 0, "the old leader served lease reads with the backer's help", file: file,
            line: line)
        XCTAssertNotNil(
            newLeader, "once the old leader is cut off, the majority side elects a new leader", file: file, line: line)
        XCTAssertEqual(
            leaseReadsAfterNewLeader.count, 0,
            "lease reads the old leader served while \(newLeader.map { "\($0)" } ?? "-") led, from "
                + "\(leaseReadsAfterNewLeader.first ?? 0) to \(leaseReadsAfterNewLeader.last ?? 0) ms after the first cut",
            file: file, line: line)
        XCTAssertEqual(
            staleReads.count, 0,
            "stale lease reads: the first at \(staleReads.first?.atMs ?? 0) ms after the first cut served index "
                + "\(staleReads.first?.index ?? 0) after the new leader committed index "
                + "\(laterWriteIndex.map(String.init) ?? "-")", file: file, line: line)
    }

    /// With the hair trigger the backer suspects even a leader it still hears, between two heartbeats.
    func testTheFollowerThatBackedTheLeaseDoesNotElectItselfWhileTheLeaseHolds() throws {
        try checkNoLeaseReadOutlivesTheLeadership(tune: Self.hairTrigger)
    }

    /// A quick but not hair-triggered detector (TANDEM_PHI_THRESHOLD=3, TANDEM_PHI_ACCEPTABLE_PAUSE=0ms,
    /// TANDEM_PHI_MIN_STDDEV=40ms): the backer suspects about 220 ms after the old leader's last heartbeat, while
    /// the isolated old leader still holds its lease, and a write the new leader commits is missed by its reads.
    func testAQuickDetectorDoesNotLetTheBackerOutrunTheLeaseOfAnIsolatedLeader() throws {
        try checkNoLeaseReadOutlivesTheLeadership(tune: {
            $0.phiThreshold = 3
            $0.phiAcceptablePauseMs = 0
            $0.phiMinStdDevMs = 40
        })
    }

    /// The follower's own side of the rule, in isolation: it heard its leader a moment ago, its detector says
    /// "suspected", and still it asks nobody for a pre-vote until the stickiness window has passed.
    func testAFollowerThatJustHeardItsLeaderStartsNoPreVoteBeforeTheStickinessWindowEnds() {
        var cluster = TestCluster(size: 3, tune: Self.hairTrigger)
        let leader = cluster.electLeader()
        cluster.run(forMs: 2000)
        let follower = cluster.followers(of: leader)[0]
        let stickiness = cluster.nodes[follower]!.config.leaderStickinessMs
        // The hair trigger makes it suspect even a live leader between heartbeats: look only after the cut.
        cluster.isolate([leader])
        let cutAt = cluster.nowMs
        let sentBefore = cluster.sent.count
        let preVote = cluster.run(untilWithinMs: 3000) { c in
            c.sent.dropFirst(sentBefore).contains {
                if case .preVoteRequest = $0 { $0.from == follower } else { false }
            }
        }
        XCTAssertNotNil(preVote, "it does suspect the leader in the end")
        XCTAssertGreaterThanOrEqual(
            cluster.nowMs - cutAt, stickiness - 100,
            "no pre-vote within the stickiness window (\(stickiness) ms) after the last heartbeat")
    }

    /// The detector's standard score for the threshold is kept in the configuration, not derived on each use: it
    /// follows every change of the threshold, and the default one equals the derivation's.
    func testTheKeptDetectionTimeFollowsTheThresholdAsTheDerivationDoes() {
        var config = RaftConfig(id: NodeID("n1"), peers: [NodeID("n1")])
        func derived(_ config: RaftConfig) -> Int64 {
            let ms =
                Double(config.heartbeatIntervalMs) + config.phiAcceptablePauseMs
                + PhiAccrualDetector.standardScore(forPhi: config.phiThreshold) * config.phiMinStdDevMs
            return Int64(max(ms, 0))
        }
        XCTAssertEqual(config.steadyDetectionMs, derived(config))
        XCTAssertEqual(config.steadyDetectionMs, 861, "the documented default")
        for phi in [0.1, 1, 3, 8, 12, 99.9] {
            config.phiThreshold = phi
            config.phiMinStdDevMs = 40
            XCTAssertEqual(config.steadyDetectionMs, derived(config), "phi \(phi)")
        }
        config.phiThreshold = 1
        XCTAssertLessThan(config.steadyDetectionMs, 700, "lowering the threshold shortens detection")
    }

    /// The derivation holds for every accepted combination at the edges of the failure-detection variables
    /// (the bounds of the README's configuration reference): stickiness below the election timeout, a positive
    /// lease, and a drift margin of at least an eighth of the stickiness.
    func testEveryAcceptedTimingDerivesAStickinessAndLeaseThatSatisfyTheRelations() {
        let electionTimeouts: [Int64] = [10, 11, 99, 101, 500, 799, 800, 801, 999, 1000, 1001, 3000, 59_999, 60_000]
        let heartbeats: [Int64] = [1, 2, 9, 50, 100, 999, 9_999, 10_000]
        let thresholds: [Double] = [0.1, 1, 8, 99.9, 100]
        let deviations: [Double] = [1, 50, 60_000]
        let pauses: [Double] = [0, 500, 60_000]
        var checked = 0
        for e in electionTimeouts {
            for h in heartbeats where h < e {
                for phi in thresholds {
                    for sigma in deviations {
                        for pause in pauses {
                            var config = RaftConfig(
                                id: NodeID("n1"), peers: [NodeID("n1"), NodeID("n2"), NodeID("n3")])
                            config.electionTimeoutMs = e
                            config.heartbeatIntervalMs = h
                            config.phiThreshold = phi
                            config.phiMinStdDevMs = sigma
                            config.phiAcceptablePauseMs = pause
                            let label = "E=\(e) H=\(h) phi=\(phi) sigma=\(sigma) pause=\(pause)"
                            XCTAssertEqual(config.problems, [], label)
                            XCTAssertLessThan(config.leaderStickinessMs, e, label)
                            XCTAssertGreaterThan(config.leaseDurationMs, 0, label)
                            XCTAssertEqual(
                                config.leaseDurationMs + config.leaseClockDriftMarginMs, config.leaderStickinessMs,
                                label)
                            XCTAssertGreaterThanOrEqual(
                                config.leaseClockDriftMarginMs * 8, config.leaderStickinessMs, label)
                            checked += 1
                        }
                    }
                }
            }
        }
        XCTAssertGreaterThan(checked, 1000)
    }

    /// The documented defaults keep the stickiness and lease they always had.
    func testTheDefaultsKeepAnEightHundredMillisecondStickinessAndASevenHundredMillisecondLease() {
        let config = RaftConfig(id: NodeID("n1"), peers: [NodeID("n1")])
        XCTAssertEqual(config.leaderStickinessMs, 800)
        XCTAssertEqual(config.leaseClockDriftMarginMs, 100)
        XCTAssertEqual(config.leaseDurationMs, 700)
    }

    /// Stickiness follows the detector, not only the election timeout: with the longest accepted election timeout
    /// a crashed leader is still replaced within about the detector's time, not after most of a minute.
    func testWithTheLongestElectionTimeoutFailoverStillFollowsTheDetector() {
        var cluster = TestCluster(size: 3) { $0.electionTimeoutMs = 60_000 }
        let old = cluster.electLeaderAfterStart(withinMs: 130_000)
        cluster.run(forMs: 3000)
        cluster.crash(old)
        let replaced = cluster.run(untilWithinMs: 10_000) { c in c.leaders.contains { $0 != old } }
        XCTAssertNotNil(replaced)
        XCTAssertLessThan(replaced ?? .max, 2000, "the detector, not the 60 s timeout, paces failover")
    }

    /// With an election timeout below the old fixed 800 ms stickiness (TANDEM_ELECTION_TIMEOUT=500ms) the core
    /// starts, elects, and fails over.
    func testAFiveHundredMillisecondElectionTimeoutElectsAndFailsOver() {
        var cluster = TestCluster(size: 3) { $0.electionTimeoutMs = 500 }
        let old = cluster.electLeader()
        cluster.run(forMs: 2000)
        cluster.crash(old)
        let replaced = cluster.run(untilWithinMs: 3000) { c in c.leaders.contains { $0 != old } }
        XCTAssertNotNil(replaced)
    }
}

extension TestCluster {
    /// Like `electLeader`, for timeouts longer than its 5 s budget.
    mutating func electLeaderAfterStart(withinMs limit: Int64) -> NodeID {
        let elapsed = run(untilWithinMs: limit) { $0.leader != nil }
        XCTAssertNotNil(elapsed, "no leader within \(limit) ms")
        return leader ?? ids[0]
    }
}
