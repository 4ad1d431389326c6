/// JSON string encoding of raw bytes for /dump and counter names.
///
/// Valid UTF-8 is copied as is, except `"`, `\` and control characters, which are escaped. A byte that is not
/// part of valid UTF-8 is written as `\u00XX` (its value). The encoding is injective on the JSON text: a `\u00XX`
/// with XX >= 80 only ever stands for an invalid byte, because valid characters above U+007F are never escaped.
/// So two different states never dump to the same bytes, which is what replica comparison needs. A JSON decoder
/// reading /dump will show such a byte as the character U+00XX; compare dumps as bytes, not as decoded JSON.
enum JSONText {
    static func appendString(_ bytes: [UInt8], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var i = 0
        while i < bytes.count {
            let byte = bytes[i]
            if byte < 0x80 {
                appendASCII(byte, to: &out)
                i += 1
            } else if let length = validSequenceLength(bytes, at: i) {
                out.append(contentsOf: bytes[i..<i + length])
                i += length
            } else {
                appendEscape(byte, to: &out)
                i += 1
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static func appendASCII(_ byte: UInt8, to out: inout [UInt8]) {
        switch byte {
        case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
        case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
        case UInt8(ascii: "\n"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
        case UInt8(ascii: "\r"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
        case UInt8(ascii: "\t"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
        case 0..<0x20: appendEscape(byte, to: &out)
        default: out.append(byte)
        }
    }

    private static func appendEscape(_ byte: UInt8, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(contentsOf: Array("\\u00".utf8))
        out.append(hex[Int(byte >> 4)])
        out.append(hex[Int(byte & 0x0F)])
    }

    /// The length of the well-formed UTF-8 sequence starting at `i` (RFC 3629 table: no overlong forms, no
    /// surrogates, nothing above U+10FFFF), or nil when the bytes there are not one.
    static func validSequenceLength(_ bytes: [UInt8], at i: Int) -> Int? {
        let lead = bytes[i]
        let length: Int
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            secondRange = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            secondRange = 0x80...0x9F
        case 0xF0:
            length = 4
            secondRange = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            secondRange = 0x80...0x8F
        default: return nil
        }
        guard i + length <= bytes.count, secondRange.contains(bytes[i + 1]) else { return nil }
        for j in (i + 2)..<(i + length) where !(0x80...0xBF).contains(bytes[j]) {
            return nil
        }
        return length
    }
}
