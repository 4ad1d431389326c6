// CoDelController: the controlled-delay decision of RFC 8289 (Nichols & Jacobson), asked once per dequeued element:
// serve it, or shed it because the queue has stood above its target delay for longer than an interval.

/// The CoDel decision logic of RFC 8289, one element at a time, in integer microseconds.
///
/// How to drive it: every time the queue's consumer takes an element, call `onDequeue` with the element's sojourn
/// time (now minus its enqueue time). `true` means shed it (answer 503 `overloaded`) and immediately take the next
/// element and ask again, at the same `nowMicros`; `false` means serve it. When the consumer finds the queue empty,
/// call `onQueueEmpty()`. `BoundedCoDelQueue` does all of this for you.
///
/// The behaviour, as in the RFC: while every sojourn is below `targetMicros` nothing is shed. Once sojourns have
/// stayed at or above the target for a whole `intervalMicros`, the controller enters the dropping state and sheds
/// one element; it then sheds the next element due at `intervalMicros / sqrt(count)` after the previous drop, `count`
/// growing by one per drop, until a sojourn falls below the target (or the queue empties), which ends the dropping
/// state. Re-entering soon after leaving (within 16 intervals) resumes near the previous drop rate instead of 1
/// (the Linux variant the RFC prints). An element that is the last in the queue is never shed: a queue of one is not
/// a standing queue (the RFC's `bytes() <= maxpacket` clause).
///
/// The RFC's per-call drop loop is split across calls here: after a drop, the control-law step for the next drop is
/// applied when the next element is examined, and only if that element is still above target, exactly as the RFC's
/// loop does. Square roots are exact integer roots, so drop times are identical on every machine.
public struct CoDelController: Hashable, Sendable {
    /// The two parameters of CoDel.
    public struct Configuration: Hashable, Sendable {
        /// The acceptable standing delay: `TANDEM_QUEUE_TARGET`, 5 ms by default. Invariant: 0 < target < interval.
        public var targetMicros: Int64
        /// How long the delay may stay above target before shedding starts: about one worst-case round trip,
        /// 100 ms by default. Invariant: interval <= 1e9 us (so its square fits the exact control law).
        public var intervalMicros: Int64

        /// CoDel with the given target (default 5 ms) and interval (default 100 ms).
        public init(targetMicros: Int64 = 5_000, intervalMicros: Int64 = 100_000) {
            self.targetMicros = targetMicros
            self.intervalMicros = intervalMicros
        }
    }

    /// The largest drop count: the spacing `interval / sqrt(count)` is then a ten-thousandth of an interval, and the
    /// counter cannot grow without bound during a very long overload.
    public static let dropCountMax = 100_000_000

    /// What the next `onDequeue` must do first, left over from the previous element's decision.
    private enum Carry: Hashable, Sendable {
        case none
        /// The previous element started the dropping state; the RFC serves the next one unconditionally.
        case enteredDropping
        /// The previous element was shed while dropping; the next drop time moves on if this one is above target.
        case droppedWhileDropping
    }

    /// The configuration in force.
    public let configuration: Configuration
    /// True while CoDel is shedding (the RFC's `dropping_`).
    public private(set) var isDropping = false
    /// Drops in the current dropping state, or the count carried over on re-entry (the RFC's `count_`).
    /// Invariant: 0 <= dropCount <= dropCountMax.
    public private(set) var dropCount = 0
    /// `dropCount` when the last dropping state began (the RFC's `lastcount_`).
    private var lastDropCount = 0
    /// When the next drop is due while dropping (the RFC's `drop_next_`).
    private var nextDropMicros: Int64 = 0
    /// When the sojourn time will have been above target for a whole interval; nil while below target (the RFC's
    /// `first_above_time_`, where 0 means unset).
    private var aboveTargetDeadlineMicros: Int64?
    private var carry = Carry.none

    /// Creates a controller in the non-dropping state.
    public init(configuration: Configuration = Configuration()) {
        precondition(configuration.targetMicros > 0, "the CoDel target is positive")
        precondition(configuration.targetMicros < configuration.intervalMicros, "the target is below the interval")
        precondition(configuration.intervalMicros <= 1_000_000_000, "the interval is at most 1000 s")
        self.configuration = configuration
    }

    /// Decides one element taken from the queue at `nowMicros` after waiting `sojournMicros`. Pass
    /// `queueEmptyAfter: true` when it was the last element. Returns true when the element must be shed.
    public mutating func onDequeue(sojournMicros: Int64, nowMicros: Int64, queueEmptyAfter: Bool = false) -> Bool {
        precondition(sojournMicros >= 0, "sojourn times are not negative")
        let okToDrop = noteSojourn(sojournMicros, nowMicros: nowMicros, queueEmptyAfter: queueEmptyAfter)
        let carried = carry
        carry = .none
        guard isDropping else {
            guard okToDrop else { return false }
            enterDropping(nowMicros: nowMicros)
            return true
        }
        if carried == .enteredDropping { return false }
        guard okToDrop else {
            isDropping = false
            return false
        }
        if carried == .droppedWhileDropping {
            nextDropMicros = controlLaw(after: nextDropMicros, count: dropCount)
        }
        guard nowMicros >= nextDropMicros else { return false }
        dropCount = min(dropCount + 1, CoDelController.dropCountMax)
        carry = .droppedWhileDropping
        return true
    }

    /// Records that the consumer found the queue empty at this moment: the standing queue is gone.
    public mutating func onQueueEmpty() {
        aboveTargetDeadlineMicros = nil
        isDropping = false
        carry = .none
    }

    /// The time between drops at drop count `count`: `interval / sqrt(count)`, rounded down, computed exactly as
    /// `isqrt(interval^2 / count)`.
    public static func dropSpacingMicros(intervalMicros: Int64, count: Int) -> Int64 {
        precondition(count >= 1, "the control law starts at count 1")
        precondition(intervalMicros > 0 && intervalMicros <= 1_000_000_000, "intervals are 1 us...1000 s")
        return integerSquareRoot(intervalMicros * intervalMicros / Int64(count))
    }

    /// The RFC's `dodequeue` bookkeeping: true when the sojourn has stayed at or above target for an interval.
    private mutating func noteSojourn(_ sojournMicros: Int64, nowMicros: Int64, queueEmptyAfter: Bool) -> Bool {
        if sojournMicros < configuration.targetMicros || queueEmptyAfter {
            aboveTargetDeadlineMicros = nil
            return false
        }
        guard let deadline = aboveTargetDeadlineMicros else {
            aboveTargetDeadlineMicros = nowMicros + configuration.intervalMicros
            return false
        }
        return nowMicros >= deadline
    }

    private mutating func enterDropping(nowMicros: Int64) {
        isDropping = true
        carry = .enteredDropping
        // If the queue went bad again soon after the last dropping state, the drop rate that controlled it then is a
        // good starting point now (RFC 8289 section 5.5, the Linux variant). The next-drop time is at most an
        // interval after the last drop, so `now - nextDrop` approximates the time since the last drop.
        let delta = dropCount - lastDropCount
        dropCount = 1
        if delta > 1 && nowMicros - nextDropMicros < 16 * configuration.intervalMicros {
            dropCount = delta
        }
        nextDropMicros = controlLaw(after: nowMicros, count: dropCount)
        lastDropCount = dropCount
        assert((1...CoDelController.dropCountMax).contains(dropCount), "the drop count stays within its bound")
    }

    private func controlLaw(after timeMicros: Int64, count: Int) -> Int64 {
        timeMicros + CoDelController.dropSpacingMicros(intervalMicros: configuration.intervalMicros, count: count)
    }
}
