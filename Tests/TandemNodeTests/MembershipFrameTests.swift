import TandemConsensus
import TandemTransport
import XCTest

@testable import TandemNode

/// The membership frames (requests relayed to the leader, a joiner's request, their answers) and the snapshot
/// Offer's configuration: round trips, and no input that makes the decoders trap.
final class MembershipFrameTests: XCTestCase {
    let configuration = ClusterConfiguration(
        voters: [NodeID("n1"), NodeID("n2")], learners: [NodeID("n3")],
        addresses: [NodeID("n1"): "h1:7400", NodeID("n2"): "h2:7400", NodeID("n3"): "h3:7400"])

    var frames: [MembershipFrame] {
        [
            .request(id: 1, operation: .join, member: NodeID("n3"), address: "h3:7400"),
            .request(id: .max, operation: .remove, member: NodeID("n2"), address: nil),
            .done(id: 7, configurationIndex: 42, configuration: configuration),
            .refused(
                id: 9,
                MembershipRefusal(
                    code: "not_leader", message: "ask n1", retryable: true, leader: NodeID("n1"),
                    leaderAddress: "h1:7400")),
            .refused(id: 10, MembershipRefusal(.wouldGoBelowMinimum)),
        ]
    }

    func testEveryFrameRoundTripsAndEveryTruncationOrExtensionIsRefused() {
        for frame in frames {
            let (type, payload) = MembershipFrames.encode(frame)
            XCTAssertTrue(MembershipFrames.handles(frameType: type))
            XCTAssertLessThan(type, ReplicaRuntime.applicationFrameTypeMin)
            XCTAssertFalse(SnapshotTransferCodec.handles(frameType: type))
            XCTAssertEqual(payload.withUnsafeBytes { MembershipFrames.decode(type: type, payload: $0) }, frame)
            for length in 0..<payload.count {
                let cut = Array(payload[..<length])
                XCTAssertNil(cut.withUnsafeBytes { MembershipFrames.decode(type: type, payload: $0) }, "\(length)")
            }
            let longer = payload + [0]
            XCTAssertNil(longer.withUnsafeBytes { MembershipFrames.decode(type: type, payload: $0) })
        }
    }

    func testRandomAndMutatedBytesNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        let seeds = frames.map { MembershipFrames.encode($0) }
        var decoded = 0
        for round in 0..<20_000 {
            let (type, base) = seeds[round % seeds.count]
            var bytes = base
            if round % 3 == 0 {
                bytes = (0..<Int.random(in: 0...64, using: &generator)).map { _ in UInt8.random(in: 0...255) }
            } else {
                for _ in 0..<Int.random(in: 1...4, using: &generator) where !bytes.isEmpty {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255)
                }
            }
            if bytes.withUnsafeBytes({ MembershipFrames.decode(type: type, payload: $0) }) != nil { decoded += 1 }
        }
        XCTAssertGreaterThan(decoded, 0, "some mutations keep a frame well formed")
    }

    func testAnOfferCarriesTheConfigurationAndOneWithoutItStillDecodes() throws {
        let descriptor = SnapshotDescriptor(index: 10, term: 2, fileBytes: 100, payloadCRC: 7)
        let with = SnapshotTransferFrame.offer(
            SnapshotOffer(transferID: 1, leaderTerm: 3, snapshot: descriptor, configuration: configuration.encoded))
        let (type, payload) = SnapshotTransferCodec.encode(with)
        XCTAssertEqual(try SnapshotTransferCodec.decode(type: type, payload: payload), with)
        let without = SnapshotTransferFrame.offer(SnapshotOffer(transferID: 1, leaderTerm: 3, snapshot: descriptor))
        let (_, old) = SnapshotTransferCodec.encode(without)
        XCTAssertEqual(old.count, 44, "an Offer without a configuration is the one older nodes send")
        XCTAssertEqual(try SnapshotTransferCodec.decode(type: type, payload: old), without)
        var tooLong = Array(old)
        tooLong += [0xFF, 0xFF, 0xFF, 0x7F]
        XCTAssertThrowsError(try SnapshotTransferCodec.decode(type: type, payload: tooLong), "an absurd length")
    }

    func testPeerEndpointsParseFromAddresses() {
        XCTAssertEqual(
            PeerEndpoint(id: NodeID("a"), address: "h:7400"), PeerEndpoint(id: NodeID("a"), host: "h", port: 7400))
        XCTAssertEqual(PeerEndpoint(id: NodeID("a"), address: "[::1]:9")?.host, "::1")
        XCTAssertNil(PeerEndpoint(id: NodeID("a"), address: "h:0"))
        XCTAssertNil(PeerEndpoint(id: NodeID("a"), address: ":1"))
        XCTAssertNil(PeerEndpoint(id: NodeID("a"), address: "nocolon"))
        // Parsed as the configuration's own addresses are (HostPort), not by splitting at the last colon.
        XCTAssertEqual(PeerEndpoint(id: NodeID("a"), address: "10.0.0.7:7400")?.host, "10.0.0.7")
        XCTAssertEqual(PeerEndpoint(id: NodeID("a"), address: "tandem-1.tandem-peers:7400")?.port, 7400)
        XCTAssertNil(PeerEndpoint(id: NodeID("a"), address: "999.1.1.1:7400"), "not an IPv4 address")
        XCTAssertNil(PeerEndpoint(id: NodeID("a"), address: "[zz]:7400"), "not an IPv6 address")
        XCTAssertNil(PeerEndpoint(id: NodeID("a"), address: "::1:7400"), "an IPv6 host needs brackets")
        XCTAssertNil(PeerEndpoint(id: NodeID("a"), address: "h:65536"))
    }
}
