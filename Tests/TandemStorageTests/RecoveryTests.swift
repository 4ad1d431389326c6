import Foundation
import XCTest

@testable import TandemStorage

/// Crash recovery: a torn tail is cut and reported, damage anywhere else stops the node naming file and offset.
final class RecoveryTests: XCTestCase {
    /// Writes entries 1...count in one segment, synced and closed; returns the segment's path.
    private func writeLog(_ directory: String, count: Int, options: WALOptions = WALOptions()) throws -> String {
        let (log, _) = try XCTUnwrap(openLog(directory, options: options))
        try log.saveHardState(StoredHardState(term: 1, votedFor: "a", commit: UInt64(count)))
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

    func testNonZeroGarbageInACompleteFinalRecordIsCorruptionNotATornTail() throws {
        // The last record was fsynced whole (close() syncs), then one bit of its body flipped: the file does not
        // end inside it and no sector of it is zeros, so it is not a torn write. Cutting it would drop a vote or
        // an acknowledged entry silently.
        let directory = makeTemporaryDirectory(self)
        let segment = try writeLog(directory, count: 5)
        let (offsets, size) = recordOffsets(segment)
        flipBit(segment, at: size - 3)
        assertCorrupt(directory, file: (segment as NSString).lastPathComponent, offset: offsets.last!)
        XCTAssertEqual(fileSize(segment), size, "nothing is cut when the final record is damaged, not torn")
    }

    func testAFlippedLengthBitInACompleteFinalRecordIsCorruptionNotATornTail() throws {
        // The flipped bit makes the length run past the end of the file, as an incomplete write would; but the
        // record with that one bit restored ends exactly at the end of the file and its CRC matches.
        let directory = makeTemporaryDirectory(self)
        let segment = try writeLog(directory, count: 5)
        let (offsets, size) = recordOffsets(segment)
        flipBit(segment, at: offsets.last! + 1)
        assertCorrupt(directory, file: (segment as NSString).lastPathComponent, offset: offsets.last!)
        XCTAssertEqual(fileSize(segment), size)
    }

    func testAFinalRecordWithAnUnwrittenZeroSectorIsATornTail() throws {
        // A crash in the middle of writing a large record can leave whole sectors of it unwritten (zeros).
        let directory = makeTemporaryDirectory(self)
        let segment: String
        do {
            let (log, _) = try XCTUnwrap(openLog(directory))
            try log.append(makeEntries(from: 1, count: 3, payloadBytes: 3_000))
            try log.close()
            segment = directory + "/" + segmentFiles(directory).last!
        }
        let (offsets, size) = recordOffsets(segment)
        let last = offsets.last!
        let sector = (last / 512 + 2) * 512  // A whole 512-byte sector inside the last record.
        XCTAssertLessThanOrEqual(sector + 512, size)
        var bytes = [UInt8](FileManager.default.contents(atPath: segment)!)
        bytes.replaceSubrange(sector..<(sector + 512), with: repeatElement(0, count: 512))
        FileManager.default.createFile(atPath: segment, contents: Data(bytes))
        let (log, recovered) = try XCTUnwrap(openLog(directory))
        XCTAssertEqual(recovered.entries, makeEntries(from: 1, count: 2, payloadBytes: 3_000))
        XCTAssertEqual(recovered.tornTail?.offset, Int64(last))
        XCTAssertEqual(recovered.tornTail?.discardedBytes, Int64(size - last))
        XCTAssertEqual(fileSize(segment), last)
        try log.close()
    }

    func testAFinalRecordWithAValidCRCButAMalformedBodyIsCorruption() throws {
        let directory = makeTemporaryDirectory(self)
        let segment = try writeLog(directory, count: 3)
        let size = fileSize(segment)
        var malformed: [UInt8] = []
        RecordEncoder.append(.appliedIndex(7), to: &malformed)
        // Re-type it as a hard state (too short for one) and fix the CRC, so only the body's shape is wrong.
        malformed[8] = RecordType.hardState.rawValue
        let crc = malformed.withUnsafeBytes { bytes in
            CRC32C.update(
                CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<4])),
                UnsafeRawBufferPointer(rebasing: bytes[8...]))
        }
        for byte in 0..<4 { malformed[4 + byte] = UInt8(truncatingIfNeeded: crc >> (8 * byte)) }
        rewriteTail(segment, keeping: size, tail: malformed)
        assertCorrupt(directory, file: (segment as NSString).lastPathComponent, offset: size)
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
