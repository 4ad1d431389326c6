// TandemOverload: the pure decision logic of overload control — a GCRA rate limiter with a bounded key table
// (`GCRARateLimiter`), CoDel queue management (`CoDelController`, `BoundedCoDelQueue`) and a Gradient2-style
// adaptive concurrency limit towards the local app (`AdaptiveConcurrencyLimit`), plus the header values they produce.
//
// It owns only value-type state machines: every input, the time included, arrives as an argument, and every answer
// is a plain value the caller acts on. It must never do I/O, read a clock, sleep, start threads, allocate without a
// bound, or draw randomness that is not seeded by the caller; the proxy decides what a decision means on the wire.
// That is what makes every limit here reproducible in a unit test to the exact microsecond.
//
// The intended order per request: the per-key then the global `GCRARateLimiter` (429 when limited; per-key first
// so one abusive client is refused without spending the global budget); then `AdaptiveConcurrencyLimit.tryAcquire`
// towards the app; when refused, `BoundedCoDelQueue.enqueue` (503 when full). Whenever a request to the app
// finishes: `onSample`, `release`, then `removeStale`, and `dequeue` while `tryAcquire` succeeds (releasing the slot
// when the queue is empty); a timer calls `removeStale` too, so waiting requests are shed even if the app stalls.

/// A small deterministic random number generator (SplitMix64), for the jitter of the concurrency limiter and for
/// seeded simulations in tests. The same seed always yields the same sequence on every platform.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Creates a generator whose sequence is fixed by `seed`.
    public init(seed: UInt64) {
        state = seed
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

/// The largest integer whose square is at most `value`, exact: the floating-point estimate is only a starting point
/// and is corrected with integer arithmetic, so control laws built on it give the same answer on every machine.
func integerSquareRoot(_ value: Int64) -> Int64 {
    precondition(value >= 0 && value <= 1_000_000_000_000_000_000, "square roots are taken of 0...1e18")
    var root = Int64(Double(value).squareRoot())
    // The estimate is within a unit or two of the root for values up to 1e18; each loop runs at most twice.
    while root * root > value { root -= 1 }
    while (root + 1) * (root + 1) <= value { root += 1 }
    return root
}
