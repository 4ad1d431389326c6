import XCTest

@testable import TandemConfig

/// The syntaxes of single values, independent of which variable they come from.
final class DurationParserTests: XCTestCase {
    func testDurationsWithEveryUnitBecomeMilliseconds() throws {
        XCTAssertEqual(try ConfigParsers.durationMs("150ms"), 150)
        XCTAssertEqual(try ConfigParsers.durationMs("2s"), 2000)
        XCTAssertEqual(try ConfigParsers.durationMs("1m"), 60_000)
        XCTAssertEqual(try ConfigParsers.durationMs("1h"), 3_600_000)
        XCTAssertEqual(try ConfigParsers.durationMs("24h"), 86_400_000)
        XCTAssertEqual(try ConfigParsers.durationMs("0ms"), 0)
        XCTAssertEqual(try ConfigParsers.durationMs("0s"), 0)
    }

    func testFractionalDurationsAreExactWhenTheyLandOnAMillisecond() throws {
        XCTAssertEqual(try ConfigParsers.durationMs("1.5s"), 1500)
        XCTAssertEqual(try ConfigParsers.durationMs("0.25s"), 250)
        XCTAssertEqual(try ConfigParsers.durationMs("1.5m"), 90_000)
        XCTAssertEqual(try ConfigParsers.durationMs("0.001s"), 1)
        XCTAssertThrowsError(try ConfigParsers.durationMs("0.5ms")) { error in
            XCTAssertEqual((error as? ConfigValueError)?.problem, "is finer than a millisecond")
        }
        XCTAssertThrowsError(try ConfigParsers.durationMs("1.0001s"))
    }

    func testDurationsWithoutAUnitAreRefused() {
        XCTAssertThrowsError(try ConfigParsers.durationMs("150")) { error in
            XCTAssertEqual(
                error as? ConfigValueError,
                ConfigValueError(problem: "is a duration without a unit", expected: ConfigParsers.durationSyntax))
        }
        XCTAssertThrowsError(try ConfigParsers.durationMs("0"))
    }

    func testMalformedDurationsAreRefused() {
        for text in ["fast", "ms", "1.s", ".5s", "1..5s", "1 s", " 1s", "1s ", "1e3ms", "+1s", "1,5s", "1s2", "0x10s"] {
            XCTAssertThrowsError(try ConfigParsers.durationMs(text), text)
        }
    }

    func testUnknownAndUpperCaseUnitsAreRefusedWithTheUnitNamed() {
        XCTAssertThrowsError(try ConfigParsers.durationMs("5sec")) { error in
            XCTAssertEqual((error as? ConfigValueError)?.problem, "has an unknown duration unit \"sec\"")
        }
        // "M" could mean months or minutes; only lower-case units are accepted.
        XCTAssertThrowsError(try ConfigParsers.durationMs("1M"))
        XCTAssertThrowsError(try ConfigParsers.durationMs("1S"))
        XCTAssertThrowsError(try ConfigParsers.durationMs("1d"))
        XCTAssertThrowsError(try ConfigParsers.durationMs("1us"))
    }

    func testNegativeDurationsAreRefusedAsNegative() {
        XCTAssertThrowsError(try ConfigParsers.durationMs("-1s")) { error in
            XCTAssertEqual((error as? ConfigValueError)?.problem, "is negative")
        }
    }

    func testDurationsAreBoundedAndNeverOverflow() throws {
        XCTAssertEqual(try ConfigParsers.durationMs("8760h"), ConfigParsers.durationMaxMs)
        XCTAssertThrowsError(try ConfigParsers.durationMs("8761h")) { error in
            XCTAssertEqual((error as? ConfigValueError)?.problem, "is too long")
        }
        XCTAssertThrowsError(try ConfigParsers.durationMs("99999999999999999999h"))
        XCTAssertThrowsError(try ConfigParsers.durationMs("9223372036854775807ms"))
        XCTAssertThrowsError(try ConfigParsers.durationMs(String(repeating: "9", count: 40) + "ms"))
    }
}

final class SizeParserTests: XCTestCase {
    func testBinaryUnitsArePowersOf1024() throws {
        XCTAssertEqual(try ConfigParsers.sizeBytes("512B"), 512)
        XCTAssertEqual(try ConfigParsers.sizeBytes("64KiB"), 65_536)
        XCTAssertEqual(try ConfigParsers.sizeBytes("16MiB"), 16_777_216)
        XCTAssertEqual(try ConfigParsers.sizeBytes("1GiB"), 1_073_741_824)
        XCTAssertEqual(try ConfigParsers.sizeBytes("2TiB"), 2 << 40)
    }

    func testDecimalUnitsArePowersOf1000() throws {
        XCTAssertEqual(try ConfigParsers.sizeBytes("64KB"), 64_000)
        XCTAssertEqual(try ConfigParsers.sizeBytes("16MB"), 16_000_000)
        XCTAssertEqual(try ConfigParsers.sizeBytes("1GB"), 1_000_000_000)
    }

    func testUnitsAreMatchedWithoutRegardToCase() throws {
        XCTAssertEqual(try ConfigParsers.sizeBytes("16mib"), 16 << 20)
        XCTAssertEqual(try ConfigParsers.sizeBytes("1kb"), 1000)
        XCTAssertEqual(try ConfigParsers.sizeBytes("10b"), 10)
    }

    func testFractionalSizesMustBeWholeBytes() throws {
        XCTAssertEqual(try ConfigParsers.sizeBytes("1.5MiB"), 1_572_864)
        XCTAssertEqual(try ConfigParsers.sizeBytes("0.5KiB"), 512)
        XCTAssertThrowsError(try ConfigParsers.sizeBytes("0.1KiB")) { error in
            XCTAssertEqual((error as? ConfigValueError)?.problem, "is not a whole number of bytes")
        }
        XCTAssertThrowsError(try ConfigParsers.sizeBytes("1.5B"))
    }

    func testSizesWithoutAKnownUnitAreRefused() {
        XCTAssertThrowsError(try ConfigParsers.sizeBytes("1024")) { error in
            XCTAssertEqual((error as? ConfigValueError)?.problem, "is a size without a unit")
        }
        XCTAssertThrowsError(try ConfigParsers.sizeBytes("16M")) { error in
            XCTAssertEqual((error as? ConfigValueError)?.problem, "has an unknown size unit \"M\"")
        }
        for text in ["big", "-1KiB", "1 KiB", "KiB", "1KiBs", "1Kib5", ""] {
            XCTAssertThrowsError(try ConfigParsers.sizeBytes(text), text)
        }
    }

    func testSizesAreBoundedAndNeverOverflow() throws {
        XCTAssertEqual(try ConfigParsers.sizeBytes("1024TiB"), ConfigParsers.sizeMaxBytes)
        XCTAssertThrowsError(try ConfigParsers.sizeBytes("1025TiB"))
        XCTAssertThrowsError(try ConfigParsers.sizeBytes("99999999999999999TB"))
        // Six decimals of the largest decimal unit still fit exactly.
        XCTAssertEqual(try ConfigParsers.sizeBytes("1.999999TB"), 1_999_999_000_000)
        XCTAssertThrowsError(try ConfigParsers.sizeBytes("1.9999999TB"))
    }
}

final class NumberParserTests: XCTestCase {
    func testWholeNumbersArePlainDigits() throws {
        XCTAssertEqual(try ConfigParsers.integer("1024"), 1024)
        XCTAssertEqual(try ConfigParsers.integer("0"), 0)
        for text in ["-1", "+1", "1_000", "1,000", "1e3", "1.0", " 1", "ten", ""] {
            XCTAssertThrowsError(try ConfigParsers.integer(text), text)
        }
        XCTAssertThrowsError(try ConfigParsers.integer("9999999999999999999"))
    }

    func testDecimalNumbersAcceptAFractionButNoExponentOrSign() throws {
        XCTAssertEqual(try ConfigParsers.decimal("8"), 8)
        XCTAssertEqual(try ConfigParsers.decimal("12.5"), 12.5)
        for text in ["1e3", "-8", "inf", "nan", ".5", "8.", "eight"] {
            XCTAssertThrowsError(try ConfigParsers.decimal(text), text)
        }
    }
}
