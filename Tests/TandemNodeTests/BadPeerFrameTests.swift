import TandemConsensus
import TandemTransport
import XCTest

@testable import TandemNode

/// A bad frame from an authenticated peer (undecodable, in another node's name, refused by the core) is counted,
/// changes nothing, and closes that peer's link; a good one leaves the link alone.
final class BadPeerFrameTests: XCTestCase {
    /// A messenger that only records which links the runtime closed.
    private final class RecordingMessenger: PeerMessenger {
        var closed: [(NodeID, String)] = []
        var listenPort: UInt16 { 0 }
        var peerStatuses: [LinkStatus] { [] }
        func start(for runtime: ReplicaRuntime) throws {}
        func send(_ message: Message) -> SendOutcome { .droppedNotConnected }
        func send(type: UInt8, payload: [UInt8], to peer: NodeID) -> SendOutcome { .droppedNotConnected }
        func closeLink(to peer: NodeID, reason: String) { closed.append((peer, reason)) }
        func stop() {}
    }

    private let ids = [NodeID("n1"), NodeID("n2"), NodeID("n3")]

    private func runtime(_ messenger: PeerMessenger) throws -> ReplicaRuntime {
        try loneRuntime { _ in messenger }
    }

    private func deliver(_ message: Message, from peer: NodeID, to node: ReplicaRuntime) {
        let (type, payload) = ConsensusCodec.encode(message)
        payload.withUnsafeBytes { node.receive(frameOfType: type, payload: $0, from: peer) }
    }

    private func heartbeat(from: NodeID, term: UInt64) -> Message {
        .heartbeat(Heartbeat(from: from, to: ids[0], term: term, commitIndex: 0, round: 1))
    }

    func testAnUndecodableFrameClosesThePeersLink() throws {
        let messenger = RecordingMessenger()
        let node = try runtime(messenger)
        let (type, payload) = ConsensusCodec.encode(heartbeat(from: ids[1], term: 3))
        Array(payload.prefix(payload.count - 1)).withUnsafeBytes {
            node.receive(frameOfType: type, payload: $0, from: ids[1])
        }
        XCTAssertEqual(messenger.closed.map(\.0), [ids[1]])
        XCTAssertTrue(messenger.closed.first?.1.hasPrefix("an undecodable frame") ?? false, "\(messenger.closed)")
        XCTAssertEqual(node.counters.undecodableFrames, 1)
        XCTAssertEqual(node.status.term, 0)
    }

    func testAMessageInAnotherNodesNameClosesTheLinkItCameOn() throws {
        let messenger = RecordingMessenger()
        let node = try runtime(messenger)
        deliver(heartbeat(from: ids[2], term: 3), from: ids[1], to: node)
        XCTAssertEqual(messenger.closed.map(\.0), [ids[1]], "the link it came on, not the node it names")
        XCTAssertTrue(messenger.closed.first?.1.contains("from n3 on the link of n2") ?? false, "\(messenger.closed)")
        XCTAssertEqual(node.status.term, 0)
    }

    func testAMessageTheCoreRefusesClosesThePeersLink() throws {
        let messenger = RecordingMessenger()
        let node = try runtime(messenger)
        deliver(heartbeat(from: ids[2], term: 1 << 40), from: ids[2], to: node)
        XCTAssertEqual(messenger.closed.map(\.0), [ids[2]])
        XCTAssertTrue(messenger.closed.first?.1.hasPrefix("a refused message") ?? false, "\(messenger.closed)")
        XCTAssertEqual(node.status.term, 0)
        XCTAssertEqual(node.counters.undecodableFrames, 1)
    }

    func testAGoodMessageLeavesTheLinkAlone() throws {
        let messenger = RecordingMessenger()
        let node = try runtime(messenger)
        deliver(heartbeat(from: ids[1], term: 3), from: ids[1], to: node)
        XCTAssertTrue(messenger.closed.isEmpty)
        XCTAssertEqual(node.status.term, 3)
        XCTAssertEqual(node.counters.undecodableFrames, 0)
    }

    /// The simulator's messenger drops the link: frames in flight on it are lost, and it comes back.
    func testTheSimulatedMessengerDropsTheLink() throws {
        let world = SimWorld(seed: 2)
        let network = SimNetwork(world: world)
        let messenger = SimMessenger(network: network, selfID: ids[0], frameLimit: 1 << 20)
        let node = try runtime(messenger)
        deliver(heartbeat(from: ids[1], term: 1 << 40), from: ids[1], to: node)
        XCTAssertEqual(network.droppedLinks, 1)
    }
}
