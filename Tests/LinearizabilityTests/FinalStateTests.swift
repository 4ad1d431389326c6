import TandemLinearizability
import XCTest

/// "No acknowledged write lost": the final state of a run judged against its history.
final class FinalStateTests: XCTestCase {
    let history = [
        put("kept", "1", 0, 10), put("overwritten", "old", 0, 10), put("overwritten", "new", 20, 30),
        append("log", "a", returning: "a", 0, 10), append("log", "b", returning: "ab", 20, 30),
        delete("gone", existed: false, 0, 10), increment("hits", returning: 1, 0, 10),
        increment("hits", returning: 2, 20, 30), unknown(.put(key: "maybe", value: "m"), 40),
    ]

    func testAFinalStateThatKeepsEveryAcknowledgedWriteIsAccepted() {
        let kv = ["kept": "1", "overwritten": "new", "log": "ab"]
        XCTAssertEqual(lostAcknowledgedWrites(history, kv: kv, counters: ["hits": 2]), [])
        XCTAssertEqual(checkFinalState(history, kv: kv, counters: ["hits": 2]), .linearizable)
        // The unknown-outcome write may or may not be there.
        let withMaybe = kv.merging(["maybe": "m"]) { $1 }
        XCTAssertEqual(checkFinalState(history, kv: withMaybe, counters: ["hits": 2]), .linearizable)
    }

    func testALostPutIsNamed() {
        let lost = lostAcknowledgedWrites(history, kv: ["overwritten": "new", "log": "ab"], counters: ["hits": 2])
        XCTAssertEqual(lost.map(\.historyIndex), [0])
        XCTAssertTrue(lost[0].reason.contains("absent"), lost[0].reason)
        XCTAssertEqual(
            checkFinalState(history, kv: ["overwritten": "new", "log": "ab"], counters: ["hits": 2]).isViolation,
            true)
    }

    func testAnOverwrittenValueComingBackIsALostWrite() {
        let kv = ["kept": "1", "overwritten": "old", "log": "ab"]
        XCTAssertEqual(lostAcknowledgedWrites(history, kv: kv, counters: ["hits": 2]).map(\.historyIndex), [2])
    }

    func testALostAppendAndALostIncrementAreNamed() {
        let kv = ["kept": "1", "overwritten": "new", "log": "a"]
        let lost = lostAcknowledgedWrites(history, kv: kv, counters: ["hits": 1])
        XCTAssertEqual(lost.map(\.historyIndex), [4, 7])
        XCTAssertEqual(checkFinalState(history, kv: kv, counters: ["hits": 2]).isViolation, true)
    }

    func testAWriteThatACompetingWriteMayHaveReplacedIsNotBlamed() {
        // Two concurrent puts: either may win, so neither is lost when the other's value remains.
        let racing = [put("x", "a", client: 1, 0, 100), put("x", "b", client: 2, 0, 100)]
        XCTAssertEqual(lostAcknowledgedWrites(racing, kv: ["x": "a"], counters: [:]), [])
        XCTAssertEqual(lostAcknowledgedWrites(racing, kv: ["x": "b"], counters: [:]), [])
        XCTAssertEqual(checkFinalState(racing, kv: ["x": "c"], counters: [:]).isViolation, true)
    }

    func testAResurrectedDeleteIsALostWrite() {
        let history = [put("x", "1", 0, 10), delete("x", existed: true, 20, 30)]
        XCTAssertEqual(lostAcknowledgedWrites(history, kv: ["x": "1"], counters: [:]).map(\.historyIndex), [1])
    }

    func testIncrementsAcknowledgedWithoutValueAreCounted() {
        let ok = { (callMs: Int64) in
            KVOperation(
                clientID: 0, input: .increment(counter: "c"), output: .ok, callTimeMs: callMs,
                returnTimeMs: callMs + 5)
        }
        let history = [ok(0), ok(10), ok(20)]
        XCTAssertEqual(lostAcknowledgedWrites(history, kv: [:], counters: ["c": 3]), [])
        XCTAssertEqual(lostAcknowledgedWrites(history, kv: [:], counters: ["c": 2]).count, 3)
    }

    func testGeneratedRunsKeepEveryAcknowledgedWrite() {
        for seed: UInt64 in 1...5 {
            let history = generateTrueHistory(seed: seed, operationCount: 200, keys: ["a", "b"], unknownPercent: 0)
            let (kv, counters) = replaySequentially(history)
            XCTAssertEqual(lostAcknowledgedWrites(history, kv: kv, counters: counters), [], "seed \(seed)")
            XCTAssertEqual(checkFinalState(history, kv: kv, counters: counters), .linearizable, "seed \(seed)")
        }
    }

    /// The final state of a generated history without unknown outcomes: replay writes in instant order, which
    /// is the midpoint order the generator used (call and return are jittered around the instant).
    private func replaySequentially(_ history: [KVOperation]) -> ([String: String], [String: Int64]) {
        var kv: [String: String] = [:]
        var counters: [String: Int64] = [:]
        for operation in history {
            switch (operation.input, operation.output) {
            case (.put(let key, let value), _): kv[key] = value
            case (.append(let key, _), .value(let newValue)?): kv[key] = newValue
            case (.delete(let key), _): kv[key] = nil
            case (.increment(let name), .counter(let value)?): counters[name] = value
            default: break
            }
        }
        return (kv, counters)
    }
}

extension CheckResult {
    var isViolation: Bool {
        if case .notLinearizable = self { return true }
        return false
    }
}
