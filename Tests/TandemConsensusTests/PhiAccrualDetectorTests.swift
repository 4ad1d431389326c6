import Foundation
import TandemConsensus
import XCTest

/// The failure detector's properties, each named after what it guarantees.
final class PhiAccrualDetectorTests: XCTestCase {
    /// Feeds heartbeats at the given arrival times with 10 ms ticks in between; returns the detector.
    func detector(heartbeatsAt arrivals: [Int64], config: PhiAccrualDetector.Config = .init()) -> PhiAccrualDetector {
        var detector = PhiAccrualDetector(config: config)
        var tickMs: Int64 = 0
        for arrival in arrivals {
            while tickMs < arrival {
                _ = detector.onTick(nowMs: tickMs)
                tickMs += 10
            }
            detector.onHeartbeat(nowMs: arrival)
        }
        return detector
    }

    /// The first tick (10 ms resolution) at which the detector suspects, after `fromMs`.
    func firstSuspicion(_ detector: inout PhiAccrualDetector, fromMs: Int64, limitMs: Int64 = 10_000) -> Int64? {
        var now = fromMs
        while now < fromMs + limitMs {
            if case .suspected = detector.onTick(nowMs: now) { return now }
            now += 10
        }
        return nil
    }

    func testPhiFollowsAkkasLogisticApproximation() {
        XCTAssertEqual(
            PhiAccrualDetector.phi(elapsedMs: 600, meanMs: 600, stdDevMs: 50), -log10(0.5), accuracy: 1e-9,
            "at the mean, half the mass remains: phi = log10(2)")
        let y = 2.0, e = exp(-y * (1.5976 + 0.070566 * y * y))
        XCTAssertEqual(
            PhiAccrualDetector.phi(elapsedMs: 700, meanMs: 600, stdDevMs: 50), -log10(e / (1 + e)),
            accuracy: 1e-9)
        XCTAssertLessThan(PhiAccrualDetector.phi(elapsedMs: 100, meanMs: 600, stdDevMs: 50), 0.01)
        XCTAssertGreaterThan(PhiAccrualDetector.phi(elapsedMs: 900, meanMs: 600, stdDevMs: 50), 8)
    }

    func testRegularHeartbeatsThatStopAreSuspectedAboutNineHundredMillisecondsLater() {
        let arrivals = (1...100).map { Int64($0) * 100 }
        var detector = detector(heartbeatsAt: arrivals)
        let suspectedAt = firstSuspicion(&detector, fromMs: arrivals.last!)
        let detectionMs = suspectedAt.map { $0 - arrivals.last! }
        // Mean 100 ms + acceptable pause 500 ms, sigma floored at 50 ms: phi crosses 8 near 880 ms.
        XCTAssertNotNil(detectionMs)
        XCTAssertGreaterThanOrEqual(detectionMs ?? 0, 850)
        XCTAssertLessThanOrEqual(detectionMs ?? .max, 950)
    }

    func testJitteredHeartbeatsRaiseNoSuspicion() {
        var rng = SplitMix64(seed: 7)
        var arrivals: [Int64] = []
        var sent: Int64 = 0
        for _ in 0..<3000 {  // Five minutes of heartbeats, each delayed by 0-20 ms (so intervals vary 80-120 ms).
            sent += 100
            arrivals.append(sent + Int64(rng.next() % 21))
        }
        arrivals.sort()
        var detector = PhiAccrualDetector()
        var tick: Int64 = 0
        var worstPhi = 0.0
        for arrival in arrivals {
            while tick < arrival {
                if case .suspected(let phi) = detector.onTick(nowMs: tick) {
                    XCTFail("suspected at \(tick) ms, phi \(phi)")
                }
                worstPhi = max(worstPhi, detector.phi(nowMs: tick))
                tick += 10
            }
            detector.onHeartbeat(nowMs: arrival)
        }
        XCTAssertLessThan(worstPhi, 1, "20 ms of jitter stays far below the threshold")
    }

    func testASingleLatePacketOnAQuietLanDoesNotCrossTheThreshold() {
        // Perfectly regular heartbeats (sigma 0) and then one arrives 400 ms late: the floor and pause absorb it.
        var arrivals = (1...200).map { Int64($0) * 100 }
        arrivals.append(arrivals.last! + 500)
        var detector = PhiAccrualDetector()
        var tick: Int64 = 0
        for arrival in arrivals {
            while tick < arrival {
                if case .suspected = detector.onTick(nowMs: tick) { XCTFail("suspected at \(tick) ms") }
                tick += 10
            }
            detector.onHeartbeat(nowMs: arrival)
        }
    }

    func testNoSuspicionDuringWarmUpBeforeAnySampleExists() {
        var detector = PhiAccrualDetector()
        XCTAssertEqual(detector.onTick(nowMs: 0), .trusted(phi: 0))
        detector.onHeartbeat(nowMs: 5)  // One arrival: no interval yet.
        for now in stride(from: Int64(10), through: 20_000, by: 10) {
            guard detector.onTick(nowMs: now) == .trusted(phi: 0) else {
                return XCTFail("no samples, no suspicion, but not at \(now) ms")
            }
        }
        XCTAssertEqual(detector.sampleCount, 0)
    }

    func testTheIntervalEndingASuspicionIsNotRecorded() {
        let arrivals = (1...50).map { Int64($0) * 100 }
        var detector = detector(heartbeatsAt: arrivals)
        XCTAssertEqual(detector.sampleCount, 49)
        let suspectedAt = firstSuspicion(&detector, fromMs: arrivals.last!)
        XCTAssertNotNil(suspectedAt)
        detector.onHeartbeat(nowMs: suspectedAt! + 5)  // The peer is back after a long silence.
        XCTAssertEqual(detector.sampleCount, 49, "the outlier interval is not a sample")
        detector.onHeartbeat(nowMs: suspectedAt! + 105)
        XCTAssertEqual(detector.sampleCount, 50, "the next regular interval is")
        XCTAssertLessThan(detector.phi(nowMs: suspectedAt! + 150), 1)
    }

    func testALocalStallSuspectsNoOneAndRecordsNoSampleAcrossIt() {
        let arrivals = (1...50).map { Int64($0) * 100 }
        var detector = detector(heartbeatsAt: arrivals)
        let samples = detector.sampleCount
        // This node freezes for 2 s: its next tick comes late. The peer's silence was ours.
        let wake = arrivals.last! + 2000
        guard case .localPause(let untilMs) = detector.onTick(nowMs: wake) else {
            return XCTFail("a tick after a 2 s gap must report a local pause")
        }
        XCTAssertGreaterThan(untilMs, wake)
        XCTAssertEqual(detector.phi(nowMs: wake + 10), 0, "no suspicion while quiet")
        detector.onHeartbeat(nowMs: wake + 20)  // Queued heartbeats are read after the stall.
        XCTAssertEqual(detector.sampleCount, samples, "the interval spanning the stall is not recorded")
        detector.onHeartbeat(nowMs: wake + 120)
        XCTAssertEqual(detector.sampleCount, samples + 1)
        if case .suspected = detector.onTick(nowMs: untilMs + 10) { XCTFail("the peer spoke after the stall") }
    }

    func testAPeerThatDiedDuringOurStallIsSuspectedOnceTheQuietPeriodEnds() {
        let arrivals = (1...50).map { Int64($0) * 100 }
        var detector = detector(heartbeatsAt: arrivals)
        let wake = arrivals.last! + 2000
        _ = detector.onTick(nowMs: wake)
        let suspectedAt = firstSuspicion(&detector, fromMs: wake + 10)
        XCTAssertNotNil(suspectedAt)
        XCTAssertLessThanOrEqual(suspectedAt ?? .max, wake + 400, "suspicion resumes after the quiet period")
    }

    func testTheSampleWindowIsBounded() {
        var config = PhiAccrualDetector.Config()
        config.sampleWindow = 10
        let arrivals = (1...100).map { Int64($0) * 100 }
        let detector = detector(heartbeatsAt: arrivals, config: config)
        XCTAssertEqual(detector.sampleCount, 10)
    }

    func testOldSamplesLeaveTheWindow() {
        var config = PhiAccrualDetector.Config()
        config.sampleWindow = 20
        // 100 slow intervals (1 s), then 20 fast ones (100 ms): only the fast ones remain, so the mean is 100 ms.
        var arrivals = (1...100).map { Int64($0) * 1000 }
        arrivals += (1...20).map { arrivals.last! + Int64($0) * 100 }
        var detector = detector(heartbeatsAt: arrivals, config: config)
        let suspectedAt = firstSuspicion(&detector, fromMs: arrivals.last!)
        XCTAssertLessThan((suspectedAt ?? .max) - arrivals.last!, 1000, "suspicion reflects the recent mean")
    }
}
