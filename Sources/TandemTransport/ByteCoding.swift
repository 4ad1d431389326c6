// Little-endian writing into one growing [UInt8], and bounds-checked reading that throws instead of trapping.

/// Why a payload could not be decoded. Malformed input from the network: an operating error, never a trap.
public enum DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The payload ended before a field of `neededBytes` at `offset`.
    case truncated(offset: Int, neededBytes: Int)
    /// A field holds a value the layout does not allow.
    case invalidValue(field: String, offset: Int)
    /// Bytes remained after the last field.
    case trailingBytes(count: Int)
    /// The frame type is not one this codec knows.
    case unknownFrameType(UInt8)

    public var description: String {
        switch self {
        case .truncated(let offset, let needed): return "payload truncated: \(needed) bytes needed at offset \(offset)"
        case .invalidValue(let field, let offset): return "invalid \(field) at offset \(offset)"
        case .trailingBytes(let count): return "\(count) unexpected bytes after the last field"
        case .unknownFrameType(let type): return "unknown frame type \(type)"
        }
    }
}

/// Appends little-endian fields to one buffer. Callers reserve capacity up front, so encoding allocates once.
struct ByteWriter {
    var bytes: [UInt8]

    init(reservingCapacity capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    mutating func u16(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
    }

    mutating func u32(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func u64(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func i64(_ value: Int64) { u64(UInt64(bitPattern: value)) }

    /// A byte string with a u32 length prefix.
    mutating func blob(_ value: [UInt8]) {
        precondition(value.count <= Int(UInt32.max), "blob larger than its u32 length field")
        u32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }

    /// A UTF-8 string with a u16 length prefix (node ids and short reasons).
    mutating func string(_ value: String) {
        let utf8 = Array(value.utf8)
        precondition(utf8.count <= Int(UInt16.max), "string longer than its u16 length field")
        u16(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    mutating func raw(_ value: [UInt8]) { bytes.append(contentsOf: value) }
}

/// Reads little-endian fields from a payload, checking every read against the end.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    // Invariant: 0 <= offset <= bytes.count.
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    private mutating func take(_ count: Int) throws(DecodeError) -> UnsafeRawBufferPointer {
        guard count >= 0, count <= remaining else { throw .truncated(offset: offset, neededBytes: count) }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        offset += count
        assert(offset <= bytes.count, "reader ran past its payload")
        return slice
    }

    mutating func u8() throws(DecodeError) -> UInt8 { try take(1)[0] }

    mutating func bool(_ field: String) throws(DecodeError) -> Bool {
        let at = offset
        switch try u8() {
        case 0: return false
        case 1: return true
        default: throw .invalidValue(field: field, offset: at)
        }
    }

    mutating func u16() throws(DecodeError) -> UInt16 {
        let raw = try take(2)
        return UInt16(raw[0]) | UInt16(raw[1]) << 8
    }

    mutating func u32() throws(DecodeError) -> UInt32 {
        UInt32(littleEndian: try take(4).loadUnaligned(as: UInt32.self))
    }

    mutating func u64() throws(DecodeError) -> UInt64 {
        UInt64(littleEndian: try take(8).loadUnaligned(as: UInt64.self))
    }

    mutating func i64() throws(DecodeError) -> Int64 { Int64(bitPattern: try u64()) }

    /// A u32-prefixed byte string, copied once into its own array.
    mutating func blob() throws(DecodeError) -> [UInt8] {
        let count = Int(try u32())
        return [UInt8](try take(count))
    }

    /// A u16-prefixed UTF-8 string; invalid UTF-8 is an error, not a repair.
    mutating func string(_ field: String) throws(DecodeError) -> String {
        let count = Int(try u16())
        let at = offset
        let raw = try take(count)
        guard let text = String(validating: raw, as: UTF8.self) else { throw .invalidValue(field: field, offset: at) }
        return text
    }

    mutating func raw(_ count: Int) throws(DecodeError) -> [UInt8] { [UInt8](try take(count)) }

    /// A count of elements that each take at least `minimumElementBytes`: a count the rest of the payload cannot
    /// hold is rejected before anything is allocated for it.
    mutating func count(_ field: String, minimumElementBytes: Int) throws(DecodeError) -> Int {
        precondition(minimumElementBytes > 0, "elements have a positive minimum size")
        let at = offset
        let count = Int(try u32())
        guard count <= remaining / minimumElementBytes else { throw .invalidValue(field: field, offset: at) }
        return count
    }

    func expectEnd() throws(DecodeError) {
        guard remaining == 0 else { throw .trailingBytes(count: remaining) }
    }
}
