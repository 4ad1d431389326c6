/// Everything the status page shows, gathered by the caller from the node runtime at the moment of the request.
/// The page renders exactly these values and computes nothing from the node itself, so a test can state what the
/// page must show by building a model.
public struct StatusPageModel: Sendable {
    /// A member's part in the cluster: a voter counts towards quorums, a learner only receives the log.
    public enum MemberRole: String, Sendable {
        case voter
        case learner
    }

    /// When this node last heard from a peer. A follower hears only from the leader, so for the other peers it
    /// cannot tell "never" from "not to me": that is `unknown`, which the page must not show as "never".
    public enum LastContact: Equatable, Sendable {
        /// Heard from this many milliseconds ago.
        case heard(msAgo: Int64)
        /// This node expects to hear from the peer (it leads, or the peer is its leader) and never has.
        case never
        /// This node does not track the peer (a follower's view of a peer that is not its leader).
        case unknown
    }

    /// One peer of this node, as the node sees it.
    public struct Peer: Sendable {
        /// The peer's node id (escaped when rendered, like every string).
        public var id: String
        /// `host:port` as configured in `TANDEM_PEERS` or recorded in the configuration.
        public var address: String
        /// Voter or learner in the configuration in force; nil when this node does not know.
        public var role: MemberRole?
        /// An authenticated link to the peer is up.
        public var connected: Bool
        /// Suspicion level of the peer right now; may be infinite (never heard from) or NaN (no estimate yet).
        public var phi: Double
        /// Highest log index known to be on the peer: known to the leader only, nil (unknown) elsewhere.
        public var matchIndex: UInt64?
        /// How many committed entries the peer is behind: known to the leader only, nil (unknown) elsewhere.
        public var lagEntries: UInt64?
        /// When this node last heard from the peer.
        public var lastContact: LastContact
        /// The peer's phi sampled over the last minute, oldest first, `tMs` on the same clock as
        /// `StatusPageModel.nowMs`. Samples older than `StatusPage.chartWindowMs` before `nowMs` are not drawn.
        public var phiHistory: [(tMs: Int64, phi: Double)]

        /// A peer as the node sees it; `phiHistory` defaults to empty (the chart then says "no samples").
        public init(
            id: String, address: String, role: MemberRole?, connected: Bool, phi: Double, matchIndex: UInt64?,
            lagEntries: UInt64?, lastContact: LastContact, phiHistory: [(tMs: Int64, phi: Double)] = []
        ) {
            self.id = id
            self.address = address
            self.role = role
            self.connected = connected
            self.phi = phi
            self.matchIndex = matchIndex
            self.lagEntries = lagEntries
            self.lastContact = lastContact
            self.phiHistory = phiHistory
        }
    }

    /// The members as the leader sees them (the only node that knows every member's replication), as last heard
    /// by this node. A follower fetches it from the leader, so it can be a little old: `ageMs` says how old.
    public struct Cluster: Sendable {
        /// One member of the configuration, the leader included.
        public struct Member: Sendable {
            public var id: String
            /// The member's peer address; nil when the leader knows none.
            public var address: String?
            public var role: MemberRole
            /// Highest log index the leader knows to be on the member; nil when the leader has no record yet.
            public var matchIndex: UInt64?
            /// Entries the member lacks from the leader's log; nil when the leader has no record yet.
            public var lagEntries: UInt64?

            public init(id: String, address: String?, role: MemberRole, matchIndex: UInt64?, lagEntries: UInt64?) {
                self.id = id
                self.address = address
                self.role = role
                self.matchIndex = matchIndex
                self.lagEntries = lagEntries
            }
        }

        /// The leader whose view this is.
        public var asSeenBy: String
        /// How long ago this node received it (0 on the leader itself). Never negative (checked in `init`).
        public var ageMs: Int64
        /// Every member, in the order the page lists them.
        public var members: [Member]

        /// The leader's view, `ageMs` old. A negative age is a programmer error.
        public init(asSeenBy: String, ageMs: Int64, members: [Member]) {
            precondition(ageMs >= 0, "the leader's view cannot arrive from the future")
            self.asSeenBy = asSeenBy
            self.ageMs = ageMs
            self.members = members
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
    /// The cluster as the leader sees it; nil when this node has no such view (no leader known, or the leader's
    /// answer has not arrived yet).
    public var cluster: Cluster?
    /// The time the model was taken, in milliseconds on the clock of the `phiHistory` samples; the right edge of
    /// every chart.
    public var nowMs: Int64
    /// The phi above which a peer is suspected (`TANDEM_PHI_THRESHOLD`), drawn as a dashed line on every chart.
    public var phiThreshold: Double

    /// A snapshot of the node for the page. `appliedIndex` above `commitIndex` is a programmer error.
    public init(
        nodeID: String, role: String, term: UInt64, leader: String?, commitIndex: UInt64, appliedIndex: UInt64,
        diverged: Bool, peers: [Peer], cluster: Cluster? = nil, nowMs: Int64, phiThreshold: Double = 8
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
        self.cluster = cluster
        self.nowMs = nowMs
        self.phiThreshold = phiThreshold
    }
}
