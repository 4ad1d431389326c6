import XCTest

@testable import TandemOverload

final class CoDelControllerTests: XCTestCase {
    /// A consumer that serves one element per tick. At each tick the queue holds `waiting` elements with the given
    /// sojourn; shed elements are replaced by the next one at the same instant, as a real dequeue loop does.
    /// Returns the instants (us) at which an element was shed.
    private func drops(
        _ codel: inout CoDelController, ticks: StrideTo<Int64>, sojournMicros: Int64, waiting: Int = 3
    ) -> [Int64] {
        var shedAt: [Int64] = []
        for nowMicros in ticks {
            var left = waiting
            while left > 0 {
                left -= 1
                let shed = codel.onDequeue(
                    sojournMicros: sojournMicros, nowMicros: nowMicros, queueEmptyAfter: left == 0)
                guard shed else { break }
                shedAt.append(nowMicros)
            }
            if left == 0 { codel.onQueueEmpty() }
        }
        return shedAt
    }

    private func ms(_ from: Int64, _ to: Int64) -> StrideTo<Int64> {
        stride(from: from * 1000, to: to * 1000, by: 1000)
    }

    func testNothingIsShedWhileSojournStaysBelowTarget() {
        var codel = CoDelController()
        XCTAssertEqual(drops(&codel, ticks: ms(0, 2000), sojournMicros: 4_999), [])
        XCTAssertFalse(codel.isDropping)
        XCTAssertEqual(codel.dropCount, 0)
    }

    func testSheddingBeginsExactlyOneIntervalAfterTheSojournFirstExceedsTarget() {
        var codel = CoDelController()
        XCTAssertFalse(codel.onDequeue(sojournMicros: 5_000, nowMicros: 0), "at target counts as above")
        XCTAssertFalse(codel.onDequeue(sojournMicros: 9_000, nowMicros: 99_999))
        XCTAssertFalse(codel.isDropping)
        XCTAssertTrue(codel.onDequeue(sojournMicros: 9_000, nowMicros: 100_000))
        XCTAssertTrue(codel.isDropping)
        XCTAssertEqual(codel.dropCount, 1)
        XCTAssertFalse(codel.onDequeue(sojournMicros: 9_000, nowMicros: 100_000), "the next one is served")
    }

    func testDropSpacingFollowsIntervalOverSquareRootOfCount() {
        XCTAssertEqual(
            (1...6).map { CoDelController.dropSpacingMicros(intervalMicros: 100_000, count: $0) },
            [100_000, 70_710, 57_735, 50_000, 44_721, 40_824])
        XCTAssertEqual(CoDelController.dropSpacingMicros(intervalMicros: 100_000, count: 100), 10_000)

        // A queue standing at 20 ms, served once a millisecond. Drops are due at 100 ms (entry), then 100 ms later,
        // then at 200 + 70.710, + 57.735, + 50, + 44.721, + 40.824 ms; a 1 ms consumer sheds at the first tick at or
        // after each (the RFC pseudocode run on the same input gives the same list).
        var codel = CoDelController()
        let shedAt = drops(&codel, ticks: ms(0, 481), sojournMicros: 20_000)
        XCTAssertEqual(shedAt, [100_000, 200_000, 271_000, 329_000, 379_000, 424_000, 464_000])
        XCTAssertEqual(codel.dropCount, 7)
    }

    func testAQueueThatDrainsBelowTargetStopsShedding() {
        var codel = CoDelController()
        _ = drops(&codel, ticks: ms(0, 250), sojournMicros: 20_000)
        XCTAssertTrue(codel.isDropping)
        XCTAssertFalse(codel.onDequeue(sojournMicros: 4_000, nowMicros: 250_000))
        XCTAssertFalse(codel.isDropping)
        // Above target again: one full interval must pass before anything is shed.
        let shedAt = drops(&codel, ticks: ms(251, 400), sojournMicros: 20_000)
        XCTAssertEqual(shedAt.first, 351_000)
    }

    func testAnEmptyQueueEndsTheDroppingState() {
        var codel = CoDelController()
        _ = drops(&codel, ticks: ms(0, 250), sojournMicros: 20_000)
        XCTAssertTrue(codel.isDropping)
        codel.onQueueEmpty()
        XCTAssertFalse(codel.isDropping)
    }

    func testTheLastElementInTheQueueIsNeverShed() {
        var codel = CoDelController()
        let shedAt = drops(&codel, ticks: ms(0, 1000), sojournMicros: 50_000, waiting: 1)
        XCTAssertEqual(shedAt, [], "a queue of one is not a standing queue")
    }

    func testReenteringSoonAfterLeavingResumesTheDropRateOfTheLastCycle() {
        var codel = CoDelController()
        XCTAssertEqual(drops(&codel, ticks: ms(0, 430), sojournMicros: 20_000).count, 6)
        XCTAssertEqual(codel.dropCount, 6)
        XCTAssertFalse(codel.onDequeue(sojournMicros: 1_000, nowMicros: 430_000))
        XCTAssertFalse(codel.isDropping)
        // Above target from 431 ms: entry at 531 ms with count = 6 - 1 (drops of the last cycle beyond its first),
        // so the next drop is 44.721 ms later rather than a whole interval (matches the RFC pseudocode).
        let shedAt = drops(&codel, ticks: ms(431, 700), sojournMicros: 20_000)
        XCTAssertEqual(shedAt, [531_000, 576_000, 617_000, 655_000, 690_000])
        XCTAssertEqual(codel.dropCount, 9)
    }

    func testReenteringLongAfterLeavingStartsAgainFromOneDrop() {
        var codel = CoDelController()
        _ = drops(&codel, ticks: ms(0, 430), sojournMicros: 20_000)
        XCTAssertFalse(codel.onDequeue(sojournMicros: 1_000, nowMicros: 430_000))
        // 16 intervals after the last scheduled drop the previous rate no longer says anything.
        let shedAt = drops(&codel, ticks: ms(3_000, 3_300), sojournMicros: 20_000)
        XCTAssertEqual(shedAt, [3_100_000, 3_200_000, 3_271_000])
    }
}

final class BoundedCoDelQueueTests: XCTestCase {
    func testAFullQueueHandsTheElementBack() {
        var queue = BoundedCoDelQueue<Int>(capacity: 2)
        guard case .accepted = queue.enqueue(1, nowMicros: 0) else { return XCTFail("room for the first") }
        guard case .accepted = queue.enqueue(2, nowMicros: 0) else { return XCTFail("room for the second") }
        guard case .rejectedFull(let refused) = queue.enqueue(3, nowMicros: 0) else {
            return XCTFail("a third does not fit")
        }
        XCTAssertEqual(refused, 3)
        XCTAssertEqual(queue.count, 2)
    }

    func testElementsComeOutInOrderWithTheirSojourn() {
        var queue = BoundedCoDelQueue<String>(capacity: 3)
        for (index, name) in ["a", "b", "c"].enumerated() {
            _ = queue.enqueue(name, nowMicros: Int64(index) * 1000)
        }
        let first = queue.dequeue(nowMicros: 4_000)
        XCTAssertEqual(first.element, "a")
        XCTAssertEqual(first.sojournMicros, 4_000)
        XCTAssertEqual(first.shed.count, 0)
        XCTAssertEqual(queue.dequeue(nowMicros: 4_000).element, "b")
        XCTAssertEqual(queue.dequeue(nowMicros: 4_000).element, "c")
        XCTAssertNil(queue.dequeue(nowMicros: 4_000).element)
    }

    func testAbandonedElementsAreShedWithoutBeingServed() {
        var queue = BoundedCoDelQueue<Int>(capacity: 8)
        for value in 1...4 { _ = queue.enqueue(value, nowMicros: 0) }
        let result = queue.dequeue(nowMicros: 100, isAbandoned: { $0 < 3 })
        XCTAssertEqual(result.element, 3)
        XCTAssertEqual(result.shed.map(\.element), [1, 2])
        XCTAssertEqual(result.shed.map(\.reason), [.abandoned, .abandoned])
        XCTAssertEqual(queue.count, 1)
    }

    func testAStandingQueueIsShedOncePerControlLawStep() {
        var queue = BoundedCoDelQueue<Int>(capacity: 1000)
        var next = 0
        var shedStanding = 0
        var served = 0
        // Arrivals outpace service: two arrive and one is served per millisecond, so the queue stands and grows
        // until CoDel sheds; every shed element comes back labelled as a standing-queue drop.
        for tick in Int64(0)..<600 {
            for _ in 0..<2 {
                if case .accepted = queue.enqueue(next, nowMicros: tick * 1000) { next += 1 }
            }
            let result = queue.dequeue(nowMicros: tick * 1000)
            if result.element != nil { served += 1 }
            shedStanding += result.shed.filter { $0.reason == .standingQueue }.count
        }
        XCTAssertEqual(served, 600)
        XCTAssertGreaterThan(shedStanding, 0)
        XCTAssertTrue(queue.controller.isDropping)
        XCTAssertEqual(queue.count + served + shedStanding, next, "every element is accounted for")
    }

    func testElementsWaitingPastTheDeadlineExpireOldestFirst() {
        var queue = BoundedCoDelQueue<Int>(capacity: 8)
        for value in 0..<4 { _ = queue.enqueue(value, nowMicros: Int64(value) * 10_000) }
        XCTAssertEqual(queue.oldestEnqueuedAtMicros, 0)
        let expired = queue.removeExpired(nowMicros: 50_000, maxSojournMicros: 30_000)
        XCTAssertEqual(expired.map(\.element), [0, 1], "waited 50 and 40 ms; 30 ms exactly is not past the deadline")
        XCTAssertEqual(expired.map(\.reason), [.expired, .expired])
        XCTAssertEqual(expired.map(\.sojournMicros), [50_000, 40_000])
        XCTAssertEqual(queue.oldestEnqueuedAtMicros, 20_000)
        XCTAssertEqual(queue.count, 2)
    }

    func testStaleElementsGetTheIntervalAsDeadlineUntilTheQueueHasStoodForAnInterval() {
        var queue = BoundedCoDelQueue<Int>(capacity: 100)
        for value in 0..<10 { _ = queue.enqueue(value, nowMicros: Int64(value) * 10_000) }
        XCTAssertEqual(queue.nonEmptySinceMicros, 0)
        // At 99 ms the queue has been non-empty for less than an interval: only waits over 100 ms are stale.
        XCTAssertEqual(queue.removeStale(nowMicros: 99_000).count, 0)
        // At 100 ms it has stood for a whole interval: the deadline drops to the 5 ms target.
        let stale = queue.removeStale(nowMicros: 100_000)
        XCTAssertEqual(stale.map(\.element), Array(0..<10).filter { 100_000 - $0 * 10_000 > 5_000 })
        XCTAssertEqual(Set(stale.map(\.reason)), [.standingQueue])
        XCTAssertEqual(queue.count, 0)
        XCTAssertNil(queue.nonEmptySinceMicros, "an emptied queue no longer stands")
        _ = queue.enqueue(99, nowMicros: 200_000)
        XCTAssertEqual(queue.removeStale(nowMicros: 250_000).count, 0, "a fresh queue gets the long deadline again")
        XCTAssertEqual(queue.removeStale(nowMicros: 300_001).map(\.reason), [.standingQueue])
    }

    func testRemoveAllKeepsTheOrderOfTheRest() {
        var queue = BoundedCoDelQueue<Int>(capacity: 4)
        _ = queue.dequeue(nowMicros: 0)
        for value in 1...4 { _ = queue.enqueue(value, nowMicros: 0) }
        _ = queue.dequeue(nowMicros: 0)  // Moves the head so the ring wraps.
        _ = queue.enqueue(5, nowMicros: 0)
        XCTAssertEqual(queue.removeAll(where: { $0 % 2 == 0 }), [2, 4])
        XCTAssertEqual(queue.count, 2)
        XCTAssertEqual(queue.dequeue(nowMicros: 0).element, 3)
        XCTAssertEqual(queue.dequeue(nowMicros: 0).element, 5)
        XCTAssertTrue(queue.isEmpty)
    }
}
