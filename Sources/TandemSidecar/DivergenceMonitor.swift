import Logging
import TandemConsensus
import TandemNet
import TandemNode

/// Compares this replica's applied outcomes with the leader's. Each node folds (index, status, body hash) of every
/// applied entry into a rolling digest; the leader broadcasts (index, digest) every second; a follower compares it
/// with its own digest at the same index — now, or once it has applied that far. A mismatch means the app is not
/// deterministic: the replica is marked diverged (metric, /status, /readyz, a loud log line), never ignored.
final class DivergenceMonitor {
    static let frameType: UInt8 = 0x40
    /// Own digests by index, for the most recent applied entries (bounded ring).
    private var ownDigests: [UInt64: UInt64] = [:]
    private var ownOrder: [UInt64] = []
    private let ownCapacity = 8192
    /// Leader reports this replica has not reached yet (bounded; the newest win).
    private var pendingReports: [(index: UInt64, digest: UInt64)] = []
    private let pendingCapacity = 64
    private(set) var isDiverged = false
    private(set) var divergedAtIndex: UInt64?
    private(set) var comparisons: UInt64 = 0
    private let log: Logger
    /// A replica that resumed after index b (a durable app) lacks the start of b's digest block: skip that block.
    private let incomparableBlock: UInt64?

    init(log: Logger, resumedAfter index: UInt64) {
        self.log = log
        self.incomparableBlock = index > 0 ? index / ApplyDigest.blockSize : nil
    }

    /// After each applied entry.
    func recordApplied(index: UInt64, digest: UInt64) {
        ownDigests[index] = digest
        ownOrder.append(index)
        if ownOrder.count > ownCapacity {
            ownDigests.removeValue(forKey: ownOrder.removeFirst())
        }
        while let first = pendingReports.first, first.index <= index {
            pendingReports.removeFirst()
            compare(index: first.index, leaderDigest: first.digest)
        }
    }

    /// A report from the leader. Ignored from anyone else: the leader's history is the reference.
    func onReport(from peer: NodeID, leader: NodeID?, payload: UnsafeRawBufferPointer, appliedIndex: UInt64) {
        guard peer == leader, payload.count == 16 else { return }
        let index = payload.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
        let digest = payload.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian
        if index <= appliedIndex {
            compare(index: index, leaderDigest: digest)
        } else {
            pendingReports.append((index, digest))
            if pendingReports.count > pendingCapacity { pendingReports.removeFirst() }
        }
    }

    /// Whether this replica's digest at `index` covers its whole block. A replica that resumed mid-block (a
    /// durable app) holds a partial digest there: compared with anyone's, it would look like divergence.
    func hasCompleteDigest(at index: UInt64) -> Bool {
        index / ApplyDigest.blockSize != incomparableBlock
    }

    static func reportPayload(index: UInt64, digest: UInt64) -> [UInt8] {
        var payload: [UInt8] = []
        payload.reserveCapacity(16)
        withUnsafeBytes(of: index.littleEndian) { payload.append(contentsOf: $0) }
        withUnsafeBytes(of: digest.littleEndian) { payload.append(contentsOf: $0) }
        return payload
    }

    private func compare(index: UInt64, leaderDigest: UInt64) {
        guard index / ApplyDigest.blockSize != incomparableBlock else { return }
        guard let own = ownDigests[index] else { return }  // too old to compare, or a no-op index
        comparisons += 1
        guard own != leaderDigest, !isDiverged else { return }
        isDiverged = true
        divergedAtIndex = index
        log.critical(
            "DIVERGED: this replica's app answered differently from the leader's: the app is not deterministic",
            metadata: ["index": "\(index)", "own": "\(own)", "leader": "\(leaderDigest)"])
    }
}
