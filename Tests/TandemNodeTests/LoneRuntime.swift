import TandemConsensus
import TandemTransport

@testable import TandemNode

/// A runtime of node n1 of a three-node cluster (n1, n2, n3) on simulated clock and disk, for tests that feed it
/// peer frames directly. `messenger` is given the simulated world; by default a simulated network's messenger.
func loneRuntime(messenger: ((SimWorld) -> PeerMessenger)? = nil) throws -> ReplicaRuntime {
    let world = SimWorld(seed: 1)
    let liveness = Liveness()
    let ids = [NodeID("n1"), NodeID("n2"), NodeID("n3")]
    let config = ReplicaConfig(
        raft: RaftConfig(id: ids[0], peers: ids),
        peers: ids.dropFirst().map { PeerEndpoint(id: $0, host: "sim", port: 0) }, peerListenHost: "sim",
        peerListenPort: 0, auth: .none, dataDirectory: "/nonexistent")
    let durable = DurableDisk()
    let peers =
        messenger?(world) ?? SimMessenger(network: SimNetwork(world: world), selfID: ids[0], frameLimit: 1 << 20)
    return try ReplicaRuntime(
        config: config, clock: SimClock(world: world, liveness: liveness, wallOffsetMs: 0),
        disk: SimDisk(world: world, liveness: liveness, durable: durable, maxLatencyMs: 0, failureChance: 0),
        recovery: try durable.recover(), messenger: peers, seed: 1, log: .silent)
}
