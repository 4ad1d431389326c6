import XCTest

@testable import TandemHTTP

/// Throughput of the hot path. Figures are printed, never asserted (the machines running the suite are shared and
/// noisy: a floor failed a loaded run at half its value); run `swift test -c release --filter PerformanceTests` for
/// numbers worth quoting, and the benchmarks (BENCHMARKS.md) for comparisons. What is asserted is the work done.
final class PerformanceTests: XCTestCase {
    private let typicalRequest = """
        POST /kv/some-key HTTP/1.1\r
        Host: tandem.example:8080\r
        User-Agent: wrk/4.2\r
        Accept: */*\r
        Accept-Encoding: gzip, deflate\r
        Content-Type: application/octet-stream\r
        Idempotency-Key: 0b6f3c1e-9a52-4f8e-bb0e-5f2b7f1a9c3d\r
        X-Request-Id: 7f3e9c1a\r
        Content-Length: 16\r
        \r
        0123456789abcdef
        """.bytes

    func testPipelinedTypicalRequestsAllParseAndTheirRateIsPrinted() throws {
        let copies = 2000
        let input = Array([[UInt8]](repeating: typicalRequest, count: copies).joined())
        var parser = HTTPRequestParser()
        var messages = 0
        let started = DispatchTime.now().uptimeNanoseconds
        try input.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                offset += try parser.parse(raw.slice(offset..<raw.count)) { if case .end = $0 { messages += 1 } }
            }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let requestsPerSecond = Double(copies) / seconds
        let megabytesPerSecond = Double(input.count) / seconds / 1e6
        print("request parser: \(Int(requestsPerSecond)) requests/s, \(Int(megabytesPerSecond)) MB/s")
        XCTAssertEqual(messages, copies)
    }

    func testALargeBodyPassesThroughAsOneSliceOfTheInput() throws {
        let body = [UInt8](repeating: 0x61, count: 8 * 1024 * 1024)
        let head = "PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: \(body.count)\r\n\r\n".bytes
        let input = head + body
        var parser = HTTPRequestParser()
        var bodyBytes = 0
        var events = 0
        let started = DispatchTime.now().uptimeNanoseconds
        _ = try input.withUnsafeBytes { raw in
            try parser.parse(raw) { event in
                events += 1
                if case .body(let bytes) = event { bodyBytes += bytes.count }
            }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        print("request parser: 8 MiB Content-Length body in \(Int(seconds * 1e6)) us")
        XCTAssertEqual(bodyBytes, body.count)
        XCTAssertEqual(events, 3, "one head, one body slice pointing into the input, one end")
    }

    func testTheTokenMasksMatchTheRFCDefinition() {
        let tokenCharacters = Set("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
        for byte in 0...255 {
            XCTAssertEqual(isTokenCharacter(UInt8(byte)), tokenCharacters.contains(UInt8(byte)), "byte \(byte)")
        }
    }
}
