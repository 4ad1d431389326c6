// HTTPHeaders: the ordered list of header (or trailer) fields of one message.

/// Ordered header fields, with names kept exactly as received (a proxy forwards them unchanged) and lookups that
/// ignore ASCII case, as RFC 9110 section 5.1 requires.
public struct HTTPHeaders: Sendable, Sequence, Equatable, ExpressibleByDictionaryLiteral,
    CustomStringConvertible
{
    /// One field.
    public typealias Element = (name: String, value: String)

    // Invariant: no name or value contains CR, LF or NUL (checked where fields are added), so serializing the
    // list can never split a message.
    @usableFromInline var fields: [Element]

    /// An empty list.
    public init() { fields = [] }

    /// A list of the given fields, in order.
    public init(_ fields: [(String, String)]) {
        self.fields = []
        self.fields.reserveCapacity(fields.count)
        for (name, value) in fields { add(name: name, value: value) }
    }

    /// A list of the given fields, in literal order.
    public init(dictionaryLiteral elements: (String, String)...) { self.init(elements) }

    // The parser has already validated every byte; skip the re-check on its hot path.
    init(validatedCapacity: Int) {
        fields = []
        fields.reserveCapacity(validatedCapacity)
    }

    mutating func appendValidated(name: String, value: String) { fields.append((name, value)) }

    /// The number of fields (a field repeated on several lines counts once per line).
    public var count: Int { fields.count }
    /// True when there is no field.
    public var isEmpty: Bool { fields.isEmpty }
    /// The field at a position, in received order.
    public subscript(index: Int) -> Element { fields[index] }

    public func makeIterator() -> IndexingIterator<[Element]> { fields.makeIterator() }

    /// The value of the first field with this name (any case), or nil.
    public func first(name: String) -> String? {
        for field in fields where asciiCaseInsensitiveEquals(field.name, name) { return field.value }
        return nil
    }

    /// The values of every field with this name (any case), in order. Lines are not split at commas.
    public func values(name: String) -> [String] {
        fields.compactMap { asciiCaseInsensitiveEquals($0.name, name) ? $0.value : nil }
    }

    /// True when at least one field has this name (any case).
    public func contains(name: String) -> Bool {
        fields.contains { asciiCaseInsensitiveEquals($0.name, name) }
    }

    /// The comma-separated list elements of every field with this name, trimmed of whitespace, empty elements
    /// dropped (RFC 9110 section 5.6.1). Quoted strings are not treated specially: use it for token lists only.
    public func tokens(name: String) -> [Substring] {
        var result: [Substring] = []
        for field in fields where asciiCaseInsensitiveEquals(field.name, name) {
            for element in field.value.split(separator: ",", omittingEmptySubsequences: true) {
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

    /// Appends a field at the end. The name must be a token and the value must not contain CR, LF or NUL;
    /// anything else is a programmer error that could split a message, so it traps.
    public mutating func add(name: String, value: String) {
        precondition(isValidFieldName(name), "invalid header field name \(name.debugDescription)")
        precondition(isSafeFieldValue(value), "header field value contains CR, LF or NUL")
        fields.append((name, value))
    }

    /// Removes every field with this name (any case); returns how many were removed.
    @discardableResult
    public mutating func remove(name: String) -> Int {
        let before = fields.count
        fields.removeAll { asciiCaseInsensitiveEquals($0.name, name) }
        return before - fields.count
    }

    /// Removes every field whose name satisfies the predicate.
    public mutating func removeAll(where shouldRemove: (Element) -> Bool) {
        fields.removeAll(where: shouldRemove)
    }

    /// Replaces every field with this name by one field with this value, at the position of the first one (or at
    /// the end when there was none).
    public mutating func replace(name: String, value: String) {
        precondition(isValidFieldName(name), "invalid header field name \(name.debugDescription)")
        precondition(isSafeFieldValue(value), "header field value contains CR, LF or NUL")
        guard let firstIndex = fields.firstIndex(where: { asciiCaseInsensitiveEquals($0.name, name) }) else {
            fields.append((name, value))
            return
        }
        fields[firstIndex] = (name, value)
        var index = fields.count - 1
        while index > firstIndex {
            if asciiCaseInsensitiveEquals(fields[index].name, name) { fields.remove(at: index) }
            index -= 1
        }
    }

    /// Replaces the value of the field at a position.
    public mutating func setValue(_ value: String, at index: Int) {
        precondition(isSafeFieldValue(value), "header field value contains CR, LF or NUL")
        fields[index].value = value
    }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    public var description: String {
        fields.map { "\($0.name): \($0.value)" }.joined(separator: "\n")
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
func isTokenCharacter(_ byte: UInt8) -> Bool {
    // Bits 0...63: ! # $ % & ' * + - . 0-9 ^ (set below); bits 64...127: A-Z ^ _ ` a-z | ~.
    let lowMask: UInt64 = 0x03FF_6CFA_0000_0000
    let highMask: UInt64 = 0x57FF_FFFF_C7FF_FFFE
    if byte < 64 { return lowMask & (1 << UInt64(byte)) != 0 }
    if byte < 128 { return highMask & (1 << UInt64(byte - 64)) != 0 }
    return false
}

/// True when the string is a non-empty token, so it can be a field name or a method.
func isValidFieldName(_ name: String) -> Bool {
    !name.isEmpty && name.utf8.allSatisfy(isTokenCharacter)
}

/// True when the value cannot break the message framing when serialized (no CR, LF or NUL).
func isSafeFieldValue(_ value: String) -> Bool {
    !value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 }
}
