import TandemNet
import XCTest

final class CryptoTests: XCTestCase {
    func testHMACSHA256MatchesRFC4231TestCase2() throws {
        let tag = try Crypto.hmacSHA256(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
        let hex = tag.map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    func testRandomBytesAreFreshEachTime() throws {
        let first = try Crypto.secureRandomBytes(count: 32)
        let second = try Crypto.secureRandomBytes(count: 32)
        XCTAssertEqual(first.count, 32)
        XCTAssertNotEqual(first, second)
    }

    func testConstantTimeEqualityComparesContentAndLength() {
        XCTAssertTrue(Crypto.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        XCTAssertFalse(Crypto.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        XCTAssertFalse(Crypto.constantTimeEqual([1, 2, 3], [1, 2]))
        XCTAssertTrue(Crypto.constantTimeEqual([], []))
    }
}
