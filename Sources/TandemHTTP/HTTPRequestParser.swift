// HTTPRequestParser: requests from clients, parsed strictly (RFC 9112 sections 3, 5, 6, 7; RFC 9110).

/// A request head, as parsed or as built for sending.
public struct HTTPRequestHead: Sendable, Equatable {
    /// The method, case-sensitive (`GET`, `POST`, ...).
    public var method: String
    /// The request target exactly as received: origin-form `/p?q`, absolute-form `http://h/p`,
    /// authority-form `h:443` (CONNECT only) or `*` (OPTIONS only).
    public var target: String
    /// The version.
    public var version: HTTPVersion
    /// The header fields, in received order, names as received.
    public var headers: HTTPHeaders
    /// Whether the client wants the connection kept open after this exchange.
    public var keepAlive: Bool
    /// How the body is delimited.
    public var framing: BodyFraming
    /// `Expect: 100-continue` on an HTTP/1.1 request with content to send (chunked, or a non-zero
    /// Content-Length): answer `100 Continue` (or a final status) before the client sends the body.
    public var expectsContinue: Bool
    /// The `Upgrade` field when `Connection` names `upgrade` (HTTP/1.1 only, RFC 9110 section 7.8), else nil.
    public var upgrade: String? {
        get { hasUpgrade ? upgradeValue : nil }
        set {
            hasUpgrade = newValue != nil
            upgradeValue = newValue ?? ""
        }
    }
    // Stored without an Optional: with an optional String among its fields, every initialization of the head
    // built it twice, copying and destroying the whole head (two reference counts per array and String).
    private var upgradeValue: String
    private var hasUpgrade: Bool

    /// Creates a head; the defaults describe a keep-alive HTTP/1.1 request without a body.
    public init(
        method: String, target: String, version: HTTPVersion = .http1_1, headers: HTTPHeaders = HTTPHeaders(),
        keepAlive: Bool = true, framing: BodyFraming = .none, expectsContinue: Bool = false, upgrade: String? = nil
    ) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keepAlive = keepAlive
        self.framing = framing
        self.expectsContinue = expectsContinue
        self.hasUpgrade = upgrade != nil
        self.upgradeValue = upgrade ?? ""
    }

    /// The path of the target without its query: what route rules match against.
    public var path: Substring { requestPath(ofTarget: target) }
}

/// An incremental, strict HTTP/1.1 request parser: a value type fed contiguous byte chunks.
///
/// It reports `.head`, then `.body` slices, then `.end` through the callback, and stops at the end of each
/// message so that a pipelined next request stays in the caller's buffer until the caller is ready for it.
/// After a thrown error it is `.failed` for good: answer `error.statusCode` and close the connection.
public struct HTTPRequestParser: Sendable {
    private var engine: HTTPMessageParser<RequestRole>

    /// Creates a parser enforcing `limits`.
    public init(limits: HTTPLimits = HTTPLimits()) {
        engine = HTTPMessageParser(role: RequestRole(), limits: limits)
    }

    /// The limits this parser enforces.
    public var limits: HTTPLimits { engine.limits }

    /// Consumes bytes through the end of at most one request and returns how many it consumed. It returns fewer
    /// than `bytes.count` only when a request ended: the rest is the next request (or, after an upgrade the
    /// caller accepts, tunnel bytes). Body events point into `bytes` and are valid only during the callback.
    public mutating func parse(
        _ bytes: UnsafeRawBufferPointer, _ onEvent: (HTTPRequestEvent) -> Void
    ) throws(HTTPParseError) -> Int {
        try engine.parse(bytes, onEvent)
    }

    /// The client closed its side. Throws `.unexpectedEOF` when a request was cut short; between requests, a
    /// close is normal and nothing happens.
    public mutating func finishAtEOF() throws(HTTPParseError) {
        try engine.finishAtEOF { _ in }
    }

    /// Bytes of a partial line held between calls; bounded by the limit of the section being read.
    public var bufferedLineBytes: Int { engine.bufferedLineBytes }

    /// Memory held for split lines between calls (for tests of the retention bound).
    var lineBufferCapacityBytes: Int { engine.lineBufferCapacityBytes }

    /// Where the parser is: idle between requests, in a head, in a body, or failed.
    public var phase: HTTPParserPhase { engine.phase }
    /// True between requests with no byte of the next one consumed.
    public var isIdle: Bool { engine.phase == .idle }

    /// Drops any partial request and returns to idle (for a caller that abandons a message it no longer wants).
    public mutating func reset() { engine.reset() }
}

struct RequestRole: HTTPMessageRole {
    static var startLineName: String { "request line" }
    private var method = ""
    private var target = ""
    private var version = HTTPVersion.http1_1

    func checkCanStartMessage() throws(HTTPParseError) {}

    mutating func onStartLine(_ line: UnsafeRawBufferPointer) throws(HTTPParseError) {
        guard let firstSpace = line.firstOffset(of: ASCII.space), firstSpace > 0 else {
            throw HTTPParseError(.invalidMethod, "the request line does not start with a method and a space")
        }
        let methodBytes = line.slice(0..<firstSpace)
        guard methodBytes.allSatisfy(isTokenCharacter) else {
            throw HTTPParseError(.invalidMethod, "the method contains a character that is not a token")
        }
        guard let lastSpace = line.lastOffset(of: ASCII.space), lastSpace > firstSpace else {
            throw HTTPParseError(.invalidVersion, "the request line has no HTTP version")
        }
        version = try parseHTTPVersion(line.slice((lastSpace + 1)..<line.count))
        let targetBytes = line.slice((firstSpace + 1)..<lastSpace)
        // A connection's requests nearly always repeat their method: keep the String when the bytes are the same.
        if !methodBytes.equalsUTF8(of: method) { method = methodBytes.asciiString() }
        try checkTarget(targetBytes, method: method)
        target = targetBytes.asciiString()
    }

    @inline(__always)
    mutating func onHeadComplete(
        headers: consuming HTTPHeaders, plan: inout BodyPlan, after: inout AfterMessage
    ) throws(HTTPParseError) -> HTTPRequestHead {
        let fields = FramingFields(scanning: headers)
        plan = try fields.declaredFraming(version: version, headers: headers) ?? .none
        try checkHost(fields.host, in: headers)
        // A client waiting for 100 Continue only needs it when it has content to send.
        let hasContent = plan != .none && plan != .contentLength(0)
        let expectsContinue =
            try checkExpectation(fields.expect.isEmpty ? [] : headers.values(name: "Expect")) && hasContent
        let framing: BodyFraming
        switch plan {
        case .none: framing = .none
        case .contentLength(let length): framing = .contentLength(length)
        case .chunked: framing = .chunked
        case .untilClose: preconditionFailure("requests are never delimited by close (RFC 9112 section 6.3)")
        }
        var upgrade: String?
        if version == .http1_1 && fields.connectionUpgrade, let position = fields.upgrade.first {
            upgrade = headers.value(at: position)
        }
        after = .nextMessage
        return HTTPRequestHead(
            method: method, target: target, version: version, headers: headers,
            keepAlive: fields.keepAlive(version: version), framing: framing,
            expectsContinue: expectsContinue, upgrade: upgrade)
    }

    mutating func onMessageEnd() {}

    /// A request's head is kept for its whole exchange: its storage is not free when the next request starts.
    static var reusesFieldStorage: Bool { false }

    /// RFC 9112 section 3.2: HTTP/1.1 needs exactly one Host; HTTP/1.0 at most one. The value must be a
    /// uri-host with an optional port (or empty).
    private func checkHost(_ host: FieldOccurrences, in headers: HTTPHeaders) throws(HTTPParseError) {
        guard host.count <= 1 else {
            throw HTTPParseError(.multipleHost, "more than one Host field")
        }
        guard let position = host.first else {
            if version == .http1_1 { throw HTTPParseError(.missingHost, "an HTTP/1.1 request without Host") }
            return
        }
        try headers.withValue(at: position) { host throws(HTTPParseError) in
            for byte in host where !isHostCharacter(byte) {
                throw HTTPParseError(.invalidHost, "the Host field has a character not allowed in a host")
            }
            // RFC 9112 section 3.2.2: with an absolute-form target the target's authority is the host, and Host is
            // to be ignored. Tandem forwards both unchanged, so an app (or a route rule) that reads Host could pick
            // another site than the one the request names: a disagreement is refused, as haproxy does.
            if let authority = absoluteFormAuthority(target),
                !withUTF8Bytes(String(authority), { asciiCaseInsensitiveEquals($0, host) })
            {
                throw HTTPParseError(.invalidHost, "the Host field disagrees with the absolute-form request target")
            }
        }
    }

    /// `100-continue` is the only expectation defined (RFC 9110 section 10.1.1); HTTP/1.0 requests must have it
    /// ignored. Any other expectation is refused with 417 rather than silently ignored.
    private func checkExpectation(_ expectValues: [String]) throws(HTTPParseError) -> Bool {
        guard !expectValues.isEmpty else { return false }
        let all100Continue = expectValues.allSatisfy {
            asciiCaseInsensitiveEquals(trimmingOptionalWhitespace(Substring($0)), "100-continue")
        }
        guard all100Continue else {
            throw HTTPParseError(.unsupportedExpectation, "an expectation other than 100-continue")
        }
        return version == .http1_1
    }
}

/// Checks the characters and the form of a request target (RFC 9112 section 3.2): visible ASCII except `#`
/// (fragments are never sent) and `\` (no URI has it, and servers that turn it into `/` disagree with route
/// rules about the path); origin-form for every method but CONNECT, absolute-form with an http(s) scheme,
/// authority-form only for CONNECT, asterisk-form only for OPTIONS.
func checkTarget(_ target: UnsafeRawBufferPointer, method: String) throws(HTTPParseError) {
    guard !target.isEmpty else { throw HTTPParseError(.invalidTarget, "the request target is empty") }
    for byte in target where byte < 0x21 || byte > 0x7E || byte == UInt8(ascii: "#") || byte == ASCII.backslash {
        throw HTTPParseError(.invalidTarget, "the request target has a character not allowed in a URI")
    }
    if method == "CONNECT" {
        guard isAuthorityForm(target) else {
            throw HTTPParseError(.invalidTarget, "CONNECT needs an authority-form target (host:port)")
        }
        return
    }
    if target[0] == UInt8(ascii: "/") { return }
    if target.equalsASCII("*") {
        guard method == "OPTIONS" else {
            throw HTTPParseError(.invalidTarget, "the asterisk-form target is only for OPTIONS")
        }
        return
    }
    let text = target.asciiString().lowercased()
    for scheme in ["http://", "https://"] where text.hasPrefix(scheme) {
        let authority = text.dropFirst(scheme.count)
        if let first = authority.first, first != "/" { return }
    }
    throw HTTPParseError(.invalidTarget, "the request target is not origin-form or an http(s) absolute URI")
}

/// The authority of an absolute-form target (`http://h:8080/p` gives `h:8080`), nil for any other form.
func absoluteFormAuthority(_ target: String) -> Substring? {
    guard let first = target.utf8.first, first != UInt8(ascii: "/"), let colon = target.firstIndex(of: ":") else {
        return nil
    }
    let rest = target[target.index(after: colon)...]
    guard rest.hasPrefix("//") else { return nil }
    return rest.dropFirst(2).prefix { $0 != "/" && $0 != "?" }
}

private func isAuthorityForm(_ target: UnsafeRawBufferPointer) -> Bool {
    guard let colon = target.lastOffset(of: ASCII.colon), colon > 0 else { return false }
    let port = target.slice((colon + 1)..<target.count)
    guard !port.isEmpty, port.count <= 5, port.allSatisfy(ASCII.isDigit) else { return false }
    return target.slice(0..<colon).allSatisfy { isHostCharacter($0) && $0 != UInt8(ascii: "@") }
}

/// Characters of uri-host and port (RFC 3986: reg-name, IP-literal, pct-encoded) plus the port colon:
/// ALPHA, DIGIT and `-._~!$&'()*+,;=:[]%`, as two 64-bit masks (this runs for every byte of every Host).
@inline(__always)
func isHostCharacter(_ byte: UInt8) -> Bool {
    let lowMask: UInt64 = 0x2FFF_7FF2_0000_0000
    let highMask: UInt64 = 0x47FF_FFFE_AFFF_FFFE
    if byte < 64 { return lowMask & (1 << UInt64(byte)) != 0 }
    if byte < 128 { return highMask & (1 << UInt64(byte - 64)) != 0 }
    return false
}

/// The path part of a request target, without query: `/a/b` for `/a/b?x`, and for an absolute-form target the
/// path after the authority (`/` when it has none). The asterisk and authority forms are returned unchanged.
public func requestPath(ofTarget target: String) -> Substring {
    let utf8 = target.utf8
    // The origin form, nearly every request: up to the first `?`, found with memchr over the bytes (targets are
    // ASCII) instead of over Characters or the generic UTF-8 view.
    if utf8.first == UInt8(ascii: "/") {
        guard let query = withUTF8Bytes(target, { $0.firstOffset(of: UInt8(ascii: "?")) }) else { return target[...] }
        return target[..<utf8.index(utf8.startIndex, offsetBy: query)]
    }
    var rest = Substring(target)
    if !rest.hasPrefix("/") {
        if let colon = rest.firstIndex(of: ":"), rest[colon...].hasPrefix("://") {
            let afterAuthority = rest[rest.index(colon, offsetBy: 3)...]
            guard let slash = afterAuthority.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return "/" }
            rest = afterAuthority[slash...]
            if rest.hasPrefix("?") { return "/" }
        } else {
            return rest
        }
    }
    if let query = rest.firstIndex(of: "?") { return rest[..<query] }
    return rest
}
