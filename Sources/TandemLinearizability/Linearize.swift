// The Wing–Gong–Lowe search over one partition, with Lowe's memoization, extended for unknown outcomes.
//
// At any point of the search, the operations that may be linearized next are those called before the first
// return still pending (the first return node of the event list): the calls in front of it, and the
// unknown-outcome operations called by then. The search tries them depth first — completed operations before
// unknown ones — applying each to the model and undoing it on a dead end. When no candidate is left at a point,
// the operation owning that first return could not be linearized in time, and the search backs up. It succeeds
// once every completed operation is linearized; unknown-outcome operations may be left out (they never happened).
//
// Memoization: a configuration is (completed operations linearized, unknown operations linearized, state). A
// configuration with the same completed set and state as one already explored, and a subset of its unknown
// operations linearized, is "dominated": it has at least the same options left (the extra unknown operations
// never have to happen), so if the explored one failed, so does this one. Trying completed operations first means
// the dominating configurations are usually explored first, which prunes unknown writes that a later blind write
// hides. Interchangeable unknown operations (counter increments; unknown deletes; the hidden-value writes of
// Abstraction.swift) are counted per class rather than named: the search offers only the earliest called of a
// class at each point. Two configurations with the same counts are equivalent: every operation counted was called
// before the current point, so the ones left are equally available now and later.
//
// One more pruning: right after linearizing an unknown-outcome operation u, the search does not try a blind write
// (a put, or a delete whose output was not observed). Doing u and then the blind write w leads to the same state
// as doing w alone, with u in addition; w alone is a sibling the search tries anyway (the candidates at the
// point before u are the same, plus u), and it dominates. Without this rule, k unknown puts pending at the same
// point chain into 2^k configurations.

/// The result of searching one partition.
enum PartitionOutcome {
    case linearizable
    case violation(key: String, explanation: String)
    case budgetExhausted
}

/// The most memo entries one partition may create; beyond it the search gives up (it is exponential at worst).
let memoEntriesMax = 2_000_000
/// The memory the memo of one partition may use, roughly. An entry holds two operation sets of one bit per
/// operation plus fixed overheads, so long partitions get fewer entries: the machine is shared.
let memoBytesMax = 256 << 20

/// The memo entry limit for a partition of `operationCount` operations (see `memoBytesMax`).
func memoEntriesLimit(operationCount: Int) -> Int {
    let setBytes = 8 * ((operationCount + 63) / 64) + 32
    let entryBytes = 2 * setBytes + 96
    return min(memoEntriesMax, memoBytesMax / entryBytes)
}
/// The most unknown-operation sets kept per (completed set, state); more are explored but not remembered.
let exploredSetsPerKeyMax = 64

/// Searches for a linearization of `indexed` under `model`. See the file header for the algorithm.
func searchLinearization<Model: SequentialModel>(
    _ indexed: [IndexedOperation], model: Model, budget: inout SearchBudget, reportKey: String
) -> PartitionOutcome {
    var search = LinearizationSearch(indexed, model: model)
    switch search.run(budget: &budget) {
    case .some(true): return .linearizable
    case .some(false):
        return .violation(key: reportKey, explanation: search.explainDeepestFailure(indexed, key: reportKey))
    case .none: return .budgetExhausted
    }
}

private struct MemoKey<State: Hashable>: Hashable {
    var completed: OperationSet
    var state: State
}

/// Unknown-outcome operations linearized in one configuration: the distinct ones by name, the interchangeable
/// ones by count.
private struct UnknownsLinearized {
    var distinct: OperationSet
    /// How many of each interchangeable class (see `SequentialModel.interchangeClass`).
    var class0Count = 0
    var class1Count = 0

    /// True when `self` has at most the operations of `other`, which it therefore dominates.
    func isCovered(by other: UnknownsLinearized) -> Bool {
        class0Count <= other.class0Count && class1Count <= other.class1Count && distinct.isSubset(of: other.distinct)
    }

    /// Adds (`delta` 1) or removes (`delta` -1) `operation`, of `interchangeClass` (-1 for none).
    mutating func add(_ operation: Int, interchangeClass: Int, _ delta: Int) {
        switch interchangeClass {
        case 0: class0Count += delta
        case 1: class1Count += delta
        case -1: if delta > 0 { distinct.insert(operation) } else { distinct.remove(operation) }
        default: preconditionFailure("interchangeable classes are 0 and 1")
        }
        assert(class0Count >= 0 && class1Count >= 0)
    }
}

/// One point of the depth-first search.
private struct Frame<State> {
    /// Operations that may be linearized here, completed ones first.
    var candidates: [Int]
    var nextCandidate = 0
    /// The model state at this point.
    var state: State
    /// The candidate linearized to reach the frame above this one, while that frame is on the stack.
    var chosen: Int?
}

private extension Frame {
    init(candidates: [Int], state: State) {
        self.candidates = candidates
        self.state = state
    }
}

private struct LinearizationSearch<Model: SequentialModel> {
    let operations: [IndexedOperation]
    let model: Model
    // Per-operation facts computed once: the search consults them at every step.
    let isCompleted: [Bool]
    let callTimeMs: [Int64]
    let isBlindWrite: [Bool]
    /// The interchangeable class of each operation, or -1 for none.
    let interchangeClass: [Int]
    /// Unknown-outcome operations in call order.
    let unknownByCall: [Int]
    var list: EventList
    var completed: OperationSet
    /// Invariant: the number of members of `completed`.
    var completedCount = 0
    var unknown: UnknownsLinearized
    /// Which unknown operations are linearized, whether distinct or interchangeable (for `candidates()`).
    var unknownLinearized: OperationSet
    var unknownCount = 0
    /// Invariant: the number of completed operations not yet linearized (return nodes still linked).
    var returnsLeft: Int
    var state: Model.State
    /// For each (completed set, state) explored, the unknown operations linearized in each exploration (all of
    /// which failed, or the search would have ended).
    var memo: [MemoKey<Model.State>: [UnknownsLinearized]] = [:]
    var memoEntries = 0
    let memoEntriesLimit: Int
    var frames: [Frame<Model.State>] = []
    var deepest = DeepestFailure<Model.State>()

    init(_ operations: [IndexedOperation], model: Model) {
        self.operations = operations
        self.model = model
        isCompleted = operations.map { $0.operation.output != nil && $0.operation.returnTimeMs != nil }
        let callTimeMs = operations.map(\.operation.callTimeMs)
        self.callTimeMs = callTimeMs
        isBlindWrite = operations.map { model.isBlindWrite($0) }
        interchangeClass = operations.map { model.interchangeClass($0) ?? -1 }
        unknownByCall = operations.indices.filter { operations[$0].operation.output == nil }
            .sorted { callTimeMs[$0] != callTimeMs[$1] ? callTimeMs[$0] < callTimeMs[$1] : $0 < $1 }
        list = EventList(operations.map(\.operation), isCompleted: isCompleted)
        completed = OperationSet(capacity: operations.count)
        unknown = UnknownsLinearized(distinct: OperationSet(capacity: operations.count))
        unknownLinearized = OperationSet(capacity: operations.count)
        returnsLeft = isCompleted.filter { $0 }.count
        state = model.initialState
        memoEntriesLimit = TandemLinearizability.memoEntriesLimit(operationCount: operations.count)
    }

    /// True when a linearization exists, false when none does, nil when the budget ran out first.
    mutating func run(budget: inout SearchBudget) -> Bool? {
        guard returnsLeft > 0 else { return true }
        _ = rememberIfNew()
        frames = [Frame(candidates: candidates(afterUnknown: false), state: state)]
        while true {
            guard budget.spendStep(), memoEntries < memoEntriesLimit else { return nil }
            let top = frames.count - 1
            guard frames[top].nextCandidate < frames[top].candidates.count else {
                if !backtrack() { return false }
                continue
            }
            let operation = frames[top].candidates[frames[top].nextCandidate]
            frames[top].nextCandidate += 1
            guard let nextState = model.step(state, operations[operation]) else { continue }
            linearize(operation)
            state = nextState
            guard rememberIfNew() else {
                undo(operation)
                state = frames[top].state
                continue
            }
            frames[top].chosen = operation
            if returnsLeft == 0 { return true }
            frames.append(Frame(candidates: candidates(afterUnknown: !isCompleted[operation]), state: state))
        }
    }

    /// Leaves an exhausted frame and undoes the choice that led to it; false when there is none (no linearization).
    private mutating func backtrack() -> Bool {
        noteFailure()
        frames.removeLast()
        guard let parent = frames.indices.last, let chosen = frames[parent].chosen else { return false }
        undo(chosen)
        state = frames[parent].state
        frames[parent].chosen = nil
        return true
    }

    /// The operations that may be linearized now, except blind writes right after an unknown-outcome operation
    /// (see the file header), in call order. Only called while a return is pending.
    private func candidates(afterUnknown: Bool) -> [Int] {
        var completedCalls: [Int] = []
        var node = list.next[EventList.head]
        while EventList.isCall(node) {
            let operation = EventList.operation(of: node)
            if !(afterUnknown && isBlindWrite[operation]) { completedCalls.append(operation) }
            node = list.next[node]
        }
        precondition(node != EventList.tail, "candidates are asked for only while a return is pending")
        let firstReturnMs = operations[EventList.operation(of: node)].operation.returnTimeMs!
        var unknownCalls: [Int] = []
        var offeredClass = [false, false]
        for operation in unknownByCall {
            if callTimeMs[operation] > firstReturnMs { break }
            if unknownLinearized.contains(operation) || (afterUnknown && isBlindWrite[operation]) { continue }
            let interchangeClass = interchangeClass[operation]
            if interchangeClass >= 0 {
                // The earliest called of a class stands for all of them.
                if offeredClass[interchangeClass] { continue }
                offeredClass[interchangeClass] = true
            }
            unknownCalls.append(operation)
        }
        // Trying candidates in call order follows the order the system most likely used, which finds a
        // linearization of a correct history with little backtracking. Both lists are in call order: merge them.
        return mergedInCallOrder(completedCalls, unknownCalls)
    }

    private func mergedInCallOrder(_ left: [Int], _ right: [Int]) -> [Int] {
        if right.isEmpty { return left }
        var merged: [Int] = []
        merged.reserveCapacity(left.count + right.count)
        var (leftIndex, rightIndex) = (0, 0)
        while leftIndex < left.count && rightIndex < right.count {
            if callTimeMs[right[rightIndex]] < callTimeMs[left[leftIndex]] {
                merged.append(right[rightIndex])
                rightIndex += 1
            } else {
                merged.append(left[leftIndex])
                leftIndex += 1
            }
        }
        merged += left[leftIndex...]
        merged += right[rightIndex...]
        return merged
    }

    private mutating func linearize(_ operation: Int) {
        if isCompleted[operation] {
            list.unlink(EventList.callNode(operation))
            list.unlink(EventList.returnNode(operation))
            completed.insert(operation)
            completedCount += 1
            returnsLeft -= 1
        } else {
            unknownLinearized.insert(operation)
            unknownCount += 1
            unknown.add(operation, interchangeClass: interchangeClass[operation], 1)
        }
    }

    /// Reverses `linearize(operation)`; undos happen in the reverse order of their linearizations.
    private mutating func undo(_ operation: Int) {
        if isCompleted[operation] {
            list.relink(EventList.returnNode(operation))
            list.relink(EventList.callNode(operation))
            completed.remove(operation)
            completedCount -= 1
            returnsLeft += 1
            assert(list.isLinked(EventList.callNode(operation)))
        } else {
            unknownLinearized.remove(operation)
            unknownCount -= 1
            unknown.add(operation, interchangeClass: interchangeClass[operation], -1)
        }
    }

    /// Records the current configuration; false when it, or a configuration dominating it, was explored before.
    private mutating func rememberIfNew() -> Bool {
        let key = MemoKey(completed: completed, state: state)
        let explored = memo[key]
        if let explored, explored.contains(where: { $0.isCovered(by: unknown) }) { return false }
        if (explored?.count ?? 0) < exploredSetsPerKeyMax { memo[key, default: []].append(unknown) }
        memoEntries += 1
        return true
    }

    /// Keeps the deepest dead end for the explanation: the operation whose return could not be met.
    private mutating func noteFailure() {
        assert(completedCount == completed.count)
        let depth = completedCount + unknownCount
        guard depth > deepest.linearizedCount else { return }
        var node = list.next[EventList.head]
        while EventList.isCall(node) { node = list.next[node] }
        deepest = DeepestFailure(
            linearizedCount: depth, blockedOperation: EventList.operation(of: node), stateAtBlock: state,
            recentOperations: frames.dropLast().suffix(5).compactMap(\.chosen))
    }

    /// A human explanation of the deepest point the search reached before it failed.
    func explainDeepestFailure(_ indexed: [IndexedOperation], key: String) -> String {
        assert(indexed.count == operations.count)
        let blocked = indexed[deepest.blockedOperation]
        var text = "on \"\(key)\", history operation #\(blocked.historyIndex) (\(describe(blocked.operation)))"
        text += " cannot be linearized: at best \(deepest.linearizedCount) of \(indexed.count) operations"
        text += " fit before it returned, leaving the state "
        text += deepest.stateAtBlock.map { model.describe($0) } ?? "unknown"
        if !deepest.recentOperations.isEmpty {
            let recent = deepest.recentOperations.map {
                "#\(indexed[$0].historyIndex) \(describe(indexed[$0].operation))"
            }
            text += "; the last operations of that order were: " + recent.joined(separator: "; ")
        }
        return text
    }
}

/// What the deepest failed attempt looked like, kept for the explanation.
private struct DeepestFailure<State> {
    var linearizedCount = -1
    var blockedOperation = 0
    var stateAtBlock: State?
    var recentOperations: [Int] = []
}
