// TandemLinearizability: a Wing–Gong–Lowe linearizability checker for Tandem's key-value model.
//
// What it owns: deciding whether a recorded concurrent history of key-value and counter operations could have
// been produced by one sequential key-value store (linearizability), partitioned per key as Porcupine does, and a
// plain "was every acknowledged write kept" report for the final state of a run.
// What it must never do: report `.linearizable` when the search was cut short (it answers `.timedOut`), perform I/O,
// or depend on any other Tandem module. It reads a monotonic clock only to honour its own timeout.
//
// STABLE PUBLIC API (the simulator depends on it; extend only by adding, never by changing):
//
//     public enum KVInput   { put(key:value:), get(key:), append(key:suffix:), delete(key:),
//                             increment(counter:), readCounter(counter:) }
//     public enum KVOutput  { ok, value(String?), deleted(existed: Bool), counter(Int64) }
//     public struct KVOperation { clientID, input, output: KVOutput?, callTimeMs, returnTimeMs: Int64? }
//     public typealias Operation = KVOperation   // Foundation has its own `Operation`: use KVOperation beside it.
//     public enum CheckResult { linearizable, notLinearizable(key:explanation:), timedOut }
//     public func checkLinearizability(_ history: [KVOperation], timeoutMs: Int = 10_000,
//                                      maxSteps: Int = 50_000_000) -> CheckResult
//     public func checkFinalState(_ history: [KVOperation], kv: [String: String], counters: [String: Int64],
//                                 timeoutMs: Int = 10_000) -> CheckResult
//     public func lostAcknowledgedWrites(_ history: [KVOperation], kv: [String: String],
//                                        counters: [String: Int64]) -> [LostWrite]
//
// The model (it mirrors the example-kv app):
// - Keys (`put`, `get`, `append`, `delete`) and counters (`increment`, `readCounter`) live in SEPARATE namespaces,
//   as `/kv/{key}` and `/counters/{name}` do in example-kv. A key "x" and a counter "x" never interact.
// - A key is absent until put or appended to. `get` of an absent key returns `.value(nil)`. `append` to an absent
//   key stores the suffix. `delete` makes the key absent.
// - A counter is 0 until incremented; `increment` adds 1 and returns the new value; `readCounter` returns it.
//
// Expected outputs per input (any other pairing is a harness bug and traps with a precondition):
// - put: `.ok`.            get: `.value(v)` (nil = absent).
// - append: `.value(newValue)` (checked) or `.ok` (the new value was not observed, only that it happened).
// - delete: `.deleted(existed:)` (checked: 200 vs 404) or `.ok` (either).
// - increment: `.counter(newValue)` (checked) or `.ok`.     readCounter: `.counter(v)`.
//
// Unknown outcomes: an operation whose `output` is nil (the client timed out, got 504 `commit_timeout`, or lost
// its connection) is treated as never having returned, whatever `returnTimeMs` says: its effect may land at any
// point after its call, or never. A read with unknown output constrains nothing and is ignored.
//
// Cost: the search is exponential in the worst case (the problem is NP-complete), and practical when few
// operations on one key overlap. Linear-time prechecks (Precheck.swift) catch reads of values never written and
// impossible counter values before any search. Measured on the 2-core dev machine, debug build: a correct
// 3000-operation history (about 12 in flight, 5% timed-out writes) checks in ~70 ms; refuting a 600-operation
// single-key history whose violation is at its very end (the worst case: everything before it is explored)
// takes ~0.3 s. A 1000-operation single-key history with ~10 in flight and 5% timeouts, refuted at its end, needs
// <10M steps: ~1.5 s in a release build, but over 8 s in a debug build (generic code is not specialized there).
// Budget exhausted means `.timedOut`, never a pass; spread load over more keys or shorten the history. Where the
// search is: Linearize.swift; the pruning that keeps unknown outcomes cheap: Linearize.swift, Abstraction.swift.
//
// Real-time order: operation A precedes B only if A returned strictly before B was called
// (`A.returnTimeMs < B.callTimeMs`). Equal timestamps count as concurrent, which is the safe side with
// millisecond clocks: the checker never reports a violation that depends on the order of two events in one tick.

/// One request to the key-value model. Keys and counters are separate namespaces (see the module header).
public enum KVInput: Sendable, Hashable {
    /// Store `value` under `key`.
    case put(key: String, value: String)
    /// Read `key`; the output is `.value(nil)` when it is absent.
    case get(key: String)
    /// Append `suffix` to the value of `key` (absent counts as empty); the output is the new value.
    case append(key: String, suffix: String)
    /// Remove `key`; the output says whether it existed, or is `.ok` when that was not observed.
    case delete(key: String)
    /// Add 1 to `counter` (absent counts as 0); the output is the new value.
    case increment(counter: String)
    /// Read `counter` (absent counts as 0).
    case readCounter(counter: String)
}

/// What the client observed. An unknown outcome is a nil `KVOperation.output`, not a case here.
public enum KVOutput: Sendable, Hashable {
    /// The operation happened; nothing more was observed.
    case ok
    /// A value read or produced: `get` (nil = absent) and `append` (the new value).
    case value(String?)
    /// The result of `delete`: whether the key existed (example-kv answers 200 or 404).
    case deleted(existed: Bool)
    /// A counter value: `increment` (the new value) and `readCounter`.
    case counter(Int64)
}

/// One operation of a concurrent history, as a client saw it.
public struct KVOperation: Sendable, Hashable {
    /// The client that issued it. Used only in explanations: the checker does not assume clients are sequential.
    public var clientID: Int
    /// What was asked.
    public var input: KVInput
    /// What was answered, or nil when the outcome is unknown (see the module header).
    public var output: KVOutput?
    /// When the request was sent.
    public var callTimeMs: Int64
    /// When the answer arrived, or nil when it never did. Must be >= `callTimeMs`.
    public var returnTimeMs: Int64?

    /// Creates an operation. With a nil `output`, `returnTimeMs` is ignored (it may be nil or the time the client
    /// gave up): an unknown outcome may take effect at any time after its call.
    public init(clientID: Int, input: KVInput, output: KVOutput?, callTimeMs: Int64, returnTimeMs: Int64?) {
        self.clientID = clientID
        self.input = input
        self.output = output
        self.callTimeMs = callTimeMs
        self.returnTimeMs = returnTimeMs
    }

    /// True when the client got a definite answer.
    public var isCompleted: Bool { output != nil && returnTimeMs != nil }
}

/// The name the design sketch used. Where Foundation (or XCTest) is imported, `Operation` is ambiguous with
/// Foundation's class: write `KVOperation` there.
public typealias Operation = KVOperation

/// The verdict of a check.
public enum CheckResult: Sendable, Hashable {
    /// Some sequential order of the operations, consistent with real time, explains every observed output.
    case linearizable
    /// No such order exists for the operations on `key` (counters are reported as `"counter:" + name`).
    case notLinearizable(key: String, explanation: String)
    /// The time or step budget ran out before a verdict. Never read this as a pass.
    case timedOut
}

/// Checks whether `history` is linearizable with respect to the key-value model of the module header.
///
/// Each key (and each counter) is checked on its own, which is sound because linearizability is compositional.
/// Partitions are checked smallest first (ties in key order), so the first violation reported is deterministic and
/// a shared budget settles as many partitions as it can. Each partition's linear-time prechecks run even after the
/// budget is spent, and any violation found is reported even when another partition timed out.
/// - Parameters:
///   - history: the operations, in any order.
///   - timeoutMs: wall-clock budget for the whole check.
///   - maxSteps: deterministic budget of search steps for the whole check (for reproducible simulations).
public func checkLinearizability(
    _ history: [KVOperation], timeoutMs: Int = 10_000, maxSteps: Int = 50_000_000
) -> CheckResult {
    for operation in history { validate(operation) }
    var budget = SearchBudget(timeoutMs: timeoutMs, maxSteps: maxSteps)
    var sawTimeout = false
    for partition in partitionByKey(history) {
        let outcome: PartitionOutcome
        if let explanation = precheck(partition, reportKey: partition.reportKey) {
            return .notLinearizable(key: partition.reportKey, explanation: explanation)
        }
        switch partition.key {
        case .kv(let key):
            outcome = searchLinearization(
                partition.operations, model: KeyValueModel(), budget: &budget, reportKey: key)
        case .counter(let name):
            outcome = searchLinearization(
                partition.operations, model: CounterModel(), budget: &budget, reportKey: "counter:" + name)
        }
        switch outcome {
        case .linearizable: continue
        case .violation(let key, let explanation): return .notLinearizable(key: key, explanation: explanation)
        case .budgetExhausted: sawTimeout = true
        }
    }
    return sawTimeout ? .timedOut : .linearizable
}

/// Checks `history` extended with a read of every key and counter at the end (after every operation returned),
/// observing `kv` and `counters`: is this final state one that the history could have produced?
///
/// Keys and counters that appear in the history but not in the maps are read as absent (and 0).
public func checkFinalState(
    _ history: [KVOperation], kv: [String: String], counters: [String: Int64], timeoutMs: Int = 10_000
) -> CheckResult {
    let endMs = finalReadTimeMs(history)
    var extended = history
    for key in keysMentioned(history).union(kv.keys).sorted() {
        extended.append(
            KVOperation(
                clientID: -1, input: .get(key: key), output: .value(kv[key]), callTimeMs: endMs,
                returnTimeMs: endMs))
    }
    for name in countersMentioned(history).union(counters.keys).sorted() {
        extended.append(
            KVOperation(
                clientID: -1, input: .readCounter(counter: name), output: .counter(counters[name] ?? 0),
                callTimeMs: endMs, returnTimeMs: endMs))
    }
    return checkLinearizability(extended, timeoutMs: timeoutMs)
}

/// A time strictly after every call and every return of `history`.
private func finalReadTimeMs(_ history: [KVOperation]) -> Int64 {
    var latestMs: Int64 = 0
    for operation in history {
        latestMs = max(latestMs, operation.callTimeMs, operation.returnTimeMs ?? operation.callTimeMs)
    }
    return latestMs + 1
}

/// Traps on histories that no correct harness can produce: they are programmer errors, not findings.
func validate(_ operation: KVOperation) {
    if let returnTimeMs = operation.returnTimeMs {
        precondition(
            returnTimeMs >= operation.callTimeMs,
            "operation returns before it is called: \(describe(operation))")
    }
    if operation.output != nil {
        precondition(operation.returnTimeMs != nil, "an output without a return time: \(describe(operation))")
    }
    guard let output = operation.output else { return }
    let fits: Bool
    switch (operation.input, output) {
    case (.put, .ok), (.get, .value), (.append, .ok), (.append, .value(.some)), (.delete, .ok),
        (.delete, .deleted), (.increment, .ok), (.increment, .counter), (.readCounter, .counter):
        fits = true
    default:
        fits = false
    }
    precondition(fits, "output does not fit the input: \(describe(operation))")
}
