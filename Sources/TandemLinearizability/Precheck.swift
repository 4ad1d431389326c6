// Quick necessary conditions checked before the search. Each one is implied by linearizability, so a failure is a
// definite violation; it is found in linear time and explained in plain words, where the search might spend its
// whole budget and then could only name the operation it got stuck on. Passing them proves nothing: the search
// still runs.

/// A definite violation found without searching, or nil.
func precheck(_ partition: Partition, reportKey: String) -> String? {
    switch partition.key {
    case .kv: return precheckReads(partition.operations, key: reportKey)
    case .counter: return precheckCounter(partition.operations, name: reportKey)
    }
}

/// In a key without appends, every value read must have been put by an operation called before the read returned.
private func precheckReads(_ operations: [IndexedOperation], key: String) -> String? {
    let hasAppends = operations.contains { if case .append = $0.operation.input { true } else { false } }
    guard !hasAppends else { return nil }
    var earliestPutCallMs: [String: Int64] = [:]
    for indexed in operations {
        guard case .put(_, let value) = indexed.operation.input else { continue }
        earliestPutCallMs[value] = min(earliestPutCallMs[value] ?? .max, indexed.operation.callTimeMs)
    }
    for indexed in operations {
        let operation = indexed.operation
        guard case .get = operation.input, case .value(.some(let value))? = operation.output,
            let returnTimeMs = operation.returnTimeMs
        else { continue }
        guard let putCallMs = earliestPutCallMs[value] else {
            return "on \"\(key)\", history operation #\(indexed.historyIndex) (\(describe(operation))) read a value "
                + "that no operation ever put"
        }
        if putCallMs > returnTimeMs {
            return "on \"\(key)\", history operation #\(indexed.historyIndex) (\(describe(operation))) read a value "
                + "whose first put was called at \(putCallMs), after the read returned"
        }
    }
    return nil
}

/// A counter value observed at an operation must lie between the increments that surely came before it (returned
/// before it was called) and those that possibly did (called before it returned).
private func precheckCounter(_ operations: [IndexedOperation], name: String) -> String? {
    let increments = operations.filter { if case .increment = $0.operation.input { true } else { false } }
    let callTimesMs = increments.map(\.operation.callTimeMs).sorted()
    let returnTimesMs = increments.compactMap { $0.operation.output == nil ? nil : $0.operation.returnTimeMs }.sorted()
    for indexed in operations {
        let operation = indexed.operation
        guard case .counter(let observed)? = operation.output, let returnTimeMs = operation.returnTimeMs else {
            continue
        }
        let isIncrement = if case .increment = operation.input { true } else { false }
        // The operation itself counts among the increments called before its return, but not among those
        // returned before its call.
        let atMost = Int64(countAtMost(callTimesMs, returnTimeMs))
        let atLeast = Int64(countBelow(returnTimesMs, operation.callTimeMs)) + (isIncrement ? 1 : 0)
        if observed > atMost || observed < atLeast {
            return "on \"\(name)\", history operation #\(indexed.historyIndex) (\(describe(operation))) observed "
                + "\(observed), but between \(atLeast) and \(atMost) increments can have taken effect by then"
        }
    }
    return nil
}

/// How many of the sorted `values` are <= `limit`.
private func countAtMost(_ values: [Int64], _ limit: Int64) -> Int {
    var (low, high) = (0, values.count)
    while low < high {
        let middle = (low + high) / 2
        if values[middle] <= limit { low = middle + 1 } else { high = middle }
    }
    return low
}

/// How many of the sorted `values` are < `limit`.
private func countBelow(_ values: [Int64], _ limit: Int64) -> Int {
    var (low, high) = (0, values.count)
    while low < high {
        let middle = (low + high) / 2
        if values[middle] < limit { low = middle + 1 } else { high = middle }
    }
    return low
}
