// Linearizable reads: ReadIndex (a quorum round after the read arrives) and the leader lease.

/// A read the leader holds until its leadership is confirmed.
struct PendingRead {
    var id: ReadID
    /// Where to answer: this node, or the follower that forwarded it.
    var origin: NodeID
    var mode: ReadMode
    /// The commit index when the read arrived (set once the leader has committed in its term).
    var index: UInt64
    /// The first confirmation round sent after the read arrived; its quorum acknowledgement releases the read.
    var requiredRound: UInt64
    var arrivedAtMs: Int64
}

/// Read bookkeeping for both roles.
struct ReadState {
    /// Reads that arrived before the leader committed an entry of its term (index not known yet).
    var awaitingTermCommit: [PendingRead] = []
    /// Reads waiting for a round, in arrival order (so `requiredRound` never decreases along the array).
    var awaitingRound: [PendingRead] = []
    /// The last round number used. Rounds increase across terms, so an old acknowledgement never confirms a new one.
    var round: UInt64 = 0
    /// A read is waiting for a round that has not been sent yet.
    var roundNeeded = false
    /// When each unacknowledged round was sent (bounded: the oldest are forgotten beyond `roundHistoryMax`).
    var roundSentAtMs: [UInt64: Int64] = [:]
    static let roundHistoryMax = 64
    /// The highest round a quorum acknowledged in this term.
    var quorumAckedRound: UInt64 = 0
    /// Lease reads skip the round until then (leader's clock).
    var leaseExpiryMs: Int64 = .min
    /// Rounds up to this one were sent before a peer link closed: acknowledged later, they confirm reads but no
    /// longer extend the lease (a follower whose link closed may stop backing the leader early; see `linkDown`).
    var leaseRoundFloor: UInt64 = 0
    /// Follower side: reads forwarded to the leader, with when they were sent.
    var forwarded: [ReadID: Int64] = [:]

    /// Invariant: at most `maxPendingReads` (checked by the node).
    var pendingCount: Int { awaitingTermCommit.count + awaitingRound.count + forwarded.count }

    mutating func startTerm() {
        awaitingTermCommit = []
        awaitingRound = []
        roundSentAtMs = [:]
        quorumAckedRound = round
        leaseExpiryMs = .min
        roundNeeded = false
    }

    mutating func startRound(atMs nowMs: Int64) -> UInt64 {
        round += 1
        roundSentAtMs[round] = nowMs
        if roundSentAtMs.count > Self.roundHistoryMax, let oldest = roundSentAtMs.keys.min() {
            roundSentAtMs.removeValue(forKey: oldest)
        }
        roundNeeded = false
        return round
    }
}

extension RaftNode {
    /// Asks to serve a linearizable read. The answer arrives in a later Ready: `readyReads` with the index this
    /// node must have applied before serving, or `failedReads`. Works on followers (forwarded to the leader).
    public mutating func requestRead(id: ReadID, mode: ReadMode, nowMs: Int64) {
        observeClock(nowMs)
        defer { checkInvariants() }
        if reads.pendingCount >= config.maxPendingReads {
            pending.failedReads.append((id, .overloaded))
            return
        }
        if role == .leader {
            acceptLeaderRead(
                PendingRead(
                    id: id, origin: config.id, mode: mode, index: 0, requiredRound: 0,
                    arrivedAtMs: self.nowMs))
            return
        }
        guard let leader else {
            pending.failedReads.append((id, .noLeader))
            return
        }
        reads.forwarded[id] = self.nowMs
        send(.readIndexRequest(ReadIndexRequest(from: config.id, to: leader, term: term, reads: [id], mode: mode)))
    }

    /// Whether a lease read can be served now without a round.
    public var leaseValid: Bool {
        role == .leader && transfer == nil && !leaseDisabledInTerm && nowMs < reads.leaseExpiryMs
            && log.term(at: log.committedIndex) == term
    }

    mutating func acceptLeaderRead(_ read: PendingRead) {
        var read = read
        guard log.term(at: log.committedIndex) == term else {
            // Until an entry of this term commits, our commit index may lag what a previous leader committed.
            reads.awaitingTermCommit.append(read)
            return
        }
        read.index = log.committedIndex
        if isSoleVoter || (read.mode == .lease && leaseValid) {
            release(read, .ready(index: read.index))
            return
        }
        read.requiredRound = reads.round + 1
        reads.awaitingRound.append(read)
        reads.roundNeeded = true
    }

    mutating func onFirstCommitInTerm() {
        let waiting = reads.awaitingTermCommit
        reads.awaitingTermCommit = []
        for read in waiting { acceptLeaderRead(read) }
    }

    /// Recomputes the highest round a quorum acknowledged; extends the lease and releases confirmed reads.
    mutating func updateQuorumRound() {
        guard role == .leader else { return }
        var acked = otherVoters.map { progress[$0]!.ackedRound }
        if isVoter { acked.append(reads.round) }
        acked.sort(by: >)
        let confirmed = acked[configuration.quorum - 1]
        guard confirmed > reads.quorumAckedRound else { return }
        reads.quorumAckedRound = confirmed
        if confirmed > reads.leaseRoundFloor, let sentAt = reads.roundSentAtMs[confirmed], !leaseDisabledInTerm {
            // Every acknowledging follower neither grants a vote nor campaigns for the stickiness period from
            // when it received the round, which is after we sent it; a new leader needs one of them. The lease
            // stops short of that by the clock-drift margin (the derivation is beside RaftConfig.leaseDurationMs).
            reads.leaseExpiryMs = max(reads.leaseExpiryMs, sentAt + config.leaseDurationMs)
        }
        reads.roundSentAtMs = reads.roundSentAtMs.filter { $0.key > confirmed }
        var released = 0
        while released < reads.awaitingRound.count && reads.awaitingRound[released].requiredRound <= confirmed {
            let read = reads.awaitingRound[released]
            release(read, .ready(index: read.index))
            released += 1
        }
        if released > 0 { reads.awaitingRound.removeFirst(released) }
    }

    mutating func release(_ read: PendingRead, _ outcome: ReadOutcome) {
        if read.origin == config.id {
            switch outcome {
            case .ready(let index): pending.readyReads.append((read.id, index))
            case .failed(let error): pending.failedReads.append((read.id, error))
            }
        } else {
            outgoingReadOutcomes[read.origin, default: [:]][read.id] = outcome
        }
    }

    mutating func failLeaderReads(_ error: ReadError) {
        for read in reads.awaitingTermCommit + reads.awaitingRound { release(read, .failed(error)) }
        reads.awaitingTermCommit = []
        reads.awaitingRound = []
    }

    mutating func onReadIndexRequest(_ request: ReadIndexRequest) {
        for id in request.reads {
            let read = PendingRead(
                id: id, origin: request.from, mode: request.mode, index: 0, requiredRound: 0,
                arrivedAtMs: nowMs)
            if role != .leader {
                release(read, .failed(.notLeader))
            } else if reads.pendingCount >= config.maxPendingReads {
                release(read, .failed(.overloaded))
            } else {
                acceptLeaderRead(read)
            }
        }
    }

    mutating func onReadIndexResponse(_ response: ReadIndexResponse) {
        for (id, outcome) in response.outcomes.sorted(by: { $0.key.sequence < $1.key.sequence }) {
            guard reads.forwarded.removeValue(forKey: id) != nil else { continue }  // Duplicate or timed out.
            switch outcome {
            case .ready(let index): pending.readyReads.append((id, index))
            case .failed(let error): pending.failedReads.append((id, error))
            }
        }
    }

    /// Fails reads that waited longer than `readTimeoutMs`, at the leader and at forwarding followers.
    mutating func expireReads() {
        let cutoff = nowMs - config.readTimeoutMs
        if reads.awaitingRound.first.map({ $0.arrivedAtMs <= cutoff }) == true
            || reads.awaitingTermCommit.first.map({ $0.arrivedAtMs <= cutoff }) == true
        {
            let expired = (reads.awaitingTermCommit + reads.awaitingRound).filter { $0.arrivedAtMs <= cutoff }
            reads.awaitingTermCommit.removeAll { $0.arrivedAtMs <= cutoff }
            reads.awaitingRound.removeAll { $0.arrivedAtMs <= cutoff }
            for read in expired { release(read, .failed(.timeout)) }
        }
        let stale = reads.forwarded.filter { $0.value <= cutoff }.keys.sorted { $0.sequence < $1.sequence }
        for id in stale {
            reads.forwarded.removeValue(forKey: id)
            pending.failedReads.append((id, .timeout))
        }
    }
}
