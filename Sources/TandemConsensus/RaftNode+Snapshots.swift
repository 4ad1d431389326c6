// Snapshots and log compaction. The core keeps only the metadata (`LogBase`): the runtime takes, stores, streams
// and restores the application's snapshots, and tells the core when the log may shrink or a snapshot was installed.
//
// Leader side: a follower whose next entry is at or before the log base cannot be caught up by appends. It is listed
// in `Ready.snapshotsNeeded` and put in the `snapshot` state (no appends) until it acknowledges the snapshot's index
// with an AppendResponse, which the follower sends once it installed it. `reportSnapshot` tells how the transfer
// went: a failure sends the follower back to probing after a pause, which lists it again; a success that no
// acknowledgement follows (it was lost, or the follower had meanwhile committed past the snapshot and dropped it)
// ends in a probe just past the snapshot, soon after.
//
// Follower side: `installSnapshot` replaces the log's start with the snapshot's base, raises the commit, handed-out
// and carried-out indexes to it (the application already holds that state), and acknowledges it to the leader in
// the next Ready, after the base is durable.
//
// Every listing must end in a `reportSnapshot` (or the follower's acknowledgement): until then the leader sends that
// follower nothing but heartbeats, for as long as it leads.

extension RaftNode {
    /// The current base: the log holds the entries after `logBase.index`.
    public var logBase: LogBase { log.base }

    /// Drops entries through `index` from memory. Allowed only for entries already carried out (handed to the
    /// runtime's applier and advanced past: <= carriedOutIndex) and durable (<= persistedIndex); index is clamped to
    /// those bounds. Returns the new base to record durably (WAL), or nil when nothing changed.
    ///
    /// The runtime must hold a snapshot at or beyond the returned base before it relies on the compaction: a
    /// follower that needs an entry at or before it can only be caught up by a snapshot.
    public mutating func compactLog(through index: UInt64) -> LogBase? {
        defer { checkInvariants() }
        let target = min(index, carriedOutIndex, log.persistedIndex)
        guard target > log.offset else { return nil }
        return log.compact(through: target)
    }

    /// Leader side: the runtime finished (or failed) streaming a snapshot to `peer` (see Ready.snapshotsNeeded).
    ///
    /// Ignored unless this node leads and waits for `peer` to install a snapshot. After a failure the peer goes back
    /// to probing one election timeout later, which lists it again (a failing transfer is not retried in a tight
    /// loop). After a success the peer's acknowledgement (an AppendResponse) ends the wait; if none arrives within
    /// two heartbeat intervals, the leader probes just past the snapshot: the acknowledgement may have been lost, or
    /// the peer committed past the snapshot meanwhile and dropped it as stale (it then has nothing to acknowledge).
    /// Report success once the peer restored the snapshot: a probe that arrives before it is refused, and the peer
    /// is listed again.
    public mutating func reportSnapshot(to peer: NodeID, succeeded: Bool, nowMs: Int64) {
        observeClock(nowMs)
        defer { checkInvariants() }
        guard role == .leader, var replication = progress[peer], replication.state == .snapshot else { return }
        if succeeded {
            replication.snapshotResume = (
                self.nowMs + 2 * config.heartbeatIntervalMs, replication.pendingSnapshotIndex + 1
            )
        } else {
            replication.snapshotResume = (self.nowMs + config.electionTimeoutMs, replication.matchIndex + 1)
        }
        progress[peer] = replication
    }

    /// Follower side: the runtime restored a snapshot at `base` that the leader `from` sent. Returns false (and
    /// changes nothing) when base.index <= commitIndex (stale). Otherwise: if the log holds base.index with base.term,
    /// the entries after it are kept (etcd's rule), else the whole log is discarded; base becomes the log base;
    /// commit, handed-out and carried-out indexes become max(current, base.index) — the app already holds that state,
    /// so entries through base.index are never handed out. The next Ready carries `installedBase` (mustSync = true)
    /// and, if `from` is still the known leader of the current term, an AppendResponse(success, matchIndex: base.index)
    /// to it, released only after persistence (normal Ready ordering).
    ///
    /// A leader whose log disagrees with `base` holds every entry committed before its term, so the base was
    /// committed in a later term: it is a deposed leader that has not heard of it yet, steps down and installs. If
    /// the base's term is not later than its own, the base was never committed, and it refuses (returns false).
    /// If a Ready is outstanding, its `committedEntries` at or below `base.index` must not be applied over the
    /// restored state.
    ///
    /// `configuration` is the cluster configuration in force at `base.index`, which the snapshot carries: it becomes
    /// the configuration at the log base (and the one in force when the log holds none after it). Nil when the
    /// snapshot carries none (a runtime that does not record it yet): the node keeps what its log knows.
    @discardableResult
    public mutating func installSnapshot(
        _ base: LogBase, configuration snapshotConfiguration: ClusterConfiguration? = nil, from leader: NodeID
    ) -> Bool {
        defer { checkInvariants() }
        guard base.index > log.committedIndex else { return false }
        if role == .leader && log.term(at: base.index) != base.term {
            guard base.term > term else { return false }
            becomeFollower(term: term, leader: nil)
        }
        let discarded = log.install(base, configuration: snapshotConfiguration)
        reconcileConfiguration()
        carriedOutIndex = max(carriedOutIndex, base.index)
        let earlierReset = pending.installedBase?.discardedSuffix ?? false
        pending.installedBase = InstalledBase(base: base, discardedSuffix: discarded || earlierReset)
        if role != .leader && self.leader == leader {
            send(
                .appendResponse(
                    AppendResponse(
                        from: config.id, to: leader, term: term, success: true, matchIndex: base.index,
                        rejectedIndex: 0, hintIndex: 0, hintTerm: 0)))
        }
        return true
    }
}
