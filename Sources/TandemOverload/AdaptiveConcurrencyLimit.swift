// AdaptiveConcurrencyLimit: how many requests may be in flight to the local app at once, following the app's
// latency (Gradient2, as in Netflix concurrency-limits), so a slow app is not buried under a queue it cannot serve.

/// An exponential moving average that starts as a plain mean over its first `warmupSamples` samples, so the first
/// few samples do not leave it stuck near zero or near one outlier.
struct ExponentialAverage: Hashable, Sendable {
    /// The weight of each new sample after warm-up: 2 / (window + 1).
    let factor: Double
    let warmupSamples: Int
    /// Samples seen, saturating at `warmupSamples`. Invariant: 0 <= samples <= warmupSamples.
    private(set) var samples = 0
    private(set) var value: Double = 0

    init(windowSamples: Int, warmupSamples: Int) {
        precondition(windowSamples >= 1 && warmupSamples >= 1, "windows hold at least one sample")
        factor = 2.0 / Double(windowSamples + 1)
        self.warmupSamples = warmupSamples
    }

    mutating func add(_ sample: Double) {
        if samples < warmupSamples {
            samples += 1
            value += (sample - value) / Double(samples)
        } else {
            value += (sample - value) * factor
        }
    }

    mutating func scale(by multiplier: Double) {
        value *= multiplier
    }
}

/// A Gradient2-style adaptive concurrency limit.
///
/// How to drive it: before sending a request to the app call `tryAcquire()`; on `false` the request waits (briefly,
/// in a bounded queue) or is shed with 503 `overloaded`. When the app answers, call `onSample` with the round-trip
/// time and the in-flight count `inflight` read right after that request's `tryAcquire`, then `release()`. A request
/// that ends without a usable latency (client gone, cancelled) only calls `release()`. `limit` is the value to
/// export as a metric.
///
/// The rule, per sample: `longRTT` is an exponential average over about `longWindowSamples` samples (the app's
/// normal latency), `shortRTT` one over about `shortWindowSamples` (its latency now), and
///
///     gradient = clamp(rttTolerance * longRTT / shortRTT, 0.5, 1.0)     (0.5 when the app dropped the request)
///     limit    = (1 - smoothing) * limit + smoothing * (limit * gradient + min(queueSize, sqrt(limit)))
///
/// clamped to `minLimit...maxLimit`. Latency within `rttTolerance` of normal lets the limit grow by
/// `smoothing * queueSize` (0.8) per sample; higher latency shrinks it, by at most `smoothing / 2` (10%) of the limit
/// per sample. A sample taken while fewer than half of the limit were in flight changes nothing unless it was
/// dropped: the app, not the limit, bounded throughput then. When the short average falls below half the long one
/// (an overload has passed), the long average is pulled down by 5% per sample instead of waiting for it to decay.
/// A shrinking limit revokes nothing: requests already in flight finish, and `tryAcquire` refuses until enough
/// have been released.
///
/// Gradient2 alone lets `longRTT` slowly absorb a standing queue under sustained overload, so the limit creeps up
/// (it ratchets: the normal latency follows the queued latency, then the limit grows again). To anchor it, every
/// `probeIntervalSamples` samples (jittered by up to a quarter, from the seeded generator, so replicas do not probe
/// together) the limiter re-measures the app's latency at `minLimit` concurrency: it holds the limit at the floor
/// until in-flight requests drain to it, takes `probeSamples` samples started at or below the floor, and resets
/// `longRTT` to their mean. A new limiter starts with such a measurement, so its first idea of normal latency is
/// not taken from a queue. The floor is never 1 (PITFALLS: Envoy's minimum-RTT probe at concurrency 1 caused 503
/// bursts), and a probe costs a few app round trips of reduced concurrency.
///
/// Deterministic: the same configuration, seed and sample sequence give the same limits on every machine.
public struct AdaptiveConcurrencyLimit: Sendable {
    /// Tuning; the defaults follow Netflix's Gradient2 except for the floor, the long window (sampled per request
    /// here) and the probe.
    public struct Configuration: Hashable, Sendable {
        /// The limit before any sample. Invariant: minLimit <= initialLimit <= maxLimit.
        public var initialLimit: Int = 20
        /// The floor. Invariant: 2 <= minLimit (never probe at concurrency 1).
        public var minLimit: Int = 4
        /// The ceiling. Invariant: minLimit <= maxLimit <= 1_000_000.
        public var maxLimit: Int = 1000
        /// Headroom added per update, so the limit keeps probing upwards while latency is normal; below a limit of
        /// `queueSize^2` the headroom is `sqrt(limit)` instead. Invariant: >= 0.
        public var queueSize: Double = 4
        /// The weight of each new limit. Invariant: 0 < smoothing <= 1.
        public var smoothing: Double = 0.2
        /// How far above normal the short-window latency may be before the limit shrinks (Netflix's default, 1.5).
        /// Measured on the simulated 8-worker app at 2x overload: 1.5 keeps 98% goodput with a median of twice the
        /// service time; 1.0 (the bare `long / short` gradient) holds the median at 1.2x but loses about 8% of
        /// goodput, because latency noise alone then pushes the limit below the worker count. Invariant: >= 1.
        public var rttTolerance: Double = 1.5
        /// Samples in the long (normal latency) window. Netflix's 600 assumes one sample per aggregation window of
        /// about a second; fed one sample per request, a window that short follows a growing queue within a second
        /// and the limit runs away to `maxLimit` (measured in the simulation test), hence 20000 requests here.
        /// Invariant: >= shortWindowSamples.
        public var longWindowSamples: Int = 20_000
        /// Samples in the short (current latency) window. Invariant: >= 1.
        public var shortWindowSamples: Int = 10
        /// Samples between latency re-measurements at the floor; nil turns them off. Invariant: nil or >= 100.
        public var probeIntervalSamples: Int? = 10_000
        /// Samples taken at the floor per re-measurement. Invariant: 1...1000.
        public var probeSamples: Int = 20

        /// The defaults.
        public init() {}
    }

    /// Where the limiter is in its re-measurement cycle.
    public enum Phase: Hashable, Sendable {
        /// Following the gradient; `samplesUntilProbe` samples until the next re-measurement.
        case tracking(samplesUntilProbe: Int)
        /// Holding the limit at the floor, collecting samples of the app's uncongested latency.
        case probing(collected: Int, sumMicros: Double)
    }

    /// The configuration in force.
    public let configuration: Configuration
    /// The limit as a real number; `limit` is its floor. Invariant: minLimit <= estimatedLimit <= maxLimit.
    public private(set) var estimatedLimit: Double
    /// Requests admitted and not yet released. Invariant: 0 <= inflight.
    public private(set) var inflight = 0
    /// The re-measurement phase, for metrics and tests.
    public private(set) var phase: Phase
    private var longRTT: ExponentialAverage
    private var shortRTT: ExponentialAverage
    private var generator: SplitMix64

    /// Creates a limiter at `initialLimit`; `seed` fixes the jitter of the re-measurement schedule.
    public init(configuration: Configuration = Configuration(), seed: UInt64) {
        Self.validate(configuration)
        self.configuration = configuration
        estimatedLimit = Double(configuration.initialLimit)
        longRTT = ExponentialAverage(windowSamples: configuration.longWindowSamples, warmupSamples: 10)
        shortRTT = ExponentialAverage(windowSamples: configuration.shortWindowSamples, warmupSamples: 1)
        generator = SplitMix64(seed: seed)
        // The first samples come at whatever concurrency the traffic brings; measuring the app's latency at the
        // floor first gives the long average an uncongested starting point instead of a queued one.
        phase =
            configuration.probeIntervalSamples == nil
            ? .tracking(samplesUntilProbe: Int.max)
            : .probing(collected: 0, sumMicros: 0)
    }

    /// The current concurrency limit: `tryAcquire` admits while `inflight < limit`. During a re-measurement this is
    /// `minLimit`.
    public var limit: Int {
        if case .probing = phase { return configuration.minLimit }
        return Int(estimatedLimit)
    }

    /// The app's normal latency as the limiter sees it (the long-window average), in microseconds.
    public var longRTTMicros: Double { longRTT.value }

    /// The app's current latency (the short-window average), in microseconds.
    public var shortRTTMicros: Double { shortRTT.value }

    /// Admits one request when fewer than `limit` are in flight, counting it as in flight.
    public mutating func tryAcquire() -> Bool {
        guard inflight < limit else { return false }
        inflight += 1
        return true
    }

    /// Ends one admitted request. Every successful `tryAcquire` is matched by exactly one `release`.
    public mutating func release() {
        precondition(inflight > 0, "release matches an earlier successful tryAcquire")
        inflight -= 1
    }

    /// Feeds one completed request: its round trip to the app, the in-flight count right after it was admitted, and
    /// whether the app failed it in a way that signals overload (timeout, 503, connection refused).
    public mutating func onSample(rttMicros: Int64, inflightAtStart: Int, didDrop: Bool) {
        precondition(rttMicros >= 0 && inflightAtStart >= 0, "samples are not negative")
        switch phase {
        case .probing(let collected, let sumMicros):
            // A failed request's round trip is a timeout or an error path, not the app's latency.
            guard !didDrop else { return }
            onProbeSample(rttMicros: rttMicros, inflightAtStart: inflightAtStart, collected: collected, sum: sumMicros)
        case .tracking(let samplesUntilProbe):
            onTrackingSample(rttMicros: rttMicros, inflightAtStart: inflightAtStart, didDrop: didDrop)
            if samplesUntilProbe <= 1 && configuration.probeIntervalSamples != nil {
                phase = .probing(collected: 0, sumMicros: 0)
            } else {
                phase = .tracking(samplesUntilProbe: max(0, samplesUntilProbe - 1))
            }
        }
        assert(estimatedLimit >= Double(configuration.minLimit) && estimatedLimit <= Double(configuration.maxLimit))
    }

    private mutating func onTrackingSample(rttMicros: Int64, inflightAtStart: Int, didDrop: Bool) {
        // A zero round trip carries no information and would divide by zero below.
        let rtt = Double(max(1, rttMicros))
        shortRTT.add(rtt)
        longRTT.add(rtt)
        if longRTT.value > 2 * shortRTT.value {
            longRTT.scale(by: 0.95)
        }
        // An app-limited sample says nothing about how much more the app could take.
        if Double(inflightAtStart) < estimatedLimit / 2 && !didDrop { return }
        let ratio = configuration.rttTolerance * longRTT.value / shortRTT.value
        let gradient = didDrop ? 0.5 : min(1.0, max(0.5, ratio))
        // Headroom shrinks with the limit (sqrt below queueSize^2) so that sustained worst gradients can bring the
        // limit down to the floor: with a constant headroom q, gradient 0.5 would stop at 2q.
        let headroom = min(configuration.queueSize, estimatedLimit.squareRoot())
        let target = estimatedLimit * gradient + headroom
        let smoothed = estimatedLimit * (1 - configuration.smoothing) + target * configuration.smoothing
        estimatedLimit = min(Double(configuration.maxLimit), max(Double(configuration.minLimit), smoothed))
    }

    private mutating func onProbeSample(rttMicros: Int64, inflightAtStart: Int, collected: Int, sum: Double) {
        // Samples admitted before the limit fell to the floor still carry the old queueing; skip them.
        guard inflightAtStart <= configuration.minLimit else { return }
        let rtt = Double(max(1, rttMicros))
        let collectedNow = collected + 1
        guard collectedNow >= configuration.probeSamples else {
            phase = .probing(collected: collectedNow, sumMicros: sum + rtt)
            return
        }
        let mean = (sum + rtt) / Double(collectedNow)
        longRTT = ExponentialAverage(windowSamples: configuration.longWindowSamples, warmupSamples: 1)
        longRTT.add(mean)
        shortRTT = ExponentialAverage(windowSamples: configuration.shortWindowSamples, warmupSamples: 1)
        shortRTT.add(mean)
        phase = .tracking(samplesUntilProbe: nextProbeDistance())
    }

    /// The probe interval, jittered by up to a quarter either way.
    private mutating func nextProbeDistance() -> Int {
        guard let interval = configuration.probeIntervalSamples else { return Int.max }
        let spread = UInt64(interval / 2)
        return interval - interval / 4 + Int(generator.next() % (spread + 1))
    }

    private static func validate(_ configuration: Configuration) {
        precondition(configuration.minLimit >= 2, "the floor is above 1 (PITFALLS: probing at 1 caused 503 bursts)")
        precondition(configuration.minLimit <= configuration.initialLimit, "the initial limit is above the floor")
        precondition(configuration.initialLimit <= configuration.maxLimit, "the initial limit is below the ceiling")
        precondition(configuration.maxLimit <= 1_000_000, "the ceiling is at most 1e6")
        precondition(configuration.queueSize >= 0, "queue headroom is not negative")
        precondition(configuration.smoothing > 0 && configuration.smoothing <= 1, "smoothing is in (0, 1]")
        precondition(configuration.rttTolerance >= 1, "the tolerance is at least 1")
        precondition(configuration.shortWindowSamples >= 1, "windows hold a sample")
        precondition(configuration.longWindowSamples >= configuration.shortWindowSamples, "long is not shorter")
        precondition(configuration.probeIntervalSamples.map { $0 >= 100 } ?? true, "probes are at least 100 apart")
        precondition((1...1000).contains(configuration.probeSamples), "probes take 1...1000 samples")
    }
}
