/// Everything the status page shows, gathered by the caller from the node runtime at the moment of the request.
/// The page renders exactly these values and computes nothing from the node itself, so a test can state what the
/// page must show by building a model.
public struct StatusPageModel: Sendable {
    /// One peer of this node, as the node sees it.
    public struct Peer: Sendable {
        /// The peer's node id (escaped when rendered, like every string).
        public var id: String
        /// `host:port` as configured in `TANDEM_PEERS`.
        public var address: String
        /// An authenticated link to the peer is up.
        public var connected: Bool
        /// Suspicion level of the peer right now; may be infinite (never heard from) or NaN (no estimate yet).
        public var phi: Double
        /// Highest log index known to be on the peer (the leader's view; 0 on followers).
        public var matchIndex: UInt64
        /// How many committed entries the peer is behind.
        public var lagEntries: UInt64
        /// Milliseconds since this node last heard from the peer; nil when it never has.
        public var lastContactMs: Int64?
        /// The peer's phi sampled over the last minute, oldest first, `tMs` on the same clock as
        /// `StatusPageModel.nowMs`. Samples older than `StatusPage.chartWindowMs` before `nowMs` are not drawn.
        public var phiHistory: [(tMs: Int64, phi: Double)]

        /// A peer as the node sees it; `phiHistory` defaults to empty (the chart then says "no samples").
        public init(
            id: String, address: String, connected: Bool, phi: Double, matchIndex: UInt64, lagEntries: UInt64,
            lastContactMs: Int64?, phiHistory: [(tMs: Int64, phi: Double)] = []
        ) {
            self.id = id
            self.address = address
            self.connected = connected
            self.phi = phi
            self.matchIndex = matchIndex
            self.lagEntries = lagEntries
            self.lastContactMs = lastContactMs
            self.phiHistory = phiHistory
        }
    }

    /// This node's id.
    public var nodeID: String
    /// `leader`, `follower` or `candidate` (any text is accepted and escaped, so a new role needs no change here).
    public var role: String
    /// The current Raft term.
    public var term: UInt64
    /// The leader this node follows, nil when none is known.
    public var leader: String?
    /// Highest log index known to be committed.
    public var commitIndex: UInt64
    /// Highest log index applied to this node's app. Invariant: appliedIndex <= commitIndex (checked in `init`).
    public var appliedIndex: UInt64
    /// The app answered differently from the leader's digest: it is not deterministic and this node is not ready.
    public var diverged: Bool
    /// Every other member of the cluster, in the order the page lists them.
    public var peers: [Peer]
    /// The time the model was taken, in milliseconds on the clock of the `phiHistory` samples; the right edge of
    /// every chart.
    public var nowMs: Int64
    /// The phi above which a peer is suspected (`TANDEM_PHI_THRESHOLD`), drawn as a dashed line on every chart.
    public var phiThreshold: Double

    /// A snapshot of the node for the page. `appliedIndex` above `commitIndex` is a programmer error.
    public init(
        nodeID: String, role: String, term: UInt64, leader: String?, commitIndex: UInt64, appliedIndex: UInt64,
        diverged: Bool, peers: [Peer], nowMs: Int64, phiThreshold: Double = 8
    ) {
        precondition(appliedIndex <= commitIndex, "a node never applies an entry that is not committed")
        precondition(phiThreshold.isFinite && phiThreshold > 0, "the phi threshold is a positive number")
        self.nodeID = nodeID
        self.role = role
        self.term = term
        self.leader = leader
        self.commitIndex = commitIndex
        self.appliedIndex = appliedIndex
        self.diverged = diverged
        self.peers = peers
        self.nowMs = nowMs
        self.phiThreshold = phiThreshold
    }
}
