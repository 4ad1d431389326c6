import XCTest

@testable import TandemHTTP

/// Every request-smuggling pattern of RFC 9112 and the known smuggling attacks is rejected with its own error (never fixed
/// up), and the error maps to the status the proxy answers before closing the connection. Each case is also
/// fed one byte at a time, because a check that only works on whole buffers is no check.
final class SmugglingTests: XCTestCase {
    private func assertRejected(
        _ text: String, _ expected: HTTPParseError.Code, status: Int = 400, file: StaticString = #filePath,
        line: UInt = #line
    ) {
        let input = text.bytes
        XCTAssertEqual(feedRequests(input).error, expected, "whole buffer", file: file, line: line)
        XCTAssertEqual(feedRequests(input, pieceBytes: 1).error, expected, "byte at a time", file: file, line: line)
        XCTAssertEqual(HTTPParseError(expected, "").statusCode, status, "status", file: file, line: line)
    }

    func testContentLengthTogetherWithTransferEncodingIsRejected() {
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            .conflictingFraming)
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
            .conflictingFraming)
    }

    func testTwoContentLengthFieldsAreRejectedEvenWithEqualValues() {
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            .duplicateContentLength)
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            .duplicateContentLength)
    }

    func testAContentLengthListIsRejectedEvenWithEqualValues() {
        assertRejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", .duplicateContentLength)
    }

    func testAContentLengthWithASignOrNonDigitIsRejected() {
        for value in ["+5", "-1", "5a", "0x5", "5 5", "", "\u{661}"] {
            assertRejected(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \(value)\r\n\r\n", .invalidContentLength)
        }
    }

    func testAnOverflowingContentLengthIsRejected() {
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", .invalidContentLength)
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", .invalidContentLength)
    }

    func testATransferEncodingNotEndingInChunkedIsRejectedWith400() {
        assertRejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", .invalidTransferEncoding)
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", .invalidTransferEncoding)
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            .invalidTransferEncoding)
    }

    func testChunkedAppliedTwiceIsRejectedWhetherInOneFieldOrTwo() {
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", .invalidTransferEncoding)
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            .invalidTransferEncoding)
    }

    func testACodingBeforeChunkedIsNotImplementedBecauseTheProxyWouldDropIt() {
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", .unsupportedTransferEncoding,
            status: 501)
    }

    func testAnObfuscatedTransferEncodingIsRejected() {
        for value in [
            "xchunked", "chunked;x=1", "\"chunked\"", "", "chunked,", "chunk\u{e9}d", ", chunked", "g(z), chunked",
        ] {
            assertRejected(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \(value)\r\n\r\n", .invalidTransferEncoding)
        }
    }

    func testTransferEncodingInAnHTTP10RequestIsRejected() {
        assertRejected(
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", .transferEncodingInHTTP10)
    }

    func testObsFoldIsRejected() {
        assertRejected("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", .obsFold)
        assertRejected("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\t2\r\n\r\n", .obsFold)
    }

    func testAFieldLineStartingWithWhitespaceRightAfterTheRequestLineIsRejected() {
        assertRejected("GET / HTTP/1.1\r\n Host: a\r\n\r\n", .obsFold)
    }

    func testABareCRIsRejectedInTheRequestLineInAFieldAndInAChunkLine() {
        assertRejected("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", .bareCR)
        assertRejected("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n", .bareCR)
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\r\nx\r\n0\r\n\r\n", .bareCR)
    }

    func testABareLFIsRejectedAsTheEndOfEveryKindOfLine() {
        assertRejected("GET / HTTP/1.1\nHost: a\r\n\r\n", .bareLF)
        assertRejected("GET / HTTP/1.1\r\nHost: a\n\r\n", .bareLF)
        assertRejected("GET / HTTP/1.1\r\nHost: a\r\n\n", .bareLF)
        assertRejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n", .bareLF)
        assertRejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\n\r\n", .bareLF)
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-T: 1\n\r\n", .bareLF)
        assertRejected("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", .bareLF)
    }

    func testChunkDataNotFollowedByCRLFIsRejected() {
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
            .missingChunkTerminator)
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
            .missingChunkTerminator)
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\rX0\r\n\r\n",
            .missingChunkTerminator)
    }

    func testAnOverflowingChunkSizeIsRejected() {
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", .invalidChunkSize)
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\n", .invalidChunkSize)
    }

    func testAChunkSizeThatIsNotHexIsRejected() {
        for line in ["", "g", "-1", "+1", " 1", "0x1"] {
            let expected: HTTPParseError.Code = line.hasPrefix("0") ? .invalidChunkExtension : .invalidChunkSize
            assertRejected(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\(line)\r\n", expected)
        }
    }

    func testAMalformedChunkExtensionIsRejected() {
        for line in ["1;", "1 ", "1;=v", "1;a=", "1;a=\"open", "1;a=b c", "1;a=\"\u{1}\"", "1 x"] {
            assertRejected(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\(line)\r\nx\r\n0\r\n\r\n",
                .invalidChunkExtension)
        }
    }

    func testAnInvalidCharacterInTheMethodIsRejected() {
        for method in ["GE(T", "G\u{1}T", "GET\u{7F}", "G\u{e9}T"] {
            assertRejected("\(method) / HTTP/1.1\r\nHost: a\r\n\r\n", .invalidMethod)
        }
        assertRejected(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", .invalidMethod)
    }

    func testAnInvalidCharacterInAFieldNameIsRejected() {
        for name in ["X(A)", "X A", "X\u{1}", "X\u{e9}", "X\"", "X@Y"] {
            assertRejected("GET / HTTP/1.1\r\nHost: a\r\n\(name): 1\r\n\r\n", .invalidHeaderName)
        }
        assertRejected("GET / HTTP/1.1\r\nHost: a\r\n: empty name\r\n\r\n", .invalidHeaderName)
        assertRejected("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", .invalidHeaderName)
    }

    func testWhitespaceBetweenAFieldNameAndTheColonIsRejected() {
        assertRejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", .whitespaceBeforeColon)
        assertRejected(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", .whitespaceBeforeColon)
    }

    func testControlCharactersOtherThanTabInAFieldValueAreRejected() {
        for control in ["\u{0}", "\u{1}", "\u{8}", "\u{B}", "\u{1F}", "\u{7F}"] {
            assertRejected("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\(control)2\r\n\r\n", .invalidHeaderValue)
        }
    }

    func testAFieldValueThatIsNotUTF8IsRejected() {
        var input = "GET / HTTP/1.1\r\nHost: a\r\nX-A: ".bytes
        input += [0xC3, 0x28]
        input += "\r\n\r\n".bytes
        XCTAssertEqual(feedRequests(input).error, .invalidHeaderValue)
    }

    func testMissingOrMultipleOrMalformedHostIsRejected() {
        assertRejected("GET / HTTP/1.1\r\n\r\n", .missingHost)
        assertRejected("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", .multipleHost)
        assertRejected("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", .multipleHost)
        assertRejected("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", .invalidHost)
        assertRejected("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", .invalidHost)
    }

    /// With an absolute-form target the target names the host: a Host field naming another one is refused (an app
    /// reading Host would pick another site than the request names); the same host, in any case, is accepted.
    func testAHostThatDisagreesWithAnAbsoluteFormTargetIsRejected() {
        assertRejected("GET http://other/r HTTP/1.1\r\nHost: t\r\n\r\n", .invalidHost)
        assertRejected("GET http://t:8080/r HTTP/1.1\r\nHost: t\r\n\r\n", .invalidHost)
        assertRejected("GET https://t?x HTTP/1.1\r\nHost: u\r\n\r\n", .invalidHost)
        XCTAssertNil(feedRequests("GET http://T:8080/r HTTP/1.1\r\nHost: t:8080\r\n\r\n".bytes).error)
        XCTAssertNil(feedRequests("GET http://t?x=/ HTTP/1.1\r\nHost: t\r\n\r\n".bytes).error)
        XCTAssertEqual(feedRequests("GET http://t/r HTTP/1.1\r\nHost: t\r\n\r\n".bytes).messages.count, 1)
    }

    func testMalformedRequestLinesAreRejected() {
        assertRejected("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", .invalidTarget)
        assertRejected("GET / b HTTP/1.1\r\nHost: a\r\n\r\n", .invalidTarget)
        assertRejected("GET /\r\nHost: a\r\n\r\n", .invalidVersion)
        assertRejected("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", .invalidVersion)
        assertRejected("GET / http/1.1\r\nHost: a\r\n\r\n", .invalidVersion)
        assertRejected("GET / HTTP/1.10\r\nHost: a\r\n\r\n", .invalidVersion)
        assertRejected("GET / HTTP/2.0\r\nHost: a\r\n\r\n", .unsupportedVersion, status: 505)
        assertRejected("GET / HTTP/1.2\r\nHost: a\r\n\r\n", .unsupportedVersion, status: 505)
        assertRejected("GET /a\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n", .invalidTarget)
    }

    func testAFailedParseStopsBeforeReportingTheHeadSoNoHalfCheckedRequestIsForwarded() {
        let outcome = feedRequests(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n".bytes)
        XCTAssertEqual(outcome.error, .conflictingFraming)
        XCTAssertTrue(outcome.messages.isEmpty)
    }

    func testAConnectionThatNamesHostOrContentLengthCannotStripThem() {
        var headers: HTTPHeaders = [
            "Host": "a", "Content-Length": "3", "Connection": "Host, Content-Length, X-Drop",
            "X-Drop": "1", "X-Keep": "2",
        ]
        ProxyHeaders.removeHopByHop(from: &headers)
        XCTAssertEqual(headers.map { $0.name }, ["Host", "Content-Length", "X-Keep"])
    }
}
