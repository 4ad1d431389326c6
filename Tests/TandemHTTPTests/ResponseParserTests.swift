import XCTest

@testable import TandemHTTP

/// The response parser: framing that depends on the request, interim responses, close-delimited bodies.
final class ResponseParserTests: XCTestCase {
    func testAContentLengthResponseIsParsedAndKeepsTheConnection() {
        let outcome = feedResponses("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".bytes, methods: ["GET"])
        let message = outcome.messages.first
        XCTAssertEqual(message?.head?.status, 200)
        XCTAssertEqual(message?.head?.reason, "OK")
        XCTAssertEqual(message?.head?.framing, .contentLength(2))
        XCTAssertEqual(message?.head?.keepAlive, true)
        XCTAssertEqual(message?.body, "hi".bytes)
    }

    func testAResponseToHEADHasNoBodyWhateverItsContentLengthSays() throws {
        let first = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        let outcome = feedResponses(
            (first + "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx").bytes, methods: ["HEAD", "GET"])
        XCTAssertNil(outcome.error)
        XCTAssertEqual(outcome.messages.count, 2)
        XCTAssertEqual(outcome.messages[0].head?.framing, ResponseFraming.none)
        XCTAssertEqual(outcome.messages[0].head?.headers.first(name: "content-length"), "1000")
        XCTAssertEqual(outcome.messages[1].body, "x".bytes)
    }

    func testA204AndA304HaveNoBody() {
        for status in ["204 No Content", "304 Not Modified"] {
            let text = "HTTP/1.1 \(status)\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            let outcome = feedResponses(text.bytes, methods: ["GET", "GET"])
            XCTAssertNil(outcome.error)
            XCTAssertEqual(outcome.messages.count, 2, status)
            XCTAssertEqual(outcome.messages.first?.head?.framing, ResponseFraming.none)
        }
    }

    func testAResponseWithoutFramingRunsUntilCloseAndEndsAtEOF() {
        let text = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this until close"
        let open = feedResponses(text.bytes, methods: ["GET"])
        XCTAssertTrue(open.messages.isEmpty)
        let closed = feedResponses(text.bytes, methods: ["GET"], closeAtEnd: true)
        XCTAssertEqual(closed.messages.first?.head?.framing, .untilClose)
        XCTAssertEqual(closed.messages.first?.head?.keepAlive, false)
        XCTAssertEqual(closed.messages.first?.body, "all of this until close".bytes)
        XCTAssertEqual(closed.messages.first?.ended, true)
    }

    func testAChunkedResponseWithTrailersIsDecoded() {
        let text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
        let message = feedResponses(text.bytes, methods: ["POST"], pieceBytes: 1).messages.first
        XCTAssertEqual(message?.head?.framing, .chunked)
        XCTAssertEqual(message?.body, "abc".bytes)
        XCTAssertEqual(message?.trailers?.first(name: "x-t"), "1")
    }

    func testAnInterim100ContinueIsItsOwnMessageAndTheFinalResponseFollowsForTheSameRequest() {
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
        var parser = HTTPResponseParser()
        parser.expect(requestMethod: "PUT")
        var heads: [HTTPResponseHead] = []
        var offset = 0
        let bytes = text.bytes
        while offset < bytes.count {
            let consumed = try? bytes[offset...].withUnsafeBytes { raw in
                try parser.parse(raw) { if case .head(let head) = $0 { heads.append(head) } }
            }
            offset += consumed ?? bytes.count
            if heads.count == 1 { XCTAssertEqual(parser.pendingRequestCount, 1, "the request still awaits") }
        }
        XCTAssertEqual(heads.map { $0.status }, [100, 201])
        XCTAssertEqual(heads.map { $0.isInterim }, [true, false])
        XCTAssertEqual(parser.pendingRequestCount, 0)
    }

    func testA101SwitchesProtocolsAndLeavesTheTunnelBytesUnconsumed() throws {
        let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        var parser = HTTPResponseParser()
        parser.expect(requestMethod: "GET")
        var switched = false
        let consumed = try (head + "\u{81}\u{5}hello").bytes.withUnsafeBytes { raw in
            try parser.parse(raw) { if case .head(let head) = $0 { switched = head.switchesProtocols } }
        }
        XCTAssertEqual(consumed, head.utf8.count)
        XCTAssertTrue(switched)
        XCTAssertEqual(parser.phase, .tunnel)
    }

    func testA2xxAnswerToCONNECTStartsATunnelButAnErrorAnswerHasABody() {
        let tunnel = feedResponses("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nbytes".bytes, methods: ["CONNECT"])
        XCTAssertEqual(tunnel.messages.first?.head?.switchesProtocols, true)
        XCTAssertEqual(tunnel.messages.first?.head?.framing, ResponseFraming.none)
        XCTAssertEqual(tunnel.bytesConsumed, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".utf8.count)
        let refused = feedResponses("HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno".bytes, methods: ["CONNECT"])
        XCTAssertEqual(refused.messages.first?.body, "no".bytes)
    }

    func testPipelinedResponsesAreMatchedToTheirRequestsInOrder() {
        let text =
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"  // HEAD: no body
            + "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc" + "HTTP/1.1 204 No Content\r\n\r\n"
        let outcome = feedResponses(text.bytes, methods: ["HEAD", "GET", "DELETE"], pieceBytes: 5)
        XCTAssertNil(outcome.error)
        XCTAssertEqual(outcome.messages.map { $0.body }, [[], "abc".bytes, []])
    }

    func testBytesWithoutAnOutstandingRequestAreRejected() {
        XCTAssertEqual(feedResponses("HTTP/1.1 200 OK\r\n\r\n".bytes, methods: []).error, .unexpectedResponse)
        let extra = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
        XCTAssertEqual(feedResponses(extra.bytes, methods: ["GET"]).error, .unexpectedResponse)
    }

    func testAResponseCutShortIsTruncationAtEOF() {
        let outcome = feedResponses(
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".bytes, methods: ["GET"], closeAtEnd: true)
        XCTAssertEqual(outcome.error, .unexpectedEOF)
    }

    func testResponseKeepAliveFollowsVersionAndConnection() {
        func keepAlive(_ text: String) -> Bool? {
            feedResponses(text.bytes, methods: ["GET"]).messages.first?.head?.keepAlive
        }
        XCTAssertEqual(keepAlive("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), true)
        XCTAssertEqual(keepAlive("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), false)
        XCTAssertEqual(keepAlive("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"), false)
        XCTAssertEqual(keepAlive("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"), true)
    }

    func testStatusLinesAreParsedStrictly() {
        func parse(_ statusLine: String) -> FeedOutcome<HTTPResponseHead> {
            feedResponses("\(statusLine)\r\nContent-Length: 0\r\n\r\n".bytes, methods: ["GET"])
        }
        XCTAssertEqual(parse("HTTP/1.1 200").messages.first?.head?.reason, "")
        XCTAssertEqual(parse("HTTP/1.1 404 ").messages.first?.head?.reason, "")
        XCTAssertEqual(parse("HTTP/1.1 503 Service  Unavailable").messages.first?.head?.reason, "Service  Unavailable")
        XCTAssertEqual(parse("HTTP/1.1 99 Low").error, .invalidStatusLine)
        XCTAssertEqual(parse("HTTP/1.1 2000 OK").error, .invalidStatusLine)
        XCTAssertEqual(parse("HTTP/1.1 20x OK").error, .invalidStatusLine)
        XCTAssertEqual(parse("HTTP/1.1  200 OK").error, .invalidStatusLine)
        XCTAssertEqual(parse("HTTP/1.1 200 O\u{1}K").error, .invalidStatusLine)
        XCTAssertEqual(parse("HTTP/3.0 200 OK").error, .unsupportedVersion)
        XCTAssertEqual(parse("HTTX/1.1 200 OK").error, .invalidVersion)
    }

    func testResponseSmugglingPatternsAreRejectedToo() {
        func error(_ fields: String, version: String = "HTTP/1.1") -> HTTPParseError.Code? {
            feedResponses("\(version) 200 OK\r\n\(fields)\r\n".bytes, methods: ["GET"], closeAtEnd: true).error
        }
        XCTAssertEqual(error("Content-Length: 1\r\nTransfer-Encoding: chunked\r\n"), .conflictingFraming)
        XCTAssertEqual(error("Content-Length: 1\r\nContent-Length: 1\r\n"), .duplicateContentLength)
        XCTAssertEqual(error("Transfer-Encoding: gzip\r\n"), .invalidTransferEncoding)
        XCTAssertEqual(error("Transfer-Encoding: chunked\r\n", version: "HTTP/1.0"), .transferEncodingInHTTP10)
        XCTAssertEqual(error("X: 1\r\n 2\r\n"), .obsFold)
        XCTAssertEqual(error("X: 1\n"), .bareLF)
    }

    func testResetForgetsPendingRequestsAndPartialResponses() throws {
        var parser = HTTPResponseParser()
        parser.expect(requestMethod: "GET")
        _ = try "HTTP/1.1 200".bytes.withUnsafeBytes { try parser.parse($0) { _ in } }
        parser.reset()
        XCTAssertTrue(parser.isIdle)
        XCTAssertEqual(parser.pendingRequestCount, 0)
    }
}

/// Edge cases of close-delimited bodies and of empty lines between messages.
final class ResponseEdgeTests: XCTestCase {
    func testACloseDelimitedBodyOverItsLimitDeliversExactlyTheLimitWhateverTheSplit() {
        let text = "HTTP/1.1 200 OK\r\n\r\n" + String(repeating: "x", count: 20)
        for pieceBytes in [0, 1, 7] {
            var parser = HTTPResponseParser(limits: HTTPLimits(bodyMaxBytes: 12))
            parser.expect(requestMethod: "GET")
            var delivered = 0
            var failure: HTTPParseError.Code?
            var offset = 0
            let bytes = text.bytes
            while offset < bytes.count, failure == nil {
                let end = pieceBytes == 0 ? bytes.count : min(bytes.count, offset + pieceBytes)
                do {
                    offset += try bytes[offset..<end].withUnsafeBytes { raw in
                        try parser.parse(raw) { if case .body(let body) = $0 { delivered += body.count } }
                    }
                } catch {
                    failure = (error as? HTTPParseError)?.code
                }
            }
            XCTAssertEqual(delivered, 12, "pieces of \(pieceBytes)")
            XCTAssertEqual(failure, .bodyTooLarge, "pieces of \(pieceBytes)")
        }
    }

    func testEmptyLinesAfterAMessageLeaveTheParserIdleSoACloseIsClean() throws {
        var parser = HTTPRequestParser()
        _ = try "GET / HTTP/1.1\r\nHost: a\r\n\r\n".bytes.withUnsafeBytes { try parser.parse($0) { _ in } }
        _ = try "\r\n".bytes.withUnsafeBytes { try parser.parse($0) { _ in } }
        XCTAssertTrue(parser.isIdle)
        XCTAssertNoThrow(try parser.finishAtEOF())
    }
}

/// A response parser parses each head into the storage of the last one's fields when the consumer dropped that
/// head, and never changes a head the consumer kept.
final class FieldStorageReuseTests: XCTestCase {
    fileprivate func response(_ value: String) -> [UInt8] {
        Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Value: \(value)\r\n\r\n".utf8)
    }

    fileprivate func parseOne(
        _ parser: inout HTTPResponseParser, _ bytes: [UInt8], _ onHead: (HTTPResponseHead) -> Void
    ) throws {
        parser.expect(requestMethod: "GET")
        let used = try bytes.withUnsafeBytes { raw in
            try parser.parse(raw) { event in
                if case .head(let head) = event { onHead(head) }
            }
        }
        XCTAssertEqual(used, bytes.count)
        XCTAssertTrue(parser.isIdle)
    }

    func testADroppedHeadsStorageIsReusedForTheNextHead() throws {
        var parser = HTTPResponseParser()
        var values: [String?] = []
        try parseOne(&parser, response("first")) { values.append($0.headers.first(name: "X-Value")) }
        let storage = parser.fieldStorage
        XCTAssertNotNil(storage.address)
        XCTAssertGreaterThan(storage.capacityBytes, 0)
        for round in 0..<5 {
            try parseOne(&parser, response("value \(round)")) { values.append($0.headers.first(name: "X-Value")) }
            XCTAssertEqual(parser.fieldStorage.address, storage.address, "round \(round)")
        }
        XCTAssertEqual(values, ["first"] + (0..<5).map { "value \($0)" })
    }

    func testAKeptHeadIsNeverChangedByTheNextOne() throws {
        var parser = HTTPResponseParser()
        var kept: [HTTPResponseHead] = []
        for round in 0..<4 {
            try parseOne(&parser, response("value \(round)")) { kept.append($0) }
        }
        XCTAssertEqual(kept.map { $0.headers.first(name: "X-Value") }, (0..<4).map { "value \($0)" })
        XCTAssertEqual(kept.map { $0.headers.count }, [2, 2, 2, 2])
    }

    func testALargeHeadsStorageIsNotKept() throws {
        var parser = HTTPResponseParser()
        try parseOne(&parser, response(String(repeating: "v", count: 6000))) { _ in }
        XCTAssertEqual(parser.fieldStorage.capacityBytes, 0, "storage over the bound is freed after its head")
        try parseOne(&parser, response("small")) { _ in }
        XCTAssertGreaterThan(parser.fieldStorage.capacityBytes, 0)
    }
}

extension FieldStorageReuseTests {
    func testTheStorageMovesToTheNextParserOnlyBetweenResponses() throws {
        var first = HTTPResponseParser()
        try parseOne(&first, response("first")) { _ in }
        let storage = first.fieldStorage
        var spare = HTTPHeaders()
        first.exchangeFieldStorage(with: &spare)
        XCTAssertEqual(first.fieldStorage.capacityBytes, 0, "the storage left the first parser")

        var second = HTTPResponseParser()
        second.exchangeFieldStorage(with: &spare)
        XCTAssertEqual(second.fieldStorage.address, storage.address)
        var value: String?
        try parseOne(&second, response("second")) { value = $0.headers.first(name: "X-Value") }
        XCTAssertEqual(value, "second")
        XCTAssertEqual(second.fieldStorage.address, storage.address, "the second parser's head used it")

        // In the middle of a head, the fields stay where they are and the spare is untouched.
        second.expect(requestMethod: "GET")
        let partial = Array("HTTP/1.1 200 OK\r\nX-Value: half".utf8)
        _ = try partial.withUnsafeBytes { raw in try second.parse(raw) { _ in } }
        var other = HTTPHeaders()
        second.exchangeFieldStorage(with: &other)
        XCTAssertEqual(other.count, 0)
        XCTAssertEqual(second.fieldStorage.address, storage.address)
        // A spare that holds fields is never swapped in.
        var third = HTTPResponseParser()
        var full: HTTPHeaders = ["X-Kept": "yes"]
        third.exchangeFieldStorage(with: &full)
        XCTAssertEqual(full.first(name: "X-Kept"), "yes")
        XCTAssertEqual(third.fieldStorage.capacityBytes, 0)
    }
}
