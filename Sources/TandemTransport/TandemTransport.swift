// TandemTransport: authenticated, framed links between Tandem nodes, and the binary codec of consensus messages.
//
// It owns one TCP (or TLS) connection per pair of nodes: dialing, accepting, the hello/authentication handshake,
// sealing every later frame with a cluster secret (SealedFrames.swift), frame parsing with a size limit, the
// choice of one connection when both sides dial at once, and reconnection with jittered backoff. It must never
// interpret consensus (it moves opaque typed frames; `ConsensusCodec` is the only part that knows `Message`), never
// retransmit (a frame to a disconnected peer is dropped and counted: Raft retransmits), never block the loop
// thread, and never touch a C module (TandemNet is its only window on libevent and OpenSSL, AES-GCM included).
//
// Threading contract: a PeerTransport lives on one EventLoop. Create it, call every method, and receive every
// delegate callback on that loop's thread only. The codec and the parsers are plain values, usable anywhere.
//
// Ownership of connections: each `Connection` retains itself while open and holds its link object as delegate; the
// transport holds each link in exactly one place (`pendingInbound`, a peer's `dialing` or `active` slot, the
// stranger dials or the stranger links) and closes every link it holds when it stops or is deinitialized, so no callback outlives it.

import Glibc
import TandemConsensus
import TandemNet

/// Wire constants of the peer protocol.
public enum PeerProtocol {
    /// The first bytes of every hello payload: "TNDM".
    public static let magic: [UInt8] = [0x54, 0x4E, 0x44, 0x4D]
    /// The newest protocol version this build speaks. A peer with another version is refused with both numbers
    /// logged. 2: frames after a cluster-secret handshake are sealed (SealedFrames.swift), and proofs bind the
    /// incarnation; with TLS or no authentication nothing changed on the wire, so those modes still say 1 and a
    /// rolling upgrade of such a cluster mixes releases freely.
    public static let version: UInt16 = 2

    /// The version a hello announces, and requires of the peer's, in `auth` mode.
    public static func version(for auth: HandshakeAuth) -> UInt16 {
        if case .secret = auth { return 2 }
        return 1
    }
    /// Frame types below this are the transport's own (hello, proof, refusal, keepalive, sealed); applications use
    /// the rest.
    public static let firstApplicationFrameType: UInt8 = 0x10
    /// The payload limit while the handshake runs: a stranger cannot make us buffer a large frame.
    public static let handshakeMaxPayloadBytes = 1024

    static let helloFrameType: UInt8 = 0x01
    static let proofFrameType: UInt8 = 0x02
    static let refusalFrameType: UInt8 = 0x03
    static let keepaliveFrameType: UInt8 = 0x04
}

/// One configured peer. `host` may be a DNS name: it is resolved again on every (re)connect.
public struct PeerEndpoint: Equatable, Sendable {
    public var id: NodeID
    public var host: String
    public var port: UInt16
    public init(id: NodeID, host: String, port: UInt16) {
        self.id = id
        self.host = host
        self.port = port
    }
    /// "host:port", bracketing IPv6 literals, for /status and logs.
    public var address: String { host.contains(":") && !host.hasPrefix("[") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// How peers prove who they are.
public enum PeerAuth: Sendable {
    /// No authentication: any process that can reach the port and names a configured peer is accepted.
    /// The caller must log a loud warning at start.
    case none
    /// HMAC-SHA256 challenge on a shared cluster secret: each side proves knowledge of the secret over both sides'
    /// fresh nonces and its own node id. The secret itself never crosses the wire. Every frame after the handshake
    /// is encrypted and authenticated (AES-256-GCM, per-link per-direction keys, sequence-number nonces).
    case secret(String)
    /// Mutual TLS: both sides present certificates signed by the CA at `caPath`. The certificate must also name the
    /// node: a DNS subjectAltName (or, without DNS SANs, the common name) equal to its node id or to its configured
    /// host, or an IP subjectAltName equal to its configured host when that is an IP address.
    case tls(certPath: String, keyPath: String, caPath: String)
}

/// Tunables of a transport. Defaults suit a LAN cluster with ~100 ms heartbeats.
public struct PeerTransportOptions: Sendable {
    /// The largest frame payload accepted from an authenticated peer; larger ones close the link.
    public var maxFramePayloadBytes: Int = 16 * 1024 * 1024 + 4096
    /// Reconnect backoff: the first retry waits about `reconnectBackoffMinMs`, doubling per failure up to the max;
    /// each wait is drawn uniformly from [half, all] of the current step (jitter), so peers do not retry in lockstep.
    public var reconnectBackoffMinMs: Int64 = 50
    public var reconnectBackoffMaxMs: Int64 = 2000
    /// Above this many buffered output bytes, `send` reports `.queuedAboveHighWaterMark` (apply flow control).
    public var outputHighWaterMarkBytes: Int = 8 * 1024 * 1024
    /// Above this many buffered output bytes, `send` drops the frame (counted) instead of buffering without bound.
    public var outputHardLimitBytes: Int = 64 * 1024 * 1024
    /// A link that has not connected and completed its hello and authentication in this time is closed (this is
    /// also the connect timeout of a dial: a SYN to a vanished host is given up after it).
    public var handshakeTimeoutMs: Int64 = 3000
    /// An established link on which nothing was sent for this long gets a keepalive frame, so that links between
    /// two followers (which carry no Raft traffic) stay provably alive. 0 disables keepalives and the idle timeout.
    public var keepaliveIntervalMs: Int64 = 1000
    /// An established link on which nothing at all arrived for this long is closed and redialled: the peer is gone
    /// or the connection is half-open (a peer host that vanished never sends a FIN). Must exceed the interval.
    public var idleTimeoutMs: Int64 = 5000
    /// The loop priority of peer sockets and timers. `.control` (the default) keeps heartbeats ahead of client
    /// traffic on a busy loop.
    public var priority: EventPriority = .control
    /// Accepted links still in their handshake, at most; more are closed at once (a flood cannot exhaust memory).
    public var maxPendingInboundLinks: Int = 64
    /// Authenticated links from nodes that are not configured peers (a node asking to join), at most; a newer one
    /// beyond the bound evicts the oldest. 0 refuses every unconfigured id in the handshake, as before membership
    /// could change at run time. A stranger still proves the cluster secret (or presents a certificate naming it).
    public var maxStrangers: Int = 8
    /// A stranger link on which no application frame went either way for this long is closed (keepalives do not
    /// count: a stranger cannot hold a slot by only keeping its socket warm).
    public var strangerIdleTimeoutMs: Int64 = 30_000

    public init() {}

    func validate() {
        precondition(maxFramePayloadBytes >= PeerProtocol.handshakeMaxPayloadBytes, "frame limit below handshake size")
        precondition(maxFramePayloadBytes <= Int(UInt32.max), "frame limit above the u32 length field")
        precondition(reconnectBackoffMinMs > 0 && reconnectBackoffMaxMs >= reconnectBackoffMinMs, "bad backoff range")
        precondition(outputHighWaterMarkBytes > 0 && outputHardLimitBytes >= outputHighWaterMarkBytes, "bad marks")
        precondition(handshakeTimeoutMs > 0 && maxPendingInboundLinks > 0, "bad handshake limits")
        precondition(keepaliveIntervalMs >= 0, "a negative keepalive interval")
        precondition(keepaliveIntervalMs == 0 || idleTimeoutMs > keepaliveIntervalMs, "idle timeout within keepalive")
        precondition(maxStrangers >= 0 && strangerIdleTimeoutMs > 0, "bad stranger limits")
    }
}

/// Why a link was refused or ended. `description` is one log-friendly sentence.
public enum LinkFailure: Error, Equatable, Sendable, CustomStringConvertible {
    case frame(FrameError)
    /// The first frame was not a Tandem hello (something else is talking to the peer port).
    case badMagic
    case versionMismatch(peerVersion: UInt16, ourVersion: UInt16)
    case authModeMismatch(peerMode: String, ourMode: String)
    case malformedHandshake(String)
    /// The claimed node id is not one of the configured peers (or is this node's own id).
    case unknownPeer(claimed: String)
    /// We dialled one peer and another answered.
    case unexpectedPeer(expected: NodeID, claimed: String)
    /// The HMAC proof did not verify: a wrong cluster secret, or a replayed or forged proof.
    case badProof(claimed: String)
    /// The TLS certificate verified but does not name the claimed node.
    case certificateMismatch(claimed: String, subject: String)
    case tls(String)
    case handshakeTimeout
    /// Nothing arrived on an established link for the idle timeout.
    case idleTimeout(silentMs: Int64)
    /// The peer refused us and said why.
    case refusedByPeer(String)
    /// A frame type that is not allowed at this point (a transport frame after the handshake, or data before it).
    case unexpectedFrame(type: UInt8)
    case closed(CloseReason)
    /// A newer connection from a restarted peer replaced this one.
    case replacedByNewerConnection
    /// A sealed frame (cluster-secret mode) did not authenticate: it was altered, forged, replayed, reordered, or
    /// frames before it were dropped. `sequence` is the frame number this side expected.
    case frameAuthenticationFailed(sequence: UInt64)
    /// A frame arrived unsealed after a cluster-secret handshake, where every frame must be sealed.
    case unsealedFrame(type: UInt8)
    /// One direction of the link used up its 2^64 frame numbers; a new link gets fresh keys.
    case sequenceExhausted
    /// This node closed the link because of what the peer sent on it (`PeerTransport.closeLink`).
    case closedByNode(String)
    /// `PeerTransport.setPeers` removed the peer from the address book.
    case removed
    /// `PeerTransport.setPeers` gave the peer another address; the link is redialled there.
    case addressChanged

    /// The other end closed the connection (EOF, or a reset), as the kernel of a killed process does at once: not a
    /// timeout, a refusal, or this node's own decision.
    public var isClosedByPeer: Bool {
        guard case .closed(let reason) = self else { return false }
        switch reason {
        case .peerClosed: return true
        case .socketError(let code): return code == ECONNRESET || code == EPIPE
        case .resolutionFailed, .closedLocally: return false
        }
    }

    public var description: String {
        switch self {
        case .frame(let error): return "malformed frame stream: \(error)"
        case .badMagic: return "not a Tandem peer: the first frame is not a Tandem hello"
        case .versionMismatch(let peer, let ours):
            return "protocol version mismatch: the peer speaks version \(peer), this node speaks version \(ours)"
        case .authModeMismatch(let peer, let ours):
            return "authentication mismatch: the peer uses \(peer), this node uses \(ours)"
        case .malformedHandshake(let what): return "malformed handshake: \(what)"
        case .unknownPeer(let claimed): return "unknown node id \"\(claimed)\": not a configured peer"
        case .unexpectedPeer(let expected, let claimed):
            return "dialled \(expected) but the node there says it is \"\(claimed)\""
        case .badProof(let claimed):
            return "authentication failed for \"\(claimed)\": wrong cluster secret (HMAC proof does not verify)"
        case .certificateMismatch(let claimed, let subject):
            return "TLS certificate \(subject) does not name the claimed node \"\(claimed)\""
        case .tls(let reason): return reason
        case .handshakeTimeout: return "handshake not completed in time"
        case .idleTimeout(let silentMs):
            return "nothing received for \(silentMs) ms: the peer is gone or the connection is half-open"
        case .refusedByPeer(let reason): return "refused by the peer: \(reason)"
        case .unexpectedFrame(let type): return "unexpected frame type \(type) at this point of the protocol"
        case .closed(let reason): return "connection closed: \(reason)"
        case .replacedByNewerConnection: return "replaced by a newer connection from the restarted peer"
        case .frameAuthenticationFailed(let sequence):
            return "sealed frame \(sequence) failed authentication (altered, forged, replayed, reordered or spliced)"
        case .unsealedFrame(let type):
            return "unencrypted frame of type \(type) after the cluster-secret handshake (every frame must be sealed)"
        case .sequenceExhausted: return "the link used up its frame sequence numbers; reconnecting for fresh keys"
        case .closedByNode(let reason): return "closed by this node: \(reason)"
        case .removed: return "the node was removed from the peers"
        case .addressChanged: return "the node's address changed; redialling it there"
        }
    }
}

/// What became of a frame handed to `PeerTransport.send`.
public enum SendOutcome: Equatable, Sendable {
    /// Buffered for sending.
    case queued
    /// Buffered, but the peer's output buffer is above its high-water mark: slow down for this peer.
    case queuedAboveHighWaterMark
    /// Dropped: no authenticated connection to the peer right now (Raft retransmits).
    case droppedNotConnected
    /// Dropped: the peer's output buffer is at its hard limit.
    case droppedOutputFull
    /// Dropped: the payload exceeds `maxFramePayloadBytes`. Resending it cannot help: the caller must make smaller
    /// messages (RaftConfig.maxMessageBytes well below the frame limit) or raise the limit on every node.
    case droppedTooLarge

    /// True when the frame was buffered.
    public var isQueued: Bool { self == .queued || self == .queuedAboveHighWaterMark }
}

/// Per-peer figures for /status and /metrics.
public struct LinkStatus: Equatable, Sendable {
    public var id: NodeID
    /// "host:port" as configured.
    public var address: String
    /// An authenticated link is up.
    public var connected: Bool
    /// Loop-clock milliseconds (`EventLoop.nowMs`) of the last frame received, nil before the first.
    public var lastFrameReceivedMs: Int64?
    /// Application frames and their bytes (5-byte headers included); the handshake and keepalives are not counted.
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    public var framesIn: UInt64 = 0
    public var framesOut: UInt64 = 0
    /// Frames dropped by `send` (not connected, output full, or too large), each also reported to the delegate.
    public var framesDropped: UInt64 = 0
    /// Of those, frames larger than `maxFramePayloadBytes`. Resending cannot help them: a count that grows means
    /// the frame limit is below what the consensus core builds (see `RaftConfig.largestAppendPayloadBytes`).
    public var framesDroppedTooLarge: UInt64 = 0
    /// Links established after the first one (each is a reconnect).
    public var reconnects: UInt64 = 0
    /// Output bytes buffered right now.
    public var outputBufferedBytes: Int = 0
}

/// The transport's callbacks, all on the loop thread. Strangers (authenticated nodes that are not configured peers)
/// are reported only through the `Stranger` methods, never through the peer ones, so the consensus path never sees
/// them.
public protocol PeerTransportDelegate: AnyObject {
    /// A frame from an authenticated peer. `payload` points into the connection's buffer and is valid only during
    /// the call: copy what must outlive it (`ConsensusCodec.decode` does). The delegate may call `send` from here.
    func peerTransport(
        _ transport: PeerTransport, didReceiveFrameFrom peer: NodeID, type: UInt8, payload: UnsafeRawBufferPointer)
    /// An authenticated link to `peer` is up (first time, or after a disconnect).
    func peerTransport(_ transport: PeerTransport, peerDidConnect peer: NodeID)
    /// The link to `peer` is gone; the transport is already reconnecting.
    func peerTransport(_ transport: PeerTransport, peerDidDisconnect peer: NodeID, reason: LinkFailure)
    /// A connection was refused during its handshake (wrong secret, unknown node id, bad certificate, version
    /// mismatch, garbage). `remoteAddress` is the IP of an accepted connection or the host of a dialled one.
    func peerTransport(_ transport: PeerTransport, authenticationFailedFrom remoteAddress: String, reason: LinkFailure)
    /// `send` dropped a frame to `peer` (`outcome` says why; it is also counted in the peer's `LinkStatus`). The
    /// delegate should log it, at least `.droppedTooLarge`, which no retransmission can cure. Called after the
    /// counters are updated; the delegate may call `send` from here.
    func peerTransport(
        _ transport: PeerTransport, droppedFrameTo peer: NodeID, type: UInt8, payloadBytes: Int, outcome: SendOutcome)
    /// A frame from a stranger link (`payload` valid during the call only). The delegate may `send` back to `peer`.
    func peerTransport(
        _ transport: PeerTransport, didReceiveFrameFromStranger peer: NodeID, type: UInt8,
        payload: UnsafeRawBufferPointer)
    /// `dialStranger` reached a node that is not a configured peer: `peer` is the id it proved, `address` the
    /// "host:port" dialled. The link is kept as a stranger link.
    func peerTransport(_ transport: PeerTransport, strangerDidConnect peer: NodeID, address: String)
    /// `dialStranger` failed (refused, timed out, connect error); it is not retried.
    func peerTransport(_ transport: PeerTransport, strangerDialFailed host: String, port: UInt16, reason: LinkFailure)
}

extension PeerTransportDelegate {
    /// Delegates written before drops were reported ignore them (the counters still have them).
    public func peerTransport(
        _ transport: PeerTransport, droppedFrameTo peer: NodeID, type: UInt8, payloadBytes: Int, outcome: SendOutcome
    ) {}

    /// Delegates that take no part in joining drop strangers' frames.
    public func peerTransport(
        _ transport: PeerTransport, didReceiveFrameFromStranger peer: NodeID, type: UInt8,
        payload: UnsafeRawBufferPointer
    ) {}

    public func peerTransport(_ transport: PeerTransport, strangerDidConnect peer: NodeID, address: String) {}

    public func peerTransport(
        _ transport: PeerTransport, strangerDialFailed host: String, port: UInt16, reason: LinkFailure
    ) {}
}
