// Shared helpers of the transport tests: a seeded generator, a loop runner, a recording delegate, free ports.

import Foundation
import TandemConsensus
import TandemNet
import XCTest

@testable import TandemTransport

/// SplitMix64: a tiny seeded generator, so that a failing fuzz seed reproduces exactly.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension SeededGenerator {
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) } }
}

/// Runs `loop` until `condition` holds or `timeoutMs` passes; returns whether the condition held. The bound is
/// generous (20 s): the machines running the suite are shared and loaded (a TLS handshake pair once took longer
/// than the former 5 s), and a condition that holds returns at once, so only a failure waits it out.
@discardableResult
func runLoop(_ loop: EventLoop, timeoutMs: Int64 = 20_000, until condition: @escaping () -> Bool) -> Bool {
    let deadline = EventLoop.preciseNowMs() + timeoutMs
    var satisfied = condition()
    if satisfied { return true }
    let poll = Timer(loop: loop) {
        if condition() {
            satisfied = true
            loop.stop()
        } else if EventLoop.preciseNowMs() >= deadline {
            loop.stop()
        }
    }
    poll.scheduleRepeating(everyMs: 2)
    loop.run()
    poll.invalidate()
    return satisfied
}

/// Runs `loop` for `durationMs` regardless of what happens.
func runLoop(_ loop: EventLoop, forMs durationMs: Int64) {
    let deadline = EventLoop.preciseNowMs() + durationMs
    runLoop(loop, timeoutMs: durationMs + 1000) { EventLoop.preciseNowMs() >= deadline }
}

/// A port that was free a moment ago, for configuring peers before they start. It is drawn below the kernel's
/// ephemeral range (32768 and up), so that no outbound connection of the tests can take it in the meantime, and
/// never handed out twice in one process: a cluster's ports are all chosen before any node binds one, so two nodes
/// could otherwise be given the same port and one fail to listen.
func freePort(_ loop: EventLoop) throws -> UInt16 {
    for _ in 0..<500 {
        let candidate = UInt16.random(in: 20_000...32_000)
        guard !handedOutPorts.contains(candidate),
            let listener = try? Listener(loop: loop, host: "127.0.0.1", port: candidate)
        else { continue }
        listener.close()
        handedOutPorts.insert(candidate)
        return candidate
    }
    let listener = try Listener(loop: loop, host: "127.0.0.1", port: 0)
    defer { listener.close() }
    return listener.port
}

/// Ports `freePort` returned. The suite calls it from the test thread only; the lock keeps that an assumption
/// that cannot corrupt the set.
private let handedOutPorts = PortSet()

private final class PortSet: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var ports = Set<UInt16>()

    func contains(_ port: UInt16) -> Bool { lock.withLock { ports.contains(port) } }

    func insert(_ port: UInt16) {
        lock.withLock {
            if ports.count > 8_000 { ports.removeAll() }
            ports.insert(port)
        }
    }
}

/// Records every callback of a transport.
final class Recorder: PeerTransportDelegate {
    struct Frame: Equatable {
        var from: NodeID
        var type: UInt8
        var payload: [UInt8]
    }
    var frames: [Frame] = []
    var connected: [NodeID] = []
    var disconnected: [(NodeID, LinkFailure)] = []
    var authFailures: [(String, LinkFailure)] = []
    struct Drop: Equatable {
        var to: NodeID
        var type: UInt8
        var payloadBytes: Int
        var outcome: SendOutcome
    }
    var dropped: [Drop] = []
    /// Called for every frame, after it was recorded (to reply from the callback).
    var onFrame: ((Frame) -> Void)?

    func peerTransport(
        _ transport: PeerTransport, didReceiveFrameFrom peer: NodeID, type: UInt8, payload: UnsafeRawBufferPointer
    ) {
        let frame = Frame(from: peer, type: type, payload: [UInt8](payload))
        frames.append(frame)
        onFrame?(frame)
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
        _ transport: PeerTransport, droppedFrameTo peer: NodeID, type: UInt8, payloadBytes: Int, outcome: SendOutcome
    ) {
        dropped.append(Drop(to: peer, type: type, payloadBytes: payloadBytes, outcome: outcome))
    }
}

/// A node of a test cluster: its transport and what it heard.
struct TestNode {
    var transport: PeerTransport
    var recorder: Recorder
}
