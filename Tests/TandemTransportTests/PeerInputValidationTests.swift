import TandemConsensus
import XCTest

@testable import TandemTransport

/// Every field a peer sends is checked before the core sees it: a message that is well formed bytes but not a
/// possible message (a term with no room left, entries out of order, ids no configuration allows, indexes past any
/// log) is a decode error, never a trap later.
final class PeerInputValidationTests: XCTestCase {
    private let n1 = NodeID("n1"), n2 = NodeID("n2")
    /// The highest term and index a peer may send: half the range, so `+ 1` can never overflow.
    private let limit = UInt64.max / 2

    private func roundTrip(_ message: Message) throws -> Message {
        let (type, payload) = ConsensusCodec.encode(message)
        return try ConsensusCodec.decode(type: type, payload: payload)
    }

    private func assertRefused(_ message: Message, _ what: String, line: UInt = #line) {
        XCTAssertThrowsError(try roundTrip(message), what, line: line) { error in
            guard case .invalidValue = error as? DecodeError else {
                return XCTFail("\(what): \(error) is not an invalid value", line: line)
            }
        }
    }

    private func assertAccepted(_ message: Message, _ what: String, line: UInt = #line) {
        XCTAssertEqual(try roundTrip(message), message, what, line: line)
    }

    private func heartbeat(term: UInt64 = 3, commit: UInt64 = 0, from: NodeID? = nil, to: NodeID? = nil) -> Message {
        .heartbeat(Heartbeat(from: from ?? n1, to: to ?? n2, term: term, commitIndex: commit, round: .max))
    }

    private func append(prev: UInt64 = 0, prevTerm: UInt64 = 0, commit: UInt64 = 0, _ entries: [(UInt64, UInt64)])
        -> Message
    {
        .appendEntries(
            AppendEntries(
                from: n1, to: n2, term: 5, prevLogIndex: prev, prevLogTerm: prevTerm,
                entries: entries.map {
                    Entry(term: $0.1, index: $0.0, kind: .normal, timeMs: 0, proposal: nil, data: [])
                }, leaderCommit: commit))
    }

    func testTermsWithNoRoomAboveThemAreRefused() {
        assertAccepted(heartbeat(term: limit), "the highest term allowed")
        for term in [limit + 1, .max] {
            assertRefused(heartbeat(term: term), "heartbeat term \(term)")
            assertRefused(
                .voteRequest(
                    VoteRequest(
                        from: n1, to: n2, term: term, lastLogIndex: 0, lastLogTerm: 0, leadershipTransfer: false)),
                "vote request term \(term)")
            assertRefused(
                .proposalForward(ProposalForward(from: n1, to: n2, term: term, proposals: [])), "forward term \(term)")
        }
    }

    func testNodeIDsMustBeWhatAConfigurationAllows() {
        assertAccepted(heartbeat(from: NodeID(String(repeating: "a", count: 64))), "64 bytes")
        assertAccepted(heartbeat(from: NodeID("tandem-0.db_1")), "letters, digits, dot, underscore, hyphen")
        for bad in ["", String(repeating: "a", count: 65), "n 1", "nœud", "-n1", ".n1", "n1\r\n", "n/1"] {
            assertRefused(heartbeat(from: NodeID(bad)), "from \(bad.debugDescription)")
            assertRefused(heartbeat(to: NodeID(bad)), "to \(bad.debugDescription)")
            assertRefused(
                .readIndexRequest(
                    ReadIndexRequest(
                        from: n1, to: n2, term: 1, reads: [ReadID(origin: NodeID(bad), sequence: 1)],
                        mode: .readIndex)), "read origin \(bad.debugDescription)")
        }
        assertRefused(heartbeat(from: n1, to: n1), "a message from a node to itself")
    }

    func testAppendedEntriesMustFollowThePreviousIndexInOrderWithinTheMessageTerm() {
        assertAccepted(append(prev: 4, prevTerm: 2, [(5, 2), (6, 3), (7, 5)]), "contiguous, terms rising")
        assertRefused(append([(1, 1), (3, 1)]), "a gap")
        assertRefused(append([(2, 1)]), "not right after prevLogIndex")
        assertRefused(append([(1, 1), (1, 1)]), "a repeated index")
        assertRefused(append([(1, 6)]), "an entry term above the message term")
        assertRefused(append([(1, 3), (2, 2)]), "terms going down")
        assertRefused(append(prev: 4, prevTerm: 3, [(5, 2)]), "an entry term below prevLogTerm")
        assertRefused(append(prev: 4, prevTerm: 6, []), "prevLogTerm above the message term")
        assertRefused(append([(1, 0)]), "an entry of term 0")
        assertRefused(append(prev: limit, prevTerm: 1, [(limit &+ 1, 1)]), "an index past the limit")
    }

    func testIndexesPastAnyPossibleLogAreRefused() {
        assertAccepted(heartbeat(commit: limit), "the highest index allowed")
        assertRefused(heartbeat(commit: .max), "heartbeat commit index")
        assertRefused(append(prev: .max, prevTerm: 1, []), "prevLogIndex")
        assertRefused(append(commit: .max, []), "leaderCommit")
        assertRefused(
            .appendResponse(
                AppendResponse(
                    from: n2, to: n1, term: 5, success: true, matchIndex: .max, rejectedIndex: 0, hintIndex: 0,
                    hintTerm: 0)), "matchIndex")
        assertRefused(
            .appendResponse(
                AppendResponse(
                    from: n2, to: n1, term: 5, success: false, matchIndex: 0, rejectedIndex: 3, hintIndex: 2,
                    hintTerm: 6)), "a hint term above the message term")
        assertRefused(
            .voteRequest(
                VoteRequest(from: n1, to: n2, term: 5, lastLogIndex: .max, lastLogTerm: 1, leadershipTransfer: false)),
            "lastLogIndex")
        assertRefused(
            .voteRequest(
                VoteRequest(from: n1, to: n2, term: 5, lastLogIndex: 3, lastLogTerm: 6, leadershipTransfer: false)),
            "a last log term above the campaign term")
        assertRefused(
            .readIndexResponse(
                ReadIndexResponse(
                    from: n1, to: n2, term: 5, outcomes: [ReadID(origin: n2, sequence: 1): .ready(index: .max)])),
            "read index")
        assertRefused(
            .proposalForwardResponse(
                ProposalForwardResponse(
                    from: n1, to: n2, term: 5,
                    outcomes: [ProposalID(origin: n2, sequence: 1): .accepted(index: .max, term: 5)])),
            "accepted index")
    }
}
