import Foundation
import XCTest

@testable import TandemNode

/// What a node writes so that its next start knows how this run ended and never reuses an id.
final class RestartRecordTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "tandem-node-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testEveryRunGetsAHigherIncarnationWhateverTheWallClockSays() throws {
        let first = try NodeIncarnation.next(directory: directory)
        let second = try NodeIncarnation.next(directory: directory)
        let third = try NodeIncarnation.next(directory: directory)
        XCTAssertEqual([second, third], [first + 1, first + 2])
        // Ids of different runs live in disjoint ranges: the sequence part never reaches the next incarnation.
        XCTAssertLessThan(first << NodeIncarnation.sequenceBits, second << NodeIncarnation.sequenceBits)
        XCTAssertGreaterThan(first << NodeIncarnation.sequenceBits, UInt64(1_800_000_000_000) * 1000, "above old ids")
        let mode = try FileManager.default.attributesOfItem(atPath: directory + "/incarnation")[.posixPermissions]
        XCTAssertEqual(mode as? Int, 0o600)
    }

    func testARunThatNeverStoppedGracefullyIsSeenAsACrash() throws {
        let firstStart = try ApplyCheckpoint.begin(directory: directory)
        XCTAssertTrue(firstStart.cleanStop, "a first start has nothing to redeliver")
        XCTAssertNil(firstStart.checkpoint)
        let afterCrash = try ApplyCheckpoint.begin(directory: directory)  // No finish: the process died.
        XCTAssertFalse(afterCrash.cleanStop)
    }

    func testAGracefulStopRecordsTheExactAppliedIndexAndPayload() throws {
        _ = try ApplyCheckpoint.begin(directory: directory)
        try ApplyCheckpoint.finish(ApplyCheckpoint(appliedIndex: 42, payload: [1, 2, 3]), directory: directory)
        let next = try ApplyCheckpoint.begin(directory: directory)
        XCTAssertTrue(next.cleanStop)
        XCTAssertEqual(next.checkpoint, ApplyCheckpoint(appliedIndex: 42, payload: [1, 2, 3]))
        let again = try ApplyCheckpoint.begin(directory: directory)
        XCTAssertFalse(again.cleanStop, "the marker is back once a run starts")
        XCTAssertEqual(again.checkpoint?.appliedIndex, 42, "the last checkpoint's payload stays readable")
    }

    func testADamagedCheckpointIsIgnoredNotTrusted() throws {
        _ = try ApplyCheckpoint.begin(directory: directory)
        try ApplyCheckpoint.finish(ApplyCheckpoint(appliedIndex: 7, payload: Array("state".utf8)), directory: directory)
        let path = directory + "/apply-checkpoint"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[10] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let next = try ApplyCheckpoint.begin(directory: directory)
        XCTAssertNil(next.checkpoint, "a checkpoint that fails its CRC is not used")
    }
}
