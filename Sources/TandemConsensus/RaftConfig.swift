/// Settings of one consensus node. Defaults are the documented ones; `validate()` states the relations that keep reads safe.
public struct RaftConfig: Sendable {
    /// This node.
    public var id: NodeID
    /// Every node this one may exchange messages with, this node included (its address book). Unless
    /// `initialConfiguration` says otherwise, also the voters the cluster starts with.
    public var peers: [NodeID]
    /// The configuration of a log that holds none yet (no configuration entry and no base configuration): nil makes
    /// every peer a voter. A node that joins a running cluster passes one it is not a voter of (for example the
    /// cluster's voters, or no voters at all): it then never campaigns, and waits for a leader to add it.
    public var initialConfiguration: ClusterConfiguration?
    /// Removing a voter is refused when fewer would remain (`MembershipError.wouldGoBelowMinimum`); at least 1.
    public var minimumVoters: Int = 1
    /// How often the leader sends heartbeats (each also starts a read-confirmation round).
    public var heartbeatIntervalMs: Int64 = 100
    /// Base of the randomized fallback election timeout, drawn from [1x, 2x).
    public var electionTimeoutMs: Int64 = 1000
    /// Phi above which a follower suspects its leader and starts a pre-vote.
    public var phiThreshold: Double = RaftConfig.defaultPhiThreshold {
        didSet { phiThresholdScore = PhiAccrualDetector.standardScore(forPhi: phiThreshold) }
    }
    public static let defaultPhiThreshold: Double = 8
    /// `PhiAccrualDetector.standardScore(forPhi: phiThreshold)`, kept rather than derived on each use: a node
    /// reads its stickiness on every message from its leader and its lease on every heartbeat round, and the
    /// bisection behind it costs tens of thousands of instructions (a per-read cost in a profile of the proxy).
    private var phiThresholdScore = PhiAccrualDetector.standardScore(forPhi: RaftConfig.defaultPhiThreshold)
    /// Floor of the standard deviation the detector assumes, so a quiet LAN does not make it hair-triggered.
    public var phiMinStdDevMs: Double = 50
    /// Extra silence the detector tolerates, added to the mean inter-arrival time.
    public var phiAcceptablePauseMs: Double = 500
    /// How many inter-arrival samples each detector keeps.
    public var phiSampleWindow: Int = 200
    /// A gap between two of this node's own ticks longer than this means this node stalled (GC, swap, SIGSTOP).
    public var localPauseThresholdMs: Int64 = 300
    /// After a local stall, how long the node suspects no one.
    public var localPauseQuietMs: Int64 = 300
    /// A suspicion starts the pre-vote after a random delay below this, so that two followers rarely split the vote.
    public var phiElectionJitterMs: Int64 = 150
    /// Flow control: appends in flight to one follower at most.
    public var maxInflightMessages: Int = 64
    /// Flow control: bytes of entries in flight to one follower at most.
    public var maxInflightBytes: Int = 8 << 20
    /// Largest batch of entries in one append (one entry is always allowed) and largest proposal payload.
    public var maxMessageBytes: Int = 1 << 20
    /// Proposals are refused with `.overloaded` while the leader's uncommitted entries exceed this.
    public var maxUncommittedBytes: Int = 64 << 20
    /// Reads waiting for confirmation, at the leader and at a follower that forwarded them.
    public var maxPendingReads: Int = 4096
    /// Proposals a follower forwarded that still await the leader's answer.
    public var maxPendingForwards: Int = 4096
    /// A read not confirmed within this fails with `.timeout`.
    public var readTimeoutMs: Int64 = 2000
    /// Committed entries handed out in one Ready at most.
    public var maxCommittedEntriesPerReady: Int = 4096

    /// A configuration with the documented defaults.
    public init(id: NodeID, peers: [NodeID]) {
        self.id = id
        self.peers = peers
    }

    // MARK: Stickiness and the lease, derived
    //
    // The lease rests on one rule: a node that heard from the leader of its term less than `leaderStickinessMs`
    // ago (by its own clock) neither grants a (pre-)vote to another node nor starts a pre-vote of its own; only
    // a leadership transfer (TimeoutNow) skips it, and the leader that sent TimeoutNow serves no lease reads for
    // the rest of its term. A new leader needs a quorum of votes; the quorum that acknowledged a heartbeat round
    // shares a member with it, and that member received the round after the leader sent it, so it votes (and
    // campaigns) at the earliest `leaderStickinessMs` after the sending, measured by its clock. The leader
    // counts its lease from the sending by its own clock and stops `leaseClockDriftMarginMs` earlier, which
    // covers the two clocks running at rates up to 1/15 (6.6 %) apart: lease * (1 + 1/15) < stickiness *
    // (1 - 1/15) holds for lease = 7/8 stickiness. So no lease read is served once another leader can exist.
    //
    // One exception shortens the stickiness: a follower whose link to the leader was closed from the leader's end
    // (EOF or a reset) and stayed closed for `leaderGoneAfterMs` takes the leader for gone (a killed process's
    // kernel closes its sockets at once, so failover need not wait for the detector). It stays safe because the
    // leader ends its lease whenever a link closes (`RaftNode.linkDown`) and renews it only from rounds that a
    // quorum acknowledged over open links: a live leader whose link was closed closed it itself, or got the
    // reset with its next heartbeat, well within `leaderGoneAfterMs`. The one case this trusts the network in: a
    // middlebox that resets the follower's side of every follower's link while silently dropping the leader's
    // packets, so that the leader never learns its links are gone.

    /// The silence after which the detector of a follower of a steady, idle leader suspects it: the mean
    /// inter-arrival time (one heartbeat interval), plus the acceptable pause, plus as many floor standard
    /// deviations as the threshold asks for (negative for a threshold below phi(mean) = 0.3).
    public var steadyDetectionMs: Int64 {
        let ms = Double(heartbeatIntervalMs) + phiAcceptablePauseMs + phiThresholdScore * phiMinStdDevMs
        guard ms.isFinite else { return ms > 0 ? Int64.max / 4 : 0 }
        return Int64(min(max(ms, 0), Double(Int64.max / 4)))
    }

    /// How long a node stays loyal to the leader it last heard (see above). It follows the detector (a steady
    /// follower would suspect the leader about then anyway, so stickiness does not slow failover), at least two
    /// heartbeat intervals (one lost heartbeat does not free a follower's vote) and at most four fifths of the
    /// election timeout (the randomized fallback, [1x, 2x) after the last contact, always finds it expired).
    /// With the documented defaults: detection 861 ms, two heartbeats 200 ms, cap 800 ms: 800 ms.
    public var leaderStickinessMs: Int64 {
        let cap = electionTimeoutMs - max(1, electionTimeoutMs / 5)
        return max(1, min(max(steadyDetectionMs, 2 * heartbeatIntervalMs), cap))
    }

    /// How long the link to the leader must stay closed from the leader's end (EOF or a reset, not a timeout) before
    /// a follower treats the leader as gone without waiting for its detector or its stickiness: two heartbeat
    /// intervals, in which a live leader that closed a link on purpose dials again (25-50 ms), and in which a live
    /// leader whose link was closed has noticed it and dropped its lease (see `RaftNode.linkDown`).
    public var leaderGoneAfterMs: Int64 { 2 * heartbeatIntervalMs }

    /// The part of the stickiness the lease gives up to clock drift: an eighth of it, at least 1 ms.
    public var leaseClockDriftMarginMs: Int64 { max(1, (leaderStickinessMs + 7) / 8) }

    /// How long a quorum-acknowledged heartbeat round keeps the leader's lease valid, measured from its sending.
    public var leaseDurationMs: Int64 { leaderStickinessMs - leaseClockDriftMarginMs }

    /// The number of initial voters whose agreement decides (the node uses its current configuration's).
    public var quorum: Int { bootstrapConfiguration.quorum }

    /// The configuration the log starts with: `initialConfiguration`, or every peer a voter.
    public var bootstrapConfiguration: ClusterConfiguration {
        initialConfiguration ?? ClusterConfiguration(voters: peers)
    }

    /// The relations the protocol relies on that this configuration breaks, in words; empty when it is valid.
    /// The executable checks it before it builds a node, so a bad setting exits with a message, not a trap.
    public var problems: [String] {
        var found: [String] = []
        func require(_ holds: Bool, _ problem: String) { if !holds { found.append(problem) } }
        require(peers.contains(id), "peers must include this node")
        require(Set(peers).count == peers.count, "peers must be distinct")
        require(heartbeatIntervalMs > 0, "the heartbeat interval must be positive")
        require(electionTimeoutMs > heartbeatIntervalMs, "the election timeout must exceed the heartbeat interval")
        require(electionTimeoutMs >= 3, "the election timeout must be at least 3 ms to leave room for a lease")
        require(leaderStickinessMs < electionTimeoutMs, "stickiness must stay below the election timeout")
        require(leaseDurationMs > 0, "the lease must be positive: the clock-drift margin is the whole stickiness")
        require(leaseClockDriftMarginMs * 8 >= leaderStickinessMs, "the clock-drift margin is below an eighth")
        require(maxInflightMessages > 0 && maxInflightBytes > 0 && maxMessageBytes > 0, "flow control limits")
        require(maxUncommittedBytes > 0 && maxPendingReads > 0 && maxPendingForwards > 0, "queue limits")
        require(phiSampleWindow > 0 && phiMinStdDevMs > 0 && phiThreshold > 0, "detector settings")
        require(phiAcceptablePauseMs >= 0 && phiThreshold.isFinite && phiMinStdDevMs.isFinite, "detector settings")
        require(maxCommittedEntriesPerReady > 0 && readTimeoutMs > 0, "ready and read limits")
        require(minimumVoters >= 1, "at least one voter must remain")
        return found
    }

    /// Checks the relations the protocol relies on. A bad configuration is a programmer error of the caller.
    public func validate() {
        let found = problems
        precondition(found.isEmpty, "invalid RaftConfig: \(found.joined(separator: "; "))")
    }
}
