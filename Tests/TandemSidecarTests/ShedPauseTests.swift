import TandemHTTP
import XCTest

@testable import TandemSidecar

/// A shed client's connection is not read again before the Retry-After its 503 names: pausing for less only lets
/// a client that ignores it come back for another 503 sooner.
final class ShedPauseTests: XCTestCase {
    func testThePauseAfterA503IsItsRetryAfter() {
        let answer = ClientSession.overloaded("too many writes are waiting to commit")
        XCTAssertEqual(answer.status, 503)
        XCTAssertEqual(answer.code, "overloaded")
        XCTAssertEqual(answer.retryAfterSeconds, 1)
        XCTAssertEqual(ClientSession.shedPause(for: answer), 1000)
        let longer = TandemErrorResponse(
            status: 503, code: "overloaded", message: "m", retryable: true, retryAfterSeconds: 3)
        XCTAssertEqual(ClientSession.shedPause(for: longer), 3000)
        let unnamed = TandemErrorResponse(status: 503, code: "overloaded", message: "m", retryable: true)
        XCTAssertEqual(ClientSession.shedPause(for: unnamed), 1000, "no Retry-After: the admission queues' second")
    }
}
