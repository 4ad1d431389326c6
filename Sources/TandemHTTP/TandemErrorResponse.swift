// TandemErrorResponse: the JSON error responses Tandem itself produces (README, "How it works"):
// {"error":"<code>","message":"...","retryable":true|false}.

/// An error Tandem answers on its own behalf, and its bytes.
public struct TandemErrorResponse: Sendable, Equatable {
    /// The HTTP status, e.g. 503.
    public var status: Int
    /// The stable machine-readable code, e.g. `no_leader`.
    public var code: String
    /// A human sentence.
    public var message: String
    /// Whether the same request may succeed if retried.
    public var retryable: Bool
    /// `Retry-After` in whole seconds, when the client should wait before retrying.
    public var retryAfterSeconds: Int?
    /// More fields (e.g. `RateLimit-Policy`), appended after the standard ones.
    public var extraHeaders: HTTPHeaders
    /// Whether to close the connection after this response (always after malformed HTTP).
    public var closeConnection: Bool

    /// Creates an error response.
    public init(
        status: Int, code: String, message: String, retryable: Bool, retryAfterSeconds: Int? = nil,
        extraHeaders: HTTPHeaders = HTTPHeaders(), closeConnection: Bool = false
    ) {
        precondition(status >= 400 && status <= 599, "an error response has a 4xx or 5xx status")
        precondition(retryAfterSeconds.map { $0 >= 0 } ?? true, "Retry-After cannot be negative")
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retryAfterSeconds = retryAfterSeconds
        self.extraHeaders = extraHeaders
        self.closeConnection = closeConnection
    }

    /// The answer to a request the parser rejected: its status (400, 413, 414, 431, 501, ...), the code
    /// `body_too_large` for 413 and `bad_request` otherwise, and the connection closed after it.
    public init(parseError: HTTPParseError) {
        let status = parseError.statusCode
        self.init(
            status: status, code: status == 413 ? "body_too_large" : "bad_request", message: parseError.message,
            retryable: false, closeConnection: true)
    }

    /// The JSON body.
    public var body: [UInt8] { Self.jsonBody(code: code, message: message, retryable: retryable) }

    /// The whole response: status line, `Content-Type: application/json`, `Content-Length`, `Retry-After` when
    /// set, the extra fields, `Connection: close` when asked, and the body.
    public var bytes: [UInt8] {
        let body = self.body
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.count))
        if let retryAfterSeconds { headers.add(name: "Retry-After", value: String(retryAfterSeconds)) }
        for (name, value) in extraHeaders { headers.add(name: name, value: value) }
        if closeConnection { headers.add(name: "Connection", value: "close") }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(128 + body.count)
        HTTPSerializer.appendResponseHead(
            HTTPResponseHead(status: status, headers: headers, keepAlive: !closeConnection), into: &buffer)
        buffer.append(contentsOf: body)
        return buffer
    }

    /// `{"error":"<code>","message":"...","retryable":true|false}` with both strings JSON-escaped.
    public static func jsonBody(code: String, message: String, retryable: Bool) -> [UInt8] {
        var json: [UInt8] = []
        json.reserveCapacity(48 + code.utf8.count + message.utf8.count)
        json.append(contentsOf: #"{"error":"#.utf8)
        appendJSONString(code, into: &json)
        json.append(contentsOf: #","message":"#.utf8)
        appendJSONString(message, into: &json)
        json.append(contentsOf: #","retryable":"#.utf8)
        json.append(contentsOf: (retryable ? "true" : "false").utf8)
        json.append(UInt8(ascii: "}"))
        return json
    }

    /// Appends a JSON string literal (RFC 8259 section 7): quote, backslash and every control character are
    /// escaped; other characters, including non-ASCII, are written as UTF-8.
    public static func appendJSONString(_ text: String, into json: inout [UInt8]) {
        json.append(ASCII.quote)
        for byte in text.utf8 {
            switch byte {
            case ASCII.quote: json.append(contentsOf: #"\""#.utf8)
            case ASCII.backslash: json.append(contentsOf: #"\\"#.utf8)
            case ASCII.lineFeed: json.append(contentsOf: #"\n"#.utf8)
            case ASCII.carriageReturn: json.append(contentsOf: #"\r"#.utf8)
            case ASCII.tab: json.append(contentsOf: #"\t"#.utf8)
            case 0x08: json.append(contentsOf: #"\b"#.utf8)
            case 0x0C: json.append(contentsOf: #"\f"#.utf8)
            case 0x00..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                json.append(contentsOf: #"\u00"#.utf8)
                json.append(hex[Int(byte >> 4)])
                json.append(hex[Int(byte & 0x0F)])
            default: json.append(byte)
            }
        }
        json.append(ASCII.quote)
    }
}
