// The sequential specifications the search checks against, and the split of a history into per-key partitions.

/// A sequential specification of one partition (one key or one counter).
protocol SequentialModel {
    associatedtype State: Hashable
    /// The state before any operation.
    var initialState: State { get }
    /// Applies `operation` to `state`: the next state if the model could have produced the observed output
    /// (a nil output, unknown, accepts anything the input can produce), nil if it could not.
    func step(_ state: State, _ operation: KVOperation) -> State?
    /// The state written for a human in an explanation.
    func describe(_ state: State) -> String
}

/// One key of the key-value namespace; the state is its value, nil when absent.
struct KeyValueModel: SequentialModel {
    var initialState: String? { nil }

    func step(_ state: String?, _ operation: KVOperation) -> String?? {
        switch operation.input {
        case .put(_, let value):
            return .some(value)
        case .get:
            guard case .value(let observed) = operation.output else { return .some(state) }
            return observed == state ? .some(state) : nil
        case .append(_, let suffix):
            let newValue = (state ?? "") + suffix
            if case .value(let observed) = operation.output, observed != newValue { return nil }
            return .some(newValue)
        case .delete:
            if case .deleted(let existed) = operation.output, existed != (state != nil) { return nil }
            return .some(nil)
        case .increment, .readCounter:
            preconditionFailure("a counter operation in a key partition")
        }
    }

    func describe(_ state: String?) -> String {
        state.map { "\"\($0)\"" } ?? "absent"
    }
}

/// One counter of the counter namespace; the state is its value (0 when never incremented).
struct CounterModel: SequentialModel {
    var initialState: Int64 { 0 }

    func step(_ state: Int64, _ operation: KVOperation) -> Int64? {
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
}

/// An operation and its index in the history the caller passed in.
struct IndexedOperation {
    var historyIndex: Int
    var operation: KVOperation
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

/// Splits `history` into partitions in sorted key order. Reads with unknown outcome are dropped: they constrain
/// nothing and would only slow the search.
func partitionByKey(_ history: [KVOperation]) -> [Partition] {
    var byKey: [PartitionKey: [IndexedOperation]] = [:]
    for (index, operation) in history.enumerated() {
        if operation.output == nil && isRead(operation.input) { continue }
        byKey[partitionKey(of: operation.input), default: []].append(
            IndexedOperation(historyIndex: index, operation: operation))
    }
    return byKey.keys.sorted().map { key in
        Partition(key: key, operations: droppingUnobservableUnknownWrites(byKey[key]!))
    }
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
