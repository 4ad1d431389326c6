import TandemConsensus

/// The simulated application: a key-value map that applies committed entries, deduplicating by proposal id the way
/// Tandem's Idempotency-Key does (the first committed entry with an id is applied, later ones are ignored).
/// A copy of it is a snapshot: the whole state as of `appliedIndex`.
struct KVApp: Equatable {
    private(set) var values: [String: String] = [:]
    private(set) var appliedIndex: UInt64 = 0
    /// The term of the entry at `appliedIndex` (a snapshot's log base is (appliedIndex, appliedTerm)).
    private(set) var appliedTerm: UInt64 = 0
    /// Proposal ids already applied; grows with the run, which is bounded.
    private var appliedProposals: Set<ProposalID> = []

    mutating func apply(_ entry: Entry) {
        precondition(entry.index == appliedIndex + 1, "entries must be applied in order without gaps")
        appliedIndex = entry.index
        appliedTerm = entry.term
        guard entry.kind == .normal, let proposal = entry.proposal else { return }
        guard appliedProposals.insert(proposal).inserted else { return }
        if let (key, value) = KVApp.decodePut(entry.data) { values[key] = value }
    }

    static func encodePut(key: String, value: String) -> [UInt8] { Array("put\u{0}\(key)\u{0}\(value)".utf8) }

    static func decodePut(_ data: [UInt8]) -> (String, String)? {
        let parts = String(decoding: data, as: UTF8.self).split(separator: "\u{0}", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "put" else { return nil }
        return (String(parts[1]), String(parts[2]))
    }
}
