import XCTest

@testable import TandemHTTP

/// The parsers keep the method and reason Strings of the previous message when the bytes repeat; every message
/// must still report its own.
final class RepeatedStartLineTests: XCTestCase {
    func testEachRequestOnAConnectionReportsItsOwnMethod() throws {
        var parser = HTTPRequestParser()
        var methods: [String] = []
        for method in ["GET", "GET", "HEAD", "GET", "OPTIONS", "GETX", "GET"] {
            let bytes = Array("\(method) / HTTP/1.1\r\nHost: h\r\n\r\n".utf8)
            _ = try bytes.withUnsafeBytes { raw in
                try parser.parse(raw) { event in if case .head(let head) = event { methods.append(head.method) } }
            }
        }
        XCTAssertEqual(methods, ["GET", "GET", "HEAD", "GET", "OPTIONS", "GETX", "GET"])
    }

    func testEachResponseOnAConnectionReportsItsOwnReason() throws {
        var parser = HTTPResponseParser()
        var reasons: [String] = []
        let lines: [[UInt8]] = [
            Array("HTTP/1.1 200 OK".utf8), Array("HTTP/1.1 200 OK".utf8), Array("HTTP/1.1 404 Not Found".utf8),
            Array("HTTP/1.1 200".utf8), Array("HTTP/1.1 200 OK".utf8), Array("HTTP/1.1 200 ".utf8),
            Array("HTTP/1.1 200 caf".utf8) + [0xE9], Array("HTTP/1.1 200 caf".utf8) + [0xE9],
            Array("HTTP/1.1 200 OK".utf8),
        ]
        for line in lines {
            parser.expect(requestMethod: "GET")
            let bytes = line + Array("\r\nContent-Length: 0\r\n\r\n".utf8)
            _ = try bytes.withUnsafeBytes { raw in
                try parser.parse(raw) { event in if case .head(let head) = event { reasons.append(head.reason) } }
            }
        }
        XCTAssertEqual(reasons, ["OK", "OK", "Not Found", "", "OK", "", "caf\u{FFFD}", "caf\u{FFFD}", "OK"])
    }
}
