/// Reading back the canonical `/dump` JSON for `PUT /snapshot`: the whole state is replaced by what the body
/// holds, or, for a body that is not a complete dump within the store's bounds, left exactly as it was.
enum SnapshotDecoder {
    struct Invalid: Error {
        let reason: String
    }

    /// Parses `{"counters":{name:int,...},"kv":{key:"value",...}}` as `KVStore.dump()` writes it (whitespace
    /// between tokens is tolerated; every string escape JSON allows is read).
    static func decode(_ bytes: [UInt8]) throws(Invalid) -> (counters: [[UInt8]: Int64], values: [[UInt8]: [UInt8]]) {
        var reader = Reader(bytes: bytes)
        var counters: [[UInt8]: Int64] = [:]
        var values: [[UInt8]: [UInt8]] = [:]
        var seen: Set<String> = []
        try reader.expect(UInt8(ascii: "{"))
        repeat {
            let section = String(decoding: try reader.string(), as: UTF8.self)
            guard seen.insert(section).inserted else { throw Invalid(reason: "\(section) appears twice") }
            try reader.expect(UInt8(ascii: ":"))
            switch section {
            case "counters":
                try reader.object { key, reader throws(Invalid) in counters[key] = try reader.integer() }
            case "kv":
                try reader.object { key, reader throws(Invalid) in values[key] = try reader.string() }
            default:
                throw Invalid(reason: "unknown section \(section)")
            }
        } while try reader.comma(orEnd: UInt8(ascii: "}"))
        reader.skipSpaces()
        guard reader.isAtEnd else { throw Invalid(reason: "bytes after the state") }
        return (counters, values)
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0
        var isAtEnd: Bool { offset == bytes.count }

        mutating func skipSpaces() {
            while offset < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[offset]) { offset += 1 }
        }

        mutating func expect(_ byte: UInt8) throws(Invalid) {
            skipSpaces()
            guard offset < bytes.count, bytes[offset] == byte else {
                throw Invalid(reason: "expected \(Character(UnicodeScalar(byte))) at byte \(offset)")
            }
            offset += 1
        }

        /// After a member: true for a comma (another follows), false for `end` (consumed).
        mutating func comma(orEnd end: UInt8) throws(Invalid) -> Bool {
            skipSpaces()
            guard offset < bytes.count else { throw Invalid(reason: "unexpected end") }
            defer { offset += 1 }
            if bytes[offset] == UInt8(ascii: ",") { return true }
            if bytes[offset] == end { return false }
            throw Invalid(reason: "expected , or \(Character(UnicodeScalar(end))) at byte \(offset)")
        }

        mutating func object(_ member: ([UInt8], inout Reader) throws(Invalid) -> Void) throws(Invalid) {
            try expect(UInt8(ascii: "{"))
            skipSpaces()
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "}") {
                offset += 1
                return
            }
            repeat {
                let key = try string()
                try expect(UInt8(ascii: ":"))
                try member(key, &self)
            } while try comma(orEnd: UInt8(ascii: "}"))
        }

        mutating func integer() throws(Invalid) -> Int64 {
            skipSpaces()
            let start = offset
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "-") { offset += 1 }
            while offset < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[offset]) { offset += 1 }
            guard let value = Int64(String(decoding: bytes[start..<offset], as: UTF8.self)) else {
                throw Invalid(reason: "bad integer at byte \(start)")
            }
            return value
        }

        /// A JSON string as raw bytes: `\u00XX` with XX >= 80 stands for that raw byte (the dump's encoding of
        /// bytes that are not UTF-8); any other escape is the character's UTF-8.
        mutating func string() throws(Invalid) -> [UInt8] {
            try expect(UInt8(ascii: "\""))
            var out: [UInt8] = []
            while offset < bytes.count {
                let byte = bytes[offset]
                offset += 1
                switch byte {
                case UInt8(ascii: "\""): return out
                case UInt8(ascii: "\\"): try escape(into: &out)
                case 0..<0x20: throw Invalid(reason: "control byte in a string at byte \(offset - 1)")
                default: out.append(byte)
                }
            }
            throw Invalid(reason: "unterminated string")
        }

        private mutating func escape(into out: inout [UInt8]) throws(Invalid) {
            guard offset < bytes.count else { throw Invalid(reason: "unterminated escape") }
            let kind = bytes[offset]
            offset += 1
            switch kind {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(kind)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                guard offset + 4 <= bytes.count,
                    let code = UInt32(String(decoding: bytes[offset..<offset + 4], as: UTF8.self), radix: 16)
                else { throw Invalid(reason: "bad \\u escape at byte \(offset)") }
                offset += 4
                if code <= 0xFF {
                    out.append(UInt8(code))  // The dump's own escapes: control characters and non-UTF-8 bytes.
                } else if let scalar = UnicodeScalar(code) {
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                } else {
                    throw Invalid(reason: "a surrogate escape at byte \(offset - 4)")
                }
            default:
                throw Invalid(reason: "bad escape at byte \(offset - 1)")
            }
        }
    }
}

extension KVStore {
    /// `PUT /snapshot`: replaces the whole state (nothing of the previous state survives), or changes nothing.
    mutating func restore(_ body: [UInt8]) -> KVResponse {
        let decoded: (counters: [[UInt8]: Int64], values: [[UInt8]: [UInt8]])
        do throws(SnapshotDecoder.Invalid) {
            decoded = try SnapshotDecoder.decode(body)
        } catch {
            return .json(400, "{\"error\":\"bad_snapshot\",\"message\":\"\(error.reason)\"}")
        }
        var total = 0
        for (key, value) in decoded.values {
            guard key.count <= KVStore.keyMaxBytes, value.count <= KVStore.valueMaxBytes else {
                return .error(400, "bad_snapshot")
            }
            total += key.count + value.count
        }
        for name in decoded.counters.keys {
            guard name.count <= KVStore.keyMaxBytes else { return .error(400, "bad_snapshot") }
            total += name.count
        }
        guard decoded.values.count <= KVStore.entriesMax, decoded.counters.count <= KVStore.entriesMax,
            total <= KVStore.totalMaxBytes
        else { return .error(507, "store_full") }
        replaceAll(values: decoded.values, counters: decoded.counters, totalBytes: total)
        return .json(200, "{\"restored\":true}")
    }
}
