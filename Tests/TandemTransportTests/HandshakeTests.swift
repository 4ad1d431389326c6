import TandemConsensus
import XCTest

@testable import TandemTransport

final class HandshakeTests: XCTestCase {
    private var random = SeededGenerator(seed: 42)
    private let n1 = NodeID("n1"), n2 = NodeID("n2"), n3 = NodeID("n3")

    private func handshake(
        _ id: NodeID, _ role: LinkRole, auth: HandshakeAuth, peers: Set<NodeID>, incarnation: UInt64 = 1
    ) -> Handshake {
        Handshake(
            selfID: id, incarnation: incarnation, auth: auth, role: role, knownPeers: peers, nonce: random.bytes(32))
    }

    private func deliver(_ type: UInt8, _ payload: [UInt8], to handshake: inout Handshake) -> HandshakeAction {
        payload.withUnsafeBytes { handshake.onFrame(type: type, payload: $0) }
    }

    /// Runs both sides to completion, as the network would: hellos cross, then proofs cross.
    private func exchange(_ dialer: inout Handshake, _ acceptor: inout Handshake) -> (HandshakeAction, HandshakeAction)
    {
        var dialerAction = deliver(PeerProtocol.helloFrameType, acceptor.helloPayload(), to: &dialer)
        var acceptorAction = deliver(PeerProtocol.helloFrameType, dialer.helloPayload(), to: &acceptor)
        if case .send(let type, let proof) = dialerAction, case .send(let type2, let proof2) = acceptorAction {
            acceptorAction = deliver(type, proof, to: &acceptor)
            dialerAction = deliver(type2, proof2, to: &dialer)
        }
        return (dialerAction, acceptorAction)
    }

    func testTheSameSecretAuthenticatesBothSidesWithTheirIdentities() {
        let secret = HandshakeAuth.secret(Array("s3cret".utf8))
        var dialer = handshake(n1, .dialer(expected: n2), auth: secret, peers: [n2, n3], incarnation: 11)
        var acceptor = handshake(n2, .acceptor, auth: secret, peers: [n1, n3], incarnation: 22)
        let (a, b) = exchange(&dialer, &acceptor)
        XCTAssertEqual(a, .established(PeerIdentity(id: n2, incarnation: 22)))
        XCTAssertEqual(b, .established(PeerIdentity(id: n1, incarnation: 11)))
    }

    func testAWrongSecretIsRefusedOnBothSides() {
        var dialer = handshake(n1, .dialer(expected: n2), auth: .secret(Array("right".utf8)), peers: [n2])
        var acceptor = handshake(n2, .acceptor, auth: .secret(Array("wrong".utf8)), peers: [n1])
        let (a, b) = exchange(&dialer, &acceptor)
        XCTAssertEqual(a, .refuse(.badProof(claimed: "n2")))
        XCTAssertEqual(b, .refuse(.badProof(claimed: "n1")))
    }

    func testAProofRecordedOnOneConnectionFailsOnTheNextBecauseNoncesAreFresh() {
        let secret = HandshakeAuth.secret(Array("s3cret".utf8))
        var dialer = handshake(n1, .dialer(expected: n2), auth: secret, peers: [n2])
        var acceptor = handshake(n2, .acceptor, auth: secret, peers: [n1])
        let recordedHello = dialer.helloPayload()
        guard
            case .send(_, let recordedProof) = deliver(
                PeerProtocol.helloFrameType, acceptor.helloPayload(), to: &dialer)
        else {
            return XCTFail("the dialer should answer the hello with its proof")
        }
        _ = deliver(PeerProtocol.helloFrameType, recordedHello, to: &acceptor)
        XCTAssertEqual(
            deliver(PeerProtocol.proofFrameType, recordedProof, to: &acceptor),
            .established(PeerIdentity(id: n1, incarnation: 1)))
        // An attacker replays the recorded hello and proof to a fresh acceptor (new nonce).
        var replayTarget = handshake(n2, .acceptor, auth: secret, peers: [n1])
        XCTAssertEqual(deliver(PeerProtocol.helloFrameType, recordedHello, to: &replayTarget).isSend, true)
        XCTAssertEqual(
            deliver(PeerProtocol.proofFrameType, recordedProof, to: &replayTarget), .refuse(.badProof(claimed: "n1")))
    }

    func testAProofCannotBeReflectedBackToItsAuthor() {
        // An attacker connects to n2 claiming to be n1 and echoes n2's own proof back: the role and id bound into
        // the proof make it wrong.
        let secret = HandshakeAuth.secret(Array("s3cret".utf8))
        var acceptor = handshake(n2, .acceptor, auth: secret, peers: [n1])
        let attackerHello = handshake(n1, .dialer(expected: n2), auth: .none, peers: [n2]).helloPayload()
        var forged = attackerHello
        forged[4] = UInt8(PeerProtocol.version(for: secret))  // claim secret mode, with its version
        forged[6] = HandshakeAuth.secret([]).wireCode
        guard case .send(_, let ownProof) = deliver(PeerProtocol.helloFrameType, forged, to: &acceptor) else {
            return XCTFail("the acceptor should send its proof")
        }
        XCTAssertEqual(deliver(PeerProtocol.proofFrameType, ownProof, to: &acceptor), .refuse(.badProof(claimed: "n1")))
    }

    func testAnAcceptorRefusesANodeIDThatIsNotAConfiguredPeer() {
        let dialer = handshake(n3, .dialer(expected: n2), auth: .none, peers: [n2])
        var acceptor = handshake(n2, .acceptor, auth: .none, peers: [n1])
        XCTAssertEqual(
            deliver(PeerProtocol.helloFrameType, dialer.helloPayload(), to: &acceptor),
            .refuse(.unknownPeer(claimed: "n3")))
    }

    func testAnAcceptorRefusesAPeerClaimingItsOwnID() {
        var acceptor = handshake(n2, .acceptor, auth: .none, peers: [n1])
        let impostor = handshake(n2, .dialer(expected: n1), auth: .none, peers: [n1]).helloPayload()
        XCTAssertEqual(
            deliver(PeerProtocol.helloFrameType, impostor, to: &acceptor), .refuse(.unknownPeer(claimed: "n2")))
    }

    func testADialerRefusesANodeOtherThanTheOneItDialled() {
        var dialer = handshake(n1, .dialer(expected: n2), auth: .none, peers: [n2, n3])
        let other = handshake(n3, .acceptor, auth: .none, peers: [n1]).helloPayload()
        XCTAssertEqual(
            deliver(PeerProtocol.helloFrameType, other, to: &dialer),
            .refuse(.unexpectedPeer(expected: n2, claimed: "n3")))
    }

    /// Only the cluster-secret mode changed on the wire (sealed frames): its hellos say 2, and a node of the
    /// previous release (1, plaintext frames) is refused; TLS and unauthenticated hellos still say 1, so clusters
    /// in those modes upgrade one node at a time without a split.
    func testOnlyTheSecretModeAnnouncesTheSealedFramesVersion() {
        for (auth, expected) in [(HandshakeAuth.none, UInt16(1)), (.tls, 1), (.secret(Array("s".utf8)), 2)] {
            let hello = handshake(n1, .dialer(expected: n2), auth: auth, peers: [n2]).helloPayload()
            XCTAssertEqual(UInt16(hello[4]) | UInt16(hello[5]) << 8, expected, "\(auth)")
        }
        var acceptor = handshake(n2, .acceptor, auth: .secret(Array("s".utf8)), peers: [n1])
        var old = handshake(n1, .dialer(expected: n2), auth: .secret(Array("s".utf8)), peers: [n2]).helloPayload()
        old[4] = 1
        old[5] = 0
        XCTAssertEqual(
            deliver(PeerProtocol.helloFrameType, old, to: &acceptor),
            .refuse(.versionMismatch(peerVersion: 1, ourVersion: 2)))
    }

    func testAnotherProtocolVersionIsRefusedNamingBothVersions() {
        var acceptor = handshake(n2, .acceptor, auth: .none, peers: [n1])
        var hello = handshake(n1, .dialer(expected: n2), auth: .none, peers: [n2]).helloPayload()
        hello[4] = 9
        hello[5] = 0
        let action = deliver(PeerProtocol.helloFrameType, hello, to: &acceptor)
        XCTAssertEqual(action, .refuse(.versionMismatch(peerVersion: 9, ourVersion: PeerProtocol.version(for: .none))))
        if case .refuse(let failure) = action { XCTAssertTrue(failure.description.contains("version 9")) }
    }

    func testAnotherAuthenticationModeIsRefusedNamingBoth() {
        var acceptor = handshake(n2, .acceptor, auth: .secret([1]), peers: [n1])
        let hello = handshake(n1, .dialer(expected: n2), auth: .none, peers: [n2]).helloPayload()
        XCTAssertEqual(
            deliver(PeerProtocol.helloFrameType, hello, to: &acceptor),
            .refuse(.authModeMismatch(peerMode: "no authentication", ourMode: "a cluster secret")))
    }

    func testGarbageInsteadOfAHelloIsRefused() {
        var acceptor = handshake(n2, .acceptor, auth: .none, peers: [n1])
        XCTAssertEqual(
            deliver(PeerProtocol.helloFrameType, Array("GET / HTTP/1.1".utf8), to: &acceptor), .refuse(.badMagic))
        var second = handshake(n2, .acceptor, auth: .none, peers: [n1])
        XCTAssertEqual(deliver(0x10, [1, 2, 3], to: &second), .refuse(.unexpectedFrame(type: 0x10)))
        var third = handshake(n2, .acceptor, auth: .none, peers: [n1])
        let truncated = Array(handshake(n1, .dialer(expected: n2), auth: .none, peers: [n2]).helloPayload().dropLast(1))
        guard case .refuse(.malformedHandshake) = deliver(PeerProtocol.helloFrameType, truncated, to: &third) else {
            return XCTFail("a truncated hello is malformed")
        }
    }

    func testWithoutAuthenticationOrWithTLSTheHelloAloneEstablishes() {
        for auth in [HandshakeAuth.none, .tls] {
            var dialer = handshake(n1, .dialer(expected: n2), auth: auth, peers: [n2])
            var acceptor = handshake(n2, .acceptor, auth: auth, peers: [n1])
            let (a, b) = exchange(&dialer, &acceptor)
            XCTAssertEqual(a, .established(PeerIdentity(id: n2, incarnation: 1)))
            XCTAssertEqual(b, .established(PeerIdentity(id: n1, incarnation: 1)))
        }
    }
}

extension HandshakeAction {
    var isSend: Bool {
        if case .send = self { return true }
        return false
    }
}

final class HandshakeFuzzTests: XCTestCase {
    /// Seeded mutation fuzzing of hellos and proofs: the handshake never traps, and whatever it establishes is a
    /// configured peer that proved the secret (a mutated proof never passes).
    func testMutatedHellosAndProofsNeverTrapNorAuthenticate() {
        var random = SeededGenerator(seed: 0x4E110)
        let n1 = NodeID("n1"), n2 = NodeID("n2")
        let secret = HandshakeAuth.secret(Array("s".utf8))
        var established = 0
        for _ in 0..<5000 {
            var dialer = Handshake(
                selfID: n1, incarnation: 1, auth: secret, role: .dialer(expected: n2), knownPeers: [n2],
                nonce: random.bytes(32))
            var acceptor = Handshake(
                selfID: n2, incarnation: 2, auth: secret, role: .acceptor, knownPeers: [n1], nonce: random.bytes(32))
            var hello = dialer.helloPayload()
            let mutateHello = Bool.random(using: &random)
            if mutateHello {
                let at = Int.random(in: 0..<hello.count, using: &random)
                if Bool.random(using: &random) {
                    hello[at] ^= UInt8.random(in: 1...255, using: &random)
                } else {
                    hello.removeSubrange(at...)
                }
            }
            let first = hello.withUnsafeBytes { acceptor.onFrame(type: PeerProtocol.helloFrameType, payload: $0) }
            guard case .send = first else { continue }
            guard
                case .send(_, var proof) = acceptor.helloPayload().withUnsafeBytes({
                    dialer.onFrame(type: PeerProtocol.helloFrameType, payload: $0)
                })
            else {
                return XCTFail("the dialer answers a valid hello with a proof")
            }
            let mutateProof = Bool.random(using: &random)
            if mutateProof {
                proof[Int.random(in: 0..<proof.count, using: &random)] ^= UInt8.random(in: 1...255, using: &random)
            }
            let outcome = proof.withUnsafeBytes { acceptor.onFrame(type: PeerProtocol.proofFrameType, payload: $0) }
            if case .established(let identity) = outcome {
                established += 1
                XCTAssertFalse(mutateProof, "a mutated proof must never authenticate")
                XCTAssertEqual(identity.id, n1)
            }
        }
        XCTAssertGreaterThan(established, 0, "unmutated exchanges do authenticate")
    }
}
