import XCTest

@testable import TandemHTTP

/// Tandem's own JSON errors: valid JSON whatever the message, and a complete, parseable response.
final class TandemErrorResponseTests: XCTestCase {
    func testTheBodyHasExactlyTheContractShape() {
        let body = TandemErrorResponse.jsonBody(code: "no_leader", message: "no leader is known", retryable: true)
        XCTAssertEqual(
            String(decoding: body, as: UTF8.self),
            #"{"error":"no_leader","message":"no leader is known","retryable":true}"#)
    }

    func testEveryCharacterThatJSONRequiresIsEscapedAndTheResultDecodesToTheOriginal() throws {
        var message = "quote \" backslash \\ slash / newline \n return \r tab \t bell \u{7} nul \u{0} "
        message += "backspace \u{8} formfeed \u{C} unit \u{1F} caf\u{e9} \u{1F600}"
        let body = TandemErrorResponse.jsonBody(code: "c\"x", message: message, retryable: false)
        let decoded = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]
        XCTAssertEqual(decoded?["message"] as? String, message)
        XCTAssertEqual(decoded?["error"] as? String, "c\"x")
        XCTAssertEqual(decoded?["retryable"] as? Bool, false)
        let text = String(decoding: body, as: UTF8.self)
        XCTAssertTrue(text.contains(#"\u0007"#))
        XCTAssertTrue(text.contains(#"\u0000"#))
        XCTAssertFalse(body.contains { $0 < 0x20 }, "no raw control character may remain")
    }

    func testTheFullResponseCarriesContentTypeLengthRetryAfterExtraFieldsAndClose() {
        let error = TandemErrorResponse(
            status: 429, code: "rate_limited", message: "slow down", retryable: true, retryAfterSeconds: 2,
            extraHeaders: ["RateLimit-Policy": "\"default\";q=100;w=1"], closeConnection: true)
        let outcome = feedResponses(error.bytes, methods: ["GET"])
        let message = outcome.messages.first
        XCTAssertNil(outcome.error)
        XCTAssertEqual(message?.head?.status, 429)
        XCTAssertEqual(message?.head?.reason, "Too Many Requests")
        XCTAssertEqual(message?.head?.headers.first(name: "content-type"), "application/json")
        XCTAssertEqual(message?.head?.headers.first(name: "retry-after"), "2")
        XCTAssertEqual(message?.head?.headers.first(name: "ratelimit-policy"), "\"default\";q=100;w=1")
        XCTAssertEqual(message?.head?.keepAlive, false)
        XCTAssertEqual(message?.body, error.body)
        XCTAssertEqual(outcome.bytesConsumed, error.bytes.count, "Content-Length matches the body")
    }

    func testAKeptConnectionHasNoConnectionCloseAndNoRetryAfterUnlessAsked() {
        let error = TandemErrorResponse(status: 504, code: "commit_timeout", message: "m", retryable: true)
        let head = feedResponses(error.bytes, methods: ["POST"]).messages.first?.head
        XCTAssertEqual(head?.keepAlive, true)
        XCTAssertFalse(head?.headers.contains(name: "Retry-After") ?? true)
        XCTAssertFalse(head?.headers.contains(name: "Connection") ?? true)
    }

    func testAParseErrorBecomesItsStatusWithBadRequestOrBodyTooLargeAndCloses() {
        let tooLarge = TandemErrorResponse(parseError: HTTPParseError(.bodyTooLarge, "too big"))
        XCTAssertEqual(tooLarge.status, 413)
        XCTAssertEqual(tooLarge.code, "body_too_large")
        XCTAssertTrue(tooLarge.closeConnection)
        let smuggling = TandemErrorResponse(parseError: HTTPParseError(.conflictingFraming, "both"))
        XCTAssertEqual(smuggling.status, 400)
        XCTAssertEqual(smuggling.code, "bad_request")
        XCTAssertFalse(smuggling.retryable)
        let longLine = TandemErrorResponse(parseError: HTTPParseError(.requestLineTooLong, "long"))
        XCTAssertEqual(longLine.status, 414)
    }

    func testEveryParseErrorMapsToAClientOrServerErrorStatus() {
        for code in HTTPParseError.Code.allCases {
            let status = HTTPParseError(code, "").statusCode
            XCTAssertTrue([400, 413, 414, 417, 431, 501, 505].contains(status), "\(code) -> \(status)")
        }
    }
}
