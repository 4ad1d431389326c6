import TandemConsensus
import XCTest

/// Membership changes: the single-server rules, learners, rollback on truncation, the removed leader's hand-off,
/// the configuration carried by snapshots, and the promotion policy.
final class MembershipTests: XCTestCase {
    let n1 = NodeID("n1"), n2 = NodeID("n2"), n3 = NodeID("n3"), n4 = NodeID("n4"), n5 = NodeID("n5")
    let n6 = NodeID("n6")

    /// A cluster of `voters` initial voters; the other ids exist (address book) but start outside the configuration.
    func cluster(ids count: Int, voters: Int) -> TestCluster {
        let initial = ClusterConfiguration(voters: (1...voters).map { NodeID("n\($0)") })
        return TestCluster(size: count) { $0.initialConfiguration = initial }
    }

    func change(
        _ cluster: inout TestCluster, _ change: MembershipChange, at id: NodeID
    ) throws(MembershipError) -> UInt64 {
        let index = try cluster.nodes[id]!.proposeMembershipChange(change, nowMs: cluster.nowMs)
        cluster.drain(id)
        return index
    }

    func error(_ body: () throws(MembershipError) -> Void) -> MembershipError? {
        do throws(MembershipError) {
            try body()
            return nil
        } catch {
            return error
        }
    }

    // MARK: Encoding

    func testConfigurationEncodingRoundTripsAndRefusesMalformedBytes() {
        let configuration = ClusterConfiguration(voters: [n3, n1, n2], learners: [n5, n4])
        XCTAssertEqual(configuration.voters, [n1, n2, n3])
        XCTAssertEqual(ClusterConfiguration(decoding: configuration.encoded), configuration)
        var bytes = configuration.encoded
        bytes.append(0)
        XCTAssertNil(ClusterConfiguration(decoding: bytes), "trailing bytes")
        XCTAssertNil(ClusterConfiguration(decoding: Array(configuration.encoded.dropLast())), "truncated")
        XCTAssertNil(ClusterConfiguration(decoding: [9, 0, 0, 0, 0]), "unknown version")
        XCTAssertNil(ClusterConfiguration(decoding: [1, 0, 1, 0, 2, 0x20, 0x20, 0, 0]), "malformed id")
        XCTAssertEqual(EntryKind(rawValue: 0), .noop, "old kinds still decode")
        XCTAssertEqual(EntryKind(rawValue: 1), .normal)
        XCTAssertEqual(EntryKind(rawValue: 2), .configuration)
    }

    func testSingleServerStepsKeepMajoritiesIntersectingAndTwoStepsDoNot() {
        let four = ClusterConfiguration(voters: [n1, n2, n3, n4])
        let plus5 = ClusterConfiguration(voters: [n1, n2, n3, n4, n5])
        let plus6 = ClusterConfiguration(voters: [n1, n2, n3, n4, n6])
        XCTAssertTrue(four.majoritiesIntersect(plus5))
        XCTAssertTrue(four.majoritiesIntersect(plus6))
        // The raft-dev bug: two sibling changes from the same committed configuration ({n1,n2,n5} and {n3,n4,n6}).
        XCTAssertFalse(plus5.majoritiesIntersect(plus6))
    }

    func testAMessageWithAnUndecodableConfigurationEntryIsRefused() {
        let entry = Entry(term: 1, index: 1, kind: .configuration, timeMs: 0, proposal: nil, data: [1, 2, 3])
        let append = Message.appendEntries(
            AppendEntries(from: n1, to: n2, term: 1, prevLogIndex: 0, prevLogTerm: 0, entries: [entry], leaderCommit: 0)
        )
        XCTAssertNotNil(append.malformation)
    }

    // MARK: The leader's rules

    func testAChangeIsRefusedUntilTheLeaderCommittedAnEntryOfItsTerm() throws {
        var cluster = cluster(ids: 4, voters: 3)
        XCTAssertNotNil(cluster.run(untilWithinMs: 5000) { $0.leader != nil })
        let leader = cluster.leader!
        let node = cluster.nodes[leader]!
        XCTAssertNotEqual(node.term(at: node.commitIndex), node.currentTerm, "elected, the no-op not yet committed")
        XCTAssertEqual(
            error { () throws(MembershipError) in _ = try change(&cluster, .addLearner(n4), at: leader) },
            .notYetCommittedInTerm)
        XCTAssertEqual(cluster.nodes[leader]!.configuration, ClusterConfiguration(voters: [n1, n2, n3]))
        _ = cluster.electLeader()
        XCTAssertNoThrow(try change(&cluster, .addLearner(n4), at: leader))
    }

    func testASecondChangeIsRefusedWhileTheFirstIsUncommittedAndOtherRulesHold() throws {
        var cluster = cluster(ids: 5, voters: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader).first { cluster.nodes[leader]!.configuration.isVoter($0) }!
        XCTAssertEqual(
            error { () throws(MembershipError) in _ = try change(&cluster, .addLearner(n4), at: follower) },
            .notLeader)
        XCTAssertEqual(
            error { () throws(MembershipError) in _ = try change(&cluster, .promote(n4), at: leader) },
            .unknownMember)
        XCTAssertEqual(
            error { () throws(MembershipError) in _ = try change(&cluster, .addLearner(leader), at: leader) },
            .alreadyMember)
        cluster.isolate([leader])  // Nothing it appends can commit now.
        let first = try change(&cluster, .addLearner(n4), at: leader)
        XCTAssertEqual(cluster.nodes[leader]!.configuration.learners, [n4], "in force on the leader once appended")
        XCTAssertFalse(cluster.nodes[leader]!.committedConfiguration.contains(n4))
        XCTAssertEqual(
            error { () throws(MembershipError) in _ = try change(&cluster, .addLearner(n5), at: leader) },
            .changeInProgress)
        XCTAssertEqual(
            error { () throws(MembershipError) in _ = try change(&cluster, .promote(n4), at: leader) },
            .changeInProgress)
        cluster.heal()
        XCTAssertNotNil(cluster.run(untilWithinMs: 1000) { $0.nodes[leader]!.commitIndex >= first })
        XCTAssertEqual(cluster.nodes[leader]!.committedConfiguration.learners, [n4])
        XCTAssertNoThrow(try change(&cluster, .promote(n4), at: leader))
    }

    func testRemovingTheLastVotersIsRefusedBelowTheMinimum() throws {
        var cluster = TestCluster(size: 2) { $0.minimumVoters = 2 }
        let leader = cluster.electLeader()
        let other = cluster.followers(of: leader)[0]
        XCTAssertEqual(
            error { () throws(MembershipError) in _ = try change(&cluster, .remove(other), at: leader) },
            .wouldGoBelowMinimum)
    }

    // MARK: Learners

    func testALearnerReceivesTheLogButNeitherCountsForCommitNorCampaigns() throws {
        var cluster = cluster(ids: 4, voters: 3)
        let leader = cluster.electLeader()
        let added = try change(&cluster, .addLearner(n4), at: leader)
        try cluster.propose("w1", at: leader, sequence: 1)
        XCTAssertNotNil(cluster.run(untilWithinMs: 1000) { $0.appliedPayloads(self.n4) == ["w1"] }, "it gets the log")
        XCTAssertGreaterThanOrEqual(cluster.nodes[n4]!.commitIndex, added)
        XCTAssertFalse(cluster.nodes[n4]!.isVoter)
        XCTAssertEqual(cluster.nodes[n4]!.configuration, cluster.nodes[leader]!.configuration)

        // Only the leader and the learner are left: one of three voters, so nothing commits however far the
        // learner's copy goes.
        for voter in cluster.followers(of: leader) where voter != n4 { cluster.crash(voter) }
        let commit = cluster.nodes[leader]!.commitIndex
        try cluster.propose("w2", at: leader, sequence: 2)
        cluster.run(forMs: 500)
        let learner = cluster.nodes[leader]!.memberProgress.first { $0.id == n4 }
        XCTAssertEqual(learner?.matchIndex, cluster.nodes[leader]!.lastIndex, "the learner holds the new entry")
        XCTAssertEqual(learner?.lag, 0)
        XCTAssertEqual(cluster.nodes[leader]!.commitIndex, commit, "but a learner's copy does not count")

        // With the leader gone as well, the learner never campaigns.
        cluster.crash(leader)
        let sentBefore = cluster.sent.count
        cluster.run(forMs: 5000)
        XCTAssertEqual(cluster.nodes[n4]!.currentRole, .follower)
        let asked = cluster.sent[sentBefore...].contains {
            switch $0 {
            case .preVoteRequest(let m), .voteRequest(let m): m.from == n4
            default: false
            }
        }
        XCTAssertFalse(asked, "a learner asks for no (pre-)vote")
    }

    func testALearnerCannotBeALeadershipTransferTarget() throws {
        var cluster = cluster(ids: 4, voters: 3)
        let leader = cluster.electLeader()
        try change(&cluster, .addLearner(n4), at: leader)
        XCTAssertThrowsError(try cluster.nodes[leader]!.transferLeadership(to: n4, nowMs: cluster.nowMs)) {
            XCTAssertEqual($0 as? TransferError, .unknownTarget)
        }
    }

    // MARK: Rollback

    func testATruncatedConfigurationEntryRollsBackToThePreviousConfiguration() throws {
        var cluster = cluster(ids: 6, voters: 5)
        let old = cluster.electLeader()
        let buddy = cluster.followers(of: old).first { $0 != n6 }!
        cluster.isolate([old, buddy])
        try change(&cluster, .addLearner(n6), at: old)
        cluster.run(forMs: 50)
        XCTAssertTrue(cluster.nodes[old]!.configuration.isLearner(n6), "in force on the leader when appended")
        XCTAssertTrue(cluster.nodes[buddy]!.configuration.isLearner(n6), "and on a follower when it appends it")
        XCTAssertFalse(cluster.nodes[buddy]!.committedConfiguration.contains(n6))

        let replaced = cluster.run(untilWithinMs: 5000) { c in
            c.leaders.contains { $0 != old && $0 != buddy && c.nodes[$0]!.commitIndex > 0 }
        }
        XCTAssertNotNil(replaced)
        let newLeader = cluster.leaders.first { $0 != old && $0 != buddy }!
        try cluster.propose("after", at: newLeader, sequence: 1)
        cluster.heal()
        let rolledBack = cluster.run(untilWithinMs: 3000) { c in
            c.appliedPayloads(old) == ["after"] && c.appliedPayloads(buddy) == ["after"]
        }
        XCTAssertNotNil(rolledBack)
        for id in [old, buddy] {
            XCTAssertEqual(
                cluster.nodes[id]!.configuration, ClusterConfiguration(voters: [n1, n2, n3, n4, n5]),
                "\(id) rolled back when its entry was truncated")
        }
    }

    // MARK: Removal

    func testARemovedLeaderHandsOffToAVoterStepsDownAndNeverCampaignsAgain() throws {
        var cluster = TestCluster(size: 3)
        let old = cluster.electLeader()
        try cluster.propose("before", at: old, sequence: 1)
        let removal = try change(&cluster, .remove(old), at: old)
        let sentBefore = cluster.sent.count
        let replaced = cluster.run(untilWithinMs: 3000) { c in
            c.leaders.contains { $0 != old } && c.nodes[old]!.currentRole != .leader
        }
        XCTAssertNotNil(replaced, "a remaining voter leads")
        XCTAssertLessThan(replaced ?? .max, 500, "handed off, not waited out")
        XCTAssertTrue(
            cluster.sent[sentBefore...].contains {
                if case .timeoutNow(let m) = $0 { return m.from == old }
                return false
            }, "the removed leader asked its successor to campaign at once")
        let newLeader = cluster.leader!
        XCTAssertGreaterThanOrEqual(cluster.nodes[newLeader]!.commitIndex, removal)
        XCTAssertEqual(cluster.nodes[newLeader]!.committedConfiguration.voters, cluster.followers(of: old))
        try cluster.propose("after", at: newLeader, sequence: 2)
        XCTAssertNotNil(cluster.run(untilWithinMs: 1000) { c in c.appliedPayloads(newLeader) == ["before", "after"] })
        let sentAfter = cluster.sent.count
        cluster.crash(newLeader)
        cluster.run(forMs: 5000)
        XCTAssertNotEqual(cluster.nodes[old]!.currentRole, .leader)
        XCTAssertFalse(
            cluster.sent[sentAfter...].contains {
                switch $0 {
                case .preVoteRequest(let m), .voteRequest(let m): m.from == old
                default: false
                }
            }, "a node outside the configuration never campaigns")
    }

    // MARK: Snapshots

    func testASnapshotCarriesTheConfigurationToANodeThatRestoresFromIt() throws {
        var cluster = cluster(ids: 4, voters: 3)
        let leader = cluster.electLeader()
        cluster.crash(n4)
        try change(&cluster, .addLearner(n4), at: leader)
        for k in 1...5 { try cluster.propose("w\(k)", at: leader, sequence: UInt64(k)) }
        XCTAssertNotNil(cluster.run(untilWithinMs: 1000) { c in c.appliedPayloads(leader).count == 5 })
        let end = cluster.nodes[leader]!.commitIndex
        XCTAssertNotNil(cluster.compact(leader, through: end))
        XCTAssertEqual(cluster.nodes[leader]!.baseConfiguration.learners, [n4], "compaction keeps the configuration")

        cluster.restart(n4)
        XCTAssertNotNil(cluster.run(untilWithinMs: 3000) { c in c.appliedPayloads(self.n4).count == 5 })
        XCTAssertFalse(cluster.installs.isEmpty, "caught up by a snapshot")
        XCTAssertEqual(cluster.nodes[n4]!.configuration, cluster.nodes[leader]!.configuration)
        XCTAssertTrue(cluster.nodes[n4]!.configuration.isLearner(n4))
        // Restarted from its disk (the snapshot's base and configuration), it still knows it is a learner.
        cluster.crash(n4)
        cluster.restart(n4)
        XCTAssertTrue(cluster.nodes[n4]!.configuration.isLearner(n4))
        XCTAssertEqual(cluster.nodes[n4]!.baseConfiguration, cluster.nodes[leader]!.configuration)
    }

    // MARK: Promotion policy

    func testThePromotionPolicyWaitsForTheLagToStayLowForTheStabilizationTime() {
        var policy = LearnerPromotionPolicy(maxLag: 10, stabilizationMs: 1000)
        func learner(_ id: NodeID, lag: UInt64) -> MemberProgress {
            MemberProgress(id: id, isVoter: false, matchIndex: 100 - lag, lag: lag, lastHeardMs: 0)
        }
        let voter = MemberProgress(id: n2, isVoter: true, matchIndex: 100, lag: 0, lastHeardMs: 0)
        XCTAssertNil(policy.observe([voter, learner(n4, lag: 5)], nowMs: 0))
        XCTAssertNil(policy.observe([voter, learner(n4, lag: 50)], nowMs: 500), "fell behind: the clock restarts")
        XCTAssertNil(policy.observe([voter, learner(n4, lag: 3)], nowMs: 600))
        XCTAssertNil(policy.observe([voter, learner(n4, lag: 3), learner(n5, lag: 0)], nowMs: 1500))
        XCTAssertEqual(policy.observe([voter, learner(n4, lag: 3), learner(n5, lag: 0)], nowMs: 1600), n4)
        XCTAssertNil(policy.observe([voter], nowMs: 1700), "voters are never proposed")
    }
}
