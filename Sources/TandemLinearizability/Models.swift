// The sequential specifications the search checks against, and the split of a history into per-key partitions.

/// A sequential specification of one partition (one key or one counter).
protocol SequentialModel {
    associatedtype State: Hashable
    /// The state before any operation.
    var initialState: State { get }
    /// Applies `operation` to `state`: the next state if the model could have produced the observed output
    /// (a nil output, unknown, accepts anything the input can produce), nil if it could not.
    func step(_ state: State, _ operation: IndexedOperation) -> State?
    /// True when `operation` sets the state without reading it and without an output that depends on it.
    func isBlindWrite(_ operation: IndexedOperation) -> Bool
    /// For an unknown-outcome operation with the same effect as every other one of its class in the partition,
    /// that class (0 or 1), so that the search may count them instead of naming them; nil for the others.
    func interchangeClass(_ operation: IndexedOperation) -> Int?
    /// The state written for a human in an explanation.
    func describe(_ state: State) -> String
}

/// The state of one key. `hidden` is a value that no completed operation can ever observe (see Abstraction.swift):
/// the key exists, and any read or append output checked against it fails.
enum KeyState: Hashable {
    case absent
    case value(String)
    case hidden
}

/// One key of the key-value namespace.
struct KeyValueModel: SequentialModel {
    var initialState: KeyState { .absent }

    func step(_ state: KeyState, _ indexed: IndexedOperation) -> KeyState? {
        let operation = indexed.operation
        if indexed.hidesValue { return .hidden }
        switch operation.input {
        case .put(_, let value):
            return .value(value)
        case .get:
            guard case .value(let observed) = operation.output else { return state }
            return matches(state, observed) ? state : nil
        case .append(_, let suffix):
            let newState: KeyState
            switch state {
            case .absent: newState = .value(suffix)
            case .value(let value): newState = .value(value + suffix)
            case .hidden: newState = .hidden
            }
            if case .value(let observed) = operation.output, !matches(newState, observed) { return nil }
            return newState
        case .delete:
            if case .deleted(let existed) = operation.output, existed != (state != .absent) { return nil }
            return .absent
        case .increment, .readCounter:
            preconditionFailure("a counter operation in a key partition")
        }
    }

    /// True when reading `state` could return `observed` (nil = absent).
    private func matches(_ state: KeyState, _ observed: String?) -> Bool {
        switch state {
        case .absent: return observed == nil
        case .value(let value): return observed == value
        case .hidden: return false
        }
    }

    func isBlindWrite(_ indexed: IndexedOperation) -> Bool {
        if indexed.hidesValue { return true }
        switch (indexed.operation.input, indexed.operation.output) {
        case (.put, _), (.delete, .none), (.delete, .ok?): return true
        default: return false
        }
    }

    /// Writes of a hidden value are one class, unknown-outcome deletes the other.
    func interchangeClass(_ indexed: IndexedOperation) -> Int? {
        if indexed.hidesValue { return 0 }
        if case .delete = indexed.operation.input, indexed.operation.output == nil { return 1 }
        return nil
    }

    func describe(_ state: KeyState) -> String {
        switch state {
        case .absent: return "absent"
        case .value(let value): return "\"\(value)\""
        case .hidden: return "a value no read observed (from an unknown-outcome write)"
        }
    }
}

/// One counter of the counter namespace; the state is its value (0 when never incremented).
struct CounterModel: SequentialModel {
    var initialState: Int64 { 0 }

    func step(_ state: Int64, _ indexed: IndexedOperation) -> Int64? {
        let operation = indexed.operation
        switch operation.input {
        case .increment:
            let newValue = state + 1
            if case .counter(let observed) = operation.output, observed != newValue { return nil }
            return newValue
        case .readCounter:
            guard case .counter(let observed) = operation.output else { return state }
            return observed == state ? state : nil
        case .put, .get, .append, .delete:
            preconditionFailure("a key operation in a counter partition")
        }
    }

    func isBlindWrite(_ indexed: IndexedOperation) -> Bool { false }

    /// Unknown-outcome increments all add 1 (unknown-outcome reads are dropped before the search).
    func interchangeClass(_ indexed: IndexedOperation) -> Int? { indexed.operation.output == nil ? 0 : nil }

    func describe(_ state: Int64) -> String { String(state) }
}

/// The partition an operation belongs to. Keys and counters never share one.
enum PartitionKey: Hashable, Comparable {
    case kv(String)
    case counter(String)
}

/// The operations of one partition, with their positions in the caller's history (for explanations).
struct Partition {
    var key: PartitionKey
    var operations: [IndexedOperation]

    /// The key as `CheckResult` names it: the key itself, or `"counter:" + name`.
    var reportKey: String {
        switch key {
        case .kv(let key): return key
        case .counter(let name): return "counter:" + name
        }
    }
}

/// An operation, its index in the history the caller passed in, and what the search may assume about it.
struct IndexedOperation {
    var historyIndex: Int
    var operation: KVOperation
    /// True for an unknown-outcome put or append whose value no completed operation can observe: the search
    /// treats it as setting the key to `KeyState.hidden` (see Abstraction.swift).
    var hidesValue = false
}

/// The partition of `input`.
func partitionKey(of input: KVInput) -> PartitionKey {
    switch input {
    case .put(let key, _), .get(let key), .append(let key, _), .delete(let key): return .kv(key)
    case .increment(let name), .readCounter(let name): return .counter(name)
    }
}

/// True for operations that cannot change state.
func isRead(_ input: KVInput) -> Bool {
    switch input {
    case .get, .readCounter: return true
    case .put, .append, .delete, .increment: return false
    }
}

/// Splits `history` into partitions, smallest first (ties in key order), so that a shared budget settles as many
/// partitions as it can before a large one consumes it. Reads with unknown outcome are dropped: they constrain
/// nothing and would only slow the search.
func partitionByKey(_ history: [KVOperation]) -> [Partition] {
    var byKey: [PartitionKey: [IndexedOperation]] = [:]
    for (index, operation) in history.enumerated() {
        if operation.output == nil && isRead(operation.input) { continue }
        byKey[partitionKey(of: operation.input), default: []].append(
            IndexedOperation(historyIndex: index, operation: operation))
    }
    let order = byKey.keys.sorted { left, right in
        let (leftCount, rightCount) = (byKey[left]!.count, byKey[right]!.count)
        return leftCount != rightCount ? leftCount < rightCount : left < right
    }
    return order.map { key in Partition(key: key, operations: markingUnobservableWrites(byKey[key]!)) }
}

/// Every key of the key-value namespace that `history` touches.
func keysMentioned(_ history: [KVOperation]) -> Set<String> {
    var keys = Set<String>()
    for operation in history { if case .kv(let key) = partitionKey(of: operation.input) { keys.insert(key) } }
    return keys
}

/// Every counter that `history` touches.
func countersMentioned(_ history: [KVOperation]) -> Set<String> {
    var names = Set<String>()
    for operation in history {
        if case .counter(let name) = partitionKey(of: operation.input) { names.insert(name) }
    }
    return names
}

/// An operation written for a human: `client 3: get("x") -> "1" [100, 120]`.
func describe(_ operation: KVOperation) -> String {
    let inputText: String
    switch operation.input {
    case .put(let key, let value): inputText = "put(\"\(key)\", \"\(value)\")"
    case .get(let key): inputText = "get(\"\(key)\")"
    case .append(let key, let suffix): inputText = "append(\"\(key)\", \"\(suffix)\")"
    case .delete(let key): inputText = "delete(\"\(key)\")"
    case .increment(let name): inputText = "increment(counter \"\(name)\")"
    case .readCounter(let name): inputText = "read(counter \"\(name)\")"
    }
    let outputText: String
    switch operation.output {
    case .none: outputText = "unknown"
    case .ok: outputText = "ok"
    case .value(let value): outputText = value.map { "\"\($0)\"" } ?? "absent"
    case .deleted(let existed): outputText = existed ? "deleted" : "not found"
    case .counter(let value): outputText = String(value)
    }
    let returnText = operation.output == nil ? "never" : (operation.returnTimeMs.map { String($0) } ?? "never")
    return "client \(operation.clientID): \(inputText) -> \(outputText) [\(operation.callTimeMs), \(returnText)]"
}
