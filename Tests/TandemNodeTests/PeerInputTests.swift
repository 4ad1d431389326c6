import TandemConsensus
import TandemTransport
import XCTest

@testable import TandemNode

/// Frames from a peer reach the core only if both the codec and the core accept them; whatever either refuses is
/// counted as an undecodable frame, and the node carries on.
final class PeerInputTests: XCTestCase {
    private func runtime() throws -> ReplicaRuntime {
        let world = SimWorld(seed: 1)
        let liveness = Liveness()
        let ids = [NodeID("n1"), NodeID("n2"), NodeID("n3")]
        let config = ReplicaConfig(
            raft: RaftConfig(id: ids[0], peers: ids),
            peers: ids.dropFirst().map { PeerEndpoint(id: $0, host: "sim", port: 0) }, peerListenHost: "sim",
            peerListenPort: 0, auth: .none, dataDirectory: "/nonexistent")
        let durable = DurableDisk()
        return try ReplicaRuntime(
            config: config, clock: SimClock(world: world, liveness: liveness, wallOffsetMs: 0),
            disk: SimDisk(world: world, liveness: liveness, durable: durable, maxLatencyMs: 0, failureChance: 0),
            recovery: try durable.recover(),
            messenger: SimMessenger(network: SimNetwork(world: world), selfID: ids[0], frameLimit: 1 << 20),
            seed: 1, log: .silent)
    }

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
