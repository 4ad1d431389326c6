// An exact abstraction that keeps the search small around unknown-outcome writes.
//
// An unknown-outcome write stays pending for the rest of the history (it may take effect at any later time), so
// each one can double the configurations the search visits. Most are never observed. Take an unknown put of value
// v. Every state derived from it, until the next blind write, starts with v (appends only extend). If no completed
// operation that may follow the put has an output starting with v (a read, or an append's new value), then any
// read or checked append that meets such a state fails, whatever the rest of the string is, and only the key's
// existence still matters (to `delete`). So the search may replace those states by one symbol, `hidden`, without
// changing any verdict. The same holds for an unknown append of suffix s when no output that may follow contains
// s (it exists afterwards, and its value can no longer be matched). All such writes then have one effect ("the
// key now holds a hidden value"), so they are interchangeable, and the search counts them instead of naming them.
// ("Starts with v" is tightened to "is v, or v followed by the start of some append suffix of the partition".)
// The rule is conservative: a value that merely could be confused with an observed one keeps its exact meaning.

/// Marks the unknown-outcome puts and appends of one key partition whose value no completed operation can observe.
func markingUnobservableWrites(_ operations: [IndexedOperation]) -> [IndexedOperation] {
    let observedOutputs: [(value: String, returnTimeMs: Int64)] = operations.compactMap { indexed in
        let operation = indexed.operation
        guard case .value(.some(let value))? = operation.output, let returnTimeMs = operation.returnTimeMs else {
            return nil
        }
        return (value, returnTimeMs)
    }
    let appendSuffixes = Set(
        operations.compactMap { indexed -> String? in
            guard case .append(_, let suffix) = indexed.operation.input, !suffix.isEmpty else { return nil }
            return suffix
        })
    /// True when `output` could be `value` followed by appends (only appends extend a value).
    func extends(_ output: String, _ value: String) -> Bool {
        guard output.hasPrefix(value) else { return false }
        let rest = output.dropFirst(value.count)
        return rest.isEmpty || appendSuffixes.contains { rest.hasPrefix($0) }
    }
    return operations.map { indexed in
        var marked = indexed
        let write = indexed.operation
        guard write.output == nil else { return marked }
        // Only outputs that may follow the write (returned at or after its call) could show its effect.
        let relevant = observedOutputs.lazy.filter { $0.returnTimeMs >= write.callTimeMs }.map(\.value)
        switch write.input {
        case .put(_, let value): marked.hidesValue = !relevant.contains { extends($0, value) }
        case .append(_, let suffix): marked.hidesValue = !suffix.isEmpty && !relevant.contains { $0.contains(suffix) }
        case .get, .delete, .increment, .readCounter: break
        }
        return marked
    }
}
