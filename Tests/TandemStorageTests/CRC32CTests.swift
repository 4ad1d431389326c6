import XCTest

@testable import TandemStorage

final class CRC32CTests: XCTestCase {
    func testStandardCheckValueOf123456789() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
    }

    func testKnownVectorsFromRFC3720() {
        // iSCSI (RFC 3720, B.4): 32 zero bytes, 32 0xFF bytes, and 0...31 ascending.
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum([]), 0)
    }

    func testSlicedAndBytewiseResultsAgreeAtEveryLengthAndSplit() {
        let bytes = (0..<100).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        for length in 0...bytes.count {
            let whole = CRC32C.checksum(Array(bytes.prefix(length)))
            XCTAssertEqual(whole, bytewiseReference(Array(bytes.prefix(length))), "length \(length)")
            for split in stride(from: 0, through: length, by: 7) {
                let extended = bytes.withUnsafeBytes { raw in
                    CRC32C.update(
                        CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<split])),
                        UnsafeRawBufferPointer(rebasing: raw[split..<length]))
                }
                XCTAssertEqual(extended, whole, "length \(length) split \(split)")
            }
        }
    }

    /// The textbook one-bit-at-a-time CRC32C.
    private func bytewiseReference(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }
}
