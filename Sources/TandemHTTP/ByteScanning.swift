// ByteScanning: the few raw-buffer primitives the parsers are built on (memchr-based, no allocation).

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

enum ASCII {
    static let tab: UInt8 = 0x09
    static let lineFeed: UInt8 = 0x0A
    static let carriageReturn: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let quote: UInt8 = 0x22
    static let colon: UInt8 = 0x3A
    static let semicolon: UInt8 = 0x3B
    static let equals: UInt8 = 0x3D
    static let backslash: UInt8 = 0x5C
    static let delete: UInt8 = 0x7F

    @inline(__always)
    static func isWhitespace(_ byte: UInt8) -> Bool { byte == space || byte == tab }

    @inline(__always)
    static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
}

extension UnsafeRawBufferPointer {
    /// The offset of the first `byte` at or after `start`, found with memchr, or nil.
    @inline(__always)
    func firstOffset(of byte: UInt8, from start: Int = 0) -> Int? {
        guard start < count, let base = baseAddress else { return nil }
        guard let found = memchr(base + start, Int32(byte), count - start) else { return nil }
        return UnsafeRawPointer(found) - base
    }

    /// The offset of the last `byte`, or nil.
    func lastOffset(of byte: UInt8) -> Int? {
        var index = count - 1
        while index >= 0 {
            if self[index] == byte { return index }
            index -= 1
        }
        return nil
    }

    /// A view of `range` of this buffer, sharing its memory.
    @inline(__always)
    func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: self[range])
    }

    /// True when the bytes equal the ASCII string exactly.
    func equalsASCII(_ text: StaticString) -> Bool {
        guard count == text.utf8CodeUnitCount else { return false }
        guard let base = baseAddress else { return true }
        return memcmp(base, text.utf8Start, count) == 0
    }

    /// True when the bytes are exactly the UTF-8 of `text`.
    func equalsUTF8(of text: String) -> Bool {
        guard count == text.utf8.count else { return false }
        guard let base = baseAddress else { return true }
        return withUTF8Bytes(text) { memcmp(base, $0.baseAddress!, count) == 0 }
    }

    /// The bytes as a String. Callers pass only bytes already checked to be ASCII, so no decoding can fail.
    @inline(__always)
    func asciiString() -> String { String(decoding: self, as: UTF8.self) }
}
