// Replication: appends with the consistency check, pipelining under flow control, heartbeats and commitment.

extension RaftNode {
    // MARK: Follower side

    mutating func onAppendEntries(_ append: AppendEntries) {
        acceptLeader(append.from)
        if append.prevLogIndex < log.committedIndex {
            // Everything up to our commit index matches any leader's log; tell the leader where to resume. This
            // covers a previous index below our log base too: the base is committed.
            respondToAppend(append, success: true, matchIndex: log.committedIndex)
            return
        }
        guard log.term(at: append.prevLogIndex) == append.prevLogTerm else {
            let hintIndex = log.lastIndex(atOrBelow: append.prevLogIndex, withTermAtMost: append.prevLogTerm)
            send(
                .appendResponse(
                    AppendResponse(
                        from: config.id, to: append.from, term: term, success: false, matchIndex: 0,
                        rejectedIndex: append.prevLogIndex, hintIndex: hintIndex, hintTerm: log.term(at: hintIndex) ?? 0
                    )))
            return
        }
        let lastNewIndex = log.appendFromLeader(prevIndex: append.prevLogIndex, entries: append.entries)
        reconcileConfiguration()
        log.commit(to: min(append.leaderCommit, lastNewIndex))
        // The response leaves in the same Ready as the entries, so it is sent only after they are durable.
        respondToAppend(append, success: true, matchIndex: lastNewIndex)
    }

    mutating func respondToAppend(_ append: AppendEntries, success: Bool, matchIndex: UInt64) {
        send(
            .appendResponse(
                AppendResponse(
                    from: config.id, to: append.from, term: term, success: success,
                    matchIndex: matchIndex, rejectedIndex: 0, hintIndex: 0, hintTerm: 0)))
    }

    mutating func onHeartbeat(_ heartbeat: Heartbeat) {
        acceptLeader(heartbeat.from)
        // The leader caps the commit index at what it knows we hold, so it never points past our matching prefix.
        log.commit(to: min(heartbeat.commitIndex, log.lastIndex))
        if heartbeat.commitIndex > log.lastIndex {
            // The leader holds an acknowledgement from us for entries we no longer have: we lost our log (an empty
            // data directory under the same id). An idle leader would send nothing else, so tell it where our log
            // ends, as the refusal of an append would.
            send(
                .appendResponse(
                    AppendResponse(
                        from: config.id, to: heartbeat.from, term: term, success: false, matchIndex: 0,
                        rejectedIndex: heartbeat.commitIndex, hintIndex: log.lastIndex, hintTerm: log.lastTerm)))
        }
        send(
            .heartbeatResponse(
                HeartbeatResponse(
                    from: config.id, to: heartbeat.from, term: term,
                    round: heartbeat.round)))
    }

    // MARK: Leader side

    mutating func onAppendResponse(_ response: AppendResponse) {
        guard role == .leader, var peer = progress[response.from] else { return }
        if response.success {
            peer.appendAcknowledged()
            let moved = peer.acknowledge(response.matchIndex)
            switch peer.state {
            case .probe: peer.becomeReplicate()
            case .snapshot where peer.matchIndex >= peer.pendingSnapshotIndex:
                // The follower installed the snapshot (or caught up otherwise): appends can serve it from here.
                peer.becomeReplicate()
            case .snapshot, .replicate: break
            }
            progress[response.from] = peer
            if moved {
                maybeCommit()
                maybeSendTimeoutNow(to: response.from)
            }
            sendAppends(to: response.from, allowEmpty: false)
            return
        }
        // No append is outstanding in snapshot state: a refusal is an old one, or a lost log that the snapshot the
        // follower waits for repairs as well.
        if peer.state == .snapshot { return }
        if response.rejectedIndex <= peer.matchIndex {
            // Normally a stale answer to an old message. But a refusal (of an append in replicate state, of the
            // outstanding probe, or sent on a heartbeat, see `onHeartbeat`) whose hint says the follower's log
            // ends below what it acknowledged means it lost its log (an empty data directory under the same id):
            // without a reset the leader would probe at matchIndex forever and ignore every refusal. A stale
            // refusal taken for this (reordering) only lowers matchIndex until the next probe is answered; the
            // commit index never goes back.
            //
            // Safety note for operators: a wiped voter also lost its vote record and the entries it acknowledged,
            // so the quorums that elected a leader or committed an entry may no longer intersect the current
            // one; committed entries can be lost if a quorum of such nodes forms. Replicating to it again is
            // right, but bringing a voter back with an empty disk is a membership matter the operator runbook
            // must handle (replace it as a new member); the core does not try to detect or solve it.
            guard response.hintIndex < peer.matchIndex,
                peer.state == .replicate || response.rejectedIndex == peer.nextIndex - 1
            else { return }
            let matching = log.term(at: response.hintIndex) == response.hintTerm ? response.hintIndex : 0
            peer.restartAfterLostLog(matchingIndex: matching, lastIndex: response.hintIndex)
            progress[response.from] = peer
            sendAppends(to: response.from, allowEmpty: true)
            return
        }
        guard peer.state == .replicate || response.rejectedIndex == peer.nextIndex - 1 else { return }
        let resume = log.lastIndex(atOrBelow: response.hintIndex, withTermAtMost: response.hintTerm) + 1
        peer.becomeProbe()
        peer.nextIndex = max(peer.matchIndex + 1, min(resume, response.rejectedIndex))
        progress[response.from] = peer
        sendAppends(to: response.from, allowEmpty: true)
    }

    mutating func onHeartbeatResponse(_ response: HeartbeatResponse) {
        guard role == .leader, var peer = progress[response.from] else { return }
        peer.ackedRound = max(peer.ackedRound, response.round)
        let behind = peer.matchIndex < log.lastIndex
        if peer.state == .probe, peer.probeSentAtMs != nil, peer.probeBytes > 0, response.round > peer.probeRound {
            // The follower answered a heartbeat sent after the probe but not the probe: it was lost, most likely
            // dropped as larger than the frame limit (the transport counts it). The same append would be lost on
            // every retry, so the next ones are smaller.
            peer.probeLost()
        }
        if behind {
            // An append may have been lost: let one more through, which either fills the gap or is refused and
            // sends the peer back to probing.
            if peer.state == .replicate && peer.inflight.count > 0 { peer.inflight.removeAll() }
            peer.probeSentAtMs = nil
        }
        progress[response.from] = peer
        updateQuorumRound()
        if behind { sendAppends(to: response.from, allowEmpty: true) }
    }

    /// Sends appends to one peer: one probe in probe state, or as many batches as flow control allows.
    mutating func sendAppends(to peer: NodeID, allowEmpty: Bool) {
        var first = true
        for _ in 0..<config.maxInflightMessages {
            guard sendAppend(to: peer, allowEmpty: allowEmpty && first) else { return }
            first = false
        }
    }

    /// Sends one append; returns whether another could follow at once (pipelining in replicate state).
    mutating func sendAppend(to peerID: NodeID, allowEmpty: Bool) -> Bool {
        guard var peer = progress[peerID] else { return false }
        if peer.resumeAfterSnapshotIfDue(nowMs: nowMs) { progress[peerID] = peer }
        guard
            !peer.isPaused(
                nowMs: nowMs, heartbeatIntervalMs: config.heartbeatIntervalMs,
                maxMessages: config.maxInflightMessages, maxBytes: config.maxInflightBytes)
        else { return false }
        if peer.nextIndex <= log.offset {
            // The entry before the next one is compacted: no append can pass the follower's consistency check.
            // The runtime streams a snapshot; nothing more is sent to this follower until it is acknowledged.
            peer.becomeSnapshot(index: log.offset)
            progress[peerID] = peer
            if !pending.snapshotsNeeded.contains(peerID) { pending.snapshotsNeeded.append(peerID) }
            return false
        }
        // Sized on the exact encoded bytes, the message's fixed part included: a batch of several entries encodes
        // to at most maxMessageBytes, which the frame limit must carry (`RaftConfig.largestAppendPayloadBytes`).
        let budget = config.maxMessageBytes - WireSize.appendEntriesFixed(from: config.id, to: peerID)
        let batch = log.entries(from: peer.nextIndex, maxBytes: min(budget, peer.batchLimitBytes))
        if batch.isEmpty && !allowEmpty && peer.state == .replicate { return false }
        let prevIndex = peer.nextIndex - 1
        guard let prevTerm = log.term(at: prevIndex) else {
            preconditionFailure("next index \(peer.nextIndex) beyond the log (last \(log.lastIndex))")
        }
        send(
            .appendEntries(
                AppendEntries(
                    from: config.id, to: peerID, term: term, prevLogIndex: prevIndex,
                    prevLogTerm: prevTerm, entries: Array(batch),
                    leaderCommit: log.committedIndex)))
        var more = false
        switch peer.state {
        case .replicate:
            if let last = batch.last {
                peer.nextIndex = last.index + 1
                peer.inflight.add(lastIndex: last.index, bytes: batch.reduce(0) { $0 + $1.sizeBytes })
                more = peer.nextIndex <= log.lastIndex
            }
        case .probe:
            peer.probeSentAtMs = nowMs
            peer.probeRound = reads.round
            peer.probeBytes = batch.reduce(0) { $0 + $1.sizeBytes }
        case .snapshot:
            preconditionFailure("an append to a follower waiting for a snapshot")
        }
        progress[peerID] = peer
        return more
    }

    /// Starts a confirmation round: a heartbeat to every peer. Acknowledgements confirm leadership for reads
    /// that arrived before the round and extend the lease from the round's sending time.
    mutating func broadcastHeartbeat() {
        heartbeatDueMs = nowMs + config.heartbeatIntervalMs
        let round = reads.startRound(atMs: nowMs)
        for peer in others {
            let commit = min(progress[peer]!.matchIndex, log.committedIndex)
            send(.heartbeat(Heartbeat(from: config.id, to: peer, term: term, commitIndex: commit, round: round)))
        }
        updateQuorumRound()
    }

    /// Commits the highest index a quorum of voters holds, if it is of the current term (Raft's commitment rule).
    /// Learners' copies count for nothing, nor does the leader's own once the configuration in force removed it.
    mutating func maybeCommit() {
        guard role == .leader else { return }
        var matches = otherVoters.map { progress[$0]!.matchIndex }
        if isVoter { matches.append(log.persistedIndex) }  // Our own entries count only once durable.
        matches.sort(by: >)
        let candidate = matches[configuration.quorum - 1]
        guard candidate > log.committedIndex, log.term(at: candidate) == term else { return }
        let previous = log.committedIndex
        log.commit(to: candidate)
        releaseUncommittedBytes(from: previous + 1, through: candidate)
        needsCommitBroadcast = true
        if log.term(at: previous) != term { onFirstCommitInTerm() }
        handOffIfRemoved()
    }

    mutating func releaseUncommittedBytes(from start: UInt64, through end: UInt64) {
        var index = start
        while index <= end {
            if let entry = log.entry(at: index), entry.term == term, entry.kind == .normal {
                uncommittedBytes = max(0, uncommittedBytes - entry.sizeBytes)
            }
            index += 1
        }
    }

    /// Sends what calls since the last Ready deferred, so that a burst of proposals or reads shares messages.
    mutating func flushDeferredSends() {
        if role == .leader {
            if reads.roundNeeded { broadcastHeartbeat() }
            if needsAppendBroadcast || needsCommitBroadcast {
                for peer in others { sendAppends(to: peer, allowEmpty: needsCommitBroadcast) }
            }
        }
        needsAppendBroadcast = false
        needsCommitBroadcast = false
        reads.roundNeeded = false
        for (target, proposals) in outgoingForwards.sorted(by: { $0.key < $1.key }) {
            // Split so that each forward encodes to at most maxMessageBytes (one proposal always goes, and one
            // fits the frame limit: `RaftConfig.largestAppendPayloadBytes`). A forward too large for the frame
            // limit would be dropped, and nobody retransmits a forward.
            let fixed = WireSize.proposalForwardFixed(from: config.id, to: target)
            var batch: [ForwardedProposal] = []
            var bytes = fixed
            for proposal in proposals {
                let size = WireSize.forwardedProposal(proposal)
                if !batch.isEmpty && bytes + size > config.maxMessageBytes {
                    send(.proposalForward(ProposalForward(from: config.id, to: target, term: term, proposals: batch)))
                    batch.removeAll()
                    bytes = fixed
                }
                batch.append(proposal)
                bytes += size
            }
            send(.proposalForward(ProposalForward(from: config.id, to: target, term: term, proposals: batch)))
        }
        outgoingForwards = [:]
        for (target, outcomes) in outgoingReadOutcomes.sorted(by: { $0.key < $1.key }) {
            send(.readIndexResponse(ReadIndexResponse(from: config.id, to: target, term: term, outcomes: outcomes)))
        }
        outgoingReadOutcomes = [:]
    }
}

/// What a leader knows of its replication to one follower, for logs and metrics.
public struct ReplicationDiagnostics: Equatable, Sendable {
    /// Times the follower proved it lost entries it had acknowledged and replication restarted from its log.
    public var lostLogResets: UInt64
    /// Appends presumed lost: a heartbeat sent after the probe was answered, the probe was not (dropped as too
    /// large by the transport, or lost with a link). Each halves the batch size to this follower.
    public var appendsPresumedLost: UInt64
    /// The most entry bytes one append to this follower carries now (`Int.max`: the configured maximum).
    public var batchLimitBytes: Int
}

extension RaftNode {
    /// The leader's replication figures for `peer`; nil on a non-leader or for an unknown peer.
    public func replicationDiagnostics(for peer: NodeID) -> ReplicationDiagnostics? {
        guard let p = progress[peer] else { return nil }
        return ReplicationDiagnostics(
            lostLogResets: p.lostLogResets, appendsPresumedLost: p.appendsPresumedLost,
            batchLimitBytes: p.batchLimitBytes)
    }
}
