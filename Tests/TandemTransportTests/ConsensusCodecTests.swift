import TandemConsensus
import XCTest

@testable import TandemTransport

final class ConsensusCodecTests: XCTestCase {
    private let n1 = NodeID("n1"), n2 = NodeID("node-two.2")

    private func entry(_ index: UInt64, data: [UInt8], proposal: Bool = true) -> Entry {
        Entry(
            term: 7, index: index, kind: proposal ? .normal : .noop, timeMs: 1_700_000_000_000 + Int64(index),
            proposal: proposal ? ProposalID(origin: n2, sequence: index * 3) : nil, data: data)
    }

    /// One message of every case, with edge values (zero, max, negative time, empty collections) spread over them.
    private func everyCase() -> [Message] {
        let vote = VoteRequest(
            from: n1, to: n2, term: Message.termMax, lastLogIndex: 0, lastLogTerm: 3, leadershipTransfer: true)
        let answer = VoteResponse(from: n2, to: n1, term: 5, granted: false)
        return [
            .preVoteRequest(vote),
            .preVoteResponse(VoteResponse(from: n2, to: n1, term: 5, granted: true)),
            .voteRequest(
                VoteRequest(from: n1, to: n2, term: 1, lastLogIndex: 9, lastLogTerm: 1, leadershipTransfer: false)),
            .voteResponse(answer),
            .appendEntries(
                AppendEntries(
                    from: n1, to: n2, term: 7, prevLogIndex: 10, prevLogTerm: 6,
                    entries: [
                        entry(11, data: [1, 2, 3]), entry(12, data: [], proposal: false),
                        Entry(term: 7, index: 13, kind: .normal, timeMs: -5, proposal: nil, data: [0xFF]),
                    ],
                    leaderCommit: 10)),
            .appendEntries(
                AppendEntries(from: n1, to: n2, term: 7, prevLogIndex: 0, prevLogTerm: 0, entries: [], leaderCommit: 0)),
            .appendResponse(
                AppendResponse(
                    from: n2, to: n1, term: 7, success: false, matchIndex: 0, rejectedIndex: 10, hintIndex: 4,
                    hintTerm: 2)),
            .heartbeat(Heartbeat(from: n1, to: n2, term: 7, commitIndex: 99, round: .max)),
            .heartbeatResponse(HeartbeatResponse(from: n2, to: n1, term: 7, round: 12)),
            .timeoutNow(TimeoutNow(from: n1, to: n2, term: 8)),
            .proposalForward(
                ProposalForward(
                    from: n2, to: n1, term: 7,
                    proposals: [
                        ForwardedProposal(id: ProposalID(origin: n2, sequence: 1), data: Array("PUT /k".utf8)),
                        ForwardedProposal(id: ProposalID(origin: n2, sequence: 2), data: []),
                    ])),
            .proposalForwardResponse(
                ProposalForwardResponse(
                    from: n1, to: n2, term: 7,
                    outcomes: [
                        ProposalID(origin: n2, sequence: 1): .accepted(index: 14, term: 7),
                        ProposalID(origin: n2, sequence: 2): .rejected(.overloaded),
                        ProposalID(origin: n2, sequence: 3): .rejected(.leadershipTransferInProgress),
                    ])),
            .readIndexRequest(
                ReadIndexRequest(
                    from: n2, to: n1, term: 7,
                    reads: [
                        ReadID(origin: n2, sequence: 1), ReadID(origin: n2, sequence: 2),
                    ], mode: .lease)),
            .readIndexRequest(ReadIndexRequest(from: n2, to: n1, term: 7, reads: [], mode: .readIndex)),
            .readIndexResponse(
                ReadIndexResponse(
                    from: n1, to: n2, term: 7,
                    outcomes: [
                        ReadID(origin: n2, sequence: 1): .ready(index: 14),
                        ReadID(origin: n2, sequence: 2): .failed(.timeout),
                        ReadID(origin: n2, sequence: 3): .failed(.notLeader),
                    ])),
        ]
    }

    func testEveryMessageCaseRoundTrips() throws {
        let messages = everyCase()
        var typesSeen = Set<UInt8>()
        for message in messages {
            let (type, payload) = ConsensusCodec.encode(message)
            typesSeen.insert(type)
            XCTAssertEqual(try ConsensusCodec.decode(type: type, payload: payload), message)
        }
        XCTAssertEqual(typesSeen.count, ConsensusCodec.FrameType.allCases.count, "every frame type is exercised")
    }

    func testALargeBatchOfEntriesRoundTrips() throws {
        var random = SeededGenerator(seed: 3)
        let entries =
            (1...2000).map { entry(UInt64($0), data: random.bytes(Int.random(in: 0...512, using: &random))) }
            + [entry(2001, data: random.bytes(4 << 20))]
        let message = Message.appendEntries(
            AppendEntries(
                from: n1, to: n2, term: 7, prevLogIndex: 0, prevLogTerm: 0, entries: entries, leaderCommit: 1500))
        let (type, payload) = ConsensusCodec.encode(message)
        XCTAssertEqual(try ConsensusCodec.decode(type: type, payload: payload), message)
    }

    func testEveryTruncationAndAnyTrailingByteIsAnErrorNotATrap() {
        for message in everyCase() {
            let (type, payload) = ConsensusCodec.encode(message)
            for length in 0..<payload.count {
                XCTAssertThrowsError(
                    try ConsensusCodec.decode(type: type, payload: Array(payload.prefix(length))),
                    "\(type) cut at \(length)")
            }
            XCTAssertThrowsError(try ConsensusCodec.decode(type: type, payload: payload + [0])) { error in
                XCTAssertEqual(error as? DecodeError, .trailingBytes(count: 1))
            }
        }
    }

    func testUnknownTypesAndBadEnumValuesAreRejected() {
        XCTAssertThrowsError(try ConsensusCodec.decode(type: 0x7F, payload: [])) { error in
            XCTAssertEqual(error as? DecodeError, .unknownFrameType(0x7F))
        }
        let vote = Message.voteResponse(VoteResponse(from: n1, to: n2, term: 1, granted: true))
        var (type, payload) = ConsensusCodec.encode(vote)
        payload[payload.count - 1] = 2  // a bool that is neither 0 nor 1
        XCTAssertThrowsError(try ConsensusCodec.decode(type: type, payload: payload))
        (type, payload) = ConsensusCodec.encode(vote)
        payload[2] = 0xFF  // invalid UTF-8 in the sender id
        XCTAssertThrowsError(try ConsensusCodec.decode(type: type, payload: payload))
    }

    func testAnEntryCountThePayloadCannotHoldIsRejectedBeforeAllocating() {
        var writer = ByteWriter(reservingCapacity: 64)
        writer.string("n1")
        writer.string("n2")
        writer.u64(1)
        writer.u64(0)
        writer.u64(0)
        writer.u64(0)
        writer.u32(UInt32.max)  // four billion entries claimed, none present
        XCTAssertThrowsError(
            try ConsensusCodec.decode(type: ConsensusCodec.FrameType.appendEntries.rawValue, payload: writer.bytes)
        ) { error in
            guard case .invalidValue(field: "entry count", _) = error as? DecodeError else {
                return XCTFail("expected an entry count error, got \(error)")
            }
        }
    }

    func testDuplicateIDsInAnOutcomeMapAreRejected() {
        var writer = ByteWriter(reservingCapacity: 64)
        writer.string("n1")
        writer.string("n2")
        writer.u64(1)
        writer.u32(2)
        for _ in 0..<2 {
            writer.string("n2")
            writer.u64(1)
            writer.u8(0)
            writer.u64(5)
        }
        XCTAssertThrowsError(
            try ConsensusCodec.decode(type: ConsensusCodec.FrameType.readIndexResponse.rawValue, payload: writer.bytes))
    }

    /// Seeded mutation fuzzing of the decoder: encoded messages with bytes flipped, inserted, removed and truncated,
    /// and random types. Decoding must never trap; whatever it accepts must survive a re-encode and decode.
    func testMutatedPayloadsNeverCrashTheDecoder() throws {
        var random = SeededGenerator(seed: 0xC0DEC)
        let corpus = everyCase().map { ConsensusCodec.encode($0) }
        var accepted = 0
        for _ in 0..<20_000 {
            var (type, payload) = corpus[Int.random(in: 0..<corpus.count, using: &random)]
            for _ in 0..<Int.random(in: 1...3, using: &random) where !payload.isEmpty {
                let at = Int.random(in: 0..<payload.count, using: &random)
                switch Int.random(in: 0...4, using: &random) {
                case 0: payload[at] ^= UInt8(1) << UInt8.random(in: 0...7, using: &random)
                case 1: payload[at] = UInt8.random(in: 0...255, using: &random)
                case 2: payload.insert(UInt8.random(in: 0...255, using: &random), at: at)
                case 3: payload.removeSubrange(at...)
                default: type = UInt8.random(in: 0x0E...0x1E, using: &random)
                }
            }
            guard let message = try? ConsensusCodec.decode(type: type, payload: payload) else { continue }
            accepted += 1
            let again = ConsensusCodec.encode(message)
            XCTAssertEqual(try ConsensusCodec.decode(type: again.type, payload: again.payload), message)
        }
        XCTAssertGreaterThan(accepted, 0, "some mutations (e.g. of integer fields) decode, and must round-trip")
    }
}
