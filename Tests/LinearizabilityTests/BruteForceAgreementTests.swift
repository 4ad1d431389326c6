import TandemLinearizability
import XCTest

/// The checker's pruning (memo domination, hidden values, interchangeable unknown operations) must never change a
/// verdict. These tests compare it with a brute-force search over every order on thousands of small random
/// histories, half of which are not linearizable.
final class BruteForceAgreementTests: XCTestCase {
    func testTheCheckerAgreesWithBruteForceOnSmallRandomKeyHistories() {
        var random = SeededGenerator(seed: 42)
        var verdicts = [true: 0, false: 0]
        for round in 0..<2_000 {
            let history = randomKeyHistory(operationCount: Int.random(in: 1...8, using: &random), random: &random)
            let expected = bruteForceLinearizable(history)
            let result = checkLinearizability(history)
            XCTAssertNotEqual(result, .timedOut)
            XCTAssertEqual(result == .linearizable, expected, "round \(round): \(history)")
            verdicts[expected, default: 0] += 1
        }
        XCTAssertGreaterThan(verdicts[true]!, 500)
        XCTAssertGreaterThan(verdicts[false]!, 500)
    }

    func testTheCheckerAgreesWithBruteForceWhenManyUnknownWritesAreNeverRead() {
        // Unique put values and frequent timeouts: most unknown writes are hidden, and deletes interchangeable.
        var random = SeededGenerator(seed: 99)
        var verdicts = [true: 0, false: 0]
        for round in 0..<2_000 {
            let history = randomHiddenWriteHistory(
                operationCount: Int.random(in: 2...8, using: &random), random: &random)
            let expected = bruteForceLinearizable(history)
            XCTAssertEqual(checkLinearizability(history) == .linearizable, expected, "round \(round): \(history)")
            verdicts[expected, default: 0] += 1
        }
        XCTAssertGreaterThan(verdicts[true]!, 500)
        XCTAssertGreaterThan(verdicts[false]!, 500)
    }

    func testTheCheckerAgreesWithBruteForceOnSmallRandomCounterHistories() {
        var random = SeededGenerator(seed: 7)
        for round in 0..<2_000 {
            let history = randomCounterHistory(operationCount: Int.random(in: 1...7, using: &random), random: &random)
            XCTAssertEqual(
                checkLinearizability(history) == .linearizable, bruteForceLinearizable(history),
                "round \(round): \(history)")
        }
    }

    private func randomTimes(_ random: inout SeededGenerator) -> (Int64, Int64) {
        let callMs = Int64.random(in: 0...20, using: &random)
        return (callMs, callMs + Int64.random(in: 0...8, using: &random))
    }

    private func randomKeyHistory(operationCount: Int, random: inout SeededGenerator) -> [KVOperation] {
        let values = ["a", "b", "ab", "ba"]
        return (0..<operationCount).map { _ in
            let (callMs, returnMs) = randomTimes(&random)
            let value = values.randomElement(using: &random)!
            let maybeValue: String? = Bool.random(using: &random) ? nil : values.randomElement(using: &random)!
            let (input, output): (KVInput, KVOutput)
            switch Int.random(in: 0..<5, using: &random) {
            case 0: (input, output) = (.put(key: "k", value: value), .ok)
            case 1: (input, output) = (.get(key: "k"), .value(maybeValue))
            case 2:
                (input, output) = (
                    .append(key: "k", suffix: ["a", "b"].randomElement(using: &random)!),
                    Bool.random(using: &random) ? .ok : .value(value)
                )
            default:
                (input, output) = (
                    .delete(key: "k"),
                    [.ok, .deleted(existed: true), .deleted(existed: false)]
                        .randomElement(using: &random)!
                )
            }
            let isUnknown = !isReadInput(input) && Int.random(in: 0..<3, using: &random) == 0
            return KVOperation(
                clientID: 0, input: input, output: isUnknown ? nil : output, callTimeMs: callMs,
                returnTimeMs: isUnknown ? nil : returnMs)
        }
    }

    private func randomHiddenWriteHistory(operationCount: Int, random: inout SeededGenerator) -> [KVOperation] {
        var written = ["p0"]
        return (0..<operationCount).map { step in
            let (callMs, returnMs) = randomTimes(&random)
            let isUnknown = Int.random(in: 0..<2, using: &random) == 0
            let input: KVInput
            let output: KVOutput
            switch Int.random(in: 0..<6, using: &random) {
            case 0, 1:
                written.append("p\(step + 1)")
                (input, output) = (.put(key: "k", value: written.last!), .ok)
            case 2:
                let seen: String? = Bool.random(using: &random) ? nil : written.randomElement(using: &random)!
                return get("k", seen, callMs, returnMs)
            case 3:
                (input, output) = (.append(key: "k", suffix: "+\(step)"), .ok)
            default:
                (input, output) = (
                    .delete(key: "k"),
                    [.ok, .deleted(existed: true), .deleted(existed: false)]
                        .randomElement(using: &random)!
                )
            }
            return KVOperation(
                clientID: 0, input: input, output: isUnknown ? nil : output, callTimeMs: callMs,
                returnTimeMs: isUnknown ? nil : returnMs)
        }
    }

    private func randomCounterHistory(operationCount: Int, random: inout SeededGenerator) -> [KVOperation] {
        (0..<operationCount).map { _ in
            let (callMs, returnMs) = randomTimes(&random)
            let value = Int64.random(in: 0...3, using: &random)
            if Bool.random(using: &random) {
                return readCounter("c", value, callMs, returnMs)
            }
            let output: KVOutput? = [.counter(value), .ok, nil].randomElement(using: &random)!
            return KVOperation(
                clientID: 0, input: .increment(counter: "c"), output: output, callTimeMs: callMs,
                returnTimeMs: output == nil ? nil : returnMs)
        }
    }
}

/// Tries every order of the operations that respects real time, leaving out any unknown-outcome operations.
func bruteForceLinearizable(_ history: [KVOperation]) -> Bool {
    var placed = [Bool](repeating: false, count: history.count)
    func completedLeft() -> Bool {
        history.indices.contains { !placed[$0] && history[$0].output != nil }
    }
    func search(_ value: String?, _ counter: Int64) -> Bool {
        if !completedLeft() { return true }
        // An operation may go next unless a completed operation still unplaced returned before it was called.
        let earliestReturnMs = history.indices.filter { !placed[$0] && history[$0].output != nil }
            .map { history[$0].returnTimeMs! }.min()!
        for index in history.indices where !placed[index] && history[index].callTimeMs <= earliestReturnMs {
            guard let (nextValue, nextCounter) = referenceStep(history[index], value, counter) else { continue }
            placed[index] = true
            if search(nextValue, nextCounter) { return true }
            placed[index] = false
        }
        return false
    }
    return search(nil, 0)
}

/// The key-value model written out plainly, independent of the checker's.
private func referenceStep(_ operation: KVOperation, _ value: String?, _ counter: Int64) -> (String?, Int64)? {
    let output = operation.output
    switch operation.input {
    case .put(_, let newValue): return (newValue, counter)
    case .get: return output == .value(value) || output == nil ? (value, counter) : nil
    case .append(_, let suffix):
        let newValue = (value ?? "") + suffix
        if output == nil || output == .ok || output == .value(newValue) { return (newValue, counter) }
        return nil
    case .delete:
        if output == nil || output == .ok || output == .deleted(existed: value != nil) { return (nil, counter) }
        return nil
    case .increment:
        if output == nil || output == .ok || output == .counter(counter + 1) { return (value, counter + 1) }
        return nil
    case .readCounter: return output == .counter(counter) ? (value, counter) : nil
    }
}
