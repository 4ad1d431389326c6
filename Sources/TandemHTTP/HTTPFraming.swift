// HTTPFraming: the header-level rules shared by requests and responses — which fields decide the framing,
// and the strict checks that stop a front end and a back end from disagreeing on where a message ends.

/// The fields of a head that matter to framing and connection management, gathered in one pass over the bytes
/// of the names. It keeps where the fields are, not their values, and holds no reference (copying it retains
/// nothing): a value is read from the headers, as bytes or on the rare paths as a String, only by the check that
/// needs it.
struct FramingFields {
    var contentLength = FieldOccurrences()
    var transferEncoding = FieldOccurrences()
    var host = FieldOccurrences()
    var connectionClose = false
    var connectionKeepAlive = false
    var connectionUpgrade = false
    var upgrade = FieldOccurrences()
    var expect = FieldOccurrences()

    init(scanning headers: borrowing HTTPHeaders) {
        headers.withFields { raw, spans in
            for index in spans.indices {
                let span = spans[index]
                let name = raw.slice(span.nameRange)
                // Dispatch on the length first: most fields are none of these and cost one integer compare.
                switch span.nameCount {
                case 4 where asciiCaseInsensitiveEquals(name, "host"): host.note(index)
                case 6 where asciiCaseInsensitiveEquals(name, "expect"): expect.note(index)
                case 7 where asciiCaseInsensitiveEquals(name, "upgrade"): upgrade.note(index)
                case 10 where asciiCaseInsensitiveEquals(name, "connection"):
                    noteConnectionOptions(raw.slice(span.valueRange))
                case 14 where asciiCaseInsensitiveEquals(name, "content-length"): contentLength.note(index)
                case 17 where asciiCaseInsensitiveEquals(name, "transfer-encoding"): transferEncoding.note(index)
                default: break
                }
            }
        }
    }

    private mutating func noteConnectionOptions(_ value: UnsafeRawBufferPointer) {
        // Non-ASCII text is split into Characters, as it always was (a combining mark after a comma joins it).
        guard value.allSatisfy({ $0 < 0x80 }) else {
            for option in String(decoding: value, as: UTF8.self).split(separator: ",") {
                noteConnectionOption(trimmingOptionalWhitespace(option))
            }
            return
        }
        var elementStart = 0
        while elementStart <= value.count {
            let elementEnd = value.firstOffset(of: UInt8(ascii: ","), from: elementStart) ?? value.count
            var start = elementStart
            var end = elementEnd
            while start < end, ASCII.isWhitespace(value[start]) { start += 1 }
            while end > start, ASCII.isWhitespace(value[end - 1]) { end -= 1 }
            let token = value.slice(start..<end)
            if asciiCaseInsensitiveEquals(token, "close") { connectionClose = true }
            if asciiCaseInsensitiveEquals(token, "keep-alive") { connectionKeepAlive = true }
            if asciiCaseInsensitiveEquals(token, "upgrade") { connectionUpgrade = true }
            elementStart = elementEnd + 1
        }
    }

    private mutating func noteConnectionOption(_ token: Substring) {
        if asciiCaseInsensitiveEquals(token, "close") { connectionClose = true }
        if asciiCaseInsensitiveEquals(token, "keep-alive") { connectionKeepAlive = true }
        if asciiCaseInsensitiveEquals(token, "upgrade") { connectionUpgrade = true }
    }

    /// Whether the connection stays open after this message (RFC 9112 section 9.3): HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    func keepAlive(version: HTTPVersion) -> Bool {
        if connectionClose { return false }
        return version == .http1_1 || connectionKeepAlive
    }

    /// The framing the headers declare: `.chunked`, `.contentLength(n)`, or nil when they declare none.
    /// Throws on every ambiguous combination (RFC 9112 section 6.3 items 3 to 5, applied strictly).
    func declaredFraming(version: HTTPVersion, headers: HTTPHeaders) throws(HTTPParseError) -> BodyPlan? {
        if !transferEncoding.isEmpty {
            // RFC 9112 section 6.1: HTTP/1.0 has no Transfer-Encoding, so a 1.0 message carrying one was framed
            // by something that disagrees with us about the version; the framing is faulty.
            guard version == .http1_1 else {
                throw HTTPParseError(.transferEncodingInHTTP10, "Transfer-Encoding in an HTTP/1.0 message")
            }
            // CL.TE and TE.CL smuggling: never guess which one the other side used.
            guard contentLength.isEmpty else {
                throw HTTPParseError(.conflictingFraming, "both Content-Length and Transfer-Encoding")
            }
            try checkChunkedOnly(headers.values(name: "Transfer-Encoding"))
            return .chunked
        }
        // Even two equal Content-Length fields (or a list "5, 5"), which RFC 9110 would let us merge, are rejected:
        // a recipient that keeps the first and one that keeps the last field need not agree, and no honest
        // client sends them.
        guard contentLength.count <= 1 else {
            throw HTTPParseError(.duplicateContentLength, "more than one Content-Length field")
        }
        guard let position = contentLength.first else { return nil }
        return .contentLength(
            try headers.withValue(at: position) { value throws(HTTPParseError) in try parseContentLength(value) })
    }

    /// Accepts exactly one `chunked` coding. A list that does not end in chunked, or applies it twice, leaves
    /// the body length undeterminable (400). RFC 9112 allows other codings before chunked, but the proxy
    /// re-frames every body and drops Transfer-Encoding, so a coding it does not decode would be silently lost:
    /// those are refused as not implemented (501).
    private func checkChunkedOnly(_ values: [String]) throws(HTTPParseError) {
        var codings: [Substring] = []
        for value in values {
            for element in value.split(separator: ",", omittingEmptySubsequences: false) {
                codings.append(trimmingOptionalWhitespace(element))
            }
        }
        let chunkedCount = codings.filter { asciiCaseInsensitiveEquals($0, "chunked") }.count
        guard let last = codings.last, asciiCaseInsensitiveEquals(last, "chunked") else {
            throw HTTPParseError(.invalidTransferEncoding, "Transfer-Encoding does not end in chunked")
        }
        guard chunkedCount == 1 else {
            throw HTTPParseError(.invalidTransferEncoding, "chunked is applied more than once")
        }
        let allTokens = codings.allSatisfy { !$0.isEmpty && $0.utf8.allSatisfy(isTokenCharacter) }
        guard allTokens else {
            throw HTTPParseError(.invalidTransferEncoding, "Transfer-Encoding has an element that is not a token")
        }
        guard codings.count == 1 else {
            throw HTTPParseError(.unsupportedTransferEncoding, "a transfer coding other than chunked")
        }
    }
}

/// Parses a Content-Length value: one or more digits, nothing else, no overflow.
func parseContentLength(_ value: String) throws(HTTPParseError) -> Int64 {
    let outcome = withUTF8Bytes(value) { bytes in
        Result { () throws(HTTPParseError) in try parseContentLength(bytes) }
    }
    return try outcome.get()
}

/// `parseContentLength` over the bytes of the value.
func parseContentLength(_ value: UnsafeRawBufferPointer) throws(HTTPParseError) -> Int64 {
    if value.firstOffset(of: UInt8(ascii: ",")) != nil {
        throw HTTPParseError(.duplicateContentLength, "Content-Length is a list")
    }
    guard !value.isEmpty else { throw HTTPParseError(.invalidContentLength, "Content-Length is empty") }
    var length: Int64 = 0
    for byte in value {
        guard ASCII.isDigit(byte) else {
            throw HTTPParseError(.invalidContentLength, "Content-Length has a character that is not a digit")
        }
        let digit = Int64(byte - UInt8(ascii: "0"))
        guard length <= (Int64.max - digit) / 10 else {
            throw HTTPParseError(.invalidContentLength, "Content-Length overflows")
        }
        length = length * 10 + digit
    }
    return length
}

/// Parses `HTTP/1.0` or `HTTP/1.1`. Any other well-formed `HTTP/d.d` is a version Tandem does not speak (505);
/// anything else is malformed (400).
func parseHTTPVersion(_ bytes: UnsafeRawBufferPointer) throws(HTTPParseError) -> HTTPVersion {
    if bytes.equalsASCII("HTTP/1.1") { return .http1_1 }
    if bytes.equalsASCII("HTTP/1.0") { return .http1_0 }
    let wellFormed =
        bytes.count == 8 && bytes.slice(0..<5).equalsASCII("HTTP/") && ASCII.isDigit(bytes[5])
        && bytes[6] == UInt8(ascii: ".") && ASCII.isDigit(bytes[7])
    if wellFormed { throw HTTPParseError(.unsupportedVersion, "only HTTP/1.0 and HTTP/1.1 are supported") }
    throw HTTPParseError(.invalidVersion, "the HTTP version is malformed")
}

/// Where the fields with one name are: how many, and the position of the first.
struct FieldOccurrences {
    private(set) var count = 0
    /// The position of the first field. Invariant: meaningful only while `count > 0`.
    private var firstPosition = 0

    var isEmpty: Bool { count == 0 }
    /// The position of the first field, nil when there is none.
    var first: Int? { count > 0 ? firstPosition : nil }

    mutating func note(_ position: Int) {
        if count == 0 { firstPosition = position }
        count += 1
    }
}

/// The values of the fields with one name, in received order. Nearly every message has none or one of each framing field, so the first element is kept
/// inline: an array here cost a heap allocation per message for its Host (requests) or Content-Length (responses).
typealias FieldValues = InlineList<String>

/// A list whose first element is stored inline.
struct InlineList<Element>: Sequence {
    /// The first element, nil when there is none.
    private(set) var first: Element?
    /// The elements after the first. Invariant: empty while `first` is nil.
    private var others: [Element] = []

    init() {}

    var count: Int { first == nil ? 0 : 1 + others.count }
    var isEmpty: Bool { first == nil }

    mutating func append(_ element: Element) {
        if first == nil {
            first = element
        } else {
            others.append(element)
        }
    }

    func makeIterator() -> Iterator { Iterator(list: self) }

    struct Iterator: IteratorProtocol {
        let list: InlineList
        var position = 0

        mutating func next() -> Element? {
            defer { position += 1 }
            if position == 0 { return list.first }
            return position - 1 < list.others.count ? list.others[position - 1] : nil
        }
    }
}
