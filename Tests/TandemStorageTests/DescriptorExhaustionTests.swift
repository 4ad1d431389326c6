import Foundation
import XCTest

@testable import TandemStorage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Running out of file descriptors is not a disk failure: a segment roll must neither kill the node nor lose data.
final class DescriptorExhaustionTests: XCTestCase {
    /// Lowers RLIMIT_NOFILE to just above the highest descriptor open now, fills every free slot with /dev/null,
    /// runs `body`, then closes the fillers and restores the limit.
    private func withDescriptorTableFull(_ body: () throws -> Void) throws {
        var original = rlimit()
        XCTAssertEqual(getrlimit(rlimitResource, &original), 0)
        var highest: Int32 = 2
        for candidate in Int32(3)..<Int32(4_096) where fcntl(candidate, F_GETFD) != -1 { highest = candidate }
        var lowered = original
        lowered.rlim_cur = rlim_t(highest + 1 + 16)
        XCTAssertEqual(setrlimit(rlimitResource, &lowered), 0)
        var fillers: [Int32] = []
        defer {
            for filler in fillers { close(filler) }
            var restore = original
            setrlimit(rlimitResource, &restore)
        }
        while true {
            let descriptor = open("/dev/null", O_RDONLY | O_CLOEXEC)
            if descriptor < 0 {
                XCTAssertTrue(errno == EMFILE || errno == ENFILE, "filled until EMFILE, got errno \(errno)")
                break
            }
            fillers.append(descriptor)
        }
        XCTAssertGreaterThan(fillers.count, 0)
        XCTAssertEqual(open("/dev/null", O_RDONLY | O_CLOEXEC), -1, "the descriptor table is full")
        try body()
    }

    private var rlimitResource: Int32 {
        #if canImport(Glibc)
            return Int32(RLIMIT_NOFILE.rawValue)
        #else
            return RLIMIT_NOFILE
        #endif
    }

    func testSegmentsStillRollWhenTheDescriptorTableIsFull() throws {
        let directory = makeTemporaryDirectory(self)
        let options = WALOptions(segmentSizeBytes: 2_048)
        let (log, _) = try XCTUnwrap(openLog(directory, options: options))
        try log.saveHardState(StoredHardState(term: 1, votedFor: "a", commit: 0))
        try log.append(makeEntries(from: 1, count: 5, payloadBytes: 100))
        try log.sync()
        let segmentsBefore = segmentFiles(directory).count
        try withDescriptorTableFull {
            for batch in 0..<10 {
                try log.append(makeEntries(from: UInt64(6 + batch * 5), count: 5, payloadBytes: 100))
                try log.sync()
            }
        }
        XCTAssertGreaterThan(segmentFiles(directory).count, segmentsBefore + 2, "the rolls happened")
        try log.close()
        let (reopened, recovered) = try XCTUnwrap(openLog(directory, options: options))
        XCTAssertEqual(recovered.entries.map(\.index), Array(1...55))
        XCTAssertEqual(recovered.hardState, StoredHardState(term: 1, votedFor: "a", commit: 0))
        XCTAssertNil(recovered.tornTail)
        try reopened.close()
    }

    func testWithoutASpareDescriptorTheSegmentGrowsPastItsSizeThenRefusesWithoutFailingAndRollsLater() throws {
        let directory = makeTemporaryDirectory(self)
        let options = WALOptions(segmentSizeBytes: 4_096)
        let (log, _) = try XCTUnwrap(openLog(directory, options: options))
        try log.append(makeEntries(from: 1, count: 5, payloadBytes: 100))
        try log.sync()
        // Something else in the process took the descriptor the log keeps in reserve.
        log.releaseReservedDescriptor()
        var next: UInt64 = 6
        var refusal: WALError?
        try withDescriptorTableFull {
            for _ in 0..<100 where refusal == nil {
                do {
                    try log.append(makeEntries(from: next, count: 5, payloadBytes: 100))
                    try log.sync()
                    next += 5
                } catch let error as WALError {
                    refusal = error
                }
            }
        }
        // Listing the directory needs a descriptor, so it is checked now (no append happened since).
        XCTAssertEqual(segmentFiles(directory).count, 1, "no descriptor, so no roll")
        let segment = directory + "/" + segmentFiles(directory)[0]
        XCTAssertGreaterThan(fileSize(segment), 4_096, "the segment grew past its nominal size instead")
        XCTAssertLessThanOrEqual(fileSize(segment), 2 * 4_096, "but not past its overflow bound")
        guard case .descriptorsExhausted(_, _, let code)? = refusal else {
            return XCTFail("expected descriptorsExhausted at the overflow bound, got \(String(describing: refusal))")
        }
        XCTAssertEqual(code, EMFILE)
        XCTAssertEqual(refusal?.isFatal, false)
        XCTAssertEqual(log.nextIndex, next, "nothing of the refused batch was appended")
        // Descriptors are back: the same batch is accepted and the segment rolls.
        try log.append(makeEntries(from: next, count: 5, payloadBytes: 100))
        try log.sync()
        XCTAssertEqual(segmentFiles(directory).count, 2)
        try log.close()
        let (reopened, recovered) = try XCTUnwrap(openLog(directory, options: options))
        XCTAssertEqual(recovered.entries.map(\.index), Array(1...(next + 4)))
        XCTAssertNil(recovered.tornTail)
        try reopened.close()
    }
}
