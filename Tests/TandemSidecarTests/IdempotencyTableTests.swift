import TandemHTTP
import XCTest

@testable import TandemSidecar

/// The idempotency table decides from the log alone: a node that reads its log again after a restart makes
/// the same decisions as one that applied every entry live, through TTL expiry and count eviction.
final class IdempotencyTableTests: XCTestCase {
    private func command(key: String?, path: String = "/counters/c/incr", body: String = "") -> WriteCommand {
        var headers = HTTPHeaders()
        if let key { headers.add(name: "Idempotency-Key", value: key) }
        return WriteCommand(method: "POST", target: path, headers: headers, body: Array(body.utf8))
    }

    private func response(_ text: String) -> AppliedResponse {
        AppliedResponse(status: 200, reason: "OK", headers: HTTPHeaders(), body: Array(text.utf8))
    }

    /// A log of (command, time): repeats, a reused key with another body, expiries and more keys than fit.
    private func log() -> [(WriteCommand, Int64)] {
        var entries: [(WriteCommand, Int64)] = []
        var time: Int64 = 1_000
        for k in 0..<60 {
            time += 7
            // First repeats of four keys (replays, and a reused key with another body), then more distinct keys
            // than the table holds (count eviction), then after a jump in time the first keys again (TTL expiry).
            let key = k < 20 ? "k\(k % 4)" : k < 45 ? "e\(k)" : "k\(k % 4)"
            entries.append((command(key: key, body: k % 7 == 3 ? "other" : ""), time))
            if k % 9 == 0 { entries.append((command(key: nil), time)) }
            if k == 44 { time += 1_000 }  // Past the TTL of the earliest keys.
        }
        return entries
    }

    func testARebuiltTableDecidesExactlyLikeTheLiveOne() {
        var live = IdempotencyTable(ttlMs: 500, capacity: 8)
        var liveDecisions: [String] = []
        var saved: [String: IdempotencyTable.SavedResponse] = [:]
        for (index, (command, time)) in log().enumerated() {
            if let answer = live.check(command: command, timeMs: time) {
                liveDecisions.append("\(index):\(answer.status)")
            } else {
                liveDecisions.append("\(index):apply")
                live.record(command: command, index: UInt64(index + 1), response: response("r\(index)"), timeMs: time)
            }
        }
        if let encoded = IdempotencyTable.decodeResponses(live.encodedResponses()) { saved = encoded }
        XCTAssertFalse(saved.isEmpty)

        // A restart: the same log read again, without the app, then the same next entries decided.
        var rebuilt = IdempotencyTable(ttlMs: 500, capacity: 8)
        var rebuiltDecisions: [String] = []
        for (index, (command, time)) in log().enumerated() {
            let before = rebuilt.check(command: command, timeMs: time)
            rebuiltDecisions.append(before.map { "\(index):\($0.status)" } ?? "\(index):apply")
            if before == nil {
                rebuilt.record(
                    command: command, index: UInt64(index + 1),
                    response: saved[IdempotencyTable.key(of: command) ?? ""]?.response,
                    timeMs: time)
            }
        }
        XCTAssertEqual(rebuiltDecisions, liveDecisions)
        XCTAssertTrue(liveDecisions.contains { $0.hasSuffix(":422") }, "a reused key with another request")
        XCTAssertTrue(liveDecisions.contains { $0.hasSuffix(":200") }, "a replay")
        XCTAssertEqual(rebuilt.count, live.count)
        XCTAssertLessThanOrEqual(live.count, 8, "the count cap holds")
    }

    func testAReplayWhoseResponseIsGoneIsStillNotAppliedAgain() {
        var table = IdempotencyTable(ttlMs: 10_000)
        let write = command(key: "K1")
        XCTAssertNil(table.check(command: write, timeMs: 1))
        var rebuilt = table
        rebuilt.rebuild(command: write, index: 5, timeMs: 1, responses: [:])  // After a crash: no saved answer.
        let answer = rebuilt.check(command: write, timeMs: 2)
        XCTAssertEqual(answer?.status, 409)
        XCTAssertEqual(answer?.replayed, true)
        XCTAssertTrue(String(decoding: answer?.body ?? [], as: UTF8.self).contains("index 5"))
    }

    func testStoredResponsesAreBoundedInBytesAndKeysStayDecided() {
        var table = IdempotencyTable(ttlMs: 1_000_000, capacity: 1_000, maxBytes: 1_000)
        for k in 0..<50 {
            let write = command(key: "key-\(k)")
            XCTAssertNil(table.check(command: write, timeMs: Int64(k)))
            table.record(
                command: write, index: UInt64(k + 1), response: response(String(repeating: "x", count: 100)),
                timeMs: Int64(k))
        }
        XCTAssertLessThanOrEqual(table.responseBytes, 1_000)
        XCTAssertEqual(table.check(command: command(key: "key-0"), timeMs: 60)?.status, 409, "old answer dropped")
        XCTAssertEqual(table.check(command: command(key: "key-49"), timeMs: 60)?.status, 200, "recent answer kept")
    }

    func testTheByteBoundForgetsTheOldestKeysAndEveryReplicaForgetsTheSameOnes() {
        // Two replicas: one has the app's responses, the other lost them all (a crash); decisions must not differ.
        var withResponses = IdempotencyTable(ttlMs: 1_000_000, capacity: 1_000, maxBytes: 300)
        var withoutResponses = IdempotencyTable(ttlMs: 1_000_000, capacity: 1_000, maxBytes: 300)
        var keys: [String] = []
        for k in 0..<40 {
            // Keys of varied lengths, so that the bound is about bytes, not count.
            let key = "key-\(k)-" + String(repeating: "x", count: (k * 7) % 23)
            keys.append(key)
            let write = command(key: key)
            XCTAssertNil(withResponses.check(command: write, timeMs: Int64(k)))
            XCTAssertNil(withoutResponses.check(command: write, timeMs: Int64(k)))
            withResponses.record(
                command: write, index: UInt64(k + 1), response: response(String(repeating: "r", count: 50)),
                timeMs: Int64(k))
            withoutResponses.record(command: write, index: UInt64(k + 1), response: nil, timeMs: Int64(k))
            XCTAssertTrue(withResponses.hasSameDecisions(as: withoutResponses), "after key \(k)")
            XCTAssertLessThanOrEqual(withResponses.decisionBytes, 300)
        }
        XCTAssertLessThan(withResponses.count, 40, "the byte bound forgot keys")
        XCTAssertGreaterThan(withResponses.count, 5)
        // What remains is exactly the newest keys: the oldest went first.
        let expectedBytes = keys.suffix(withResponses.count).reduce(0) { $0 + $1.utf8.count + 8 }
        XCTAssertEqual(withResponses.decisionBytes, expectedBytes)
        XCTAssertGreaterThan(expectedBytes + keys[keys.count - withResponses.count - 1].utf8.count + 8, 300)
        for (position, key) in keys.enumerated() {
            let remembered = position >= keys.count - withResponses.count
            let answer = withoutResponses.check(command: command(key: key), timeMs: 100)
            XCTAssertEqual(answer?.status, remembered ? 409 : nil, "\(key): remembered keys are still decided")
        }
    }

    func testAKeyLongerThanTheBoundLeftIsForgottenAtOnceWithoutTrapping() {
        var table = IdempotencyTable(ttlMs: 1_000_000, capacity: 10, maxBytes: IdempotencyTable.keyBytesMax + 8)
        let long = String(repeating: "k", count: IdempotencyTable.keyBytesMax)
        table.record(command: command(key: "short"), index: 1, response: nil, timeMs: 1)
        table.record(command: command(key: long), index: 2, response: nil, timeMs: 2)
        XCTAssertEqual(table.count, 1, "the short key made room for the long one")
        XCTAssertEqual(table.decisionBytes, long.utf8.count + 8)
        XCTAssertEqual(table.check(command: command(key: long), timeMs: 3)?.status, 409)
        XCTAssertNil(table.check(command: command(key: "short"), timeMs: 3))
    }

    func testResponsesAreDroppedOldestFirstWhileKeysStay() {
        var table = IdempotencyTable(ttlMs: 1_000_000, capacity: 1_000, maxBytes: 1_000)
        for k in 0..<12 {
            table.record(
                command: command(key: "k\(k)"), index: UInt64(k + 1),
                response: response(String(repeating: "b", count: 200)), timeMs: Int64(k))
        }
        let kept = (0..<12).filter { table.storedResponse(for: "k\($0)") != nil }
        XCTAssertEqual(kept, Array((12 - kept.count)..<12), "the newest responses are the ones kept")
        XCTAssertEqual(kept.count, 4, "four 202-byte responses fit in 1000 bytes")
        XCTAssertEqual(table.count, 12, "every key is still decided")
        XCTAssertEqual(table.check(command: command(key: "k0"), timeMs: 20)?.status, 409)
    }
}
