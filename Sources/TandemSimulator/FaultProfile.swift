import TandemConsensus

/// The faults one simulated run injects. Swarm testing: each seed draws its own profile, so some runs hammer one
/// fault hard while others mix them gently; a bug that needs one fault at a high rate is then found quickly.
public struct FaultProfile: Sendable, CustomStringConvertible {
    /// Probability that a message is lost.
    public var dropRate: Double = 0
    /// Probability that a message is delivered twice.
    public var duplicateRate: Double = 0
    /// One-way delay: base plus a uniform jitter (jitter also reorders messages).
    public var baseDelayMs: Int64 = 1
    public var jitterMs: Int64 = 2
    /// Mean partitions started per simulated second (symmetric, asymmetric or bridge).
    public var partitionsPerSecond: Double = 0
    /// Mean node crashes per simulated second; a crashed node restarts from what it persisted.
    public var crashesPerSecond: Double = 0
    /// Largest clock rate error of a node, as a fraction (0.02 = 2% fast or slow).
    public var maxClockDrift: Double = 0
    /// Largest fsync latency; a crash before the fsync completes loses that batch.
    public var maxDiskLatencyMs: Int64 = 0
    /// Mean local stalls per simulated second (a node's process freezes: no ticks, no messages handled).
    public var stallsPerSecond: Double = 0

    public init() {}

    /// No faults at all, 1-3 ms delivery.
    public static let none = FaultProfile()

    /// Draws a profile with every fault enabled at a seed-specific rate.
    public static func swarm(_ rng: inout SplitMix64) -> FaultProfile {
        var profile = FaultProfile()
        profile.dropRate = pick([0.0, 0.01, 0.05, 0.2], &rng)
        profile.duplicateRate = pick([0.0, 0.01, 0.05, 0.2], &rng)
        profile.baseDelayMs = pick([0, 1, 5], &rng)
        profile.jitterMs = pick([1, 5, 20, 80], &rng)
        profile.partitionsPerSecond = pick([0.0, 0.2, 0.5, 1.0], &rng)
        profile.crashesPerSecond = pick([0.0, 0.1, 0.3, 0.6], &rng)
        profile.maxClockDrift = pick([0.0, 0.0001, 0.01, 0.05], &rng)
        profile.maxDiskLatencyMs = pick([0, 1, 5, 20], &rng)
        profile.stallsPerSecond = pick([0.0, 0.0, 0.1, 0.3], &rng)
        return profile
    }

    /// Like `swarm`, but no fault is ever disabled (the CI gate: every fault class appears in every seed).
    public static func everyFault(_ rng: inout SplitMix64) -> FaultProfile {
        var profile = swarm(&rng)
        profile.dropRate = max(profile.dropRate, 0.01)
        profile.duplicateRate = max(profile.duplicateRate, 0.01)
        profile.partitionsPerSecond = max(profile.partitionsPerSecond, 0.2)
        profile.crashesPerSecond = max(profile.crashesPerSecond, 0.1)
        profile.maxClockDrift = max(profile.maxClockDrift, 0.0001)
        profile.maxDiskLatencyMs = max(profile.maxDiskLatencyMs, 1)
        profile.stallsPerSecond = max(profile.stallsPerSecond, 0.1)
        return profile
    }

    private static func pick<T>(_ choices: [T], _ rng: inout SplitMix64) -> T {
        choices[Int(rng.next() % UInt64(choices.count))]
    }

    public var description: String {
        "drop=\(dropRate) dup=\(duplicateRate) delay=\(baseDelayMs)+\(jitterMs)ms partitions/s=\(partitionsPerSecond) "
            + "crashes/s=\(crashesPerSecond) drift=\(maxClockDrift) disk=\(maxDiskLatencyMs)ms stalls/s=\(stallsPerSecond)"
    }
}
