import TandemLinearizability
import XCTest

/// The checker against long histories that a real sequential store produced, and against mutations of them.
final class GeneratedHistoryTests: XCTestCase {
    func testHistoriesProducedByASequentialStorePass() {
        for seed: UInt64 in 1...20 {
            let history = generateTrueHistory(seed: seed, operationCount: 300, keys: ["a", "b", "c"])
            XCTAssertEqual(checkLinearizability(history), .linearizable, "seed \(seed)")
        }
    }

    func testALongHotKeyHistoryPassesQuickly() {
        let history = generateTrueHistory(seed: 99, operationCount: 3_000, keys: ["hot", "warm"], jitterMs: 60)
        let startNs = DispatchTime.now().uptimeNanoseconds
        XCTAssertEqual(checkLinearizability(history), .linearizable)
        let elapsedMs = (DispatchTime.now().uptimeNanoseconds - startNs) / 1_000_000
        print("checked \(history.count) operations on 2 keys (4 partitions) in \(elapsedMs) ms")
    }

    func testAViolationAtTheEndOfALongHistoryWithTimeoutsIsFoundQuickly() {
        // About 6 operations in flight at any time on one hot key, 5% of writes timed out: the search must
        // explore everything before the last read to prove it wrong, which is the checker's worst case.
        var history = generateTrueHistory(seed: 3, operationCount: 600, keys: ["hot"], jitterMs: 25)
        let lastRead = history.indices.last { isCompletedGet(history[$0]) }!
        history[lastRead].output = .value("never-written")
        let startNs = DispatchTime.now().uptimeNanoseconds
        guard case .notLinearizable = checkLinearizability(history, timeoutMs: 20_000) else {
            return XCTFail("the violation was not found")
        }
        let elapsedMs = (DispatchTime.now().uptimeNanoseconds - startNs) / 1_000_000
        print("refuted a 600-operation hot-key history (violation at its end) in \(elapsedMs) ms")
    }

    func testAReadOfANeverWrittenValueMakesATrueHistoryFail() {
        for seed: UInt64 in 1...20 {
            var history = generateTrueHistory(seed: seed, operationCount: 300, keys: ["a", "b", "c"])
            guard let index = history.indices.first(where: { isCompletedGet(history[$0]) && $0 > 150 }) else {
                XCTFail("seed \(seed) has no read to mutate")
                continue
            }
            history[index].output = .value("never-written")
            guard case .notLinearizable(_, let explanation) = checkLinearizability(history) else {
                XCTFail("seed \(seed): mutated read at #\(index) passed")
                continue
            }
            XCTAssertTrue(explanation.contains("never-written"), explanation)
        }
    }

    func testRemovingAnAcknowledgedWriteThatWasReadMakesATrueHistoryFail() {
        var mutated = 0
        for seed: UInt64 in 1...20 {
            var history = generateTrueHistory(seed: seed, operationCount: 300, keys: ["a", "b", "c"])
            // Find a completed put whose unique value some completed read observed, then lose the put.
            let observed = Set(
                history.compactMap { operation -> String? in
                    guard case .get = operation.input, case .value(let value)? = operation.output else { return nil }
                    return value
                })
            guard
                let index = history.indices.first(where: { index in
                    guard case .put(_, let value) = history[index].input else { return false }
                    return history[index].isCompleted && observed.contains(value)
                })
            else { continue }
            history.remove(at: index)
            XCTAssertNotEqual(checkLinearizability(history), .linearizable, "seed \(seed)")
            mutated += 1
        }
        XCTAssertGreaterThan(mutated, 15)
    }

    func testADoubledIncrementMakesATrueHistoryFail() {
        var mutated = 0
        for seed: UInt64 in 1...20 {
            var history = generateTrueHistory(seed: seed, operationCount: 300, keys: ["a", "b", "c"])
            // An acknowledged increment that returned n is altered to return n + 1, as if applied twice.
            guard
                let index = history.indices.first(where: { index in
                    if case .increment = history[index].input { return history[index].isCompleted }
                    return false
                }), case .counter(let value)? = history[index].output
            else { continue }
            history[index].output = .counter(value + 1)
            XCTAssertNotEqual(checkLinearizability(history), .linearizable, "seed \(seed)")
            mutated += 1
        }
        XCTAssertGreaterThan(mutated, 15)
    }

    private func isCompletedGet(_ operation: KVOperation) -> Bool {
        if case .get = operation.input { return operation.isCompleted }
        return false
    }
}
