// Pruning that keeps the search small without changing its verdict.
//
// An unknown-outcome write stays "pending" for the rest of the history (it may take effect at any later time), so
// every such write can double the configurations the search visits. Most of them are never observed, and an
// unobserved unknown put or append can be dropped (treated as never having taken effect) without changing the
// verdict. Why: take any linearization that places the write W at point p. Let B be the next blind write after p
// (a put or delete, which sets the state regardless of what came before), or the end. Every operation between p
// and B sees a state derived from W's: a value starting with W's value (put) or containing W's suffix (append).
// If no completed operation that may follow W observes such a state (a read or an append output with that
// prefix or substring, or a delete that reported the key existing), then the operations between p and B are
// unobserved, and moving W to just before B keeps every output the same: B overwrites W's effect, or B is a
// delete that would need the key to exist, which we excluded. Moved to just before B, W has no effect at all,
// which is the same as never applying it. The rule is conservative: a value that merely shares a prefix with an
// observed one keeps its write in the search.

/// `operations` without the unknown-outcome puts and appends that no completed operation could observe.
func droppingUnobservableUnknownWrites(_ operations: [IndexedOperation]) -> [IndexedOperation] {
    let observers = operations.filter { $0.operation.output != nil && canObserve($0.operation) }
    return operations.filter { candidate in
        let write = candidate.operation
        guard write.output == nil, isPutOrAppend(write.input) else { return true }
        return observers.contains { mayFollow($0.operation, write) && observes($0.operation, write) }
    }
}

/// True for completed operations whose output tells something about a key's previous value.
private func canObserve(_ operation: KVOperation) -> Bool {
    switch (operation.input, operation.output) {
    case (.get, .value(.some)), (.append, .value(.some)), (.delete, .deleted(existed: true)): return true
    default: return false
    }
}

private func isPutOrAppend(_ input: KVInput) -> Bool {
    switch input {
    case .put, .append: return true
    case .get, .delete, .increment, .readCounter: return false
    }
}

/// True when `observer` could have seen an effect of the unknown-outcome put or append `write` (see the file
/// header).
private func observes(_ observer: KVOperation, _ write: KVOperation) -> Bool {
    if case .deleted(existed: true) = observer.output { return true }
    guard case .value(.some(let seen)) = observer.output else { return false }
    switch write.input {
    case .put(_, let value): return seen.hasPrefix(value)
    case .append(_, let suffix): return suffix.isEmpty || seen.contains(suffix)
    case .get, .delete, .increment, .readCounter: preconditionFailure("only puts and appends are dropped")
    }
}
