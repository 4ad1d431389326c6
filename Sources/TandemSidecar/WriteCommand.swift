import TandemHTTP

/// A client's write as it travels through the log: the request exactly as every replica's app will receive it
/// (method, target, end-to-end fields, body). Forwarding fields are added by the node that took the request,
/// before it is proposed, so every replica sees the same bytes.
///
/// Layout (little-endian): [version u8 = 1][method u16+bytes][target u32+bytes][field count u16]
/// {[name u16+bytes][value u32+bytes]}*[body u32+bytes]. Decoding is bounds-checked and never traps, and it refuses
/// what could not be sent as a request (the serializer would trap on it, on every replica): a method or field name
/// that is not a token, a field value with CR, LF or NUL, a target that is not visible ASCII, trailing bytes.
struct WriteCommand: Equatable {
    var method: String
    var target: String
    var headers: HTTPHeaders
    var body: [UInt8]

    static let formatVersion: UInt8 = 1

    enum DecodeError: Error, Equatable {
        case truncated, unknownVersion(UInt8), invalidText, invalidMethod, invalidTarget, invalidFieldName
        case invalidFieldValue, trailingBytes
    }

    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64 + target.utf8.count + body.count + headers.count * 32)
        out.append(Self.formatVersion)
        Self.appendText(method, lengthBytes: 2, into: &out)
        Self.appendText(target, lengthBytes: 4, into: &out)
        Self.append(UInt64(headers.count), bytes: 2, into: &out)
        headers.forEachField { name, value in
            Self.append(UInt64(name.count), bytes: 2, into: &out)
            out.append(contentsOf: name)
            Self.append(UInt64(value.count), bytes: 4, into: &out)
            out.append(contentsOf: value)
        }
        Self.append(UInt64(body.count), bytes: 4, into: &out)
        out.append(contentsOf: body)
        return out
    }

    static func decode(_ bytes: [UInt8]) throws(DecodeError) -> WriteCommand {
        var reader = Reader(bytes: bytes)
        let version = try reader.integer(1)
        guard version == UInt64(formatVersion) else { throw .unknownVersion(UInt8(truncatingIfNeeded: version)) }
        let method = try reader.text(lengthBytes: 2)
        guard isToken(method) else { throw .invalidMethod }
        let target = try reader.text(lengthBytes: 4)
        guard isTarget(target) else { throw .invalidTarget }
        let count = try reader.integer(2)
        var headers = HTTPHeaders()
        // Room for every field at once (at most what is left of the entry): growing the field list one field at
        // a time reallocated it several times per entry applied.
        headers.reserveCapacity(fields: Int(count), bytes: bytes.count - reader.offset)
        for _ in 0..<count {
            // Checked and copied as bytes: this runs for every entry applied, and a String for each name and
            // value, checked on its UTF-8 view, was the costliest part of it. The name is checked before the
            // value is read (a bad name is reported as such even when the value is cut short); `add(checkedName:)`
            // checks it again, which costs a few instructions per field.
            let name = try reader.bytes(Int(try reader.integer(2)))
            guard name.withUnsafeBytes(isValidFieldName) else {
                throw String(validating: name, as: UTF8.self) == nil ? .invalidText : .invalidFieldName
            }
            let value = try reader.bytes(Int(try reader.integer(4)))
            let added = name.withUnsafeBytes { name in
                value.withUnsafeBytes { headers.add(checkedName: name, value: $0) }
            }
            guard added else {
                throw String(validating: value, as: UTF8.self) == nil ? .invalidText : .invalidFieldValue
            }
        }
        let body = try reader.bytes(Int(try reader.integer(4)))
        guard reader.offset == bytes.count else { throw .trailingBytes }
        return WriteCommand(method: method, target: target, headers: headers, body: Array(body))
    }

    /// A token of RFC 9110 section 5.6.2 (methods and field names): visible ASCII except the delimiters.
    static func isToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy(isTokenCharacter)
    }

    /// A request target the request line can carry: visible ASCII, and neither a fragment nor a backslash.
    static func isTarget(_ text: String) -> Bool {
        !text.isEmpty
            && text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "#") && $0 != UInt8(ascii: "\\") }
    }

    private static func appendText(_ text: String, lengthBytes: Int, into out: inout [UInt8]) {
        append(UInt64(text.utf8.count), bytes: lengthBytes, into: &out)
        out.append(contentsOf: text.utf8)
    }

    private static func append(_ value: UInt64, bytes: Int, into out: inout [UInt8]) {
        for shift in 0..<bytes { out.append(UInt8(truncatingIfNeeded: value >> (8 * shift))) }
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func bytes(_ count: Int) throws(DecodeError) -> ArraySlice<UInt8> {
            guard count >= 0, count <= bytes.count - offset else { throw .truncated }
            defer { offset += count }
            return bytes[offset..<offset + count]
        }

        mutating func integer(_ width: Int) throws(DecodeError) -> UInt64 {
            var value: UInt64 = 0
            for (shift, byte) in try bytes(width).enumerated() { value |= UInt64(byte) << (8 * shift) }
            return value
        }

        mutating func text(lengthBytes: Int) throws(DecodeError) -> String {
            let length = Int(try integer(lengthBytes))
            guard let text = String(validating: try bytes(length), as: UTF8.self) else { throw .invalidText }
            return text
        }
    }
}
