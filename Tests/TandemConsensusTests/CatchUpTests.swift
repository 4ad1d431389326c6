import TandemConsensus
import XCTest

/// Stories of followers that fell behind, or lost their log, and must be brought back by the same leader.
final class CatchUpTests: XCTestCase {
    func testAFollowerWipedUnderTheSameLeaderIsCaughtUpFromItsEmptyLog() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        for k in 1...20 { try cluster.propose("w\(k)", at: leader, sequence: UInt64(k)) }
        XCTAssertNotNil(cluster.run(untilWithinMs: 500) { c in c.ids.allSatisfy { c.appliedPayloads($0).count == 20 } })

        cluster.wipe(follower)
        try cluster.propose("w21", at: leader, sequence: 21)
        let caughtUp = cluster.run(untilWithinMs: 3000) { c in
            c.nodes[follower]!.lastIndex == c.nodes[leader]!.lastIndex && c.appliedPayloads(follower).count == 21
        }
        XCTAssertNotNil(caughtUp, "the wiped follower stays at index \(cluster.nodes[follower]!.lastIndex)")
        XCTAssertEqual(cluster.leader, leader, "caught up by the leader that recorded its old match")
        XCTAssertEqual(cluster.appliedPayloads(follower), (1...21).map { "w\($0)" })
        XCTAssertEqual(cluster.nodes[leader]!.replicationDiagnostics(for: follower)?.lostLogResets, 1, "counted")
        let other = cluster.followers(of: leader)[1]
        XCTAssertEqual(cluster.nodes[leader]!.replicationDiagnostics(for: other)?.lostLogResets, 0)
    }

    func testAFollowerWipedWhileTheLeaderIsIdleIsCaughtUpWithoutANewWrite() throws {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        for k in 1...5 { try cluster.propose("w\(k)", at: leader, sequence: UInt64(k)) }
        XCTAssertNotNil(cluster.run(untilWithinMs: 500) { c in c.ids.allSatisfy { c.appliedPayloads($0).count == 5 } })

        cluster.wipe(follower)  // Nothing is written afterwards: only heartbeats reach it.
        let caughtUp = cluster.run(untilWithinMs: 3000) { c in c.appliedPayloads(follower).count == 5 }
        XCTAssertNotNil(caughtUp, "the wiped follower stays at index \(cluster.nodes[follower]!.lastIndex)")
        XCTAssertEqual(cluster.leader, leader)
        XCTAssertEqual(cluster.nodes[leader]!.replicationDiagnostics(for: follower)?.lostLogResets, 1)
    }

    /// Three members named like pods, 40 bytes each.
    private let podIDs = (1...3).map { NodeID("tandem-statefulset-replica-\($0)-abcdefghijk") }

    /// Cuts one follower off while `count` writes of 4 KiB commit, then lets it back; returns when it holds the
    /// leader's whole log, or nil.
    private func catchUp(
        _ cluster: inout TestCluster, count: Int, withinMs limitMs: Int64
    ) throws -> (leader: NodeID, follower: NodeID, elapsedMs: Int64?) {
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        cluster.isolate([follower])
        let payload = String(repeating: "a", count: 4096)
        for k in 1...count {
            try cluster.propose(payload, at: leader, sequence: UInt64(k))
            if k % 50 == 0 { cluster.run(forMs: 5) }
        }
        XCTAssertNotNil(cluster.run(untilWithinMs: 2000) { c in c.nodes[leader]!.commitIndex > UInt64(count) })
        cluster.heal()
        let elapsed = cluster.run(untilWithinMs: limitMs) { c in
            c.nodes[follower]!.lastIndex == c.nodes[leader]!.lastIndex
                && c.nodes[follower]!.commitIndex == c.nodes[leader]!.commitIndex
        }
        return (leader, follower, elapsed)
    }

    func testAFollowerBehindByManyLargeEntriesWithLongIdsCatchesUpThroughTheFrameLimit() throws {
        let tune: (inout RaftConfig) -> Void = { $0.maxMessageBytes = 256 * 1024 }
        var config = RaftConfig(id: podIDs[0], peers: podIDs)
        tune(&config)
        var cluster = TestCluster(ids: podIDs, tune: tune)
        // The frame limit the configuration needs, and not a byte more.
        cluster.maxPayloadBytes = config.largestAppendPayloadBytes
        let result = try catchUp(&cluster, count: 600, withinMs: 3000)
        XCTAssertNotNil(result.elapsedMs, "stuck at \(cluster.nodes[result.follower]!.lastIndex)")
        XCTAssertEqual(cluster.droppedTooLarge, 0, "no append the core builds exceeds the limit it declares")
        let appends = cluster.sent.compactMap { message -> AppendEntries? in
            if case .appendEntries(let m) = message, m.to == result.follower, m.entries.count > 1 { return m }
            return nil
        }
        XCTAssertGreaterThan(appends.map(\.encodedSizeBytes).max() ?? 0, 240 * 1024, "batches are filled")
    }

    func testAppendsTheTransportDropsAsTooLargeAreSplitUntilTheyFit() throws {
        // A frame limit below the message size (a misconfiguration) still carries any single entry: the leader
        // must notice that its appends vanish and send smaller ones, not retry the same one forever.
        var cluster = TestCluster(ids: podIDs) { $0.maxMessageBytes = 256 * 1024 }
        cluster.maxPayloadBytes = 40 * 1024
        let result = try catchUp(&cluster, count: 300, withinMs: 10_000)
        XCTAssertNotNil(result.elapsedMs, "stuck at \(cluster.nodes[result.follower]!.lastIndex)")
        XCTAssertGreaterThan(cluster.droppedTooLarge, 0, "the scenario did drop appends")
        let diagnostics = cluster.nodes[result.leader]!.replicationDiagnostics(for: result.follower)
        XCTAssertGreaterThan(diagnostics?.appendsPresumedLost ?? 0, 0, "the losses were noticed and counted")
    }

    func testLargeProposalsForwardedTogetherTravelInMessagesTheFrameLimitCarries() throws {
        let tune: (inout RaftConfig) -> Void = { $0.maxMessageBytes = 64 * 1024 }
        var config = RaftConfig(id: podIDs[0], peers: podIDs)
        tune(&config)
        var cluster = TestCluster(ids: podIDs, tune: tune)
        cluster.maxPayloadBytes = config.largestAppendPayloadBytes
        let leader = cluster.electLeader()
        let follower = cluster.followers(of: leader)[0]
        // Three proposals of nearly the largest size, taken in one turn: one forward would carry all three.
        let payload = Array(repeating: UInt8(0x62), count: 60 * 1024)
        for k in 1...3 {
            try cluster.nodes[follower]!.propose(
                payload, id: ProposalID(origin: follower, sequence: UInt64(k)), wallTimeMs: cluster.nowMs,
                nowMs: cluster.nowMs)
        }
        cluster.drain(follower)
        let applied = cluster.run(untilWithinMs: 1000) { c in c.appliedPayloads(follower).count == 3 }
        XCTAssertNotNil(applied, "accepted: \(cluster.accepted[follower] ?? []), dropped: \(cluster.droppedTooLarge)")
        XCTAssertEqual(cluster.droppedTooLarge, 0)
        let forwards = cluster.sent.filter { if case .proposalForward = $0 { return true } else { return false } }
        XCTAssertTrue(forwards.allSatisfy { $0.encodedSizeBytes <= config.maxMessageBytes })
    }
}
