// HTTPMessageParser: the framing engine shared by the request and response parsers. It assembles CRLF lines
// (across chunk boundaries, in a buffer bounded by the current section's budget), parses field lines, and
// delimits bodies (Content-Length, chunked with extensions and trailers, until close). What differs between
// requests and responses (the start line and how the head decides the framing) is a `HTTPMessageRole`.

/// How the body of the message whose head was just parsed is delimited.
enum BodyPlan: Equatable, Sendable {
    case none
    case contentLength(Int64)
    case chunked
    case untilClose
}

/// What follows the end of the current message on the connection.
enum AfterMessage: Equatable, Sendable {
    case nextMessage
    case tunnel
}

/// The part of parsing that differs between requests and responses.
protocol HTTPMessageRole: Sendable {
    associatedtype Head: Sendable
    /// Words naming the start line in error messages ("request line", "status line").
    static var startLineName: String { get }
    /// Throws when no message may start now (a response nobody asked for).
    func checkCanStartMessage() throws(HTTPParseError)
    /// Parses the start line (without its CRLF) and remembers it for `onHeadComplete`.
    mutating func onStartLine(_ line: UnsafeRawBufferPointer) throws(HTTPParseError)
    /// Builds the head from the start line and the fields, and decides the framing (`plan`) and what follows the
    /// message (`after`). Returned through `inout` rather than as a tuple with the head: a generic tuple is copied
    /// and destroyed through its type metadata, which cost about 4 % of a proxied read's instructions.
    mutating func onHeadComplete(
        headers: consuming HTTPHeaders, plan: inout BodyPlan, after: inout AfterMessage
    ) throws(HTTPParseError) -> Head
    /// The message ended (after its `.end` event).
    mutating func onMessageEnd()
    /// Whether the next head is parsed into the storage of the last head's fields. Worth it when heads are
    /// usually dropped after their event (the storage is then free again); otherwise the fields move into the
    /// head and the next head gets new storage.
    static var reusesFieldStorage: Bool { get }
}

enum StepOutcome {
    /// Progress was made; keep stepping.
    case proceed
    /// All input is consumed and the message is not complete.
    case needMoreBytes
    /// The message ended; stop so that a pipelined next message stays with the caller.
    case messageEnded
}

struct HTTPMessageParser<Role: HTTPMessageRole>: Sendable {
    enum State: Sendable {
        case startLine
        case headerLines
        case contentLengthBody(remainingBytes: Int64)
        case chunkSizeLine
        case chunkData(remainingBytes: Int64)
        case chunkDataCR
        case chunkDataLF
        case trailerLines
        case untilCloseBody
        case tunnel
        case failed(HTTPParseError)
    }

    /// The largest line buffer kept between lines; larger ones are freed once their line is complete.
    static var retainedLineCapacityMax: Int { 1024 }

    var role: Role
    let limits: HTTPLimits
    private(set) var state: State = .startLine
    // Invariant: lineBuffer holds only the start of one unfinished line, and
    // sectionBytesUsed + lineBuffer.count <= the current section's budget (see `sectionBudgetBytes`).
    private var lineBuffer: [UInt8] = []
    // Invariant: 0 <= sectionBytesUsed <= sectionBudgetBytes (bytes of complete lines of the current section).
    private var sectionBytesUsed = 0
    // Invariant: fields.count <= limits.headerCountMax; holds the header or trailer fields being read.
    private var fields = HTTPHeaders()
    // Invariant: 0 <= bodyBytesSeen <= limits.bodyMaxBytes (decoded content bytes of the current message).
    private var bodyBytesSeen: Int64 = 0
    private var afterEnd = AfterMessage.nextMessage

    init(role: Role, limits: HTTPLimits) {
        self.role = role
        self.limits = limits
    }

    var phase: HTTPParserPhase {
        switch state {
        // Empty lines before a start line are ignored (they only use up its budget), so they leave it idle.
        case .startLine: return lineBuffer.isEmpty ? .idle : .head
        case .headerLines: return .head
        case .tunnel: return .tunnel
        case .failed: return .failed
        default: return .body
        }
    }

    /// Bytes of an unfinished line held between calls (never more than the current section's budget).
    var bufferedLineBytes: Int { lineBuffer.count }

    /// Memory held for split lines between calls (for tests of the retention bound).
    var lineBufferCapacityBytes: Int { lineBuffer.capacity }

    /// Trades the field list's storage for `other`'s between messages, both lists empty, so that the storage
    /// outlives this parser and serves the next one; does nothing otherwise.
    mutating func exchangeFieldStorage(with other: inout HTTPHeaders) {
        guard phase == .idle, fields.isEmpty, other.isEmpty else { return }
        swap(&fields, &other)
    }

    /// Where the field bytes are stored and how many bytes the storage holds (for tests of its reuse).
    var fieldStorage: (address: UnsafeRawPointer?, capacityBytes: Int) {
        fields.bytes.withUnsafeBytes { (UnsafeRawPointer($0.baseAddress), fields.bytes.capacity) }
    }

    /// Discards any partial message and returns to the idle state.
    mutating func reset() {
        state = .startLine
        lineBuffer = []
        sectionBytesUsed = 0
        fields = HTTPHeaders()
        bodyBytesSeen = 0
        afterEnd = .nextMessage
    }

    /// Consumes bytes through the end of at most one message and returns how many were consumed. It returns
    /// fewer than `bytes.count` only when a message ended; the rest belongs to the next message (or tunnel).
    mutating func parse(
        _ bytes: UnsafeRawBufferPointer, _ onEvent: (HTTPParserEvent<Role.Head>) -> Void
    ) throws(HTTPParseError) -> Int {
        if case .failed(let error) = state { throw error }
        if case .tunnel = state {
            preconditionFailure("parse called after the connection switched protocols; the bytes are not HTTP")
        }
        var index = 0
        do {
            if !bytes.isEmpty, phase == .idle { try role.checkCanStartMessage() }
            while true {
                switch try step(bytes, &index, onEvent) {
                case .proceed: continue
                case .needMoreBytes:
                    assert(index == bytes.count, "the parser must consume all input before asking for more")
                    assertInvariants()
                    return index
                case .messageEnded:
                    assert(index <= bytes.count, "the parser consumed more than it was given")
                    assertInvariants()
                    return index
                }
            }
        } catch {
            state = .failed(error)
            lineBuffer = []
            fields = HTTPHeaders()
            throw error
        }
    }

    /// The peer closed the connection. Ends a close-delimited body; anything else unfinished is truncation.
    mutating func finishAtEOF(_ onEvent: (HTTPParserEvent<Role.Head>) -> Void) throws(HTTPParseError) {
        switch state {
        case .failed(let error): throw error
        case .tunnel: return
        case .untilCloseBody: _ = finishMessage(trailers: nil, onEvent)
        default:
            guard phase == .idle else {
                let error = HTTPParseError(.unexpectedEOF, "the connection closed in the middle of a message")
                state = .failed(error)
                throw error
            }
        }
    }

    /// The invariants written beside the fields, checked after every call in debug builds.
    private func assertInvariants() {
        switch state {
        case .startLine, .headerLines, .chunkSizeLine, .trailerLines:
            assert(sectionBytesUsed >= 0 && sectionBytesUsed + lineBuffer.count <= sectionBudgetBytes)
        case .tunnel, .failed:
            assert(lineBuffer.isEmpty)
        default:
            assert(lineBuffer.isEmpty, "only line sections hold a partial line")
        }
        assert(fields.count <= limits.headerCountMax)
        assert(bodyBytesSeen >= 0 && bodyBytesSeen <= limits.bodyMaxBytes)
    }

    // MARK: - Steps

    private mutating func step(
        _ bytes: UnsafeRawBufferPointer, _ index: inout Int, _ onEvent: (HTTPParserEvent<Role.Head>) -> Void
    ) throws(HTTPParseError) -> StepOutcome {
        switch state {
        case .startLine, .headerLines, .chunkSizeLine, .trailerLines:
            guard index < bytes.count else { return .needMoreBytes }
            return try readLine(bytes, &index, onEvent)
        case .contentLengthBody(let remainingBytes):
            guard index < bytes.count else { return .needMoreBytes }
            let taken = deliverBody(bytes, &index, upTo: remainingBytes, onEvent)
            if taken == remainingBytes { return finishMessage(trailers: nil, onEvent) }
            state = .contentLengthBody(remainingBytes: remainingBytes - taken)
            return .proceed
        case .chunkData(let remainingBytes):
            guard index < bytes.count else { return .needMoreBytes }
            let taken = deliverBody(bytes, &index, upTo: remainingBytes, onEvent)
            state = taken == remainingBytes ? .chunkDataCR : .chunkData(remainingBytes: remainingBytes - taken)
            return .proceed
        case .chunkDataCR, .chunkDataLF:
            guard index < bytes.count else { return .needMoreBytes }
            try expectChunkTerminator(bytes[index])
            index += 1
            return .proceed
        case .untilCloseBody:
            guard index < bytes.count else { return .needMoreBytes }
            // Deliver up to the limit first, so the outcome does not depend on how the input was split.
            let available = Int64(bytes.count - index)
            let allowed = limits.bodyMaxBytes - bodyBytesSeen
            if allowed > 0 { _ = deliverBody(bytes, &index, upTo: min(available, allowed), onEvent) }
            guard available <= allowed else {
                throw HTTPParseError(.bodyTooLarge, "the body exceeds \(limits.bodyMaxBytes) bytes")
            }
            return .proceed
        case .tunnel, .failed:
            preconditionFailure("step in a terminal state")
        }
    }

    /// Hands the caller up to `maxBytes` of body straight from the input, without copying.
    private mutating func deliverBody(
        _ bytes: UnsafeRawBufferPointer, _ index: inout Int, upTo maxBytes: Int64,
        _ onEvent: (HTTPParserEvent<Role.Head>) -> Void
    ) -> Int64 {
        let taken = Int(min(Int64(bytes.count - index), maxBytes))
        onEvent(.body(bytes.slice(index..<(index + taken))))
        index += taken
        bodyBytesSeen += Int64(taken)
        assert(bodyBytesSeen <= limits.bodyMaxBytes, "body limit must be checked before bytes are delivered")
        return Int64(taken)
    }

    private mutating func expectChunkTerminator(_ byte: UInt8) throws(HTTPParseError) {
        if case .chunkDataCR = state, byte == ASCII.carriageReturn {
            state = .chunkDataLF
        } else if case .chunkDataLF = state, byte == ASCII.lineFeed {
            state = .chunkSizeLine
            sectionBytesUsed = 0
        } else {
            throw HTTPParseError(.missingChunkTerminator, "chunk data is not followed by CRLF")
        }
    }

    // MARK: - Lines

    private var sectionBudgetBytes: Int {
        switch state {
        case .startLine: return limits.requestLineMaxBytes
        case .headerLines: return limits.headerBlockMaxBytes
        case .chunkSizeLine: return limits.chunkLineMaxBytes
        case .trailerLines: return limits.trailerBlockMaxBytes
        default: preconditionFailure("no line section in this state")
        }
    }

    private var sectionTooLongError: HTTPParseError {
        switch state {
        case .startLine:
            return HTTPParseError(
                .requestLineTooLong, "the \(Role.startLineName) exceeds \(limits.requestLineMaxBytes) bytes")
        case .headerLines:
            return HTTPParseError(
                .headerBlockTooLarge, "the header section exceeds \(limits.headerBlockMaxBytes) bytes")
        case .chunkSizeLine:
            return HTTPParseError(.chunkLineTooLong, "a chunk-size line exceeds \(limits.chunkLineMaxBytes) bytes")
        default:
            return HTTPParseError(
                .trailerBlockTooLarge, "the trailer section exceeds \(limits.trailerBlockMaxBytes) bytes")
        }
    }

    /// Finds the end of the current line within the section's remaining budget. A line completed inside the
    /// input is handled in place; one that spans inputs is assembled in `lineBuffer`. Never buffers past the
    /// budget: the first byte beyond it without a line end is an error.
    private mutating func readLine(
        _ bytes: UnsafeRawBufferPointer, _ index: inout Int, _ onEvent: (HTTPParserEvent<Role.Head>) -> Void
    ) throws(HTTPParseError) -> StepOutcome {
        let budgetLeft = sectionBudgetBytes - sectionBytesUsed - lineBuffer.count
        precondition(budgetLeft >= 0, "line buffer grew past its section budget")
        let available = bytes.count - index
        let searchable = min(available, budgetLeft)
        let window = bytes.slice(index..<(index + searchable))
        guard let lineFeedOffset = window.firstOffset(of: ASCII.lineFeed) else {
            if available > searchable { throw sectionTooLongError }
            lineBuffer.appendBytes(window)
            index += available
            return .needMoreBytes
        }
        sectionBytesUsed += lineBuffer.count + lineFeedOffset + 1
        index += lineFeedOffset + 1
        if lineBuffer.isEmpty {
            return try completeLine(window.slice(0..<lineFeedOffset), onEvent)
        }
        lineBuffer.appendBytes(window.slice(0..<lineFeedOffset))
        // Move the buffer out so the line can be read while `self` is mutated, then give its storage back.
        var line: [UInt8] = []
        swap(&line, &lineBuffer)
        defer {
            // Keep a small buffer for the next split line, but give a large one back: an idle keep-alive
            // connection must not hold a 64 KiB header line's worth of memory for its lifetime.
            if line.capacity <= Self.retainedLineCapacityMax {
                swap(&line, &lineBuffer)
                lineBuffer.removeAll(keepingCapacity: true)
            }
        }
        let outcome: Result<StepOutcome, HTTPParseError> = line.withUnsafeBytes { raw in
            Result { () throws(HTTPParseError) in try completeLine(raw, onEvent) }
        }
        return try outcome.get()
    }

    /// Checks the CRLF ending (bare LF and bare CR are both framing ambiguities) and dispatches the content.
    private mutating func completeLine(
        _ rawLine: UnsafeRawBufferPointer, _ onEvent: (HTTPParserEvent<Role.Head>) -> Void
    ) throws(HTTPParseError) -> StepOutcome {
        guard let last = rawLine.last, last == ASCII.carriageReturn else {
            throw HTTPParseError(.bareLF, "a line ends in LF without CR")
        }
        let content = rawLine.slice(0..<(rawLine.count - 1))
        if content.firstOffset(of: ASCII.carriageReturn) != nil {
            throw HTTPParseError(.bareCR, "a CR is not followed by LF")
        }
        switch state {
        case .startLine:
            // RFC 9112 section 2.2: empty lines before a request line are ignored (they still count against
            // the request line budget, so they cannot be used to stall the parser forever).
            if content.isEmpty { return .proceed }
            try role.onStartLine(content)
            state = .headerLines
            sectionBytesUsed = 0
            // The last head's storage when it was kept (see `HTTPMessageRole.reusesFieldStorage`).
            assert(fields.isEmpty, "every path out of a message leaves no field behind")
            if !fields.hasReservedStorage { fields = HTTPHeaders(validatedCapacity: 16) }
            return .proceed
        case .headerLines:
            if content.isEmpty { return try completeHead(onEvent) }
            try appendField(content)
            return .proceed
        case .chunkSizeLine:
            return try onChunkSizeLine(content, onEvent)
        case .trailerLines:
            if content.isEmpty { return finishMessage(trailers: fields.isEmpty ? nil : fields, onEvent) }
            try appendField(content)
            return .proceed
        default:
            preconditionFailure("a line completed outside a line section")
        }
    }

    // MARK: - Head and end

    private mutating func completeHead(
        _ onEvent: (HTTPParserEvent<Role.Head>) -> Void
    ) throws(HTTPParseError) -> StepOutcome {
        var plan = BodyPlan.none
        var after = AfterMessage.nextMessage
        if Role.reusesFieldStorage {
            // The head shares the storage during its event; once the event is over and the consumer has dropped
            // the head, the storage is this parser's alone again and is emptied in place.
            try deliverHead(headers: fields, plan: &plan, after: &after, onEvent)
            fields.removeAllKeepingCapacity(upToBytes: Self.reusedFieldBytesMax)
        } else {
            try deliverHead(headers: takeFields(), plan: &plan, after: &after, onEvent)
        }
        switch plan {
        case .none, .contentLength(0): return finishMessage(trailers: nil, onEvent)
        case .contentLength(let length): state = .contentLengthBody(remainingBytes: length)
        case .chunked: state = .chunkSizeLine
        case .untilClose: state = .untilCloseBody
        }
        return .proceed
    }

    private mutating func finishMessage(
        trailers: HTTPHeaders?, _ onEvent: (HTTPParserEvent<Role.Head>) -> Void
    ) -> StepOutcome {
        onEvent(.end(trailers: trailers))
        role.onMessageEnd()
        state = afterEnd == .tunnel ? .tunnel : .startLine
        afterEnd = .nextMessage
        sectionBytesUsed = 0
        bodyBytesSeen = 0
        if !fields.isEmpty { fields = HTTPHeaders() }
        return .messageEnded
    }

    /// Builds the head, checks its declared length and reports it. The event ends with this function, so that the
    /// caller can find the fields' storage free again.
    private mutating func deliverHead(
        headers: consuming HTTPHeaders, plan: inout BodyPlan, after: inout AfterMessage,
        _ onEvent: (HTTPParserEvent<Role.Head>) -> Void
    ) throws(HTTPParseError) {
        // The head is built into the event itself: built apart and then wrapped, it was copied and destroyed
        // once more (two reference counts per array and String of the head).
        let event = HTTPParserEvent.head(try role.onHeadComplete(headers: headers, plan: &plan, after: &after))
        if case .contentLength(let length) = plan, length > limits.bodyMaxBytes {
            throw HTTPParseError(.bodyTooLarge, "Content-Length \(length) exceeds \(limits.bodyMaxBytes) bytes")
        }
        afterEnd = after
        bodyBytesSeen = 0
        sectionBytesUsed = 0
        onEvent(event)
    }

    /// The largest field storage kept between messages, in bytes of fields (and as many bytes of field positions,
    /// 64 fields): typical heads fit, and an idle parser holds at most 4 KiB (a larger head's storage is freed).
    static var reusedFieldBytesMax: Int { 2048 }

    /// Moves the parsed fields out, leaving an empty list: without a copy, so the head that takes them holds the
    /// only reference (a copy and a release cost two atomic operations per array per message).
    private mutating func takeFields() -> HTTPHeaders {
        var taken = HTTPHeaders()
        swap(&taken, &fields)
        return taken
    }

    // MARK: - Field lines

    /// Parses `name ":" OWS value OWS` strictly (RFC 9112 section 5) and appends it to `fields`.
    private mutating func appendField(_ line: UnsafeRawBufferPointer) throws(HTTPParseError) {
        guard fields.count < limits.headerCountMax else {
            throw HTTPParseError(.tooManyHeaders, "more than \(limits.headerCountMax) fields")
        }
        if ASCII.isWhitespace(line[0]) {
            throw HTTPParseError(.obsFold, "a field line starts with whitespace (obsolete line folding)")
        }
        guard let colon = line.firstOffset(of: ASCII.colon), colon > 0 else {
            throw HTTPParseError(.invalidHeaderName, "a field line has no name or no colon")
        }
        if ASCII.isWhitespace(line[colon - 1]) {
            throw HTTPParseError(.whitespaceBeforeColon, "whitespace between a field name and its colon")
        }
        let nameBytes = line.slice(0..<colon)
        guard isValidFieldName(nameBytes) else {
            throw HTTPParseError(.invalidHeaderName, "a field name contains a character that is not a token")
        }
        var start = colon + 1
        var end = line.count
        while start < end, ASCII.isWhitespace(line[start]) { start += 1 }
        while end > start, ASCII.isWhitespace(line[end - 1]) { end -= 1 }
        try checkFieldValue(line.slice(start..<end))
        fields.appendValidated(line: line, nameCount: colon, valueRange: start..<end)
        assert(fields.count <= limits.headerCountMax)
    }

    /// Checks a field value: VCHAR, SP, HTAB, obs-text; no other control character. Values with bytes above 0x7F
    /// must be valid UTF-8, so that the Strings `HTTPHeaders` builds from the bytes are exactly what was received
    /// (decoding them lossily would change the bytes the proxy forwards).
    private func checkFieldValue(_ value: UnsafeRawBufferPointer) throws(HTTPParseError) {
        // Eight bytes at a time while all of them are SP or visible ASCII (0x20...0x7E), nearly every value: one
        // word test says whether some byte is below 0x20 or above 0x7E. The word that has one, and what follows
        // it, get the exact test byte by byte.
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highBits: UInt64 = 0x8080_8080_8080_8080
        var start = 0
        while start + 8 <= value.count {
            let word = value.loadUnaligned(fromByteOffset: start, as: UInt64.self)
            let someBelowSpace = (word &- ones &* 0x20) & ~word & highBits
            let someAboveTilde = ((word &+ ones) | word) & highBits
            if someBelowSpace | someAboveTilde != 0 { break }
            start += 8
        }
        var sawNonASCII = false
        for byte in value.slice(start..<value.count) {
            // One compare for the common case, SP and visible ASCII (0x20...0x7E).
            if byte &- ASCII.space < 0x5F || byte == ASCII.tab { continue }
            guard byte >= 0x80 else {
                throw HTTPParseError(.invalidHeaderValue, "a field value contains a control character")
            }
            sawNonASCII = true
        }
        guard sawNonASCII else { return }
        guard String(validating: value, as: UTF8.self) != nil else {
            throw HTTPParseError(.invalidHeaderValue, "a field value is not valid UTF-8")
        }
    }

    // MARK: - Chunks

    private mutating func onChunkSizeLine(
        _ line: UnsafeRawBufferPointer, _ onEvent: (HTTPParserEvent<Role.Head>) -> Void
    ) throws(HTTPParseError) -> StepOutcome {
        let (size, extensionsStart) = try parseChunkSize(line)
        try validateChunkExtensions(line, from: extensionsStart)
        guard size <= limits.bodyMaxBytes - bodyBytesSeen else {
            throw HTTPParseError(.bodyTooLarge, "the chunked body exceeds \(limits.bodyMaxBytes) bytes")
        }
        sectionBytesUsed = 0
        if size == 0 {
            state = .trailerLines
            fields = HTTPHeaders()
        } else {
            state = .chunkData(remainingBytes: size)
        }
        return .proceed
    }
}

/// Parses the hexadecimal chunk size at the start of a chunk-size line; returns it and where the rest starts.
func parseChunkSize(_ line: UnsafeRawBufferPointer) throws(HTTPParseError) -> (Int64, Int) {
    var size: Int64 = 0
    var index = 0
    while index < line.count, let digit = hexDigitValue(line[index]) {
        guard size <= (Int64.max - digit) / 16 else {
            throw HTTPParseError(.invalidChunkSize, "the chunk size overflows")
        }
        size = size * 16 + digit
        index += 1
    }
    guard index > 0 else { throw HTTPParseError(.invalidChunkSize, "a chunk-size line does not start with hex") }
    return (size, index)
}

private func hexDigitValue(_ byte: UInt8) -> Int64? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int64(byte - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int64(byte - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int64(byte - UInt8(ascii: "A") + 10)
    default: return nil
    }
}

/// Validates `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-value ] )` (RFC 9112 section 7.1.1). Extensions carry
/// no meaning for Tandem and are dropped, but a malformed one is rejected: parsers that skip to the LF disagree
/// with those that do not about where the chunk data starts.
func validateChunkExtensions(_ line: UnsafeRawBufferPointer, from start: Int) throws(HTTPParseError) {
    let invalid = HTTPParseError(.invalidChunkExtension, "a chunk extension is malformed")
    var index = start
    func skipWhitespace() { while index < line.count, ASCII.isWhitespace(line[index]) { index += 1 } }
    func skipToken() -> Bool {
        let tokenStart = index
        while index < line.count, isTokenCharacter(line[index]) { index += 1 }
        return index > tokenStart
    }
    while index < line.count {
        skipWhitespace()
        guard index < line.count, line[index] == ASCII.semicolon else { throw invalid }
        index += 1
        skipWhitespace()
        guard skipToken() else { throw invalid }
        let afterName = index
        skipWhitespace()
        guard index < line.count, line[index] == ASCII.equals else {
            index = afterName
            continue
        }
        index += 1
        skipWhitespace()
        if index < line.count, line[index] == ASCII.quote {
            guard skipQuotedString(line, &index) else { throw invalid }
        } else {
            guard skipToken() else { throw invalid }
        }
    }
}

/// Skips a quoted-string starting at the opening quote; false when it is malformed or unterminated.
func skipQuotedString(_ line: UnsafeRawBufferPointer, _ index: inout Int) -> Bool {
    index += 1
    while index < line.count {
        let byte = line[index]
        if byte == ASCII.quote {
            index += 1
            return true
        }
        if byte == ASCII.backslash {
            index += 1
            guard index < line.count, isQuotedPairCharacter(line[index]) else { return false }
        } else if !isQuotedTextCharacter(byte) {
            return false
        }
        index += 1
    }
    return false
}

private func isQuotedTextCharacter(_ byte: UInt8) -> Bool {
    byte == ASCII.tab || byte == ASCII.space || byte == 0x21 || (byte >= 0x23 && byte <= 0x5B)
        || (byte >= 0x5D && byte <= 0x7E) || byte >= 0x80
}

private func isQuotedPairCharacter(_ byte: UInt8) -> Bool {
    byte == ASCII.tab || byte == ASCII.space || (byte >= 0x21 && byte <= 0x7E) || byte >= 0x80
}
