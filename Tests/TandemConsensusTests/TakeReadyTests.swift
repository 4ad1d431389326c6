import TandemConsensus
import XCTest

/// `takeReady` is `hasReady` and `ready()` in one mutating call: nil exactly when there is nothing to carry out, and
/// otherwise the same batch `ready()` would give.
final class TakeReadyTests: XCTestCase {
    func testTakeReadyGivesWhatReadyGivesAndNilWhenNothingIsPending() {
        let n1 = NodeID("n1")
        var viaTake = RaftNode(config: RaftConfig(id: n1, peers: [n1]), recovered: RecoveredState(), seed: 7)
        var viaReady = viaTake
        var batches = 0
        for t in stride(from: Int64(0), through: 3000, by: 10) {
            viaTake.tick(nowMs: t)
            viaReady.tick(nowMs: t)
            while true {
                let expected = viaReady.hasReady ? viaReady.ready() : nil
                let taken = viaTake.takeReady()
                XCTAssertEqual(taken == nil, expected == nil, "at \(t) ms")
                guard let taken, let expected else { break }
                XCTAssertEqual(taken.hardState, expected.hardState)
                XCTAssertEqual(taken.entriesToPersist, expected.entriesToPersist)
                XCTAssertEqual(taken.committedEntries, expected.committedEntries)
                viaTake.advance(taken)
                viaReady.advance(expected)
                batches += 1
            }
            XCTAssertFalse(viaTake.hasReady)
            XCTAssertNil(viaTake.takeReady())
        }
        XCTAssertEqual(viaTake.status.role, .leader, "a single node elects itself")
        XCTAssertGreaterThan(batches, 0)
    }
}
