import TandemConsensus

/// What `TANDEM_DIVERGENCE_ACTION=repair` does with a replica found diverged: a value with named phases that takes
/// events and returns the actions the write path carries out.
///
/// Which state is authoritative: the leader's, and only while the leader is one of the members whose digests formed
/// the majority of the verdict. Every acknowledged write went through the leader's log, and a client that talked to
/// the leader's node saw the leader's app's answers; a client that talked to the diverged node saw answers the
/// majority cannot reproduce, and the repair replaces them. So that nothing such a client saw is destroyed, the
/// diverged app's state is saved aside first (`<data dir>/diverged/`, the newest copy kept) and the repair does not
/// go on if that copy cannot be written.
///
/// The steps: a diverged leader first hands leadership to a member of the majority (it cannot fetch a snapshot from
/// itself); the diverged state is saved aside; the replica stops serving and asks the leader for its latest
/// snapshot, which is verified and restored like any installed snapshot; the replica's own log after the snapshot is
/// replayed into the app; the verdict is cleared and the replica serves again. An app that needs more than
/// `maxRepairsPerWindow` repairs within `windowMs` is not deterministic: repairing it again would loop, so the
/// replica is stopped instead (as `TANDEM_DIVERGENCE_ACTION=stop` does) for an operator.
struct DivergenceRepair {
    enum Phase: Equatable, CustomStringConvertible {
        /// No repair under way (the replica is sound, or not repairing).
        case idle
        /// This node leads and is the diverged one: it asked to hand leadership over at `sinceMs`.
        case handingOff(sinceMs: Int64)
        /// The app's diverged state is being saved aside.
        case savingCopy
        /// Waiting for a leader that agrees with the majority.
        case awaitingAuthority
        /// The leader's snapshot was asked for and is being received or restored.
        case fetching(sinceMs: Int64)
        /// The app holds the leader's snapshot; the log after it is being replayed.
        case replaying
        /// Repairs stopped: the replica was stopped for an operator, for `reason`.
        case gaveUp(reason: String)

        var description: String {
            switch self {
            case .idle: return "idle"
            case .handingOff: return "handing off leadership"
            case .savingCopy: return "saving the diverged state aside"
            case .awaitingAuthority: return "waiting for a leader that agrees with the majority"
            case .fetching: return "fetching the leader's snapshot"
            case .replaying: return "replaying the log after the snapshot"
            case .gaveUp(let reason): return "gave up: \(reason)"
            }
        }
    }

    enum Action: Equatable {
        /// Ask the core to hand leadership to a member of the majority.
        case transferLeadership
        /// Save the app's current state aside, then report `copySaved`.
        case saveCopy
        /// Stop serving and ask the leader for its latest snapshot; report `restored` once the app holds it.
        case requestSnapshot
        /// The repair is over: clear the verdict and serve again.
        case markRepaired
        /// Stop applying and serving, for an operator.
        case stop(reason: String)
    }

    /// What the write path knows when an event comes in.
    struct Situation: Equatable {
        /// This node is the leader.
        var isLeader: Bool
        /// The known leader is another node and one of the members that agreed on the majority's digest.
        var leaderIsAuthoritative: Bool
    }

    static let maxRepairsPerWindow = 3
    static let windowMs: Int64 = 3_600_000
    /// How long a leader waits for its hand-off before it asks again.
    static let handOffRetryMs: Int64 = 2_000

    private(set) var phase: Phase = .idle
    /// When each repair of the current window started (at most `maxRepairsPerWindow`).
    private var recentStartsMs: [Int64] = []
    private(set) var started: UInt64 = 0
    private(set) var completed: UInt64 = 0
    private(set) var gaveUp: UInt64 = 0

    /// Whether a repair is under way: the replica neither serves nor takes snapshots of its own meanwhile.
    var isRepairing: Bool {
        switch phase {
        case .idle, .gaveUp: return false
        case .handingOff, .savingCopy, .awaitingAuthority, .fetching, .replaying: return true
        }
    }

    /// The divergence monitor found this replica diverged.
    mutating func diverged(_ situation: Situation, nowMs: Int64) -> [Action] {
        guard phase == .idle else { return [] }
        recentStartsMs.removeAll { nowMs - $0 >= Self.windowMs }
        guard recentStartsMs.count < Self.maxRepairsPerWindow else {
            return giveUp(
                "diverged again after \(Self.maxRepairsPerWindow) repairs within \(Self.windowMs / 60_000) minutes: "
                    + "the app is not deterministic (docs/DETERMINISM.md)")
        }
        recentStartsMs.append(nowMs)
        started += 1
        if situation.isLeader {
            phase = .handingOff(sinceMs: nowMs)
            return [.transferLeadership]
        }
        phase = .savingCopy
        return [.saveCopy]
    }

    /// Called about once a second and whenever the role or the leader changes.
    mutating func tick(_ situation: Situation, nowMs: Int64) -> [Action] {
        switch phase {
        case .handingOff(let since):
            if !situation.isLeader {
                phase = .savingCopy
                return [.saveCopy]
            }
            guard nowMs - since >= Self.handOffRetryMs else { return [] }
            phase = .handingOff(sinceMs: nowMs)
            return [.transferLeadership]
        case .awaitingAuthority:
            return fetchIfAuthoritative(situation, nowMs: nowMs)
        case .idle, .savingCopy, .fetching, .replaying, .gaveUp:
            return []
        }
    }

    /// The diverged state was saved aside (or could not be: then nothing is destroyed, and the replica stops).
    mutating func copySaved(ok: Bool, _ situation: Situation, nowMs: Int64) -> [Action] {
        guard phase == .savingCopy else { return [] }
        guard ok else { return giveUp("the diverged state could not be saved aside, so it is not replaced") }
        if situation.isLeader {
            // Leadership came back meanwhile: hand it over again first.
            phase = .handingOff(sinceMs: nowMs)
            return [.transferLeadership]
        }
        phase = .awaitingAuthority
        return fetchIfAuthoritative(situation, nowMs: nowMs)
    }

    /// The app holds the leader's snapshot; `replaying` says whether entries after it are being replayed.
    mutating func restored(replaying: Bool) -> [Action] {
        guard case .fetching = phase else { return [] }
        guard replaying else { return finish() }
        phase = .replaying
        return []
    }

    /// The replay after the snapshot reached the index applied before the repair.
    mutating func replayFinished() -> [Action] {
        guard phase == .replaying else { return [] }
        return finish()
    }

    private mutating func fetchIfAuthoritative(_ situation: Situation, nowMs: Int64) -> [Action] {
        guard situation.leaderIsAuthoritative, !situation.isLeader else { return [] }
        phase = .fetching(sinceMs: nowMs)
        return [.requestSnapshot]
    }

    private mutating func finish() -> [Action] {
        phase = .idle
        completed += 1
        return [.markRepaired]
    }

    private mutating func giveUp(_ reason: String) -> [Action] {
        phase = .gaveUp(reason: reason)
        gaveUp += 1
        return [.stop(reason: reason)]
    }
}
