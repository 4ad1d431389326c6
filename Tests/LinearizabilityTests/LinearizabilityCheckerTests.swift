import XCTest

@testable import TandemLinearizability

/// The checker's verdicts on small histories whose answer is known by hand.
final class LinearizabilityCheckerTests: XCTestCase {
    func assertLinearizable(_ history: [KVOperation], file: StaticString = #filePath, line: UInt = #line) {
        let result = checkLinearizability(history)
        XCTAssertEqual(result, .linearizable, file: file, line: line)
    }

    /// Asserts a violation on `key` and returns its explanation.
    @discardableResult
    func assertViolation(_ history: [KVOperation], key: String, file: StaticString = #filePath, line: UInt = #line)
        -> String
    {
        guard case .notLinearizable(let reportedKey, let explanation) = checkLinearizability(history) else {
            XCTFail("expected a violation on \(key)", file: file, line: line)
            return ""
        }
        XCTAssertEqual(reportedKey, key, file: file, line: line)
        XCTAssertFalse(explanation.isEmpty, file: file, line: line)
        return explanation
    }

    func testEmptyHistoryIsLinearizable() {
        assertLinearizable([])
    }

    func testSequentialWritesAndReadsAreLinearizable() {
        assertLinearizable([
            get("x", nil, 0, 5), put("x", "1", 10, 20), get("x", "1", 30, 40),
            append("x", "2", returning: "12", 50, 60),
            get("x", "12", 70, 80), delete("x", existed: true, 90, 95), get("x", nil, 100, 110),
            delete("x", existed: false, 120, 130),
        ])
    }

    func testStaleReadAfterCompletedWriteIsNotLinearizable() {
        let explanation = assertViolation(
            [put("x", "1", client: 1, 0, 10), put("x", "2", client: 1, 20, 30), get("x", "1", client: 2, 40, 50)],
            key: "x")
        XCTAssertTrue(explanation.contains("get(\"x\")"), explanation)
        XCTAssertTrue(explanation.contains("#2"), explanation)
    }

    func testLostAcknowledgedWriteIsNotLinearizable() {
        // The put was acknowledged, then a later read finds the key absent: the write was lost.
        assertViolation([put("x", "1", client: 1, 0, 10), get("x", nil, client: 2, 20, 30)], key: "x")
    }

    func testReadOfAValueNeverWrittenIsNotLinearizable() {
        assertViolation([put("x", "1", 0, 10), get("x", "ghost", 5, 15)], key: "x")
    }

    func testConcurrentWritesMayOrderEitherWay() {
        // Two overlapping puts: readers may see either order, as long as they agree over time.
        let writes = [put("x", "a", client: 1, 0, 100), put("x", "b", client: 2, 0, 100)]
        assertLinearizable(writes + [get("x", "a", client: 3, 200, 210)])
        assertLinearizable(writes + [get("x", "b", client: 3, 200, 210)])
        assertLinearizable(writes + [get("x", "a", client: 3, 10, 20), get("x", "b", client: 3, 30, 40)])
    }

    func testReadsMayNotGoBackInTimeBetweenConcurrentWrites() {
        // Having seen b then a, a third read cannot see b again: each put happens once.
        assertViolation(
            [
                put("x", "a", client: 1, 0, 100), put("x", "b", client: 2, 0, 100), get("x", "b", client: 3, 10, 20),
                get("x", "a", client: 3, 30, 40), get("x", "b", client: 3, 50, 60),
            ],
            key: "x")
    }

    func testReadConcurrentWithWriteMaySeeOldOrNewValue() {
        let base = [put("x", "old", 0, 10), put("x", "new", client: 1, 20, 60)]
        assertLinearizable(base + [get("x", "old", client: 2, 30, 40)])
        assertLinearizable(base + [get("x", "new", client: 2, 30, 40)])
    }

    func testOperationsTouchingInOneMillisecondAreConcurrent() {
        // The read is called in the millisecond the put returns: it may still order before it.
        assertLinearizable([put("x", "1", 0, 10), get("x", nil, 10, 12)])
        assertViolation([put("x", "1", 0, 10), get("x", nil, 11, 12)], key: "x")
    }

    func testUnknownOutcomeWriteMayBeSeen() {
        assertLinearizable([unknown(.put(key: "x", value: "1"), 0), get("x", "1", client: 2, 500, 510)])
    }

    func testUnknownOutcomeWriteMayNeverTakeEffect() {
        assertLinearizable([unknown(.put(key: "x", value: "1"), 0), get("x", nil, client: 2, 500, 510)])
    }

    func testUnknownOutcomeWriteMayTakeEffectLongAfterItsClientGaveUp() {
        // The client gave up at 50 ms (504), yet the write lands between the two reads much later.
        let timedOut = KVOperation(
            clientID: 1, input: .put(key: "x", value: "1"), output: nil, callTimeMs: 0,
            returnTimeMs: 50)
        assertLinearizable([timedOut, get("x", nil, client: 2, 500, 510), get("x", "1", client: 2, 600, 610)])
    }

    func testUnknownOutcomeWriteTakesEffectAtMostOnce() {
        assertViolation(
            [
                unknown(.put(key: "x", value: "1"), 0), get("x", "1", client: 2, 100, 110), put("x", "2", 120, 130),
                get("x", "1", client: 2, 140, 150),
            ],
            key: "x")
    }

    func testUnknownOutcomeWriteCannotTakeEffectBeforeItsCall() {
        assertViolation([get("x", "1", client: 2, 0, 10), unknown(.put(key: "x", value: "1"), 20)], key: "x")
    }

    func testUnknownOutcomeAppendIsAppliedOnceOrNever() {
        let timedOutAppend = unknown(.append(key: "x", suffix: "b"), client: 1, 20)
        assertLinearizable([put("x", "a", 0, 10), timedOutAppend, get("x", "ab", 100, 110)])
        assertLinearizable([put("x", "a", 0, 10), timedOutAppend, get("x", "a", 100, 110)])
        assertViolation([put("x", "a", 0, 10), timedOutAppend, get("x", "abb", 100, 110)], key: "x")
    }

    func testDoubleAppliedAppendIsNotLinearizable() {
        // A non-idempotent append applied twice (the failure Tandem's Idempotency-Key prevents) shows in the value.
        assertViolation([append("x", "a", returning: "a", 0, 10), get("x", "aa", 20, 30)], key: "x")
    }

    func testDeleteReportingAbsenceOfAnAcknowledgedKeyIsNotLinearizable() {
        assertViolation([put("x", "1", 0, 10), delete("x", existed: false, 20, 30)], key: "x")
    }

    func testCountersIncrementAndRead() {
        assertLinearizable([
            increment("c", returning: 1, client: 1, 0, 50), increment("c", returning: 2, client: 2, 0, 50),
            readCounter("c", 2, 60, 70), readCounter("d", 0, 60, 70),
        ])
        assertViolation(
            [increment("c", returning: 1, 0, 10), increment("c", returning: 1, 20, 30)], key: "counter:c")
    }

    func testCountersAndKeysAreSeparateNamespaces() {
        assertLinearizable([
            put("c", "1", 0, 10), readCounter("c", 0, 20, 30), increment("c", returning: 1, 40, 50),
            get("c", "1", 60, 70),
        ])
    }

    func testKeysAreCheckedIndependently() {
        let explanation = assertViolation(
            [put("a", "1", 0, 10), get("a", "1", 20, 30), put("b", "1", 0, 10), get("b", "2", 20, 30)], key: "b")
        XCTAssertTrue(explanation.contains("\"b\""), explanation)
    }

    func testReadWithUnknownOutputConstrainsNothing() {
        let lostRead = KVOperation(clientID: 1, input: .get(key: "x"), output: nil, callTimeMs: 0, returnTimeMs: nil)
        assertLinearizable([lostRead, put("x", "1", 0, 10)])
    }

    func testExhaustedStepBudgetIsReportedAsTimedOutNeverAsPass() {
        let history = generateTrueHistory(seed: 7, operationCount: 400, keys: ["x"])
        XCTAssertEqual(checkLinearizability(history, maxSteps: 10), .timedOut)
        XCTAssertEqual(checkLinearizability(history, timeoutMs: 0, maxSteps: 100_000_000), .timedOut)
    }
}

/// Unknown-outcome writes pile up during failovers; the checker must stay fast and exact with many of them.
final class UnknownOutcomeScalingTests: XCTestCase {
    func testAnUnreadUnknownPutStillMakesTheKeyExistForADelete() {
        XCTAssertEqual(
            checkLinearizability([unknown(.put(key: "x", value: "ghost"), 0), delete("x", existed: true, 10, 20)]),
            .linearizable)
        XCTAssertNotEqual(
            checkLinearizability([unknown(.put(key: "x", value: "ghost"), 30), delete("x", existed: true, 10, 20)]),
            .linearizable)
    }

    func testAnUnreadUnknownAppendHidesTheValueFromLaterReads() {
        // If the append happened the value became "aq", which no read saw; if it did not, "a" is still there.
        // Either way "ab" was never readable.
        let base = [put("x", "a", 0, 10), unknown(.append(key: "x", suffix: "q"), 20)]
        XCTAssertEqual(checkLinearizability(base + [get("x", "a", 30, 40)]), .linearizable)
        XCTAssertNotEqual(checkLinearizability(base + [get("x", "ab", 30, 40)]), .linearizable)
    }

    func testHundredsOfUnknownWritesDoNotStopAViolationFromBeingFound() {
        // 200 timed-out puts and deletes (a long failover), then a read of a value nobody wrote.
        var history: [KVOperation] = [put("x", "start", 0, 5)]
        for index in 0..<200 {
            let input: KVInput = index % 3 == 0 ? .delete(key: "x") : .put(key: "x", value: "lost-\(index)")
            history.append(unknown(input, client: index, Int64(10 + index)))
        }
        history.append(get("x", "lost-1", 300, 310))
        XCTAssertEqual(checkLinearizability(history), .linearizable)
        history.append(get("x", "never", 320, 330))
        guard case .notLinearizable = checkLinearizability(history, timeoutMs: 5_000) else {
            return XCTFail("the violation was not found")
        }
    }

    func testManyUnknownIncrementsAreCountedNotEnumerated() {
        var history = (0..<300).map { index in unknown(.increment(counter: "c"), client: index, Int64(index)) }
        history.append(readCounter("c", 150, 400, 410))
        history.append(readCounter("c", 149, 420, 430))
        guard case .notLinearizable(let key, _) = checkLinearizability(history, timeoutMs: 5_000) else {
            return XCTFail("a counter going down was not found")
        }
        XCTAssertEqual(key, "counter:c")
    }
}

/// Violations that need no search are found at once and explained in plain words.
final class PrecheckTests: XCTestCase {
    func explanation(_ history: [KVOperation]) -> String? {
        if case .notLinearizable(_, let explanation) = checkLinearizability(history, maxSteps: 1) { return explanation }
        return nil
    }

    func testAReadOfAValueNobodyPutIsExplainedWithoutSearching() throws {
        // A one-step budget proves that no search was needed.
        let text = try XCTUnwrap(explanation([put("x", "1", 0, 10), get("x", "2", 20, 30)]))
        XCTAssertTrue(text.contains("no operation ever put"), text)
    }

    func testAReadOfAValuePutOnlyAfterTheReadReturnedIsExplained() throws {
        let text = try XCTUnwrap(explanation([get("x", "1", 0, 10), unknown(.put(key: "x", value: "1"), 20)]))
        XCTAssertTrue(text.contains("after the read returned"), text)
    }

    func testACounterAboveEveryPossibleIncrementIsExplained() throws {
        let text = try XCTUnwrap(
            explanation([increment("c", returning: 1, 0, 10), readCounter("c", 2, 20, 30)]))
        XCTAssertTrue(text.contains("between 1 and 1 increments"), text)
    }

    func testACounterBelowTheIncrementsThatSurelyHappenedIsExplained() throws {
        let text = try XCTUnwrap(
            explanation([
                increment("c", returning: 1, 0, 10), increment("c", returning: 2, 20, 30),
                readCounter("c", 1, 40, 50),
            ]))
        XCTAssertTrue(text.contains("between 2 and 2 increments"), text)
    }
}

final class MemoryBoundTests: XCTestCase {
    func testTheMemoOfALongPartitionIsBoundedByMemoryNotOnlyByCount() {
        XCTAssertGreaterThan(memoEntriesLimit(operationCount: 10), 1_000_000)
        let longPartitionEntries = memoEntriesLimit(operationCount: 10_000)
        XCTAssertLessThan(longPartitionEntries, 2_000_000)
        XCTAssertLessThanOrEqual(longPartitionEntries * 2 * (10_000 / 8), 256 << 20)
    }
}

final class SharedBudgetTests: XCTestCase {
    func testAViolationFoundByPrecheckIsReportedEvenAfterTheBudgetRanOut() {
        let needsSearch = [put("b", "1", 0, 10), put("b", "2", 0, 10), get("b", "2", 20, 30)]
        let plainlyWrong = [
            put("c", "1", 0, 10), put("c", "2", 20, 30), get("c", "2", 40, 50),
            put("c", "3", 60, 70), get("c", "9", 80, 90),
        ]
        XCTAssertEqual(checkLinearizability(needsSearch, maxSteps: 1), .timedOut)
        guard case .notLinearizable(let key, _) = checkLinearizability(needsSearch + plainlyWrong, maxSteps: 1) else {
            return XCTFail("the precheck violation was not reported")
        }
        XCTAssertEqual(key, "c")
    }
}
