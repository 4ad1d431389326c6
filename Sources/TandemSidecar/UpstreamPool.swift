import Glibc
import TandemHTTP
import TandemNet

/// What an upstream connection reports to the exchange that currently uses it.
protocol UpstreamOwner: AnyObject {
    func upstreamConnected(_ upstream: UpstreamConnection)
    func upstreamHasInput(_ upstream: UpstreamConnection)
    func upstreamDrained(_ upstream: UpstreamConnection)
    func upstreamClosed(_ upstream: UpstreamConnection, reason: CloseReason)
}

/// One keep-alive connection to the local app. While it carries an exchange its owner hears every event; while it
/// idles in the pool, any input is a protocol violation and any close just removes it (the app may close idle
/// connections whenever it likes: a pooled connection the app already closed must be redialled, not failed).
final class UpstreamConnection: ConnectionDelegate {
    private(set) var connection: Connection!
    /// The session whose exchange uses the connection. Not reference counted: a weak reference gave every session
    /// a side table, which made each of the dozens of retains and releases of a session per request take the slow
    /// path. The owner clears it when it lets the connection go (`UpstreamPool.release`/`discard`, or the
    /// session's deinit), and every call through it holds a strong reference for the call.
    unowned(unsafe) var owner: UpstreamOwner?
    unowned let pool: UpstreamPool
    private(set) var isConnected = false
    /// Exchanges completed on this connection: a reused connection may have been closed by the app meanwhile.
    var completedExchanges = 0
    /// When the connection last went back to the pool (loop clock, ms); meaningful only while it idles.
    var idleSinceMs: Int64 = 0

    init(pool: UpstreamPool) {
        self.pool = pool
    }

    func start(loop: EventLoop, host: String, port: UInt16) -> Bool {
        guard let connection = Connection.connect(loop: loop, host: host, port: port, delegate: self) else {
            return false
        }
        self.connection = connection
        connection.setReadHighWatermark(bytes: pool.bufferHighWaterBytes)
        connection.setWriteLowWatermark(bytes: pool.bufferHighWaterBytes / 2)
        connection.enableReading()
        return true
    }

    func connectionDidConnect(_ connection: Connection) {
        isConnected = true
        pool.health.markReachable()
        if let owner { owner.upstreamConnected(self) }
    }

    func connectionHasInput(_ connection: Connection) {
        if let owner {  // A strong reference for the call.
            owner.upstreamHasInput(self)
        } else {
            // Bytes from an idle app connection can belong to no request: drop the connection.
            pool.discard(self)
        }
    }

    func connectionDidDrainOutput(_ connection: Connection) {
        if let owner { owner.upstreamDrained(self) }
    }

    func connectionDidClose(_ connection: Connection, reason: CloseReason) {
        pool.forget(self)
        if !isConnected { pool.health.connectFailed(reason) }
        if let owner { owner.upstreamClosed(self, reason: reason) }
    }
}

/// Keep-alive connections to the local app, most recently used first (warm connections, fewer idle timeouts).
///
/// Bounded by demand: a connection is busy only while a client session holds it (so busy ones are bounded by the
/// sessions), and a released one stays idle for the next request. Up to `idleFloor` idle connections are kept for
/// good; the ones above it are closed once they have idled for `surplusIdleMs`, least recently used first. A
/// fixed cap on idle connections instead made every burst above it pay a connect and a close per request beyond
/// the cap (at 256 concurrent reads and a cap of 128, one app connection dialled for every other read).
final class UpstreamPool {
    private unowned let loop: EventLoop
    let host: String
    let port: UInt16
    let idleFloor: Int
    let surplusIdleMs: Int64
    let bufferHighWaterBytes: Int
    let health: AppHealth
    private let metrics: Metrics
    /// Idle connections, most recently released last (so `idleSinceMs` never decreases along it). Invariant:
    /// every element has no owner and is open.
    private var idle: [UpstreamConnection] = []
    /// Closes the idle surplus over `idleFloor` when it has idled long enough; scheduled only while there is one.
    private var surplusTimer: Timer?
    /// Every open connection, idle or busy, so that shutdown can close them all.
    private var open: [ObjectIdentifier: UpstreamConnection] = [:]

    init(
        loop: EventLoop, host: String, port: UInt16, idleFloor: Int, surplusIdleMs: Int64, bufferHighWaterBytes: Int,
        health: AppHealth, metrics: Metrics
    ) {
        precondition(idleFloor >= 0 && surplusIdleMs > 0, "pool bounds are positive")
        self.loop = loop
        self.host = host
        self.port = port
        self.idleFloor = idleFloor
        self.surplusIdleMs = surplusIdleMs
        self.bufferHighWaterBytes = bufferHighWaterBytes
        self.health = health
        self.metrics = metrics
    }

    /// An idle connection if one is open, else a new one (connecting). Nil only when no socket can be made.
    func acquire(for owner: UpstreamOwner) -> UpstreamConnection? {
        while let candidate = idle.popLast() {
            guard candidate.connection.isOpen else { continue }
            guard candidate.connection.inputCount == 0 else {
                // The app sent bytes while the connection idled (not yet seen by its callback): they answer
                // no request, and must not be taken for the next one's response.
                discard(candidate)
                continue
            }
            candidate.owner = owner
            publishGauges()
            return candidate
        }
        let upstream = UpstreamConnection(pool: self)
        upstream.owner = owner
        guard upstream.start(loop: loop, host: host, port: port) else { return nil }
        open[ObjectIdentifier(upstream)] = upstream
        publishGauges()
        return upstream
    }

    /// Returns a connection whose last exchange completed cleanly and that may be reused.
    func release(_ upstream: UpstreamConnection) {
        precondition(!idle.contains { $0 === upstream }, "an upstream connection released twice")
        upstream.owner = nil
        upstream.completedExchanges += 1
        guard upstream.connection.isOpen else {
            discard(upstream)
            return
        }
        upstream.idleSinceMs = loop.nowMs
        idle.append(upstream)
        if idle.count > idleFloor { scheduleSurplusCheck(afterMs: surplusIdleMs) }
        publishGauges()
    }

    /// Closes the idle connections above the floor that have idled for `surplusIdleMs`, oldest first, and looks
    /// again when the next one would be due.
    private func closeIdleSurplus() {
        let now = loop.nowMs
        var expired = 0
        while idle.count - expired > idleFloor, idle[expired].idleSinceMs + surplusIdleMs <= now { expired += 1 }
        let closing = idle.prefix(expired)
        idle.removeFirst(expired)
        for upstream in closing { discard(upstream) }
        if idle.count > idleFloor, let oldest = idle.first {
            scheduleSurplusCheck(afterMs: max(1, oldest.idleSinceMs + surplusIdleMs - now))
        }
    }

    private func scheduleSurplusCheck(afterMs delayMs: Int64) {
        if surplusTimer == nil {
            surplusTimer = Timer(loop: loop, priority: .control) { [unowned self] in closeIdleSurplus() }
        }
        guard let surplusTimer, !surplusTimer.isScheduled else { return }
        surplusTimer.schedule(afterMs: delayMs)
    }

    /// Closes a connection that must not be reused (an exchange failed or was abandoned half way).
    func discard(_ upstream: UpstreamConnection) {
        upstream.owner = nil
        upstream.connection?.close()
        forget(upstream)
    }

    func forget(_ upstream: UpstreamConnection) {
        open.removeValue(forKey: ObjectIdentifier(upstream))
        idle.removeAll { $0 === upstream }
        publishGauges()
    }

    func closeAll() {
        surplusTimer?.invalidate()
        surplusTimer = nil
        for upstream in Array(open.values) { discard(upstream) }
    }

    private func publishGauges() {
        metrics.upstreamPoolIdle = idle.count
        metrics.upstreamConnectionsOpen = open.count
    }
}

/// Whether the local app answers, as seen from real traffic and from a periodic connect probe.
final class AppHealth {
    private(set) var isReachable = false
    var onChange: ((Bool) -> Void)?

    /// Called when a connection to the app is refused: nothing listens on its port, so the process is gone
    /// (a restart, for an in-memory app, means its state is gone too). A slow or failed connect is not this.
    var onRefused: (() -> Void)?

    /// Called when a probe connected: the sidecar checks which process accepted it (`AppListener`).
    var onProbeConnected: (() -> Void)?

    func markReachable() { set(true) }
    func markUnreachable() { set(false) }

    /// A connect attempt ended: refused means the app process is not there.
    func connectFailed(_ reason: CloseReason) {
        markUnreachable()
        if reason == .socketError(ECONNREFUSED) { onRefused?() }
    }

    private func set(_ reachable: Bool) {
        guard reachable != isReachable else { return }
        isReachable = reachable
        onChange?(reachable)
    }
}

/// Opens a TCP connection to the app every interval; success marks it reachable, refusal unreachable.
/// The probe does not send a request: any app-specific path could have side effects.
final class AppProbe: ConnectionDelegate {
    private unowned let loop: EventLoop
    private let host: String
    private let port: UInt16
    private let health: AppHealth
    private var timer: Timer?
    private var inFlight: Connection?
    /// When `inFlight` was dialled (monotonic ms).
    private var inFlightSinceMs: Int64 = 0
    private var intervalMs: Int64 = 0

    init(loop: EventLoop, host: String, port: UInt16, health: AppHealth) {
        self.loop = loop
        self.host = host
        self.port = port
        self.health = health
    }

    func start(intervalMs: Int64) {
        self.intervalMs = intervalMs
        timer = Timer(loop: loop, priority: .control) { [weak self] in self?.probe() }
        timer?.scheduleRepeating(everyMs: intervalMs)
        probe()
    }

    func stop() {
        timer?.invalidate()
        timer = nil
        inFlight?.close()
        inFlight = nil
    }

    private func probe() {
        let nowMs = EventLoop.preciseNowMs()
        // A probe still pending after a whole interval means the app accepts nothing: count it as down. A younger
        // one waits: the timer's first firing can come sooner than an interval after the first probe.
        if let pending = inFlight {
            guard nowMs - inFlightSinceMs >= intervalMs else { return }
            pending.close()
            inFlight = nil
            health.markUnreachable()
        }
        inFlightSinceMs = nowMs
        inFlight = Connection.connect(loop: loop, host: host, port: port, priority: .control, delegate: self)
        if inFlight == nil { health.markUnreachable() }
    }

    func connectionDidConnect(_ connection: Connection) {
        health.markReachable()
        connection.close()
        inFlight = nil
        health.onProbeConnected?()
    }

    func connectionHasInput(_ connection: Connection) {}

    func connectionDidClose(_ connection: Connection, reason: CloseReason) {
        health.connectFailed(reason)
        inFlight = nil
    }
}
