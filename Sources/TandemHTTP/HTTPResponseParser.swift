// HTTPResponseParser: responses from the local app, parsed strictly, with the framing rules that depend on
// the request they answer (RFC 9112 section 6.3).

/// A response head, as parsed or as built for sending.
public struct HTTPResponseHead: Sendable, Equatable {
    /// The status code, 100...999.
    public var status: Int
    /// The reason phrase (may be empty; it carries no meaning).
    public var reason: String
    /// The version.
    public var version: HTTPVersion
    /// The header fields, in received order, names as received.
    public var headers: HTTPHeaders
    /// Whether the server keeps the connection open after this response.
    public var keepAlive: Bool
    /// How the body is delimited.
    public var framing: ResponseFraming
    /// True when the connection stops being HTTP after this response: `101 Switching Protocols`, or a 2xx
    /// answer to CONNECT.
    public var switchesProtocols: Bool

    /// Creates a head; the defaults describe a keep-alive HTTP/1.1 response without a body.
    public init(
        status: Int, reason: String? = nil, version: HTTPVersion = .http1_1, headers: HTTPHeaders = HTTPHeaders(),
        keepAlive: Bool = true, framing: ResponseFraming = .none, switchesProtocols: Bool = false
    ) {
        self.status = status
        self.reason = reason ?? HTTPStatus.reasonPhrase(status)
        self.version = version
        self.headers = headers
        self.keepAlive = keepAlive
        self.framing = framing
        self.switchesProtocols = switchesProtocols
    }

    /// An interim response (1xx other than 101, e.g. `100 Continue`): the final response to the same request
    /// follows it.
    public var isInterim: Bool { status >= 100 && status < 200 && status != 101 }
}

/// An incremental, strict HTTP/1.1 response parser. Tell it, in order, the method of every request sent on the
/// connection (`expect(requestMethod:)`), because the framing of a response depends on it: HEAD responses, 1xx,
/// 204 and 304 have no body, and a 2xx answer to CONNECT starts a tunnel.
///
/// Interim responses are reported as their own message (`.head` with `isInterim`, then `.end`); the final
/// response to the same request follows. A response without framing is delimited by close (`.untilClose`): call
/// `finishAtEOF` when the connection closes to receive its `.end`.
public struct HTTPResponseParser: Sendable {
    /// The most requests that may await a response on one connection (pipelining depth).
    public static let pendingRequestsMax = 256
    private var engine: HTTPMessageParser<ResponseRole>

    /// Creates a parser enforcing `limits` (by default no body bound: responses are streamed).
    public init(limits: HTTPLimits = .upstreamResponse) {
        engine = HTTPMessageParser(role: ResponseRole(), limits: limits)
    }

    /// The limits this parser enforces.
    public var limits: HTTPLimits { engine.limits }

    /// Records that a request with this method was sent; responses are matched to requests in order.
    public mutating func expect(requestMethod: String) {
        precondition(
            engine.role.pendingRequests.count < Self.pendingRequestsMax,
            "more than \(Self.pendingRequestsMax) requests in flight on one connection")
        engine.role.pendingRequests.append(RequestKind(method: requestMethod))
    }

    /// How many sent requests still await their final response.
    public var pendingRequestCount: Int { engine.role.pendingRequests.count }

    /// Trades the storage of the field list for `other`'s between responses, so that the storage of one
    /// exchange's parser serves the next one's heads (a proxy creates a parser per exchange). Both lists are
    /// empty; in the middle of a response, or when either has fields, nothing happens.
    public mutating func exchangeFieldStorage(with other: inout HTTPHeaders) {
        engine.exchangeFieldStorage(with: &other)
    }

    /// Where the field bytes are stored and how many bytes the storage holds (for tests of its reuse).
    var fieldStorage: (address: UnsafeRawPointer?, capacityBytes: Int) { engine.fieldStorage }

    /// Consumes bytes through the end of at most one response and returns how many it consumed (fewer than
    /// `bytes.count` only when a response ended). Throws `.unexpectedResponse` for bytes no request asked for.
    public mutating func parse(
        _ bytes: UnsafeRawBufferPointer, _ onEvent: (HTTPResponseEvent) -> Void
    ) throws(HTTPParseError) -> Int {
        try engine.parse(bytes, onEvent)
    }

    /// The server closed the connection: ends a close-delimited body (reporting `.end`), does nothing between
    /// responses, and throws `.unexpectedEOF` when a response was cut short.
    public mutating func finishAtEOF(_ onEvent: (HTTPResponseEvent) -> Void) throws(HTTPParseError) {
        try engine.finishAtEOF(onEvent)
    }

    /// Bytes of a partial line held between calls; bounded by the limit of the section being read.
    public var bufferedLineBytes: Int { engine.bufferedLineBytes }

    /// Where the parser is: idle between responses, in a head, in a body, tunnelling, or failed.
    public var phase: HTTPParserPhase { engine.phase }
    /// True between responses with no byte of the next one consumed.
    public var isIdle: Bool { engine.phase == .idle }

    /// Drops any partial response and every pending request, and returns to idle.
    public mutating func reset() {
        engine.reset()
        engine.role.pendingRequests.removeAll()
    }
}

/// What about a request decides how its response is framed.
enum RequestKind: Equatable, Sendable {
    case head
    case connect
    case other

    init(method: String) {
        switch method {
        case "HEAD": self = .head
        case "CONNECT": self = .connect
        default: self = .other
        }
    }
}

/// The kinds of the requests awaiting their responses, oldest first. A connection nearly always has one request in
/// flight: it is kept inline, and an array is allocated only for the pipelined ones after it (an array for the one
/// request cost an allocation per exchange).
struct PendingRequests {
    /// The oldest request, nil when none is pending.
    private(set) var first: RequestKind?
    /// The requests after the first, oldest first. Invariant: empty while `first` is nil.
    private var later: [RequestKind] = []

    var count: Int { first == nil ? 0 : 1 + later.count }
    var isEmpty: Bool { first == nil }

    mutating func append(_ kind: RequestKind) {
        if first == nil {
            first = kind
        } else {
            later.append(kind)
        }
    }

    mutating func removeFirst() {
        precondition(first != nil, "no request is pending")
        first = later.isEmpty ? nil : later.removeFirst()
    }

    mutating func removeAll() {
        first = nil
        later.removeAll()
    }
}

struct ResponseRole: HTTPMessageRole {
    static var startLineName: String { "status line" }
    // Invariant: pendingRequests.count <= HTTPResponseParser.pendingRequestsMax (checked in `expect`).
    var pendingRequests = PendingRequests()
    private var status = 0
    private var reason = ""
    private var version = HTTPVersion.http1_1
    private var isInterim = false

    func checkCanStartMessage() throws(HTTPParseError) {
        guard !pendingRequests.isEmpty else {
            throw HTTPParseError(.unexpectedResponse, "the server sent bytes while no request was outstanding")
        }
    }

    /// `HTTP-version SP 3DIGIT SP [reason-phrase]`; a missing SP after the code is tolerated since it cannot
    /// change the framing.
    mutating func onStartLine(_ line: UnsafeRawBufferPointer) throws(HTTPParseError) {
        let malformed = HTTPParseError(.invalidStatusLine, "the status line is malformed")
        guard line.count >= 12, line[8] == ASCII.space else { throw malformed }
        version = try parseHTTPVersion(line.slice(0..<8))
        let code = line.slice(9..<12)
        guard code.allSatisfy(ASCII.isDigit), code[0] != UInt8(ascii: "0") else { throw malformed }
        status = code.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        guard status >= 100 else { throw malformed }
        guard line.count > 12 else {
            reason = ""
            return
        }
        guard line[12] == ASCII.space else { throw malformed }
        let phrase = line.slice(13..<line.count)
        let valid = phrase.allSatisfy {
            $0 == ASCII.tab || ($0 >= ASCII.space && $0 != ASCII.delete)
        }
        guard valid else { throw malformed }
        // An app's responses nearly always repeat their reason: keep the String when the bytes are the same.
        if !phrase.equalsUTF8(of: reason) { reason = String(decoding: phrase, as: UTF8.self) }
    }

    @inline(__always)
    mutating func onHeadComplete(
        headers: consuming HTTPHeaders, plan: inout BodyPlan, after: inout AfterMessage
    ) throws(HTTPParseError) -> HTTPResponseHead {
        let fields = FramingFields(scanning: headers)
        // Validate the framing fields even when the status says there is no body: a response carrying both
        // Content-Length and Transfer-Encoding is broken whatever it answers.
        let declared = try fields.declaredFraming(version: version, headers: headers)
        guard let request = pendingRequests.first else { preconditionFailure("checked before the message started") }
        isInterim = status >= 100 && status < 200 && status != 101
        let switchesProtocols = status == 101 || (request == .connect && status >= 200 && status < 300)
        if switchesProtocols || isInterim || request == .head || status == 204 || status == 304 {
            plan = .none
        } else {
            plan = declared ?? .untilClose
        }
        let framing: ResponseFraming
        switch plan {
        case .none: framing = .none
        case .contentLength(let length): framing = .contentLength(length)
        case .chunked: framing = .chunked
        case .untilClose: framing = .untilClose
        }
        let keepAlive = plan != .untilClose && !switchesProtocols && fields.keepAlive(version: version)
        after = switchesProtocols ? .tunnel : .nextMessage
        return HTTPResponseHead(
            status: status, reason: reason, version: version, headers: headers, keepAlive: keepAlive,
            framing: framing, switchesProtocols: switchesProtocols)
    }

    /// A proxy writes a response's head out during its event and drops it: the next response's head is parsed
    /// into the same storage (two allocations and two frees fewer per response).
    static var reusesFieldStorage: Bool { true }

    mutating func onMessageEnd() {
        // An interim response leaves its request waiting for the final one.
        if !isInterim { pendingRequests.removeFirst() }
    }
}
