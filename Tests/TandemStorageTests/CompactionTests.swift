import Foundation
import XCTest

@testable import TandemStorage

/// The records at the start of the segment file at `path`, up to `count` of them.
func leadingRecords(_ path: String, count: Int) -> [Record] {
    let bytes = [UInt8](FileManager.default.contents(atPath: path)!)
    let decoder = RecordDecoder(maxEntryPayloadBytes: WALOptions().maxEntryPayloadBytes)
    var records: [Record] = []
    var offset = 0
    bytes.withUnsafeBytes { buffer in
        while records.count < count, offset < buffer.count,
            case .record(let record, let next) = decoder.read(buffer, at: offset)
        {
            records.append(record)
            offset = next
        }
    }
    return records
}

/// Small segments, so that a hundred entries span many of them.
func smallSegments() -> WALOptions {
    var options = WALOptions()
    options.segmentSizeBytes = 1_024
    return options
}

/// Compaction (`compact(to:)`), reset (`reset(to:)`) and what recovery makes of the segments they leave.
final class CompactionTests: XCTestCase {
    private let hardState = StoredHardState(term: 2, votedFor: "node-b", commit: 100)

    /// A log of entries 1...count (term 1, 40-byte payloads) over many small segments, with a hard state and an
    /// applied index, synced and left open.
    private func makeLog(_ directory: String, count: Int = 100) throws -> WriteAheadLog {
        let (log, _) = try XCTUnwrap(openLog(directory, options: smallSegments()))
        try log.saveHardState(hardState)
        try log.saveAppliedIndex(90)
        try log.append(makeEntries(from: 1, count: count, payloadBytes: 40))
        try log.sync()
        return log
    }

    private func totalSegmentBytes(_ directory: String) -> Int64 {
        segmentFiles(directory).reduce(0) { $0 + Int64(fileSize(directory + "/" + $1)) }
    }

    func testCompactionDeletesTheCoveredSegmentsAndRecoveryReturnsExactlyTheEntriesAfterTheBase() throws {
        let directory = makeTemporaryDirectory(self)
        let log = try makeLog(directory)
        let before = segmentFiles(directory)
        XCTAssertGreaterThan(before.count, 5)
        let sizeBefore = log.sizeBytes
        let base = StoredLogBase(index: 60, term: 1)
        try log.compact(to: base)
        XCTAssertEqual(log.base, base)
        XCTAssertEqual(log.nextIndex, 101)

        let after = segmentFiles(directory)
        XCTAssertLessThan(after.count, before.count)
        XCTAssertEqual(after, Array(before.suffix(after.count)), "only the oldest segments are deleted")
        // The first segment left holds entry 61 (it was created at or before it); the one before it did not.
        let names = after.compactMap(SegmentName.init(fileName:))
        XCTAssertLessThanOrEqual(names[0].firstIndex, 61)
        XCTAssertGreaterThan(names[1].firstIndex, 61)
        let deleted = try XCTUnwrap(SegmentName(fileName: before[before.count - after.count - 1]))
        XCTAssertLessThanOrEqual(deleted.firstIndex, 61)
        XCTAssertLessThan(log.sizeBytes, sizeBefore)
        XCTAssertEqual(log.sizeBytes, totalSegmentBytes(directory))

        try log.append(makeEntries(from: 101, count: 10, payloadBytes: 40))
        try log.close()
        let (reopened, recovered) = try XCTUnwrap(openLog(directory, options: smallSegments()))
        XCTAssertEqual(recovered.base, base)
        XCTAssertEqual(recovered.entries, makeEntries(from: 61, count: 50, payloadBytes: 40))
        XCTAssertEqual(recovered.hardState, hardState)
        XCTAssertEqual(recovered.appliedIndex, 90)
        XCTAssertEqual(reopened.nextIndex, 111)
        XCTAssertEqual(reopened.base, base)
        XCTAssertEqual(reopened.sizeBytes, totalSegmentBytes(directory))
        try reopened.close()
    }

    func testSuccessiveCompactionsKeepTheHardStateAppliedIndexAndBaseOfDeletedSegments() throws {
        let directory = makeTemporaryDirectory(self)
        let log = try makeLog(directory)
        try log.compact(to: StoredLogBase(index: 30, term: 1))
        let newest = StoredHardState(term: 3, votedFor: nil, commit: 180)
        try log.saveHardState(newest)
        try log.saveAppliedIndex(170)
        try log.append(makeEntries(from: 101, count: 100, payloadBytes: 40))
        try log.sync()
        // Every segment rolled since starts with the base, the hard state and the applied index.
        let segments = segmentFiles(directory)
        let lastPath = directory + "/" + segments.last!
        XCTAssertEqual(
            leadingRecords(lastPath, count: 3),
            [.base(StoredLogBase(index: 30, term: 1), reset: false), .hardState(newest), .appliedIndex(170)])
        try log.compact(to: StoredLogBase(index: 195, term: 1))
        XCTAssertLessThanOrEqual(segmentFiles(directory).count, 2)
        try log.close()
        let (reopened, recovered) = try XCTUnwrap(openLog(directory, options: smallSegments()))
        XCTAssertEqual(recovered.base, StoredLogBase(index: 195, term: 1))
        XCTAssertEqual(recovered.entries, makeEntries(from: 196, count: 5, payloadBytes: 40))
        XCTAssertEqual(recovered.hardState, newest)
        XCTAssertEqual(recovered.appliedIndex, 170)
        try reopened.close()
    }

    func testABaseAtOrBelowTheCurrentOneIsANoOp() throws {
        let directory = makeTemporaryDirectory(self)
        let log = try makeLog(directory, count: 20)
        let base = StoredLogBase(index: 10, term: 1)
        try log.compact(to: base)
        let size = log.sizeBytes
        try log.compact(to: StoredLogBase(index: 9, term: 1))
        try log.compact(to: StoredLogBase(index: 10, term: 7))
        XCTAssertEqual(log.base, base)
        XCTAssertEqual(log.sizeBytes, size, "nothing was recorded")
        try log.close()
        let (reopened, recovered) = try XCTUnwrap(openLog(directory, options: smallSegments()))
        XCTAssertEqual(recovered.base, base)
        XCTAssertEqual(recovered.entries.map(\.index), Array(11...20))
        try reopened.close()
    }

    func testABaseBeyondTheLastEntryEmptiesTheLogAndAppendsContinueAfterIt() throws {
        let directory = makeTemporaryDirectory(self)
        let log = try makeLog(directory, count: 50)
        try log.compact(to: StoredLogBase(index: 80, term: 4))
        XCTAssertEqual(log.nextIndex, 81)
        XCTAssertEqual(segmentFiles(directory).count, 1, "no segment holds an entry above the base")
        try log.append(makeEntries(from: 81, count: 3, term: 4))
        try log.close()
        let (reopened, recovered) = try XCTUnwrap(openLog(directory, options: smallSegments()))
        XCTAssertEqual(recovered.base, StoredLogBase(index: 80, term: 4))
        XCTAssertEqual(recovered.entries, makeEntries(from: 81, count: 3, term: 4))
        try reopened.close()
    }

    func testTruncationAboveTheBaseAfterCompactionRecovers() throws {
        let directory = makeTemporaryDirectory(self)
        let log = try makeLog(directory)
        try log.compact(to: StoredLogBase(index: 70, term: 1))
        try log.truncate(from: 80)
        try log.append(makeEntries(from: 80, count: 5, term: 2))
        try log.close()
        let (reopened, recovered) = try XCTUnwrap(openLog(directory, options: smallSegments()))
        XCTAssertEqual(
            recovered.entries,
            makeEntries(from: 71, count: 9, payloadBytes: 40) + makeEntries(from: 80, count: 5, term: 2))
        XCTAssertEqual(reopened.nextIndex, 85)
        try reopened.close()
    }

    func testResetDiscardsEveryEntryAndAppendsContinueAfterTheBase() throws {
        let directory = makeTemporaryDirectory(self)
        let log = try makeLog(directory)
        XCTAssertGreaterThan(segmentFiles(directory).count, 5)
        // Unsynced records before the reset: the hard state must survive it, the entries not.
        let newest = StoredHardState(term: 5, votedFor: "node-c", commit: 500)
        try log.saveHardState(newest)
        try log.append(makeEntries(from: 101, count: 3))
        let base = StoredLogBase(index: 500, term: 5)
        try log.reset(to: base)
        XCTAssertEqual(log.base, base)
        XCTAssertEqual(log.nextIndex, 501)
        let segments = segmentFiles(directory)
        XCTAssertEqual(segments.count, 1)
        XCTAssertEqual(SegmentName(fileName: segments[0])?.firstIndex, 501)
        XCTAssertEqual(log.sizeBytes, totalSegmentBytes(directory))
        XCTAssertEqual(
            leadingRecords(directory + "/" + segments[0], count: 3),
            [.base(base, reset: true), .hardState(newest), .appliedIndex(90)])
        try log.append(makeEntries(from: 501, count: 30, term: 5, payloadBytes: 40))
        try log.close()

        let (reopened, recovered) = try XCTUnwrap(openLog(directory, options: smallSegments()))
        XCTAssertEqual(recovered.base, base)
        XCTAssertEqual(recovered.entries, makeEntries(from: 501, count: 30, term: 5, payloadBytes: 40))
        XCTAssertEqual(recovered.hardState, newest)
        XCTAssertEqual(recovered.appliedIndex, 90)
        // A reset may go below the current base: the log restarts there.
        try reopened.reset(to: StoredLogBase(index: 300, term: 6))
        XCTAssertEqual(reopened.nextIndex, 301)
        try reopened.append(makeEntries(from: 301, count: 2, term: 6))
        try reopened.close()
        let (again, recoveredAgain) = try XCTUnwrap(openLog(directory, options: smallSegments()))
        XCTAssertEqual(recoveredAgain.base, StoredLogBase(index: 300, term: 6))
        XCTAssertEqual(recoveredAgain.entries, makeEntries(from: 301, count: 2, term: 6))
        try again.close()
    }

    func testResetOfAFreshLogWorks() throws {
        let directory = makeTemporaryDirectory(self)
        let (log, _) = try XCTUnwrap(openLog(directory))
        try log.reset(to: StoredLogBase(index: 7, term: 2))
        try log.append(makeEntries(from: 8, count: 1, term: 2))
        try log.close()
        let (reopened, recovered) = try XCTUnwrap(openLog(directory))
        XCTAssertEqual(recovered.base, StoredLogBase(index: 7, term: 2))
        XCTAssertEqual(recovered.entries, makeEntries(from: 8, count: 1, term: 2))
        XCTAssertNil(recovered.hardState)
        try reopened.close()
    }

    // MARK: - Gaps

    private func assertCorrupt(
        _ directory: String, file: String, reasonContaining: String, line: UInt = #line
    ) {
        XCTAssertThrowsError(try WriteAheadLog.open(directory: directory, options: smallSegments()), line: line) {
            error in
            guard case .corrupt(let reportedFile, let offset, let reason)? = error as? WALError else {
                return XCTFail("expected corruption, got \(error)", line: line)
            }
            XCTAssertEqual(reportedFile, file, line: line)
            XCTAssertEqual(offset, 0, line: line)
            XCTAssertTrue(reason.contains(reasonContaining), "reason: \(reason)", line: line)
        }
    }

    func testLeadingSegmentsMissingWithoutABaseAreCorruption() throws {
        let directory = makeTemporaryDirectory(self)
        try makeLog(directory).close()
        let segments = segmentFiles(directory)
        for segment in segments.prefix(2) { try FileManager.default.removeItem(atPath: directory + "/" + segment) }
        assertCorrupt(directory, file: segments[2], reasonContaining: "segments 1 through 2 are missing")
    }

    func testAGapTheBaseDoesNotCoverIsCorruption() throws {
        let directory = makeTemporaryDirectory(self)
        let log = try makeLog(directory)
        let segments = segmentFiles(directory)
        try log.compact(to: StoredLogBase(index: 3, term: 1))
        XCTAssertEqual(segmentFiles(directory), segments, "the first segment still holds entries above 3")
        try log.close()
        try FileManager.default.removeItem(atPath: directory + "/" + segments[0])
        let second = try XCTUnwrap(SegmentName(fileName: segments[1]))
        assertCorrupt(
            directory, file: segments[1],
            reasonContaining: "entries 4 through \(second.firstIndex - 1) are missing")
    }

    func testASegmentDeletedAfterACompactionIsCorruptionEvenWithAHeaderBase() throws {
        // The base is in the header of the second segment, but that segment starts well after it.
        let directory = makeTemporaryDirectory(self)
        let log = try makeLog(directory, count: 10)
        try log.compact(to: StoredLogBase(index: 2, term: 1))
        try log.append(makeEntries(from: 11, count: 40, payloadBytes: 40))
        try log.close()
        let segments = segmentFiles(directory)
        XCTAssertEqual(
            leadingRecords(directory + "/" + segments[1], count: 1),
            [.base(StoredLogBase(index: 2, term: 1), reset: false)])
        try FileManager.default.removeItem(atPath: directory + "/" + segments[0])
        assertCorrupt(directory, file: segments[1], reasonContaining: "entries 3 through")
    }

    func testALogWhoseFirstSegmentIsTheOriginalMayStartAtAnyIndex() throws {
        // Logs written before bases existed could start anywhere; nothing was deleted, so nothing is missing.
        let directory = makeTemporaryDirectory(self)
        do {
            let (log, _) = try XCTUnwrap(openLog(directory, options: smallSegments()))
            try log.append(makeEntries(from: 40, count: 30, payloadBytes: 40))
            try log.close()
        }
        let (log, recovered) = try XCTUnwrap(openLog(directory, options: smallSegments()))
        XCTAssertEqual(recovered.entries.map(\.index), Array(40...69))
        XCTAssertNil(recovered.base)
        try log.close()
    }
}
