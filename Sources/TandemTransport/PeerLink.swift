// One connection to (or from) a peer: its handshake, its frame parser, and the path of its bytes.

import TandemConsensus
import TandemNet

/// A link is a connection plus the protocol state on it. The transport decides what becomes of it; the link only
/// reports. It is the connection's delegate, so the connection keeps it alive while open (see the module header).
final class PeerLink: ConnectionDelegate {
    weak var transport: PeerTransport?
    private unowned let loop: EventLoop
    let role: LinkRole
    /// The IP of an accepted connection or the host of a dialled one, for log lines.
    let remoteAddress: String
    private(set) var connection: Connection?
    private(set) var tls: TLSConnection?
    private var handshake: Handshake
    private var parser = FrameParser(maxPayloadBytes: PeerProtocol.handshakeMaxPayloadBytes)
    private let maxFramePayloadBytes: Int
    private var handshakeTimer: Timer?
    /// Set together when a cluster-secret handshake completes: from then on every frame is sealed both ways.
    private var sealer: FrameSealer?
    private var opener: FrameOpener?
    /// Set once the handshake completed and the transport kept this link.
    private(set) var identity: PeerIdentity?
    /// Set once this link is closed or closing; no callback reaches the transport after that.
    private(set) var isClosed = false
    /// True once the TCP (and TLS) connection is up: from the start for accepted links, on connect for dialled ones.
    private var isConnected: Bool
    /// Loop-clock times of the last frame received and sent, for keepalives and the idle timeout.
    private var lastReceivedMs: Int64
    private var lastSentMs: Int64

    init(
        transport: PeerTransport, loop: EventLoop, handshake: Handshake, remoteAddress: String,
        maxFramePayloadBytes: Int
    ) {
        self.transport = transport
        self.loop = loop
        self.isConnected = handshake.role == .acceptor
        self.lastReceivedMs = loop.nowMs
        self.lastSentMs = loop.nowMs
        self.handshake = handshake
        self.role = handshake.role
        self.remoteAddress = remoteAddress
        self.maxFramePayloadBytes = maxFramePayloadBytes
    }

    /// The node that dialled this link: the tie-breaker when both sides dialled at once.
    func dialler(selfID: NodeID) -> NodeID? {
        switch role {
        case .dialer, .strangerDialer: return selfID
        case .acceptor: return identity?.id
        }
    }

    /// Starts the protocol on a connection: sends the hello, reads, and arms the handshake deadline.
    func start(connection: Connection, tls: TLSConnection?, handshakeTimeoutMs: Int64, priority: EventPriority) {
        precondition(self.connection == nil, "a link starts once")
        self.connection = connection
        self.tls = tls
        connection.delegate = self
        writeFrame(type: PeerProtocol.helloFrameType, payload: handshake.helloPayload())
        connection.enableReading()
        let timer = Timer(loop: loop, priority: priority) { [weak self] in self?.handshakeDeadlinePassed() }
        timer.schedule(afterMs: handshakeTimeoutMs)
        handshakeTimer = timer
    }

    var outputCount: Int { connection?.outputCount ?? 0 }

    @discardableResult
    func writeFrame(type: UInt8, payload: [UInt8]) -> Bool {
        payload.withUnsafeBytes { writeFrame(type: type, payload: $0) }
    }

    /// Writes header and payload into the output buffer (sealed, once a cluster-secret handshake completed);
    /// libevent sends everything written in one loop turn together, so many small frames cost one system call.
    /// Returns false, writing nothing, when the link has no sealing nonce left: the caller must then `close` it
    /// (not done here, so that the transport's state is consistent when it hears of the close).
    @discardableResult
    func writeFrame(type: UInt8, payload: UnsafeRawBufferPointer) -> Bool {
        guard let connection, !isClosed else { return true }
        if let sealer {
            guard sealer.seal(type: type, payload: payload, write: { connection.write($0) }) else { return false }
            lastSentMs = loop.nowMs
            return true
        }
        let length = UInt32(payload.count)
        var header = (
            UInt8(truncatingIfNeeded: length), UInt8(truncatingIfNeeded: length >> 8),
            UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 24), type
        )
        withUnsafeBytes(of: &header) { connection.write($0) }
        connection.write(payload)
        lastSentMs = loop.nowMs
        return true
    }

    /// Closes without telling the transport (the transport decided it).
    func closeLocally() {
        guard !isClosed else { return }
        isClosed = true
        stopTimer()
        connection?.close()
    }

    /// Tells the peer why it is refused, closes after that is flushed, and reports to the transport.
    func refuse(_ failure: LinkFailure) {
        guard !isClosed, let connection else { return }
        isClosed = true
        writeRefusal(failure, on: connection)
        connection.closeAfterFlush()
        // A peer that never reads would keep the refused connection open: force it shut after a short grace.
        handshakeTimer?.schedule(afterMs: 1000)
        transport?.linkRefused(self, failure: failure)
    }

    private func writeRefusal(_ failure: LinkFailure, on connection: Connection) {
        let reason = Array(failure.description.utf8.prefix(512))
        let length = UInt32(reason.count)
        var header = (
            UInt8(truncatingIfNeeded: length), UInt8(truncatingIfNeeded: length >> 8), UInt8(0), UInt8(0),
            PeerProtocol.refusalFrameType
        )
        withUnsafeBytes(of: &header) { connection.write($0) }
        connection.write(reason)
    }

    /// Closes an established link for `failure` and reports it to the transport as a disconnect.
    func close(_ failure: LinkFailure) { fail(failure) }

    /// Closes on an error found on an established or handshaking link and reports it as a disconnect.
    private func fail(_ failure: LinkFailure) {
        guard !isClosed else { return }
        isClosed = true
        stopTimer()
        connection?.close()
        transport?.linkClosed(self, failure: failure)
    }

    private func stopTimer() {
        handshakeTimer?.invalidate()
        handshakeTimer = nil
    }

    private func handshakeDeadlinePassed() {
        if isClosed {
            connection?.close()  // the grace period after a refusal is over
            stopTimer()
            return
        }
        // A dial that never connected is a dial failure (retried), not a peer that failed to authenticate.
        if isConnected { refuse(.handshakeTimeout) } else { fail(.handshakeTimeout) }
    }

    /// Called periodically on established links: closes a silent link, or sends a keepalive on an idle one.
    func checkLiveness(nowMs: Int64, keepaliveIntervalMs: Int64, idleTimeoutMs: Int64) {
        guard !isClosed, identity != nil else { return }
        let silentMs = nowMs - lastReceivedMs
        if silentMs >= idleTimeoutMs {
            fail(.idleTimeout(silentMs: silentMs))
        } else if nowMs - lastSentMs >= keepaliveIntervalMs,
            !writeFrame(type: PeerProtocol.keepaliveFrameType, payload: UnsafeRawBufferPointer(start: nil, count: 0))
        {
            fail(.sequenceExhausted)
        }
    }

    // MARK: ConnectionDelegate

    func connectionDidConnect(_ connection: Connection) {
        isConnected = true
    }

    func connectionHasInput(_ connection: Connection) {
        // Any byte counts as a sign of life: a large frame can take longer than the idle timeout to arrive whole.
        lastReceivedMs = loop.nowMs
        connection.consumeInput { chunk in
            guard !isClosed else { return chunk.count }
            do throws(FrameError) {
                try parser.consume(chunk) { type, payload in onFrame(type: type, payload: payload) }
            } catch {
                // Before the handshake completes, a bad frame is a refused stranger; after, a broken peer.
                if identity == nil { refuse(.frame(error)) } else { fail(.frame(error)) }
            }
            return chunk.count
        }
    }

    func connectionDidClose(_ connection: Connection, reason: CloseReason) {
        guard !isClosed else { return }
        if identity == nil, let failure = tls?.handshakeFailureDescription {
            isClosed = true
            stopTimer()
            transport?.linkRefused(self, failure: .tls(failure))
            return
        }
        fail(.closed(reason))
    }

    private func onFrame(type: UInt8, payload: UnsafeRawBufferPointer) -> FrameVerdict {
        guard !isClosed else { return .stop }
        lastReceivedMs = loop.nowMs
        guard identity != nil else { return onHandshakeFrame(type: type, payload: payload) }
        guard let opener else { return onEstablishedFrame(type: type, payload: payload) }
        // Nothing of a frame that does not open reaches anyone: the link closes on it.
        switch opener.open(frameType: type, payload: payload) {
        case .opened(let innerType, let plaintext):
            return onEstablishedFrame(type: innerType, payload: plaintext)
        case .failed(let failure):
            fail(failure)
            return .stop
        }
    }

    private func onEstablishedFrame(type: UInt8, payload: UnsafeRawBufferPointer) -> FrameVerdict {
        if type == PeerProtocol.keepaliveFrameType && payload.isEmpty { return .proceed }
        guard type >= PeerProtocol.firstApplicationFrameType else {
            fail(.unexpectedFrame(type: type))
            return .stop
        }
        transport?.linkReceived(self, type: type, payload: payload)
        return isClosed ? .stop : .proceed
    }

    private func onHandshakeFrame(type: UInt8, payload: UnsafeRawBufferPointer) -> FrameVerdict {
        switch handshake.onFrame(type: type, payload: payload) {
        case .wait:
            return .proceed
        case .send(let replyType, let reply):
            writeFrame(type: replyType, payload: reply)
            return .proceed
        case .refuse(let failure):
            refuse(failure)
            return .stop
        case .established(let peer):
            identity = peer
            var limit = maxFramePayloadBytes
            if case .secret = handshake.auth {
                // Before the transport hears of the link: it may send on it from that very call.
                let keys = LinkKeys(handshake: handshake, peer: peer.id)
                sealer = FrameSealer(key: keys.send)
                opener = FrameOpener(key: keys.receive)
                limit = min(Int(UInt32.max), limit + PeerProtocol.sealedFrameOverheadBytes)
            }
            // The deadline timer stays armed until the transport keeps the link: a refusal reuses it as a grace.
            guard let transport, transport.linkAuthenticated(self, peer: peer), !isClosed else { return .stop }
            stopTimer()
            return .proceedWithLimit(maxPayloadBytes: limit)
        }
    }

    /// True when the verified TLS certificate names one of `names`. Always true without TLS.
    func certificateNames(anyOf names: [String]) -> Bool {
        guard let tls else { return true }
        return names.contains { tls.peerCertificateNames($0) }
    }

    var certificateSubject: String { tls?.peerSubject ?? "(none)" }
}
