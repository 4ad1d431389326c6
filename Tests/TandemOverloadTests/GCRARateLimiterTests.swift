import XCTest

@testable import TandemOverload

final class GCRARateLimiterTests: XCTestCase {
    private func limiter(_ count: Int, per periodMs: Int64 = 1000, burst: Int? = nil, keys: Int = 100_000)
        -> GCRARateLimiter
    {
        GCRARateLimiter(configuration: .init(count: count, periodMs: periodMs, burst: burst, keyCapacity: keys))
    }

    func testExactlyTheBurstPassesAtOnceAndTheNextIsRefusedForOneEmissionInterval() {
        var rate = limiter(200, burst: 400)
        for index in 0..<400 {
            let decision = rate.check(key: "a", nowMs: 0)
            XCTAssertEqual(decision.remaining, 399 - index, "request \(index + 1)")
            XCTAssertTrue(decision.isAllowed, "request \(index + 1)")
        }
        XCTAssertEqual(rate.check(key: "a", nowMs: 0), .limited(retryAfterMs: 5, resetAfterMs: 2000))
        XCTAssertEqual(rate.check(key: "a", nowMs: 4), .limited(retryAfterMs: 1, resetAfterMs: 1996))
        XCTAssertEqual(rate.check(key: "a", nowMs: 5), .allowed(remaining: 0, resetAfterMs: 2000))
        XCTAssertFalse(rate.check(key: "a", nowMs: 5).isAllowed, "one interval buys exactly one request")
    }

    func testRefusedRequestsCostNothing() {
        var rate = limiter(10, burst: 1)
        XCTAssertTrue(rate.check(key: "a", nowMs: 0).isAllowed)
        for nowMs in stride(from: Int64(0), to: 100, by: 1) {
            XCTAssertFalse(rate.check(key: "a", nowMs: nowMs).isAllowed)
        }
        XCTAssertTrue(rate.check(key: "a", nowMs: 100).isAllowed, "hammering did not push the next slot back")
    }

    func testDefaultBurstIsOnePeriodOfTraffic() {
        var rate = limiter(50)
        XCTAssertEqual(rate.configuration.burst, 50)
        let passed = (0..<60).filter { _ in rate.check(key: "k", nowMs: 1_000_000).isAllowed }.count
        XCTAssertEqual(passed, 50)
    }

    func testLongRunAdmitsExactlyTheConfiguredRateWithANonIntegerInterval() {
        // 3 per second is an interval of 333.33 ms: rounding it either way would drift by one request in 1000.
        // A client that sends whenever allowed gets burst + floor(elapsed * count / period), no more, no fewer.
        var rate = limiter(3, burst: 2)
        var passed = 0
        for nowMs in Int64(0)...300_000 where rate.check(key: "k", nowMs: nowMs).isAllowed {
            passed += 1
        }
        XCTAssertEqual(passed, 2 + 900)
    }

    func testPerMinuteRatesRefillOneRequestPerIntervalExactly() {
        var rate = limiter(7, per: 60_000, burst: 2)
        XCTAssertTrue(rate.check(key: "k", nowMs: 10).isAllowed)
        XCTAssertTrue(rate.check(key: "k", nowMs: 10).isAllowed)
        // The interval is 60000/7 = 8571.43 ms; the refusal rounds the wait up so obeying it always succeeds.
        XCTAssertEqual(rate.check(key: "k", nowMs: 10), .limited(retryAfterMs: 8572, resetAfterMs: 17143))
        XCTAssertFalse(rate.check(key: "k", nowMs: 10 + 8571).isAllowed)
        XCTAssertTrue(rate.check(key: "k", nowMs: 10 + 8572).isAllowed)
    }

    func testAnIdleKeyRecoversItsWholeBurstAndNoMore() {
        var rate = limiter(100, burst: 5)
        for _ in 0..<5 { XCTAssertTrue(rate.check(key: "k", nowMs: 0).isAllowed) }
        XCTAssertEqual(rate.check(key: "k", nowMs: 20).remaining, 1, "two intervals refilled two, one now used")
        let afterLongIdle = (0..<10).filter { _ in rate.check(key: "k", nowMs: 1_000_000).isAllowed }.count
        XCTAssertEqual(afterLongIdle, 5)
    }

    func testKeysAreLimitedIndependently() {
        var rate = limiter(1, burst: 1)
        XCTAssertTrue(rate.check(key: "alice", nowMs: 0).isAllowed)
        XCTAssertFalse(rate.check(key: "alice", nowMs: 0).isAllowed)
        XCTAssertTrue(rate.check(key: "bob", nowMs: 0).isAllowed)
    }

    func testAFullTableEvictsAnIdleKeyBeforeAnyActiveOne() {
        var rate = limiter(1, burst: 1, keys: 3)
        XCTAssertTrue(rate.check(key: "old-but-busy", nowMs: 0).isAllowed)  // Arrival time 1000: active until then.
        XCTAssertTrue(rate.check(key: "quick", nowMs: 0).isAllowed)  // Also active until 1000.
        XCTAssertTrue(rate.check(key: "recent", nowMs: 600).isAllowed)  // Active until 1600.
        XCTAssertFalse(rate.check(key: "old-but-busy", nowMs: 600).isAllowed)  // Seen again: now most recent.
        _ = rate.check(key: "quick", nowMs: 700)  // Refused at 700; quick stays active until 1000.
        // At 1000 both "old-but-busy" and "quick" went idle; the heap yields one of them, never "recent".
        XCTAssertTrue(rate.check(key: "newcomer", nowMs: 1000).isAllowed)
        XCTAssertEqual(rate.idleEvictionCount, 1)
        XCTAssertEqual(rate.overflowCheckCount, 0)
        XCTAssertFalse(rate.check(key: "recent", nowMs: 1000).isAllowed, "the active key kept its state")
        rate.checkInvariants()
    }

    func testAKeyWithDebtIsNeverForgottenWhileTheTableIsFull() {
        // A client that is limited stays limited however many other keys arrive: distinct header values used to
        // evict it (least recently seen first) and forgive its debt.
        var rate = limiter(1, per: 60_000, burst: 2, keys: 3)
        XCTAssertTrue(rate.check(key: "victim", nowMs: 0).isAllowed)
        XCTAssertTrue(rate.check(key: "victim", nowMs: 0).isAllowed)
        XCTAssertFalse(rate.check(key: "victim", nowMs: 0).isAllowed)
        for index in 0..<1000 { _ = rate.check(key: "flood-\(index)", nowMs: 1) }
        XCTAssertFalse(rate.check(key: "victim", nowMs: 2).isAllowed, "the flood cleared the victim's debt")
        XCTAssertEqual(rate.keyCount, 3)
        rate.checkInvariants()
    }

    func testKeysThatDoNotFitShareOneOverflowBucket() {
        var rate = limiter(1, per: 60_000, burst: 2, keys: 2)
        for key in ["a", "b"] { XCTAssertTrue(rate.check(key: key, nowMs: 0).isAllowed) }
        // The table is full of keys with debt: newcomers are limited together, burst 2 between them all.
        XCTAssertTrue(rate.check(key: "c", nowMs: 0).isAllowed)
        XCTAssertTrue(rate.check(key: "d", nowMs: 0).isAllowed)
        XCTAssertFalse(rate.check(key: "e", nowMs: 0).isAllowed, "the overflow bucket's burst is spent")
        XCTAssertFalse(rate.check(key: "c", nowMs: 0).isAllowed)
        XCTAssertEqual(rate.overflowCheckCount, 4)
        XCTAssertTrue(rate.check(key: "a", nowMs: 0).isAllowed, "a kept its own allowance")
        XCTAssertFalse(rate.check(key: "a", nowMs: 0).isAllowed)
        // Once a's debt has expired, a newcomer takes its place with a whole burst of its own.
        XCTAssertTrue(rate.check(key: "f", nowMs: 120_000).isAllowed)
        XCTAssertEqual(rate.idleEvictionCount, 1)
        XCTAssertTrue(rate.check(key: "f", nowMs: 120_000).isAllowed)
        XCTAssertFalse(rate.check(key: "f", nowMs: 120_000).isAllowed)
        rate.checkInvariants()
    }

    func testTheKeyTableNeverGrowsPastItsCapacityUnderAFloodOfDistinctKeys() {
        var rate = limiter(10, burst: 10, keys: 1000)
        var generator = SplitMix64(seed: 7)
        for step in 0..<50_000 {
            let key = "client-\(generator.next() % 5000)"
            _ = rate.check(key: key, nowMs: Int64(step / 10))
            XCTAssertLessThanOrEqual(rate.keyCount, 1000)
        }
        XCTAssertEqual(rate.keyCount, 1000)
        XCTAssertGreaterThan(rate.idleEvictionCount + rate.overflowCheckCount, 0)
        rate.checkInvariants()
    }

    func testLongKeysAreStoredInBoundedSpaceAndStayDistinct() {
        let common = String(repeating: "k", count: 8000)
        let first = GCRARateLimiter.storedKey(common + "1")
        let second = GCRARateLimiter.storedKey(common + "2")
        XCTAssertNotEqual(first, second)
        XCTAssertLessThanOrEqual(first.utf8.count, 64)
        XCTAssertEqual(GCRARateLimiter.storedKey("10.0.0.1"), "10.0.0.1", "short keys are kept as they are")

        var rate = limiter(1, burst: 1)
        XCTAssertTrue(rate.check(key: common + "1", nowMs: 0).isAllowed)
        XCTAssertFalse(rate.check(key: common + "1", nowMs: 0).isAllowed, "a long key is still one client")
        XCTAssertTrue(rate.check(key: common + "2", nowMs: 0).isAllowed, "and not confused with its neighbour")
    }

    func testAGlobalLimiterIsOneKey() {
        var global = limiter(2, burst: 2, keys: 1)
        XCTAssertTrue(global.check(nowMs: 0).isAllowed)
        XCTAssertTrue(global.check(nowMs: 0).isAllowed)
        XCTAssertEqual(global.check(nowMs: 0), .limited(retryAfterMs: 500, resetAfterMs: 1000))
        XCTAssertEqual(global.keyCount, 1)
    }

    func testHeaderValuesFollowTheDraftAndRoundWaitsUp() {
        XCTAssertEqual(limiter(200).configuration.policyHeaderValue, "\"default\";q=200;w=1")
        XCTAssertEqual(limiter(200, burst: 400).configuration.policyHeaderValue, "\"default\";q=400;w=2")
        XCTAssertEqual(limiter(100, per: 60_000).configuration.policyHeaderValue, "\"default\";q=100;w=60")
        XCTAssertEqual(limiter(3, burst: 1).configuration.policyHeaderValue, "\"default\";q=1;w=1")

        let allowed = RateDecision.allowed(remaining: 399, resetAfterMs: 5)
        XCTAssertEqual(allowed.rateLimitHeaderValue, "\"default\";r=399;t=1")
        XCTAssertNil(allowed.retryAfterSeconds)
        let limited = RateDecision.limited(retryAfterMs: 5, resetAfterMs: 2000)
        XCTAssertEqual(limited.rateLimitHeaderValue, "\"default\";r=0;t=2")
        XCTAssertEqual(limited.retryAfterSeconds, 1, "5 ms is rounded up to a whole second")
        XCTAssertEqual(RateDecision.limited(retryAfterMs: 2001, resetAfterMs: 3000).retryAfterSeconds, 3)
        XCTAssertEqual(RateDecision.limited(retryAfterMs: 2000, resetAfterMs: 3000).retryAfterSeconds, 2)
    }

    func testFractionalInstantsCarryAndBorrowExactly() {
        let third = FractionalInstant(units: 1000, denominator: 3)  // 333 + 1/3 ms
        XCTAssertEqual(third, FractionalInstant(wholeMs: 333, fraction: 1))
        let sum = third.adding(third, denominator: 3).adding(third, denominator: 3)
        XCTAssertEqual(sum, FractionalInstant(wholeMs: 1000, fraction: 0))
        XCTAssertEqual(sum.subtracting(third, denominator: 3), FractionalInstant(wholeMs: 666, fraction: 2))
        XCTAssertEqual(sum.units(since: FractionalInstant(wholeMs: 0), denominator: 3), 3000)
    }

    func testIntegerSquareRootIsExactAtPerfectSquaresAndTheirNeighbours() {
        for root: Int64 in [0, 1, 2, 3, 10, 316, 99_999, 999_999_999] {
            XCTAssertEqual(integerSquareRoot(root * root), root)
            if root > 0 { XCTAssertEqual(integerSquareRoot(root * root - 1), root - 1) }
            XCTAssertEqual(integerSquareRoot(root * root + 1), root == 0 ? 1 : root)
        }
    }
}
