import Foundation
import XCTest

@testable import TandemStorage

/// The cluster configuration a base record carries: written with a compaction or a reset, copied to every new
/// segment, recovered; and base records written before configurations existed still read back.
final class BaseConfigurationTests: XCTestCase {
    func testACompactionBaseKeepsItsConfigurationThroughSegmentRollsAndReopening() throws {
        let directory = makeTemporaryDirectory(self)
        let (log, _) = try XCTUnwrap(openLog(directory, options: smallSegments()))
        try log.append(makeEntries(from: 1, count: 60, payloadBytes: 40))
        try log.sync()
        let configuration: [UInt8] = Array("voters n1 n2 n3 learner n4".utf8)
        let base = StoredLogBase(index: 40, term: 1, configuration: configuration)
        try log.compact(to: base)
        // More segments after the compaction: each starts with a copy of the base, configuration included.
        try log.append(makeEntries(from: 61, count: 60, payloadBytes: 40))
        try log.sync()
        try log.close()
        let (reopened, recovered) = try XCTUnwrap(openLog(directory, options: smallSegments()))
        XCTAssertEqual(recovered.base, base)
        XCTAssertEqual(recovered.base?.configuration, configuration)
        let newest = try XCTUnwrap(segmentFiles(directory).last)
        let copies = leadingRecords(directory + "/" + newest, count: 3).filter {
            if case .base(let copied, _) = $0 { return copied == base }
            return false
        }
        XCTAssertEqual(copies.count, 1, "the newest segment starts with the base and its configuration")
        try reopened.close()
    }

    func testAResetBaseAtIndexZeroRecordsTheConfigurationOfAnEmptyLog() throws {
        let directory = makeTemporaryDirectory(self)
        let (log, _) = try XCTUnwrap(openLog(directory))
        let admitted = StoredLogBase(index: 0, term: 0, configuration: [2, 0, 1, 0, 2, 0x6E, 0x31])
        try log.reset(to: admitted)
        try log.append(makeEntries(from: 1, count: 3))
        try log.sync()
        try log.close()
        let (reopened, recovered) = try XCTUnwrap(openLog(directory))
        XCTAssertEqual(recovered.base, admitted)
        XCTAssertEqual(recovered.entries.map(\.index), [1, 2, 3])
        try reopened.close()
    }

    func testABaseRecordWithoutAConfigurationStillDecodesAndABadLengthDoesNot() {
        let decoder = RecordDecoder(maxEntryPayloadBytes: WALOptions().maxEntryPayloadBytes)
        func decode(_ record: Record) -> Record? {
            var buffer: [UInt8] = []
            RecordEncoder.append(record, to: &buffer)
            return buffer.withUnsafeBytes { bytes in
                if case .record(let decoded, _) = decoder.read(bytes, at: 0) { return decoded }
                return nil
            }
        }
        let old = Record.base(StoredLogBase(index: 5, term: 2), reset: false)
        XCTAssertEqual(decode(old), old)
        var buffer: [UInt8] = []
        RecordEncoder.append(old, to: &buffer)
        XCTAssertEqual(buffer.count, 9 + 17, "the record older versions wrote")
        let new = Record.base(StoredLogBase(index: 5, term: 2, configuration: [1, 2, 3]), reset: true)
        XCTAssertEqual(decode(new), new)
    }
}
