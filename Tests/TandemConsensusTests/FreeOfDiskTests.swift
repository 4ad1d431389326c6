import TandemConsensus
import XCTest

/// `takeMessagesFreeOfDisk`: while a Ready's persistence runs, heartbeats and their answers in a durable term may
/// leave; nothing that promises something about the disk does, and nothing leaves in a term not yet durable.
final class FreeOfDiskTests: XCTestCase {
    private let n1 = NodeID("n1")
    private let n2 = NodeID("n2")
    private let n3 = NodeID("n3")

    /// Follower n2 of leader n1 in term 1, with term 1 durable and nothing outstanding.
    private func follower() -> RaftNode {
        var node = RaftNode(config: RaftConfig(id: n2, peers: [n1, n2, n3]), recovered: RecoveredState(), seed: 3)
        _ = node.step(.heartbeat(Heartbeat(from: n1, to: n2, term: 1, commitIndex: 0, round: 1)), nowMs: 10)
        let ready = node.takeReady()!
        XCTAssertEqual(ready.hardState?.term, 1)
        XCTAssertTrue(ready.mustSync, "a new term is synced")
        node.advance(ready)
        return node
    }

    private func heartbeat(round: UInt64, term: UInt64 = 1) -> Message {
        .heartbeat(Heartbeat(from: n1, to: n2, term: term, commitIndex: 0, round: round))
    }

    func testAHeartbeatIsAnsweredWhileEntriesAreBeingPersistedAndTheirAcknowledgementWaits() throws {
        var node = follower()
        let entry = Entry(term: 1, index: 1, kind: .normal, timeMs: 0, proposal: nil, data: Array("x".utf8))
        let append = AppendEntries(
            from: n1, to: n2, term: 1, prevLogIndex: 0, prevLogTerm: 0, entries: [entry], leaderCommit: 0)
        _ = node.step(.appendEntries(append), nowMs: 20)
        let persisting = try XCTUnwrap(node.takeReady())
        XCTAssertEqual(persisting.entriesToPersist, [entry])
        XCTAssertTrue(persisting.messagesBeforePersist.isEmpty, "a follower's acknowledgement waits for its disk")
        XCTAssertNil(node.takeReady(), "one Ready at a time")

        // The fsync is slow; the leader's heartbeat comes meanwhile.
        _ = node.step(heartbeat(round: 2), nowMs: 120)
        let free = node.takeMessagesFreeOfDisk()
        XCTAssertEqual(free, [.heartbeatResponse(HeartbeatResponse(from: n2, to: n1, term: 1, round: 2))])
        XCTAssertEqual(node.takeMessagesFreeOfDisk(), [], "each message leaves once")

        // The acknowledgement of the entry is in the Ready being persisted, to leave once it is durable; the
        // heartbeat is not answered a second time after it.
        let acknowledgements = persisting.messages.filter {
            if case .appendResponse(let response) = $0 { return response.success && response.matchIndex == 1 }
            return false
        }
        XCTAssertEqual(acknowledgements.count, 1)
        node.advance(persisting)
        XCTAssertNil(node.takeReady())
    }

    func testNothingLeavesWhileANewTermIsBeingPersisted() throws {
        var node = follower()
        // Term 2 arrives with its leader's heartbeat: the new term must be durable before this node speaks in it.
        _ = node.step(heartbeat(round: 1, term: 2), nowMs: 50)
        let persisting = try XCTUnwrap(node.takeReady())
        XCTAssertEqual(persisting.hardState?.term, 2)
        _ = node.step(heartbeat(round: 2, term: 2), nowMs: 150)
        XCTAssertEqual(node.takeMessagesFreeOfDisk(), [])
        node.advance(persisting)
        let after = try XCTUnwrap(node.takeReady())
        XCTAssertEqual(
            after.messages.filter { if case .heartbeatResponse = $0 { true } else { false } }.count, 1,
            "answered after the sync instead")
    }

    func testNothingIsTakenWithoutAnOutstandingReady() {
        var node = follower()
        _ = node.step(heartbeat(round: 2), nowMs: 120)
        XCTAssertEqual(node.takeMessagesFreeOfDisk(), [], "ready() hands it out then")
        XCTAssertEqual(
            node.takeReady()?.messages, [.heartbeatResponse(HeartbeatResponse(from: n2, to: n1, term: 1, round: 2))])
    }

    func testALeaderKeepsSendingHeartbeatsWhileItsOwnDiskIsSlow() throws {
        var node = RaftNode(config: RaftConfig(id: n1, peers: [n1, n2, n3]), recovered: RecoveredState(), seed: 5)
        // Elect n1: campaign, persist, collect votes.
        var now: Int64 = 0
        while node.status.role != .leader && now < 20_000 {
            now += 10
            node.tick(nowMs: now)
            while let ready = node.takeReady() {
                node.advance(ready)
                for message in ready.messagesBeforePersist + ready.messages {
                    switch message {
                    case .preVoteRequest(let request):
                        _ = node.step(
                            .preVoteResponse(
                                VoteResponse(from: request.to, to: n1, term: request.term, granted: true)), nowMs: now)
                    case .voteRequest(let request):
                        _ = node.step(
                            .voteResponse(VoteResponse(from: request.to, to: n1, term: request.term, granted: true)),
                            nowMs: now)
                    default: break
                    }
                }
            }
        }
        XCTAssertEqual(node.status.role, .leader)
        try node.propose(Array("w".utf8), id: ProposalID(origin: n1, sequence: 1), wallTimeMs: 0, nowMs: now)
        let persisting = try XCTUnwrap(node.takeReady())
        XCTAssertFalse(persisting.entriesToPersist.isEmpty)
        // Two heartbeat intervals pass while that fsync runs: the heartbeats leave anyway.
        node.tick(nowMs: now + 250)
        let free = node.takeMessagesFreeOfDisk()
        XCTAssertEqual(
            Set(free.compactMap { if case .heartbeat(let beat) = $0 { beat.to } else { nil } }), [n2, n3], "\(free)")
        XCTAssertEqual(free.count, 2)

        // A disk that has not finished by the stall limit is taken for hung: the leader goes quiet, so that its
        // followers can elect a leader whose disk works. What it holds leaves after the sync, if that ever comes.
        let limit = node.leaderDiskStallLimitMs
        node.tick(nowMs: now + limit - 10)
        XCTAssertEqual(node.takeMessagesFreeOfDisk().count, 2, "still heartbeating just before the limit")
        node.tick(nowMs: now + limit + 100)
        XCTAssertEqual(node.takeMessagesFreeOfDisk(), [], "quiet past the limit")
        node.advance(persisting)
        let after = try XCTUnwrap(node.takeReady())
        XCTAssertTrue(after.messagesBeforePersist.contains { if case .heartbeat = $0 { true } else { false } })
    }
}
