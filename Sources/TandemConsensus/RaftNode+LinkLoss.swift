// What a closed peer link tells the core: the leader ends its lease; a follower notes that its leader's end closed.

extension RaftNode {
    /// The transport lost its link to `peer`. `closedByPeer`: the connection was closed from the other end (EOF, or
    /// a reset) rather than by a timeout or by this node.
    ///
    /// A leader ends its lease at once, whatever the reason (it is renewed by the next round a quorum acknowledges
    /// over open links): a follower whose link closed may soon stop backing it. A follower whose link to the leader
    /// was closed from the leader's end notes when; if it stays closed for `leaderGoneAfterMs` without a word from
    /// the leader, the leader is taken for gone (see `RaftConfig`, stickiness and the lease).
    public mutating func linkDown(to peer: NodeID, closedByPeer: Bool, nowMs: Int64) {
        observeClock(nowMs)
        defer { checkInvariants() }
        if role == .leader {
            reads.leaseExpiryMs = min(reads.leaseExpiryMs, self.nowMs)
            reads.leaseRoundFloor = reads.round
        } else if peer == leader, closedByPeer, leaderLinkClosedAtMs == nil {
            leaderLinkClosedAtMs = self.nowMs
        }
    }

    /// Whether the link to the leader has been closed from its end for at least `leaderGoneAfterMs`.
    var leaderLinkGone: Bool {
        guard role != .leader, let closedAt = leaderLinkClosedAtMs else { return false }
        return nowMs - closedAt >= config.leaderGoneAfterMs
    }
}
