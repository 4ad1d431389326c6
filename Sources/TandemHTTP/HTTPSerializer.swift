// HTTPSerializer: heads and chunk framing back to bytes. It writes exactly the fields it is given (the proxy
// decides the framing fields, see `ProxyHeaders.setFraming`), appending into a caller's buffer so that one
// write can carry a head and the start of a body.

/// Reason phrases for the status codes Tandem produces or commonly forwards.
public enum HTTPStatus {
    /// The standard reason phrase of a status code, or an empty string for an unknown one.
    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 101: return "Switching Protocols"
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 206: return "Partial Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 304: return "Not Modified"
        case 307: return "Temporary Redirect"
        case 308: return "Permanent Redirect"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 411: return "Length Required"
        case 412: return "Precondition Failed"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 417: return "Expectation Failed"
        case 422: return "Unprocessable Content"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return ""
        }
    }
}

extension [UInt8] {
    /// Appends `HTTP/1.0` or `HTTP/1.1`.
    mutating func appendVersion(_ version: HTTPVersion) {
        switch version {
        case .http1_0: appendASCII("HTTP/1.0")
        case .http1_1: appendASCII("HTTP/1.1")
        }
    }
}

/// Turns heads and chunk framing into bytes.
public enum HTTPSerializer {
    static let crlf: [UInt8] = [ASCII.carriageReturn, ASCII.lineFeed]

    /// The bytes of `HTTP/1.1 100 Continue`, sent before reading the body of an `Expect: 100-continue` request.
    public static let continueResponse: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)

    /// The CRLF that follows the data of every chunk.
    public static let chunkTerminator: [UInt8] = crlf

    /// Appends `method SP target SP version CRLF`, the fields and the empty line. The method must be a token
    /// and the target visible ASCII; anything else is a programmer error (it could split the request).
    public static func appendRequestHead(_ head: HTTPRequestHead, into buffer: inout [UInt8]) {
        precondition(isValidFieldName(head.method), "invalid method \(head.method.debugDescription)")
        precondition(isValidRequestTarget(head.target), "invalid request target")
        buffer.appendUTF8(head.method)
        buffer.append(ASCII.space)
        buffer.appendUTF8(head.target)
        buffer.append(ASCII.space)
        buffer.appendVersion(head.version)
        buffer.appendCRLF()
        appendFields(head.headers, into: &buffer)
    }

    /// Appends `version SP status SP reason CRLF`, the fields and the empty line.
    public static func appendResponseHead(_ head: HTTPResponseHead, into buffer: inout [UInt8]) {
        appendStatusLine(status: head.status, reason: head.reason, version: head.version, into: &buffer)
        appendFields(head.headers, into: &buffer)
    }

    /// Appends `version SP status SP reason CRLF` alone, for a head whose fields the caller appends one by one
    /// (`appendField`) before `appendEndOfHead`.
    public static func appendStatusLine(
        status: Int, reason: String, version: HTTPVersion = .http1_1, into buffer: inout [UInt8]
    ) {
        precondition(status >= 100 && status <= 999, "status \(status) is not three digits")
        precondition(isSafeFieldValue(reason), "reason phrase contains CR, LF or NUL")
        buffer.appendVersion(version)
        buffer.append(ASCII.space)
        buffer.append(UInt8(ascii: "0") + UInt8(status / 100))
        buffer.append(UInt8(ascii: "0") + UInt8(status / 10 % 10))
        buffer.append(UInt8(ascii: "0") + UInt8(status % 10))
        buffer.append(ASCII.space)
        buffer.appendUTF8(reason)
        buffer.appendCRLF()
    }

    /// Appends one field line `name: value CRLF`. The name must be a token and the value must not contain CR, LF
    /// or NUL; anything else is a programmer error that could split the message, so it traps.
    public static func appendField(name: String, value: String, into buffer: inout [UInt8]) {
        precondition(isValidFieldName(name), "invalid header field name \(name.debugDescription)")
        precondition(isSafeFieldValue(value), "header field value contains CR, LF or NUL")
        appendValidatedField(name: name, value: value, into: &buffer)
    }

    /// `appendField` for a field whose name and value were checked already.
    static func appendValidatedField(name: String, value: String, into buffer: inout [UInt8]) {
        buffer.appendUTF8(name)
        buffer.append(ASCII.colon)
        buffer.append(ASCII.space)
        buffer.appendUTF8(value)
        buffer.appendCRLF()
    }

    /// `appendField` for a field taken from an `HTTPHeaders`, which checked it when it was added.
    static func appendValidatedField(
        name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into buffer: inout [UInt8]
    ) {
        buffer.appendBytes(name)
        buffer.append(ASCII.colon)
        buffer.append(ASCII.space)
        buffer.appendBytes(value)
        buffer.appendCRLF()
    }

    /// Appends the empty line that ends a head whose fields were appended one by one.
    public static func appendEndOfHead(into buffer: inout [UInt8]) {
        buffer.appendCRLF()
    }

    /// The bytes of a request head.
    public static func requestHead(_ head: HTTPRequestHead) -> [UInt8] {
        var buffer: [UInt8] = []
        appendRequestHead(head, into: &buffer)
        return buffer
    }

    /// The bytes of a response head.
    public static func responseHead(_ head: HTTPResponseHead) -> [UInt8] {
        var buffer: [UInt8] = []
        appendResponseHead(head, into: &buffer)
        return buffer
    }

    /// Appends the size line of a chunk of `sizeBytes` bytes (`1a2b\r\n`). Size 0 is the last chunk: use
    /// `appendLastChunk` so that trailers and the final CRLF are not forgotten.
    public static func appendChunkHeader(sizeBytes: Int, into buffer: inout [UInt8]) {
        precondition(sizeBytes > 0, "a zero-size chunk ends the body; use appendLastChunk")
        buffer.append(contentsOf: String(sizeBytes, radix: 16).utf8)
        buffer.appendCRLF()
    }

    /// The size line of a chunk of `sizeBytes` bytes.
    public static func chunkHeader(sizeBytes: Int) -> [UInt8] {
        var buffer: [UInt8] = []
        appendChunkHeader(sizeBytes: sizeBytes, into: &buffer)
        return buffer
    }

    /// Appends one whole chunk: size line, data, CRLF. Nothing for empty data (an empty chunk would end the body).
    public static func appendChunk(_ data: UnsafeRawBufferPointer, into buffer: inout [UInt8]) {
        guard !data.isEmpty else { return }
        appendChunkHeader(sizeBytes: data.count, into: &buffer)
        buffer.appendBytes(data)
        buffer.appendCRLF()
    }

    /// Appends the last chunk `0\r\n`, the trailer fields if any, and the final empty line.
    public static func appendLastChunk(trailers: HTTPHeaders? = nil, into buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "0"))
        buffer.appendCRLF()
        appendFields(trailers ?? HTTPHeaders(), into: &buffer)
    }

    /// The last chunk with optional trailers.
    public static func lastChunk(trailers: HTTPHeaders? = nil) -> [UInt8] {
        var buffer: [UInt8] = []
        appendLastChunk(trailers: trailers, into: &buffer)
        return buffer
    }

    /// Appends `name: value CRLF` for each field, then the empty line. `HTTPHeaders` guarantees no field can
    /// contain CR, LF or NUL, so the output always has exactly the fields given.
    public static func appendFields(_ fields: HTTPHeaders, into buffer: inout [UInt8]) {
        fields.withFields { raw, spans in
            for span in spans {
                appendValidatedField(name: raw.slice(span.nameRange), value: raw.slice(span.valueRange), into: &buffer)
            }
        }
        buffer.appendCRLF()
    }
}
