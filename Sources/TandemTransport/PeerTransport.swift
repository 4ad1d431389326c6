// The set of links of one node: one authenticated connection per peer, kept up by dialing and reconnecting.

import TandemConsensus
import TandemNet

/// Why a transport could not start. Operating errors: a port in use, unreadable TLS files, no random source.
public enum TransportError: Error, CustomStringConvertible {
    case listen(NetError)
    case tls(TLSError)
    case crypto(CryptoError)

    public var description: String {
        switch self {
        case .listen(let error): return "peer listener: \(error)"
        case .tls(let error): return "peer TLS: \(error)"
        case .crypto(let error): return "peer authentication: \(error)"
        }
    }
}

/// Authenticated, framed links to every configured peer, on one event loop (see the module header for the
/// threading and ownership rules).
///
/// One connection per pair: both sides dial; when both connections complete, the one dialled by the smaller node
/// id is kept and the other closed, so both sides keep the same one. A link from a restarted peer (a new
/// incarnation) replaces the old link at once.
public final class PeerTransport {
    public let selfID: NodeID
    /// Accepted links still in their handshake from one source address, at most. A real peer has at most one or
    /// two (a dial and a redial); strangers from one address cannot crowd out the other members.
    static let maxPendingInboundLinksPerSource = 4
    /// The peer port actually bound (the chosen one when 0 was asked for).
    public let listenPort: UInt16
    public weak var delegate: PeerTransportDelegate?

    private struct PeerSlot {
        let endpoint: PeerEndpoint
        // Invariant: active, when set, is established (identity.id == endpoint.id) and not closed.
        var active: PeerLink?
        // Invariant: dialing, when set, is an outbound link still in its handshake.
        var dialing: PeerLink?
        var status: LinkStatus
        var consecutiveFailures = 0
        var hasEverConnected = false
        var reconnectTimer: Timer?
    }

    private unowned let loop: EventLoop
    private let options: PeerTransportOptions
    private let handshakeAuth: HandshakeAuth
    private let tlsContext: TLSContext?
    private var listener: Listener?
    private var tlsListener: TLSListener?
    // Invariant: the keys are exactly the configured peers, never selfID.
    private var slots: [NodeID: PeerSlot] = [:]
    // Invariant: pendingInbound.count <= options.maxPendingInboundLinks, and at most
    // maxPendingInboundLinksPerSource entries share a remote address; every entry is accepted and unauthenticated.
    private var pendingInbound: [ObjectIdentifier: PeerLink] = [:]
    /// The order links entered `pendingInbound` (oldest first), for eviction. Holds only pending links.
    private var pendingOrder: [ObjectIdentifier] = []
    /// Random per instance, sent in the hello: how peers tell a restart from a duplicate connection.
    let incarnation: UInt64
    private var isStopped = false
    private var livenessTimer: Timer?
    /// Links closed because the pair already had one (the simultaneous-dial race), for tests and metrics.
    public private(set) var duplicateLinksClosed: UInt64 = 0
    /// Pending inbound links closed to make room for newer ones (a source above its share, or a full table).
    public fileprivate(set) var pendingInboundEvictions: UInt64 = 0

    /// Binds the peer listener now (so `listenPort` is known); dialing starts with `start()`.
    /// `peers` may include this node's own id (as TANDEM_PEERS does): it is ignored.
    public init(
        loop: EventLoop, selfID: NodeID, peers: [PeerEndpoint], listenHost: String, listenPort: UInt16,
        auth: PeerAuth, options: PeerTransportOptions = PeerTransportOptions()
    ) throws(TransportError) {
        options.validate()
        self.loop = loop
        self.selfID = selfID
        self.options = options
        do {
            let seed = try Crypto.secureRandomBytes(count: 8)
            incarnation = seed.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        } catch {
            throw .crypto(error)
        }
        switch auth {
        case .none:
            handshakeAuth = .none
            tlsContext = nil
        case .secret(let secret):
            precondition(!secret.isEmpty, "an empty cluster secret is no authentication; use .none")
            handshakeAuth = .secret(Array(secret.utf8))
            tlsContext = nil
        case .tls(let certPath, let keyPath, let caPath):
            handshakeAuth = .tls
            do {
                tlsContext = try TLSContext(certificatePath: certPath, privateKeyPath: keyPath, trustedCAPath: caPath)
            } catch {
                throw .tls(error)
            }
        }
        for peer in peers where peer.id != selfID {
            precondition(slots[peer.id] == nil, "peer \(peer.id) is configured twice")
            slots[peer.id] = PeerSlot(
                endpoint: peer, status: LinkStatus(id: peer.id, address: peer.address, connected: false))
        }
        do {
            if let tlsContext {
                let bound = try TLSListener(
                    loop: loop, host: listenHost, port: listenPort, context: tlsContext, priority: options.priority)
                self.listenPort = bound.port
                tlsListener = bound
            } else {
                let bound = try Listener(loop: loop, host: listenHost, port: listenPort, priority: options.priority)
                self.listenPort = bound.port
                listener = bound
            }
        } catch {
            throw .listen(error)
        }
        listener?.delegate = self
        tlsListener?.delegate = self
    }

    deinit { stop() }

    /// Dials every peer. Call once, after setting the delegate.
    public func start() {
        precondition(!isStopped, "a stopped transport does not restart")
        for id in slots.keys.sorted() { dial(id) }
        if options.keepaliveIntervalMs > 0 {
            let timer = Timer(loop: loop, priority: options.priority) { [weak self] in self?.checkLiveness() }
            timer.scheduleRepeating(everyMs: max(10, options.keepaliveIntervalMs / 4))
            livenessTimer = timer
        }
    }

    /// Keepalives on idle links and the idle timeout on silent ones (see `PeerTransportOptions`).
    private func checkLiveness() {
        let nowMs = loop.nowMs
        // A snapshot: closing a link below edits `slots`.
        let links = slots.values.compactMap(\.active)
        for link in links {
            link.checkLiveness(
                nowMs: nowMs, keepaliveIntervalMs: options.keepaliveIntervalMs, idleTimeoutMs: options.idleTimeoutMs)
        }
    }

    /// Closes the listener and every link, and stops reconnecting. No callback follows.
    public func stop() {
        guard !isStopped else { return }
        isStopped = true
        livenessTimer?.invalidate()
        livenessTimer = nil
        listener?.close()
        tlsListener?.close()
        for link in pendingInbound.values { link.closeLocally() }
        pendingInbound.removeAll()
        pendingOrder.removeAll()
        for id in slots.keys {
            slots[id]?.reconnectTimer?.invalidate()
            slots[id]?.reconnectTimer = nil
            slots[id]?.active?.closeLocally()
            slots[id]?.active = nil
            slots[id]?.dialing?.closeLocally()
            slots[id]?.dialing = nil
            slots[id]?.status.connected = false
        }
    }

    // MARK: sending

    /// Queues one frame to `peer`. `type` must be an application type (>= 0x10) and `peer` a configured peer.
    /// Frames written in one loop turn leave in one write. A frame to a peer without an authenticated link, or to a
    /// peer whose output is at its hard limit, or larger than `maxFramePayloadBytes` (the peer would refuse it and
    /// close the link), is dropped, counted and reported to the delegate; the outcome says which.
    @discardableResult
    public func send(type: UInt8, payload: UnsafeRawBufferPointer, to peer: NodeID) -> SendOutcome {
        precondition(type >= PeerProtocol.firstApplicationFrameType, "frame types below 0x10 are the transport's")
        guard var slot = slots[peer] else { preconditionFailure("send to \(peer), which is not a configured peer") }
        let outcome: SendOutcome
        var exhausted: PeerLink?
        if payload.count > options.maxFramePayloadBytes {
            outcome = .droppedTooLarge
        } else if let link = slot.active {
            if link.outputCount >= options.outputHardLimitBytes {
                outcome = .droppedOutputFull
            } else if !link.writeFrame(type: type, payload: payload) {
                exhausted = link
                outcome = .droppedNotConnected
            } else {
                slot.status.framesOut += 1
                slot.status.bytesOut += UInt64(FrameParser.headerBytes + payload.count)
                outcome = link.outputCount > options.outputHighWaterMarkBytes ? .queuedAboveHighWaterMark : .queued
            }
        } else {
            outcome = .droppedNotConnected
        }
        if !outcome.isQueued {
            slot.status.framesDropped += 1
            if outcome == .droppedTooLarge { slot.status.framesDroppedTooLarge += 1 }
        }
        // Written back before the delegate hears of a drop or a close: it may send again from the callback.
        slots[peer] = slot
        exhausted?.close(.sequenceExhausted)
        if !outcome.isQueued {
            delegate?.peerTransport(
                self, droppedFrameTo: peer, type: type, payloadBytes: payload.count, outcome: outcome)
        }
        return outcome
    }

    /// `send(type:payload:to:)` for an array payload.
    @discardableResult
    public func send(type: UInt8, payload: [UInt8], to peer: NodeID) -> SendOutcome {
        payload.withUnsafeBytes { send(type: type, payload: $0, to: peer) }
    }

    /// Closes the authenticated link to `peer` because of what arrived on it (a frame the layer above cannot
    /// accept: undecodable, from another node, refused by the core). The delegate hears `peerDidDisconnect` with
    /// `.closedByNode(reason)`; both sides then redial, and the new link is authenticated from scratch, so a peer
    /// sending bad frames costs one handshake per frame instead of a link it can keep busy. May be called from
    /// `didReceiveFrameFrom` (no later frame of that link is delivered). Nothing happens without a link.
    public func closeLink(to peer: NodeID, reason: String) {
        guard let link = slots[peer]?.active else { return }
        link.close(.closedByNode(reason))
    }

    // MARK: status

    /// The figures of one peer, nil for an id that is not a configured peer.
    public func status(of peer: NodeID) -> LinkStatus? {
        guard var status = slots[peer]?.status else { return nil }
        status.outputBufferedBytes = slots[peer]?.active?.outputCount ?? 0
        return status
    }

    /// Every peer's figures, ordered by id.
    public var peerStatuses: [LinkStatus] { slots.keys.sorted().compactMap { status(of: $0) } }

    /// The configured peers, ordered by id.
    public var peerIDs: [NodeID] { slots.keys.sorted() }

    /// True while an authenticated link to `peer` is up.
    public func isConnected(to peer: NodeID) -> Bool { slots[peer]?.active != nil }

    /// Open links that concern `peer` (established or dialing), for tests of the one-connection rule.
    func openLinkCount(to peer: NodeID) -> Int {
        guard let slot = slots[peer] else { return 0 }
        return (slot.active == nil ? 0 : 1) + (slot.dialing == nil ? 0 : 1)
    }

    /// Accepted links still in their handshake.
    var pendingInboundCount: Int { pendingInbound.count }

    /// Checks the invariants written beside `slots` and `pendingInbound` (debug builds only: it walks every peer).
    private func assertInvariants() {
        assert(pendingInbound.count <= options.maxPendingInboundLinks, "more pending inbound links than allowed")
        assert(
            pendingOrder.count == pendingInbound.count && pendingOrder.allSatisfy { pendingInbound[$0] != nil },
            "pendingOrder lists exactly the pending links")
        assert(
            Dictionary(grouping: pendingInbound.values, by: \.remoteAddress).values.allSatisfy {
                $0.count <= PeerTransport.maxPendingInboundLinksPerSource
            }, "more pending inbound links from one source than allowed")
        assert(slots[selfID] == nil, "this node is not its own peer")
        for (id, slot) in slots {
            if let active = slot.active {
                assert(
                    active.identity?.id == id && !active.isClosed, "the active link to \(id) is established and open")
                assert(slot.status.connected, "an active link means connected")
            }
            if let dialing = slot.dialing {
                assert(
                    dialing.identity == nil && dialing.role == .dialer(expected: id), "dialing is an outbound handshake"
                )
            }
        }
    }

    // MARK: dialing

    private func dial(_ id: NodeID) {
        guard !isStopped, let slot = slots[id], slot.active == nil, slot.dialing == nil else { return }
        let endpoint = slot.endpoint
        let link = makeLink(role: .dialer(expected: id), remoteAddress: endpoint.host)
        var tls: TLSConnection?
        let connection: Connection?
        if let tlsContext {
            tls = tlsContext.connect(
                loop: loop, host: endpoint.host, port: endpoint.port, priority: options.priority, delegate: link)
            connection = tls?.connection
        } else {
            connection = Connection.connect(
                loop: loop, host: endpoint.host, port: endpoint.port, priority: options.priority, delegate: link)
        }
        // A connect that failed inside the call (no route, a blackhole route: EINVAL, ENETUNREACH) has already
        // closed its connection, before this dial was recorded: nothing else would ever dial this peer again.
        guard let connection, connection.isOpen else {
            scheduleReconnect(id)
            return
        }
        slots[id]?.dialing = link
        link.start(
            connection: connection, tls: tls, handshakeTimeoutMs: options.handshakeTimeoutMs, priority: options.priority
        )
        assertInvariants()
    }

    private func makeLink(role: LinkRole, remoteAddress: String) -> PeerLink {
        let nonce: [UInt8]
        do {
            nonce = try Crypto.secureRandomBytes(count: Handshake.nonceBytes)
        } catch {
            // Without fresh nonces the secret handshake would be replayable; refusing to run is the safe answer.
            preconditionFailure("no secure random bytes for a handshake nonce: \(error)")
        }
        let handshake = Handshake(
            selfID: selfID, incarnation: incarnation, auth: handshakeAuth, role: role, knownPeers: Set(slots.keys),
            nonce: nonce)
        return PeerLink(
            transport: self, loop: loop, handshake: handshake, remoteAddress: remoteAddress,
            maxFramePayloadBytes: options.maxFramePayloadBytes)
    }

    /// Schedules the next dial with jittered exponential backoff: step = min * 2^failures, capped at max; the
    /// wait is drawn from [step / 2, step].
    private func scheduleReconnect(_ id: NodeID) {
        guard !isStopped, var slot = slots[id], slot.active == nil else { return }
        let shift = min(slot.consecutiveFailures, 20)
        let stepMs = min(options.reconnectBackoffMaxMs, options.reconnectBackoffMinMs << Int64(shift))
        let delayMs = stepMs / 2 + Int64.random(in: 0...(stepMs - stepMs / 2))
        slot.consecutiveFailures += 1
        if slot.reconnectTimer == nil {
            slot.reconnectTimer = Timer(loop: loop, priority: options.priority) { [weak self] in self?.dial(id) }
        }
        slot.reconnectTimer?.schedule(afterMs: delayMs)
        slots[id] = slot
    }

    // MARK: link reports (called by PeerLink)

    /// The handshake of `link` completed. Returns false when the link is not kept (closed or refused here).
    /// `slots` is written back before every delegate call, because the delegate may call `send` from it.
    func linkAuthenticated(_ link: PeerLink, peer: PeerIdentity) -> Bool {
        guard !isStopped, let endpoint = slots[peer.id]?.endpoint else {
            link.closeLocally()
            return false
        }
        guard link.certificateNames(anyOf: [peer.id.rawValue, endpoint.host]) else {
            link.refuse(.certificateMismatch(claimed: peer.id.rawValue, subject: link.certificateSubject))
            return false
        }
        removePending(link)
        if slots[peer.id]?.dialing === link { slots[peer.id]?.dialing = nil }
        guard let old = slots[peer.id]?.active else {
            activate(link, peer: peer.id)
            return !link.isClosed
        }
        if old.identity?.incarnation != peer.incarnation {
            // The peer restarted: whatever was in flight on the old link is lost; say so, then connect again.
            old.closeLocally()
            slots[peer.id]?.active = nil
            slots[peer.id]?.status.connected = false
            delegate?.peerTransport(self, peerDidDisconnect: peer.id, reason: .replacedByNewerConnection)
            guard !isStopped, !link.isClosed else { return false }
            activate(link, peer: peer.id)
            return !link.isClosed
        }
        duplicateLinksClosed += 1
        guard prefers(link, over: old, peer: peer.id) else {
            link.closeLocally()
            return false
        }
        // Both sides dialled at once: swap to the link both sides keep. Raft retransmits anything lost on the old.
        old.closeLocally()
        slots[peer.id]?.active = link
        assertInvariants()
        return true
    }

    private func activate(_ link: PeerLink, peer: NodeID) {
        guard var slot = slots[peer] else { return }
        slot.active = link
        slot.consecutiveFailures = 0
        slot.reconnectTimer?.cancel()
        if slot.hasEverConnected { slot.status.reconnects += 1 }
        slot.hasEverConnected = true
        slot.status.connected = true
        slots[peer] = slot
        assertInvariants()
        delegate?.peerTransport(self, peerDidConnect: peer)
    }

    /// Of two links to the same incarnation of `peer`, the one dialled by the smaller id wins; between two of the
    /// same direction, the newer (the other side evidently lost the older one).
    private func prefers(_ new: PeerLink, over old: PeerLink, peer: NodeID) -> Bool {
        let preferredDialler = min(selfID, peer)
        let newPreferred = new.dialler(selfID: selfID) == preferredDialler
        let oldPreferred = old.dialler(selfID: selfID) == preferredDialler
        return newPreferred == oldPreferred ? true : newPreferred
    }

    /// A frame arrived on an established link.
    func linkReceived(_ link: PeerLink, type: UInt8, payload: UnsafeRawBufferPointer) {
        guard let id = link.identity?.id, slots[id]?.active === link else { return }
        slots[id]?.status.framesIn += 1
        slots[id]?.status.bytesIn += UInt64(FrameParser.headerBytes + payload.count)
        slots[id]?.status.lastFrameReceivedMs = loop.nowMs
        delegate?.peerTransport(self, didReceiveFrameFrom: id, type: type, payload: payload)
    }

    /// The link refused its peer during the handshake (or TLS did); it is closing.
    func linkRefused(_ link: PeerLink, failure: LinkFailure) {
        let dialedPeer = forget(link)
        assertInvariants()
        delegate?.peerTransport(self, authenticationFailedFrom: link.remoteAddress, reason: failure)
        if let dialedPeer { scheduleReconnect(dialedPeer) }
    }

    /// The link's connection ended (peer closed, socket error, protocol error).
    func linkClosed(_ link: PeerLink, failure: LinkFailure) {
        if let id = link.identity?.id, slots[id]?.active === link {
            slots[id]?.active = nil
            slots[id]?.status.connected = false
            assertInvariants()
            delegate?.peerTransport(self, peerDidDisconnect: id, reason: failure)
            scheduleReconnect(id)
            return
        }
        if let dialedPeer = forget(link) { scheduleReconnect(dialedPeer) }
    }

    /// Removes a link that never became active; returns the peer when it was our dial (to retry).
    private func forget(_ link: PeerLink) -> NodeID? {
        removePending(link)
        guard case .dialer(let expected) = link.role, slots[expected]?.dialing === link else { return nil }
        slots[expected]?.dialing = nil
        return expected
    }

    /// Takes an accepted connection into the pending table. A source at its share gives up its own oldest pending
    /// link, and a full table its oldest one, rather than refusing the newcomer: a stranger that holds idle sockets
    /// open only ever evicts itself, and a real peer's fresh dial always gets its handshake (which takes a round
    /// trip, far less than it takes a flood to cycle the table).
    private func accept(_ connection: Connection, tls: TLSConnection?) {
        guard !isStopped else {
            connection.close()
            return
        }
        let source = connection.peerAddress
        let sameSource = pendingOrder.filter { pendingInbound[$0]?.remoteAddress == source }
        if sameSource.count >= PeerTransport.maxPendingInboundLinksPerSource, let oldest = sameSource.first {
            evictPending(oldest)
        }
        if pendingInbound.count >= options.maxPendingInboundLinks, let oldest = pendingOrder.first {
            evictPending(oldest)
        }
        let link = makeLink(role: .acceptor, remoteAddress: source)
        pendingInbound[ObjectIdentifier(link)] = link
        pendingOrder.append(ObjectIdentifier(link))
        link.start(
            connection: connection, tls: tls, handshakeTimeoutMs: options.handshakeTimeoutMs, priority: options.priority
        )
        assertInvariants()
    }
}

extension PeerTransport {
    /// Forgets a link that is no longer pending (authenticated, refused or closed), in both structures at once:
    /// an identifier left behind could be reused by a later link's object and be counted twice.
    fileprivate func removePending(_ link: PeerLink) {
        let key = ObjectIdentifier(link)
        guard pendingInbound.removeValue(forKey: key) != nil else { return }
        pendingOrder.removeAll { $0 == key }
    }

    /// Closes a pending inbound link to make room; it was never a peer, so nobody else hears of it.
    fileprivate func evictPending(_ key: ObjectIdentifier) {
        pendingOrder.removeAll { $0 == key }
        guard let link = pendingInbound.removeValue(forKey: key) else { return }
        pendingInboundEvictions += 1
        link.closeLocally()
    }
}

extension PeerTransport: ListenerDelegate {
    public func listener(_ listener: Listener, accepted connection: Connection) {
        accept(connection, tls: nil)
    }
}

extension PeerTransport: TLSListenerDelegate {
    public func tlsListener(_ listener: TLSListener, accepted connection: TLSConnection) {
        accept(connection.connection, tls: connection)
    }
}
