import Glibc
import XCTest

@testable import TandemNet

/// Repeating timers run on kernel timers sharing one cadence per loop: one wake-up per period, timers whose
/// periods divide one another firing in the same wake-up, and a busy loop running a late handler once.
final class RepeatingTimerTests: XCTestCase {
    private static func monotonicMicros() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
    }

    /// Times this thread gave up the CPU to wait (each wait that ended is a wake-up), from the kernel.
    private static func voluntarySwitches() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/thread-self/status", encoding: .utf8) else { return -1 }
        for line in status.split(separator: "\n") where line.hasPrefix("voluntary_ctxt_switches:") {
            return Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? -1
        }
        return -1
    }

    func testCadenceInstantIsTheNextMultipleOfTheIntervalAfterThePhase() {
        let next = TimerCadence.nextCadenceInstant
        XCTAssertEqual(next(1_000_000, 10_000, 3_000), 1_003_000)
        XCTAssertEqual(next(1_003_000, 10_000, 3_000), 1_013_000, "an instant on the cadence is not after itself")
        XCTAssertEqual(next(1_002_999, 10_000, 3_000), 1_003_000)
        XCTAssertEqual(next(0, 10_000, 3_000), 3_000)
        XCTAssertEqual(next(2_000, 10_000, 3_000), 3_000, "before the phase: floor, not truncation")
        XCTAssertEqual(next(-7_000, 10_000, 3_000), 3_000)
        XCTAssertEqual(next(-7_001, 10_000, 3_000), -7_000)
        XCTAssertEqual(next(999_999, 1_000_000, 999_999), 1_999_999)
        // A 50 ms cadence lands on a 10 ms cadence of the same phase.
        let fifty = next(123_456_789, 50_000, 777)
        XCTAssertEqual((fifty - 777) % 10_000, 0)
    }

    func testAnIdleRepeatingTimerWakesTheLoopOncePerPeriod() throws {
        let loop = try EventLoop()
        var fired = 0
        var switchesAtStart = 0
        var switchesAtEnd = 0
        let timer = TandemNet.Timer(loop: loop) {
            fired += 1
            if fired == 1 { switchesAtStart = Self.voluntarySwitches() }
            if fired == 41 {
                switchesAtEnd = Self.voluntarySwitches()
                loop.stop()
            }
        }
        timer.scheduleRepeating(everyMs: 10)
        loop.run()
        timer.invalidate()
        XCTAssertGreaterThan(switchesAtStart, 0, "the kernel's count of voluntary switches is readable")
        // 40 periods: one wait each. On libevent's coarse-clock timer it was one or two each (60-80 here);
        // preemption does not count, and a wait cut short by nothing else cannot happen on an idle loop.
        let waits = switchesAtEnd - switchesAtStart
        XCTAssertGreaterThanOrEqual(waits, 30, "the loop slept between firings")
        XCTAssertLessThanOrEqual(waits, 48, "\(waits) waits for 40 periods: more than one wake-up per period")
    }

    func testTimersWhosePeriodsDivideOneAnotherFireTogether() throws {
        let loop = try EventLoop()
        var tickTimes: [Int64] = []
        var sweepTimes: [Int64] = []
        let tick = TandemNet.Timer(loop: loop) { tickTimes.append(Self.monotonicMicros()) }
        let sweep = TandemNet.Timer(loop: loop) {
            sweepTimes.append(Self.monotonicMicros())
            if sweepTimes.count == 6 { loop.stop() }
        }
        tick.scheduleRepeating(everyMs: 10)
        sweep.scheduleRepeating(everyMs: 50)
        loop.run()
        tick.invalidate()
        sweep.invalidate()
        XCTAssertGreaterThanOrEqual(tickTimes.count, 20)
        for sweepTime in sweepTimes {
            // Both kernel timers expire at the same instant and the loop sees both in the same wake-up.
            let nearest = tickTimes.map { abs($0 - sweepTime) }.min() ?? .max
            XCTAssertLessThan(nearest, 2_000, "a 50 ms firing \(nearest) us from the nearest 10 ms one")
        }
    }

    func testALoopBusyForSeveralPeriodsRunsTheHandlerOnceThenKeepsTheCadence() throws {
        let loop = try EventLoop()
        var times: [Int64] = []
        let timer = TandemNet.Timer(loop: loop) {
            times.append(Self.monotonicMicros())
            if times.count == 2 { usleep(45_000) }  // Four periods pass while the handler holds the loop.
            if times.count == 6 { loop.stop() }
        }
        timer.scheduleRepeating(everyMs: 10)
        loop.run()
        timer.invalidate()
        XCTAssertEqual(times.count, 6)
        // After the busy handler: one late firing (times[2]), then the cadence's next instants, each a period
        // apart, so that three more firings take at least two periods. Missed periods run as a burst would put
        // them all within a millisecond or so.
        XCTAssertGreaterThanOrEqual(
            times[5] - times[2], 15_000, "the missed periods ran the handler more than once: \(times)")
    }

    func testCancelStopsARepeatingTimerAndAOneShotReplacesIt() throws {
        let loop = try EventLoop()
        var repeating = 0
        var oneShot = 0
        var timer: TandemNet.Timer?
        timer = TandemNet.Timer(loop: loop) {
            if timer!.isScheduled {
                repeating += 1
                if repeating == 2 { timer!.schedule(afterMs: 20) }  // Replaces the cadence with one firing.
            } else {
                oneShot += 1
            }
        }
        timer?.scheduleRepeating(everyMs: 5)
        let stopper = TandemNet.Timer(loop: loop) { loop.stop() }
        stopper.schedule(afterMs: 150)
        loop.run()
        XCTAssertEqual(repeating, 2)
        XCTAssertEqual(oneShot, 1, "the one-shot fired once and the cadence did not go on")
        XCTAssertFalse(timer!.isScheduled)

        // Cancelled, then repeating again: it fires again.
        var again = 0
        let second = TandemNet.Timer(loop: loop) {
            again += 1
            if again == 3 { loop.stop() }
        }
        second.scheduleRepeating(everyMs: 5)
        second.cancel()
        second.scheduleRepeating(everyMs: 5)
        let watchdog = TandemNet.Timer(loop: loop) { loop.stop() }
        watchdog.schedule(afterMs: 2_000)
        loop.run()
        XCTAssertEqual(again, 3)
        for each in [timer!, stopper, second, watchdog] { each.invalidate() }
    }

    func testATimerCancelledOrFreedByAnEarlierHandlerOfTheSameWakeUpDoesNotRun() throws {
        // Three timers due at the same instants; the first, at its first firing, cancels the second and lets go of
        // the third without cancelling it. Neither may run after that: the freed one's handler could reach an
        // owner that is gone.
        let loop = try EventLoop()
        var firstRuns = 0
        var cancelledRuns = 0
        var freedRuns = 0
        let cancelled = TandemNet.Timer(loop: loop) { cancelledRuns += 1 }
        var freed: TandemNet.Timer? = TandemNet.Timer(loop: loop) { freedRuns += 1 }
        weak let freedWeakly = freed
        let first = TandemNet.Timer(loop: loop) {
            firstRuns += 1
            if firstRuns == 1 {
                cancelled.cancel()
                freed = nil
            }
            if firstRuns == 3 { loop.stop() }
        }
        first.scheduleRepeating(everyMs: 10)
        cancelled.scheduleRepeating(everyMs: 10)
        freed?.scheduleRepeating(everyMs: 10)
        loop.run()
        first.invalidate()
        cancelled.invalidate()
        XCTAssertEqual(firstRuns, 3)
        XCTAssertEqual(cancelledRuns, 0, "a timer cancelled by an earlier handler of the same wake-up ran")
        XCTAssertEqual(freedRuns, 0, "a timer freed by an earlier handler of the same wake-up ran")
        XCTAssertNil(freedWeakly, "the freed timer was released")
    }
}
