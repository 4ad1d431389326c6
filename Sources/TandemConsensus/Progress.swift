/// The leader's view of one follower's replication, with flow control.
struct Progress {
    enum State: Equatable {
        /// The leader is searching for the last matching index: one append at a time.
        case probe
        /// The follower is known to match: appends are pipelined within the inflight limits.
        case replicate
        /// The follower needs entries this leader no longer has: the runtime streams it a snapshot, and no append
        /// is sent until it acknowledges `pendingSnapshotIndex` or more, or `snapshotResume` is due.
        case snapshot
    }

    /// In snapshot state: the leader's log base when the follower was listed in `Ready.snapshotsNeeded`.
    var pendingSnapshotIndex: UInt64 = 0
    /// In snapshot state, once the runtime reported the transfer: when to go back to probing, and from where.
    var snapshotResume: (atMs: Int64, nextIndex: UInt64)?

    /// Invariant: `matchIndex < nextIndex`.
    var matchIndex: UInt64 = 0
    var nextIndex: UInt64
    var state: State = .probe
    /// In probe state, when the single outstanding probe was sent; the next waits for an answer or a heartbeat.
    var probeSentAtMs: Int64?
    /// Appends in flight (replicate state). Bounded by the config's inflight limits.
    var inflight = Inflights()
    /// When the leader last received any message from the follower (check-quorum).
    var lastHeardMs: Int64
    /// The highest confirmation round the follower acknowledged in this term.
    var ackedRound: UInt64 = 0
    /// Times the follower's answers proved it lost entries it had acknowledged (a wiped disk), and the leader
    /// started over from its real log. For diagnostics (`RaftNode.replicationDiagnostics`).
    var lostLogResets: UInt64 = 0
    /// The most entry bytes one append to this follower carries; `Int.max` leaves it to `maxMessageBytes`.
    /// Halved each time an append is presumed lost (a frame limit below the configured message size drops the same
    /// append on every retry), grown back after `growAfterAcks` acknowledged appends. Never below one entry: the
    /// log always hands out at least one, and a single entry fits any frame limit derived from the message size.
    var batchLimitBytes = Int.max
    var appendsPresumedLost: UInt64 = 0
    /// Acknowledged appends since the limit last changed.
    var acksSinceLimitChange = 0
    /// In probe state: the confirmation round current when the outstanding probe was sent, and its entry bytes.
    /// A heartbeat of a later round answered while the probe is not means the probe was lost (links are FIFO and
    /// a follower answers in order).
    var probeRound: UInt64 = 0
    var probeBytes = 0

    static let growAfterAcks = 16

    /// The outstanding probe was lost: send smaller appends from now on.
    mutating func probeLost() {
        appendsPresumedLost += 1
        batchLimitBytes = max(1, probeBytes / 2)
        acksSinceLimitChange = 0
        probeSentAtMs = nil
    }

    /// An append was acknowledged: after enough of them, try larger appends again (a loss may have been transient).
    mutating func appendAcknowledged() {
        guard batchLimitBytes != .max else { return }
        acksSinceLimitChange += 1
        guard acksSinceLimitChange >= Progress.growAfterAcks else { return }
        acksSinceLimitChange = 0
        batchLimitBytes = batchLimitBytes > Int.max / 2 ? .max : batchLimitBytes * 2
    }

    init(nextIndex: UInt64, nowMs: Int64) {
        self.nextIndex = nextIndex
        self.lastHeardMs = nowMs
    }

    func isPaused(nowMs: Int64, heartbeatIntervalMs: Int64, maxMessages: Int, maxBytes: Int) -> Bool {
        switch state {
        case .snapshot:
            return true
        case .probe:
            guard let sent = probeSentAtMs else { return false }
            return nowMs - sent < heartbeatIntervalMs
        case .replicate:
            return inflight.isFull(maxMessages: maxMessages, maxBytes: maxBytes)
        }
    }

    mutating func becomeProbe() {
        state = .probe
        nextIndex = matchIndex + 1
        probeSentAtMs = nil
        inflight.removeAll()
        snapshotResume = nil
    }

    mutating func becomeReplicate() {
        state = .replicate
        nextIndex = matchIndex + 1
        probeSentAtMs = nil
        inflight.removeAll()
        snapshotResume = nil
    }

    /// The follower needs what lies at or before the leader's log base `index`: wait for a snapshot.
    mutating func becomeSnapshot(index: UInt64) {
        state = .snapshot
        pendingSnapshotIndex = index
        snapshotResume = nil
        probeSentAtMs = nil
        inflight.removeAll()
    }

    /// In snapshot state: whether to go back to probing now (the transfer was reported and its pause is over).
    /// Probing from `matchIndex + 1` after a failure lists the follower again at once (its next entry is still at or
    /// before the base); after a success it probes just past the snapshot, which the follower then holds (its
    /// acknowledgement may have been lost).
    mutating func resumeAfterSnapshotIfDue(nowMs: Int64) -> Bool {
        guard state == .snapshot, let resume = snapshotResume, nowMs >= resume.atMs else { return false }
        becomeProbe()
        nextIndex = max(nextIndex, resume.nextIndex)
        return true
    }

    /// The follower lost entries it had acknowledged: its log now ends at `lastIndex`, below `matchIndex`.
    /// `matchIndex` drops to `matchingIndex` (what is known to still match, at most `lastIndex`) and the leader
    /// probes from just after `lastIndex`.
    mutating func restartAfterLostLog(matchingIndex: UInt64, lastIndex: UInt64) {
        precondition(matchingIndex <= lastIndex && lastIndex < matchIndex, "not a lost log")
        matchIndex = matchingIndex
        becomeProbe()
        nextIndex = lastIndex + 1
        lostLogResets += 1
        precondition(matchIndex < nextIndex, "match must stay below next")
    }

    /// Records an acknowledged index; returns whether it moved the match forward.
    mutating func acknowledge(_ index: UInt64) -> Bool {
        inflight.free(through: index)
        guard index > matchIndex else { return false }
        matchIndex = index
        nextIndex = max(nextIndex, index + 1)
        probeSentAtMs = nil
        precondition(matchIndex < nextIndex, "match must stay below next")
        return true
    }
}

/// Appends in flight to one follower, oldest first.
struct Inflights {
    /// The last index each in-flight append carried, with its entry bytes. Bounded by the caller's limits.
    private(set) var items: [(lastIndex: UInt64, bytes: Int)] = []
    private(set) var totalBytes = 0

    var count: Int { items.count }

    func isFull(maxMessages: Int, maxBytes: Int) -> Bool {
        items.count >= maxMessages || totalBytes >= maxBytes
    }

    mutating func add(lastIndex: UInt64, bytes: Int) {
        items.append((lastIndex, bytes))
        totalBytes += bytes
    }

    /// Frees every append whose entries are all acknowledged.
    mutating func free(through index: UInt64) {
        var drop = 0
        while drop < items.count && items[drop].lastIndex <= index {
            totalBytes -= items[drop].bytes
            drop += 1
        }
        if drop > 0 { items.removeFirst(drop) }
    }

    mutating func removeAll() {
        items.removeAll(keepingCapacity: true)
        totalBytes = 0
    }
}

/// A map that forgets its oldest keys beyond a capacity. Used to remember the fate of forwarded proposals so that a
/// duplicated forward gets the same answer as the original.
struct BoundedFIFOMap<Key: Hashable, Value> {
    /// Invariant: `storage.count <= capacity` and every key in `storage` is in `order`.
    private(set) var storage: [Key: Value] = [:]
    private var order: [Key] = []
    private var head = 0
    let capacity: Int

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    subscript(key: Key) -> Value? { storage[key] }

    mutating func insert(_ value: Value, for key: Key) {
        if storage.updateValue(value, forKey: key) != nil { return }
        order.append(key)
        if storage.count > capacity {
            storage.removeValue(forKey: order[head])
            head += 1
        }
        if head > capacity {  // Compact the consumed prefix so `order` stays bounded too.
            order.removeFirst(head)
            head = 0
        }
        precondition(storage.count <= capacity, "bounded map overflow")
    }
}

/// SplitMix64: a small, fast, seedable generator. The core's only source of randomness, so runs replay exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension BoundedFIFOMap: Sendable where Key: Sendable, Value: Sendable {}
