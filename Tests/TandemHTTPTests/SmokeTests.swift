import XCTest

@testable import TandemHTTP

final class SmokeTests: XCTestCase {
    func testASimpleGetParses() {
        let outcome = feedRequests("GET / HTTP/1.1\r\nHost: a\r\n\r\n".bytes)
        XCTAssertNil(outcome.error)
        XCTAssertEqual(outcome.messages.count, 1)
        XCTAssertEqual(outcome.messages.first?.head?.method, "GET")
    }
}
