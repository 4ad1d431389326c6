import Foundation
import XCTest

@testable import TandemStorage

/// Crash recovery: a torn tail is cut and reported, damage anywhere else stops the node naming file and offset.
final class RecoveryTests: XCTestCase {
    /// Writes entries 1...count in one segment, synced and closed; returns the segment's path.
    private func writeLog(_ directory: String, count: Int, options: WALOptions = WALOptions()) throws -> String {
        let (log, _) = try XCTUnwrap(openLog(directory, options: options))
        try log.saveHardState(HardState(term: 1, votedFor: "a", commit: UInt64(count)))
        try log.append(makeEntries(from: 1, count: count, payloadBytes: 40))
        try log.close()
        return directory + "/" + segmentFiles(directory).last!
    }

    private func assertCorrupt(_ directory: String, file: String, offset: Int, line: UInt = #line) {
        XCTAssertThrowsError(try WriteAheadLog.open(directory: directory), line: line) { error in
            guard case .corrupt(let reportedFile, let reportedOffset, let reason)? = error as? WALError else {
                return XCTFail("expected corruption, got \(error)", line: line)
            }
            XCTAssertEqual(reportedFile, file, line: line)
            XCTAssertEqual(reportedOffset, Int64(offset), line: line)
            XCTAssertFalse(reason.isEmpty, line: line)
        }
    }

    func testATornLastRecordIsCutAtEveryByteOffsetAndEverythingBeforeSurvives() throws {
        let original = makeTemporaryDirectory(self)
        let segment = try writeLog(original, count: 5)
        let (offsets, size) = recordOffsets(segment)
        let lastRecordOffset = offsets.last!
        let pristine = try Data(contentsOf: URL(fileURLWithPath: segment))
        for cut in lastRecordOffset..<size {
            FileManager.default.createFile(atPath: segment, contents: pristine.prefix(cut))
            let (log, recovered) = try XCTUnwrap(openLog(original))
            XCTAssertEqual(recovered.entries, makeEntries(from: 1, count: 4, payloadBytes: 40), "cut at \(cut)")
            XCTAssertEqual(recovered.hardState?.commit, 5)
            if cut == lastRecordOffset {
                XCTAssertNil(recovered.tornTail, "a cut on a record boundary leaves nothing torn")
            } else {
                XCTAssertEqual(
                    recovered.tornTail?.file, (segment as NSString).lastPathComponent, "cut at \(cut)")
                XCTAssertEqual(recovered.tornTail?.offset, Int64(lastRecordOffset), "cut at \(cut)")
                XCTAssertEqual(recovered.tornTail?.discardedBytes, Int64(cut - lastRecordOffset), "cut at \(cut)")
            }
            XCTAssertEqual(fileSize(segment), lastRecordOffset, "the torn bytes are gone from disk")
            // The log continues from the last whole entry.
            XCTAssertEqual(log.nextIndex, 5)
            try log.append(makeEntries(from: 5, count: 1, term: 2))
            try log.close()
            let (reopened, again) = try XCTUnwrap(openLog(original))
            XCTAssertEqual(again.entries.last, makeEntries(from: 5, count: 1, term: 2).first)
            XCTAssertNil(again.tornTail)
            try reopened.close()
        }
    }

    func testABadCRCOnTheVeryLastRecordIsATornTail() throws {
        let directory = makeTemporaryDirectory(self)
        let segment = try writeLog(directory, count: 5)
        let (offsets, size) = recordOffsets(segment)
        flipBit(segment, at: size - 3)
        let (log, recovered) = try XCTUnwrap(openLog(directory))
        XCTAssertEqual(recovered.entries.count, 4)
        XCTAssertEqual(recovered.tornTail?.offset, Int64(offsets.last!))
        XCTAssertEqual(recovered.tornTail?.reason, "CRC mismatch")
        try log.close()
    }

    func testAZeroFilledPreallocatedTailIsATornTail() throws {
        let directory = makeTemporaryDirectory(self)
        let segment = try writeLog(directory, count: 5)
        let size = fileSize(segment)
        rewriteTail(segment, keeping: size, tail: [UInt8](repeating: 0, count: 8_192))
        let (log, recovered) = try XCTUnwrap(openLog(directory))
        XCTAssertEqual(recovered.entries.count, 5)
        XCTAssertEqual(recovered.tornTail?.offset, Int64(size))
        XCTAssertEqual(recovered.tornTail?.discardedBytes, 8_192)
        XCTAssertEqual(fileSize(segment), size)
        try log.close()
    }

    func testAFlippedBitInAMiddleRecordIsCorruptionNamingFileAndOffset() throws {
        let directory = makeTemporaryDirectory(self)
        let segment = try writeLog(directory, count: 10)
        let (offsets, _) = recordOffsets(segment)
        let damaged = offsets[5]
        flipBit(segment, at: damaged + 20)  // Inside the body: the CRC catches it.
        assertCorrupt(directory, file: (segment as NSString).lastPathComponent, offset: damaged)
        XCTAssertGreaterThan(fileSize(segment), damaged, "nothing is cut when the damage is not a torn tail")
    }

    func testAFlippedBitInAMiddleRecordsLengthIsCorruption() throws {
        let directory = makeTemporaryDirectory(self)
        let segment = try writeLog(directory, count: 10)
        let (offsets, _) = recordOffsets(segment)
        flipBit(segment, at: offsets[3] + 1)  // The length now runs far past the file's end.
        assertCorrupt(directory, file: (segment as NSString).lastPathComponent, offset: offsets[3])
    }

    func testDamageInASegmentBeforeTheLastIsCorruptionEvenAtItsTail() throws {
        let directory = makeTemporaryDirectory(self)
        var options = WALOptions()
        options.segmentSizeBytes = 1_024
        _ = try writeLog(directory, count: 40, options: options)
        let segments = segmentFiles(directory)
        XCTAssertGreaterThan(segments.count, 2)
        let first = directory + "/" + segments[0]
        let (offsets, size) = recordOffsets(first)
        rewriteTail(first, keeping: size - 2)  // A sealed segment was fsynced whole: a short one is damage.
        assertCorrupt(directory, file: segments[0], offset: offsets.last!)
    }

    func testAMissingSegmentIsCorruption() throws {
        let directory = makeTemporaryDirectory(self)
        var options = WALOptions()
        options.segmentSizeBytes = 1_024
        _ = try writeLog(directory, count: 40, options: options)
        let segments = segmentFiles(directory)
        try FileManager.default.removeItem(atPath: directory + "/" + segments[1])
        assertCorrupt(directory, file: segments[2], offset: 0)
    }

    func testRecordsThatBreakIndexContinuityAreCorruption() throws {
        let directory = makeTemporaryDirectory(self)
        let segment = try writeLog(directory, count: 3)
        let size = fileSize(segment)
        var gap: [UInt8] = []
        RecordEncoder.append(.entry(WALEntry(index: 9, term: 1, payload: [1])), to: &gap)
        RecordEncoder.append(.entry(WALEntry(index: 10, term: 1, payload: [1])), to: &gap)
        rewriteTail(segment, keeping: size, tail: gap)
        assertCorrupt(directory, file: (segment as NSString).lastPathComponent, offset: size)
    }

    func testATornRecordFollowedByAValidOneIsCorruptionNotATornTail() throws {
        let directory = makeTemporaryDirectory(self)
        let segment = try writeLog(directory, count: 10)
        let (offsets, _) = recordOffsets(segment)
        let secondToLast = offsets[offsets.count - 2]
        flipBit(segment, at: secondToLast + 12)
        assertCorrupt(directory, file: (segment as NSString).lastPathComponent, offset: secondToLast)
    }
}
