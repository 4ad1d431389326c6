// Throughput figures, run only with TANDEM_TRANSPORT_BENCH=1 (they take seconds, and mean something only in release:
// `swift test -c release -Xswiftc -enable-testing --filter TransportBenchmarkTests`).

import Foundation
import TandemConsensus
import TandemNet
import XCTest

@testable import TandemTransport

final class TransportBenchmarkTests: XCTestCase {
    override func setUpWithError() throws {
        guard ProcessInfo.processInfo.environment["TANDEM_TRANSPORT_BENCH"] == "1" else {
            throw XCTSkip("set TANDEM_TRANSPORT_BENCH=1 to run the benchmarks")
        }
        ignoreBrokenPipeSignals()
    }

    func testCodecThroughputForBatchesOf64EntriesOf256Bytes() throws {
        var random = SeededGenerator(seed: 1)
        let entries = (1...64).map {
            Entry(
                term: 3, index: UInt64($0), kind: .normal, timeMs: 1,
                proposal: ProposalID(origin: NodeID("n2"), sequence: UInt64($0)),
                data: random.bytes(256))
        }
        let message = Message.appendEntries(
            AppendEntries(
                from: NodeID("n1"), to: NodeID("n2"), term: 3, prevLogIndex: 0, prevLogTerm: 0, entries: entries,
                leaderCommit: 0))
        let rounds = 20_000
        var bytes = 0
        let encodeStart = EventLoop.preciseNowMicros()
        for _ in 0..<rounds { bytes += ConsensusCodec.encode(message).payload.count }
        let encodeMicros = EventLoop.preciseNowMicros() - encodeStart
        let (type, payload) = ConsensusCodec.encode(message)
        let decodeStart = EventLoop.preciseNowMicros()
        for _ in 0..<rounds { _ = try ConsensusCodec.decode(type: type, payload: payload) }
        let decodeMicros = EventLoop.preciseNowMicros() - decodeStart
        print(
            String(
                format:
                    "BENCH codec: encode %.0f msgs/s (%.0f MB/s), decode %.0f msgs/s (%.0f MB/s), %d bytes per message",
                Double(rounds) / (Double(encodeMicros) / 1e6), Double(bytes) / Double(encodeMicros),
                Double(rounds) / (Double(decodeMicros) / 1e6), Double(bytes) / Double(decodeMicros), payload.count))
    }

    private func measureFrames(auth: PeerAuth, payloadBytes: Int, frames total: Int) throws {
        let loop = try EventLoop()
        let ports = try (0..<2).map { _ in try freePort(loop) }
        let endpoints = (0..<2).map { PeerEndpoint(id: NodeID("n\($0 + 1)"), host: "127.0.0.1", port: ports[$0]) }
        var options = PeerTransportOptions()
        options.outputHighWaterMarkBytes = 1 << 20
        let nodes = try (0..<2).map { index -> TestNode in
            let transport = try PeerTransport(
                loop: loop, selfID: endpoints[index].id, peers: endpoints, listenHost: "127.0.0.1",
                listenPort: ports[index], auth: auth, options: options)
            let recorder = Recorder()
            transport.delegate = recorder
            transport.start()
            return TestNode(transport: transport, recorder: recorder)
        }
        final class Counter: PeerTransportDelegate {
            var frames = 0
            func peerTransport(
                _ t: PeerTransport, didReceiveFrameFrom peer: NodeID, type: UInt8, payload: UnsafeRawBufferPointer
            ) { frames += 1 }
            func peerTransport(_ t: PeerTransport, peerDidConnect peer: NodeID) {}
            func peerTransport(_ t: PeerTransport, peerDidDisconnect peer: NodeID, reason: LinkFailure) {}
            func peerTransport(_ t: PeerTransport, authenticationFailedFrom remoteAddress: String, reason: LinkFailure)
            {}
        }
        XCTAssertTrue(
            runLoop(loop) {
                nodes[0].transport.isConnected(to: NodeID("n2")) && nodes[1].transport.isConnected(to: NodeID("n1"))
            })
        let counter = Counter()
        nodes[1].transport.delegate = counter
        let payload = [UInt8](repeating: 7, count: payloadBytes)
        var sent = 0
        let pacer = Timer(loop: loop) {
            // Send until the peer's buffer is above its high-water mark: the flow control a caller would apply.
            while sent < total {
                sent += 1
                if nodes[0].transport.send(type: 0x10, payload: payload, to: NodeID("n2")) == .queuedAboveHighWaterMark
                {
                    break
                }
            }
        }
        pacer.scheduleRepeating(everyMs: 1)
        let start = EventLoop.preciseNowMicros()
        XCTAssertTrue(runLoop(loop, timeoutMs: 60_000) { counter.frames == total })
        let micros = EventLoop.preciseNowMicros() - start
        pacer.invalidate()
        print(
            String(
                format: "BENCH transport %@ %d-byte frames: %.0f frames/s, %.0f MB/s (both ends on one loop thread)",
                "\(auth)".prefix(6).description, payloadBytes, Double(total) / (Double(micros) / 1e6),
                Double(total * (payloadBytes + 5)) / Double(micros)))
    }

    /// What sealing and opening cost per frame, without sockets: the CPU time cluster-secret mode adds.
    func testSealAndOpenCostPerFrame() throws {
        let key = [UInt8](repeating: 9, count: AES256GCM.keyBytes)
        for payloadBytes in [128, 16 * 1024] {
            let sealer = FrameSealer(key: key)
            let opener = FrameOpener(key: key)
            let payload = [UInt8](repeating: 7, count: payloadBytes)
            var wire: [UInt8] = []
            wire.reserveCapacity(payloadBytes + 64)
            let rounds = payloadBytes > 1024 ? 20_000 : 500_000
            var opened = 0
            let start = EventLoop.preciseNowMicros()
            for _ in 0..<rounds {
                wire.removeAll(keepingCapacity: true)
                _ = payload.withUnsafeBytes { bytes in sealer.seal(type: 0x10, payload: bytes) { wire += $0 } }
                wire.withUnsafeBytes { bytes in
                    let body = UnsafeRawBufferPointer(rebasing: bytes[FrameParser.headerBytes...])
                    if case .opened = opener.open(frameType: bytes[4], payload: body) { opened += 1 }
                }
            }
            let micros = EventLoop.preciseNowMicros() - start
            XCTAssertEqual(opened, rounds)
            print(
                String(
                    format: "BENCH seal+open %d-byte frames: %.0f ns per frame (%.0f MB/s)", payloadBytes,
                    Double(micros) * 1000 / Double(rounds), Double(rounds * payloadBytes) / Double(micros)))
        }
    }

    func testFrameThroughputBetweenTwoTransportsOnLoopback() throws {
        try measureFrames(auth: .secret("s"), payloadBytes: 128, frames: 300_000)
        try measureFrames(auth: .secret("s"), payloadBytes: 16 * 1024, frames: 20_000)
        try measureFrames(auth: .none, payloadBytes: 128, frames: 300_000)
        // The same sizes without authentication: on a shared machine, the ratio within one run is what compares.
        try measureFrames(auth: .none, payloadBytes: 16 * 1024, frames: 20_000)
    }
}
