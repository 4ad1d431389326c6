import TandemHTTP
import TandemNet

/// An answer from an admin endpoint.
struct AdminResponse {
    var status: Int
    var contentType: String
    var body: String

    static func json(_ status: Int, _ body: String) -> AdminResponse {
        AdminResponse(status: status, contentType: "application/json", body: body)
    }
}

/// One admin request, whole (admin bodies are small: the parser caps them at 64 KiB).
struct AdminRequest {
    var method: String
    var path: String
    var query: String
    var body: [UInt8]
}

/// How an admin endpoint answers: at once, or later (an action that waits for the cluster, such as a membership
/// change waiting for its commit). A later answer must come exactly once; the connection reads nothing more until
/// it has (one request at a time, as always), and one that closed meanwhile drops it.
enum AdminAnswer {
    case now(AdminResponse)
    case later((@escaping (AdminResponse) -> Void) -> Void)
}

/// Bounds on admin connections (see `AdminServer`).
struct AdminLimits {
    /// A request whose head is not complete this long after its first byte is answered 408 and closed.
    var headerTimeoutMs: Int64 = 10_000
    /// A connection with no request in progress and nothing to send is closed after this long.
    var idleTimeoutMs: Int64 = 60_000
    /// Admin connections are few (probes, scrapers, operators); at this many, a new one closes the connection
    /// that has been quiet longest, so idle sockets can never lock the kubelet's probe out.
    var maxSessions = 256
    /// Above this many bytes of unsent output a connection is not read (pipelined requests wait in TCP).
    var outputHighWaterMarkBytes = 256 * 1024
    /// Most bytes of unparsed input buffered per connection.
    var inputHighWaterMarkBytes = 64 * 1024
}

/// The admin listener: health, readiness, metrics, status and admin actions. It runs at the loop's control
/// priority, so its events are served before client traffic in every loop turn, and it shares no queue with the
/// client path: health checks keep answering while the client port is flooded.
///
/// Every admin connection is bounded: in time (header and idle timeouts), in output (a connection whose answers
/// are not read stops being read), and in number (at the cap, the quietest connection makes room for a new one).
/// Admin actions (`/admin/*`) need the bearer token when one is configured, else a loopback client; never a
/// browser (a request with `Origin` or a cross-site `Sec-Fetch-Site` is refused).
final class AdminServer: ListenerDelegate {
    private let listener: Listener
    private let loop: EventLoop
    private let metrics: Metrics
    private let adminToken: String?
    let limits: AdminLimits
    /// Routes a complete request (method, path without query, query) to an answer.
    var handler: ((String, String, String) -> AdminResponse)?
    /// Endpoints that need the body or answer later; asked first, nil means "not mine" (then `handler`).
    var actionHandler: ((AdminRequest) -> AdminAnswer?)?
    private var sessions: [ObjectIdentifier: AdminSession] = [:]
    private var sweepTimer: TandemNet.Timer?
    /// Connections closed to make room for a new one at the cap, for tests and metrics.
    private(set) var evictedSessions: UInt64 = 0

    init(
        loop: EventLoop, host: String, port: UInt16, metrics: Metrics, adminToken: String?,
        limits: AdminLimits = AdminLimits()
    ) throws(NetError) {
        self.listener = try Listener(loop: loop, host: host, port: port, priority: .control)
        self.loop = loop
        self.metrics = metrics
        self.adminToken = adminToken.flatMap { $0.isEmpty ? nil : $0 }
        self.limits = limits
        listener.delegate = self
        let timer = TandemNet.Timer(loop: loop, priority: .control) { [unowned self] in self.sweep() }
        let shortest = min(limits.headerTimeoutMs, limits.idleTimeoutMs)
        timer.scheduleRepeating(everyMs: max(10, min(1000, shortest / 4)))
        sweepTimer = timer
    }

    var port: UInt16 { listener.port }
    var nowMs: Int64 { loop.nowMs }

    func close() {
        sweepTimer?.invalidate()
        sweepTimer = nil
        listener.close()
        for session in Array(sessions.values) { session.connection.close() }
        sessions.removeAll()
        metrics.openAdminConnections = 0
    }

    func listener(_ listener: Listener, accepted connection: Connection) {
        if sessions.count >= limits.maxSessions { evictQuietestSession() }
        let session = AdminSession(connection: connection, server: self)
        sessions[ObjectIdentifier(session)] = session
        connection.delegate = session
        connection.setReadHighWatermark(bytes: limits.inputHighWaterMarkBytes)
        connection.enableReading()
        metrics.openAdminConnections = sessions.count
        assert(sessions.count <= limits.maxSessions, "admin sessions stay within the cap")
    }

    /// Closes the session that has been quiet longest, preferring one with nothing left to send (a scrape in
    /// flight is the last to go).
    private func evictQuietestSession() {
        let candidates = sessions.values.filter { $0.connection.outputCount == 0 }
        let pool = candidates.isEmpty ? Array(sessions.values) : candidates
        guard let victim = pool.min(by: { $0.lastActivityMs < $1.lastActivityMs }) else { return }
        evictedSessions += 1
        victim.closeNow()
    }

    /// Applies the header and idle timeouts.
    private func sweep() {
        let now = loop.nowMs
        for session in Array(sessions.values) {
            session.checkTimeouts(nowMs: now, limits: limits)
        }
    }

    func ended(_ session: AdminSession) {
        sessions.removeValue(forKey: ObjectIdentifier(session))
        metrics.openAdminConnections = sessions.count
    }

    func respond(method: String, target: String, headers: HTTPHeaders, body: [UInt8], clientAddress: String)
        -> AdminAnswer
    {
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = String(parts.first ?? "")
        let query = parts.count > 1 ? String(parts[1]) : ""
        if path.hasPrefix("/admin/") {
            if let refusal = refusal(headers: headers, clientAddress: clientAddress) { return .now(refusal) }
        }
        if let answer = actionHandler?(AdminRequest(method: method, path: path, query: query, body: body)) {
            return answer
        }
        return .now(handler?(method, path, query) ?? .json(404, errorJSON("not_found", "no such endpoint", false)))
    }

    /// Nil when an admin action may proceed; else the answer that refuses it.
    private func refusal(headers: HTTPHeaders, clientAddress: String) -> AdminResponse? {
        // A browser sends Origin with every POST and Sec-Fetch-Site with every request; the CLI and scripts send
        // neither. Refusing both keeps a web page (cross-site, or DNS-rebound to this address) from acting here.
        let fetchSite = headers.first(name: "Sec-Fetch-Site")?.lowercased()
        if headers.first(name: "Origin") != nil || (fetchSite != nil && fetchSite != "none") {
            return .json(
                403,
                errorJSON("forbidden", "admin actions are not accepted from browsers (Origin, Sec-Fetch-Site)", false))
        }
        guard let adminToken else {
            if AdminServer.isLoopback(clientAddress) { return nil }
            return .json(
                403,
                errorJSON(
                    "forbidden",
                    "admin actions are accepted only from loopback when no token is configured: set TANDEM_ADMIN_TOKEN "
                        + "on the node and send Authorization: Bearer <token>", false))
        }
        guard let presented = headers.first(name: "Authorization"),
            AdminServer.bearerTokenMatches(presented, adminToken)
        else {
            return .json(401, errorJSON("unauthorized", "a valid bearer token is required for /admin/*", false))
        }
        return nil
    }

    /// True when `authorization` is `Bearer <token>` (the scheme in any case). The token is compared in constant
    /// time for its length, so response timing tells nothing about how much of a guess was right.
    static func bearerTokenMatches(_ authorization: String, _ token: String) -> Bool {
        let scheme = "bearer "
        let bytes = Array(authorization.utf8)
        guard bytes.count >= scheme.utf8.count,
            String(decoding: bytes.prefix(scheme.utf8.count), as: UTF8.self).lowercased() == scheme
        else { return false }
        return constantTimeEquals(Array(bytes.dropFirst(scheme.utf8.count)), Array(token.utf8))
    }

    /// Compares every byte of `expected` whatever the input, so the time taken depends only on its length.
    static func constantTimeEquals(_ presented: [UInt8], _ expected: [UInt8]) -> Bool {
        var difference: UInt8 = presented.count == expected.count ? 0 : 1
        for index in 0..<expected.count {
            let byte = index < presented.count ? presented[index] : 0
            difference |= byte ^ expected[index]
        }
        return difference == 0
    }

    /// 127.0.0.0/8, ::1 and IPv4-mapped loopback: a client on this host (or in this pod's network namespace).
    static func isLoopback(_ address: String) -> Bool {
        let lowered = address.lowercased()
        return lowered.hasPrefix("127.") || lowered == "::1" || lowered.hasPrefix("::ffff:127.")
    }
}

/// One admin connection: requests are small and answered one at a time, keep-alive, with tight limits.
final class AdminSession: ConnectionDelegate {
    let connection: Connection
    private unowned let server: AdminServer
    private var parser = HTTPRequestParser(limits: HTTPLimits(headerCountMax: 50, bodyMaxBytes: 64 * 1024))
    private var pending: (method: String, target: String, headers: HTTPHeaders, keepAlive: Bool)?
    private var pendingBody: [UInt8] = []
    /// A request whose answer comes later is being served: nothing more is read until it has been written.
    private var isAwaitingAnswer = false
    /// Loop time of the last byte read or written; the quietest session is evicted first at the cap.
    private(set) var lastActivityMs: Int64
    /// Loop time when the request being read started (its first byte), nil between requests.
    private var requestStartedMs: Int64?
    /// Reading is paused because the output is above its high-water mark.
    private var isPausedForOutput = false
    private var isEnded = false

    init(connection: Connection, server: AdminServer) {
        self.connection = connection
        self.server = server
        lastActivityMs = server.nowMs
    }

    func connectionHasInput(_ connection: Connection) {
        lastActivityMs = server.nowMs
        // One request at a time: the next is parsed only once the answer to this one fits under the mark.
        while !isEnded && !isPausedForOutput && !isAwaitingAnswer {
            guard let request = readOneRequest() else { return }
            let answer = server.respond(
                method: request.method, target: request.target, headers: request.headers, body: request.body,
                clientAddress: connection.peerAddress)
            switch answer {
            case .now(let response):
                guard answered(response, keepAlive: request.keepAlive) else { return }
            case .later(let start):
                isAwaitingAnswer = true
                connection.disableReading()
                var isAnswered = false
                start { [weak self] response in
                    guard let self, !isAnswered else { return }
                    isAnswered = true
                    self.isAwaitingAnswer = false
                    guard !self.isEnded else { return }
                    self.lastActivityMs = self.server.nowMs
                    guard self.answered(response, keepAlive: request.keepAlive) else { return }
                    if !self.isPausedForOutput { self.connection.enableReading() }
                    if self.connection.inputCount > 0 { self.connectionHasInput(self.connection) }
                }
                return
            }
        }
    }

    /// Writes the answer to the request just read; false when the connection is finishing (not keep-alive).
    private func answered(_ response: AdminResponse, keepAlive: Bool) -> Bool {
        write(response, close: !keepAlive)
        if !keepAlive {
            finish()
            return false
        }
        if connection.outputCount > server.limits.outputHighWaterMarkBytes {
            isPausedForOutput = true
            connection.disableReading()
            connection.setWriteLowWatermark(bytes: server.limits.outputHighWaterMarkBytes / 2)
        }
        return true
    }

    /// Parses buffered input through the end of at most one request. Nil when none is complete yet (or the
    /// request was bad: then it has been answered and the connection is closing).
    private func readOneRequest() -> (
        method: String, target: String, headers: HTTPHeaders, body: [UInt8], keepAlive: Bool
    )? {
        var failure: HTTPParseError?
        var completed: (String, String, HTTPHeaders, [UInt8], Bool)?
        if connection.inputCount > 0 && parser.isIdle && requestStartedMs == nil { requestStartedMs = server.nowMs }
        do throws(HTTPParseError) {
            try connection.parseInput(while: { completed == nil }) { rest throws(HTTPParseError) in
                try parser.parse(rest) { event in
                    switch event {
                    case .head(let head):
                        pending = (head.method, head.target, head.headers, head.keepAlive)
                        pendingBody = []
                    case .body(let bytes): pendingBody.append(contentsOf: bytes)
                    case .end:
                        if let request = pending {
                            completed = (
                                request.method, request.target, request.headers, pendingBody, request.keepAlive
                            )
                        }
                        pending = nil
                        pendingBody = []
                    }
                }
            }
        } catch {
            failure = error
        }
        if let failure {
            write(.json(failure.statusCode, errorJSON("bad_request", failure.message, false)), close: true)
            finish()
            return nil
        }
        guard let completed else { return nil }
        requestStartedMs = nil
        return (completed.0, completed.1, completed.2, completed.3, completed.4)
    }

    func connectionDidDrainOutput(_ connection: Connection) {
        lastActivityMs = server.nowMs
        guard isPausedForOutput, !isEnded else { return }
        isPausedForOutput = false
        connection.setWriteLowWatermark(bytes: 0)
        connection.enableReading()
        // Requests that arrived while paused are already buffered: answer them now.
        if connection.inputCount > 0 { connectionHasInput(connection) }
    }

    /// Closes a request whose head is late (408) or a connection idle past its timeout.
    func checkTimeouts(nowMs: Int64, limits: AdminLimits) {
        guard !isEnded else { return }
        if let started = requestStartedMs ?? (parser.isIdle ? nil : lastActivityMs),
            nowMs - started >= limits.headerTimeoutMs
        {
            write(
                .json(408, errorJSON("request_timeout", "the request head did not arrive in time", false)), close: true)
            finish()
            return
        }
        // Idle: nothing asked and nothing to send; or answers the client has not read for as long (paused output
        // only moves when the client reads, and each drain counts as activity).
        let isQuiet = (parser.isIdle && connection.outputCount == 0) || isPausedForOutput
        if isQuiet && nowMs - lastActivityMs >= limits.idleTimeoutMs {
            closeNow()
        }
    }

    private func write(_ response: AdminResponse, close: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.utf8.count))
        headers.add(name: "Cache-Control", value: "no-store")
        if close { headers.add(name: "Connection", value: "close") }
        connection.write(HTTPSerializer.responseHead(HTTPResponseHead(status: response.status, headers: headers)))
        connection.write(response.body)
    }

    private func finish() {
        guard !isEnded else { return }
        isEnded = true
        connection.closeAfterFlush()
        server.ended(self)
    }

    /// Closes at once, discarding unsent output (eviction, idle timeout).
    func closeNow() {
        guard !isEnded else { return }
        isEnded = true
        connection.close()
        server.ended(self)
    }

    func connectionDidClose(_ connection: Connection, reason: CloseReason) {
        isEnded = true
        server.ended(self)
    }
}

func errorJSON(_ code: String, _ message: String, _ retryable: Bool) -> String {
    "{\"error\":\(jsonString(code)),\"message\":\(jsonString(message)),\"retryable\":\(retryable)}"
}
