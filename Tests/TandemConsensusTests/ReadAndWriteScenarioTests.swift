import TandemConsensus
import XCTest

/// Stories of writes, reads and leadership transfer.
final class ReadAndWriteScenarioTests: XCTestCase {
    func testAOneNodeClusterCommitsNothingBeforeItsLogIsPersisted() throws {
        let id = NodeID("solo")
        var node = RaftNode(config: RaftConfig(id: id, peers: [id]), recovered: RecoveredState(), seed: 1)
        for now in stride(from: Int64(0), through: 2500, by: 10) { node.tick(nowMs: now) }  // Past the timeout.
        var ready = node.ready()
        XCTAssertEqual(node.currentRole, .candidate, "its own vote is its quorum, but only once durable")
        XCTAssertEqual(ready.hardState?.votedFor, id)
        node.advance(ready)
        XCTAssertEqual(node.currentRole, .leader)
        ready = node.ready()
        XCTAssertEqual(ready.entriesToPersist.map(\.kind), [.noop])
        XCTAssertTrue(ready.committedEntries.isEmpty, "the no-op is not durable yet")
        node.advance(ready)
        ready = node.ready()
        XCTAssertEqual(ready.committedEntries.map(\.kind), [.noop], "committed once persisted")
        node.advance(ready)

        try node.propose(
            Array("x".utf8), id: ProposalID(origin: id, sequence: 1), wallTimeMs: 1_700_000_000_000, nowMs: 2520)
        ready = node.ready()
        XCTAssertEqual(ready.acceptedProposals.map(\.index), [2])
        XCTAssertEqual(ready.entriesToPersist.map(\.index), [2])
        XCTAssertTrue(ready.committedEntries.isEmpty, "a single node must not acknowledge before fsync")
        node.advance(ready)
        ready = node.ready()
        XCTAssertEqual(ready.committedEntries.map(\.index), [2])
        XCTAssertEqual(ready.committedEntries.first?.timeMs, 1_700_000_000_000, "entries carry the leader's wall clock")
    }

    func testAProposalOnAFollowerIsForwardedCommittedAndAppliedEverywhere() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        try cluster.propose("hello", at: follower, sequence: 1)
        let applied = cluster.run(untilWithinMs: 200) { c in c.ids.allSatisfy { c.appliedPayloads($0) == ["hello"] } }
        XCTAssertNotNil(applied)
        let entry = cluster.applied[follower]!.last!
        XCTAssertEqual(entry.proposal, ProposalID(origin: follower, sequence: 1), "the origin can answer its client")
        XCTAssertEqual(cluster.accepted[follower], [ProposalID(origin: follower, sequence: 1)])
    }

    func testADuplicatedForwardIsAppendedOnceAndAnsweredTheSameWay() {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        let id = ProposalID(origin: follower, sequence: 42)
        let forward = Message.proposalForward(
            ProposalForward(
                from: follower, to: leader, term: cluster.nodes[follower]!.currentTerm,
                proposals: [ForwardedProposal(id: id, data: Array("once".utf8))]))
        cluster.nodes[leader]!.step(forward, nowMs: cluster.nowMs)
        cluster.nodes[leader]!.step(forward, nowMs: cluster.nowMs)  // The network delivered it twice.
        let answers = cluster.nodes[leader]!.ready().messages.compactMap { message -> ProposalOutcome? in
            if case .proposalForwardResponse(let response) = message { return response.outcomes[id] }
            return nil
        }
        XCTAssertEqual(answers.count, 2)
        XCTAssertEqual(Set(answers.map { "\($0)" }).count, 1, "both copies get the same answer")
        let copies = (1...cluster.nodes[leader]!.lastIndex).filter {
            cluster.nodes[leader]!.entry(at: $0)?.proposal == id
        }
        XCTAssertEqual(copies.count, 1, "appended once")
    }

    func testAProposalWithNoKnownLeaderIsRefusedAtOnce() {
        var cluster = TestCluster(size: 3)
        XCTAssertThrowsError(try cluster.propose("x", at: NodeID("n1"), sequence: 1)) { error in
            XCTAssertEqual(error as? ProposalError, .noLeader)
        }
    }

    func testTheUncommittedBytesCapRejectsProposalsWhenAQuorumIsUnreachable() throws {
        var cluster = TestCluster(size: 3) { $0.maxUncommittedBytes = 1000 }
        let leader = cluster.electLeader()
        cluster.isolate([leader])
        var refusal: ProposalError?
        for sequence in UInt64(1)...50 {
            do throws(ProposalError) {
                try cluster.propose(String(repeating: "x", count: 100), at: leader, sequence: sequence)
            } catch {
                refusal = error
                XCTAssertGreaterThan(sequence, 5, "the cap admits about 1000 bytes first")
                break
            }
        }
        XCTAssertEqual(refusal, .overloaded)
        XCTAssertLessThanOrEqual(cluster.nodes[leader]!.status.uncommittedBytes, 1000)
    }

    func testAnOversizedProposalIsRefused() {
        var cluster = TestCluster(size: 3) { $0.maxMessageBytes = 100 }
        let leader = cluster.electLeader()
        XCTAssertThrowsError(try cluster.propose(String(repeating: "x", count: 101), at: leader, sequence: 1)) {
            XCTAssertEqual($0 as? ProposalError, .tooLarge)
        }
    }

    func testReadIndexWaitsForAQuorumRoundSentAfterTheReadArrived() {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        cluster.run(forMs: 50)
        let sentBefore = cluster.sent.count
        let read = cluster.read(1, at: leader, mode: .readIndex)
        XCTAssertTrue(cluster.readyReads[leader, default: []].isEmpty, "not served before the round returns")
        let round = cluster.sent[sentBefore...].compactMap { if case .heartbeat(let h) = $0 { h.round } else { nil } }
        XCTAssertEqual(round.count, 2, "a fresh round goes to both followers at once")
        cluster.run(forMs: 10)
        XCTAssertEqual(cluster.readyReads[leader]?.map(\.id), [read])
        XCTAssertEqual(cluster.readyReads[leader]?.first?.index, cluster.nodes[leader]!.commitIndex)
    }

    func testReadIndexWorksOnAFollower() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        try cluster.propose("v1", at: leader, sequence: 1)
        cluster.run(forMs: 20)
        let read = cluster.read(7, at: follower, mode: .readIndex)
        cluster.run(forMs: 20)
        XCTAssertEqual(cluster.readyReads[follower]?.map(\.id), [read])
        XCTAssertEqual(cluster.readyReads[follower]?.first?.index, 2, "the index covers the committed write")
    }

    func testAReadAtANewLeaderWaitsUntilItCommitsAnEntryOfItsTerm() {
        var cluster = TestCluster(size: 3)
        cluster.run(untilWithinMs: 5000) { $0.leader != nil }
        let leader = cluster.leader!
        let read = cluster.read(1, at: leader, mode: .lease)
        XCTAssertTrue(cluster.readyReads[leader, default: []].isEmpty, "no read before the no-op commits")
        cluster.run(forMs: 30)
        XCTAssertEqual(cluster.readyReads[leader]?.map(\.id), [read])
        XCTAssertGreaterThanOrEqual(cluster.readyReads[leader]!.first!.index, 1)
    }

    func testLeaseReadsAreServedWithoutARoundWhileTheLeaseHolds() {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        cluster.run(forMs: 200)
        XCTAssertTrue(cluster.nodes[leader]!.leaseValid)
        let sentBefore = cluster.sent.count
        let read = cluster.read(1, at: leader, mode: .lease)
        XCTAssertEqual(cluster.readyReads[leader]?.map(\.id), [read], "served at once")
        XCTAssertEqual(cluster.sent.count, sentBefore, "no round was needed")
    }

    func testLeaseReadsAreRefusedOnceCheckQuorumFails() {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        cluster.run(forMs: 500)
        cluster.isolate([leader])
        // The lease is 700 ms from the last acknowledged round; after that a lease read needs a round, which
        // cannot complete, and check-quorum deposes the leader within an election timeout.
        let expiry = cluster.run(untilWithinMs: 1000) { !$0.nodes[leader]!.leaseValid }
        XCTAssertNotNil(expiry)
        XCTAssertLessThanOrEqual(expiry ?? .max, 710, "the lease ends no later than its duration")
        let read = cluster.read(1, at: leader, mode: .lease)
        XCTAssertTrue(cluster.readyReads[leader, default: []].isEmpty, "an expired lease serves nothing")
        let deposed = cluster.run(untilWithinMs: 1500) { $0.nodes[leader]!.currentRole != .leader }
        XCTAssertNotNil(deposed, "check-quorum steps the leader down")
        XCTAssertEqual(cluster.failedReads[leader]?.map(\.id), [read])
        XCTAssertEqual(cluster.failedReads[leader]?.first?.error, .notLeader)
        XCTAssertTrue(cluster.readyReads[leader, default: []].isEmpty)
        let later = cluster.read(2, at: leader, mode: .lease)
        XCTAssertEqual(cluster.failedReads[leader]?.last?.id, later, "a deposed leader refuses lease reads")
    }

    func testLeadershipTransferCatchesTheTargetUpAndHandsOver() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let target = cluster.followers(of: leader)[1]
        let term = cluster.nodes[leader]!.currentTerm
        cluster.crash(target)
        for sequence in UInt64(1)...5 { try cluster.propose("w\(sequence)", at: leader, sequence: sequence) }
        cluster.run(forMs: 50)
        cluster.restart(target)  // It rejoins behind: the transfer must catch it up first.
        cluster.run(forMs: 300)

        try cluster.nodes[leader]!.transferLeadership(to: target, nowMs: cluster.nowMs)
        cluster.drain(leader)
        XCTAssertFalse(cluster.nodes[leader]!.leaseValid, "no lease while handing off")
        XCTAssertThrowsError(try cluster.propose("blocked", at: leader, sequence: 99)) {
            XCTAssertEqual($0 as? ProposalError, .leadershipTransferInProgress)
        }
        let handedOver = cluster.run(untilWithinMs: 500) { $0.leader == target }
        XCTAssertNotNil(handedOver)
        XCTAssertLessThan(handedOver ?? .max, 100, "a transfer takes a few round trips, not an election timeout")
        XCTAssertEqual(cluster.nodes[target]!.currentTerm, term + 1)
        XCTAssertEqual(cluster.nodes[target]!.lastIndex, cluster.nodes[leader]!.lastIndex + 1, "it holds the whole log")
        XCTAssertTrue(cluster.sent.contains { if case .timeoutNow = $0 { $0.to == target } else { false } })
    }

    func testLeadershipTransferRefusesBadTargets() {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        XCTAssertThrowsError(try cluster.nodes[leader]!.transferLeadership(to: leader, nowMs: cluster.nowMs)) {
            XCTAssertEqual($0 as? TransferError, .targetIsSelf)
        }
        XCTAssertThrowsError(try cluster.nodes[leader]!.transferLeadership(to: NodeID("zz"), nowMs: cluster.nowMs)) {
            XCTAssertEqual($0 as? TransferError, .unknownTarget)
        }
        XCTAssertThrowsError(try cluster.nodes[follower]!.transferLeadership(to: leader, nowMs: cluster.nowMs)) {
            XCTAssertEqual($0 as? TransferError, .notLeader)
        }
    }

    func testFlowControlBoundsAppendsInFlightToASilentFollower() throws {
        var cluster = TestCluster(size: 3) { $0.maxInflightMessages = 4 }
        let leader = cluster.electLeader()
        let silent = cluster.followers(of: leader)[0]
        cluster.blocked.insert([silent, leader])  // Its acknowledgements are lost; appends still arrive.
        for sequence in UInt64(1)...40 {
            try cluster.propose("w\(sequence)", at: leader, sequence: sequence)
            cluster.run(forMs: 1)
        }
        let peer = cluster.nodes[leader]!.status.peers.first { $0.id == silent }!
        XCTAssertLessThanOrEqual(peer.inflightMessages, 4, "never more than the inflight limit")
    }

    func testAFollowerThatLostEntriesIsRepairedThroughTheConsistencyCheck() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        cluster.isolate([follower])
        for sequence in UInt64(1)...30 { try cluster.propose("w\(sequence)", at: leader, sequence: sequence) }
        cluster.run(forMs: 100)
        cluster.heal()
        let repaired = cluster.run(untilWithinMs: 1000) { $0.appliedPayloads(follower).count == 30 }
        XCTAssertNotNil(repaired)
        XCTAssertEqual(cluster.appliedPayloads(follower), cluster.appliedPayloads(leader))
    }
}
