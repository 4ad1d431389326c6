import XCTest

@testable import TandemOverload

final class AdaptiveConcurrencyLimitTests: XCTestCase {
    /// The bare Gradient2 rule (tolerance 1, no re-measurements), so each step can be computed by hand.
    private func gradientOnly(
        initial: Int = 20, min minLimit: Int = 4, max maxLimit: Int = 1000, shortWindow: Int = 10
    ) -> AdaptiveConcurrencyLimit {
        var configuration = AdaptiveConcurrencyLimit.Configuration()
        configuration.initialLimit = initial
        configuration.minLimit = minLimit
        configuration.maxLimit = maxLimit
        configuration.shortWindowSamples = shortWindow
        configuration.rttTolerance = 1.0
        configuration.probeIntervalSamples = nil
        return AdaptiveConcurrencyLimit(configuration: configuration, seed: 0)
    }

    /// Feeds `count` samples taken at full use of the limit.
    private func feed(_ limiter: inout AdaptiveConcurrencyLimit, rttMicros: Int64, count: Int, didDrop: Bool = false) {
        for _ in 0..<count {
            limiter.onSample(rttMicros: rttMicros, inflightAtStart: limiter.limit, didDrop: didDrop)
        }
    }

    func testTheLimitGrowsBySmoothingTimesQueueSizePerSampleUnderStableLatency() {
        var limiter = gradientOnly()
        feed(&limiter, rttMicros: 10_000, count: 1)
        // gradient 1: 20 * 0.8 + (20 * 1 + 4) * 0.2 = 20.8
        XCTAssertEqual(limiter.estimatedLimit, 20.8, accuracy: 1e-9)
        feed(&limiter, rttMicros: 10_000, count: 9)
        XCTAssertEqual(limiter.estimatedLimit, 28.0, accuracy: 1e-9)
        XCTAssertEqual(limiter.limit, 28)
        XCTAssertEqual(limiter.longRTTMicros, 10_000, accuracy: 1e-9)
    }

    func testTheLimitShrinksWhenLatencyDoubles() {
        var limiter = gradientOnly(shortWindow: 1)
        feed(&limiter, rttMicros: 10_000, count: 10)
        XCTAssertEqual(limiter.estimatedLimit, 28.0, accuracy: 1e-9)
        feed(&limiter, rttMicros: 20_000, count: 1)
        // The long average moves by 2/20001 of the step; the short one (window 1) is the sample itself.
        let longRTT = 10_000 + 10_000 * 2.0 / 20_001
        let gradient = longRTT / 20_000
        XCTAssertEqual(limiter.estimatedLimit, 28 * 0.8 + (28 * gradient + 4) * 0.2, accuracy: 1e-9)
        var previous = limiter.estimatedLimit
        for _ in 0..<20 {
            feed(&limiter, rttMicros: 20_000, count: 1)
            XCTAssertLessThan(limiter.estimatedLimit, previous, "doubled latency keeps shrinking the limit")
            previous = limiter.estimatedLimit
        }
        // At half the gradient the limit heads for the point where halving is balanced by the headroom: 8.
        XCTAssertLessThan(limiter.estimatedLimit, 12)
    }

    func testALatencyRiseWithinToleranceLeavesTheLimitGrowing() {
        var configuration = AdaptiveConcurrencyLimit.Configuration()
        configuration.probeIntervalSamples = nil
        configuration.shortWindowSamples = 1
        configuration.rttTolerance = 1.5
        var limiter = AdaptiveConcurrencyLimit(configuration: configuration, seed: 0)
        feed(&limiter, rttMicros: 10_000, count: 10)
        feed(&limiter, rttMicros: 14_000, count: 1)
        XCTAssertEqual(limiter.estimatedLimit, 28.8, accuracy: 1e-9, "1.5 x 10 ms is above 14 ms: gradient 1")
    }

    func testADroppedRequestCountsAsTheSteepestGradient() {
        var limiter = gradientOnly()
        feed(&limiter, rttMicros: 10_000, count: 10)
        feed(&limiter, rttMicros: 10_000, count: 1, didDrop: true)
        XCTAssertEqual(limiter.estimatedLimit, 28 * 0.8 + (28 * 0.5 + 4) * 0.2, accuracy: 1e-9)
    }

    func testAnAppLimitedSampleDoesNotGrowTheLimit() {
        var limiter = gradientOnly()
        for _ in 0..<100 {
            limiter.onSample(rttMicros: 10_000, inflightAtStart: 9, didDrop: false)
        }
        XCTAssertEqual(limiter.estimatedLimit, 20, "fewer than half in use: the app, not the limit, is the bound")
    }

    func testTheLimitNeverFallsBelowTheFloor() {
        var limiter = gradientOnly()
        feed(&limiter, rttMicros: 10_000, count: 10)
        for step in 0..<1000 {
            feed(&limiter, rttMicros: 10_000 * Int64(2 + step), count: 1, didDrop: step % 3 == 0)
            XCTAssertGreaterThanOrEqual(limiter.estimatedLimit, 4)
        }
        XCTAssertEqual(limiter.limit, 4)
        XCTAssertEqual((0..<10).filter { _ in limiter.tryAcquire() }.count, 4, "the floor still admits 4 at once")
    }

    func testTheLimitNeverRisesAboveTheCeiling() {
        var limiter = gradientOnly(max: 50)
        for _ in 0..<10_000 {
            feed(&limiter, rttMicros: 1_000, count: 1)
            XCTAssertLessThanOrEqual(limiter.estimatedLimit, 50)
        }
        XCTAssertEqual(limiter.limit, 50)
    }

    func testTryAcquireAdmitsUpToTheLimitAndReleaseFreesASlot() {
        var limiter = gradientOnly(initial: 5)
        XCTAssertEqual((0..<8).filter { _ in limiter.tryAcquire() }.count, 5)
        XCTAssertEqual(limiter.inflight, 5)
        XCTAssertFalse(limiter.tryAcquire())
        limiter.release()
        XCTAssertTrue(limiter.tryAcquire())
    }

    func testALatencyMeasurementAtTheFloorResetsTheNormalLatency() {
        var configuration = AdaptiveConcurrencyLimit.Configuration()
        configuration.probeIntervalSamples = 1000
        configuration.probeSamples = 4
        var limiter = AdaptiveConcurrencyLimit(configuration: configuration, seed: 9)
        XCTAssertEqual(limiter.phase, .probing(collected: 0, sumMicros: 0), "a new limiter measures first")
        XCTAssertEqual(limiter.limit, 4, "measurements run at the floor, never at 1")
        limiter.onSample(rttMicros: 90_000, inflightAtStart: 12, didDrop: false)
        XCTAssertEqual(limiter.phase, .probing(collected: 0, sumMicros: 0), "admitted above the floor: ignored")
        limiter.onSample(rttMicros: 30_000_000, inflightAtStart: 2, didDrop: true)
        XCTAssertEqual(limiter.phase, .probing(collected: 0, sumMicros: 0), "a failed request is no latency: ignored")
        for rtt: Int64 in [9_000, 10_000, 11_000, 10_000] {
            limiter.onSample(rttMicros: rtt, inflightAtStart: 4, didDrop: false)
        }
        XCTAssertEqual(limiter.longRTTMicros, 10_000, accuracy: 1e-9)
        XCTAssertEqual(limiter.limit, 20, "the limit is restored after the measurement")
        guard case .tracking(let samplesUntilProbe) = limiter.phase else { return XCTFail("back to tracking") }
        XCTAssertTrue((750...1250).contains(samplesUntilProbe), "the interval is jittered by at most a quarter")
        // A queue that built up since is seen against the fresh normal latency and shrinks the limit.
        feed(&limiter, rttMicros: 40_000, count: 10)
        XCTAssertLessThan(limiter.estimatedLimit, 18)
    }

    func testMeasurementScheduleJitterIsFixedByTheSeed() {
        func schedule(seed: UInt64) -> [Int] {
            var configuration = AdaptiveConcurrencyLimit.Configuration()
            configuration.probeIntervalSamples = 1000
            configuration.probeSamples = 1
            var limiter = AdaptiveConcurrencyLimit(configuration: configuration, seed: seed)
            var starts: [Int] = []
            for sample in 0..<10_000 {
                let wasProbing = limiter.phase.isProbing
                limiter.onSample(rttMicros: 10_000, inflightAtStart: 4, didDrop: false)
                if !wasProbing && limiter.phase.isProbing { starts.append(sample) }
            }
            return starts
        }
        XCTAssertEqual(schedule(seed: 1), schedule(seed: 1))
        XCTAssertNotEqual(schedule(seed: 1), schedule(seed: 2))
        let gaps = zip(schedule(seed: 1).dropFirst(), schedule(seed: 1)).map { $0 - $1 }
        XCTAssertTrue(gaps.allSatisfy { (751...1251).contains($0) }, "\(gaps)")
    }

    // MARK: A simulated app

    private let capacityPerSecond = 800.0  // 8 workers at 10 ms each.

    private func simulate(offeredPerSecond: Double, seconds: Int, slowDownAtSecond: Int? = nil)
        -> AppSimulation.Figures
    {
        var simulation = AppSimulation(
            limiter: AdaptiveConcurrencyLimit(seed: 1), workers: 8, meanServiceMicros: 10_000,
            arrivalsPerSecond: offeredPerSecond, seed: 42)
        let warmupMicros: Int64 = 5_000_000
        if let slowDown = slowDownAtSecond {
            _ = simulation.run(untilMicros: Int64(slowDown) * 1_000_000, measureFromMicros: .max)
            simulation.meanServiceMicros *= 2
            return simulation.run(
                untilMicros: Int64(seconds) * 1_000_000, measureFromMicros: Int64(slowDown) * 1_000_000 + warmupMicros)
        }
        return simulation.run(untilMicros: Int64(seconds) * 1_000_000, measureFromMicros: warmupMicros)
    }

    func testOnAnOverloadedAppTheLimitConvergesNearItsWorkersWithFullGoodput() {
        for overload in [2.0, 10.0] {
            let figures = simulate(offeredPerSecond: capacityPerSecond * overload, seconds: 35)
            let goodput = Double(figures.completed) / 30
            XCTAssertGreaterThan(goodput, 0.9 * capacityPerSecond, "no congestion collapse at \(overload)x")
            // The app has 8 workers: the limit settles a few requests above that instead of queueing thousands.
            XCTAssertTrue((8...32).contains(Int(figures.meanLimit.rounded())), "mean limit \(figures.meanLimit)")
            XCTAssertLessThan(figures.maxAppBacklog, 64, "the queue inside the app stays short")
            XCTAssertLessThan(figures.percentileLatencyMicros(0.5), 30_000, "median within 3x the 10 ms service time")
            XCTAssertGreaterThan(figures.shed, 0)
        }
    }

    func testWithNetflixsShortWindowAndNoAnchorTheLimitRatchetsToTheCeiling() {
        // Why the defaults differ from Netflix's: fed per request, a 600-sample long window follows the growing
        // queue within a second, the gradient stays near 1 and the limit climbs until the app is buried.
        var configuration = AdaptiveConcurrencyLimit.Configuration()
        configuration.longWindowSamples = 600
        configuration.probeIntervalSamples = nil
        var simulation = AppSimulation(
            limiter: AdaptiveConcurrencyLimit(configuration: configuration, seed: 1), workers: 8,
            meanServiceMicros: 10_000, arrivalsPerSecond: 1600, seed: 42)
        let figures = simulation.run(untilMicros: 40_000_000, measureFromMicros: 30_000_000)
        XCTAssertEqual(figures.limitSamples.max(), 1000)
        XCTAssertGreaterThan(figures.maxAppBacklog, 500)
    }

    func testUnderLightLoadNothingIsShed() {
        let figures = simulate(offeredPerSecond: capacityPerSecond / 2, seconds: 25)
        XCTAssertLessThan(Double(figures.shed), 0.01 * Double(figures.offered))
        XCTAssertLessThan(figures.percentileLatencyMicros(0.5), 12_000)
    }

    func testWhenTheAppSlowsDownTheLimitFollowsAndTheQueueStaysShort() {
        let figures = simulate(offeredPerSecond: capacityPerSecond * 2, seconds: 40, slowDownAtSecond: 10)
        let goodput = Double(figures.completed) / 25
        XCTAssertGreaterThan(goodput, 0.9 * capacityPerSecond / 2, "the slower app is kept busy")
        XCTAssertLessThan(figures.maxAppBacklog, 64, "and not buried")
        XCTAssertLessThan(figures.percentileLatencyMicros(0.5), 60_000, "median within 3x the new 20 ms service time")
    }

    /// The proxy's composition: refused requests wait in a `BoundedCoDelQueue` of 1000 and take slots as they free.
    private func simulateWithWaitingQueue(overload: Double, shedStale: Bool) -> AppSimulation.Figures {
        var simulation = AppSimulation(
            limiter: AdaptiveConcurrencyLimit(seed: 1), workers: 8, meanServiceMicros: 10_000,
            arrivalsPerSecond: capacityPerSecond * overload, seed: 42, waiting: BoundedCoDelQueue(capacity: 1000))
        simulation.shedStale = shedStale
        return simulation.run(untilMicros: 25_000_000, measureFromMicros: 5_000_000)
    }

    func testAnOpenLoopFloodDefeatsRFCCoDelAloneSoTheWaitingQueueStandsAtItsBound() {
        // CoDel sheds one element per interval/sqrt(count), far fewer than a flood adds, so every request is served
        // after waiting for the whole queue: the reason `removeStale` exists.
        let figures = simulateWithWaitingQueue(overload: 2, shedStale: false)
        XCTAssertEqual(figures.maxWaiting, 1000)
        XCTAssertGreaterThan(figures.percentileLatencyMicros(0.5), 500_000)
    }

    func testWithStaleSheddingAFloodIsServedAtFullGoodputWithShortWaits() {
        for overload in [2.0, 10.0] {
            let figures = simulateWithWaitingQueue(overload: overload, shedStale: true)
            XCTAssertGreaterThan(Double(figures.completed) / 20, 0.9 * capacityPerSecond, "goodput at \(overload)x")
            XCTAssertLessThan(figures.percentileLatencyMicros(0.99), 150_000, "p99 wait + service at \(overload)x")
            XCTAssertLessThan(figures.maxWaiting, 300, "the waiting queue stays far below its bound")
        }
    }

    func testTheSimulationIsReproducibleFromItsSeeds() {
        let first = simulate(offeredPerSecond: 1600, seconds: 8)
        let second = simulate(offeredPerSecond: 1600, seconds: 8)
        XCTAssertEqual(first.latenciesMicros, second.latenciesMicros)
        XCTAssertEqual(first.limitSamples, second.limitSamples)
    }
}

extension AdaptiveConcurrencyLimit.Phase {
    fileprivate var isProbing: Bool {
        if case .probing = self { return true }
        return false
    }
}
