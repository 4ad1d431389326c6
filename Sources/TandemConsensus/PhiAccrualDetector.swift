import Foundation

/// A phi-accrual failure detector for one peer (Hayashibara et al.), with Akka's normal-distribution formula.
///
/// It turns the silence since the peer's last message into a suspicion level phi = -log10(P(silence this long)),
/// assuming inter-arrival times are normally distributed with the observed mean (plus an acceptable pause) and
/// standard deviation (at least a floor). It only measures: it never removes anyone; the caller decides what a
/// suspicion means (in Tandem, a follower starts a pre-vote and the quorum vote still decides).
///
/// Guards against the known failures of such detectors: a standard-deviation floor and an acceptable pause (no flapping on
/// a quiet LAN), a warm-up (no suspicion before samples exist), no sample for the first interval after a suspicion,
/// and a local-pause guard (when this node's own ticks arrive late it suspects no one for a while and records no
/// sample across the stall, since the silence was ours).
public struct PhiAccrualDetector: Sendable {
    /// Detector settings.
    public struct Config: Sendable, Equatable {
        public var threshold: Double = 8
        public var minStdDevMs: Double = 50
        public var acceptablePauseMs: Double = 500
        /// Inter-arrival samples kept (a ring).
        public var sampleWindow: Int = 200
        /// No suspicion until this long after monitoring started (one expected heartbeat interval).
        public var warmUpMs: Int64 = 100
        /// A gap between two local ticks above this is a local stall.
        public var localPauseThresholdMs: Int64 = 300
        /// How long after a local stall nothing is suspected.
        public var localPauseQuietMs: Int64 = 300
        public init() {}
    }

    /// What the detector concludes at a tick.
    public enum Verdict: Equatable, Sendable {
        /// Phi is below the threshold.
        case trusted(phi: Double)
        /// Phi crossed the threshold.
        case suspected(phi: Double)
        /// This node stalled recently: no one is suspected until `untilMs`.
        case localPause(untilMs: Int64)
    }

    public let config: Config
    /// Ring of inter-arrival samples in ms. Invariant: `samples.count <= config.sampleWindow`.
    private var samples: [Double] = []
    /// Next slot of the ring to overwrite once it is full.
    private var nextSlot = 0
    /// Running sums over `samples` (kept exact by subtracting what the ring overwrites).
    private var sumMs: Double = 0
    private var sumSquaresMs: Double = 0
    /// When the last message arrived; nil until the first.
    public private(set) var lastArrivalMs: Int64?
    /// When monitoring started (the first tick or arrival).
    private var startedAtMs: Int64?
    /// The last local tick, to notice local stalls.
    private var lastTickMs: Int64?
    /// Suspicion is muted until then because this node itself stalled.
    private var quietUntilMs: Int64 = .min
    /// Set when the next arrival's interval must not be recorded (it spans a suspicion or a local stall).
    private var skipNextSample = false

    public init(config: Config = Config()) {
        precondition(config.sampleWindow > 0 && config.minStdDevMs > 0 && config.threshold > 0)
        self.config = config
        samples.reserveCapacity(min(config.sampleWindow, 1024))
    }

    /// The number of inter-arrival samples held.
    public var sampleCount: Int { samples.count }

    /// A message from the peer arrived at `nowMs`.
    public mutating func onHeartbeat(nowMs: Int64) {
        if startedAtMs == nil { startedAtMs = nowMs }
        if let last = lastArrivalMs, nowMs >= last {
            let suspectedNow = phi(nowMs: nowMs) >= config.threshold
            if skipNextSample || suspectedNow {
                skipNextSample = false
            } else {
                record(Double(nowMs - last))
            }
        }
        lastArrivalMs = max(lastArrivalMs ?? nowMs, nowMs)
    }

    /// This node's own periodic tick at `nowMs`: notices local stalls and returns the verdict.
    public mutating func onTick(nowMs: Int64) -> Verdict {
        if startedAtMs == nil { startedAtMs = nowMs }
        if let lastTick = lastTickMs, nowMs - lastTick > config.localPauseThresholdMs {
            quietUntilMs = nowMs + config.localPauseQuietMs
            skipNextSample = true
        }
        lastTickMs = max(lastTickMs ?? nowMs, nowMs)
        if nowMs < quietUntilMs { return .localPause(untilMs: quietUntilMs) }
        let value = phi(nowMs: nowMs)
        if value >= config.threshold {
            // The interval that ends this suspicion is an outlier; keeping it would blunt the detector.
            skipNextSample = true
            return .suspected(phi: value)
        }
        return .trusted(phi: value)
    }

    /// Phi at `nowMs`: 0 during warm-up, before any sample and during a local pause.
    public func phi(nowMs: Int64) -> Double {
        guard let last = lastArrivalMs, let started = startedAtMs, !samples.isEmpty else { return 0 }
        guard nowMs - started >= config.warmUpMs, nowMs >= quietUntilMs else { return 0 }
        let count = Double(samples.count)
        let mean = sumMs / count
        let variance = max(0, sumSquaresMs / count - mean * mean)
        let stdDev = max(variance.squareRoot(), config.minStdDevMs)
        return Self.phi(elapsedMs: Double(nowMs - last), meanMs: mean + config.acceptablePauseMs, stdDevMs: stdDev)
    }

    /// Akka's formula: phi = -log10(1 - F(elapsed)), with the normal CDF F by the logistic approximation
    /// 1 / (1 + exp(-y * (1.5976 + 0.070566 * y^2))), y = (elapsed - mean) / stdDev.
    public static func phi(elapsedMs: Double, meanMs: Double, stdDevMs: Double) -> Double {
        let y = (elapsedMs - meanMs) / stdDevMs
        let e = exp(-y * (1.5976 + 0.070566 * y * y))
        // Written as Akka does to stay accurate in both tails: for large y, 1 - F = e / (1 + e).
        if elapsedMs > meanMs { return -log10(e / (1.0 + e)) }
        return -log10(1.0 - 1.0 / (1.0 + e))
    }

    /// The standardized silence y = (elapsed - mean) / stdDev at which phi reaches `phi`: the inverse of `phi`
    /// for a mean of 0 and a standard deviation of 1, by bisection (phi grows with elapsed). Negative for phi
    /// below phi(mean) = log10(2); about 5.2 for the default threshold 8.
    public static func standardScore(forPhi target: Double) -> Double {
        var low = -40.0
        var high = 40.0
        for _ in 0..<200 {
            let middle = (low + high) / 2
            if phi(elapsedMs: middle, meanMs: 0, stdDevMs: 1) >= target { high = middle } else { low = middle }
        }
        return high
    }

    private mutating func record(_ intervalMs: Double) {
        if samples.count < config.sampleWindow {
            samples.append(intervalMs)
        } else {
            let old = samples[nextSlot]
            sumMs -= old
            sumSquaresMs -= old * old
            samples[nextSlot] = intervalMs
            nextSlot = (nextSlot + 1) % config.sampleWindow
        }
        sumMs += intervalMs
        sumSquaresMs += intervalMs * intervalMs
        precondition(samples.count <= config.sampleWindow, "sample window overflow")
    }
}
