// The Wing–Gong–Lowe search over one partition, with Lowe's memoization of (linearized set, model state).
//
// The history becomes a doubly linked list of call and return events in time order. The search walks it from the
// front: at a call it tries to linearize that operation now (apply it to the model, remove its call and return
// from the list, remember the choice on a stack, restart from the front); at a return it has met an operation that
// must already have been linearized but was not, so it undoes the most recent choice and tries the next call after
// it. A (set of linearized operations, state) pair that was reached before is not explored again: whatever
// followed it then fails the same way now. Unknown-outcome operations have no return event, so the search never
// forces them; it succeeds as soon as every operation that returned is linearized.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The result of searching one partition.
enum PartitionOutcome {
    case linearizable
    case violation(key: String, explanation: String)
    case budgetExhausted
}

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
}

/// A memo entry: this set of operations linearized, leaving the model in this state.
struct Configuration<State: Hashable>: Hashable {
    var linearized: OperationSet
    var state: State
}

/// The event list of one partition: nodes 0 (head) and 1 (tail) are sentinels, node 2 + 2i is the call of
/// operation i and node 3 + 2i its return (linked only when the operation returned with a known output).
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

    /// Builds the list of `operations` in time order. Calls sort before returns at equal times, so operations
    /// that touch in one millisecond are concurrent.
    init(_ operations: [KVOperation]) {
        var events: [(timeMs: Int64, kind: Int, node: Int)] = []
        events.reserveCapacity(2 * operations.count)
        for (index, operation) in operations.enumerated() {
            events.append((operation.callTimeMs, 0, Self.callNode(index)))
            if operation.output != nil, let returnTimeMs = operation.returnTimeMs {
                events.append((returnTimeMs, 1, Self.returnNode(index)))
            }
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

/// The most memo entries one partition may create; beyond it the search gives up (it is exponential at worst).
let memoEntriesMax = 2_000_000

/// A choice the search made and may undo: the call node linearized and the state before it.
private struct Choice<State> {
    var callNode: Int
    var stateBefore: State
}

/// What the deepest failed attempt looked like, kept for the explanation.
private struct DeepestFailure<State> {
    var linearizedCount = -1
    var blockedOperation = 0
    var stateAtBlock: State?
    var recentOperations: [Int] = []
}

/// Searches for a linearization of `indexed` under `model`. See the file header for the algorithm.
func searchLinearization<Model: SequentialModel>(
    _ indexed: [IndexedOperation], model: Model, budget: inout SearchBudget, reportKey: String
) -> PartitionOutcome {
    let operations = indexed.map(\.operation)
    var list = EventList(operations)
    let returns = operations.map { $0.output != nil && $0.returnTimeMs != nil }
    // Invariant: returnsLeft == number of return nodes still linked; the search succeeds when it reaches 0.
    var returnsLeft = returns.filter { $0 }.count
    var state = model.initialState
    var linearized = OperationSet(capacity: operations.count)
    var memo = Set<Configuration<Model.State>>()
    var stack: [Choice<Model.State>] = []
    var deepest = DeepestFailure<Model.State>()
    var node = list.next[EventList.head]
    while returnsLeft > 0 {
        guard budget.spendStep(), memo.count < memoEntriesMax else { return .budgetExhausted }
        if EventList.isCall(node) {
            let operation = EventList.operation(of: node)
            if let nextState = model.step(state, operations[operation]) {
                linearized.insert(operation)
                if memo.insert(Configuration(linearized: linearized, state: nextState)).inserted {
                    stack.append(Choice(callNode: node, stateBefore: state))
                    state = nextState
                    list.unlink(node)
                    if returns[operation] {
                        list.unlink(EventList.returnNode(operation))
                        returnsLeft -= 1
                    }
                    node = list.next[EventList.head]
                    continue
                }
                linearized.remove(operation)
            }
            node = list.next[node]
            continue
        }
        // A return (or the tail): its operation should have been linearized already. Undo the latest choice.
        precondition(node != EventList.tail, "the tail is reached only when no return is left")
        if stack.count > deepest.linearizedCount {
            deepest = DeepestFailure(
                linearizedCount: stack.count, blockedOperation: EventList.operation(of: node),
                stateAtBlock: state, recentOperations: stack.suffix(5).map { EventList.operation(of: $0.callNode) })
        }
        guard let choice = stack.popLast() else {
            return .violation(
                key: reportKey, explanation: explain(deepest, indexed, model: model, key: reportKey))
        }
        let operation = EventList.operation(of: choice.callNode)
        if returns[operation] {
            list.relink(EventList.returnNode(operation))
            returnsLeft += 1
        }
        list.relink(choice.callNode)
        assert(list.isLinked(choice.callNode))
        linearized.remove(operation)
        state = choice.stateBefore
        node = list.next[choice.callNode]
    }
    return .linearizable
}

/// A human explanation of the deepest point the search reached before it failed.
private func explain<Model: SequentialModel>(
    _ deepest: DeepestFailure<Model.State>, _ indexed: [IndexedOperation], model: Model, key: String
) -> String {
    let blocked = indexed[deepest.blockedOperation]
    var text = "on \"\(key)\", history operation #\(blocked.historyIndex) (\(describe(blocked.operation)))"
    text += " cannot be linearized: at best \(deepest.linearizedCount) of \(indexed.count) operations"
    text += " fit before it returned, leaving the state "
    text += deepest.stateAtBlock.map { model.describe($0) } ?? "unknown"
    if !deepest.recentOperations.isEmpty {
        let recent = deepest.recentOperations.map { "#\(indexed[$0].historyIndex) \(describe(indexed[$0].operation))" }
        text += "; the last operations of that order were: " + recent.joined(separator: "; ")
    }
    return text
}
