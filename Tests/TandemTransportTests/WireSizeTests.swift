import TandemConsensus
import XCTest

@testable import TandemTransport

/// The core sizes its appends with `WireSize`; these tests hold that figure equal to what the codec writes.
final class WireSizeTests: XCTestCase {
    /// Ids of the lengths that matter: short, a pod name (40 bytes), the longest a u8-length config allows (255),
    /// multi-byte UTF-8, and empty.
    private let ids: [NodeID] = [
        NodeID("n1"), NodeID(String(repeating: "p", count: 40)), NodeID(String(repeating: "x", count: 255)),
        NodeID("nœud-é-ü"), NodeID(""),
    ]
    private let payloads: [[UInt8]] = [
        [], [7], Array(repeating: 0xAB, count: 4096), Array(repeating: 1, count: 70_001),
    ]

    private func entries(origin: NodeID) -> [[Entry]] {
        var shapes: [[Entry]] = [[]]
        for data in payloads {
            shapes.append([
                Entry(
                    term: 3, index: 9, kind: .normal, timeMs: -1, proposal: ProposalID(origin: origin, sequence: .max),
                    data: data)
            ])
            shapes.append([Entry(term: .max, index: 1, kind: .noop, timeMs: 0, proposal: nil, data: data)])
        }
        shapes.append(
            (1...50).map { k in
                Entry(
                    term: 2, index: UInt64(k), kind: k % 7 == 0 ? .noop : .normal, timeMs: Int64(k),
                    proposal: k % 7 == 0 ? nil : ProposalID(origin: origin, sequence: UInt64(k)),
                    data: Array(repeating: UInt8(k), count: k * 37))
            })
        return shapes
    }

    private func messages(from: NodeID, to: NodeID) -> [Message] {
        var all: [Message] = [
            .preVoteRequest(
                VoteRequest(from: from, to: to, term: 1, lastLogIndex: 2, lastLogTerm: 3, leadershipTransfer: true)),
            .voteRequest(
                VoteRequest(from: from, to: to, term: 1, lastLogIndex: 2, lastLogTerm: 3, leadershipTransfer: false)),
            .preVoteResponse(VoteResponse(from: from, to: to, term: 1, granted: true)),
            .voteResponse(VoteResponse(from: from, to: to, term: 1, granted: false)),
            .appendResponse(
                AppendResponse(
                    from: from, to: to, term: 4, success: true, matchIndex: 5, rejectedIndex: 6, hintIndex: 7,
                    hintTerm: 8)),
            .heartbeat(Heartbeat(from: from, to: to, term: 1, commitIndex: 2, round: 3)),
            .heartbeatResponse(HeartbeatResponse(from: from, to: to, term: 1, round: 3)),
            .timeoutNow(TimeoutNow(from: from, to: to, term: 9)),
            .proposalForward(
                ProposalForward(
                    from: from, to: to, term: 1,
                    proposals: payloads.enumerated().map { k, data in
                        ForwardedProposal(id: ProposalID(origin: from, sequence: UInt64(k)), data: data)
                    })),
            .proposalForward(ProposalForward(from: from, to: to, term: 1, proposals: [])),
            .proposalForwardResponse(
                ProposalForwardResponse(
                    from: from, to: to, term: 1,
                    outcomes: [
                        ProposalID(origin: to, sequence: 1): .accepted(index: 3, term: 1),
                        ProposalID(origin: from, sequence: 2): .rejected(.tooLarge),
                    ])),
            .readIndexRequest(
                ReadIndexRequest(
                    from: from, to: to, term: 1, reads: [ReadID(origin: from, sequence: 1)], mode: .readIndex)),
            .readIndexResponse(
                ReadIndexResponse(
                    from: from, to: to, term: 1,
                    outcomes: [
                        ReadID(origin: from, sequence: 1): .ready(index: 4),
                        ReadID(origin: to, sequence: 2): .failed(.overloaded),
                    ])),
        ]
        for origin in ids {
            for batch in entries(origin: origin) {
                all.append(
                    .appendEntries(
                        AppendEntries(
                            from: from, to: to, term: 5, prevLogIndex: 8, prevLogTerm: 4, entries: batch,
                            leaderCommit: 8)))
            }
        }
        return all
    }

    func testTheComputedSizeIsTheEncodedSizeForEveryShape() {
        var checked = 0
        for from in ids {
            for to in ids {
                for message in messages(from: from, to: to) {
                    let encoded = ConsensusCodec.encode(message).payload
                    XCTAssertEqual(ConsensusCodec.encodedSize(of: message), encoded.count, "\(message)")
                    if case .appendEntries(let append) = message {
                        let fixed = ConsensusCodec.appendEntriesFixedSize(from: from, to: to)
                        let perEntry = append.entries.map { ConsensusCodec.encodedSize(of: $0) }
                        XCTAssertEqual(fixed + perEntry.reduce(0, +), encoded.count)
                        XCTAssertEqual(append.entries.map(\.sizeBytes), perEntry, "flow control counts wire bytes")
                    }
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 500)
    }

    func testEachEntryTakesItsComputedSizeInsideTheEncoding() {
        let leader = ids[1]
        for entry in entries(origin: ids[2]).joined() {
            let alone = AppendEntries(
                from: leader, to: leader, term: 1, prevLogIndex: 0, prevLogTerm: 0, entries: [], leaderCommit: 0)
            var with = alone
            with.entries = [entry]
            let grew =
                ConsensusCodec.encode(.appendEntries(with)).payload.count
                - ConsensusCodec.encode(.appendEntries(alone)).payload.count
            XCTAssertEqual(grew, entry.encodedSizeBytes)
        }
    }

    func testTheLargestAppendAConfigurationAllowsIsWhatALoneMaximalEntryEncodesTo() {
        let long = ids[2]
        var config = RaftConfig(id: NodeID("n1"), peers: [NodeID("n1"), long])
        config.maxMessageBytes = 64 * 1024
        let entry = Entry(
            term: 1, index: 1, kind: .normal, timeMs: 0, proposal: ProposalID(origin: long, sequence: 1),
            data: Array(repeating: 0, count: config.maxMessageBytes))
        let append = AppendEntries(
            from: long, to: long, term: 1, prevLogIndex: 0, prevLogTerm: 0, entries: [entry], leaderCommit: 0)
        XCTAssertEqual(ConsensusCodec.encode(.appendEntries(append)).payload.count, config.largestAppendPayloadBytes)
    }
}
