import TandemConsensus
import TandemTransport
import XCTest

@testable import TandemNode

/// Frames from a peer reach the core only if both the codec and the core accept them; whatever either refuses is
/// counted as an undecodable frame and changes nothing (BadPeerFrameTests: it also closes that peer's link).
final class PeerInputTests: XCTestCase {
    private func runtime() throws -> ReplicaRuntime { try loneRuntime() }

    private func deliver(_ message: Message, to node: ReplicaRuntime) {
        let (type, payload) = ConsensusCodec.encode(message)
        payload.withUnsafeBytes { node.receive(frameOfType: type, payload: $0, from: message.from) }
    }

    func testAMessageTheCoreRefusesIsCountedAndChangesNothing() throws {
        let node = try runtime()
        // Well formed for the codec, but 2^40 terms ahead of ours: the core refuses it.
        deliver(
            .heartbeat(Heartbeat(from: NodeID("n2"), to: NodeID("n1"), term: 1 << 40, commitIndex: 0, round: 1)),
            to: node)
        XCTAssertEqual(node.counters.undecodableFrames, 1)
        XCTAssertEqual(node.status.term, 0)
        // Refused by the codec (a term with no room above it).
        deliver(
            .heartbeat(Heartbeat(from: NodeID("n2"), to: NodeID("n1"), term: .max, commitIndex: 0, round: 1)),
            to: node)
        XCTAssertEqual(node.counters.undecodableFrames, 2)
        // An ordinary heartbeat is followed.
        deliver(
            .heartbeat(Heartbeat(from: NodeID("n2"), to: NodeID("n1"), term: 3, commitIndex: 0, round: 1)), to: node)
        XCTAssertEqual(node.counters.undecodableFrames, 2)
        XCTAssertEqual(node.status.term, 3)
    }
}
