// Proposals (appended on the leader, forwarded from followers) and leadership transfer.

extension RaftNode {
    /// Proposes a client write. On the leader it is appended at once and reported in `Ready.acceptedProposals`.
    /// On a follower it is forwarded to the leader, whose answer arrives in a later Ready (accepted or rejected).
    /// `wallTimeMs` is this node's wall clock, used to stamp `Entry.timeMs`.
    /// - Throws: `.noLeader`, `.overloaded` (uncommitted bytes or pending forwards at their cap), `.tooLarge`,
    ///   `.leadershipTransferInProgress`. A thrown proposal was not appended anywhere.
    public mutating func propose(_ data: [UInt8], id: ProposalID, wallTimeMs: Int64, nowMs: Int64)
        throws(ProposalError)
    {
        observeClock(nowMs)
        wallOffsetMs = wallTimeMs - self.nowMs
        defer { checkInvariants() }
        guard data.count <= config.maxMessageBytes else { throw .tooLarge }
        if role == .leader {
            let placed = try appendProposal(data, id: id)
            pending.acceptedProposals.append((id, placed.index, placed.term))
            return
        }
        guard let leader else { throw .noLeader }
        guard pendingForwards.count < config.maxPendingForwards else { throw .overloaded }
        forward(ForwardedProposal(id: id, data: data), to: leader)
    }

    /// Appends a proposal to the leader's log; the broadcast is deferred to the next Ready so proposals batch.
    mutating func appendProposal(_ data: [UInt8], id: ProposalID) throws(ProposalError) -> (index: UInt64, term: UInt64)
    {
        precondition(role == .leader)
        if transfer != nil { throw .leadershipTransferInProgress }
        guard data.count <= config.maxMessageBytes else { throw .tooLarge }
        let entry = Entry(
            term: term, index: log.lastIndex + 1, kind: .normal,
            timeMs: entryTimeMs(), proposal: id, data: data)
        // One entry is always admitted when nothing is uncommitted, so a large proposal cannot wedge the cap.
        if uncommittedBytes > 0 && uncommittedBytes + entry.sizeBytes > config.maxUncommittedBytes {
            throw .overloaded
        }
        log.append(entry)
        uncommittedBytes += entry.sizeBytes
        needsAppendBroadcast = true
        if isSoleVoter { maybeCommit() }
        return (entry.index, entry.term)
    }

    // MARK: Leadership transfer

    /// Hands leadership to `target`: the leader stops accepting proposals, catches the target up, then tells it to
    /// campaign at once (TimeoutNow). The transfer is abandoned after one election timeout.
    public mutating func transferLeadership(to target: NodeID, nowMs: Int64) throws(TransferError) {
        observeClock(nowMs)
        defer { checkInvariants() }
        guard role == .leader else { throw .notLeader }
        guard target != config.id else { throw .targetIsSelf }
        // A learner cannot campaign, so it is no target either.
        guard progress[target] != nil, configuration.isVoter(target) else { throw .unknownTarget }
        guard transfer == nil else { throw .alreadyInProgress }
        transfer = LeadershipTransfer(target: target, deadlineMs: self.nowMs + config.electionTimeoutMs)
        if !maybeSendTimeoutNow(to: target) {
            progress[target]!.probeSentAtMs = nil
            sendAppends(to: target, allowEmpty: true)
        }
    }

    /// Sends TimeoutNow once the transfer target holds our whole log; returns whether it was sent.
    @discardableResult
    mutating func maybeSendTimeoutNow(to peer: NodeID) -> Bool {
        guard var pending = transfer, pending.target == peer, !pending.timeoutNowSent,
            progress[peer]!.matchIndex == log.lastIndex
        else { return false }
        pending.timeoutNowSent = true
        transfer = pending
        // The target's election skips the voters' stickiness, so our lease must end here, for the rest of the term.
        leaseDisabledInTerm = true
        reads.leaseExpiryMs = .min
        send(.timeoutNow(TimeoutNow(from: config.id, to: peer, term: term)))
        return true
    }

    // MARK: Status

    /// A snapshot of role, term, indexes and per-peer replication and suspicion (phi as of the last tick).
    public var status: NodeStatus {
        let phiTime = lastTickMs ?? nowMs
        let peers = others.map { peer -> PeerStatus in
            let replication = progress[peer]
            return PeerStatus(
                id: peer, matchIndex: replication?.matchIndex ?? 0,
                nextIndex: replication?.nextIndex ?? 0,
                inflightMessages: replication?.inflight.count ?? 0,
                inflightBytes: replication?.inflight.totalBytes ?? 0,
                lastContactMs: detectors[peer]?.lastArrivalMs,
                phi: detectors[peer]?.phi(nowMs: phiTime) ?? 0,
                awaitingSnapshot: replication?.state == .snapshot)
        }
        return NodeStatus(
            id: config.id, role: role, term: term, leader: leader, commitIndex: log.committedIndex,
            carriedOutIndex: carriedOutIndex, lastIndex: log.lastIndex, logBaseIndex: log.offset,
            persistedIndex: log.persistedIndex,
            leaseValid: leaseValid, uncommittedBytes: uncommittedBytes, peers: peers)
    }
}

extension RaftNode {
    /// `Tandem-Time` for an entry this leader appends: its own wall clock, but never less than the log time it
    /// inherited plus the time that passed on its own clock since it took over. Log time never decreases, and
    /// when an earlier leader's clock ran ahead it keeps moving at the real rate instead of freezing until this
    /// clock catches up (TTLs and app-visible time would otherwise stand still for as long as that clock was
    /// ahead). Saturating: a hostile time near the limit cannot overflow.
    func entryTimeMs() -> Int64 {
        let wall = nowMs &+ wallOffsetMs
        guard let base = termTimeBase else { return max(log.lastTimeMs, wall) }
        let elapsed = max(0, nowMs - base.atMs)
        let (carried, overflow) = base.timeMs.addingReportingOverflow(elapsed)
        return max(log.lastTimeMs, wall, overflow ? .max : carried)
    }
}
