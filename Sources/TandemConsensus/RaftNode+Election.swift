// Elections: term rules, pre-vote, votes, role changes, suspicion and check-quorum.

extension RaftNode {
    /// Applies Raft's term rules to a message; returns whether it should be handled further.
    mutating func admitTerm(of message: Message) -> Bool {
        if message.term > term {
            switch message {
            case .preVoteRequest:
                return true  // A pre-vote never raises anyone's term.
            case .preVoteResponse(let response) where response.granted:
                return true  // A grant carries the term we would campaign for.
            case .voteRequest(let request) where !request.leadershipTransfer && leaderSeemsAlive:
                return false  // Sticky: a live leader is not deposed by a node that merely lost touch with it.
            default:
                becomeFollower(term: message.term, leader: message.isFromLeader ? message.from : nil)
                return true
            }
        }
        if message.term < term {
            replyToStaleTerm(message)
            return false
        }
        return true
    }

    /// Tells a stale leader or pre-candidate about the newer term, so a rejoining stale leader steps down.
    mutating func replyToStaleTerm(_ message: Message) {
        switch message {
        case .appendEntries, .heartbeat:
            send(.heartbeatResponse(HeartbeatResponse(from: config.id, to: message.from, term: term, round: 0)))
        case .preVoteRequest:
            send(.preVoteResponse(VoteResponse(from: config.id, to: message.from, term: term, granted: false)))
        default:
            break
        }
    }

    mutating func dispatch(_ message: Message) {
        switch message {
        case .preVoteRequest(let m): onPreVoteRequest(m)
        case .preVoteResponse(let m): onPreVoteResponse(m)
        case .voteRequest(let m): onVoteRequest(m)
        case .voteResponse(let m): onVoteResponse(m)
        case .appendEntries(let m): onAppendEntries(m)
        case .appendResponse(let m): onAppendResponse(m)
        case .heartbeat(let m): onHeartbeat(m)
        case .heartbeatResponse(let m): onHeartbeatResponse(m)
        case .timeoutNow(let m): onTimeoutNow(m)
        case .proposalForward(let m): onProposalForward(m)
        case .proposalForwardResponse(let m): onProposalForwardResponse(m)
        case .readIndexRequest(let m): onReadIndexRequest(m)
        case .readIndexResponse(let m): onReadIndexResponse(m)
        }
    }

    // MARK: Timers

    mutating func tickElection(leaderVerdict: PhiAccrualDetector.Verdict?, stalled: Bool) {
        if stalled {
            // Our own silence is not evidence against anyone: give the leader a fresh chance to be heard.
            electionDeadlineMs = max(electionDeadlineMs, nowMs + config.localPauseQuietMs)
            phiElectionAtMs = nil
            return
        }
        if nowMs >= electionDeadlineMs {
            // The randomized fallback: at least `electionTimeoutMs` after the last contact, so past stickiness.
            guard heardFromLeaderWithinStickiness else {
                startPreVote()
                return
            }
            electionDeadlineMs = lastLeaderContactMs + config.leaderStickinessMs
            return
        }
        if role == .preCandidate || role == .candidate {
            resendVoteRequests()
            return
        }
        var suspected = leaderLinkGone
        if case .suspected = leaderVerdict { suspected = true }
        guard role == .follower, leader != nil, suspected else {
            phiElectionAtMs = nil
            return
        }
        if phiElectionAtMs == nil {
            let jitter = config.phiElectionJitterMs > 0 ? Int64(rng.next() % UInt64(config.phiElectionJitterMs)) : 0
            phiElectionAtMs = nowMs + jitter
        }
        // A suspicion waits out the stickiness: this node backed the leader's lease when it last heard it, and
        // its own vote counts towards a new leader as much as one it grants (see RaftConfig).
        if let at = phiElectionAtMs, nowMs >= at, !heardFromLeaderWithinStickiness { startPreVote() }
    }

    /// Whether this node heard from the leader of its term (or started) less than `leaderStickinessMs` ago: then
    /// it neither grants a (pre-)vote nor starts a pre-vote of its own. A TimeoutNow campaign skips this.
    var heardFromLeaderWithinStickiness: Bool {
        nowMs - lastLeaderContactMs < config.leaderStickinessMs && !leaderLinkGone
    }

    mutating func tickLeader(stalled: Bool) {
        if stalled {
            // Peers were not silent, we were: restart the check-quorum window instead of stepping down for it.
            checkQuorumSinceMs = nowMs
            for peer in others { progress[peer]!.lastHeardMs = max(progress[peer]!.lastHeardMs, nowMs) }
        }
        if nowMs - checkQuorumSinceMs >= config.electionTimeoutMs && !hasActiveQuorum() {
            becomeFollower(term: term, leader: nil)
            return
        }
        if let deadline = removalHandoffDeadlineMs, nowMs >= deadline {
            // Removed, and the transfer did not end our term in time: stop leading a cluster we are not part of.
            becomeFollower(term: term, leader: nil)
            return
        }
        if let transfer, nowMs >= transfer.deadlineMs { self.transfer = nil }
        if nowMs >= heartbeatDueMs { broadcastHeartbeat() }
    }

    /// Check-quorum: has a quorum (this node included) been heard from within the last election timeout?
    func hasActiveQuorum() -> Bool {
        configuration.isQuorum { voter in
            if voter == config.id { return true }
            guard let heard = progress[voter]?.lastHeardMs else { return false }
            return nowMs - heard < config.electionTimeoutMs
        }
    }

    // MARK: Role changes

    mutating func becomeFollower(term newTerm: UInt64, leader newLeader: NodeID?) {
        precondition(newTerm >= term, "a node never goes back in term")
        let wasLeader = role == .leader
        if newTerm > term {
            term = newTerm
            votedFor = nil
        }
        role = .follower
        if newLeader != leader { leaderLinkClosedAtMs = nil }
        leader = newLeader
        votes = [:]
        phiElectionAtMs = nil
        electionDeadlineMs = nowMs + randomElectionTimeoutMs()
        if wasLeader { stepDownAsLeader() }
    }

    /// Clears leader-only state when leadership ends: pending reads fail, the lease and the transfer end.
    mutating func stepDownAsLeader() {
        progress = [:]
        transfer = nil
        removalHandoffDeadlineMs = nil
        heartbeatDueMs = .max
        uncommittedBytes = 0
        failLeaderReads(.notLeader)
        reads.leaseExpiryMs = .min
    }

    /// The term a campaign would raise ours to; nil at `Message.termMax`, which no message may exceed. Every
    /// `term + 1` goes through here, so none can overflow (a node that recovered such a term, persisted before
    /// terms were bounded, stays a follower instead of trapping at each start).
    var nextTerm: UInt64? { term < Message.termMax ? term + 1 : nil }

    mutating func startPreVote() {
        // Learners and nodes outside the configuration never campaign: their votes would not count, and a leader
        // they elected could not reach a quorum of voters.
        guard let next = nextTerm, isVoter else {
            electionDeadlineMs = nowMs + randomElectionTimeoutMs()
            phiElectionAtMs = nil
            return
        }
        role = .preCandidate
        leader = nil
        phiElectionAtMs = nil
        votes = [config.id: true]
        electionDeadlineMs = nowMs + randomElectionTimeoutMs()
        voteResendDueMs = nowMs + config.heartbeatIntervalMs
        campaignIsTransfer = false
        if isSoleVoter {
            campaign(transfer: false)
            return
        }
        for peer in otherVoters {
            send(
                .preVoteRequest(
                    VoteRequest(
                        from: config.id, to: peer, term: next, lastLogIndex: log.lastIndex,
                        lastLogTerm: log.lastTerm, leadershipTransfer: false)))
        }
    }

    mutating func campaign(transfer: Bool) {
        guard let next = nextTerm, isVoter else { return }
        term = next
        votedFor = config.id
        role = .candidate
        leader = nil
        votes = [config.id: true]
        electionDeadlineMs = nowMs + randomElectionTimeoutMs()
        voteResendDueMs = nowMs + config.heartbeatIntervalMs
        campaignIsTransfer = transfer
        if isSoleVoter {
            return  // Our vote is our quorum, but only once durable: `advance` makes us leader.
        }
        // The vote for ourselves is in the hard state of this Ready, so it is durable before these requests leave.
        for peer in otherVoters {
            send(
                .voteRequest(
                    VoteRequest(
                        from: config.id, to: peer, term: term, lastLogIndex: log.lastIndex,
                        lastLogTerm: log.lastTerm, leadershipTransfer: transfer)))
        }
    }

    /// Asks again, every half heartbeat interval, the members that have not granted: a lost request or answer
    /// would otherwise cost a whole election timeout. Requests are idempotent within a term. A pre-vote refusal is
    /// only "not yet" (the voter heard the leader less than `leaderStickinessMs` ago), so refusers are asked again;
    /// a real vote refusal is final for the term, so only silent members are.
    mutating func resendVoteRequests() {
        guard nowMs >= voteResendDueMs else { return }
        voteResendDueMs = nowMs + max(1, config.heartbeatIntervalMs / 2)
        let preVote = role == .preCandidate
        guard let campaignTerm = preVote ? nextTerm : term else { return }
        for peer in otherVoters where preVote ? votes[peer] != true : votes[peer] == nil {
            let request = VoteRequest(
                from: config.id, to: peer, term: campaignTerm,
                lastLogIndex: log.lastIndex, lastLogTerm: log.lastTerm,
                leadershipTransfer: campaignIsTransfer)
            send(preVote ? .preVoteRequest(request) : .voteRequest(request))
        }
    }

    mutating func becomeLeader() {
        precondition(role == .candidate, "only a candidate becomes leader")
        role = .leader
        leader = config.id
        votes = [:]
        phiElectionAtMs = nil
        electionDeadlineMs = .max
        progress = [:]
        for peer in others { progress[peer] = Progress(nextIndex: log.lastIndex + 1, nowMs: nowMs) }
        uncommittedBytes = 0
        transfer = nil
        removalHandoffDeadlineMs = nil
        leaseDisabledInTerm = false
        reads.startTerm()
        checkQuorumSinceMs = nowMs
        termTimeBase = (log.lastTimeMs, nowMs)
        // A new leader commits an entry of its own term before it serves reads or counts replicas for older entries.
        log.append(
            Entry(
                term: term, index: log.lastIndex + 1, kind: .noop,
                timeMs: entryTimeMs(), proposal: nil, data: []))
        needsAppendBroadcast = true
        broadcastHeartbeat()
        maybeCommit()
    }

    /// Accepts `from` as the leader of the current term after hearing from it.
    mutating func acceptLeader(_ from: NodeID) {
        precondition(role != .leader, "two leaders in term \(term)")
        if role != .follower || leader != from { becomeFollower(term: term, leader: from) }
        lastLeaderContactMs = nowMs
        leaderLinkClosedAtMs = nil
        phiElectionAtMs = nil
        electionDeadlineMs = nowMs + randomElectionTimeoutMs()
    }

    // MARK: Votes

    mutating func onPreVoteRequest(_ request: VoteRequest) {
        let upToDate = log.isUpToDate(lastIndex: request.lastLogIndex, lastTerm: request.lastLogTerm)
        let grant = request.term > term && !leaderSeemsAlive && upToDate
        send(
            .preVoteResponse(
                VoteResponse(
                    from: config.id, to: request.from, term: grant ? request.term : term,
                    granted: grant)))
        // Two followers that suspect the leader together would split the vote; the weaker claim steps aside.
        if grant && role == .preCandidate && claimBeats(request) {
            becomeFollower(term: term, leader: nil)
        }
    }

    /// Whether the requester's claim is stronger than ours: a longer log, or an equal log and a smaller id.
    func claimBeats(_ request: VoteRequest) -> Bool {
        if request.lastLogTerm != log.lastTerm { return request.lastLogTerm > log.lastTerm }
        if request.lastLogIndex != log.lastIndex { return request.lastLogIndex > log.lastIndex }
        return request.from < config.id
    }

    mutating func onVoteRequest(_ request: VoteRequest) {
        let canVote = votedFor == request.from || (votedFor == nil && leader == nil)
        let grant = canVote && log.isUpToDate(lastIndex: request.lastLogIndex, lastTerm: request.lastLogTerm)
        if grant {
            // Persisted in this Ready's hard state before the response is sent.
            votedFor = request.from
            electionDeadlineMs = nowMs + randomElectionTimeoutMs()
        }
        send(.voteResponse(VoteResponse(from: config.id, to: request.from, term: term, granted: grant)))
    }

    mutating func onPreVoteResponse(_ response: VoteResponse) {
        guard role == .preCandidate else { return }
        if response.granted && response.term != nextTerm { return }
        votes[response.from] = response.granted
        switch tally() {
        case .won: campaign(transfer: false)
        case .lost: becomeFollower(term: term, leader: nil)
        case .pending: break
        }
    }

    mutating func onVoteResponse(_ response: VoteResponse) {
        guard role == .candidate, response.term == term else { return }
        votes[response.from] = response.granted
        switch tally() {
        case .won: becomeLeader()
        case .lost: becomeFollower(term: term, leader: nil)
        case .pending: break
        }
    }

    enum Tally { case won, lost, pending }

    /// Counts the voters of the configuration in force only: a grant from anyone else decides nothing.
    func tally() -> Tally {
        let granted = Set(votes.filter { $0.value }.keys), refused = Set(votes.filter { !$0.value }.keys)
        if configuration.isQuorum(granted) { return .won }
        if configuration.isQuorum(refused) { return .lost }
        return .pending
    }

    mutating func onTimeoutNow(_ message: TimeoutNow) {
        guard role != .leader, isVoter else { return }
        // The leader caught us up and asked us to take over: campaign now, and voters skip their stickiness.
        campaign(transfer: true)
    }
}
