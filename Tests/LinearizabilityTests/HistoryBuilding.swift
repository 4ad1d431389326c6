import TandemLinearizability

// Short constructors so that each test's history reads like a timeline: `put("x", "1", client: 1, 0, 10)` is
// client 1 calling put at 0 ms and getting its answer at 10 ms.

func put(_ key: String, _ value: String, client: Int = 0, _ callMs: Int64, _ returnMs: Int64) -> KVOperation {
    KVOperation(
        clientID: client, input: .put(key: key, value: value), output: .ok, callTimeMs: callMs,
        returnTimeMs: returnMs)
}

func get(_ key: String, _ value: String?, client: Int = 0, _ callMs: Int64, _ returnMs: Int64) -> KVOperation {
    KVOperation(
        clientID: client, input: .get(key: key), output: .value(value), callTimeMs: callMs,
        returnTimeMs: returnMs)
}

func append(
    _ key: String, _ suffix: String, returning newValue: String, client: Int = 0, _ callMs: Int64,
    _ returnMs: Int64
) -> KVOperation {
    KVOperation(
        clientID: client, input: .append(key: key, suffix: suffix), output: .value(newValue),
        callTimeMs: callMs, returnTimeMs: returnMs)
}

func delete(_ key: String, existed: Bool, client: Int = 0, _ callMs: Int64, _ returnMs: Int64) -> KVOperation {
    KVOperation(
        clientID: client, input: .delete(key: key), output: .deleted(existed: existed), callTimeMs: callMs,
        returnTimeMs: returnMs)
}

func increment(_ name: String, returning newValue: Int64, client: Int = 0, _ callMs: Int64, _ returnMs: Int64)
    -> KVOperation
{
    KVOperation(
        clientID: client, input: .increment(counter: name), output: .counter(newValue), callTimeMs: callMs,
        returnTimeMs: returnMs)
}

func readCounter(_ name: String, _ value: Int64, client: Int = 0, _ callMs: Int64, _ returnMs: Int64) -> KVOperation {
    KVOperation(
        clientID: client, input: .readCounter(counter: name), output: .counter(value), callTimeMs: callMs,
        returnTimeMs: returnMs)
}

/// A write whose client timed out: it may take effect at any time after `callMs`, or never.
func unknown(_ input: KVInput, client: Int = 0, _ callMs: Int64) -> KVOperation {
    KVOperation(clientID: client, input: input, output: nil, callTimeMs: callMs, returnTimeMs: nil)
}

/// A small deterministic generator (SplitMix64), so that a failing seed reproduces.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Generates a history that a real sequential store produced: each operation takes effect at a distinct instant
/// (10 ms apart), the store's true answer is recorded, and the client's call and return are stretched up to
/// `jitterMs` around that instant, so neighbouring operations overlap. Some writes time out (unknown
/// outcome): half of those changed the store, the others never did. Values are unique, so a read names its write.
func generateTrueHistory(
    seed: UInt64, operationCount: Int, keys: [String], jitterMs: Int64 = 35,
    unknownPercent: Int = 5
) -> [KVOperation] {
    var random = SeededGenerator(seed: seed)
    var store: [String: String] = [:]
    var counters: [String: Int64] = [:]
    var history: [KVOperation] = []
    for step in 0..<operationCount {
        let instantMs = Int64(step) * 10 + 1_000
        let key = keys.randomElement(using: &random)!
        let (storeBefore, countersBefore) = (store, counters)
        let (input, output) = applyRandomOperation(
            key: key, step: step, store: &store, counters: &counters,
            random: &random)
        let callMs = instantMs - Int64.random(in: 0...jitterMs, using: &random)
        let returnMs = instantMs + Int64.random(in: 0...jitterMs, using: &random)
        if !isReadInput(input) && Int.random(in: 0..<100, using: &random) < unknownPercent {
            if Bool.random(using: &random) { (store, counters) = (storeBefore, countersBefore) }  // Never applied.
            history.append(
                KVOperation(
                    clientID: step % 7, input: input, output: nil, callTimeMs: callMs,
                    returnTimeMs: nil))
        } else {
            history.append(
                KVOperation(
                    clientID: step % 7, input: input, output: output, callTimeMs: callMs,
                    returnTimeMs: returnMs))
        }
    }
    return history
}

private func applyRandomOperation(
    key: String, step: Int, store: inout [String: String],
    counters: inout [String: Int64], random: inout SeededGenerator
)
    -> (KVInput, KVOutput)
{
    switch Int.random(in: 0..<10, using: &random) {
    case 0...2:
        store[key] = "v\(step)"
        return (.put(key: key, value: "v\(step)"), .ok)
    case 3...5:
        return (.get(key: key), .value(store[key]))
    case 6:
        let newValue = (store[key] ?? "") + "+\(step)"
        store[key] = newValue
        return (.append(key: key, suffix: "+\(step)"), .value(newValue))
    case 7:
        let existed = store.removeValue(forKey: key) != nil
        return (.delete(key: key), .deleted(existed: existed))
    case 8:
        counters[key, default: 0] += 1
        return (.increment(counter: key), .counter(counters[key]!))
    default:
        return (.readCounter(counter: key), .counter(counters[key] ?? 0))
    }
}

func isReadInput(_ input: KVInput) -> Bool {
    switch input {
    case .get, .readCounter: return true
    default: return false
    }
}
