import XCTest

@testable import TandemHTTP

/// Every limit accepts input exactly at the limit and rejects one byte (or one field) past it, with the status
/// the proxy answers; limits hold when input trickles in, without buffering past them.
final class LimitTests: XCTestCase {
    private let defaults = HTTPLimits()

    /// A request line of exactly `totalBytes` bytes including its CRLF.
    private func requestLine(totalBytes: Int) -> String {
        let fixed = "GET /".utf8.count + " HTTP/1.1\r\n".utf8.count
        return "GET /" + String(repeating: "a", count: totalBytes - fixed) + " HTTP/1.1\r\n"
    }

    func testTheDefaultsAreThoseOfTheProductContract() {
        XCTAssertEqual(defaults.requestLineMaxBytes, 8192)
        XCTAssertEqual(defaults.headerBlockMaxBytes, 65536)
        XCTAssertEqual(defaults.headerCountMax, 100)
        XCTAssertEqual(defaults.bodyMaxBytes, 16 * 1024 * 1024)
    }

    func testARequestLineOfExactlyTheLimitIsAcceptedAndOneByteMoreGets414() {
        let atLimit = requestLine(totalBytes: 8192) + "Host: a\r\n\r\n"
        XCTAssertNil(feedRequests(atLimit.bytes).error)
        XCTAssertNil(feedRequests(atLimit.bytes, pieceBytes: 1).error)
        let pastLimit = requestLine(totalBytes: 8193) + "Host: a\r\n\r\n"
        XCTAssertEqual(feedRequests(pastLimit.bytes).error, .requestLineTooLong)
        XCTAssertEqual(feedRequests(pastLimit.bytes, pieceBytes: 1).error, .requestLineTooLong)
        XCTAssertEqual(HTTPParseError(.requestLineTooLong, "").statusCode, 414)
    }

    func testARequestLineTricklingInIsCutAtTheLimitPlusOneWithoutBufferingMore() {
        var parser = HTTPRequestParser()
        var accepted = 0
        var maxBuffered = 0
        var failure: HTTPParseError.Code?
        let byte: [UInt8] = [UInt8(ascii: "a")]
        for _ in 0..<20_000 {
            do {
                accepted += try byte.withUnsafeBytes { try parser.parse($0) { _ in } }
            } catch {
                failure = (error as? HTTPParseError)?.code
                break
            }
            maxBuffered = max(maxBuffered, parser.bufferedLineBytes)
        }
        XCTAssertEqual(failure, .requestLineTooLong)
        XCTAssertEqual(accepted, 8192)
        XCTAssertEqual(maxBuffered, 8192)
    }

    func testAHugeBufferWithoutALineEndIsRejectedWithoutBeingBuffered() {
        var parser = HTTPRequestParser()
        let input = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        XCTAssertThrowsError(try input.withUnsafeBytes { try parser.parse($0) { _ in } }) { error in
            XCTAssertEqual((error as? HTTPParseError)?.code, .requestLineTooLong)
        }
        XCTAssertEqual(parser.bufferedLineBytes, 0)
    }

    /// A head whose header section (fields, their CRLFs and the final empty line) is exactly `totalBytes`.
    private func head(headerSectionBytes totalBytes: Int) -> String {
        let fixed = "Host: a\r\n".utf8.count + "X-Fill: ".utf8.count + "\r\n".utf8.count + "\r\n".utf8.count
        let fill = String(repeating: "f", count: totalBytes - fixed)
        return "GET / HTTP/1.1\r\nHost: a\r\nX-Fill: \(fill)\r\n\r\n"
    }

    func testAHeaderSectionOfExactlyTheLimitIsAcceptedAndOneByteMoreGets431() {
        XCTAssertNil(feedRequests(head(headerSectionBytes: 65536).bytes).error)
        XCTAssertNil(feedRequests(head(headerSectionBytes: 65536).bytes, pieceBytes: 7).error)
        XCTAssertEqual(feedRequests(head(headerSectionBytes: 65537).bytes).error, .headerBlockTooLarge)
        XCTAssertEqual(feedRequests(head(headerSectionBytes: 65537).bytes, pieceBytes: 7).error, .headerBlockTooLarge)
        XCTAssertEqual(HTTPParseError(.headerBlockTooLarge, "").statusCode, 431)
    }

    func testManySmallFieldsCountAgainstTheHeaderSectionTogether() {
        let limits = HTTPLimits(headerBlockMaxBytes: 100, headerCountMax: 100)
        var text = "GET / HTTP/1.1\r\nHost: a\r\n"
        for index in 0..<20 { text += "X\(index): 1\r\n" }
        XCTAssertEqual(feedRequests((text + "\r\n").bytes, limits: limits).error, .headerBlockTooLarge)
    }

    private func request(fieldCount: Int) -> String {
        var text = "GET / HTTP/1.1\r\nHost: a\r\n"
        for index in 1..<fieldCount { text += "X-\(index): v\r\n" }
        return text + "\r\n"
    }

    func testExactlyTheMaximumNumberOfFieldsIsAcceptedAndOneMoreGets431() {
        let outcome = feedRequests(request(fieldCount: 100).bytes)
        XCTAssertNil(outcome.error)
        XCTAssertEqual(outcome.messages.first?.head?.headers.count, 100)
        XCTAssertEqual(feedRequests(request(fieldCount: 101).bytes).error, .tooManyHeaders)
        XCTAssertEqual(HTTPParseError(.tooManyHeaders, "").statusCode, 431)
    }

    func testAContentLengthOfExactlyTheBodyLimitIsAcceptedAndOneMoreGets413BeforeTheHeadIsReported() {
        let limits = HTTPLimits(bodyMaxBytes: 10)
        let atLimit = "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789".bytes
        XCTAssertEqual(feedRequests(atLimit, limits: limits).messages.first?.body.count, 10)
        let past = feedRequests("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n".bytes, limits: limits)
        XCTAssertEqual(past.error, .bodyTooLarge)
        XCTAssertTrue(past.messages.isEmpty)
        XCTAssertEqual(HTTPParseError(.bodyTooLarge, "").statusCode, 413)
    }

    func testAChunkedBodyOfExactlyTheLimitIsAcceptedAndOneByteMoreGets413BeforeTheChunkIsDelivered() {
        let limits = HTTPLimits(bodyMaxBytes: 10)
        let prefix = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        let atLimit = prefix + "4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n"
        XCTAssertEqual(feedRequests(atLimit.bytes, limits: limits).messages.first?.body.count, 10)
        let past = prefix + "4\r\n0123\r\n7\r\n456789X\r\n0\r\n\r\n"
        XCTAssertEqual(feedRequests(past.bytes, limits: limits).error, .bodyTooLarge)
        XCTAssertEqual(feedRequests(past.bytes, pieceBytes: 1, limits: limits).error, .bodyTooLarge)
    }

    func testAChunkLineOfExactlyTheLimitIsAcceptedAndOneByteMoreIsRejected() {
        let limits = HTTPLimits(chunkLineMaxBytes: 16)
        let prefix = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        // "1;e=" + value + CRLF: 6 bytes of framing around the value.
        let atLimit = prefix + "1;e=\(String(repeating: "v", count: 10))\r\nx\r\n0\r\n\r\n"
        XCTAssertNil(feedRequests(atLimit.bytes, limits: limits).error)
        let past = prefix + "1;e=\(String(repeating: "v", count: 11))\r\nx\r\n0\r\n\r\n"
        XCTAssertEqual(feedRequests(past.bytes, limits: limits).error, .chunkLineTooLong)
        XCTAssertEqual(feedRequests(past.bytes, pieceBytes: 1, limits: limits).error, .chunkLineTooLong)
    }

    func testLeadingZerosInAChunkSizeCountAgainstTheChunkLineLimitNotAsOverflow() {
        let prefix = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        let zeros = String(repeating: "0", count: 40)
        XCTAssertEqual(feedRequests((prefix + "\(zeros)1\r\nx\r\n0\r\n\r\n").bytes).messages.first?.body, [120])
    }

    func testATrailerSectionOfExactlyTheLimitIsAcceptedAndOneByteMoreIsRejected() {
        let limits = HTTPLimits(trailerBlockMaxBytes: 20)
        let prefix = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
        // "X: " + value + CRLF + CRLF: 7 bytes around the value.
        let atLimit = prefix + "X: \(String(repeating: "t", count: 13))\r\n\r\n"
        XCTAssertEqual(feedRequests(atLimit.bytes, limits: limits).messages.first?.trailers?.count, 1)
        let past = prefix + "X: \(String(repeating: "t", count: 14))\r\n\r\n"
        XCTAssertEqual(feedRequests(past.bytes, limits: limits).error, .trailerBlockTooLarge)
    }

    func testTrailerFieldsAreCountedAgainstTheFieldLimit() {
        let limits = HTTPLimits(headerCountMax: 2)
        let text = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
        XCTAssertEqual(feedRequests(text.bytes, limits: limits).error, .tooManyHeaders)
    }

    func testAnUnlimitedResponseBodyStreamsPastTheRequestBodyLimit() throws {
        var parser = HTTPResponseParser()
        parser.expect(requestMethod: "GET")
        var delivered = 0
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n".bytes
        _ = try head.withUnsafeBytes { try parser.parse($0) { _ in } }
        let piece = [UInt8](repeating: 0x72, count: 1 << 20)
        for _ in 0..<20 {
            _ = try piece.withUnsafeBytes { raw in
                try parser.parse(raw) { if case .body(let body) = $0 { delivered += body.count } }
            }
        }
        XCTAssertEqual(delivered, 20 << 20, "20 MiB streamed, more than the 16 MiB request limit")
        XCTAssertEqual(parser.phase, .body)
        XCTAssertEqual(parser.bufferedLineBytes, 0)
    }
}

/// Memory held between messages stays small, whatever the largest line seen.
final class RetentionTests: XCTestCase {
    func testALargeSplitHeaderLineIsNotRetainedAfterItsRequest() {
        var parser = HTTPRequestParser()
        let long = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: \(String(repeating: "b", count: 60_000))\r\n\r\n".bytes
        let small = "GET / HTTP/1.1\r\nHost: a\r\nX-Small: \(String(repeating: "s", count: 100))\r\n\r\n".bytes
        for input in [long, small] {
            // Feed in 4 KiB pieces so that lines span calls and go through the line buffer.
            var offset = 0
            while offset < input.count {
                let end = min(input.count, offset + 4096)
                offset += (try? input[offset..<end].withUnsafeBytes { try parser.parse($0) { _ in } }) ?? 0
            }
            XCTAssertTrue(parser.isIdle)
            XCTAssertLessThanOrEqual(parser.lineBufferCapacityBytes, 1024)
        }
    }
}
