// HTTPHeaders: the ordered list of header (or trailer) fields of one message.

/// Ordered header fields, with names kept exactly as received (a proxy forwards them unchanged) and lookups that
/// ignore ASCII case, as RFC 9110 section 5.1 requires.
///
/// The fields are kept as bytes, not as Strings: most of the fields of a proxied message are only looked at by
/// name and copied through to the other side, and building two Strings per field (then retaining, releasing and
/// destroying them, and copying their UTF-8 back out when serializing) was a large share of the proxy's work per
/// request. A String is built only when a caller asks for one (`subscript`, iteration, `first(name:)`).
public struct HTTPHeaders: Sendable, Sequence, Equatable, ExpressibleByDictionaryLiteral,
    CustomStringConvertible
{
    /// One field.
    public typealias Element = (name: String, value: String)

    /// Where the name and the value of one field are in `bytes`.
    @usableFromInline
    struct Span: Sendable {
        @usableFromInline var nameStart: Int
        @usableFromInline var nameCount: Int
        @usableFromInline var valueStart: Int
        @usableFromInline var valueCount: Int

        @inlinable var nameRange: Range<Int> { nameStart..<(nameStart + nameCount) }
        @inlinable var valueRange: Range<Int> { valueStart..<(valueStart + valueCount) }
    }

    // Invariants: every name is a token and no value contains CR, LF or NUL (checked where fields are added), so
    // serializing the list can never split a message; every value is valid UTF-8 (the parser refuses any other),
    // so the Strings built from the bytes are exact. `bytes` may hold bytes no span refers to any more (a removed
    // field, a replaced value); they are never read.
    @usableFromInline var bytes: [UInt8]
    /// The fields, in order.
    @usableFromInline var spans: [Span]

    /// An empty list.
    public init() {
        bytes = []
        spans = []
    }

    /// A list of the given fields, in order.
    public init(_ fields: [(String, String)]) {
        self.init()
        spans.reserveCapacity(fields.count)
        for (name, value) in fields { add(name: name, value: value) }
    }

    /// A list of the given fields, in literal order.
    public init(dictionaryLiteral elements: (String, String)...) { self.init(elements) }

    // The parser has already validated every byte; skip the re-check on its hot path.
    init(validatedCapacity: Int) {
        bytes = []
        bytes.reserveCapacity(validatedCapacity * 32)
        spans = []
        spans.reserveCapacity(validatedCapacity)
    }

    /// Appends a field whose name is a token and whose value is valid UTF-8 without CR, LF or NUL.
    mutating func appendValidated(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let nameStart = bytes.count
        bytes.appendBytes(name)
        bytes.appendBytes(value)
        spans.append(
            Span(
                nameStart: nameStart, nameCount: name.count, valueStart: nameStart + name.count, valueCount: value.count
            ))
    }

    /// Appends a field parsed from `line`, whose name is `line[0..<nameCount]` and whose value is
    /// `line[valueRange]`, both checked. The line is copied up to the end of the value in one piece (the colon and
    /// the whitespace in between stay in `bytes`, unreferenced): one copy per field instead of two.
    mutating func appendValidated(line: UnsafeRawBufferPointer, nameCount: Int, valueRange: Range<Int>) {
        precondition(nameCount <= valueRange.lowerBound && valueRange.upperBound <= line.count)
        let start = bytes.count
        bytes.appendBytes(line.slice(0..<valueRange.upperBound))
        spans.append(
            Span(
                nameStart: start, nameCount: nameCount, valueStart: start + valueRange.lowerBound,
                valueCount: valueRange.count))
    }

    /// Whether the list has room for fields without allocating (an emptied list that kept its storage).
    var hasReservedStorage: Bool { bytes.capacity > 0 && spans.capacity > 0 }

    /// Removes every field. The storage is kept for the next fields when it holds at most `maxBytes` bytes of
    /// fields and no other list shares it; otherwise it is freed.
    mutating func removeAllKeepingCapacity(upToBytes maxBytes: Int) {
        guard bytes.capacity <= maxBytes, spans.capacity <= maxBytes / MemoryLayout<Span>.stride else {
            self = HTTPHeaders()
            return
        }
        // Shared storage (a consumer kept the head) would be copied here: an allocation the next message's first
        // field would make anyway.
        bytes.removeAll(keepingCapacity: true)
        spans.removeAll(keepingCapacity: true)
    }

    /// The number of fields (a field repeated on several lines counts once per line).
    public var count: Int { spans.count }
    /// True when there is no field.
    public var isEmpty: Bool { spans.isEmpty }
    /// The field at a position, in received order.
    public subscript(index: Int) -> Element { (name(at: index), value(at: index)) }

    /// The name of the field at a position, as received.
    public func name(at index: Int) -> String { string(spans[index].nameRange) }

    /// The value of the field at a position.
    public func value(at index: Int) -> String { string(spans[index].valueRange) }

    private func string(_ range: Range<Int>) -> String {
        bytes.withUnsafeBytes { String(decoding: $0.slice(range), as: UTF8.self) }
    }

    /// Iterates the fields in order, building each name and value as it goes.
    public struct Iterator: IteratorProtocol {
        let headers: HTTPHeaders
        var index = 0

        public mutating func next() -> Element? {
            guard index < headers.count else { return nil }
            defer { index += 1 }
            return headers[index]
        }
    }

    public func makeIterator() -> Iterator { Iterator(headers: self) }

    /// Calls `body` with the name and the value of every field, in order, as bytes valid only during the call: for
    /// callers that copy fields somewhere without a String for each.
    public func forEachField(_ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Void) {
        withFields { raw, spans in
            for span in spans { body(raw.slice(span.nameRange), raw.slice(span.valueRange)) }
        }
    }

    /// Makes room for `fields` more fields holding `bytes` more bytes of names and values in all.
    public mutating func reserveCapacity(fields: Int, bytes byteCount: Int) {
        spans.reserveCapacity(spans.count + Swift.max(0, fields))
        bytes.reserveCapacity(bytes.count + Swift.max(0, byteCount))
    }

    /// Calls `body` with the bytes of every field and the spans locating them (for the module's byte-level walks).
    @inline(__always)
    func withFields<R>(_ body: (UnsafeRawBufferPointer, [Span]) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { try body($0, spans) }
    }

    /// Calls `body` with the bytes of the value of the field at a position.
    func withValue<R>(at position: Int, _ body: (UnsafeRawBufferPointer) throws(HTTPParseError) -> R)
        throws(HTTPParseError) -> R
    {
        let outcome: Result<R, HTTPParseError> = withFields { raw, spans in
            Result { () throws(HTTPParseError) in try body(raw.slice(spans[position].valueRange)) }
        }
        return try outcome.get()
    }

    /// The position of the first field with this name (any case), or nil.
    func firstIndex(name: String) -> Int? {
        withUTF8Bytes(name) { target in
            withFields { raw, spans in
                spans.firstIndex { asciiCaseInsensitiveEquals(raw.slice($0.nameRange), target) }
            }
        }
    }

    /// The position of the last field with this name (any case), or nil.
    func lastIndex(name: String) -> Int? {
        withUTF8Bytes(name) { target in
            withFields { raw, spans in
                spans.lastIndex { asciiCaseInsensitiveEquals(raw.slice($0.nameRange), target) }
            }
        }
    }

    /// The positions of every field with this name (any case), in order.
    func indices(name: String) -> [Int] {
        withUTF8Bytes(name) { target in
            withFields { raw, spans in
                spans.indices.filter { asciiCaseInsensitiveEquals(raw.slice(spans[$0].nameRange), target) }
            }
        }
    }

    /// The value of the first field with this name (any case), or nil.
    public func first(name: String) -> String? {
        firstIndex(name: name).map { value(at: $0) }
    }

    /// The values of every field with this name (any case), in order. Lines are not split at commas.
    public func values(name: String) -> [String] {
        indices(name: name).map { value(at: $0) }
    }

    /// True when at least one field has this name (any case).
    public func contains(name: String) -> Bool {
        firstIndex(name: name) != nil
    }

    /// The comma-separated list elements of every field with this name, trimmed of whitespace, empty elements
    /// dropped (RFC 9110 section 5.6.1). Quoted strings are not treated specially: use it for token lists only.
    public func tokens(name: String) -> [Substring] {
        var result: [Substring] = []
        for value in values(name: name) {
            for element in value.split(separator: ",", omittingEmptySubsequences: true) {
                let trimmed = trimmingOptionalWhitespace(element)
                if !trimmed.isEmpty { result.append(trimmed) }
            }
        }
        return result
    }

    /// True when the token list of the named field contains `token` (any case), e.g. `Connection: close`.
    public func containsToken(_ token: String, name: String) -> Bool {
        tokens(name: name).contains { asciiCaseInsensitiveEquals($0, token) }
    }

    /// Appends a field given as bytes, as `add(name:value:)` would, or appends nothing and returns false when the
    /// name is not a token or the value is not valid UTF-8 or holds CR, LF or NUL: for fields read back from
    /// storage, without a String built and checked for each name and value.
    public mutating func add(checkedName name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        guard isValidFieldName(name), isSafeFieldValue(value), isValidUTF8(value) else { return false }
        appendValidated(name: name, value: value)
        return true
    }

    /// Appends a field at the end. The name must be a token and the value must not contain CR, LF or NUL;
    /// anything else is a programmer error that could split a message, so it traps.
    public mutating func add(name: String, value: String) {
        precondition(isValidFieldName(name), "invalid header field name \(name.debugDescription)")
        precondition(isSafeFieldValue(value), "header field value contains CR, LF or NUL")
        withUTF8Bytes(name) { nameBytes in
            withUTF8Bytes(value) { valueBytes in appendValidated(name: nameBytes, value: valueBytes) }
        }
    }

    /// Removes every field with this name (any case); returns how many were removed.
    @discardableResult
    public mutating func remove(name: String) -> Int {
        let before = spans.count
        withUTF8Bytes(name) { target in
            removeAll(whereName: { asciiCaseInsensitiveEquals($0, target) })
        }
        return before - spans.count
    }

    /// Removes every field whose name satisfies the predicate, given the name's bytes.
    mutating func removeAll(whereName shouldRemove: (UnsafeRawBufferPointer) -> Bool) {
        let bytes = self.bytes
        bytes.withUnsafeBytes { raw in
            spans.removeAll { shouldRemove(raw.slice($0.nameRange)) }
        }
    }

    /// Removes every field whose name satisfies the predicate.
    public mutating func removeAll(where shouldRemove: (Element) -> Bool) {
        let bytes = self.bytes
        bytes.withUnsafeBytes { raw in
            spans.removeAll { span in
                shouldRemove(
                    (
                        String(decoding: raw.slice(span.nameRange), as: UTF8.self),
                        String(decoding: raw.slice(span.valueRange), as: UTF8.self)
                    ))
            }
        }
    }

    /// Replaces every field with this name by one field with this value, at the position of the first one (or at
    /// the end when there was none).
    public mutating func replace(name: String, value: String) {
        precondition(isValidFieldName(name), "invalid header field name \(name.debugDescription)")
        precondition(isSafeFieldValue(value), "header field value contains CR, LF or NUL")
        guard let firstIndex = firstIndex(name: name) else {
            add(name: name, value: value)
            return
        }
        let later = indices(name: name).dropFirst()
        for index in later.reversed() { spans.remove(at: index) }
        let nameStart = bytes.count
        withUTF8Bytes(name) { bytes.appendBytes($0) }
        spans[firstIndex].nameStart = nameStart
        spans[firstIndex].nameCount = bytes.count - nameStart
        setValidatedValue(value, at: firstIndex)
    }

    /// Replaces the value of the field at a position.
    public mutating func setValue(_ value: String, at index: Int) {
        precondition(isSafeFieldValue(value), "header field value contains CR, LF or NUL")
        setValidatedValue(value, at: index)
    }

    private mutating func setValidatedValue(_ value: String, at index: Int) {
        precondition(index >= 0 && index < spans.count, "field index out of range")
        let valueStart = bytes.count
        withUTF8Bytes(value) { bytes.appendBytes($0) }
        spans[index].valueStart = valueStart
        spans[index].valueCount = bytes.count - valueStart
    }

    /// Fields are equal when their names and values are, in order. Names are ASCII tokens, compared as bytes;
    /// values are compared as bytes first and, when those differ and are not ASCII, as Strings (canonical
    /// equivalence), as they always were.
    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        guard lhs.spans.count == rhs.spans.count else { return false }
        return lhs.withFields { left, leftSpans in
            rhs.withFields { right, rightSpans in
                for (l, r) in zip(leftSpans, rightSpans) {
                    guard left.slice(l.nameRange).elementsEqual(right.slice(r.nameRange)) else { return false }
                    let leftValue = left.slice(l.valueRange)
                    let rightValue = right.slice(r.valueRange)
                    if leftValue.elementsEqual(rightValue) { continue }
                    guard !leftValue.allSatisfy({ $0 < 0x80 }) || !rightValue.allSatisfy({ $0 < 0x80 }) else {
                        return false
                    }
                    if String(decoding: leftValue, as: UTF8.self) != String(decoding: rightValue, as: UTF8.self) {
                        return false
                    }
                }
                return true
            }
        }
    }

    public var description: String {
        map { "\($0.name): \($0.value)" }.joined(separator: "\n")
    }
}

extension [UInt8] {
    /// Appends raw bytes with one copy (the generic `append(contentsOf:)` over a raw buffer went byte by byte).
    @inline(__always)
    mutating func appendBytes(_ raw: UnsafeRawBufferPointer) {
        append(contentsOf: raw.assumingMemoryBound(to: UInt8.self))
    }

    /// Appends the UTF-8 of a String with one copy.
    @inline(__always)
    mutating func appendUTF8(_ text: String) {
        withUTF8Bytes(text) { appendBytes($0) }
    }

    /// Appends the bytes of an ASCII literal with one copy.
    @inline(__always)
    mutating func appendASCII(_ text: StaticString) {
        appendBytes(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends the decimal digits of a number.
    mutating func appendDecimal(_ value: UInt64) {
        withDecimalDigits(value) { appendBytes($0) }
    }

    /// Appends CR LF.
    @inline(__always)
    mutating func appendCRLF() {
        append(ASCII.carriageReturn)
        append(ASCII.lineFeed)
    }
}

/// Calls `body` with the UTF-8 of a String, without a copy for a native String.
@inline(__always)
func withUTF8Bytes<Text: StringProtocol, R>(
    _ text: Text, _ body: (UnsafeRawBufferPointer) throws -> R
) rethrows -> R {
    if let result = try text.utf8.withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) {
        return result
    }
    return try Array(text.utf8).withUnsafeBytes(body)
}

/// Calls `body` with the decimal digits of `value` in ASCII, written on the stack (no String, no allocation).
@inline(__always)
func withDecimalDigits(_ value: UInt64, _ body: (UnsafeRawBufferPointer) -> Void) {
    var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // room for the 20 digits of UInt64.max, written backwards
    Swift.withUnsafeMutableBytes(of: &digits) { scratch in
        var remaining = value
        var index = scratch.count
        repeat {
            index -= 1
            scratch[index] = UInt8(ascii: "0") + UInt8(remaining % 10)
            remaining /= 10
        } while remaining > 0
        body(UnsafeRawBufferPointer(rebasing: scratch[index...]))
    }
}

// MARK: - ASCII helpers shared by the module

/// Compares two strings ignoring ASCII case only (header names and tokens are ASCII), without allocating.
/// Native strings take the fast path over their contiguous UTF-8; others fall back to the UTF-8 views.
@inlinable
func asciiCaseInsensitiveEquals<A: StringProtocol, B: StringProtocol>(_ lhs: A, _ rhs: B) -> Bool {
    let left = lhs.utf8
    let right = rhs.utf8
    guard left.count == right.count else { return false }
    let fast = left.withContiguousStorageIfAvailable { leftBytes in
        right.withContiguousStorageIfAvailable { rightBytes in
            asciiCaseInsensitiveEquals(UnsafeRawBufferPointer(leftBytes), UnsafeRawBufferPointer(rightBytes))
        }
    }
    if let fast, let result = fast { return result }
    for (a, b) in zip(left, right) where a != b {
        if asciiLowercased(a) != asciiLowercased(b) { return false }
    }
    return true
}

@inlinable
func asciiCaseInsensitiveEquals(_ left: UnsafeRawBufferPointer, _ right: UnsafeRawBufferPointer) -> Bool {
    guard left.count == right.count else { return false }
    for index in 0..<left.count {
        let a = left[index]
        let b = right[index]
        if a != b && asciiLowercased(a) != asciiLowercased(b) { return false }
    }
    return true
}

/// `asciiCaseInsensitiveEquals` against an ASCII literal.
@inline(__always)
func asciiCaseInsensitiveEquals(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
    asciiCaseInsensitiveEquals(
        bytes, UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
}

@inlinable
func asciiLowercased(_ byte: UInt8) -> UInt8 {
    (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) ? byte | 0x20 : byte
}

/// Drops leading and trailing SP and HTAB (OWS of RFC 9110 section 5.6.3).
func trimmingOptionalWhitespace(_ text: Substring) -> Substring {
    var start = text.startIndex
    var end = text.endIndex
    while start < end, text[start] == " " || text[start] == "\t" { start = text.index(after: start) }
    while end > start {
        let before = text.index(before: end)
        guard text[before] == " " || text[before] == "\t" else { break }
        end = before
    }
    return text[start..<end]
}

/// True for the token characters of RFC 9110 section 5.6.2. Two 64-bit masks instead of a table: no memory
/// load and no lazy-global check on the hot path.
@inlinable
@inline(__always)
public func isTokenCharacter(_ byte: UInt8) -> Bool {
    // Bits 0...63: ! # $ % & ' * + - . 0-9 ^ (set below); bits 64...127: A-Z ^ _ ` a-z | ~.
    let lowMask: UInt64 = 0x03FF_6CFA_0000_0000
    let highMask: UInt64 = 0x57FF_FFFF_C7FF_FFFE
    // Branch-free: pick the mask, test the bit, and refuse everything above 0x7F.
    let mask = byte < 64 ? lowMask : highMask
    return byte < 128 && (mask >> UInt64(byte & 63)) & 1 != 0
}

/// True when the string is a non-empty token, so it can be a field name or a method.
public func isValidFieldName(_ name: String) -> Bool {
    withUTF8Bytes(name) { isValidFieldName($0) }
}

/// True when the bytes are a non-empty token. A plain loop over contiguous bytes: the same test over a String's
/// UTF-8 view cost several times as much on every field the proxy adds.
public func isValidFieldName(_ name: UnsafeRawBufferPointer) -> Bool {
    guard !name.isEmpty else { return false }
    for byte in name where !isTokenCharacter(byte) { return false }
    return true
}

/// True when the bytes are valid UTF-8: at once when they are ASCII, as field values nearly always are.
func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
    for byte in bytes where byte >= 0x80 { return String(validating: bytes, as: UTF8.self) != nil }
    return true
}

/// True when the value cannot break the message framing when serialized (no CR, LF or NUL).
func isSafeFieldValue(_ value: String) -> Bool {
    withUTF8Bytes(value) { isSafeFieldValue($0) }
}

/// True when the bytes contain no CR, LF or NUL.
func isSafeFieldValue(_ value: UnsafeRawBufferPointer) -> Bool {
    for byte in value where byte == 0x0D || byte == 0x0A || byte == 0x00 { return false }
    return true
}
