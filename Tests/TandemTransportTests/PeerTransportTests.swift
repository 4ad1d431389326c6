// Real sockets on 127.0.0.1: transports dial, authenticate, exchange frames, race, restart and refuse.

import Glibc
import TandemConsensus
import TandemNet
import XCTest

@testable import TandemTransport

final class PeerTransportTests: XCTestCase {
    private var loop: EventLoop!

    override func setUpWithError() throws {
        ignoreBrokenPipeSignals()
        loop = try EventLoop()
    }

    override func tearDown() {
        loop = nil
    }

    private func fastOptions() -> PeerTransportOptions {
        var options = PeerTransportOptions()
        options.reconnectBackoffMinMs = 10
        options.reconnectBackoffMaxMs = 100
        options.handshakeTimeoutMs = 2000
        return options
    }

    /// Builds nodes n1...nk on free ports, each configured with all the others (and itself, as TANDEM_PEERS does).
    private func cluster(
        _ count: Int, auth: (Int) -> PeerAuth = { _ in .secret("cluster-secret") },
        options: (Int) -> PeerTransportOptions? = { _ in nil }, start: Bool = true
    ) throws -> [TestNode] {
        let ports = try (0..<count).map { _ in try freePort(loop) }
        let endpoints = (0..<count).map { PeerEndpoint(id: NodeID("n\($0 + 1)"), host: "127.0.0.1", port: ports[$0]) }
        return try (0..<count).map { index in
            try makeNode(
                index, endpoints: endpoints, auth: auth(index), options: options(index) ?? fastOptions(), start: start)
        }
    }

    private func makeNode(
        _ index: Int, endpoints: [PeerEndpoint], auth: PeerAuth, options: PeerTransportOptions, start: Bool = true
    ) throws -> TestNode {
        let endpoint = endpoints[index]
        let transport = try PeerTransport(
            loop: loop, selfID: endpoint.id, peers: endpoints, listenHost: "127.0.0.1", listenPort: endpoint.port,
            auth: auth, options: options)
        let recorder = Recorder()
        transport.delegate = recorder
        if start { transport.start() }
        return TestNode(transport: transport, recorder: recorder)
    }

    private func allConnected(_ nodes: [TestNode]) -> Bool {
        nodes.allSatisfy { node in node.transport.peerIDs.allSatisfy { node.transport.isConnected(to: $0) } }
    }

    func testTwoTransportsExchangeFramesInBothDirections() throws {
        let nodes = try cluster(2)
        XCTAssertTrue(runLoop(loop) { self.allConnected(nodes) })
        XCTAssertEqual(nodes[0].transport.send(type: 0x20, payload: [1, 2, 3], to: NodeID("n2")), .queued)
        XCTAssertEqual(
            nodes[1].transport.send(type: 0x21, payload: Array(repeating: 9, count: 100_000), to: NodeID("n1")), .queued
        )
        XCTAssertTrue(runLoop(loop) { !nodes[0].recorder.frames.isEmpty && !nodes[1].recorder.frames.isEmpty })
        XCTAssertEqual(nodes[1].recorder.frames, [Recorder.Frame(from: NodeID("n1"), type: 0x20, payload: [1, 2, 3])])
        XCTAssertEqual(
            nodes[0].recorder.frames,
            [Recorder.Frame(from: NodeID("n2"), type: 0x21, payload: Array(repeating: 9, count: 100_000))])
        let status = try XCTUnwrap(nodes[1].transport.status(of: NodeID("n1")))
        XCTAssertTrue(status.connected)
        XCTAssertEqual(status.framesIn, 1)
        XCTAssertEqual(status.bytesIn, 8)
        XCTAssertEqual(status.framesOut, 1)
        XCTAssertNotNil(status.lastFrameReceivedMs)
        XCTAssertTrue(nodes.allSatisfy { $0.recorder.authFailures.isEmpty && $0.recorder.disconnected.isEmpty })
    }

    func testThreeTransportsFormAFullMeshAndFramesArriveInOrder() throws {
        let nodes = try cluster(3)
        XCTAssertTrue(runLoop(loop) { self.allConnected(nodes) })
        for (index, node) in nodes.enumerated() {
            for peer in node.transport.peerIDs {
                for sequence in 0..<50 {
                    node.transport.send(type: 0x30, payload: [UInt8(index), UInt8(sequence)], to: peer)
                }
            }
        }
        XCTAssertTrue(runLoop(loop) { nodes.allSatisfy { $0.recorder.frames.count == 100 } })
        for node in nodes {
            for peer in node.transport.peerIDs {
                let fromPeer = node.recorder.frames.filter { $0.from == peer }.map { Int($0.payload[1]) }
                XCTAssertEqual(fromPeer, Array(0..<50), "frames from \(peer) arrive once each, in order")
            }
            XCTAssertEqual(node.recorder.connected.count, 2)
        }
    }

    func testAReplyFromTheFrameCallbackIsDelivered() throws {
        let nodes = try cluster(2)
        nodes[1].recorder.onFrame = { frame in
            nodes[1].transport.send(type: 0x41, payload: frame.payload.reversed(), to: frame.from)
        }
        XCTAssertTrue(runLoop(loop) { self.allConnected(nodes) })
        nodes[0].transport.send(type: 0x40, payload: [1, 2, 3], to: NodeID("n2"))
        XCTAssertTrue(runLoop(loop) { !nodes[0].recorder.frames.isEmpty })
        XCTAssertEqual(nodes[0].recorder.frames.first?.payload, [3, 2, 1])
    }

    func testSimultaneousDialsLeaveExactlyOneConnectionPerPair() throws {
        // Both nodes start in the same loop turn, so both dial before either accepts: the race every time.
        var duplicatesClosed: UInt64 = 0
        for round in 0..<5 {
            let nodes = try cluster(3, start: false)
            nodes.forEach { $0.transport.start() }
            XCTAssertTrue(runLoop(loop) { self.allConnected(nodes) }, "round \(round)")
            runLoop(loop, forMs: 150)
            for node in nodes {
                for peer in node.transport.peerIDs {
                    XCTAssertEqual(
                        node.transport.openLinkCount(to: peer), 1, "round \(round): \(node.transport.selfID)->\(peer)")
                    XCTAssertTrue(node.transport.isConnected(to: peer))
                }
                XCTAssertEqual(node.transport.pendingInboundCount, 0)
            }
            // The kept connection carries traffic both ways.
            nodes[2].transport.send(type: 0x50, payload: [7], to: NodeID("n1"))
            nodes[0].transport.send(type: 0x50, payload: [8], to: NodeID("n3"))
            XCTAssertTrue(
                runLoop(loop) { !nodes[0].recorder.frames.isEmpty && !nodes[2].recorder.frames.isEmpty },
                "round \(round)")
            let disconnects = nodes.map { $0.recorder.disconnected }
            XCTAssertTrue(
                disconnects.allSatisfy { $0.isEmpty },
                "round \(round): the swap is visible to the delegate: \(disconnects)")
            duplicatesClosed += nodes.reduce(0) { $0 + $1.transport.duplicateLinksClosed }
            nodes.forEach { $0.transport.stop() }
        }
        XCTAssertGreaterThan(duplicatesClosed, 0, "the race happened (both sides completed a link) and was resolved")
    }

    func testARestartedPeerOnTheSamePortIsReconnectedTo() throws {
        let ports = try (0..<2).map { _ in try freePort(loop) }
        let endpoints = [
            PeerEndpoint(id: NodeID("n1"), host: "127.0.0.1", port: ports[0]),
            PeerEndpoint(id: NodeID("n2"), host: "localhost", port: ports[1]),
        ]
        let first = try makeNode(0, endpoints: endpoints, auth: .secret("s"), options: fastOptions())
        var second: TestNode? = try makeNode(1, endpoints: endpoints, auth: .secret("s"), options: fastOptions())
        XCTAssertTrue(
            runLoop(loop) {
                first.transport.isConnected(to: NodeID("n2")) && second!.transport.isConnected(to: NodeID("n1"))
            })
        second = nil  // deinit closes the listener and every link
        XCTAssertTrue(runLoop(loop) { !first.recorder.disconnected.isEmpty })
        XCTAssertEqual(first.recorder.disconnected.first?.0, NodeID("n2"))
        XCTAssertEqual(first.transport.send(type: 0x60, payload: [1], to: NodeID("n2")), .droppedNotConnected)
        runLoop(loop, forMs: 100)  // a few refused redials, with backoff
        let restarted = try makeNode(1, endpoints: endpoints, auth: .secret("s"), options: fastOptions())
        XCTAssertTrue(
            runLoop(loop) {
                first.transport.isConnected(to: NodeID("n2")) && restarted.transport.isConnected(to: NodeID("n1"))
            })
        first.transport.send(type: 0x60, payload: [2], to: NodeID("n2"))
        XCTAssertTrue(runLoop(loop) { !restarted.recorder.frames.isEmpty })
        XCTAssertEqual(restarted.recorder.frames.first?.payload, [2])
        let status = try XCTUnwrap(first.transport.status(of: NodeID("n2")))
        XCTAssertEqual(status.reconnects, 1)
        XCTAssertEqual(status.framesDropped, 1)
        XCTAssertEqual(status.address, "localhost:\(ports[1])")
    }

    func testAWrongSecretIsRefusedOnBothSidesWithTheAuthFailureCallback() throws {
        let nodes = try cluster(2, auth: { $0 == 0 ? .secret("right") : .secret("wrong") })
        XCTAssertTrue(runLoop(loop) { nodes.allSatisfy { !$0.recorder.authFailures.isEmpty } })
        runLoop(loop, forMs: 100)
        for node in nodes {
            XCTAssertTrue(node.recorder.connected.isEmpty, "never accepted")
            XCTAssertFalse(node.transport.isConnected(to: node.transport.peerIDs[0]))
            XCTAssertTrue(
                node.recorder.authFailures.contains { if case .badProof = $0.1 { return true } else { return false } },
                "\(node.recorder.authFailures)")
            XCTAssertTrue(node.recorder.authFailures.allSatisfy { $0.0 == "127.0.0.1" })
        }
        XCTAssertEqual(nodes[0].transport.send(type: 0x10, payload: [1], to: NodeID("n2")), .droppedNotConnected)
    }

    func testAnUnknownNodeIDIsRefused() throws {
        let ports = try (0..<2).map { _ in try freePort(loop) }
        let n1 = PeerEndpoint(id: NodeID("n1"), host: "127.0.0.1", port: ports[0])
        let n2 = PeerEndpoint(id: NodeID("n2"), host: "127.0.0.1", port: ports[1])
        let intruderEndpoint = PeerEndpoint(id: NodeID("intruder"), host: "127.0.0.1", port: ports[1])
        var noStrangers = fastOptions()
        noStrangers.maxStrangers = 0  // with strangers admitted, "intruder" would be kept apart as one
        let good = try makeNode(0, endpoints: [n1, n2], auth: .secret("s"), options: noStrangers)
        let intruder = try makeNode(1, endpoints: [n1, intruderEndpoint], auth: .secret("s"), options: fastOptions())
        XCTAssertTrue(
            runLoop(loop) {
                good.recorder.authFailures.contains { $0.1 == .unknownPeer(claimed: "intruder") }
                    && good.recorder.authFailures.contains {
                        $0.1 == .unexpectedPeer(expected: NodeID("n2"), claimed: "intruder")
                    }
            }, "\(good.recorder.authFailures)")
        XCTAssertTrue(good.recorder.connected.isEmpty)
        XCTAssertTrue(intruder.recorder.connected.isEmpty)
    }

    func testAnOversizedFrameClosesThatConnectionWithAReason() throws {
        var small = fastOptions()
        small.maxFramePayloadBytes = 64 * 1024
        var large = fastOptions()
        large.maxFramePayloadBytes = 1 << 20
        let nodes = try cluster(2, options: { $0 == 0 ? large : small })
        XCTAssertTrue(runLoop(loop) { self.allConnected(nodes) })
        nodes[0].transport.send(type: 0x70, payload: Array(repeating: 1, count: 64 * 1024 + 1), to: NodeID("n2"))
        XCTAssertTrue(runLoop(loop) { !nodes[1].recorder.disconnected.isEmpty })
        // The limit applies to the payload; the frame on the wire is larger by what sealing adds (secret mode).
        let overhead = PeerProtocol.sealedFrameOverheadBytes
        XCTAssertEqual(
            nodes[1].recorder.disconnected.first?.1,
            .frame(
                .frameTooLarge(payloadBytes: UInt32(64 * 1024 + 1 + overhead), maxPayloadBytes: 64 * 1024 + overhead)))
        XCTAssertTrue(nodes[1].recorder.frames.isEmpty, "the oversized frame is never delivered")
        // The link comes back (Raft would then send smaller batches).
        XCTAssertTrue(runLoop(loop) { self.allConnected(nodes) })
        nodes[0].transport.send(type: 0x70, payload: [5], to: NodeID("n2"))
        XCTAssertTrue(runLoop(loop) { !nodes[1].recorder.frames.isEmpty })
    }

    func testGarbageOnThePeerPortIsRefusedAndReported() throws {
        let nodes = try cluster(1)
        final class Silent: ConnectionDelegate {
            var closed = false
            func connectionHasInput(_ connection: Connection) { connection.consumeInput { $0.count } }
            func connectionDidClose(_ connection: Connection, reason: CloseReason) { closed = true }
        }
        let client = Silent()
        let connection = try XCTUnwrap(
            Connection.connect(loop: loop, host: "127.0.0.1", port: nodes[0].transport.listenPort, delegate: client))
        connection.enableReading()
        connection.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertTrue(runLoop(loop) { client.closed && !nodes[0].recorder.authFailures.isEmpty })
        guard
            case .frame(.frameTooLarge(_, PeerProtocol.handshakeMaxPayloadBytes))? = nodes[0].recorder.authFailures
                .first?.1
                ?? nodes[0].recorder.disconnected.first?.1
        else {
            return XCTFail("an HTTP request reads as a huge frame header: \(nodes[0].recorder.authFailures)")
        }
    }

    func testSendReportsTheHighWaterMarkAndDropsAtTheHardLimit() throws {
        var options = fastOptions()
        options.outputHighWaterMarkBytes = 100_000
        options.outputHardLimitBytes = 300_000
        let nodes = try cluster(2, options: { _ in options })
        XCTAssertTrue(runLoop(loop) { self.allConnected(nodes) })
        let payload = [UInt8](repeating: 0, count: 60_000)
        // No loop turn runs between these sends, so the output buffer only grows.
        let outcomes = (0..<8).map { _ in nodes[0].transport.send(type: 0x10, payload: payload, to: NodeID("n2")) }
        XCTAssertEqual(outcomes[0], .queued)
        XCTAssertEqual(outcomes[2], .queuedAboveHighWaterMark)
        XCTAssertEqual(outcomes.last, .droppedOutputFull)
        let queued = outcomes.filter(\.isQueued).count
        XCTAssertTrue(runLoop(loop) { nodes[1].recorder.frames.count == queued })
        XCTAssertEqual(nodes[0].transport.status(of: NodeID("n2"))?.framesDropped, UInt64(8 - queued))
    }

    func testAFrameAboveTheSendersOwnLimitIsDroppedNotSent() throws {
        var options = fastOptions()
        options.maxFramePayloadBytes = 2048
        let nodes = try cluster(2, options: { _ in options })
        XCTAssertTrue(runLoop(loop) { self.allConnected(nodes) })
        XCTAssertEqual(
            nodes[0].transport.send(type: 0x10, payload: [UInt8](repeating: 0, count: 2049), to: NodeID("n2")),
            .droppedTooLarge)
        XCTAssertEqual(
            nodes[0].transport.send(type: 0x10, payload: [UInt8](repeating: 0, count: 2048), to: NodeID("n2")), .queued)
        XCTAssertTrue(runLoop(loop) { nodes[1].recorder.frames.count == 1 })
        XCTAssertTrue(self.allConnected(nodes), "the link survives")
        XCTAssertEqual(nodes[0].transport.status(of: NodeID("n2"))?.framesDropped, 1)
        XCTAssertEqual(nodes[0].transport.status(of: NodeID("n2"))?.framesDroppedTooLarge, 1, "counted by reason")
        XCTAssertEqual(
            nodes[0].recorder.dropped,
            [.init(to: NodeID("n2"), type: 0x10, payloadBytes: 2049, outcome: .droppedTooLarge)],
            "the drop is reported to the delegate, which logs it")
    }

    func testEveryDroppedFrameIsReportedToTheDelegate() throws {
        var options = fastOptions()
        options.outputHighWaterMarkBytes = 100_000
        options.outputHardLimitBytes = 100_000
        let nodes = try cluster(2, options: { _ in options })
        XCTAssertTrue(runLoop(loop) { self.allConnected(nodes) })
        let payload = [UInt8](repeating: 0, count: 60_000)
        let outcomes = (0..<3).map { _ in nodes[0].transport.send(type: 0x10, payload: payload, to: NodeID("n2")) }
        XCTAssertEqual(outcomes.last, .droppedOutputFull)
        XCTAssertEqual(nodes[0].recorder.dropped.map(\.outcome), [.droppedOutputFull])
        XCTAssertEqual(nodes[0].recorder.dropped.first?.payloadBytes, 60_000)
        let status = try XCTUnwrap(nodes[0].transport.status(of: NodeID("n2")))
        XCTAssertEqual(status.framesDropped, 1)
        XCTAssertEqual(status.framesDroppedTooLarge, 0)
    }

    func testConsensusMessagesTravelThroughTheCodec() throws {
        let nodes = try cluster(2, auth: { _ in .none })
        XCTAssertTrue(runLoop(loop) { self.allConnected(nodes) })
        let message = Message.heartbeat(
            Heartbeat(from: NodeID("n1"), to: NodeID("n2"), term: 3, commitIndex: 9, round: 4))
        XCTAssertEqual(nodes[0].transport.send(message), .queued)
        XCTAssertTrue(runLoop(loop) { !nodes[1].recorder.frames.isEmpty })
        let frame = nodes[1].recorder.frames[0]
        XCTAssertEqual(try ConsensusCodec.decode(type: frame.type, payload: frame.payload), message)
    }

    func testIdleLinksStayUpThroughKeepalives() throws {
        var options = fastOptions()
        options.keepaliveIntervalMs = 40
        options.idleTimeoutMs = 150
        let nodes = try cluster(2, options: { _ in options })
        XCTAssertTrue(runLoop(loop) { self.allConnected(nodes) })
        runLoop(loop, forMs: 600)  // four idle timeouts without a single application frame
        XCTAssertTrue(self.allConnected(nodes))
        XCTAssertTrue(nodes.allSatisfy { $0.recorder.disconnected.isEmpty && $0.recorder.frames.isEmpty })
    }

    func testAPeerThatFallsSilentIsDisconnectedAfterTheIdleTimeout() throws {
        var options = fastOptions()
        options.keepaliveIntervalMs = 40
        options.idleTimeoutMs = 200
        let ports = try (0..<2).map { _ in try freePort(loop) }
        let endpoints = [
            PeerEndpoint(id: NodeID("n1"), host: "127.0.0.1", port: ports[0]),
            PeerEndpoint(id: NodeID("n2"), host: "127.0.0.1", port: ports[1]),
        ]  // nobody listens there
        let node = try makeNode(0, endpoints: endpoints, auth: .none, options: options)
        // A fake n2 that says hello and then nothing ever again (a half-open connection looks the same).
        final class Mute: ConnectionDelegate {
            func connectionHasInput(_ connection: Connection) { connection.consumeInput { $0.count } }
            func connectionDidClose(_ connection: Connection, reason: CloseReason) {}
        }
        let mute = Mute()
        let connection = try XCTUnwrap(
            Connection.connect(loop: loop, host: "127.0.0.1", port: ports[0], delegate: mute))
        let hello = Handshake(
            selfID: NodeID("n2"), incarnation: 1, auth: .none, role: .dialer(expected: NodeID("n1")),
            knownPeers: [NodeID("n1")], nonce: [UInt8](repeating: 1, count: 32)
        ).helloPayload()
        connection.write(FrameParser.header(type: PeerProtocol.helloFrameType, payloadBytes: hello.count) + hello)
        connection.enableReading()
        XCTAssertTrue(runLoop(loop) { node.transport.isConnected(to: NodeID("n2")) })
        let connectedAt = EventLoop.preciseNowMs()
        XCTAssertTrue(runLoop(loop) { !node.recorder.disconnected.isEmpty })
        XCTAssertGreaterThanOrEqual(EventLoop.preciseNowMs() - connectedAt, 150)
        guard case .idleTimeout? = node.recorder.disconnected.first?.1 else {
            return XCTFail("expected an idle timeout, got \(node.recorder.disconnected)")
        }
        connection.close()
    }

    func testAPeerPortThatNeverSaysHelloTimesOutAndIsRedialled() throws {
        var options = fastOptions()
        options.handshakeTimeoutMs = 100
        final class Acceptor: ListenerDelegate {
            var accepted: [Connection] = []
            func listener(_ listener: Listener, accepted connection: Connection) { accepted.append(connection) }
        }
        let acceptor = Acceptor()
        let silent = try Listener(loop: loop, host: "127.0.0.1", port: try freePort(loop))
        silent.delegate = acceptor
        let endpoints = [
            PeerEndpoint(id: NodeID("n1"), host: "127.0.0.1", port: try freePort(loop)),
            PeerEndpoint(id: NodeID("n2"), host: "127.0.0.1", port: silent.port),
        ]
        let node = try makeNode(0, endpoints: endpoints, auth: .secret("s"), options: options)
        XCTAssertTrue(runLoop(loop) { acceptor.accepted.count >= 2 }, "the dial is retried after the timeout")
        XCTAssertTrue(
            node.recorder.authFailures.contains { $0.1 == .handshakeTimeout }, "\(node.recorder.authFailures)")
        XCTAssertTrue(node.recorder.connected.isEmpty)
        acceptor.accepted.forEach { $0.close() }
    }

    /// Garbage from many strangers at once (seeded): every connection is refused, none is accepted as a peer, and
    /// the pending-handshake table drains back to empty.
    func testGarbageFromManyStrangersIsRefusedAndLeavesNothingBehind() throws {
        var options = fastOptions()
        options.handshakeTimeoutMs = 200
        options.maxPendingInboundLinks = 16
        let nodes = try cluster(1, options: { _ in options })
        final class Stranger: ConnectionDelegate {
            var closed = false
            func connectionHasInput(_ connection: Connection) { connection.consumeInput { $0.count } }
            func connectionDidClose(_ connection: Connection, reason: CloseReason) { closed = true }
        }
        var random = SeededGenerator(seed: 0xBAD)
        var strangers: [(Stranger, Connection)] = []
        for _ in 0..<40 {
            let stranger = Stranger()
            let connection = try XCTUnwrap(
                Connection.connect(
                    loop: loop, host: "127.0.0.1", port: nodes[0].transport.listenPort, delegate: stranger))
            connection.enableReading()
            var garbage = random.bytes(Int.random(in: 0...300, using: &random))
            if Bool.random(using: &random), garbage.count >= 5 {
                garbage.replaceSubrange(
                    0..<5, with: FrameParser.header(type: PeerProtocol.helloFrameType, payloadBytes: garbage.count - 5))
            }
            connection.write(garbage)
            strangers.append((stranger, connection))
        }
        XCTAssertTrue(
            runLoop(loop) { strangers.allSatisfy { $0.0.closed } && nodes[0].transport.pendingInboundCount == 0 })
        XCTAssertTrue(nodes[0].recorder.connected.isEmpty)
        XCTAssertGreaterThan(nodes[0].recorder.authFailures.count, 0)
    }

    /// A stranger's idle socket from `source` (any 127.x.y.z is local on Linux), connected with plain sockets.
    private func idleSocket(from source: String, to port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = port.bigEndian
        remote.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, connected == 0 else {
            close(fd)
            throw XCTSkip("cannot connect from \(source)")
        }
        return fd
    }

    /// True when the server closed `fd` (its hello may come first).
    private func isClosedByServer(_ fd: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if count == 0 { return true }
            if count < 0 { return errno == ECONNRESET }
        }
    }

    func testPendingLinksAreLimitedPerSourceAndAFullTableEvictsTheOldest() throws {
        var options = fastOptions()
        options.handshakeTimeoutMs = 10_000
        options.maxPendingInboundLinks = 8
        // n1 does not dial, so n2 can only get in through n1's pending table.
        let nodes = try cluster(2, options: { _ in options }, start: false)
        let port = nodes[0].transport.listenPort
        let perSource = PeerTransport.maxPendingInboundLinksPerSource
        XCTAssertLessThan(perSource, 8)
        var strangers: [Int32] = []
        defer { strangers.forEach { close($0) } }
        for _ in 0..<10 { strangers.append(try idleSocket(from: "127.0.0.2", to: port)) }
        runLoop(loop, forMs: 200)
        XCTAssertEqual(nodes[0].transport.pendingInboundCount, perSource, "one source holds at most its share")
        // The oldest links of that source made room for its newest.
        XCTAssertTrue(strangers.prefix(10 - perSource).allSatisfy(isClosedByServer))
        XCTAssertFalse(strangers.suffix(perSource).contains(where: isClosedByServer))
        // Other sources fill the table; a full table evicts its oldest link instead of refusing the new one.
        for source in ["127.0.0.3", "127.0.0.4", "127.0.0.5"] {
            for _ in 0..<2 { strangers.append(try idleSocket(from: source, to: port)) }
        }
        runLoop(loop, forMs: 200)
        XCTAssertEqual(nodes[0].transport.pendingInboundCount, 8)
        XCTAssertTrue(isClosedByServer(strangers[10 - perSource]), "the oldest pending link was evicted")
        XCTAssertFalse(strangers.suffix(6).contains(where: isClosedByServer))
        // A real peer still gets in while strangers hold the table.
        nodes[1].transport.start()
        XCTAssertTrue(
            runLoop(loop, timeoutMs: 3000) { nodes[0].transport.isConnected(to: NodeID("n2")) },
            "the real peer was kept out by idle strangers")
    }

    func testAnUnresolvableHostIsRetriedQuietly() throws {
        var options = fastOptions()
        options.handshakeTimeoutMs = 100
        let endpoints = [
            PeerEndpoint(id: NodeID("n1"), host: "127.0.0.1", port: try freePort(loop)),
            PeerEndpoint(id: NodeID("n2"), host: "no-such-node.invalid", port: 7400),
        ]
        let node = try makeNode(0, endpoints: endpoints, auth: .secret("s"), options: options)
        runLoop(loop, forMs: 400)
        XCTAssertFalse(node.transport.isConnected(to: NodeID("n2")))
        XCTAssertTrue(node.recorder.authFailures.isEmpty, "a failed lookup is not an authentication failure")
        XCTAssertEqual(node.transport.send(type: 0x10, payload: [1], to: NodeID("n2")), .droppedNotConnected)
    }
}

final class FreePortTests: XCTestCase {
    /// A cluster's ports are all chosen before any node binds one; two nodes given the same port made one of them
    /// fail to listen ("Address already in use") once in a CI run.
    func testPortsHandedOutInOneProcessAreNeverTheSame() throws {
        let loop = try EventLoop()
        let ports = try (0..<600).map { _ in try freePort(loop) }
        XCTAssertEqual(Set(ports).count, ports.count)
    }
}
