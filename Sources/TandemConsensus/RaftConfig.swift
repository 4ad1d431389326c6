/// Settings of one consensus node. Defaults are the documented ones; `validate()` states the relations that keep reads safe.
public struct RaftConfig: Sendable {
    /// This node.
    public var id: NodeID
    /// Every member of the cluster, this node included. Static for now.
    public var peers: [NodeID]
    /// How often the leader sends heartbeats (each also starts a read-confirmation round).
    public var heartbeatIntervalMs: Int64 = 100
    /// Base of the randomized fallback election timeout, drawn from [1x, 2x).
    public var electionTimeoutMs: Int64 = 1000
    /// Phi above which a follower suspects its leader and starts a pre-vote.
    public var phiThreshold: Double = 8
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
    /// A node refuses (pre-)votes while it heard from its leader (or started) less than this long ago.
    /// It bounds the leader lease, and it must stay below the election timeout.
    public var leaderStickinessMs: Int64 = 800
    /// The most this node's clock may run fast against any other's over one lease; the lease is shortened by it.
    public var leaseClockDriftBoundMs: Int64 = 100
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

    /// How long a quorum-acknowledged heartbeat round keeps the leader's lease valid, measured from its sending.
    public var leaseDurationMs: Int64 { leaderStickinessMs - leaseClockDriftBoundMs }

    /// The number of members whose agreement decides.
    public var quorum: Int { peers.count / 2 + 1 }

    /// Checks the relations the protocol relies on. A bad configuration is a programmer error of the caller.
    public func validate() {
        precondition(peers.contains(id), "peers must include this node")
        precondition(Set(peers).count == peers.count, "peers must be distinct")
        precondition(heartbeatIntervalMs > 0 && electionTimeoutMs > heartbeatIntervalMs)
        precondition(leaderStickinessMs < electionTimeoutMs, "stickiness must stay below the election timeout")
        precondition(leaseDurationMs > 0, "the clock-drift bound must be shorter than the stickiness")
        precondition(maxInflightMessages > 0 && maxInflightBytes > 0 && maxMessageBytes > 0)
        precondition(maxUncommittedBytes > 0 && maxPendingReads > 0 && maxPendingForwards > 0)
        precondition(phiSampleWindow > 0 && phiMinStdDevMs > 0 && phiThreshold > 0)
        precondition(maxCommittedEntriesPerReady > 0 && readTimeoutMs > 0)
    }
}
