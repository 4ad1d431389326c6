// Sealed frames in cluster-secret mode: keys, sealing and opening as values, then on real sockets against a peer
// that does the handshake by hand and then misbehaves on the wire.

import Glibc
import TandemConsensus
import TandemNet
import XCTest

@testable import TandemTransport

/// Two handshakes run against each other in memory, and the link keys both sides derive.
private struct KeyedPair {
    var dialer: Handshake
    var acceptor: Handshake
    var dialerKeys: LinkKeys
    var acceptorKeys: LinkKeys

    init(secret: String = "cluster-secret", random: inout SeededGenerator, dialerIncarnation: UInt64 = 1) {
        let auth = HandshakeAuth.secret(Array(secret.utf8))
        let (n1, n2) = (NodeID("n1"), NodeID("n2"))
        var dialer = Handshake(
            selfID: n1, incarnation: dialerIncarnation, auth: auth, role: .dialer(expected: n2), knownPeers: [n2],
            nonce: random.bytes(32))
        var acceptor = Handshake(
            selfID: n2, incarnation: 2, auth: auth, role: .acceptor, knownPeers: [n1], nonce: random.bytes(32))
        let dialerHello = dialer.helloPayload()
        let acceptorHello = acceptor.helloPayload()
        guard
            case .send(_, let dialerProof) = acceptorHello.withUnsafeBytes({
                dialer.onFrame(type: PeerProtocol.helloFrameType, payload: $0)
            }),
            case .send(_, let acceptorProof) = dialerHello.withUnsafeBytes({
                acceptor.onFrame(type: PeerProtocol.helloFrameType, payload: $0)
            }),
            case .established = dialerProof.withUnsafeBytes({
                acceptor.onFrame(type: PeerProtocol.proofFrameType, payload: $0)
            }),
            case .established = acceptorProof.withUnsafeBytes({
                dialer.onFrame(type: PeerProtocol.proofFrameType, payload: $0)
            })
        else { preconditionFailure("the same secret authenticates") }
        (self.dialer, self.acceptor) = (dialer, acceptor)
        dialerKeys = LinkKeys(handshake: dialer, peer: n2)
        acceptorKeys = LinkKeys(handshake: acceptor, peer: n1)
    }
}

/// Seals frames into one byte string, as they would leave on the wire.
private func sealed(_ frames: [(UInt8, [UInt8])], with sealer: FrameSealer) -> [UInt8] {
    var wire: [UInt8] = []
    for (type, payload) in frames {
        let ok = payload.withUnsafeBytes { bytes in sealer.seal(type: type, payload: bytes) { wire += $0 } }
        precondition(ok, "sequence numbers left")
    }
    return wire
}

/// Parses and opens a byte string; stops at the first frame that does not open and returns its failure.
private func opened(_ wire: [UInt8], with opener: FrameOpener) -> (frames: [(UInt8, [UInt8])], failure: LinkFailure?) {
    var parser = FrameParser(maxPayloadBytes: 1 << 24)
    var frames: [(UInt8, [UInt8])] = []
    var failure: LinkFailure?
    wire.withUnsafeBytes { bytes in
        try? parser.consume(bytes) { type, payload in
            switch opener.open(frameType: type, payload: payload) {
            case .opened(let innerType, let plaintext):
                frames.append((innerType, [UInt8](plaintext)))
                return .proceed
            case .failed(let reason):
                failure = reason
                return .stop
            }
        }
    }
    return (frames, failure)
}

/// Splits a wire byte string into its frames (header included), to tamper with one of them.
private func splitFrames(_ wire: [UInt8]) -> [[UInt8]] {
    var frames: [[UInt8]] = []
    var offset = 0
    while offset < wire.count {
        let length =
            Int(wire[offset]) | Int(wire[offset + 1]) << 8 | Int(wire[offset + 2]) << 16 | Int(wire[offset + 3]) << 24
        frames.append(Array(wire[offset..<(offset + FrameParser.headerBytes + length)]))
        offset += FrameParser.headerBytes + length
    }
    return frames
}

/// A frame with `bytes` cut from the end of its tag, its header length made to match.
private func truncatingTag(_ frame: [UInt8], by bytes: Int) -> [UInt8] {
    let payloadBytes = frame.count - FrameParser.headerBytes - bytes
    return FrameParser.header(type: frame[4], payloadBytes: payloadBytes)
        + frame[FrameParser.headerBytes..<(frame.count - bytes)]
}

private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard needle.count <= haystack.count else { return false }
    return (0...(haystack.count - needle.count)).contains { start in
        haystack[start..<(start + needle.count)].elementsEqual(needle)
    }
}

private let knownBody = Array("PUT /accounts/42 {\"owner\":\"alice\",\"balance\":1000000}".utf8)

final class SealedFrameTests: XCTestCase {
    private var random = SeededGenerator(seed: 7)

    // MARK: keys

    func testBothSidesDeriveCrossedKeysThatDifferPerDirectionAndPerLink() {
        let first = KeyedPair(random: &random)
        XCTAssertEqual(first.dialerKeys.send, first.acceptorKeys.receive)
        XCTAssertEqual(first.dialerKeys.receive, first.acceptorKeys.send)
        XCTAssertNotEqual(first.dialerKeys.send, first.dialerKeys.receive)
        XCTAssertEqual(first.dialerKeys.send.count, 32)
        let second = KeyedPair(random: &random)
        XCTAssertNotEqual(first.dialerKeys.send, second.dialerKeys.send, "fresh nonces give a link fresh keys")
        var other = SeededGenerator(seed: 7)
        let otherSecret = KeyedPair(secret: "another-secret", random: &other)
        XCTAssertNotEqual(first.dialerKeys.send, otherSecret.dialerKeys.send)
    }

    func testAHelloWhoseIncarnationWasAlteredFailsItsProof() {
        let auth = HandshakeAuth.secret(Array("cluster-secret".utf8))
        var acceptor = Handshake(
            selfID: NodeID("n2"), incarnation: 2, auth: auth, role: .acceptor, knownPeers: [NodeID("n1")],
            nonce: random.bytes(32))
        var dialer = Handshake(
            selfID: NodeID("n1"), incarnation: 5, auth: auth, role: .dialer(expected: NodeID("n2")),
            knownPeers: [NodeID("n2")], nonce: random.bytes(32))
        var hello = dialer.helloPayload()
        hello[4 + 2 + 1] ^= 1  // magic, version, mode, then the incarnation
        _ = hello.withUnsafeBytes { acceptor.onFrame(type: PeerProtocol.helloFrameType, payload: $0) }
        guard
            case .send(_, let proof) = acceptor.helloPayload().withUnsafeBytes({
                dialer.onFrame(type: PeerProtocol.helloFrameType, payload: $0)
            })
        else { return XCTFail("the dialer answers with its proof") }
        let verdict = proof.withUnsafeBytes { acceptor.onFrame(type: PeerProtocol.proofFrameType, payload: $0) }
        XCTAssertEqual(verdict, .refuse(.badProof(claimed: "n1")))
    }

    // MARK: sealing and opening

    func testFramesRoundTripInOrderWhateverTheirSize() {
        let pair = KeyedPair(random: &random)
        let sizes = [
            0, 1, 15, 16, 17, 1000, FrameSealer.scratchBytes - 22, FrameSealer.scratchBytes - 6, 70_000, 300_000,
        ]
        let frames = sizes.enumerated().map { (UInt8(0x10 + $0.offset), random.bytes($0.element)) }
        let wire = sealed(frames, with: FrameSealer(key: pair.dialerKeys.send))
        XCTAssertEqual(
            wire.count, frames.reduce(0) { $0 + 5 + $1.1.count + PeerProtocol.sealedFrameOverheadBytes })
        let opener = FrameOpener(key: pair.acceptorKeys.receive)
        let (received, failure) = opened(wire, with: opener)
        XCTAssertNil(failure)
        XCTAssertEqual(received.map(\.0), frames.map(\.0))
        XCTAssertEqual(received.map(\.1), frames.map(\.1))
        XCTAssertEqual(opener.sequence, UInt64(frames.count))
    }

    func testTheWireBytesDoNotContainThePayloadNorItsType() {
        let pair = KeyedPair(random: &random)
        let wire = sealed([(0x42, knownBody)], with: FrameSealer(key: pair.dialerKeys.send))
        XCTAssertFalse(contains(wire, knownBody))
        XCTAssertFalse(contains(wire, Array(knownBody.prefix(8))))
        XCTAssertEqual(wire[4], PeerProtocol.sealedFrameType, "the outer type is the same for every frame")
        XCTAssertEqual(opened(wire, with: FrameOpener(key: pair.acceptorKeys.receive)).frames.first?.1, knownBody)
    }

    func testEveryAlteredByteFailsAuthentication() {
        let pair = KeyedPair(random: &random)
        let wire = sealed([(0x10, knownBody)], with: FrameSealer(key: pair.dialerKeys.send))
        // Every byte after the length: the outer type, the ciphertext (inner type and payload) and the tag.
        for index in 4..<wire.count {
            var altered = wire
            altered[index] ^= 0x01
            let (frames, failure) = opened(altered, with: FrameOpener(key: pair.acceptorKeys.receive))
            XCTAssertTrue(frames.isEmpty, "byte \(index)")
            let expected: LinkFailure =
                index == 4 ? .unsealedFrame(type: wire[4] ^ 1) : .frameAuthenticationFailed(sequence: 0)
            XCTAssertEqual(failure, expected, "byte \(index)")
        }
    }

    func testReplayedReorderedDroppedTruncatedAndReflectedFramesFail() {
        let pair = KeyedPair(random: &random)
        let frames = (0..<3).map { (UInt8(0x10), Array("frame \($0)".utf8)) }
        let pieces = splitFrames(sealed(frames, with: FrameSealer(key: pair.dialerKeys.send)))
        XCTAssertEqual(pieces.count, 3)
        let cases: [(String, [UInt8], Int, UInt64)] = [
            ("replayed", pieces[0] + pieces[1] + pieces[1], 2, 2),
            ("reordered", pieces[1] + pieces[0], 0, 0),
            ("dropped", pieces[0] + pieces[2], 1, 1),
            ("tag truncated by 1", pieces[0] + truncatingTag(pieces[1], by: 1), 1, 1),
            ("tag truncated by 16", pieces[0] + truncatingTag(pieces[1], by: 16), 1, 1),
        ]
        for (name, wire, deliveredBefore, failedAt) in cases {
            let (delivered, failure) = opened(wire, with: FrameOpener(key: pair.acceptorKeys.receive))
            XCTAssertEqual(delivered.map(\.1), frames.prefix(deliveredBefore).map(\.1), name)
            XCTAssertEqual(failure, .frameAuthenticationFailed(sequence: failedAt), name)
        }
        // A frame sent back to its sender (the other direction's key) does not open either.
        let reflected = opened(pieces[0], with: FrameOpener(key: pair.dialerKeys.receive))
        XCTAssertEqual(reflected.failure, .frameAuthenticationFailed(sequence: 0))
        // Nor one from another link between the same nodes.
        let otherLink = KeyedPair(random: &random)
        let spliced = opened(pieces[0], with: FrameOpener(key: otherLink.acceptorKeys.receive))
        XCTAssertEqual(spliced.failure, .frameAuthenticationFailed(sequence: 0))
        // A plaintext frame is refused by its type alone.
        let plain = FrameParser.header(type: 0x10, payloadBytes: knownBody.count) + knownBody
        XCTAssertEqual(
            opened(plain, with: FrameOpener(key: pair.acceptorKeys.receive)).failure, .unsealedFrame(type: 0x10))
    }

    func testASequenceNeverWrapsOnEitherSide() {
        let pair = KeyedPair(random: &random)
        let sealer = FrameSealer(key: pair.dialerKeys.send, sequence: UInt64.max - 1)
        var wire: [UInt8] = []
        XCTAssertTrue(sealer.seal(type: 0x10, payload: UnsafeRawBufferPointer(start: nil, count: 0)) { wire += $0 })
        let written = wire.count
        XCTAssertFalse(sealer.seal(type: 0x10, payload: UnsafeRawBufferPointer(start: nil, count: 0)) { wire += $0 })
        XCTAssertEqual(wire.count, written, "nothing is written once the numbers are used up")
        let opener = FrameOpener(key: pair.acceptorKeys.receive, sequence: UInt64.max - 1)
        XCTAssertEqual(opened(wire, with: opener).frames.count, 1)
        XCTAssertEqual(opened(wire, with: opener).failure, .sequenceExhausted)
    }
}

// MARK: on real sockets

/// Plays node n2 by hand against a real transport: dials it, runs the secret handshake with `Handshake`, derives
/// the keys, and then sends whatever bytes a test wants. Records every byte it receives.
private final class HandRolledPeer: ConnectionDelegate {
    var handshake: Handshake
    private var parser = FrameParser(maxPayloadBytes: PeerProtocol.handshakeMaxPayloadBytes)
    private(set) var sealer: FrameSealer?
    private(set) var opener: FrameOpener?
    private(set) var connection: Connection?
    private(set) var raw: [UInt8] = []
    private(set) var frames: [(UInt8, [UInt8])] = []
    private(set) var closed = false
    private(set) var openFailure: LinkFailure?

    init(loop: EventLoop, port: UInt16, secret: String) throws {
        handshake = Handshake(
            selfID: NodeID("n2"), incarnation: 99, auth: .secret(Array(secret.utf8)),
            role: .dialer(expected: NodeID("n1")), knownPeers: [NodeID("n1")],
            nonce: try Crypto.secureRandomBytes(count: 32))
        connection = Connection.connect(loop: loop, host: "127.0.0.1", port: port, delegate: self)
        let hello = handshake.helloPayload()
        connection?.write(FrameParser.header(type: PeerProtocol.helloFrameType, payloadBytes: hello.count) + hello)
        connection?.enableReading()
    }

    var isEstablished: Bool { sealer != nil }

    /// The bytes of the next sealed frame (the sealer's sequence advances), not yet written.
    func seal(type: UInt8, payload: [UInt8]) -> [UInt8] {
        var wire: [UInt8] = []
        _ = payload.withUnsafeBytes { bytes in sealer!.seal(type: type, payload: bytes) { wire += $0 } }
        return wire
    }

    func write(_ bytes: [UInt8]) { connection?.write(bytes) }

    func connectionHasInput(_ connection: Connection) {
        connection.consumeInput { chunk in
            raw += chunk
            try? parser.consume(chunk) { type, payload in onFrame(type, payload) }
            return chunk.count
        }
    }

    private func onFrame(_ type: UInt8, _ payload: UnsafeRawBufferPointer) -> FrameVerdict {
        if let opener {
            switch opener.open(frameType: type, payload: payload) {
            case .opened(let innerType, let plaintext):
                frames.append((innerType, [UInt8](plaintext)))
                return .proceed
            case .failed(let failure):
                openFailure = failure
                return .stop
            }
        }
        switch handshake.onFrame(type: type, payload: payload) {
        case .send(let replyType, let reply):
            write(FrameParser.header(type: replyType, payloadBytes: reply.count) + reply)
            return .proceed
        case .established(let peer):
            let keys = LinkKeys(handshake: handshake, peer: peer.id)
            sealer = FrameSealer(key: keys.send)
            opener = FrameOpener(key: keys.receive)
            return .proceedWithLimit(maxPayloadBytes: 1 << 20)
        case .wait:
            return .proceed
        case .refuse:
            return .stop
        }
    }

    func connectionDidClose(_ connection: Connection, reason: CloseReason) { closed = true }
}

final class SealedLinkTests: XCTestCase {
    private var loop: EventLoop!

    override func setUpWithError() throws {
        ignoreBrokenPipeSignals()
        loop = try EventLoop()
    }

    override func tearDown() {
        loop = nil
    }

    private func options() -> PeerTransportOptions {
        var options = PeerTransportOptions()
        options.reconnectBackoffMinMs = 10
        options.reconnectBackoffMaxMs = 100
        return options
    }

    /// A real n1 with the secret, and a hand-rolled n2 connected and authenticated to it. n1's own dials to n2
    /// find nobody listening (n2's configured port is free), so the hand-rolled link is the only one.
    private func connectedPair() throws -> (TestNode, HandRolledPeer) {
        let ports = try (0..<2).map { _ in try freePort(loop) }
        let endpoints = [
            PeerEndpoint(id: NodeID("n1"), host: "127.0.0.1", port: ports[0]),
            PeerEndpoint(id: NodeID("n2"), host: "127.0.0.1", port: ports[1]),
        ]
        let transport = try PeerTransport(
            loop: loop, selfID: NodeID("n1"), peers: endpoints, listenHost: "127.0.0.1", listenPort: ports[0],
            auth: .secret("cluster-secret"), options: options())
        let recorder = Recorder()
        transport.delegate = recorder
        transport.start()
        let peer = try HandRolledPeer(loop: loop, port: ports[0], secret: "cluster-secret")
        XCTAssertTrue(runLoop(loop) { transport.isConnected(to: NodeID("n2")) && peer.isEstablished })
        return (TestNode(transport: transport, recorder: recorder), peer)
    }

    /// Sends one good frame, then `bad` (given the peer and the good frame's bytes), then another good one; n1 must
    /// take the first, close the link on `bad` with `expected`, and never deliver anything of `bad` or after it.
    private func assertClosesLink(
        sending bad: (HandRolledPeer, [UInt8]) -> [UInt8], expected: LinkFailure, file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        let (node, peer) = try connectedPair()
        let first = peer.seal(type: 0x10, payload: Array("first".utf8))
        peer.write(first)
        XCTAssertTrue(runLoop(loop) { node.recorder.frames.count == 1 }, file: file, line: line)
        peer.write(bad(peer, first))
        peer.write(peer.seal(type: 0x10, payload: Array("after".utf8)))
        XCTAssertTrue(runLoop(loop) { !node.recorder.disconnected.isEmpty && peer.closed }, file: file, line: line)
        XCTAssertEqual(node.recorder.disconnected.first?.0, NodeID("n2"), file: file, line: line)
        XCTAssertEqual(node.recorder.disconnected.first?.1, expected, file: file, line: line)
        XCTAssertEqual(node.recorder.frames.map(\.payload), [Array("first".utf8)], file: file, line: line)
        XCTAssertFalse(node.transport.isConnected(to: NodeID("n2")), file: file, line: line)
        node.transport.stop()
    }

    func testAFlippedCiphertextByteClosesTheLink() throws {
        try assertClosesLink(
            sending: { peer, _ in
                var frame = peer.seal(type: 0x10, payload: knownBody)
                frame[FrameParser.headerBytes + 3] ^= 0x80
                return frame
            }, expected: .frameAuthenticationFailed(sequence: 1))
    }

    func testAReplayedFrameClosesTheLink() throws {
        // The first frame again, byte for byte: it was frame 0, and n1 now expects frame 1.
        try assertClosesLink(sending: { _, first in first }, expected: .frameAuthenticationFailed(sequence: 1))
    }

    func testAFrameInjectedInPlaintextClosesTheLink() throws {
        try assertClosesLink(
            sending: { _, _ in FrameParser.header(type: 0x10, payloadBytes: knownBody.count) + knownBody },
            expected: .unsealedFrame(type: 0x10))
    }

    func testATruncatedTagClosesTheLink() throws {
        try assertClosesLink(
            sending: { peer, _ in truncatingTag(peer.seal(type: 0x10, payload: knownBody), by: 4) },
            expected: .frameAuthenticationFailed(sequence: 1))
    }

    func testTheWireBytesOfAFrameDoNotCarryItsPayloadInClear() throws {
        let (node, peer) = try connectedPair()
        let before = peer.raw.count
        XCTAssertEqual(node.transport.send(type: 0x33, payload: knownBody, to: NodeID("n2")), .queued)
        XCTAssertTrue(runLoop(loop) { peer.frames.contains { $0.0 == 0x33 } })
        XCTAssertEqual(peer.frames.first { $0.0 == 0x33 }?.1, knownBody, "the peer opens what n1 sealed")
        let wire = Array(peer.raw[before...])
        XCTAssertGreaterThan(wire.count, knownBody.count)
        XCTAssertFalse(contains(wire, knownBody))
        XCTAssertFalse(contains(wire, Array("\"owner\"".utf8)))
        XCTAssertNil(peer.openFailure)
        node.transport.stop()
    }

    func testFramesBetweenTwoTransportsRoundTripInOrderUnderTheSecret() throws {
        let ports = try (0..<2).map { _ in try freePort(loop) }
        let endpoints = (0..<2).map { PeerEndpoint(id: NodeID("n\($0 + 1)"), host: "127.0.0.1", port: ports[$0]) }
        let nodes = try (0..<2).map { index -> TestNode in
            let transport = try PeerTransport(
                loop: loop, selfID: endpoints[index].id, peers: endpoints, listenHost: "127.0.0.1",
                listenPort: ports[index], auth: .secret("cluster-secret"), options: options())
            let recorder = Recorder()
            transport.delegate = recorder
            transport.start()
            return TestNode(transport: transport, recorder: recorder)
        }
        XCTAssertTrue(
            runLoop(loop) {
                nodes[0].transport.isConnected(to: NodeID("n2")) && nodes[1].transport.isConnected(to: NodeID("n1"))
            })
        var random = SeededGenerator(seed: 3)
        let payloads = (0..<200).map { random.bytes($0 % 50 == 7 ? 200_000 : $0 * 13) }
        for (index, payload) in payloads.enumerated() {
            nodes[0].transport.send(type: 0x10 + UInt8(index % 8), payload: payload, to: NodeID("n2"))
            nodes[1].transport.send(type: 0x20, payload: payload, to: NodeID("n1"))
        }
        XCTAssertTrue(
            runLoop(loop) { nodes[1].recorder.frames.count == 200 && nodes[0].recorder.frames.count == 200 })
        XCTAssertEqual(nodes[1].recorder.frames.map(\.payload), payloads)
        XCTAssertEqual(nodes[1].recorder.frames.map(\.type), (0..<200).map { 0x10 + UInt8($0 % 8) })
        XCTAssertEqual(nodes[0].recorder.frames.map(\.payload), payloads)
        XCTAssertTrue(nodes.allSatisfy { $0.recorder.disconnected.isEmpty })
        nodes.forEach { $0.transport.stop() }
    }

    func testCloseLinkDisconnectsThePeerWhichThenReconnectsAndAuthenticatesAgain() throws {
        let (node, peer) = try connectedPair()
        node.recorder.onFrame = { frame in
            if frame.payload == Array("bad".utf8) { node.transport.closeLink(to: frame.from, reason: "a bad frame") }
        }
        peer.write(peer.seal(type: 0x10, payload: Array("bad".utf8)) + peer.seal(type: 0x10, payload: Array("x".utf8)))
        XCTAssertTrue(runLoop(loop) { peer.closed && !node.recorder.disconnected.isEmpty })
        XCTAssertEqual(node.recorder.disconnected.first?.1, .closedByNode("a bad frame"))
        XCTAssertEqual(node.recorder.frames.map(\.payload), [Array("bad".utf8)], "nothing after the bad frame")
        XCTAssertFalse(node.transport.isConnected(to: NodeID("n2")))
        node.transport.closeLink(to: NodeID("n2"), reason: "no link: nothing happens")
        XCTAssertEqual(node.recorder.disconnected.count, 1)
        // The peer comes back on a new connection, handshaked afresh (new nonces, so new keys).
        let again = try HandRolledPeer(loop: loop, port: node.transport.listenPort, secret: "cluster-secret")
        XCTAssertTrue(runLoop(loop) { node.transport.isConnected(to: NodeID("n2")) && again.isEstablished })
        again.write(again.seal(type: 0x10, payload: Array("good".utf8)))
        XCTAssertTrue(runLoop(loop) { node.recorder.frames.count == 2 })
        node.transport.stop()
    }
}
