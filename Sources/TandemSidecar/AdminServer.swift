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

/// The admin listener: health, readiness, metrics, status and admin actions. It runs at the loop's control
/// priority, so its events are served before client traffic in every loop turn, and it shares no queue with the
/// client path: health checks keep answering while the client port is flooded.
final class AdminServer: ListenerDelegate {
    private let listener: Listener
    private let metrics: Metrics
    private let adminToken: String?
    /// Routes a complete request (method, path without query, query) to an answer.
    var handler: ((String, String, String) -> AdminResponse)?
    private var sessions: [ObjectIdentifier: AdminSession] = [:]
    /// Admin connections are few (probes, scrapers, operators); beyond this many, new ones are refused.
    let maxSessions = 256

    init(loop: EventLoop, host: String, port: UInt16, metrics: Metrics, adminToken: String?) throws(NetError) {
        self.listener = try Listener(loop: loop, host: host, port: port, priority: .control)
        self.metrics = metrics
        self.adminToken = adminToken
        listener.delegate = self
    }

    var port: UInt16 { listener.port }

    func close() {
        listener.close()
        for session in Array(sessions.values) { session.connection.close() }
        sessions.removeAll()
        metrics.openAdminConnections = 0
    }

    func listener(_ listener: Listener, accepted connection: Connection) {
        guard sessions.count < maxSessions else {
            connection.close()
            return
        }
        let session = AdminSession(connection: connection, server: self)
        sessions[ObjectIdentifier(session)] = session
        connection.delegate = session
        connection.enableReading()
        metrics.openAdminConnections = sessions.count
    }

    func ended(_ session: AdminSession) {
        sessions.removeValue(forKey: ObjectIdentifier(session))
        metrics.openAdminConnections = sessions.count
    }

    func respond(method: String, target: String, headers: HTTPHeaders) -> AdminResponse {
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = String(parts.first ?? "")
        let query = parts.count > 1 ? String(parts[1]) : ""
        if path.hasPrefix("/admin/"), let adminToken, !adminToken.isEmpty {
            guard headers.first(name: "Authorization") == "Bearer \(adminToken)" else {
                return .json(401, errorJSON("unauthorized", "a valid bearer token is required for /admin/*", false))
            }
        }
        return handler?(method, path, query) ?? .json(404, errorJSON("not_found", "no such endpoint", false))
    }
}

/// One admin connection: requests are small and answered at once, keep-alive, with tight limits.
final class AdminSession: ConnectionDelegate {
    let connection: Connection
    private unowned let server: AdminServer
    private var parser = HTTPRequestParser(limits: HTTPLimits(headerCountMax: 50, bodyMaxBytes: 64 * 1024))
    private var pending: (method: String, target: String, headers: HTTPHeaders, keepAlive: Bool)?

    init(connection: Connection, server: AdminServer) {
        self.connection = connection
        self.server = server
    }

    func connectionHasInput(_ connection: Connection) {
        var failure: HTTPParseError?
        var completed: [(String, String, HTTPHeaders, Bool)] = []
        connection.consumeInput { chunk in
            guard failure == nil else { return 0 }
            var offset = 0
            while offset < chunk.count {
                do throws(HTTPParseError) {
                    let used = try parser.parse(UnsafeRawBufferPointer(rebasing: chunk[offset...])) { event in
                        switch event {
                        case .head(let head): pending = (head.method, head.target, head.headers, head.keepAlive)
                        case .body: break
                        case .end:
                            if let request = pending {
                                completed.append((request.method, request.target, request.headers, request.keepAlive))
                            }
                            pending = nil
                        }
                    }
                    if used == 0 { break }
                    offset += used
                } catch {
                    failure = error
                    return offset
                }
            }
            return offset
        }
        for (method, target, headers, keepAlive) in completed {
            let answer = server.respond(method: method, target: target, headers: headers)
            write(answer, close: !keepAlive)
            if !keepAlive {
                finish()
                return
            }
        }
        if let failure {
            write(.json(failure.statusCode, errorJSON("bad_request", failure.message, false)), close: true)
            finish()
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
        connection.closeAfterFlush()
        server.ended(self)
    }

    func connectionDidClose(_ connection: Connection, reason: CloseReason) {
        server.ended(self)
    }
}

func errorJSON(_ code: String, _ message: String, _ retryable: Bool) -> String {
    "{\"error\":\(jsonString(code)),\"message\":\(jsonString(message)),\"retryable\":\(retryable)}"
}
