import XCTest

@testable import TandemHTTP

/// `HTTPHeaders` keeps its fields as bytes and builds Strings on demand: the public operations must behave as they
/// did over a list of String pairs.
final class HTTPHeadersStorageTests: XCTestCase {
    func testReplaceAndSetValueKeepTheOrderAndTheOtherFields() {
        var headers: HTTPHeaders = ["A": "1", "Via": "x", "B": "2", "via": "y", "C": "3"]
        headers.replace(name: "VIA", value: "z")
        XCTAssertEqual(headers.map { $0.name }, ["A", "VIA", "B", "C"])
        XCTAssertEqual(headers.map { $0.value }, ["1", "z", "2", "3"])
        headers.setValue("a much longer value than before", at: 2)
        XCTAssertEqual(headers[2].name, "B")
        XCTAssertEqual(headers[2].value, "a much longer value than before")
        XCTAssertEqual(headers.first(name: "c"), "3")
        XCTAssertEqual(headers.remove(name: "a"), 1)
        XCTAssertEqual(headers.map { $0.name }, ["VIA", "B", "C"])
    }

    func testParsedFieldsEqualTheSameFieldsBuiltFromStrings() throws {
        var parser = HTTPRequestParser()
        let bytes = Array("GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\u{E9}\r\nEmpty:\r\n\r\n".utf8)
        var parsed: HTTPHeaders?
        _ = try bytes.withUnsafeBytes { raw in
            try parser.parse(raw) { event in if case .head(let head) = event { parsed = head.headers } }
        }
        let built: HTTPHeaders = ["Host": "h", "X-Name": "caf\u{E9}", "Empty": ""]
        XCTAssertEqual(parsed, built)
        XCTAssertEqual(parsed?.values(name: "x-name"), ["caf\u{E9}"])
        XCTAssertNotEqual(parsed, ["Host": "h", "X-Name": "cafe", "Empty": ""])
    }

    func testCanonicallyEquivalentValuesAreStillEqual() {
        let precomposed: HTTPHeaders = ["X": "caf\u{E9}"]
        let decomposed: HTTPHeaders = ["X": "cafe\u{301}"]
        XCTAssertEqual(precomposed, decomposed)
        XCTAssertNotEqual(precomposed, ["x": "caf\u{E9}"], "names keep their case")
    }

    func testDecimalDigitsAreAppendedWithoutAString() {
        for value: UInt64 in [0, 7, 10, 1234, UInt64(Int64.max), .max] {
            var buffer: [UInt8] = [0x41]
            buffer.appendDecimal(value)
            XCTAssertEqual(String(decoding: buffer, as: UTF8.self), "A\(value)")
        }
    }

    func testForEachFieldGivesWhatIterationGivesAfterEdits() {
        var headers: HTTPHeaders = ["Host": "a", "X-One": "1", "X-Two": "2"]
        headers.reserveCapacity(fields: 10, bytes: 200)
        headers.add(name: "X-Three", value: "3")
        headers.remove(name: "x-one")
        headers.setValue("two", at: 1)
        var seen: [(String, String)] = []
        headers.forEachField { name, value in
            seen.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        XCTAssertEqual(seen.map { "\($0.0)=\($0.1)" }, headers.map { "\($0.name)=\($0.value)" })
        XCTAssertEqual(seen.map { "\($0.0)=\($0.1)" }, ["Host=a", "X-Two=two", "X-Three=3"])
    }
}
