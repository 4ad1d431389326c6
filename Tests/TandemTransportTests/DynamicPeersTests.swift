// Membership at run time: peers added, removed and moved with setPeers, and strangers (authenticated nodes that are
// not configured peers) accepted, dialled, bounded, timed out and promoted to peers.

import Foundation
import Glibc
import TandemConsensus
import TandemNet
import XCTest

@testable import TandemTransport

/// Records every callback of a transport, the stranger ones included.
private final class MembershipRecorder: PeerTransportDelegate {
    var frames: [Recorder.Frame] = []
    var strangerFrames: [Recorder.Frame] = []
    var connected: [NodeID] = []
    var disconnected: [(NodeID, LinkFailure)] = []
    var authFailures: [(String, LinkFailure)] = []
    var strangersConnected: [(NodeID, String)] = []
    var strangerDialFailures: [(String, UInt16, LinkFailure)] = []

    func peerTransport(
        _ transport: PeerTransport, didReceiveFrameFrom peer: NodeID, type: UInt8, payload: UnsafeRawBufferPointer
    ) {
        frames.append(Recorder.Frame(from: peer, type: type, payload: [UInt8](payload)))
    }

    func peerTransport(_ transport: PeerTransport, peerDidConnect peer: NodeID) { connected.append(peer) }

    func peerTransport(_ transport: PeerTransport, peerDidDisconnect peer: NodeID, reason: LinkFailure) {
        disconnected.append((peer, reason))
    }

    func peerTransport(_ transport: PeerTransport, authenticationFailedFrom remoteAddress: String, reason: LinkFailure)
    {
        authFailures.append((remoteAddress, reason))
    }

    func peerTransport(
        _ transport: PeerTransport, didReceiveFrameFromStranger peer: NodeID, type: UInt8,
        payload: UnsafeRawBufferPointer
    ) {
        strangerFrames.append(Recorder.Frame(from: peer, type: type, payload: [UInt8](payload)))
    }

    func peerTransport(_ transport: PeerTransport, strangerDidConnect peer: NodeID, address: String) {
        strangersConnected.append((peer, address))
    }

    func peerTransport(_ transport: PeerTransport, strangerDialFailed host: String, port: UInt16, reason: LinkFailure) {
        strangerDialFailures.append((host, port, reason))
    }
}

private struct Node {
    var transport: PeerTransport
    var recorder: MembershipRecorder
    var id: NodeID { transport.selfID }
    var endpoint: PeerEndpoint { PeerEndpoint(id: transport.selfID, host: "127.0.0.1", port: transport.listenPort) }
}

final class DynamicPeersTests: XCTestCase {
    private var loop: EventLoop!

    override func setUpWithError() throws {
        ignoreBrokenPipeSignals()
        loop = try EventLoop()
    }

    override func tearDown() {
        loop = nil
    }

    private func fastOptions(maxStrangers: Int = 8) -> PeerTransportOptions {
        var options = PeerTransportOptions()
        options.reconnectBackoffMinMs = 10
        options.reconnectBackoffMaxMs = 100
        options.handshakeTimeoutMs = 2000
        options.maxStrangers = maxStrangers
        return options
    }

    /// A node named `id` on a port of its own (0: the kernel's choice), knowing `peers`.
    private func node(
        _ id: String, peers: [PeerEndpoint] = [], secret: String = "cluster-secret", port: UInt16 = 0,
        options: PeerTransportOptions? = nil, start: Bool = true
    ) throws -> Node {
        let transport = try PeerTransport(
            loop: loop, selfID: NodeID(id), peers: peers, listenHost: "127.0.0.1", listenPort: port,
            auth: .secret(secret), options: options ?? fastOptions())
        let recorder = MembershipRecorder()
        transport.delegate = recorder
        if start { transport.start() }
        return Node(transport: transport, recorder: recorder)
    }

    private func isFailure(_ failure: LinkFailure?, _ matches: (LinkFailure) -> Bool) -> Bool {
        failure.map(matches) ?? false
    }

    // MARK: setPeers

    func testSetPeersAddsAPeerThatThenConnectsAndExchangesFrames() throws {
        let a = try node("n1")
        let b = try node("n2")
        runLoop(loop, forMs: 50)
        XCTAssertEqual(a.transport.peerIDs, [])
        a.transport.setPeers([a.endpoint, b.endpoint])
        b.transport.setPeers([a.endpoint, b.endpoint])
        XCTAssertEqual(a.transport.peerIDs, [b.id], "the own id is ignored")
        XCTAssertTrue(runLoop(loop) { a.transport.isConnected(to: b.id) && b.transport.isConnected(to: a.id) })
        XCTAssertEqual(a.transport.send(type: 0x20, payload: [1, 2], to: b.id), .queued)
        XCTAssertEqual(b.transport.send(type: 0x21, payload: [3], to: a.id), .queued)
        XCTAssertTrue(runLoop(loop) { !a.recorder.frames.isEmpty && !b.recorder.frames.isEmpty })
        XCTAssertEqual(b.recorder.frames, [Recorder.Frame(from: a.id, type: 0x20, payload: [1, 2])])
        XCTAssertEqual(a.recorder.frames, [Recorder.Frame(from: b.id, type: 0x21, payload: [3])])
        XCTAssertTrue(a.recorder.strangerFrames.isEmpty && b.recorder.strangerFrames.isEmpty)
        XCTAssertEqual(a.recorder.connected, [b.id])
        XCTAssertEqual(b.recorder.connected, [a.id])
        XCTAssertEqual(a.transport.strangerIDs, [])
    }

    func testRemovingAPeerClosesItsLinkWithRemovedAndForgetsIt() throws {
        let a = try node("n1", options: fastOptions(maxStrangers: 0))
        let b = try node("n2")
        a.transport.setPeers([b.endpoint])
        b.transport.setPeers([a.endpoint])
        XCTAssertTrue(runLoop(loop) { a.transport.isConnected(to: b.id) && b.transport.isConnected(to: a.id) })
        a.transport.setPeers([a.endpoint])
        XCTAssertEqual(a.recorder.disconnected.map(\.0), [b.id], "reported at once, from inside setPeers")
        XCTAssertEqual(a.recorder.disconnected.first?.1, .removed)
        XCTAssertEqual(a.transport.peerIDs, [])
        XCTAssertNil(a.transport.status(of: b.id))
        XCTAssertEqual(a.transport.send(type: 0x20, payload: [1], to: b.id), .droppedNotConnected, "no trap")
        // The other side saw the link close; its redials are refused now (this node admits no strangers).
        XCTAssertTrue(runLoop(loop) { !b.recorder.disconnected.isEmpty })
        XCTAssertTrue(
            runLoop(loop) { a.recorder.authFailures.contains { $0.1 == .unknownPeer(claimed: "n2") } },
            "\(a.recorder.authFailures)")
        XCTAssertFalse(a.transport.isConnected(to: b.id))
        XCTAssertEqual(a.recorder.connected, [b.id], "never connected again")
    }

    func testAnAddressChangeClosesTheLinkAndRedialsTheNewAddress() throws {
        let a = try node("n1")
        let oldB = try node("n2", peers: [a.endpoint])
        let newB = try node("n2", peers: [a.endpoint], start: false)  // listens only: it can be reached by a dial
        a.transport.setPeers([oldB.endpoint])
        XCTAssertTrue(runLoop(loop) { a.transport.isConnected(to: oldB.id) })
        XCTAssertEqual(a.transport.status(of: oldB.id)?.address, oldB.endpoint.address)
        a.transport.setPeers([newB.endpoint])
        oldB.transport.stop()
        XCTAssertEqual(a.recorder.disconnected.count, 1)
        XCTAssertEqual(a.recorder.disconnected.first?.1, .addressChanged)
        XCTAssertEqual(a.transport.status(of: newB.id)?.address, newB.endpoint.address)
        XCTAssertTrue(runLoop(loop) { a.transport.isConnected(to: newB.id) && newB.transport.isConnected(to: a.id) })
        XCTAssertEqual(a.transport.send(type: 0x22, payload: [7], to: newB.id), .queued)
        XCTAssertTrue(runLoop(loop) { !newB.recorder.frames.isEmpty })
        XCTAssertEqual(newB.recorder.frames.first, Recorder.Frame(from: a.id, type: 0x22, payload: [7]))
        XCTAssertTrue(oldB.recorder.frames.isEmpty)
    }

    func testUnchangedPeersKeepTheirLinksThroughSetPeers() throws {
        let a = try node("n1")
        let b = try node("n2")
        let c = try node("n3")
        a.transport.setPeers([a.endpoint, b.endpoint])
        b.transport.setPeers([a.endpoint, b.endpoint])
        XCTAssertTrue(runLoop(loop) { a.transport.isConnected(to: b.id) && b.transport.isConnected(to: a.id) })
        a.transport.setPeers([a.endpoint, b.endpoint, c.endpoint])
        c.transport.setPeers([a.endpoint, c.endpoint])
        XCTAssertTrue(runLoop(loop) { a.transport.isConnected(to: c.id) && c.transport.isConnected(to: a.id) })
        runLoop(loop, forMs: 100)
        XCTAssertTrue(a.recorder.disconnected.isEmpty && b.recorder.disconnected.isEmpty)
        XCTAssertEqual(a.recorder.connected.sorted(), [b.id, c.id])
        XCTAssertEqual(a.transport.status(of: b.id)?.reconnects, 0)
    }

    // MARK: accepted strangers

    func testAStrangerWithTheSecretIsKeptApartAndAnsweredBySend() throws {
        let member = try node("n1")
        let joiner = try node("joiner", peers: [member.endpoint])
        XCTAssertTrue(runLoop(loop) { member.transport.strangerIDs == [joiner.id] })
        XCTAssertTrue(runLoop(loop) { joiner.transport.isConnected(to: member.id) })
        XCTAssertFalse(member.transport.isConnected(to: joiner.id))
        XCTAssertEqual(member.transport.peerIDs, [])
        XCTAssertTrue(member.recorder.connected.isEmpty, "a stranger is no peer")
        XCTAssertEqual(joiner.transport.send(type: 0x30, payload: [1, 2, 3], to: member.id), .queued)
        XCTAssertTrue(runLoop(loop) { !member.recorder.strangerFrames.isEmpty })
        XCTAssertEqual(
            member.recorder.strangerFrames, [Recorder.Frame(from: joiner.id, type: 0x30, payload: [1, 2, 3])])
        XCTAssertTrue(member.recorder.frames.isEmpty, "nothing from a stranger reaches the peer callback")
        XCTAssertEqual(member.transport.send(type: 0x31, payload: [9], to: joiner.id), .queued)
        XCTAssertTrue(runLoop(loop) { !joiner.recorder.frames.isEmpty })
        XCTAssertEqual(joiner.recorder.frames, [Recorder.Frame(from: member.id, type: 0x31, payload: [9])])
        XCTAssertEqual(member.transport.send(type: 0x31, payload: [9], to: NodeID("nobody")), .droppedNotConnected)
    }

    func testAStrangerWithAWrongSecretIsRefused() throws {
        let member = try node("n1")
        let joiner = try node("joiner", peers: [member.endpoint], secret: "wrong")
        XCTAssertTrue(
            runLoop(loop) {
                member.recorder.authFailures.contains { $0.1 == .badProof(claimed: "joiner") }
            }, "\(member.recorder.authFailures)")
        XCTAssertEqual(member.transport.strangerIDs, [])
        XCTAssertFalse(joiner.transport.isConnected(to: member.id))
        XCTAssertTrue(member.recorder.strangerFrames.isEmpty)
    }

    func testWithoutStrangersAnUnknownIDIsRefusedAsBefore() throws {
        let member = try node("n1", options: fastOptions(maxStrangers: 0))
        let joiner = try node("joiner", peers: [member.endpoint])
        XCTAssertTrue(
            runLoop(loop) { member.recorder.authFailures.contains { $0.1 == .unknownPeer(claimed: "joiner") } },
            "\(member.recorder.authFailures)")
        XCTAssertEqual(member.transport.strangerIDs, [])
        XCTAssertTrue(joiner.recorder.connected.isEmpty)
        // A stranger dial is refused by the member too, and reported once to the dialler.
        let asker = try node("asker")
        asker.transport.dialStranger(host: "127.0.0.1", port: member.transport.listenPort)
        XCTAssertTrue(runLoop(loop) { !asker.recorder.strangerDialFailures.isEmpty })
        XCTAssertTrue(
            isFailure(asker.recorder.strangerDialFailures.first?.2) {
                if case .refusedByPeer = $0 { return true } else { return false }
            }, "\(asker.recorder.strangerDialFailures)")
        XCTAssertEqual(asker.transport.strangerIDs, [])
    }

    func testStrangersAreBoundedAndTheOldestIsEvicted() throws {
        var options = fastOptions(maxStrangers: 2)
        options.strangerIdleTimeoutMs = 60_000
        let member = try node("n1", options: options)
        var askers: [Node] = []
        for index in 1...3 {
            let asker = try node("j\(index)")
            asker.transport.dialStranger(host: "127.0.0.1", port: member.transport.listenPort)
            XCTAssertTrue(runLoop(loop) { member.transport.strangerIDs.contains(asker.id) }, "j\(index)")
            askers.append(asker)
        }
        XCTAssertEqual(member.transport.strangerIDs, [NodeID("j2"), NodeID("j3")])
        // The evicted stranger's side sees its link close; the others keep theirs.
        XCTAssertTrue(runLoop(loop) { askers[0].transport.strangerIDs.isEmpty })
        runLoop(loop, forMs: 100)
        XCTAssertEqual(askers[1].transport.strangerIDs, [member.id])
        XCTAssertEqual(askers[2].transport.strangerIDs, [member.id])
        XCTAssertEqual(member.transport.strangerIDs, [NodeID("j2"), NodeID("j3")], "no redial of a stranger")
    }

    func testAStrangerWithoutFramesIsClosedAfterTheIdleTimeoutButFramesKeepItOpen() throws {
        var options = fastOptions()
        options.keepaliveIntervalMs = 40
        options.idleTimeoutMs = 150
        options.strangerIdleTimeoutMs = 300
        let member = try node("n1", options: options)
        let asker = try node("asker", options: options)
        asker.transport.dialStranger(host: "127.0.0.1", port: member.transport.listenPort)
        XCTAssertTrue(runLoop(loop) { member.transport.strangerIDs == [asker.id] })
        // Frames every 60 ms for three timeouts: the link stays.
        let chatter = Timer(loop: loop) { asker.transport.send(type: 0x40, payload: [1], to: member.id) }
        chatter.scheduleRepeating(everyMs: 60)
        runLoop(loop, forMs: 900)
        chatter.invalidate()
        XCTAssertEqual(member.transport.strangerIDs, [asker.id])
        XCTAssertGreaterThan(member.recorder.strangerFrames.count, 5)
        // Silence (keepalives still flow both ways): closed after the stranger timeout.
        let silentFrom = EventLoop.preciseNowMs()
        XCTAssertTrue(runLoop(loop) { member.transport.strangerIDs.isEmpty })
        XCTAssertGreaterThanOrEqual(EventLoop.preciseNowMs() - silentFrom, 200)
        XCTAssertTrue(runLoop(loop) { asker.transport.strangerIDs.isEmpty })
        XCTAssertTrue(member.recorder.disconnected.isEmpty, "a stranger's close is not a peer disconnect")
    }

    // MARK: dialStranger

    func testDialStrangerLearnsTheMembersRealIDAndFramesFlowBothWays() throws {
        let member = try node("n7")
        let asker = try node("asker")
        asker.transport.dialStranger(host: "127.0.0.1", port: member.transport.listenPort)
        XCTAssertTrue(runLoop(loop) { !asker.recorder.strangersConnected.isEmpty })
        XCTAssertEqual(asker.recorder.strangersConnected.first?.0, NodeID("n7"))
        XCTAssertEqual(asker.recorder.strangersConnected.first?.1, "127.0.0.1:\(member.transport.listenPort)")
        XCTAssertEqual(asker.transport.strangerIDs, [member.id])
        XCTAssertTrue(asker.recorder.connected.isEmpty)
        XCTAssertTrue(runLoop(loop) { member.transport.strangerIDs == [asker.id] })
        XCTAssertTrue(member.recorder.strangersConnected.isEmpty, "only a dial reports strangerDidConnect")
        XCTAssertEqual(asker.transport.send(type: 0x50, payload: [1], to: member.id), .queued)
        XCTAssertTrue(runLoop(loop) { !member.recorder.strangerFrames.isEmpty })
        XCTAssertEqual(member.transport.send(type: 0x51, payload: [2], to: asker.id), .queued)
        XCTAssertTrue(runLoop(loop) { !asker.recorder.strangerFrames.isEmpty })
        XCTAssertEqual(asker.recorder.strangerFrames, [Recorder.Frame(from: member.id, type: 0x51, payload: [2])])
        XCTAssertTrue(asker.recorder.frames.isEmpty && member.recorder.frames.isEmpty)
    }

    func testDialStrangerToAConfiguredPeerMakesAnOrdinaryPeerLink() throws {
        let member = try node("n1")
        // Not started: only the stranger dial can make the link.
        let asker = try node("n2", peers: [member.endpoint], start: false)
        asker.transport.dialStranger(host: "127.0.0.1", port: member.transport.listenPort)
        XCTAssertTrue(runLoop(loop) { asker.transport.isConnected(to: member.id) })
        XCTAssertEqual(asker.recorder.connected, [member.id])
        XCTAssertTrue(asker.recorder.strangersConnected.isEmpty)
        XCTAssertEqual(asker.transport.strangerIDs, [])
        XCTAssertEqual(asker.transport.send(type: 0x52, payload: [3], to: member.id), .queued)
        XCTAssertTrue(runLoop(loop) { !member.recorder.strangerFrames.isEmpty })
        XCTAssertEqual(member.recorder.strangerFrames.first?.from, asker.id)
    }

    func testAFailedStrangerDialIsReportedOnceAndNotRetried() throws {
        let closedPort = try freePort(loop)
        let asker = try node("asker")
        asker.transport.dialStranger(host: "127.0.0.1", port: closedPort)
        XCTAssertTrue(asker.recorder.strangerDialFailures.isEmpty, "never reported from inside the call")
        XCTAssertTrue(runLoop(loop) { !asker.recorder.strangerDialFailures.isEmpty })
        runLoop(loop, forMs: 200)
        XCTAssertEqual(asker.recorder.strangerDialFailures.count, 1)
        let failure = try XCTUnwrap(asker.recorder.strangerDialFailures.first)
        XCTAssertEqual(failure.0, "127.0.0.1")
        XCTAssertEqual(failure.1, closedPort)
        XCTAssertTrue(isFailure(failure.2) { if case .closed = $0 { return true } else { return false } }, "\(failure)")
        XCTAssertTrue(asker.recorder.authFailures.isEmpty)
    }

    func testSetPeersPromotesAnOpenStrangerLinkWithoutRedialling() throws {
        let member = try node("n1")
        let asker = try node("n2")
        asker.transport.dialStranger(host: "127.0.0.1", port: member.transport.listenPort)
        XCTAssertTrue(
            runLoop(loop) { member.transport.strangerIDs == [asker.id] && asker.transport.strangerIDs == [member.id] })
        member.transport.setPeers([member.endpoint, asker.endpoint])
        XCTAssertEqual(member.recorder.connected, [asker.id], "reported from inside setPeers")
        XCTAssertTrue(member.transport.isConnected(to: asker.id))
        XCTAssertEqual(member.transport.strangerIDs, [])
        XCTAssertEqual(member.transport.openLinkCount(to: asker.id), 1, "no dial was started")
        asker.transport.setPeers([member.endpoint, asker.endpoint])
        XCTAssertEqual(asker.recorder.connected, [member.id])
        XCTAssertEqual(asker.transport.openLinkCount(to: member.id), 1)
        XCTAssertEqual(asker.transport.send(type: 0x60, payload: [4], to: member.id), .queued)
        XCTAssertEqual(member.transport.send(type: 0x61, payload: [5], to: asker.id), .queued)
        XCTAssertTrue(runLoop(loop) { !member.recorder.frames.isEmpty && !asker.recorder.frames.isEmpty })
        XCTAssertEqual(member.recorder.frames, [Recorder.Frame(from: asker.id, type: 0x60, payload: [4])])
        XCTAssertEqual(asker.recorder.frames, [Recorder.Frame(from: member.id, type: 0x61, payload: [5])])
        XCTAssertTrue(member.recorder.strangerFrames.isEmpty && asker.recorder.strangerFrames.isEmpty)
        runLoop(loop, forMs: 150)
        XCTAssertTrue(member.recorder.disconnected.isEmpty && asker.recorder.disconnected.isEmpty)
        XCTAssertEqual(member.transport.duplicateLinksClosed + asker.transport.duplicateLinksClosed, 0)
        XCTAssertEqual(member.transport.pendingInboundCount + asker.transport.pendingInboundCount, 0)
    }

    // MARK: the handshake of a stranger dial

    func testAStrangerDialHandshakeAcceptsAnyIDAndBothProofsStillVerify() {
        var random = SeededGenerator(seed: 7)
        let secret = HandshakeAuth.secret(Array("s".utf8))
        var dialer = Handshake(
            selfID: NodeID("j"), incarnation: 3, auth: secret, role: .strangerDialer, knownPeers: [],
            nonce: random.bytes(32))
        var acceptor = Handshake(
            selfID: NodeID("n9"), incarnation: 4, auth: secret, role: .acceptor, knownPeers: [],
            nonce: random.bytes(32), admitsStrangers: true)
        let dialerAction = acceptor.helloPayload().withUnsafeBytes {
            dialer.onFrame(type: PeerProtocol.helloFrameType, payload: $0)
        }
        let acceptorAction = dialer.helloPayload().withUnsafeBytes {
            acceptor.onFrame(type: PeerProtocol.helloFrameType, payload: $0)
        }
        guard case .send(_, let dialerProof) = dialerAction, case .send(_, let acceptorProof) = acceptorAction else {
            return XCTFail("both sides send proofs: \(dialerAction) \(acceptorAction)")
        }
        // A proof made for the other role does not pass: the role is bound, so a stranger dial reflects nothing.
        var reflected = acceptor
        XCTAssertEqual(
            acceptorProof.withUnsafeBytes { reflected.onFrame(type: PeerProtocol.proofFrameType, payload: $0) },
            .refuse(.badProof(claimed: "j")))
        XCTAssertEqual(
            dialerProof.withUnsafeBytes { acceptor.onFrame(type: PeerProtocol.proofFrameType, payload: $0) },
            .established(PeerIdentity(id: NodeID("j"), incarnation: 3)))
        XCTAssertEqual(
            acceptorProof.withUnsafeBytes { dialer.onFrame(type: PeerProtocol.proofFrameType, payload: $0) },
            .established(PeerIdentity(id: NodeID("n9"), incarnation: 4)))
    }

    func testAStrangerMayNotClaimTheOwnIDOrAnEmptyOne() {
        XCTAssertFalse(Handshake.isWellFormedStrangerID("n1", selfID: NodeID("n1")))
        XCTAssertFalse(Handshake.isWellFormedStrangerID("", selfID: NodeID("n1")))
        XCTAssertFalse(Handshake.isWellFormedStrangerID("a\nb", selfID: NodeID("n1")))
        XCTAssertFalse(
            Handshake.isWellFormedStrangerID(String(repeating: "x", count: 256), selfID: NodeID("n1")))
        XCTAssertTrue(Handshake.isWellFormedStrangerID("joiner-1", selfID: NodeID("n1")))
        var random = SeededGenerator(seed: 8)
        var dialer = Handshake(
            selfID: NodeID("n1"), incarnation: 1, auth: .none, role: .strangerDialer, knownPeers: [],
            nonce: random.bytes(32))
        let itself = Handshake(
            selfID: NodeID("n1"), incarnation: 2, auth: .none, role: .acceptor, knownPeers: [],
            nonce: random.bytes(32), admitsStrangers: true)
        XCTAssertEqual(
            itself.helloPayload().withUnsafeBytes { dialer.onFrame(type: PeerProtocol.helloFrameType, payload: $0) },
            .refuse(.unknownPeer(claimed: "n1")), "a node that dials its own address does not keep the link")
    }
}

/// Strangers under mutual TLS: the certificate must name the id a stranger claims, as a peer's must.
final class DynamicPeersTLSTests: XCTestCase {
    private var loop: EventLoop!
    private var directory: URL!

    override func setUpWithError() throws {
        ignoreBrokenPipeSignals()
        loop = try EventLoop()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-join-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        loop = nil
        try? FileManager.default.removeItem(at: directory)
    }

    private func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    private func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        process.currentDirectoryURL = directory
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw XCTSkip("openssl \(arguments[0]) failed") }
    }

    /// A CA "ca" and, for each name, a leaf certificate whose only DNS name is that name.
    private func makeCertificates(_ names: [String]) throws {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try openssl(["req", "-x509"] + ec + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ca"])
        for name in names {
            try openssl(["req"] + ec + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name)"])
            try "subjectAltName=DNS:\(name)".write(toFile: path("\(name).ext"), atomically: true, encoding: .utf8)
            try openssl([
                "x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "\(name).pem", "-days", "2", "-extfile", "\(name).ext",
            ])
        }
    }

    private func node(_ id: String, certificate: String, peers: [PeerEndpoint] = []) throws -> Node {
        var options = PeerTransportOptions()
        options.reconnectBackoffMinMs = 20
        options.reconnectBackoffMaxMs = 200
        let transport = try PeerTransport(
            loop: loop, selfID: NodeID(id), peers: peers, listenHost: "127.0.0.1", listenPort: 0,
            auth: .tls(
                certPath: path("\(certificate).pem"), keyPath: path("\(certificate).key"), caPath: path("ca.pem")),
            options: options)
        let recorder = MembershipRecorder()
        transport.delegate = recorder
        transport.start()
        return Node(transport: transport, recorder: recorder)
    }

    func testAStrangerIsAdmittedOnlyUnderTheIDItsCertificateNames() throws {
        try makeCertificates(["n1", "joiner", "other"])
        let member = try node("n1", certificate: "n1")
        let joiner = try node("joiner", certificate: "joiner")
        joiner.transport.dialStranger(host: "127.0.0.1", port: member.transport.listenPort)
        XCTAssertTrue(
            runLoop(loop) {
                member.transport.strangerIDs == [joiner.id] && !joiner.recorder.strangersConnected.isEmpty
            },
            "\(member.recorder.authFailures) \(joiner.recorder.strangerDialFailures)")
        XCTAssertEqual(joiner.recorder.strangersConnected.first?.0, member.id)
        // A valid cluster certificate for "other", used by a process claiming to be "impostor".
        let impostor = try node("impostor", certificate: "other", peers: [member.endpoint])
        XCTAssertTrue(
            runLoop(loop) {
                member.recorder.authFailures.contains {
                    if case .certificateMismatch(claimed: "impostor", _) = $0.1 { true } else { false }
                }
            }, "\(member.recorder.authFailures)")
        XCTAssertEqual(member.transport.strangerIDs, [joiner.id])
        XCTAssertTrue(member.recorder.connected.isEmpty, "never a peer either")
        impostor.transport.stop()
    }
}
