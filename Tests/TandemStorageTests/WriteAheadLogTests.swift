import Foundation
import XCTest

@testable import TandemStorage

/// The write path and what survives a clean reopen. Real files in a temp dir, real fsync.
final class WriteAheadLogTests: XCTestCase {
    func testAFreshDirectoryOpensEmpty() throws {
        let directory = makeTemporaryDirectory(self) + "/data"  // Not created yet: open creates it.
        let (log, recovered) = try XCTUnwrap(openLog(directory))
        XCTAssertNil(recovered.hardState)
        XCTAssertEqual(recovered.appliedIndex, 0)
        XCTAssertEqual(recovered.entries, [])
        XCTAssertNil(recovered.tornTail)
        XCTAssertEqual(recovered.segmentCount, 1)
        XCTAssertNil(log.nextIndex)
        try log.close()
    }

    func testEntriesHardStateAndAppliedIndexRoundTrip() throws {
        let directory = makeTemporaryDirectory(self)
        let entries = makeEntries(from: 1, count: 10, term: 3) + [WALEntry(index: 11, term: 3, payload: [])]
        let hardState = StoredHardState(term: 3, votedFor: "node-b", commit: 7)
        do {
            let (log, _) = try XCTUnwrap(openLog(directory))
            try log.append(entries)
            try log.saveHardState(hardState)
            try log.saveAppliedIndex(6)
            try log.sync()
            XCTAssertEqual(log.nextIndex, 12)
            try log.close()
        }
        let (reopened, recovered) = try XCTUnwrap(openLog(directory))
        XCTAssertEqual(recovered.entries, entries)
        XCTAssertEqual(recovered.hardState, hardState)
        XCTAssertEqual(recovered.appliedIndex, 6)
        XCTAssertNil(recovered.tornTail)
        XCTAssertEqual(reopened.nextIndex, 12)
        try reopened.close()
    }

    func testTheLatestHardStateAndAppliedIndexWinAndANilVoteSurvives() throws {
        let directory = makeTemporaryDirectory(self)
        do {
            let (log, _) = try XCTUnwrap(openLog(directory))
            try log.saveHardState(StoredHardState(term: 1, votedFor: "a", commit: 0))
            try log.saveAppliedIndex(4)
            try log.saveHardState(StoredHardState(term: 2, votedFor: nil, commit: 5))
            try log.saveAppliedIndex(5)
            try log.close()
        }
        let (log, recovered) = try XCTUnwrap(openLog(directory))
        XCTAssertEqual(recovered.hardState, StoredHardState(term: 2, votedFor: nil, commit: 5))
        XCTAssertEqual(recovered.appliedIndex, 5)
        try log.close()
    }

    func testOneSyncCoversEveryRecordAppendedBeforeIt() throws {
        let directory = makeTemporaryDirectory(self)
        let (log, _) = try XCTUnwrap(openLog(directory))
        for index in 1...1_000 { try log.append(makeEntries(from: UInt64(index), count: 1, payloadBytes: 100)) }
        try log.saveHardState(StoredHardState(term: 1, votedFor: "a", commit: 1_000))
        XCTAssertEqual(log.syncCount, 0, "appending alone never fsyncs")
        try log.sync()
        XCTAssertEqual(log.syncCount, 1)
        try log.sync()
        XCTAssertEqual(log.syncCount, 1, "a sync with nothing new issues no fsync")
        try log.close()
        let (reopened, recovered) = try XCTUnwrap(openLog(directory))
        XCTAssertEqual(recovered.entries.count, 1_000)
        XCTAssertEqual(recovered.entries.last?.index, 1_000)
        try reopened.close()
    }

    func testAppendsAreBatchedIntoFewWrites() throws {
        let directory = makeTemporaryDirectory(self)
        var options = WALOptions()
        options.writeBufferBytes = 64 << 10
        let (log, _) = try XCTUnwrap(openLog(directory, options: options))
        try log.append(makeEntries(from: 1, count: 100, payloadBytes: 256))
        let segment = directory + "/" + segmentFiles(directory)[0]
        XCTAssertEqual(fileSize(segment), 0, "small batches stay buffered until sync")
        try log.append(makeEntries(from: 101, count: 300, payloadBytes: 256))
        XCTAssertGreaterThan(fileSize(segment), 0, "a full buffer is written out without waiting for sync")
        XCTAssertLessThan(Int64(fileSize(segment)), log.sizeBytes)
        try log.sync()
        XCTAssertEqual(Int64(fileSize(segment)), log.sizeBytes)
        try log.close()
    }

    func testAppendingContinuesAfterReopen() throws {
        let directory = makeTemporaryDirectory(self)
        for round in 0..<3 {
            let (log, recovered) = try XCTUnwrap(openLog(directory))
            XCTAssertEqual(recovered.entries.count, round * 5)
            try log.append(makeEntries(from: UInt64(round * 5 + 1), count: 5))
            try log.close()
        }
        let (log, recovered) = try XCTUnwrap(openLog(directory))
        XCTAssertEqual(recovered.entries.map(\.index), Array(1...15))
        try log.close()
    }

    func testTruncationOnConflictThenAppendReplacesTheSuffix() throws {
        let directory = makeTemporaryDirectory(self)
        do {
            let (log, _) = try XCTUnwrap(openLog(directory))
            try log.append(makeEntries(from: 1, count: 10, term: 1))
            try log.truncate(from: 6)
            XCTAssertEqual(log.nextIndex, 6)
            try log.append(makeEntries(from: 6, count: 2, term: 2))
            try log.sync()
            try log.close()
        }
        let (log, recovered) = try XCTUnwrap(openLog(directory))
        XCTAssertEqual(
            recovered.entries, makeEntries(from: 1, count: 5, term: 1) + makeEntries(from: 6, count: 2, term: 2))
        XCTAssertEqual(log.nextIndex, 8)
        // A truncation survives a later reopen too, and can reach back to the first entry.
        try log.truncate(from: 1)
        try log.append(makeEntries(from: 1, count: 1, term: 5))
        try log.close()
        let (again, recoveredAgain) = try XCTUnwrap(openLog(directory))
        XCTAssertEqual(recoveredAgain.entries, makeEntries(from: 1, count: 1, term: 5))
        try again.close()
    }

    func testSegmentsRollAtTheSizeLimitAndRecoverAcrossSegments() throws {
        let directory = makeTemporaryDirectory(self)
        var options = WALOptions()
        options.segmentSizeBytes = 4_096
        let hardState = StoredHardState(term: 9, votedFor: "c", commit: 150)
        do {
            let (log, _) = try XCTUnwrap(openLog(directory, options: options))
            try log.saveHardState(hardState)
            try log.saveAppliedIndex(140)
            for batch in 0..<20 {
                try log.append(makeEntries(from: UInt64(batch * 10 + 1), count: 10, payloadBytes: 100))
            }
            try log.truncate(from: 190)
            try log.append(makeEntries(from: 190, count: 3, term: 2, payloadBytes: 100))
            try log.sync()
            XCTAssertEqual(
                log.sizeBytes, Int64(segmentFiles(directory).map { fileSize(directory + "/" + $0) }.reduce(0, +)))
            try log.close()
        }
        let segments = segmentFiles(directory)
        XCTAssertGreaterThan(segments.count, 5)
        for segment in segments { XCTAssertLessThanOrEqual(fileSize(directory + "/" + segment), 4_096) }
        let (log, recovered) = try XCTUnwrap(openLog(directory, options: options))
        XCTAssertEqual(recovered.segmentCount, segments.count)
        XCTAssertEqual(recovered.entries.map(\.index), Array(1...192))
        XCTAssertEqual(recovered.entries.suffix(3), makeEntries(from: 190, count: 3, term: 2, payloadBytes: 100)[...])
        XCTAssertEqual(recovered.hardState, hardState)
        XCTAssertEqual(recovered.appliedIndex, 140)
        try log.close()
    }

    func testEveryNewSegmentStartsWithTheHardStateAndAppliedIndex() throws {
        let directory = makeTemporaryDirectory(self)
        var options = WALOptions()
        options.segmentSizeBytes = 2_048
        let (log, _) = try XCTUnwrap(openLog(directory, options: options))
        try log.saveHardState(StoredHardState(term: 4, votedFor: "a", commit: 2))
        try log.saveAppliedIndex(2)
        try log.append(makeEntries(from: 1, count: 40, payloadBytes: 100))
        try log.close()
        // Deleting every segment but the last (what compaction will do) keeps the hard state and applied index.
        let segments = segmentFiles(directory)
        XCTAssertGreaterThan(segments.count, 1)
        for segment in segments.dropLast() { try FileManager.default.removeItem(atPath: directory + "/" + segment) }
        let last = try XCTUnwrap(SegmentName(fileName: segments.last!))
        try FileManager.default.moveItem(
            atPath: directory + "/" + segments.last!,
            toPath: directory + "/" + SegmentName(sequence: 1, firstIndex: last.firstIndex).fileName)
        let (reopened, recovered) = try XCTUnwrap(openLog(directory, options: options))
        XCTAssertEqual(recovered.hardState, StoredHardState(term: 4, votedFor: "a", commit: 2))
        XCTAssertEqual(recovered.appliedIndex, 2)
        XCTAssertEqual(recovered.entries.first?.index, last.firstIndex)
        try reopened.close()
    }

    func testAnOversizedPayloadIsRefusedAndNothingIsAppended() throws {
        let directory = makeTemporaryDirectory(self)
        var options = WALOptions()
        options.maxEntryPayloadBytes = 1_000
        let (log, _) = try XCTUnwrap(openLog(directory, options: options))
        let batch =
            makeEntries(from: 1, count: 1, payloadBytes: 10) + makeEntries(from: 2, count: 1, payloadBytes: 1_001)
        XCTAssertThrowsError(try log.append(batch)) { error in
            XCTAssertEqual(error as? WALError, .recordTooLarge(bytes: 1_001, limit: 1_000))
        }
        XCTAssertNil(log.nextIndex)
        XCTAssertEqual(log.sizeBytes, 0)
        try log.close()
    }

    func testAnOversizedPayloadIsANonFatalErrorAndTheLogKeepsWorking() throws {
        let directory = makeTemporaryDirectory(self)
        let (log, _) = try XCTUnwrap(openLog(directory, options: WALOptions(maxEntryPayloadBytes: 100)))
        XCTAssertThrowsError(try log.append(makeEntries(from: 1, count: 1, payloadBytes: 101))) { error in
            XCTAssertEqual(error as? WALError, .recordTooLarge(bytes: 101, limit: 100))
            XCTAssertEqual((error as? WALError)?.isFatal, false, "an oversized write is the client's problem")
        }
        XCTAssertTrue(WALError.fsyncFailed(file: "x", errno: EIO).isFatal)
        XCTAssertTrue(WALError.writeFailed(file: "x", errno: ENOSPC).isFatal)
        try log.append(makeEntries(from: 1, count: 1, payloadBytes: 100))
        try log.close()
        let (reopened, recovered) = try XCTUnwrap(openLog(directory))
        XCTAssertEqual(recovered.entries, makeEntries(from: 1, count: 1, payloadBytes: 100))
        try reopened.close()
    }

    func testALargerLimitWritesAndRecoversARecordOverTheDefaultLimit() throws {
        let directory = makeTemporaryDirectory(self)
        let defaultLimit = WALOptions().maxEntryPayloadBytes
        let larger = WALOptions(maxEntryPayloadBytes: defaultLimit + (1 << 20))
        let big = WALEntry(index: 2, term: 1, payload: [UInt8](repeating: 0xA5, count: defaultLimit + 4_096))
        do {
            let (log, _) = try XCTUnwrap(openLog(directory, options: larger))
            try log.append(makeEntries(from: 1, count: 1))
            try log.append([big])
            try log.close()
        }
        do {
            let (log, recovered) = try XCTUnwrap(openLog(directory, options: larger))
            XCTAssertEqual(recovered.entries.count, 2)
            XCTAssertEqual(recovered.entries.last, big)
            XCTAssertNil(recovered.tornTail)
            try log.close()
        }
        // Opened with the default limit, the large record is not mistaken for a torn tail and cut: recovery
        // stops and says what is wrong.
        XCTAssertThrowsError(try WriteAheadLog.open(directory: directory)) { error in
            guard case .corrupt(_, _, let reason)? = error as? WALError else {
                return XCTFail("expected corruption, got \(error)")
            }
            XCTAssertTrue(reason.contains("over the limit"), reason)
        }
        let segment = directory + "/" + segmentFiles(directory).last!
        XCTAssertGreaterThan(fileSize(segment), defaultLimit, "nothing was cut")
    }

    func testASecondOpenOfTheSameDirectoryIsRefusedWhileTheFirstHoldsIt() throws {
        let directory = makeTemporaryDirectory(self)
        let (log, _) = try XCTUnwrap(openLog(directory))
        XCTAssertThrowsError(try WriteAheadLog.open(directory: directory)) { error in
            XCTAssertEqual(error as? WALError, .locked(directory: directory))
        }
        try log.close()
        let (again, _) = try XCTUnwrap(openLog(directory))
        try again.close()
    }
}

/// A disk that fails: the log must report it and refuse all further work (never retry and pretend).
final class DiskFailureTests: XCTestCase {
    func testAFailedWritePoisonsTheLogForGood() throws {
        let directory = makeTemporaryDirectory(self)
        // The segment is a link to /dev/full, where every write fails with ENOSPC.
        let segment = SegmentName(sequence: 1, firstIndex: 0).fileName
        try FileManager.default.createSymbolicLink(atPath: directory + "/" + segment, withDestinationPath: "/dev/full")
        let (log, recovered) = try XCTUnwrap(openLog(directory))
        XCTAssertEqual(recovered.entries, [])
        try log.append(makeEntries(from: 1, count: 3))
        let expected = WALError.writeFailed(file: directory + "/" + segment, errno: ENOSPC)
        XCTAssertThrowsError(try log.sync()) { XCTAssertEqual($0 as? WALError, expected) }
        XCTAssertEqual(log.syncCount, 0)
        // Every later call fails the same way, even one that would write nothing new.
        XCTAssertThrowsError(try log.sync()) { XCTAssertEqual($0 as? WALError, expected) }
        XCTAssertThrowsError(try log.append(makeEntries(from: 4, count: 1))) {
            XCTAssertEqual($0 as? WALError, expected)
        }
        XCTAssertThrowsError(try log.saveHardState(StoredHardState(term: 1, votedFor: nil, commit: 0))) {
            XCTAssertEqual($0 as? WALError, expected)
        }
        XCTAssertNoThrow(try log.close(), "close releases the files without another write")
    }
}

final class OptionChangeTests: XCTestCase {
    func testLoweringTheLimitsBetweenRunsNeverMakesValidRecordsLookDamaged() throws {
        let directory = makeTemporaryDirectory(self)
        do {
            let (log, _) = try XCTUnwrap(openLog(directory))
            try log.append(makeEntries(from: 1, count: 3, payloadBytes: 5_000))
            try log.close()
        }
        var smaller = WALOptions()
        smaller.maxEntryPayloadBytes = 1_000
        smaller.segmentSizeBytes = 2_000
        let (log, recovered) = try XCTUnwrap(openLog(directory, options: smaller))
        XCTAssertEqual(recovered.entries, makeEntries(from: 1, count: 3, payloadBytes: 5_000))
        XCTAssertNil(recovered.tornTail)
        try log.close()
    }
}
