import XCTest

@testable import TandemSidecar

/// The pieces of the admin-action rules that do not need a socket: the bearer comparison and the loopback test.
final class AdminAuthorizationTests: XCTestCase {
    func testTheBearerTokenMustMatchExactly() {
        XCTAssertTrue(AdminServer.bearerTokenMatches("Bearer s3cret-token", "s3cret-token"))
        XCTAssertTrue(AdminServer.bearerTokenMatches("bearer s3cret-token", "s3cret-token"), "the scheme has no case")
        for presented in [
            "Bearer s3cret-tokeN", "Bearer s3cret-toke", "Bearer s3cret-token2", "Bearer ", "Bearer", "",
            "Basic s3cret-token", "s3cret-token", "Bearer  s3cret-token",
        ] {
            XCTAssertFalse(AdminServer.bearerTokenMatches(presented, "s3cret-token"), presented)
        }
    }

    func testTheConstantTimeComparisonLooksAtLengthAndEveryByte() {
        XCTAssertTrue(AdminServer.constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
        XCTAssertFalse(AdminServer.constantTimeEquals(Array("abd".utf8), Array("abc".utf8)))
        XCTAssertFalse(AdminServer.constantTimeEquals(Array("ab".utf8), Array("abc".utf8)))
        XCTAssertFalse(AdminServer.constantTimeEquals(Array("abc\0".utf8), Array("abc".utf8)))
        XCTAssertFalse(AdminServer.constantTimeEquals([], Array("a".utf8)))
        // A prefix of zero bytes must not pass as the empty tail of a shorter input.
        XCTAssertFalse(AdminServer.constantTimeEquals([0], [0, 0]))
    }

    func testLoopbackIsOnlyThisHost() {
        for address in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            XCTAssertTrue(AdminServer.isLoopback(address), address)
        }
        for address in ["10.0.0.1", "192.0.2.2", "::2", "fe80::1", "::ffff:10.0.0.1", "1270.0.0.1", ""] {
            XCTAssertFalse(AdminServer.isLoopback(address), address)
        }
    }
}
