import Foundation
import XCTest

@testable import TandemStorage

/// A seeded crash test: random work with random syncs, then a "crash" (the log is dropped without close, and the
/// last segment is cut at a random point after what was synced, as a torn write leaves it). Whatever recovery
/// returns must be exactly the state after some operation no earlier than the last sync: nothing synced is lost,
/// and nothing half-written appears (a batch of entries may survive in part: each entry is its own record).
final class CrashRecoveryPropertyTests: XCTestCase {
    /// The log as the test expects it after each operation.
    private struct ModelState: Equatable {
        var entries: [WALEntry] = []
        var hardState: StoredHardState?
        var appliedIndex: UInt64 = 0
    }

    func testRecoveryAfterACrashReturnsAStateNoOlderThanTheLastSync() throws {
        var random = SplitMix(seed: 2024)
        var options = WALOptions()
        options.segmentSizeBytes = 3_000
        options.writeBufferBytes = 700
        for trial in 0..<20 {
            let directory = makeTemporaryDirectory(self)
            var states = [ModelState()]
            var lastSyncedState = 0
            var durable = (segment: "", bytes: 0)
            do {
                let (log, _) = try XCTUnwrap(openLog(directory, options: options))
                for _ in 0..<Int(random.next() % 60) {
                    var state = states.last!
                    // Every record is recovered on its own: a crash may keep a prefix of a batch.
                    let intermediate = try performRandomOperation(log, &state, &random)
                    states += intermediate
                    states.append(state)
                    if random.next() % 4 == 0 {
                        try log.sync()
                        lastSyncedState = states.count - 1
                        let last = segmentFiles(directory).last!
                        durable = (last, fileSize(directory + "/" + last))
                    }
                }
                // The crash: the log is dropped without close(), so its buffer never reaches the disk.
            }
            let lastSegment = segmentFiles(directory).last!
            let path = directory + "/" + lastSegment
            let durableBytes = lastSegment == durable.segment ? durable.bytes : 0
            let size = fileSize(path)
            let cut = durableBytes + Int(random.next() % UInt64(size - durableBytes + 1))
            rewriteTail(path, keeping: cut)
            let (log, recovered) = try XCTUnwrap(openLog(directory, options: options), "trial \(trial)")
            let recoveredState = ModelState(
                entries: recovered.entries, hardState: recovered.hardState, appliedIndex: recovered.appliedIndex)
            XCTAssertTrue(
                states[lastSyncedState...].contains(recoveredState),
                "trial \(trial): recovered a state that is not at or after the last sync (cut at \(cut) of \(size))")
            try log.close()
        }
    }

    /// Performs one operation on `log` and on `state`; returns the states between its records, if any.
    private func performRandomOperation(_ log: WriteAheadLog, _ state: inout ModelState, _ random: inout SplitMix)
        throws -> [ModelState]
    {
        let nextIndex = (state.entries.last?.index ?? 0) + 1
        switch random.next() % 10 {
        case 0...5:
            let batch = makeEntries(
                from: nextIndex, count: Int(1 + random.next() % 8), term: 1 + random.next() % 3,
                payloadBytes: Int(random.next() % 300))
            try log.append(batch)
            let prefixes = (1..<batch.count).map { count in
                ModelState(
                    entries: state.entries + batch.prefix(count), hardState: state.hardState,
                    appliedIndex: state.appliedIndex)
            }
            state.entries += batch
            return prefixes
        case 6 where !state.entries.isEmpty:
            let from = 1 + random.next() % UInt64(state.entries.count)
            try log.truncate(from: from)
            state.entries.removeLast(state.entries.count - Int(from) + 1)
        case 7:
            let hardState = StoredHardState(
                term: random.next() % 9, votedFor: random.next() % 2 == 0 ? nil : "node-\(random.next() % 5)",
                commit: random.next() % 50)
            try log.saveHardState(hardState)
            state.hardState = hardState
        default:
            let applied = random.next() % 50
            try log.saveAppliedIndex(applied)
            state.appliedIndex = applied
        }
        return []
    }
}

/// SplitMix64, so that a failing trial reproduces.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
