import XCTest

@testable import TandemHTTP

/// `FieldValues`, the inline-first list of one field's values used while scanning the framing fields.
final class FieldValuesTests: XCTestCase {
    func testValuesKeepTheirOrderAndCountWhateverHowMany() {
        for total in 0..<5 {
            var values = FieldValues()
            let expected = (0..<total).map { "v\($0)" }
            for value in expected { values.append(value) }
            XCTAssertEqual(values.count, total)
            XCTAssertEqual(values.isEmpty, total == 0)
            XCTAssertEqual(values.first, expected.first)
            XCTAssertEqual(Array(values), expected)
        }
    }

    func testTwoHostFieldsAreStillRefusedAndOneIsAccepted() throws {
        var parser = HTTPRequestParser()
        let one = Array("GET / HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
        var heads = 0
        _ = try one.withUnsafeBytes { bytes in
            try parser.parse(bytes) { event in if case .head = event { heads += 1 } }
        }
        XCTAssertEqual(heads, 1)
        var second = HTTPRequestParser()
        let two = Array("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n".utf8)
        XCTAssertThrowsError(try two.withUnsafeBytes { bytes in try second.parse(bytes) { _ in } }) { error in
            XCTAssertEqual((error as? HTTPParseError)?.code, .multipleHost)
        }
    }
}
