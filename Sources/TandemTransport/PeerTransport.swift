// The set of links of one node: one authenticated connection per peer, kept up by dialing and reconnecting.

import Glibc
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
///
/// The peers can change at run time (`setPeers`). A node that is not (yet) a peer but authenticates like one is a
/// stranger: its link is kept apart (bounded, closed when idle) and its frames reach only the delegate's stranger
/// method, so the consensus path never sees it. A joining node finds a member through its address alone
/// (`dialStranger`); once the member's peers include the joiner, its stranger link becomes the joiner's peer link.
public final class PeerTransport {
    public let selfID: NodeID
    /// Accepted links still in their handshake from one source address, at most. A real peer has at most one or
    /// two (a dial and a redial); strangers from one address cannot crowd out the other members.
    static let maxPendingInboundLinksPerSource = 4
    /// The peer port actually bound (the chosen one when 0 was asked for).
    public let listenPort: UInt16
    public weak var delegate: PeerTransportDelegate?

    private struct PeerSlot {
        var endpoint: PeerEndpoint
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

    /// An authenticated link to a node that is not a configured peer.
    private struct StrangerLink {
        let link: PeerLink
        /// Loop-clock time of the last application frame either way, for the stranger idle timeout.
        var lastFrameMs: Int64
    }
    /// A `dialStranger` link still in its handshake, with the address it dialled (for the delegate).
    private struct StrangerDial {
        let link: PeerLink
        let host: String
        let port: UInt16
    }
    // Invariant: strangers.count <= options.maxStrangers; no key is in `slots`; each link is established under its
    // key, open, and no slot's active link.
    private var strangers: [NodeID: StrangerLink] = [:]
    /// The order links became strangers (oldest first), for eviction. Holds exactly the keys of `strangers`.
    private var strangerOrder: [NodeID] = []
    // Invariant: every entry is an outbound `.strangerDialer` link still in its handshake.
    private var strangerDials: [ObjectIdentifier: StrangerDial] = [:]
    private var strangerTimer: Timer?
    /// Stranger dial failures waiting for the next loop turn: `dialStranger` never calls back from inside itself,
    /// so a caller that retries from the failure callback cannot spin without the loop running.
    private var pendingDialFailures: [(host: String, port: UInt16, reason: LinkFailure)] = []
    private var dialFailureTimer: Timer?
    private var isStarted = false
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
        isStarted = true
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
        // A snapshot: closing a link below edits `slots`. Stranger links get keepalives too: the other side may
        // already count this node as a peer, and it closes a link that stays silent.
        let links = slots.values.compactMap(\.active) + strangers.values.map(\.link)
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
        strangerTimer?.invalidate()
        strangerTimer = nil
        dialFailureTimer?.invalidate()
        dialFailureTimer = nil
        pendingDialFailures.removeAll()
        for link in pendingInbound.values { link.closeLocally() }
        pendingInbound.removeAll()
        pendingOrder.removeAll()
        for stranger in strangers.values { stranger.link.closeLocally() }
        strangers.removeAll()
        strangerOrder.removeAll()
        for dial in strangerDials.values { dial.link.closeLocally() }
        strangerDials.removeAll()
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

    /// Queues one frame to `peer`, a configured peer or a stranger with an open link. `type` must be an application
    /// type (>= 0x10). Frames written in one loop turn leave in one write. A frame to a peer without an
    /// authenticated link, or to a peer whose output is at its hard limit, or larger than `maxFramePayloadBytes`
    /// (the peer would refuse it and close the link), is dropped, counted and reported to the delegate; the outcome
    /// says which. A frame to an id that is neither a peer nor an open stranger (a peer just removed, a stranger
    /// whose link closed) is dropped as `.droppedNotConnected` and reported, but counted nowhere.
    @discardableResult
    public func send(type: UInt8, payload: UnsafeRawBufferPointer, to peer: NodeID) -> SendOutcome {
        precondition(type >= PeerProtocol.firstApplicationFrameType, "frame types below 0x10 are the transport's")
        guard var slot = slots[peer] else { return sendToStranger(type: type, payload: payload, to: peer) }
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

    /// `send` to an id that is not a configured peer: on its stranger link, if one is open.
    private func sendToStranger(type: UInt8, payload: UnsafeRawBufferPointer, to peer: NodeID) -> SendOutcome {
        let outcome: SendOutcome
        var exhausted: PeerLink?
        if payload.count > options.maxFramePayloadBytes {
            outcome = .droppedTooLarge
        } else if let link = strangers[peer]?.link {
            if link.outputCount >= options.outputHardLimitBytes {
                outcome = .droppedOutputFull
            } else if !link.writeFrame(type: type, payload: payload) {
                exhausted = link
                outcome = .droppedNotConnected
            } else {
                strangers[peer]?.lastFrameMs = loop.nowMs
                outcome = link.outputCount > options.outputHighWaterMarkBytes ? .queuedAboveHighWaterMark : .queued
            }
        } else {
            outcome = .droppedNotConnected
        }
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
    /// `didReceiveFrameFrom` (no later frame of that link is delivered). Nothing happens without a link. A
    /// stranger's link closes the same way, without a callback, and is not redialled.
    public func closeLink(to peer: NodeID, reason: String) {
        guard let link = slots[peer]?.active ?? strangers[peer]?.link else { return }
        link.close(.closedByNode(reason))
    }

    // MARK: membership

    /// Replaces the address book (this node's own id is ignored, as in `init`). A new id gets a slot and is dialled
    /// (once `start` was called); an open stranger link under a new id becomes its link at once (`peerDidConnect`)
    /// instead of being redialled. A removed id loses its link and slot (`peerDidDisconnect` with `.removed` when
    /// it was connected); an id with another address is redialled there (`.addressChanged` when it was
    /// connected). An unchanged id keeps its link untouched. Handshakes started after the call know the new set.
    public func setPeers(_ peers: [PeerEndpoint]) {
        guard !isStopped else { return }
        var book: [NodeID: PeerEndpoint] = [:]
        for peer in peers where peer.id != selfID {
            precondition(book[peer.id] == nil, "peer \(peer.id) is configured twice")
            book[peer.id] = peer
        }
        // Removals first: the delegate hears of each change with the transport already consistent.
        for id in slots.keys.sorted() where book[id] == nil { removePeer(id) }
        for (id, endpoint) in book.sorted(by: { $0.key < $1.key }) {
            if let current = slots[id]?.endpoint {
                if current != endpoint { readdress(id, to: endpoint) }
            } else {
                addPeer(endpoint)
            }
        }
    }

    private func removePeer(_ id: NodeID) {
        guard let slot = slots.removeValue(forKey: id) else { return }
        slot.reconnectTimer?.invalidate()
        slot.dialing?.closeLocally()
        slot.active?.closeLocally()
        assertInvariants()
        if slot.active != nil { delegate?.peerTransport(self, peerDidDisconnect: id, reason: .removed) }
    }

    private func readdress(_ id: NodeID, to endpoint: PeerEndpoint) {
        guard var slot = slots[id] else { return }
        let wasConnected = slot.active != nil
        slot.dialing?.closeLocally()
        slot.dialing = nil
        slot.active?.closeLocally()
        slot.active = nil
        slot.reconnectTimer?.cancel()
        slot.consecutiveFailures = 0
        slot.endpoint = endpoint
        slot.status.address = endpoint.address
        slot.status.connected = false
        slots[id] = slot
        assertInvariants()
        if wasConnected { delegate?.peerTransport(self, peerDidDisconnect: id, reason: .addressChanged) }
        if isStarted { dial(id) }
    }

    private func addPeer(_ endpoint: PeerEndpoint) {
        let id = endpoint.id
        slots[id] = PeerSlot(
            endpoint: endpoint, status: LinkStatus(id: id, address: endpoint.address, connected: false))
        if let stranger = strangers.removeValue(forKey: id) {
            // Its identity was proved like a peer's (a certificate naming the id, with TLS): keep the link.
            strangerOrder.removeAll { $0 == id }
            activate(stranger.link, peer: id)
        } else {
            assertInvariants()
            if isStarted { dial(id) }
        }
    }

    /// Dials `host:port` without knowing which node answers (a joining node asking any member). The handshake
    /// accepts whichever id the other side proves: a configured peer's link becomes that peer's link
    /// (`peerDidConnect`), anyone else's a stranger link (`strangerDidConnect`). A failure is reported once through
    /// `strangerDialFailed`, never from inside this call, and not retried.
    public func dialStranger(host: String, port: UInt16) {
        guard !isStopped else { return }
        let link = makeLink(role: .strangerDialer, remoteAddress: host)
        let (connection, tls) = connect(link, host: host, port: port)
        let connectError = errno  // what a connect that failed inside the call left behind
        guard let connection, connection.isOpen else {
            reportDialFailure(host: host, port: port, reason: .closed(.socketError(connectError)))
            return
        }
        strangerDials[ObjectIdentifier(link)] = StrangerDial(link: link, host: host, port: port)
        link.start(
            connection: connection, tls: tls, handshakeTimeoutMs: options.handshakeTimeoutMs, priority: options.priority
        )
        assertInvariants()
    }

    private func reportDialFailure(host: String, port: UInt16, reason: LinkFailure) {
        pendingDialFailures.append((host, port, reason))
        if dialFailureTimer == nil {
            dialFailureTimer = Timer(loop: loop, priority: options.priority) { [weak self] in
                self?.deliverDialFailures()
            }
        }
        dialFailureTimer?.schedule(afterMs: 0)
    }

    private func deliverDialFailures() {
        let failures = pendingDialFailures
        pendingDialFailures.removeAll()
        for failure in failures where !isStopped {
            delegate?.peerTransport(self, strangerDialFailed: failure.host, port: failure.port, reason: failure.reason)
        }
    }

    /// Keeps an authenticated link under `id` as a stranger: a newer link of the same id replaces the older, and a
    /// full table gives up its oldest stranger.
    private func admitStranger(_ link: PeerLink, id: NodeID) {
        if strangers[id] != nil { dropStranger(id) }
        if strangers.count >= options.maxStrangers, let oldest = strangerOrder.first { dropStranger(oldest) }
        strangers[id] = StrangerLink(link: link, lastFrameMs: loop.nowMs)
        strangerOrder.append(id)
        if strangerTimer == nil {
            let timer = Timer(loop: loop, priority: options.priority) { [weak self] in self?.closeIdleStrangers() }
            timer.scheduleRepeating(everyMs: max(10, options.strangerIdleTimeoutMs / 4))
            strangerTimer = timer
        }
        assertInvariants()
    }

    /// Closes a stranger link quietly: a stranger was never a peer, so the delegate has no bookkeeping to update.
    private func dropStranger(_ id: NodeID) {
        guard let stranger = strangers.removeValue(forKey: id) else { return }
        strangerOrder.removeAll { $0 == id }
        stranger.link.closeLocally()
    }

    private func closeIdleStrangers() {
        let nowMs = loop.nowMs
        for (id, stranger) in strangers where nowMs - stranger.lastFrameMs >= options.strangerIdleTimeoutMs {
            dropStranger(id)
        }
        assertInvariants()
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

    /// The ids of the open stranger links, ordered.
    public var strangerIDs: [NodeID] { strangers.keys.sorted() }

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
        assert(strangers.count <= options.maxStrangers, "more stranger links than allowed")
        assert(
            strangerOrder.count == strangers.count && strangerOrder.allSatisfy { strangers[$0] != nil },
            "strangerOrder lists exactly the stranger links")
        for (id, stranger) in strangers {
            assert(slots[id] == nil, "\(id) is a stranger and a configured peer")
            assert(
                stranger.link.identity?.id == id && !stranger.link.isClosed, "the stranger link \(id) is established")
            assert(!slots.values.contains { $0.active === stranger.link }, "a stranger link is no peer's active link")
        }
        assert(
            strangerDials.values.allSatisfy { $0.link.identity == nil && $0.link.role == .strangerDialer },
            "a stranger dial is an outbound handshake")
    }

    // MARK: dialing

    private func dial(_ id: NodeID) {
        guard !isStopped, let slot = slots[id], slot.active == nil, slot.dialing == nil else { return }
        let endpoint = slot.endpoint
        let link = makeLink(role: .dialer(expected: id), remoteAddress: endpoint.host)
        let (connection, tls) = connect(link, host: endpoint.host, port: endpoint.port)
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

    private func connect(_ link: PeerLink, host: String, port: UInt16) -> (Connection?, TLSConnection?) {
        guard let tlsContext else {
            return (
                Connection.connect(loop: loop, host: host, port: port, priority: options.priority, delegate: link), nil
            )
        }
        let tls = tlsContext.connect(loop: loop, host: host, port: port, priority: options.priority, delegate: link)
        return (tls?.connection, tls)
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
            nonce: nonce, admitsStrangers: options.maxStrangers > 0)
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
        guard !isStopped else {
            link.closeLocally()
            return false
        }
        // A configured peer's certificate may name its configured host instead; a stranger's must name its id.
        let host = slots[peer.id]?.endpoint.host
        guard link.certificateNames(anyOf: [peer.id.rawValue] + (host.map { [$0] } ?? [])) else {
            link.refuse(.certificateMismatch(claimed: peer.id.rawValue, subject: link.certificateSubject))
            return false
        }
        removePending(link)
        let dial = strangerDials.removeValue(forKey: ObjectIdentifier(link))
        guard host != nil else { return keepAsStranger(link, peer: peer.id, dial: dial) }
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

    /// An authenticated link from or to a node that is not a configured peer.
    private func keepAsStranger(_ link: PeerLink, peer: NodeID, dial: StrangerDial?) -> Bool {
        if case .dialer = link.role {
            // Its peer was removed while it dialled (setPeers closes those dials; this is the safety net).
            link.closeLocally()
            return false
        }
        guard options.maxStrangers > 0 else {
            // Only a handshake that began before setPeers removed the id gets here, or a stranger dial.
            if let dial {
                link.closeLocally()
                assertInvariants()
                reportDialFailure(host: dial.host, port: dial.port, reason: .unknownPeer(claimed: peer.rawValue))
            } else {
                link.refuse(.unknownPeer(claimed: peer.rawValue))
            }
            return false
        }
        admitStranger(link, id: peer)
        if let dial {
            let address = PeerEndpoint(id: peer, host: dial.host, port: dial.port).address
            delegate?.peerTransport(self, strangerDidConnect: peer, address: address)
        }
        return !link.isClosed
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
        guard let id = link.identity?.id else { return }
        if strangers[id]?.link === link {
            strangers[id]?.lastFrameMs = loop.nowMs
            delegate?.peerTransport(self, didReceiveFrameFromStranger: id, type: type, payload: payload)
            return
        }
        guard slots[id]?.active === link else { return }
        slots[id]?.status.framesIn += 1
        slots[id]?.status.bytesIn += UInt64(FrameParser.headerBytes + payload.count)
        slots[id]?.status.lastFrameReceivedMs = loop.nowMs
        delegate?.peerTransport(self, didReceiveFrameFrom: id, type: type, payload: payload)
    }

    /// The link refused its peer during the handshake (or TLS did); it is closing.
    func linkRefused(_ link: PeerLink, failure: LinkFailure) {
        if let dial = strangerDials.removeValue(forKey: ObjectIdentifier(link)) {
            assertInvariants()
            reportDialFailure(host: dial.host, port: dial.port, reason: failure)
            return
        }
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
        if let id = link.identity?.id, strangers[id]?.link === link {
            strangers.removeValue(forKey: id)
            strangerOrder.removeAll { $0 == id }
            assertInvariants()
            return
        }
        if let dial = strangerDials.removeValue(forKey: ObjectIdentifier(link)) {
            assertInvariants()
            reportDialFailure(host: dial.host, port: dial.port, reason: failure)
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
