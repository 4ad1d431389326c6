// "Was every acknowledged write kept?": a direct, per-write reading of Tandem's core promise against the final
// state of a run. It is simpler and more readable than a full check, and it names the writes that went missing.
// `checkFinalState` is the complete answer; this one is the report a human wants when that answer is "no".

/// An acknowledged write that the final state contradicts.
public struct LostWrite: Sendable, Hashable {
    /// Its index in the history passed in.
    public var historyIndex: Int
    /// The write itself.
    public var operation: KVOperation
    /// Why the final state contradicts it, in a sentence.
    public var reason: String
}

/// Returns the acknowledged writes that the final state (`kv`, `counters`, as read after every operation ended)
/// contradicts. A write counts as acknowledged when the client got a definite answer.
///
/// A write is kept when no later write could have replaced it (one whose call came after it returned, or any
/// unknown-outcome write, or any write concurrent with it) and the final state shows it:
/// - `put(k, v)`: the final value of k is v.   - `delete(k)`: k is absent.
/// - `append(k, s) -> v`: the final value starts with v (only appends followed); with an `.ok` output it contains s.
/// - `increment(c) -> n`: the final counter is at least n (counters only grow). With `.ok` outputs, the final
///   counter is at least the number of acknowledged increments, otherwise each of them is reported.
/// When another write might have followed, the write is not reported here; `checkFinalState` still judges it.
public func lostAcknowledgedWrites(
    _ history: [KVOperation], kv: [String: String], counters: [String: Int64]
) -> [LostWrite] {
    var writesByPartition: [PartitionKey: [Int]] = [:]
    for (index, operation) in history.enumerated() where !isRead(operation.input) {
        writesByPartition[partitionKey(of: operation.input), default: []].append(index)
    }
    var lost: [LostWrite] = []
    for (index, write) in history.enumerated() where write.isCompleted && !isRead(write.input) {
        let followers = writesByPartition[partitionKey(of: write.input)]!
            .filter { $0 != index && mayFollow(history[$0], write) }.map { history[$0] }
        if let reason = contradiction(write, followers: followers, kv: kv, counters: counters) {
            lost.append(LostWrite(historyIndex: index, operation: write, reason: reason))
        }
    }
    lost.append(contentsOf: unexplainedCounterIncrements(history, counters: counters))
    return lost
}

/// True when `later` may be ordered after `earlier`: it did not return (with a known output) before `earlier` was
/// called.
func mayFollow(_ later: KVOperation, _ earlier: KVOperation) -> Bool {
    guard later.output != nil, let returnTimeMs = later.returnTimeMs else { return true }
    return returnTimeMs >= earlier.callTimeMs
}

/// Why the final state contradicts `write`, or nil when it does not.
private func contradiction(
    _ write: KVOperation, followers: [KVOperation], kv: [String: String], counters: [String: Int64]
) -> String? {
    let onlyAppendsFollow = followers.allSatisfy { if case .append = $0.input { true } else { false } }
    switch (write.input, write.output) {
    case (.put(let key, let value), _):
        guard followers.isEmpty, kv[key] != value else { return nil }
        return "no write to \"\(key)\" could follow it, yet the final value is \(show(kv[key])), not \"\(value)\""
    case (.delete(let key), _):
        guard followers.isEmpty, let final = kv[key] else { return nil }
        return "no write to \"\(key)\" could follow it, yet the key is present with \"\(final)\""
    case (.append(let key, _), .value(.some(let newValue))):
        guard onlyAppendsFollow, !(kv[key]?.hasPrefix(newValue) ?? false) else { return nil }
        return "only appends could follow it, yet the final value \(show(kv[key])) does not start with \"\(newValue)\""
    case (.append(let key, let suffix), _):
        guard onlyAppendsFollow, !(kv[key]?.contains(suffix) ?? false) else { return nil }
        return "only appends could follow it, yet the final value \(show(kv[key])) does not contain \"\(suffix)\""
    case (.increment(let name), .counter(let newValue)):
        let final = counters[name] ?? 0
        guard final < newValue else { return nil }
        return "it returned \(newValue), yet counter \"\(name)\" ended at \(final)"
    default:
        return nil
    }
}

/// Increments acknowledged with `.ok` on counters that ended below the number of acknowledged increments.
private func unexplainedCounterIncrements(_ history: [KVOperation], counters: [String: Int64]) -> [LostWrite] {
    var acknowledged: [String: [Int]] = [:]
    for (index, operation) in history.enumerated() where operation.isCompleted {
        if case .increment(let name) = operation.input { acknowledged[name, default: []].append(index) }
    }
    var lost: [LostWrite] = []
    for (name, indices) in acknowledged.sorted(by: { $0.key < $1.key }) {
        let final = counters[name] ?? 0
        guard final < Int64(indices.count) else { continue }
        for index in indices where history[index].output == .ok {
            let reason = "\(indices.count) increments of \"\(name)\" were acknowledged, yet it ended at \(final)"
            lost.append(LostWrite(historyIndex: index, operation: history[index], reason: reason))
        }
    }
    return lost
}

private func show(_ value: String?) -> String { value.map { "\"\($0)\"" } ?? "absent" }
