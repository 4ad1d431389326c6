import XCTest

@testable import TandemHTTP

/// The request parser on valid input: what it reports, and where it stops.
final class RequestParserTests: XCTestCase {
    func testAGetWithoutBodyReportsHeadThenEndAndConsumesEverything() {
        let input = "GET /kv/a?x=1 HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\r\n".bytes
        let outcome = feedRequests(input)
        XCTAssertNil(outcome.error)
        XCTAssertEqual(outcome.bytesConsumed, input.count)
        let head = outcome.messages.first?.head
        XCTAssertEqual(head?.method, "GET")
        XCTAssertEqual(head?.target, "/kv/a?x=1")
        XCTAssertEqual(head?.path, "/kv/a")
        XCTAssertEqual(head?.version, .http1_1)
        XCTAssertEqual(head?.framing, BodyFraming.none)
        XCTAssertEqual(head?.keepAlive, true)
        XCTAssertEqual(head?.headers.first(name: "host"), "example")
        XCTAssertEqual(head?.headers.first(name: "ACCEPT"), "*/*")
        XCTAssertEqual(outcome.messages.first?.ended, true)
        XCTAssertNil(outcome.messages.first?.trailers)
    }

    func testFieldNamesKeepTheirCaseAndOrderAndValuesLoseSurroundingWhitespace() {
        let input = "GET / HTTP/1.1\r\nhOsT: a\r\nX-One:\t 1 \t\r\nx-two:2\r\nX-Empty:\r\n\r\n".bytes
        let head = feedRequests(input).messages.first?.head
        XCTAssertEqual(head?.headers.map { $0.name }, ["hOsT", "X-One", "x-two", "X-Empty"])
        XCTAssertEqual(head?.headers.map { $0.value }, ["a", "1", "2", ""])
    }

    func testAValueMayContainInnerWhitespaceAndUTF8() {
        let input = "GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\u{e9} au\tlait\r\n\r\n".bytes
        XCTAssertEqual(feedRequests(input).messages.first?.head?.headers.first(name: "x-name"), "caf\u{e9} au\tlait")
    }

    func testAContentLengthBodyIsDeliveredExactlyAndThenTheMessageEnds() {
        let input = "PUT /kv/a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello".bytes
        let outcome = feedRequests(input)
        XCTAssertEqual(outcome.messages.first?.head?.framing, .contentLength(5))
        XCTAssertEqual(outcome.messages.first?.body, "hello".bytes)
        XCTAssertEqual(outcome.messages.first?.ended, true)
    }

    func testContentLengthZeroEndsTheMessageWithTheHead() {
        let outcome = feedRequests("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n".bytes)
        XCTAssertEqual(outcome.messages.count, 1)
        XCTAssertEqual(outcome.messages.first?.body, [])
    }

    func testParsingStopsAtTheEndOfOneMessageLeavingThePipelinedNextOneUnconsumed() throws {
        let first = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        let second = "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
        var parser = HTTPRequestParser()
        var ends = 0
        let input = (first + second).bytes
        let consumed = try input.withUnsafeBytes { raw in
            try parser.parse(raw) { if case .end = $0 { ends += 1 } }
        }
        XCTAssertEqual(consumed, first.utf8.count)
        XCTAssertEqual(ends, 1)
        XCTAssertTrue(parser.isIdle)
    }

    func testManyPipelinedRequestsInOneBufferAreAllParsedInOrder() {
        var input: [UInt8] = []
        for index in 0..<50 {
            input +=
                "POST /kv/\(index) HTTP/1.1\r\nHost: a\r\nContent-Length: \(String(index).utf8.count)\r\n\r\n\(index)"
                .bytes
        }
        let outcome = feedRequests(input)
        XCTAssertNil(outcome.error)
        XCTAssertEqual(outcome.messages.count, 50)
        XCTAssertEqual(outcome.messages.map { $0.head?.target }, (0..<50).map { "/kv/\($0)" })
        XCTAssertEqual(outcome.messages.map { $0.body }, (0..<50).map { String($0).bytes })
    }

    func testChunkedBodyWithExtensionsAndTrailersIsDecodedAndTrailersReported() {
        let input = """
            POST /up HTTP/1.1\r
            Host: a\r
            Transfer-Encoding: chunked\r
            \r
            5;name=value\r
            hello\r
            6 ; a ; b = "q\\"s" \t;c=d\r
             world\r
            0\r
            X-Checksum: 42\r
            X-Other: yes\r
            \r

            """.bytes
        let outcome = feedRequests(input)
        XCTAssertNil(outcome.error)
        let message = outcome.messages.first
        XCTAssertEqual(message?.head?.framing, .chunked)
        XCTAssertEqual(message?.body, "hello world".bytes)
        XCTAssertEqual(message?.trailers?.first(name: "x-checksum"), "42")
        XCTAssertEqual(message?.trailers?.count, 2)
        XCTAssertEqual(outcome.bytesConsumed, input.count)
    }

    func testChunkedBodyWithoutTrailersReportsNilTrailersAndAcceptsUpperCaseHex() {
        let input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n".bytes
        let message = feedRequests(input).messages.first
        XCTAssertEqual(message?.body, "0123456789".bytes)
        XCTAssertEqual(message?.ended, true)
        XCTAssertNil(message?.trailers)
    }

    func testExpect100ContinueIsReportedOnHTTP11AndIgnoredOnHTTP10() {
        let v11 = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx".bytes
        XCTAssertEqual(feedRequests(v11).messages.first?.head?.expectsContinue, true)
        let v10 = "PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx".bytes
        XCTAssertEqual(feedRequests(v10).messages.first?.head?.expectsContinue, false)
        let none = "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx".bytes
        XCTAssertEqual(feedRequests(none).messages.first?.head?.expectsContinue, false)
        let chunked = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        XCTAssertEqual(feedRequests(chunked.bytes).messages.first?.head?.expectsContinue, true)
    }

    func testExpect100ContinueIsNotReportedWhenThereIsNoContentToWaitFor() {
        for framing in ["Content-Length: 0\r\n", ""] {
            let input = "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\(framing)\r\n".bytes
            let outcome = feedRequests(input)
            XCTAssertNil(outcome.error)
            XCTAssertEqual(outcome.messages.first?.head?.expectsContinue, false, framing)
        }
    }

    func testTheHeadIsReportedBeforeAnyBodyByteArrivesSoTheProxyCanAnswer100Continue() throws {
        var parser = HTTPRequestParser()
        var sawHead = false
        let head = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n".bytes
        let consumed = try head.withUnsafeBytes { raw in
            try parser.parse(raw) { if case .head(let head) = $0 { sawHead = head.expectsContinue } }
        }
        XCTAssertTrue(sawHead)
        XCTAssertEqual(consumed, head.count)
        XCTAssertEqual(parser.phase, .body)
    }

    func testAnUnknownExpectationIsRefusedWith417() {
        let input = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n".bytes
        XCTAssertEqual(feedRequests(input).error, .unsupportedExpectation)
        XCTAssertEqual(HTTPParseError(.unsupportedExpectation, "").statusCode, 417)
    }

    func testKeepAliveDefaultsFollowTheVersionAndTheConnectionField() {
        func keepAlive(_ version: String, _ connection: String?) -> Bool? {
            let field = connection.map { "Connection: \($0)\r\n" } ?? ""
            let input = "GET / \(version)\r\nHost: a\r\n\(field)\r\n".bytes
            return feedRequests(input).messages.first?.head?.keepAlive
        }
        XCTAssertEqual(keepAlive("HTTP/1.1", nil), true)
        XCTAssertEqual(keepAlive("HTTP/1.1", "close"), false)
        XCTAssertEqual(keepAlive("HTTP/1.1", "foo, Close"), false)
        XCTAssertEqual(keepAlive("HTTP/1.0", nil), false)
        XCTAssertEqual(keepAlive("HTTP/1.0", "keep-alive"), true)
        XCTAssertEqual(keepAlive("HTTP/1.0", "Keep-Alive, close"), false)
    }

    func testHTTP10RequestsNeedNoHost() {
        let outcome = feedRequests("GET / HTTP/1.0\r\n\r\n".bytes)
        XCTAssertNil(outcome.error)
        XCTAssertEqual(outcome.messages.first?.head?.version, .http1_0)
    }

    func testUpgradeIsReportedOnlyWhenConnectionNamesIt() {
        let upgrade = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".bytes
        XCTAssertEqual(feedRequests(upgrade).messages.first?.head?.upgrade, "websocket")
        let notNamed = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n".bytes
        XCTAssertNil(feedRequests(notNamed).messages.first?.head?.upgrade)
        let http10 = "GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n".bytes
        XCTAssertNil(feedRequests(http10).messages.first?.head?.upgrade)
    }

    /// `upgrade` is stored as a String and a flag (see `HTTPRequestHead`): nil, empty and set stay distinct, and
    /// equality follows the optional value.
    func testUpgradeKeepsNilEmptyAndSetApart() {
        var head = HTTPRequestHead(method: "GET", target: "/ws")
        XCTAssertNil(head.upgrade)
        head.upgrade = ""
        XCTAssertEqual(head.upgrade, "")
        XCTAssertNotEqual(head, HTTPRequestHead(method: "GET", target: "/ws"))
        XCTAssertEqual(head, HTTPRequestHead(method: "GET", target: "/ws", upgrade: ""))
        head.upgrade = "websocket"
        XCTAssertEqual(head, HTTPRequestHead(method: "GET", target: "/ws", upgrade: "websocket"))
        head.upgrade = nil
        XCTAssertNil(head.upgrade)
        XCTAssertEqual(head, HTTPRequestHead(method: "GET", target: "/ws"))
    }

    func testAnUpgradeRequestStopsBeforeTheTunnelBytes() throws {
        let head = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        var parser = HTTPRequestParser()
        let input = (head + "\u{1}\u{2}binary").bytes
        let consumed = try input.withUnsafeBytes { raw in try parser.parse(raw) { _ in } }
        XCTAssertEqual(consumed, head.utf8.count)
    }

    func testEmptyLinesBeforeARequestLineAreIgnored() {
        let outcome = feedRequests("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n".bytes)
        XCTAssertNil(outcome.error)
        XCTAssertEqual(outcome.messages.count, 1)
    }

    func testEveryTargetFormIsAcceptedWhereTheRFCAllowsIt() {
        func error(_ requestLine: String, host: String = "a") -> HTTPParseError.Code? {
            feedRequests("\(requestLine)\r\nHost: \(host)\r\n\r\n".bytes).error
        }
        XCTAssertNil(error("GET /a/b?c=d&e=%20 HTTP/1.1"))
        // An absolute-form target's host must be the Host field's (SmugglingTests has the disagreements).
        XCTAssertNil(error("GET http://example.com/a?b HTTP/1.1", host: "example.com"))
        XCTAssertNil(error("GET HTTPS://example.com HTTP/1.1", host: "example.com"))
        XCTAssertNil(error("OPTIONS * HTTP/1.1"))
        XCTAssertNil(error("CONNECT example.com:443 HTTP/1.1"))
        XCTAssertNil(error("CONNECT [::1]:443 HTTP/1.1"))
        XCTAssertEqual(error("GET * HTTP/1.1"), .invalidTarget)
        XCTAssertEqual(error("GET example.com:443 HTTP/1.1"), .invalidTarget)
        XCTAssertEqual(error("CONNECT /a HTTP/1.1"), .invalidTarget)
        XCTAssertEqual(error("CONNECT example.com HTTP/1.1"), .invalidTarget)
        XCTAssertEqual(error("GET ftp://example.com/ HTTP/1.1"), .invalidTarget)
        XCTAssertEqual(error("GET http:///a HTTP/1.1"), .invalidTarget)
        XCTAssertEqual(error("GET /a#frag HTTP/1.1"), .invalidTarget)
        XCTAssertEqual(error("GET /a\\..\\b HTTP/1.1"), .invalidTarget)
    }

    func testTheRequestPathOfEveryTargetFormDropsTheQuery() {
        XCTAssertEqual(requestPath(ofTarget: "/a/b?c"), "/a/b")
        XCTAssertEqual(requestPath(ofTarget: "/a/b"), "/a/b")
        XCTAssertEqual(requestPath(ofTarget: "http://h:80/x/y?z"), "/x/y")
        XCTAssertEqual(requestPath(ofTarget: "http://h"), "/")
        XCTAssertEqual(requestPath(ofTarget: "http://h?q"), "/")
        XCTAssertEqual(requestPath(ofTarget: "*"), "*")
    }

    func testACallWithNoBytesConsumesNothingAndChangesNothing() throws {
        var parser = HTTPRequestParser()
        let consumed = try [UInt8]().withUnsafeBytes { raw in try parser.parse(raw) { _ in XCTFail("no event") } }
        XCTAssertEqual(consumed, 0)
        XCTAssertTrue(parser.isIdle)
    }

    func testThePhaseFollowsTheMessage() throws {
        var parser = HTTPRequestParser()
        func feed(_ text: String) throws { _ = try text.bytes.withUnsafeBytes { try parser.parse($0) { _ in } } }
        XCTAssertEqual(parser.phase, .idle)
        try feed("POST / HTTP/1.1\r\nHo")
        XCTAssertEqual(parser.phase, .head)
        try feed("st: a\r\nContent-Length: 2\r\n\r\nx")
        XCTAssertEqual(parser.phase, .body)
        try feed("y")
        XCTAssertEqual(parser.phase, .idle)
    }

    func testEOFBetweenRequestsIsCleanAndEOFInsideOneIsTruncation() throws {
        var idle = HTTPRequestParser()
        XCTAssertNoThrow(try idle.finishAtEOF())
        var cut = HTTPRequestParser()
        _ = try "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc".bytes.withUnsafeBytes {
            try cut.parse($0) { _ in }
        }
        XCTAssertThrowsError(try cut.finishAtEOF()) { error in
            XCTAssertEqual((error as? HTTPParseError)?.code, .unexpectedEOF)
        }
    }

    func testAfterAnErrorTheParserStaysFailedAndRethrowsTheSameError() {
        var parser = HTTPRequestParser()
        var codes: [HTTPParseError.Code] = []
        for _ in 0..<2 {
            do {
                _ = try "GET / HTTP/1.1\nHost: a\r\n\r\n".bytes.withUnsafeBytes { try parser.parse($0) { _ in } }
            } catch {
                codes.append((error as? HTTPParseError)?.code ?? .unexpectedEOF)
            }
        }
        XCTAssertEqual(codes, [.bareLF, .bareLF])
        XCTAssertEqual(parser.phase, .failed)
    }

    func testResetDiscardsAPartialRequest() throws {
        var parser = HTTPRequestParser()
        _ = try "GET /partial HT".bytes.withUnsafeBytes { try parser.parse($0) { _ in } }
        parser.reset()
        XCTAssertTrue(parser.isIdle)
        var target: String?
        _ = try "GET /fresh HTTP/1.1\r\nHost: a\r\n\r\n".bytes.withUnsafeBytes {
            try parser.parse($0) { if case .head(let head) = $0 { target = head.target } }
        }
        XCTAssertEqual(target, "/fresh")
    }
}
