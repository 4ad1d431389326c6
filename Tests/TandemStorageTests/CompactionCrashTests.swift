import Foundation
import XCTest

@testable import TandemStorage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The log files of a data directory (segments and staged segments), by name.
private typealias LogFiles = [String: [UInt8]]

private func captureLogFiles(_ directory: String) -> LogFiles {
    var files: LogFiles = [:]
    for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix("wal-") {
        files[name] = [UInt8](FileManager.default.contents(atPath: directory + "/" + name)!)
    }
    return files
}

/// Replaces the log files of `directory` by `files`: the disk as a crash left it. (Written without the fsync of
/// an atomic write: a crash of the test itself is not what is simulated.)
private func restoreLogFiles(_ directory: String, _ files: LogFiles) {
    for name in captureLogFiles(directory).keys { try! FileManager.default.removeItem(atPath: directory + "/" + name) }
    for (name, bytes) in files {
        let descriptor = open(directory + "/" + name, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        XCTAssertEqual(bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }, bytes.count)
        close(descriptor)
    }
}

/// The state of a log as a test expects recovery to return it.
struct ExpectedLog: Equatable, CustomStringConvertible {
    var entries: [WALEntry] = []
    var hardState: StoredHardState?
    var appliedIndex: UInt64 = 0
    var base: StoredLogBase?

    init(
        entries: [WALEntry] = [], hardState: StoredHardState? = nil, appliedIndex: UInt64 = 0,
        base: StoredLogBase? = nil
    ) {
        self.entries = entries
        self.hardState = hardState
        self.appliedIndex = appliedIndex
        self.base = base
    }

    init(_ recovered: RecoveredLog) {
        self.init(
            entries: recovered.entries, hardState: recovered.hardState, appliedIndex: recovered.appliedIndex,
            base: recovered.base)
    }

    /// The index the next entry must have.
    var nextIndex: UInt64 { entries.last.map { $0.index + 1 } ?? base.map { $0.index + 1 } ?? 1 }

    var description: String {
        "entries \(entries.first?.index ?? 0)...\(entries.last?.index ?? 0), base \(String(describing: base)), "
            + "hard state \(String(describing: hardState)), applied \(appliedIndex)"
    }
}

/// Crashes at every point of `compact(to:)` and `reset(to:)`: the disk is rebuilt as the crash could have left it
/// (files cut at every byte offset, deletions done in part), and recovery must return either the log before the
/// operation or the log after it, never a mix that loses an entry above the base.
final class CompactionCrashTests: XCTestCase {
    private let hardState = StoredHardState(term: 2, votedFor: "node-b", commit: 100)

    /// A log of entries 1...n over many small segments, synced (and compacted to `base` if given), whose last
    /// segment was just started (so that what follows fits in it), plus `pending` entries appended and not synced.
    private func makeLog(_ directory: String, pending: Int, base: StoredLogBase? = nil) throws -> (
        WriteAheadLog, synced: ExpectedLog
    ) {
        let (log, _) = try XCTUnwrap(openLog(directory, options: smallSegments()))
        try log.saveHardState(hardState)
        try log.saveAppliedIndex(90)
        try log.append(makeEntries(from: 1, count: 100, payloadBytes: 40))
        try log.sync()
        var index: UInt64 = 101
        while fileSize(directory + "/" + segmentFiles(directory).last!) > 300 {
            try log.append(makeEntries(from: index, count: 1, payloadBytes: 40))
            try log.sync()
            index += 1
        }
        var synced = ExpectedLog(
            entries: makeEntries(from: 1, count: Int(index - 1), payloadBytes: 40), hardState: hardState,
            appliedIndex: 90)
        if let base {
            try log.compact(to: base)
            synced.entries.removeAll { $0.index <= base.index }
            synced.base = base
        }
        try log.append(makeEntries(from: index, count: pending, payloadBytes: 40))
        return (log, synced)
    }

    /// How many crash points were checked with a continuation (see `recover`).
    private var continuations = 0

    /// Recovers `directory` and returns what it held (failing the test when it does not open). Every few calls
    /// (it costs fsyncs) it also checks that the recovered log goes on: an append at its next index is accepted
    /// and recovered.
    private func recover(_ directory: String, _ context: String) throws -> ExpectedLog {
        let (log, recovered) = try XCTUnwrap(openLog(directory, options: smallSegments()), context)
        continuations += 1
        guard continuations % 7 == 1 else {
            try log.close()
            return ExpectedLog(recovered)
        }
        let next = ExpectedLog(recovered).nextIndex
        try log.append([WALEntry(index: next, term: 9, payload: [1])])
        try log.close()
        let (again, recoveredAgain) = try XCTUnwrap(openLog(directory, options: smallSegments()), context)
        XCTAssertEqual(recoveredAgain.entries.last, WALEntry(index: next, term: 9, payload: [1]), context)
        try again.close()
        return ExpectedLog(recovered)
    }

    func testACrashAtAnyPointOfACompactionRecoversTheOldOrTheNewLog() throws {
        let directory = makeTemporaryDirectory(self)
        let (log, synced) = try makeLog(directory, pending: 3)
        let pendingEntries = makeEntries(from: UInt64(synced.entries.count + 1), count: 3, payloadBytes: 40)
        let before = captureLogFiles(directory)
        let base = StoredLogBase(index: 60, term: 1)
        try log.compact(to: base)
        let after = captureLogFiles(directory)
        try log.close()

        let last = segmentFiles(directory).last!
        XCTAssertNotNil(before[last], "the base record went to the segment that was last before")
        let deleted = before.keys.filter { after[$0] == nil }.sorted()
        XCTAssertGreaterThan(deleted.count, 3)
        let old = (0...3).map { count in
            ExpectedLog(
                entries: synced.entries + pendingEntries.prefix(count), hardState: hardState, appliedIndex: 90)
        }
        let new = ExpectedLog(
            entries: (synced.entries + pendingEntries).filter { $0.index > 60 }, hardState: hardState,
            appliedIndex: 90, base: base)

        // 1. The crash cuts the last segment anywhere in what the compaction wrote (entries, then the base): no
        //    segment was deleted yet, since deletions wait for the base to be durable.
        let finalBytes = after[last]!
        for cut in before[last]!.count...finalBytes.count {
            var files = before
            files[last] = Array(finalBytes.prefix(cut))
            restoreLogFiles(directory, files)
            let recovered = try recover(directory, "cut at \(cut)")
            if cut == finalBytes.count {
                XCTAssertEqual(recovered, new, "cut at \(cut)")
            } else {
                XCTAssertTrue(old.contains(recovered), "cut at \(cut): \(recovered)")
            }
        }
        // 2. The crash comes while the segments are being deleted, oldest first: any number of them are gone.
        for deletedCount in 0...deleted.count {
            var files = after
            for name in deleted.dropFirst(deletedCount) { files[name] = before[name] }
            restoreLogFiles(directory, files)
            XCTAssertEqual(try recover(directory, "\(deletedCount) deleted"), new, "\(deletedCount) deleted")
        }
    }

    func testACrashAtAnyPointOfAResetRecoversTheOldOrTheNewLog() throws {
        // Beyond the log, within it, and below an earlier base.
        // (Cutting files at every byte offset once is enough: the bases only matter once the reset is in place.)
        try checkCrashesDuringReset(to: StoredLogBase(index: 400, term: 5), atEveryByte: true)
        try checkCrashesDuringReset(to: StoredLogBase(index: 50, term: 5), atEveryByte: false)
        try checkCrashesDuringReset(
            to: StoredLogBase(index: 30, term: 5), after: StoredLogBase(index: 60, term: 1), atEveryByte: false)
    }

    private func checkCrashesDuringReset(
        to base: StoredLogBase, after earlierBase: StoredLogBase? = nil, atEveryByte: Bool
    ) throws {
        // The same operations on two logs: one syncs (what reset does first), the other resets.
        let twin = makeTemporaryDirectory(self)
        let directory = makeTemporaryDirectory(self)
        let newest = StoredHardState(term: 5, votedFor: "node-c", commit: 400)
        let (twinLog, _) = try makeLog(twin, pending: 3, base: earlierBase)
        try twinLog.saveHardState(newest)
        try twinLog.sync()
        let flushed = captureLogFiles(twin)
        try twinLog.close()

        let (log, synced) = try makeLog(directory, pending: 3, base: earlierBase)
        try log.saveHardState(newest)
        let pendingEntries = makeEntries(
            from: synced.entries.last!.index + 1, count: 3, payloadBytes: 40)
        let before = captureLogFiles(directory)
        XCTAssertEqual(Set(before.keys), Set(flushed.keys))
        XCTAssertGreaterThan(before.count, 2)
        try log.reset(to: base)
        let after = captureLogFiles(directory)
        try log.close()

        XCTAssertEqual(after.count, 1)
        let (resetSegment, resetBytes) = after.first!
        let oldLast = segmentFiles(twin).last!
        let old =
            (0...3).map { count in
                ExpectedLog(
                    entries: synced.entries + pendingEntries.prefix(count), hardState: hardState, appliedIndex: 90,
                    base: earlierBase)
            } + [
                ExpectedLog(
                    entries: synced.entries + pendingEntries, hardState: newest, appliedIndex: 90, base: earlierBase)
            ]
        let new = ExpectedLog(entries: [], hardState: newest, appliedIndex: 90, base: base)

        // 1. The crash cuts the old last segment while reset writes out what was pending.
        let oldLastCuts = before[oldLast]!.count...flushed[oldLast]!.count
        for cut in atEveryByte ? Array(oldLastCuts) : [oldLastCuts.lowerBound, oldLastCuts.upperBound] {
            var files = before
            files[oldLast] = Array(flushed[oldLast]!.prefix(cut))
            restoreLogFiles(directory, files)
            let recovered = try recover(directory, "cut at \(cut)")
            XCTAssertTrue(old.contains(recovered), "cut at \(cut): \(recovered)")
        }
        // 2. The crash comes while the next segment is written under its temporary name: it is not part of the
        //    log, and open deletes it.
        for cut in atEveryByte ? Array(0...resetBytes.count) : [0, resetBytes.count] {
            var files = flushed
            files[resetSegment + ".tmp"] = Array(resetBytes.prefix(cut))
            restoreLogFiles(directory, files)
            XCTAssertEqual(try recover(directory, "staged \(cut)"), old.last!, "staged \(cut)")
            XCTAssertNil(captureLogFiles(directory)[resetSegment + ".tmp"], "staged \(cut)")
        }
        // 3. The crash comes after the rename, while the older segments are deleted oldest first.
        let oldNames = flushed.keys.sorted()
        for deletedCount in 0...oldNames.count {
            var files = after
            for name in oldNames.dropFirst(deletedCount) { files[name] = flushed[name] }
            restoreLogFiles(directory, files)
            XCTAssertEqual(try recover(directory, "\(deletedCount) deleted"), new, "\(deletedCount) deleted")
        }
    }

    /// Random work including compactions and resets, then a crash (the log dropped without close, the last
    /// segment cut at a random point after what was synced): recovery returns a state no older than the last sync.
    func testRecoveryAfterACrashAmongCompactionsAndResetsReturnsAStateNoOlderThanTheLastSync() throws {
        var random = SplitMix(seed: 77)
        var options = smallSegments()
        options.writeBufferBytes = 700
        for trial in 0..<30 {
            let directory = makeTemporaryDirectory(self)
            var states = [ExpectedLog()]
            var lastSyncedState = 0
            var durable = (segment: "", bytes: 0)
            do {
                let (log, _) = try XCTUnwrap(openLog(directory, options: options))
                for _ in 0..<Int(20 + random.next() % 80) {
                    var state = states.last!
                    let (intermediate, synced) = try performRandomOperation(log, &state, &random)
                    states += intermediate
                    states.append(state)
                    if synced || random.next() % 5 == 0 {
                        try log.sync()
                        lastSyncedState = states.count - 1
                        let last = segmentFiles(directory).last!
                        durable = (last, fileSize(directory + "/" + last))
                    }
                }
                XCTAssertEqual(log.base, states.last!.base)
                XCTAssertEqual(log.nextIndex.map { $0 } ?? 1, states.last!.nextIndex, "trial \(trial)")
            }
            let lastSegment = segmentFiles(directory).last!
            let path = directory + "/" + lastSegment
            let durableBytes = lastSegment == durable.segment ? durable.bytes : 0
            let size = fileSize(path)
            let cut = durableBytes + Int(random.next() % UInt64(size - durableBytes + 1))
            rewriteTail(path, keeping: cut)
            let (log, recovered) = try XCTUnwrap(openLog(directory, options: options), "trial \(trial)")
            XCTAssertTrue(
                states[lastSyncedState...].contains(ExpectedLog(recovered)),
                "trial \(trial): recovered \(ExpectedLog(recovered)), not a state at or after the last sync")
            try log.close()
        }
    }

    /// Performs one operation on `log` and on `state`; returns the states between its records, and whether the
    /// operation synced.
    private func performRandomOperation(_ log: WriteAheadLog, _ state: inout ExpectedLog, _ random: inout SplitMix)
        throws -> (intermediate: [ExpectedLog], synced: Bool)
    {
        let next = state.nextIndex
        let floor = state.base?.index ?? 0
        switch random.next() % 20 {
        case 0...10:
            let batch = makeEntries(
                from: next, count: Int(1 + random.next() % 8), term: 1 + random.next() % 3,
                payloadBytes: Int(random.next() % 200))
            try log.append(batch)
            let prefixes = (1..<batch.count).map { count in
                var prefix = state
                prefix.entries += batch.prefix(count)
                return prefix
            }
            state.entries += batch
            return (prefixes, false)
        case 11 where next > floor + 1:
            let from = floor + 1 + random.next() % (next - floor - 1)
            try log.truncate(from: from)
            state.entries.removeAll { $0.index >= from }
        case 12:
            let hardState = StoredHardState(
                term: random.next() % 9, votedFor: random.next() % 2 == 0 ? nil : "node-\(random.next() % 5)",
                commit: random.next() % 50)
            try log.saveHardState(hardState)
            state.hardState = hardState
        case 13:
            let applied = random.next() % 50
            try log.saveAppliedIndex(applied)
            state.appliedIndex = applied
        case 14...16:
            // Mostly within the log, sometimes beyond its last entry.
            let index = floor + 1 + random.next() % (next - floor + 2)
            let base = StoredLogBase(index: index, term: random.next() % 4)
            try log.compact(to: base)
            state.entries.removeAll { $0.index <= index }
            state.base = base
            return ([], true)
        case 17:
            let base = StoredLogBase(index: random.next() % (next + 20), term: random.next() % 4)
            try log.reset(to: base)
            state.entries = []
            state.base = base
            return ([], true)
        default:
            try log.sync()
            return ([], true)
        }
        return ([], false)
    }
}
