import XCTest

@testable import TandemHTTP

/// Field values are checked eight bytes at a time while every byte is SP or visible ASCII; any other byte, at any
/// position of any word, must get the same verdict as the byte-by-byte rule.
final class FieldValueWordCheckTests: XCTestCase {
    private func parses(value: [UInt8]) -> Bool {
        var parser = HTTPRequestParser()
        let bytes = Array("GET / HTTP/1.1\r\nHost: h\r\nX-V: ".utf8) + value + Array("\r\n\r\n".utf8)
        var heads = 0
        do {
            _ = try bytes.withUnsafeBytes { raw in
                try parser.parse(raw) { event in if case .head = event { heads += 1 } }
            }
        } catch {
            return false
        }
        return heads == 1
    }

    func testEveryByteAtEveryPositionOfAWordGetsTheByteRule() {
        let filler = Array("abcdefghijklmnopqrstu".utf8)  // 21 bytes: two whole words and a tail
        for byte in UInt8(0)...UInt8(255) where byte != ASCII.carriageReturn && byte != ASCII.lineFeed {
            // A lone byte above 0x7F is not UTF-8; SP and HTAB are allowed inside a value.
            let allowed = byte == ASCII.tab || (byte >= 0x20 && byte <= 0x7E)
            for position in 1..<(filler.count - 1) {
                var value = filler
                value[position] = byte
                XCTAssertEqual(parses(value: value), allowed, "byte \(byte) at \(position)")
            }
        }
    }

    func testUTF8AnywhereInALongValueIsAccepted() {
        let filler = Array("abcdefghijklmnopqrstuvwxyz".utf8)
        for position in 1..<(filler.count - 1) {
            var value = filler
            value.replaceSubrange(position..<(position + 1), with: Array("\u{E9}".utf8))
            XCTAssertTrue(parses(value: value), "UTF-8 at \(position)")
            value[position] = 0xC3  // the lead byte alone, followed by ASCII: not UTF-8
            value[position + 1] = 0x41
            XCTAssertFalse(parses(value: value), "a broken sequence at \(position)")
        }
    }
}
