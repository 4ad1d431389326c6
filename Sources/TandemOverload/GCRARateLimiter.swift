// GCRARateLimiter: per-key rate limits with the generic cell rate algorithm (virtual scheduling form), in exact
// integer arithmetic, over a key table that never grows past its capacity.

/// The answer to one request offered to a `GCRARateLimiter`.
public enum RateDecision: Hashable, Sendable {
    /// Serve the request. `remaining` more requests would pass right now; after `resetAfterMs` of silence the key
    /// has its whole burst again.
    case allowed(remaining: Int, resetAfterMs: Int64)
    /// Answer 429. The next request of this key passes after `retryAfterMs`; after `resetAfterMs` of silence the
    /// key has its whole burst again.
    case limited(retryAfterMs: Int64, resetAfterMs: Int64)

    /// True for `.allowed`.
    public var isAllowed: Bool {
        if case .allowed = self { return true }
        return false
    }

    /// Requests that would pass right now: 0 when limited.
    public var remaining: Int {
        switch self {
        case .allowed(let remaining, _): return remaining
        case .limited: return 0
        }
    }

    /// Milliseconds of silence after which the key has its whole burst again.
    public var resetAfterMs: Int64 {
        switch self {
        case .allowed(_, let resetAfterMs), .limited(_, let resetAfterMs): return resetAfterMs
        }
    }

    /// The `RateLimit` field value of the IETF draft, `"default";r=<remaining>;t=<seconds until reset, rounded up>`,
    /// to send with every answer (200 or 429) of a rate-limited route.
    public var rateLimitHeaderValue: String {
        "\"default\";r=\(remaining);t=\(RateLimitHeaders.secondsRoundedUp(resetAfterMs))"
    }

    /// The `Retry-After` value in whole seconds, rounded up so a client that obeys it is never refused again for
    /// the same reason (at least 1); nil when allowed.
    public var retryAfterSeconds: Int64? {
        guard case .limited(let retryAfterMs, _) = self else { return nil }
        return max(1, RateLimitHeaders.secondsRoundedUp(retryAfterMs))
    }
}

/// Header values shared by the rate limiters.
public enum RateLimitHeaders {
    /// Milliseconds to whole seconds, rounded up (0 stays 0).
    public static func secondsRoundedUp(_ milliseconds: Int64) -> Int64 {
        precondition(milliseconds >= 0, "durations are not negative")
        return milliseconds / 1000 + (milliseconds % 1000 == 0 ? 0 : 1)
    }
}

/// A per-key GCRA rate limiter: each key may send `burst` requests at once after an idle spell, then one every
/// `periodMs / count` milliseconds. A global limit is the same type with a capacity of one key (see
/// `check(nowMs:)`).
///
/// Call `check(key:nowMs:)` once per request before doing any work for it and act on the decision; nothing else
/// needs calling (no timers, no sweeps). `nowMs` must come from one monotonic clock and never go backwards.
///
/// Arithmetic is exact. Time is held as whole milliseconds plus a fraction in units of `1/count` ms, so the emission
/// interval `periodMs / count` is represented without rounding: a key that sends whenever allowed gets exactly
/// `burst + floor(elapsed * count / periodMs)` requests over `elapsed` ms, never fewer (Envoy #16407 shipped a
/// limiter that admitted less than configured) and never more. One caveat comes from the millisecond clock, not the
/// arithmetic: with `burst` 1 there is no tolerance to absorb a request that arrives a fraction of a millisecond
/// after its slot, so an interval that is not a whole number of milliseconds is effectively rounded up. Any burst
/// of 2 or more (the default is `count`) is exact.
///
/// The key table holds at most `keyCapacity` keys. A key whose theoretical arrival time is in the past is *idle*:
/// its state equals that of an unseen key, so forgetting it changes no decision. When a new key arrives at a full
/// table, the key that went idle first is evicted. A key with outstanding debt is never forgotten early: when every
/// key in a full table has debt, the newcomer is limited in one overflow bucket shared by all keys that do not fit
/// (the same rate and burst as one key). So a flood of distinct keys (say, random values of a `header:NAME` key)
/// neither forgives the clients that are being limited nor passes unlimited: it competes for one key's allowance.
/// Each check costs O(log keyCapacity).
public struct GCRARateLimiter: Sendable {
    /// What a limiter admits.
    public struct Configuration: Hashable, Sendable {
        /// Requests per period. Invariant: 1...1_000_000_000.
        public var count: Int
        /// The period in milliseconds (1000 for `/s`, 60000 for `/m`). Invariant: 1...3_600_000.
        public var periodMs: Int64
        /// Requests admitted back to back after an idle spell. Invariant: 1...1_000_000_000.
        public var burst: Int
        /// The most keys remembered at once. Invariant: 1...10_000_000.
        public var keyCapacity: Int

        /// `count` requests per `periodMs`, `burst` at once (default: one period's worth), remembering up to
        /// `keyCapacity` keys.
        public init(count: Int, periodMs: Int64, burst: Int? = nil, keyCapacity: Int = 100_000) {
            self.count = count
            self.periodMs = periodMs
            self.burst = burst ?? count
            self.keyCapacity = keyCapacity
        }

        /// The `RateLimit-Policy` field value of the IETF draft, `"default";q=<burst>;w=<seconds>`: the quota is the
        /// burst and the window is the time an empty allowance takes to refill completely (rounded up to whole
        /// seconds). With the default burst this is exactly the configured rate: `200/s` gives `q=200;w=1`.
        public var policyHeaderValue: String {
            // burst * periodMs fits Int64 by the invariants (at most 3.6e15).
            let refillUnits = Int64(burst) * periodMs
            let refillMs = refillUnits / Int64(count) + (refillUnits % Int64(count) == 0 ? 0 : 1)
            return "\"default\";q=\(burst);w=\(max(1, RateLimitHeaders.secondsRoundedUp(refillMs)))"
        }

        func validate() {
            precondition((1...1_000_000_000).contains(count), "rate counts are 1...1e9")
            precondition((1...3_600_000).contains(periodMs), "rate periods are 1 ms...1 h")
            precondition((1...1_000_000_000).contains(burst), "bursts are 1...1e9")
            precondition((1...10_000_000).contains(keyCapacity), "key tables hold 1...1e7 keys")
        }
    }

    /// The configuration this limiter enforces.
    public let configuration: Configuration
    /// Keys evicted while idle (no decision changed) since creation, for metrics.
    public private(set) var idleEvictionCount: Int64 = 0
    /// Requests decided in the shared overflow bucket (the table was full of keys with debt) since creation, for
    /// metrics. Nonzero means more distinct clients are active than the table holds.
    public private(set) var overflowCheckCount: Int64 = 0

    private let emissionInterval: FractionalInstant
    private let tolerance: FractionalInstant
    private var table: KeyTable
    /// The theoretical arrival time of the overflow bucket.
    private var overflowArrival = FractionalInstant(wholeMs: Int64.min / 2)

    /// Creates a limiter; the configuration must satisfy its documented invariants.
    public init(configuration: Configuration) {
        configuration.validate()
        self.configuration = configuration
        let count = Int64(configuration.count)
        emissionInterval = FractionalInstant(units: configuration.periodMs, denominator: count)
        // (burst - 1) * periodMs fits Int64 by the invariants (at most 3.6e15).
        tolerance = FractionalInstant(
            units: Int64(configuration.burst - 1) * configuration.periodMs, denominator: count)
        table = KeyTable(capacity: configuration.keyCapacity)
    }

    /// The number of keys remembered now. Invariant: at most `configuration.keyCapacity`.
    public var keyCount: Int { table.count }

    /// The longest key stored as given. A key from a request header can be as long as the header limit, and the
    /// table bounds keys, not bytes; longer keys are stored as their first `keyBytesMax / 2` bytes plus a 64-bit
    /// hash of the whole key (Swift's per-process seeded SipHash, so collisions cannot be engineered from outside).
    public static let keyBytesMax = 64

    /// Decides one request of `key` at `nowMs` and records it when allowed. A refused request costs the key
    /// nothing (its allowance is unchanged), so a client that retries after `retryAfterMs` is served.
    public mutating func check(key: String, nowMs: Int64) -> RateDecision {
        let now = FractionalInstant(wholeMs: nowMs)
        guard let (slot, eviction) = table.slot(for: GCRARateLimiter.storedKey(key), now: now) else {
            overflowCheckCount += 1
            let (decision, nextArrival) = decide(storedArrival: overflowArrival, now: now)
            if let nextArrival { overflowArrival = nextArrival }
            return decision
        }
        if eviction == .idle { idleEvictionCount += 1 }
        let (decision, nextArrival) = decide(storedArrival: table.theoreticalArrival(at: slot), now: now)
        if let nextArrival { table.setTheoreticalArrival(nextArrival, at: slot) }
        return decision
    }

    /// The decision for a key whose theoretical arrival time is `storedArrival`, and its new arrival time when the
    /// request is allowed (nil when refused: a refused request costs nothing).
    private func decide(storedArrival: FractionalInstant, now: FractionalInstant) -> (RateDecision, FractionalInstant?)
    {
        // A key whose theoretical arrival time is in the past has its whole burst: it starts from now.
        let arrival = storedArrival > now ? storedArrival : now
        let earliestAllowed = arrival.subtracting(tolerance, denominator: denominator)
        if earliestAllowed > now {
            let retryUnits = earliestAllowed.units(since: now, denominator: denominator)
            let resetUnits = arrival.units(since: now, denominator: denominator)
            return (.limited(retryAfterMs: msRoundedUp(retryUnits), resetAfterMs: msRoundedUp(resetUnits)), nil)
        }
        let nextArrival = arrival.adding(emissionInterval, denominator: denominator)
        // Requests that would still pass now: each one moves the arrival time by one emission interval, and they
        // pass while the arrival time stays within the tolerance of now.
        let limitInstant = now.adding(tolerance, denominator: denominator)
        var remaining = 0
        if limitInstant >= nextArrival {
            let headroomUnits = limitInstant.units(since: nextArrival, denominator: denominator)
            remaining = Int(headroomUnits / configuration.periodMs) + 1
        }
        assert(remaining < configuration.burst, "an allowed request always uses up one of the burst")
        let resetUnits = nextArrival.units(since: now, denominator: denominator)
        return (.allowed(remaining: remaining, resetAfterMs: msRoundedUp(resetUnits)), nextArrival)
    }

    /// Decides one request against a global limit: the same as `check(key:nowMs:)` with a single fixed key, so
    /// configure the global limiter with `keyCapacity: 1`.
    public mutating func check(nowMs: Int64) -> RateDecision {
        check(key: "", nowMs: nowMs)
    }

    private var denominator: Int64 { Int64(configuration.count) }

    /// `key` itself when short, else a bounded stand-in for it (see `keyBytesMax`).
    static func storedKey(_ key: String) -> String {
        guard key.utf8.count > keyBytesMax else { return key }
        var hasher = Hasher()
        hasher.combine(key)
        let digest = UInt64(bitPattern: Int64(hasher.finalize()))
        let prefix = String(decoding: key.utf8.prefix(keyBytesMax / 2), as: UTF8.self)
        return prefix + "#" + String(digest, radix: 16) + "#\(key.utf8.count)"
    }

    private func msRoundedUp(_ units: Int64) -> Int64 {
        units / denominator + (units % denominator == 0 ? 0 : 1)
    }

    /// Checks the key table's internal invariants; for tests.
    func checkInvariants() {
        table.checkInvariants()
    }
}

/// An instant on the limiter's clock: whole milliseconds plus `fraction / count` of a millisecond.
/// Invariant: 0 <= fraction < count of the owning limiter.
struct FractionalInstant: Comparable, Sendable {
    var wholeMs: Int64
    var fraction: Int64

    init(wholeMs: Int64, fraction: Int64 = 0) {
        self.wholeMs = wholeMs
        self.fraction = fraction
    }

    /// `units / denominator` milliseconds.
    init(units: Int64, denominator: Int64) {
        precondition(units >= 0 && denominator > 0, "durations are not negative")
        wholeMs = units / denominator
        fraction = units % denominator
    }

    static func < (lhs: FractionalInstant, rhs: FractionalInstant) -> Bool {
        lhs.wholeMs != rhs.wholeMs ? lhs.wholeMs < rhs.wholeMs : lhs.fraction < rhs.fraction
    }

    func adding(_ duration: FractionalInstant, denominator: Int64) -> FractionalInstant {
        var sum = FractionalInstant(wholeMs: wholeMs + duration.wholeMs, fraction: fraction + duration.fraction)
        if sum.fraction >= denominator {
            sum.fraction -= denominator
            sum.wholeMs += 1
        }
        return sum
    }

    func subtracting(_ duration: FractionalInstant, denominator: Int64) -> FractionalInstant {
        var difference = FractionalInstant(wholeMs: wholeMs - duration.wholeMs, fraction: fraction - duration.fraction)
        if difference.fraction < 0 {
            difference.fraction += denominator
            difference.wholeMs -= 1
        }
        return difference
    }

    /// The time from `earlier` to this instant in units of `1 / denominator` ms. Callers only measure spans of at
    /// most `burst` emission intervals, which keeps the product far from overflow (at most 3.6e15).
    func units(since earlier: FractionalInstant, denominator: Int64) -> Int64 {
        let units = (wholeMs - earlier.wholeMs) * denominator + (fraction - earlier.fraction)
        precondition(units >= 0, "spans are measured forwards")
        return units
    }
}
