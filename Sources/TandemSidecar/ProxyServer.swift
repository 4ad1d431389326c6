import Logging
import TandemConfig
import TandemHTTP
import TandemNet

/// Settings of the proxy path, taken from the configuration by the executable (kept separate from
/// `TandemConfiguration` so the sidecar can be driven by tests without environment variables).
public struct ProxySettings: Sendable {
    public var listenHost = "0.0.0.0"
    public var listenPort: UInt16 = 8080
    public var upstreamHost = "127.0.0.1"
    public var upstreamPort: UInt16 = 3000
    public var limits = HTTPLimits()
    public var headerTimeoutMs: Int64 = 10_000
    public var idleTimeoutMs: Int64 = 60_000
    public var upstreamConnectTimeoutMs: Int64 = 2_000
    public var upstreamResponseTimeoutMs: Int64 = 30_000
    public var maxConnections = 10_000
    /// Above this many buffered bytes on one side, the other side stops being read (TCP backpressure).
    public var bufferHighWaterBytes = 256 * 1024
    /// Idle app connections kept however long they idle; the ones above are closed after `upstreamSurplusIdleMs`.
    public var upstreamIdleFloor = 128
    public var upstreamSurplusIdleMs: Int64 = 5_000
    /// Request bodies held in memory across all client connections (a write's body until it is proposed, a
    /// waiting read's body until it goes to the app) are bounded by the larger of this and 16 bodies of the
    /// largest size (`limits.bodyMaxBytes`); beyond it a body is shed with 503 overloaded.
    public var bodyBudgetFloorBytes = 16 * 1024 * 1024
    /// Read, write or bypass, by method and route rules (TANDEM_WRITE_METHODS, TANDEM_*_ROUTES).
    public var classifier = TandemConfiguration.defaults().classifier

    public init() {}
}

/// The client listener and its sessions: accepts connections up to the limit, and drains them on shutdown.
final class ProxyServer: ListenerDelegate {
    let loop: EventLoop
    let settings: ProxySettings
    let metrics: Metrics
    let pool: UpstreamPool
    let classifier: RequestClassifier
    /// The write methods in lower case, to spot a case variant of one (`post`) with one lookup per request.
    let lowercasedWriteMethods: Set<String>
    let log: Logger
    private(set) var listener: Listener?
    private var sessions: [ObjectIdentifier: ClientSession] = [:]
    private(set) var isDraining = false
    /// Body bytes held across all sessions, and their bound (see `ProxySettings.bodyBudgetFloorBytes`).
    private(set) var bufferedBodyBytes = 0
    let bodyBudgetBytes: Int
    /// The replicated write path and consistent reads; nil only in proxy-only tests.
    var writePath: WritePath?
    var writePathSettings = WritePathSettings()
    /// Rate limits and concurrency towards the app and the log; nil in proxy-only tests.
    var admission: Admission?
    var nodeID = "tandem"
    var onAllSessionsEnded: (() -> Void)?

    init(loop: EventLoop, settings: ProxySettings, metrics: Metrics, health: AppHealth, log: Logger) throws(NetError) {
        self.loop = loop
        self.settings = settings
        self.metrics = metrics
        self.log = log
        self.classifier = settings.classifier
        self.lowercasedWriteMethods = Set(settings.classifier.writeMethods.map { $0.lowercased() })
        let sixteenBodies = Int(clamping: settings.limits.bodyMaxBytes).multipliedReportingOverflow(by: 16)
        self.bodyBudgetBytes = max(
            settings.bodyBudgetFloorBytes, sixteenBodies.overflow ? .max : sixteenBodies.partialValue)
        self.pool = UpstreamPool(
            loop: loop, host: settings.upstreamHost, port: settings.upstreamPort, idleFloor: settings.upstreamIdleFloor,
            surplusIdleMs: settings.upstreamSurplusIdleMs, bufferHighWaterBytes: settings.bufferHighWaterBytes,
            health: health, metrics: metrics)
        let listener = try Listener(loop: loop, host: settings.listenHost, port: settings.listenPort)
        self.listener = listener
        listener.delegate = self
    }

    var port: UInt16 { listener?.port ?? 0 }
    var sessionCount: Int { sessions.count }

    func listener(_ listener: Listener, accepted connection: Connection) {
        metrics.acceptedConnectionsTotal += 1
        guard !isDraining else {
            connection.close()
            return
        }
        guard sessions.count < settings.maxConnections else {
            // At the limit a new connection gets a clear answer instead of a silent wait; it costs one small
            // write, and the connection retains itself only until that is flushed.
            metrics.recordShed("connections")
            connection.write(ClientSession.overloaded("too many connections").bytes(closing: true))
            connection.closeAfterFlush()
            return
        }
        let session = ClientSession(connection: connection, proxy: self)
        sessions[ObjectIdentifier(session)] = session
        connection.delegate = session
        connection.enableReading()
        metrics.openClientConnections = sessions.count
    }

    /// Counts `count` more body bytes held in memory; false (nothing counted) when that would pass the budget.
    func reserveBodyBytes(_ count: Int) -> Bool {
        guard count <= bodyBudgetBytes - bufferedBodyBytes else { return false }
        bufferedBodyBytes += count
        return true
    }

    func releaseBodyBytes(_ count: Int) {
        precondition(count >= 0 && count <= bufferedBodyBytes, "body bytes released that were not reserved")
        bufferedBodyBytes -= count
    }

    func sessionEnded(_ session: ClientSession) {
        guard sessions.removeValue(forKey: ObjectIdentifier(session)) != nil else { return }
        metrics.openClientConnections = sessions.count
        if isDraining && sessions.isEmpty { onAllSessionsEnded?() }
    }

    /// Stops accepting, closes idle connections now, and lets in-flight exchanges finish with `Connection: close`.
    func beginDrain() {
        isDraining = true
        listener?.close()
        listener = nil
        for session in Array(sessions.values) where session.isIdle { session.close() }
        if sessions.isEmpty { onAllSessionsEnded?() }
    }

    /// Ends everything now (the drain bound passed).
    func closeAll() {
        for session in Array(sessions.values) { session.close() }
        pool.closeAll()
    }

    /// Writes the request head as the app receives it: hop-by-hop fields and every client `Tandem-*` field
    /// removed, forwarding fields appended, body framing restated (chunked bodies are re-chunked; Expect is
    /// answered by Tandem itself). `forwardedElement` is `ProxyHeaders.forwardedElement(clientAddress:)`.
    func writeForwardedRequestHead(
        _ head: HTTPRequestHead, clientAddress: String, forwardedElement: String, keepUpgrade: Bool,
        to connection: Connection
    ) {
        writeHead(to: connection) {
            ProxyHeaders.appendForwardedRequestHead(
                head, clientAddress: clientAddress, forwardedElement: forwardedElement, keepUpgrade: keepUpgrade,
                into: &$0)
        }
    }

    /// Writes a response head to a client.
    func writeResponseHead(_ head: HTTPResponseHead, to connection: Connection) {
        writeHead(to: connection) { HTTPSerializer.appendResponseHead(head, into: &$0) }
    }

    /// Writes a head serialized by `serialize` into the shared head buffer (see `writeHead(to:_:)`).
    func writeSerializedHead(to connection: Connection, _ serialize: (inout [UInt8]) -> Void) {
        writeHead(to: connection, serialize)
    }

    /// Serializes a head into `headBuffer` and writes it. One buffer serves every head (the loop is
    /// single-threaded and the bytes are copied out by the write): serializing into a fresh array grew it five or
    /// six times per head, on every request and every response.
    private func writeHead(to connection: Connection, _ serialize: (inout [UInt8]) -> Void) {
        headBuffer.removeAll(keepingCapacity: true)
        serialize(&headBuffer)
        // Written in place: passing the array would copy it out of this class first (a retain and a release).
        // The write only stages the bytes, so nothing reaches `headBuffer` again during it.
        headBuffer.withUnsafeMutableBytes { connection.write(UnsafeRawBufferPointer($0)) }
        // A huge head (up to the header limit) does not keep its memory for the life of the process.
        if headBuffer.capacity > Self.headBufferRetainedBytesMax { headBuffer = [] }
    }

    private var headBuffer: [UInt8] = []
    private static let headBufferRetainedBytesMax = 16 * 1024
}

extension TandemErrorResponse {
    func bytes(closing: Bool) -> [UInt8] {
        var copy = self
        copy.closeConnection = closing
        return copy.bytes
    }

    static func upstreamUnavailable(_ message: String) -> TandemErrorResponse {
        TandemErrorResponse(status: 502, code: "upstream_unavailable", message: message, retryable: true)
    }

    static func badUpstreamResponse(_ message: String) -> TandemErrorResponse {
        TandemErrorResponse(
            status: 502, code: "upstream_unavailable", message: "malformed response from the app: \(message)",
            retryable: false)
    }
}
