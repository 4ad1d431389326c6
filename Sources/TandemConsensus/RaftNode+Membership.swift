// Membership changes on the node: proposing them (leader only), following the configuration the log holds, and
// handing off leadership when the leader's own removal commits. See Membership.swift for the rules.

extension RaftNode {
    // MARK: Reading the configuration

    /// The last configuration at or below the commit index.
    public var committedConfiguration: ClusterConfiguration { log.committedConfiguration }

    /// The configuration in force at `index` (what a snapshot taken there must carry); nil below the log base or
    /// beyond the log.
    public func configuration(at index: UInt64) -> ClusterConfiguration? { log.configuration(at: index) }

    /// The index of the entry that holds the configuration in force (the log base's index when the log holds none
    /// after it).
    public var configurationIndex: UInt64 { log.configurationIndex }

    /// The configuration in force at the log base (`logBase`): what a runtime records with a compaction.
    public var baseConfiguration: ClusterConfiguration { log.baseConfiguration }

    /// Whether this node votes in the configuration in force. Only voters campaign.
    public var isVoter: Bool { configuration.isVoter(config.id) }

    /// This node is the only voter: its own durable log decides.
    var isSoleVoter: Bool { configuration.voters == [config.id] }

    /// The voters of the configuration in force but this node.
    var otherVoters: [NodeID] { configuration.voters.filter { $0 != config.id } }

    /// Each other member's replication (leader only, else empty): match index and lag, for an autopilot or an
    /// operator deciding when a learner is caught up.
    public var memberProgress: [MemberProgress] {
        guard role == .leader else { return [] }
        return others.map { id in
            let peer = progress[id]!
            return MemberProgress(
                id: id, isVoter: configuration.isVoter(id), matchIndex: peer.matchIndex,
                lag: log.lastIndex - min(peer.matchIndex, log.lastIndex), lastHeardMs: peer.lastHeardMs)
        }
    }

    // MARK: Proposing changes

    /// Appends a configuration entry for `change` to the leader's log; the new configuration is in force on this
    /// node at once (and on each follower when it appends the entry). Returns the entry's index: the change is
    /// done when `committedConfiguration` reflects it (`commitIndex` reaches the index).
    /// - Throws: `.notLeader`; `.leadershipTransferInProgress`; `.changeInProgress` while an earlier change is
    ///   uncommitted; `.notYetCommittedInTerm` until this leader committed an entry of its term; and what
    ///   `ClusterConfiguration.applying` refuses (`.unknownMember`, `.alreadyMember`, `.alreadyVoter`,
    ///   `.invalidMember`, `.wouldGoBelowMinimum`), and `.invalidAddress` for an `address` that is not
    ///   `host:port`. A thrown change was not appended.
    /// - Parameter address: the peer address of the member added (recorded in the configuration, so every node can
    ///   reach it); nil keeps whatever the configuration holds.
    @discardableResult
    public mutating func proposeMembershipChange(
        _ change: MembershipChange, address: String? = nil, nowMs: Int64
    ) throws(MembershipError) -> UInt64 {
        observeClock(nowMs)
        defer { checkInvariants() }
        guard role == .leader else { throw .notLeader }
        guard transfer == nil, removalHandoffDeadlineMs == nil else { throw .leadershipTransferInProgress }
        guard log.configurationIndex <= log.committedIndex else { throw .changeInProgress }
        guard log.term(at: log.committedIndex) == term else { throw .notYetCommittedInTerm }
        var next = try configuration.applying(change, minimumVoters: config.minimumVoters)
        if let address {
            guard ClusterConfiguration.isWellFormedAddress(address) else { throw .invalidAddress }
            if case .addLearner(let id) = change { next = next.settingAddress(address, of: id) }
        }
        let entry = Entry(
            term: term, index: log.lastIndex + 1, kind: .configuration, timeMs: entryTimeMs(), proposal: nil,
            data: next.encoded)
        log.append(entry)
        needsAppendBroadcast = true
        reconcileConfiguration()
        return entry.index
    }

    /// Adds `id` as a learner: it receives the log, but neither votes nor counts towards a quorum.
    @discardableResult
    public mutating func addLearner(_ id: NodeID, nowMs: Int64) throws(MembershipError) -> UInt64 {
        try proposeMembershipChange(.addLearner(id), nowMs: nowMs)
    }

    /// Makes the learner `id` a voter (best once its lag is small: see `memberProgress`, `LearnerPromotionPolicy`).
    @discardableResult
    public mutating func promote(_ id: NodeID, nowMs: Int64) throws(MembershipError) -> UInt64 {
        try proposeMembershipChange(.promote(id), nowMs: nowMs)
    }

    /// Removes the voter or learner `id`. A leader that removes itself keeps leading until the entry commits,
    /// without counting itself in quorums, then hands leadership to the most caught-up voter and steps down.
    @discardableResult
    public mutating func removeMember(_ id: NodeID, nowMs: Int64) throws(MembershipError) -> UInt64 {
        try proposeMembershipChange(.remove(id), nowMs: nowMs)
    }

    /// Whether this node's log is empty and was never compacted: nothing it holds can have been decided yet.
    public var hasEmptyLog: Bool { log.base.index == 0 && log.lastIndex == 0 }

    /// Takes `admitted` (what the cluster answered when it admitted this node) as the configuration at the base of
    /// an empty log: a node that joins learns the members before the leader's first append reaches it, so it
    /// accepts their messages and its status shows them. Safe because the log is empty: the node holds nothing a
    /// quorum could count, and the leader's entries and snapshot overwrite the configuration as they arrive.
    /// Returns false (and changes nothing) when the log is not empty.
    @discardableResult
    public mutating func adoptAdmittedConfiguration(_ admitted: ClusterConfiguration) -> Bool {
        guard hasEmptyLog else { return false }
        log.replaceBaseConfiguration(admitted)
        knownPeers.formUnion(admitted.members.filter { $0 != config.id })
        reconcileConfiguration()
        checkInvariants()
        return true
    }

    /// The runtime learned that a committed configuration leaves this node out: it steps down (its lease and any
    /// leadership end here, waiting reads and proposals fail as on any step-down) and follows no leader. The
    /// runtime stops ticking it and feeding it messages afterwards.
    public mutating func stepDownAsRemoved(nowMs: Int64) {
        observeClock(nowMs)
        if role != .follower || leader != nil { becomeFollower(term: term, leader: nil) }
        checkInvariants()
    }

    // MARK: Following the log's configuration

    /// Sets up `others`, detectors and (on the leader) progress for the configuration the log now holds. Called
    /// after every change to the log that can add or remove a configuration entry: an append (leader or
    /// follower), a truncation (which rolls back to the previous configuration) and an installed snapshot.
    mutating func reconcileConfiguration() {
        let current = log.configuration
        guard current != configuration else { return }
        configuration = current
        others = current.members.filter { $0 != config.id }.sorted()
        knownPeers.formUnion(others)
        for peer in others where detectors[peer] == nil { detectors[peer] = PhiAccrualDetector(config: detectorConfig) }
        if (role == .preCandidate || role == .candidate) && !isVoter {
            becomeFollower(term: term, leader: nil)
        }
        guard role == .leader else { return }
        for peer in others where progress[peer] == nil {
            progress[peer] = Progress(nextIndex: log.lastIndex + 1, nowMs: nowMs)
        }
        progress = progress.filter { others.contains($0.key) }
        if let pending = transfer, !current.isVoter(pending.target) { transfer = nil }
        needsAppendBroadcast = true
        // Fewer voters may make a quorum of them hold an index already.
        maybeCommit()
    }

    /// Once the configuration that removed this leader commits, it hands leadership to the most caught-up voter
    /// (the leadership transfer: TimeoutNow once that voter holds the whole log) and steps down at the latest one
    /// election timeout later (`tickLeader`). Its lease ends with the transfer.
    mutating func handOffIfRemoved() {
        guard role == .leader, removalHandoffDeadlineMs == nil, !log.committedConfiguration.isVoter(config.id)
        else { return }
        let deadline = nowMs + config.electionTimeoutMs
        removalHandoffDeadlineMs = deadline
        let best = otherVoters.max {
            let left = progress[$0]!.matchIndex, right = progress[$1]!.matchIndex
            return left != right ? left < right : $0 > $1
        }
        guard let target = best else {
            becomeFollower(term: term, leader: nil)
            return
        }
        transfer = LeadershipTransfer(target: target, deadlineMs: deadline)
        leaseDisabledInTerm = true
        reads.leaseExpiryMs = .min
        if !maybeSendTimeoutNow(to: target) {
            progress[target]!.probeSentAtMs = nil
            sendAppends(to: target, allowEmpty: true)
        }
    }
}
