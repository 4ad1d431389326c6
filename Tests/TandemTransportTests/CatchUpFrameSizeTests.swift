import TandemConsensus
import XCTest

@testable import TandemTransport

/// A follower that fell far behind is caught up with appends the core sizes itself. Those appends must fit the
/// frame limit the transport enforces, whatever the length of the node ids inside them.
final class CatchUpFrameSizeTests: XCTestCase {
    /// Three real cores wired to each other through the codec, with one follower that can be paused.
    private struct Wire {
        var nodes: [NodeID: RaftNode] = [:]
        let ids: [NodeID]
        var nowMs: Int64 = 0
        var queue: [Message] = []
        var paused: Set<NodeID> = []
        /// Every append sent to a node while it was not paused, encoded.
        var appendPayloadBytes: [NodeID: [Int]] = [:]
        /// The transport's frame limit: a larger payload is dropped, as `PeerTransport.send` drops it.
        var maxPayloadBytes = Int.max
        var droppedTooLarge = 0

        init(ids: [NodeID], tune: (inout RaftConfig) -> Void) {
            self.ids = ids
            for (k, id) in ids.enumerated() {
                var config = RaftConfig(id: id, peers: ids)
                tune(&config)
                nodes[id] = RaftNode(config: config, recovered: RecoveredState(), seed: UInt64(k + 1) * 7919)
            }
        }

        mutating func drain(_ id: NodeID) {
            while nodes[id]!.hasReady {
                let ready = nodes[id]!.ready()
                queue.append(contentsOf: ready.messagesBeforePersist + ready.messages)
                nodes[id]!.advance(ready)
            }
        }

        /// Delivers queued messages (through the codec) until none is left; messages to a paused node are lost.
        mutating func deliver() {
            var next = 0
            while next < queue.count {
                let message = queue[next]
                next += 1
                if paused.contains(message.to) { continue }
                let (type, payload) = ConsensusCodec.encode(message)
                if case .appendEntries(let append) = message, !append.entries.isEmpty {
                    appendPayloadBytes[message.to, default: []].append(payload.count)
                }
                if payload.count > maxPayloadBytes {
                    droppedTooLarge += 1
                    continue
                }
                guard let decoded = try? ConsensusCodec.decode(type: type, payload: payload) else {
                    XCTFail("undecodable \(message)")
                    continue
                }
                nodes[message.to]!.step(decoded, nowMs: nowMs)
                drain(message.to)
            }
            queue.removeAll()
        }

        mutating func tick() {
            nowMs += 10
            for id in ids {
                nodes[id]!.tick(nowMs: nowMs)
                drain(id)
            }
            deliver()
        }

        var leader: NodeID? { ids.first { nodes[$0]!.currentRole == .leader } }
    }

    func testACatchUpAppendWithFortyByteIdsFitsTheFrameLimitTheBinaryConfigures() throws {
        // The figures `tandem` derives from the default TANDEM_MAX_BODY (16 MiB): one write must fit a message,
        // and the frame limit leaves 64 KiB above the message size.
        let maxMessageBytes = 16 * 1024 * 1024 + 256 * 1024
        var transport = PeerTransportOptions()
        transport.maxFramePayloadBytes = max(transport.maxFramePayloadBytes, maxMessageBytes + 64 * 1024)
        let ids = (1...3).map { NodeID("tandem-statefulset-replica-\($0)-abcdefghijk") }
        XCTAssertEqual(ids[0].rawValue.utf8.count, 40)
        var config = RaftConfig(id: ids[0], peers: ids)
        config.maxMessageBytes = maxMessageBytes
        XCTAssertGreaterThanOrEqual(
            transport.maxFramePayloadBytes, config.largestAppendPayloadBytes, "the derivation leaves room for the ids")
        var wire = Wire(ids: ids) { $0.maxMessageBytes = maxMessageBytes }
        wire.maxPayloadBytes = transport.maxFramePayloadBytes
        for _ in 0..<300 where wire.leader == nil { wire.tick() }
        let leader = try XCTUnwrap(wire.leader)
        let behind = ids.first { $0 != leader }!
        wire.paused = [behind]
        let payload = [UInt8](repeating: 0x61, count: 4096)
        for sequence in 1...6000 {
            try wire.nodes[leader]!.propose(
                payload, id: ProposalID(origin: leader, sequence: UInt64(sequence)), wallTimeMs: 0,
                nowMs: wire.nowMs)
            if sequence % 100 == 0 {
                wire.drain(leader)
                wire.deliver()
            }
        }
        wire.tick()
        XCTAssertGreaterThanOrEqual(wire.nodes[leader]!.commitIndex, 6001, "the other follower keeps the quorum")
        wire.paused = []
        for _ in 0..<200 where wire.nodes[behind]!.lastIndex < wire.nodes[leader]!.lastIndex { wire.tick() }
        let sizes = wire.appendPayloadBytes[behind] ?? []
        XCTAssertFalse(sizes.isEmpty)
        let largest = sizes.max() ?? 0
        XCTAssertGreaterThan(largest, 1 << 20, "the catch-up batches are large")
        XCTAssertLessThanOrEqual(
            largest, transport.maxFramePayloadBytes,
            "a catch-up append of \(largest) bytes would be dropped by a transport limited to "
                + "\(transport.maxFramePayloadBytes) bytes")
        XCTAssertEqual(wire.droppedTooLarge, 0)
        XCTAssertEqual(wire.nodes[behind]!.lastIndex, wire.nodes[leader]!.lastIndex, "the follower caught up")
    }
}
