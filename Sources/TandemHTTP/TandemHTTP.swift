// TandemHTTP: Tandem's own strict HTTP/1.1 parser and serializer, plus the pure helpers the proxy needs
// (hop-by-hop header rules, forwarding headers, Tandem's JSON error responses and the route matcher).
//
// What it owns: turning bytes into request and response heads and body events (RFC 9112 framing, RFC 9110
// semantics), and turning heads back into bytes. Every ambiguous framing that could let a front end and a
// back end disagree on where a message ends is rejected with a typed error, never "fixed up".
//
// What it must never do: any I/O, read a clock, allocate per byte on the hot path, copy body bytes, or buffer
// more than its limits allow. It knows nothing of libevent, sockets or replication; the proxy drives it.
//
// How a connection drives a parser, one contiguous input chunk at a time:
//
//     let used = try parser.parse(chunk) { event in ... }   // .head, then .body slices, then .end
//     drain `used` bytes from the input buffer. `used < chunk.count` means a message ended and the rest is the
//     next (pipelined) message: call parse again when ready for it. On a thrown HTTPParseError answer
//     `TandemErrorResponse(parseError:)` (error.statusCode) and close: the parser stays `.failed`.

/// The HTTP version of a message. Only HTTP/1.0 and HTTP/1.1 are spoken.
public enum HTTPVersion: Sendable, Hashable, CustomStringConvertible {
    case http1_0
    case http1_1

    /// The version as it appears on the wire, e.g. `HTTP/1.1`.
    public var description: String {
        switch self {
        case .http1_0: return "HTTP/1.0"
        case .http1_1: return "HTTP/1.1"
        }
    }
}

/// Bounds on everything the parsers buffer or accept, checked once at creation (the fields are constants). Each
/// bound has a defined answer at the bound: the parser throws an `HTTPParseError` whose `statusCode` is what the
/// proxy answers (414, 431, 413, 400).
public struct HTTPLimits: Sendable, Hashable {
    /// Maximum bytes of the request line or status line, including its CRLF (and any empty lines before it).
    public let requestLineMaxBytes: Int
    /// Maximum bytes of the header section after the start line, including every CRLF and the final empty line.
    public let headerBlockMaxBytes: Int
    /// Maximum number of header fields (and, separately, of trailer fields).
    public let headerCountMax: Int
    /// Maximum bytes of message content (the decoded body, without chunk framing).
    public let bodyMaxBytes: Int64
    /// Maximum bytes of one chunk-size line, including extensions and its CRLF.
    public let chunkLineMaxBytes: Int
    /// Maximum bytes of the trailer section, including every CRLF and the final empty line.
    public let trailerBlockMaxBytes: Int

    /// Creates limits; the defaults are those of the product contract (8 KiB request line, 64 KiB header block,
    /// 100 fields, 16 MiB body).
    public init(
        requestLineMaxBytes: Int = 8192,
        headerBlockMaxBytes: Int = 65536,
        headerCountMax: Int = 100,
        bodyMaxBytes: Int64 = 16 * 1024 * 1024,
        chunkLineMaxBytes: Int = 4096,
        trailerBlockMaxBytes: Int = 16384
    ) {
        // A line limit below the shortest legal line would make every message fail; that is a configuration bug.
        precondition(requestLineMaxBytes >= 16, "requestLineMaxBytes must allow a minimal request line")
        precondition(headerBlockMaxBytes >= 2, "headerBlockMaxBytes must allow the empty line ending the head")
        precondition(headerCountMax >= 1, "headerCountMax must allow at least one field (Host)")
        precondition(bodyMaxBytes >= 0, "bodyMaxBytes must not be negative")
        precondition(chunkLineMaxBytes >= 3, "chunkLineMaxBytes must allow \"0\\r\\n\"")
        precondition(trailerBlockMaxBytes >= 2, "trailerBlockMaxBytes must allow the empty line ending trailers")
        self.requestLineMaxBytes = requestLineMaxBytes
        self.headerBlockMaxBytes = headerBlockMaxBytes
        self.headerCountMax = headerCountMax
        self.bodyMaxBytes = bodyMaxBytes
        self.chunkLineMaxBytes = chunkLineMaxBytes
        self.trailerBlockMaxBytes = trailerBlockMaxBytes
    }

    /// Limits for responses read from the local app: the same head limits, but no bound on the body, because
    /// responses are streamed through bounded buffers and never held whole.
    public static var upstreamResponse: HTTPLimits {
        HTTPLimits(bodyMaxBytes: Int64.max)
    }
}

/// How the body of a request is delimited (RFC 9112 section 6.3).
public enum BodyFraming: Sendable, Hashable {
    /// No body at all.
    case none
    /// Exactly this many bytes follow the head.
    case contentLength(Int64)
    /// `Transfer-Encoding: chunked`.
    case chunked
}

/// How the body of a response is delimited (RFC 9112 section 6.3).
public enum ResponseFraming: Sendable, Hashable {
    /// No body: a response to HEAD, a 1xx, 204 or 304 response, or a 2xx response to CONNECT.
    case none
    /// Exactly this many bytes follow the head.
    case contentLength(Int64)
    /// `Transfer-Encoding: chunked`.
    case chunked
    /// No framing header: the body runs until the server closes the connection.
    case untilClose
}

/// What a parser reports while it consumes bytes. `Head` is `HTTPRequestHead` or `HTTPResponseHead`.
public enum HTTPParserEvent<Head: Sendable> {
    /// The head is complete and valid; body events (if any) and then `end` follow.
    case head(Head)
    /// Some body bytes (chunk framing removed), never empty. The buffer points into the caller's input and is
    /// valid only for the duration of the callback: the parser never copies body bytes.
    case body(UnsafeRawBufferPointer)
    /// The message is complete. `trailers` is non-nil only for a chunked body that carried trailer fields.
    case end(trailers: HTTPHeaders?)
}

/// Events of `HTTPRequestParser`.
public typealias HTTPRequestEvent = HTTPParserEvent<HTTPRequestHead>
/// Events of `HTTPResponseParser`.
public typealias HTTPResponseEvent = HTTPParserEvent<HTTPResponseHead>

/// Where a parser is within the message stream, for the caller's timeouts and connection decisions.
public enum HTTPParserPhase: Sendable, Hashable {
    /// Between messages, no byte of the next one consumed (the idle keep-alive timeout applies).
    case idle
    /// Some bytes of a head consumed but the head is not complete (the header timeout applies).
    case head
    /// The head was reported; body bytes or the end are pending.
    case body
    /// The connection switched protocols (101, or a 2xx answer to CONNECT): the remaining bytes are not HTTP.
    case tunnel
    /// A parse error was thrown; the connection must be closed. Further `parse` calls rethrow the same error.
    case failed
}
