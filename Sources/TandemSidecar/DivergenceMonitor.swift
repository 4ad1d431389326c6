import Logging
import TandemConsensus
import TandemNet
import TandemNode

/// Judges whether this replica's applied outcomes agree with the majority of the cluster.
///
/// Each node folds (index, status, body hash) of every applied entry into a rolling digest (`ApplyDigest`). Every
/// node reports its own digests to every peer: each completed block's final digest, its current (index, digest)
/// about once a second, and, once, its own digest at any index a peer reported (so that reports made at different
/// moments still meet at the same index). Each node keeps the peers' reports by index and judges itself only: it is
/// diverged at index i when the digests other members reported at i form a majority of the whole cluster agreeing
/// on a value different from its own. A node never flags another node; a wrong leader is flagged like anyone else.
/// When this node and the others that agree with it are a majority, it is sound at i. When every member reported
/// and no value has a majority, the cluster cannot say who is right: counted and logged, no verdict. Otherwise (a
/// tie, too few reports) it waits. Diverged is sticky (metric, /status, /readyz, a loud log line).
final class DivergenceMonitor {
    static let frameType: UInt8 = 0x40
    /// A report is (index, digest), 8 bytes each, little-endian. Any other length is ignored and counted.
    static let reportBytes = 16

    /// What this node concluded about its own digest at one index.
    enum Verdict: Equatable {
        /// A majority of the cluster (this node included) holds this node's digest.
        case sound
        /// A majority of the cluster, without this node, holds another digest.
        case diverged(majorityDigest: UInt64)
        /// Every member reported and no digest has a majority.
        case noMajority
    }

    private let peers: Set<NodeID>
    private let majority: Int
    /// Own digests by index, for the most recent applied entries.
    private var ownDigests = BoundedIndexMap(capacity: 8192)
    /// Each peer's reports by index, bounded per peer (its oldest reports go first).
    private var reports: [NodeID: BoundedIndexMap] = [:]
    private static let reportsPerPeer = 256
    /// Indexes this node already sent its own digest for (each is answered once).
    private var sent = BoundedIndexMap(capacity: 1024)
    /// Indexes already judged: later reports about them change nothing.
    private var judged = BoundedIndexMap(capacity: 1024)
    private(set) var isDiverged = false
    /// The highest applied index each peer reported (one value per configured peer: bounded).
    private var highestReported: [NodeID: UInt64] = [:]
    private(set) var divergedAtIndex: UInt64?
    /// The other members whose digests formed the majority of the diverged verdict (empty while sound).
    private(set) var majorityMembers: Set<NodeID> = []
    /// Verdicts reached (sound, diverged, or no majority).
    private(set) var comparisons: UInt64 = 0
    private(set) var noMajorityCount: UInt64 = 0
    /// Reports dropped: wrong length, index 0, or from a node that is not a peer.
    private(set) var ignoredReports: UInt64 = 0
    /// Sends a report to every peer.
    var broadcast: (([UInt8]) -> Void)?
    private let log: Logger
    private let metrics: Metrics?
    /// A replica that resumed after index b (a durable app) lacks the start of b's digest block: skip that block.
    private let incomparableBlock: UInt64?

    /// `peers` are the cluster's other members (the cluster is they and this node).
    init(
        peers: [NodeID], resumedAfter index: UInt64, comparesStates: Bool = false,
        log: Logger = Logger(label: "tandem.divergence"), metrics: Metrics? = nil
    ) {
        self.peers = Set(peers)
        self.majority = (self.peers.count + 1) / 2 + 1
        self.log = log
        self.metrics = metrics
        // State digests stand alone (each is the whole state's); response digests fold a block of entries.
        self.incomparableBlock = index > 0 && !comparesStates ? index / ApplyDigest.blockSize : nil
        publishMetrics()
    }

    /// After each applied entry, with the digest that includes it.
    func recordApplied(index: UInt64, digest: UInt64) {
        guard hasCompleteDigest(at: index) else { return }
        ownDigests.insert(index, digest)
        if peers.contains(where: { reports[$0]?[index] != nil }) {
            answer(index: index, digest: digest)
            judge(index: index)
        }
    }

    /// This node's digest at its applied index, sent every time (a report a peer missed is made good next time).
    func reportCurrent(index: UInt64, digest: UInt64) {
        guard index > 0, hasCompleteDigest(at: index) else { return }
        sent.insert(index, 0)
        broadcast?(Self.reportPayload(index: index, digest: digest))
    }

    /// This node's digest at `index` (a completed block's last index), sent once.
    func reportOnce(index: UInt64, digest: UInt64) {
        guard index > 0, hasCompleteDigest(at: index) else { return }
        answer(index: index, digest: digest)
    }

    /// A report from a peer. A malformed one (the payload comes from the network) is counted and dropped.
    func onReport(from peer: NodeID, payload: UnsafeRawBufferPointer) {
        guard peers.contains(peer), payload.count == Self.reportBytes else {
            ignore(from: peer, bytes: payload.count)
            return
        }
        let index = payload.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
        let digest = payload.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian
        guard index > 0 else {
            ignore(from: peer, bytes: payload.count)
            return
        }
        highestReported[peer] = max(highestReported[peer] ?? 0, index)
        guard hasCompleteDigest(at: index), judged[index] == nil else { return }
        reports[peer, default: BoundedIndexMap(capacity: Self.reportsPerPeer)].insert(index, digest)
        if let own = ownDigests[index] {
            answer(index: index, digest: own)
            judge(index: index)
        }
    }

    /// The lowest of the applied indexes the other members last reported, once every one of them has reported
    /// (nil before): everything up to it was applied everywhere.
    var othersAppliedIndex: UInt64? {
        guard highestReported.count == peers.count else { return nil }
        return highestReported.values.min()
    }

    /// How many of `peer`'s reports are kept (bounded per peer).
    func storedReports(from peer: NodeID) -> Int { reports[peer]?.count ?? 0 }

    /// Whether this replica's digest at `index` covers its whole block. A replica that resumed mid-block (a
    /// durable app) holds a partial digest there: compared with anyone's, it would look like divergence.
    func hasCompleteDigest(at index: UInt64) -> Bool {
        index / ApplyDigest.blockSize != incomparableBlock
    }

    static func reportPayload(index: UInt64, digest: UInt64) -> [UInt8] {
        var payload: [UInt8] = []
        payload.reserveCapacity(reportBytes)
        withUnsafeBytes(of: index.littleEndian) { payload.append(contentsOf: $0) }
        withUnsafeBytes(of: digest.littleEndian) { payload.append(contentsOf: $0) }
        return payload
    }

    /// The verdict at `index` from what is known now, or nil while it must wait (a tie, too few reports).
    func verdict(at index: UInt64) -> Verdict? {
        guard let own = ownDigests[index] else { return nil }
        var tally: [UInt64: Int] = [:]
        var reporters = 0
        for peer in peers {
            guard let digest = reports[peer]?[index] else { continue }
            tally[digest, default: 0] += 1
            reporters += 1
        }
        if 1 + tally[own, default: 0] >= majority { return .sound }
        if let other = tally.first(where: { $0.key != own && $0.value >= majority }) {
            return .diverged(majorityDigest: other.key)
        }
        return reporters == peers.count && !peers.isEmpty ? .noMajority : nil
    }

    private func answer(index: UInt64, digest: UInt64) {
        guard sent[index] == nil else { return }
        sent.insert(index, 0)
        broadcast?(Self.reportPayload(index: index, digest: digest))
    }

    private func judge(index: UInt64) {
        guard judged[index] == nil, let verdict = verdict(at: index) else { return }
        judged.insert(index, 0)
        comparisons += 1
        switch verdict {
        case .sound:
            break
        case .diverged(let majorityDigest):
            guard !isDiverged else { break }
            isDiverged = true
            divergedAtIndex = index
            majorityMembers = Set(peers.filter { reports[$0]?[index] == majorityDigest })
            log.critical(
                """
                DIVERGED: this replica's app answered differently from the majority of the cluster: \
                the app is not deterministic; rebuild this replica
                """,
                metadata: [
                    "index": "\(index)", "own": "\(ownDigests[index] ?? 0)", "majority": "\(majorityDigest)",
                    "clusterSize": "\(peers.count + 1)",
                ])
        case .noMajority:
            noMajorityCount += 1
            if noMajorityCount == 1 {
                log.critical(
                    """
                    NO MAJORITY: the replicas' apps answered the same entries differently and no answer has a \
                    majority: the app is not deterministic, and no replica can be named the wrong one
                    """,
                    metadata: ["index": "\(index)", "clusterSize": "\(peers.count + 1)"])
            }
        }
        publishMetrics()
    }

    /// Forgets the verdict and every digest, this node's and the peers', after the app's state was replaced by a
    /// repair: the digests recorded before came from the state that was thrown away. Counters are kept.
    func reset() {
        ownDigests = BoundedIndexMap(capacity: ownDigests.capacity)
        reports = [:]
        sent = BoundedIndexMap(capacity: sent.capacity)
        judged = BoundedIndexMap(capacity: judged.capacity)
        isDiverged = false
        divergedAtIndex = nil
        majorityMembers = []
        publishMetrics()
    }

    private func ignore(from peer: NodeID, bytes: Int) {
        ignoredReports += 1
        if ignoredReports == 1 {
            log.warning(
                "ignored a malformed divergence report (and count any more)",
                metadata: ["peer": "\(peer)", "bytes": "\(bytes)"])
        }
        publishMetrics()
    }

    private func publishMetrics() {
        guard let metrics else { return }
        metrics.setCounter(
            "tandem_digest_reports_ignored_total",
            help: "Divergence reports dropped: wrong length, index 0, or not from a peer.",
            value: Double(ignoredReports))
        metrics.setCounter(
            "tandem_digest_no_majority_total",
            help: "Indexes where every member reported and no digest had a majority of the cluster.",
            value: Double(noMajorityCount))
    }
}

/// An index -> value map that keeps only the `capacity` most recently inserted indexes (a ring of insertions).
struct BoundedIndexMap {
    private var values: [UInt64: UInt64] = [:]
    private var order: [UInt64] = []
    private var head = 0
    let capacity: Int

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    var count: Int { values.count }

    subscript(index: UInt64) -> UInt64? { values[index] }

    /// Sets the value at `index`; a new index beyond the capacity evicts the oldest one.
    mutating func insert(_ index: UInt64, _ value: UInt64) {
        guard values.updateValue(value, forKey: index) == nil else { return }
        if order.count < capacity {
            order.append(index)
        } else {
            values.removeValue(forKey: order[head])
            order[head] = index
            head = (head + 1) % capacity
        }
    }
}
