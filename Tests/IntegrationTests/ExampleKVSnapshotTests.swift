import Foundation
import XCTest

/// example-kv's snapshot endpoints, which Tandem's snapshot hooks use: `GET /snapshot` is the whole state (the
/// `/dump` bytes), `PUT /snapshot` replaces all of it, or nothing when the body is not a valid state.
final class ExampleKVSnapshotTests: ProcessTestCase {
    func testAStateReadFromOneAppReplacesTheWholeStateOfAnother() throws {
        let (_, source) = try startApp()
        let odd: [UInt8] = [0x71, 0x22, 0x5C, 0x0A, 0x01, 0xFF, 0xC3, 0xA9]
        XCTAssertEqual(try httpRequest(port: source, method: "PUT", path: "/kv/a", body: "hello").status, 200)
        XCTAssertEqual(try httpRequest(port: source, method: "PUT", path: "/kv/b%2Fc", body: "v").status, 200)
        XCTAssertEqual(try httpRequest(port: source, method: "PUT", path: "/kv/odd", bodyBytes: odd).status, 200)
        for _ in 0..<3 { _ = try httpRequest(port: source, method: "POST", path: "/counters/c/incr") }
        let snapshot = try httpRequest(port: source, method: "GET", path: "/snapshot")
        XCTAssertEqual(snapshot.status, 200)
        XCTAssertEqual(snapshot.body, try httpRequest(port: source, method: "GET", path: "/dump").body)

        let (_, target) = try startApp()
        XCTAssertEqual(try httpRequest(port: target, method: "PUT", path: "/kv/stale", body: "old").status, 200)
        _ = try httpRequest(port: target, method: "POST", path: "/counters/other/incr")
        let restored = try httpRequest(port: target, method: "PUT", path: "/snapshot", bodyBytes: snapshot.body)
        XCTAssertEqual(restored.status, 200, restored.bodyText)
        XCTAssertEqual(
            try httpRequest(port: target, method: "GET", path: "/dump").body, snapshot.body,
            "byte-identical state, and nothing of the previous one")
        XCTAssertEqual(try httpRequest(port: target, method: "GET", path: "/kv/odd").body, odd)
        XCTAssertEqual(try httpRequest(port: target, method: "GET", path: "/kv/stale").status, 404)
    }

    func testABrokenSnapshotIsRefusedAndChangesNothing() throws {
        let (_, port) = try startApp()
        XCTAssertEqual(try httpRequest(port: port, method: "PUT", path: "/kv/keep", body: "me").status, 200)
        let before = try httpRequest(port: port, method: "GET", path: "/dump").body
        for broken in [
            "", "{", "{\"counters\":{},\"kv\":{\"a\":\"x\"}", "{\"counters\":{\"c\":\"nan\"},\"kv\":{}}",
            "{\"counters\":{},\"kv\":{},\"extra\":{}}", "{\"counters\":{},\"kv\":{}} trailing",
        ] {
            let answer = try httpRequest(port: port, method: "PUT", path: "/snapshot", body: broken)
            XCTAssertEqual(answer.status, 400, "\(broken): \(answer.bodyText)")
            XCTAssertEqual(try httpRequest(port: port, method: "GET", path: "/dump").body, before, broken)
        }
        let empty = try httpRequest(port: port, method: "PUT", path: "/snapshot", body: "{\"counters\":{},\"kv\":{}}")
        XCTAssertEqual(empty.status, 200)
        XCTAssertEqual(
            try httpRequest(port: port, method: "GET", path: "/dump").bodyText, "{\"counters\":{},\"kv\":{}}")
    }
}

/// `httpRequest` with a body of raw bytes.
private func httpRequest(port: UInt16, method: String, path: String, bodyBytes: [UInt8]) throws -> TestResponse {
    let client = try RawClient(port: port, timeoutSeconds: 15)
    client.send(
        "\(method) \(path) HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: \(bodyBytes.count)\r\n\r\n")
    client.send(bodyBytes)
    return try client.readResponse(method: method)
}
