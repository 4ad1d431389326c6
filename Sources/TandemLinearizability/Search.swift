// Building blocks of the search: its budget, the operation bitset that keys the memo, and the event list.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The shared time and step budget of one check. It bounds the work of an exponential search.
struct SearchBudget {
    /// Steps left; the search stops when it reaches zero. Invariant: never negative.
    var stepsLeft: Int
    /// Steps taken so far, to decide when to read the clock.
    var stepsTaken = 0
    /// The monotonic time at or after which the search stops.
    let deadlineNs: UInt64
    /// How often (in steps) the clock is read: reading it every step would dominate the search.
    static let clockCheckIntervalSteps = 4096

    init(timeoutMs: Int, maxSteps: Int) {
        precondition(timeoutMs >= 0 && maxSteps >= 0, "budgets are not negative")
        stepsLeft = maxSteps
        deadlineNs = monotonicNowNs() &+ UInt64(timeoutMs) &* 1_000_000
    }

    /// Spends one step; false once the budget is exhausted. The clock is read on the first step and then every
    /// `clockCheckIntervalSteps`.
    mutating func spendStep() -> Bool {
        guard stepsLeft > 0 else { return false }
        if stepsTaken % Self.clockCheckIntervalSteps == 0 && monotonicNowNs() >= deadlineNs {
            stepsLeft = 0
            return false
        }
        stepsLeft -= 1
        stepsTaken += 1
        assert(stepsLeft >= 0)
        return true
    }
}

func monotonicNowNs() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// A fixed-size set of operation numbers, hashable so that it can key the memo.
struct OperationSet: Hashable {
    private(set) var words: [UInt64]

    init(capacity: Int) { words = Array(repeating: 0, count: (capacity + 63) / 64) }

    mutating func insert(_ member: Int) { words[member >> 6] |= 1 << UInt64(member & 63) }
    mutating func remove(_ member: Int) { words[member >> 6] &= ~(1 << UInt64(member & 63)) }
    func contains(_ member: Int) -> Bool { words[member >> 6] & (1 << UInt64(member & 63)) != 0 }
    var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    /// True when every member of `self` is in `other` (both of the same capacity). Written as a plain loop over
    /// the buffers: it runs on every memo probe, and generic iteration is slow in debug builds.
    func isSubset(of other: OperationSet) -> Bool {
        precondition(words.count == other.words.count, "sets of one partition have one capacity")
        return words.withUnsafeBufferPointer { mine in
            other.words.withUnsafeBufferPointer { theirs in
                var index = 0
                while index < mine.count {
                    if mine[index] & ~theirs[index] != 0 { return false }
                    index += 1
                }
                return true
            }
        }
    }
}

/// The call and return events of the partition's completed operations, as a doubly linked list in time order.
/// Nodes 0 (head) and 1 (tail) are sentinels; node 2 + 2i is the call of operation i and node 3 + 2i its return.
/// Unknown-outcome operations are not in the list: the search tracks them apart (see Linearize.swift).
struct EventList {
    static let head = 0
    static let tail = 1
    /// Invariant: `next[previous[n]] == n` and `previous[next[n]] == n` for every linked node n.
    var next: [Int]
    var previous: [Int]

    static func callNode(_ operation: Int) -> Int { 2 + 2 * operation }
    static func returnNode(_ operation: Int) -> Int { 3 + 2 * operation }
    static func operation(of node: Int) -> Int { (node - 2) / 2 }
    static func isCall(_ node: Int) -> Bool { node >= 2 && node % 2 == 0 }

    /// Builds the list of the operations for which `isCompleted` is true, in time order. Calls sort before
    /// returns at equal times, so operations that touch in one millisecond are concurrent.
    init(_ operations: [KVOperation], isCompleted: [Bool]) {
        var events: [(timeMs: Int64, kind: Int, node: Int)] = []
        events.reserveCapacity(2 * operations.count)
        for (index, operation) in operations.enumerated() where isCompleted[index] {
            events.append((operation.callTimeMs, 0, Self.callNode(index)))
            events.append((operation.returnTimeMs!, 1, Self.returnNode(index)))
        }
        events.sort { ($0.timeMs, $0.kind, $0.node) < ($1.timeMs, $1.kind, $1.node) }
        let nodeCount = 2 + 2 * operations.count
        next = Array(repeating: -1, count: nodeCount)
        previous = Array(repeating: -1, count: nodeCount)
        var last = Self.head
        for event in events {
            next[last] = event.node
            previous[event.node] = last
            last = event.node
        }
        next[last] = Self.tail
        previous[Self.tail] = last
    }

    /// Takes `node` out of the list; its own links are kept so that `relink` can put it back.
    mutating func unlink(_ node: Int) {
        next[previous[node]] = next[node]
        previous[next[node]] = previous[node]
    }

    /// Puts back a node removed by `unlink`. Nodes must be relinked in the reverse order of their removal.
    mutating func relink(_ node: Int) {
        next[previous[node]] = node
        previous[next[node]] = node
    }

    func isLinked(_ node: Int) -> Bool { previous[node] >= 0 && next[previous[node]] == node }
}
