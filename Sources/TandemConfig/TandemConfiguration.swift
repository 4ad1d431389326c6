// TandemConfig owns Tandem's configuration: the table of every TANDEM_* environment variable (names, defaults,
// accepted values, descriptions), the parsers for their syntaxes, and the validated, typed TandemConfiguration.
// It is pure: it reads the environment only as the dictionary it is handed, never opens sockets, never reads the
// clock and never logs. It must never accept a value it cannot explain: every refusal is a ConfigError whose
// description is one line naming the variable, the value and what is accepted.

/// The application protocol Tandem speaks on the client listener and to the app.
public enum AppProtocol: String, CaseIterable, Sendable {
    /// HTTP/1.1.
    case http
    /// The Redis protocol, for a later release; refused at start until `supported` includes it.
    case resp

    /// The protocols this build serves. A protocol Tandem cannot serve is refused at start rather than
    /// silently proxied as HTTP.
    public static let supported: [AppProtocol] = [.http]
}

/// The default consistency of reads (README, "How it works").
public enum ReadConsistency: String, CaseIterable, Sendable {
    /// Served from whatever this replica has applied.
    case local
    /// Waits until this replica has applied the client's last seen position.
    case session
    /// ReadIndex: confirms leadership with a quorum round, then waits for the commit index to be applied.
    case linearizable
    /// Like linearizable, but skips the quorum round while the leader lease is valid.
    case lease
}

/// Whether the app keeps its state across its own restarts (README, "Guarantees").
public enum AppState: String, CaseIterable, Sendable {
    /// Tandem resumes after the last applied index it recorded.
    case durable
    /// Tandem replays the retained log from the start when it sees the app restart.
    case memory
}

/// Log severities, the same names and order as swift-log's `Logger.Level`, so the mapping is by raw value.
public enum LogLevel: String, CaseIterable, Comparable, Sendable {
    /// Everything, including per-message detail.
    case trace
    /// Diagnostic detail for developers.
    case debug
    /// Normal operation: start, stop, elections, peers coming and going.
    case info
    /// Noteworthy but expected events.
    case notice
    /// Something is off but Tandem carries on (e.g. unauthenticated peers).
    case warning
    /// An operation failed.
    case error
    /// The node cannot carry on (e.g. a failed fsync).
    case critical

    /// Orders levels from least to most severe, as listed.
    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool {
        let order = LogLevel.allCases
        return order.firstIndex(of: lhs)! < order.firstIndex(of: rhs)!
    }
}

/// How log lines are written.
public enum LogFormat: String, CaseIterable, Sendable {
    /// One JSON object per line.
    case json
    /// Human-readable text.
    case text
    /// Text when standard error is a terminal, else JSON; see `resolved(standardErrorIsTerminal:)`.
    case auto

    /// The concrete format: `auto` becomes text on a terminal and JSON otherwise.
    public func resolved(standardErrorIsTerminal: Bool) -> LogFormat {
        guard self == .auto else { return self }
        return standardErrorIsTerminal ? .text : .json
    }
}

/// Peer mutual TLS material. Only the paths: the networking layer loads and checks the PEM contents.
public struct TLSFiles: Hashable, Sendable {
    /// PEM certificate this node presents.
    public let certificatePath: String
    /// PEM private key of the certificate.
    public let privateKeyPath: String
    /// PEM CA bundle that peers' certificates must chain to.
    public let certificateAuthorityPath: String
}

/// Every setting of a Tandem node, parsed and validated. Build it with `load(environment:hostName:)`; a value of
/// this type always satisfies the invariants listed beside its fields (checked by `checkInvariants()`).
public struct TandemConfiguration: Hashable, Sendable {
    // Listeners.
    /// Client listener (`TANDEM_LISTEN`).
    public var listen: HostPort
    /// The local app (`TANDEM_UPSTREAM`). Invariant: port != 0.
    public var upstream: HostPort
    /// Peer listener (`TANDEM_PEER_LISTEN`).
    public var peerListen: HostPort
    /// Admin listener (`TANDEM_ADMIN_LISTEN`).
    public var adminListen: HostPort
    /// The app's protocol (`TANDEM_PROTOCOL`).
    public var appProtocol: AppProtocol

    // Cluster.
    /// This node's id (`TANDEM_NODE_ID`, default the host name). Invariant: in `peers` when `peers` is not empty.
    public var nodeID: String
    /// All members, this node included (`TANDEM_PEERS`); empty means a one-node cluster.
    /// Invariant: ids unique, addresses unique, at most `Peer.countMax`.
    public var peers: [Peer]
    /// `TANDEM_JOIN`; nil when unset. A node not listed in `peers` (or with no peers) joins through it.
    public var join: JoinTargets?
    /// `TANDEM_JOIN_ADVERTISE`; nil when unset (a joining node then advertises its host name with the peer
    /// listener's port: `advertisedPeerAddress(hostName:)`).
    public var joinAdvertise: HostPort?

    /// `TANDEM_REMOVE_DEAD_AFTER` in milliseconds; 0: dead members are never removed automatically.
    public var removeDeadAfterMs: Int64
    /// `TANDEM_REMOVE_DEAD_MIN_VOTERS`.
    public var removeDeadMinVoters: Int

    /// The peer address a joining node asks the members to record for it.
    public func advertisedPeerAddress(hostName: String) -> String {
        joinAdvertise?.description ?? "\(hostName):\(peerListen.port)"
    }
    /// Whether this node joins a running cluster instead of founding one: TANDEM_JOIN is set and TANDEM_PEERS does
    /// not list it.
    public var joinsCluster: Bool { join != nil && !peers.contains { $0.id == nodeID } }
    /// Data directory (`TANDEM_DATA_DIR`).
    public var dataDir: String

    // Failure detection and elections.
    /// `TANDEM_HEARTBEAT_INTERVAL`. Invariant: 0 < heartbeatIntervalMs < electionTimeoutMs.
    public var heartbeatIntervalMs: Int64
    /// `TANDEM_PHI_THRESHOLD`. Invariant: > 0.
    public var phiThreshold: Double
    /// `TANDEM_PHI_MIN_STDDEV`. Invariant: > 0.
    public var phiMinStdDevMs: Int64
    /// `TANDEM_PHI_ACCEPTABLE_PAUSE`. Invariant: >= 0.
    public var phiAcceptablePauseMs: Int64
    /// `TANDEM_ELECTION_TIMEOUT`, the lower end of the randomized range [1x, 2x).
    public var electionTimeoutMs: Int64

    // Writes and reads.
    /// `TANDEM_WRITE_METHODS`: upper-case method tokens.
    public var writeMethods: Set<String>
    /// `TANDEM_READ_ROUTES`.
    public var readRoutes: [RouteRule]
    /// `TANDEM_WRITE_ROUTES`.
    public var writeRoutes: [RouteRule]
    /// `TANDEM_BYPASS_ROUTES`.
    public var bypassRoutes: [RouteRule]
    /// `TANDEM_WRITE_TIMEOUT`. Invariant: > queueTargetMs.
    public var writeTimeoutMs: Int64
    /// `TANDEM_READ_CONSISTENCY`.
    public var readConsistency: ReadConsistency
    /// `TANDEM_READ_WAIT_MAX`. Invariant: >= 0.
    public var readWaitMaxMs: Int64
    /// `TANDEM_IDEMPOTENCY_TTL`. Invariant: > 0.
    public var idempotencyTTLMs: Int64
    /// `TANDEM_MAX_BODY`. Invariant: 0 < maxBodyBytes <= maxUncommittedBytes.
    public var maxBodyBytes: Int64
    /// `TANDEM_APP_STATE`.
    public var appState: AppState
    /// `TANDEM_APPLY_PIPELINE`: requests the applier writes to the app ahead of their answers.
    /// Invariant: 1...256 (a response parser tracks at most 256 pending requests).
    public var applyPipeline: Int
    /// `TANDEM_IDEMPOTENCY_MAX_BYTES`: bound on remembered keys (key and fingerprint bytes), and separately on the
    /// stored responses. Invariant: > 0.
    public var idempotencyMaxBytes: Int64

    // Snapshots and divergence.
    /// `TANDEM_SNAPSHOT_SAVE`: a GET or a command; nil when the app is not snapshotted.
    /// Invariant: set exactly when `snapshotRestore` is set.
    public var snapshotSave: AppHook?
    /// `TANDEM_SNAPSHOT_RESTORE`: a PUT or a command; nil when the app is not snapshotted.
    public var snapshotRestore: AppHook?
    /// `TANDEM_SNAPSHOT_EVERY`: entries or bytes of applied entries between snapshots. Invariant: > 0.
    public var snapshotEvery: SnapshotCadence
    /// `TANDEM_LOG_RETAIN`: entries kept behind a snapshot (may be 0).
    public var logRetainEntries: UInt64
    /// `TANDEM_SNAPSHOT_TIMEOUT`: the longest a save or restore hook may run. Invariant: > 0.
    public var snapshotTimeoutMs: Int64
    /// `TANDEM_STATE_DIGEST`: a GET or a command; nil to compare digests of the apply responses.
    public var stateDigest: AppHook?
    /// `TANDEM_DIVERGENCE_ACTION`.
    public var divergenceAction: DivergenceAction

    // Overload and rate limiting.
    /// `TANDEM_MAX_PENDING_WRITES`. Invariant: > 0.
    public var maxPendingWrites: Int
    /// `TANDEM_MAX_UNCOMMITTED`. Invariant: >= maxBodyBytes, so that one largest write always fits.
    public var maxUncommittedBytes: Int64
    /// `TANDEM_QUEUE_TARGET` (CoDel target). Invariant: 0 < queueTargetMs < writeTimeoutMs, and below CoDel's
    /// fixed 100 ms interval (the controller requires target < interval).
    public var queueTargetMs: Int64
    /// `TANDEM_MAX_CONNECTIONS`. Invariant: > 0.
    public var maxConnections: Int
    /// `TANDEM_HEADER_TIMEOUT`. Invariant: > 0.
    public var headerTimeoutMs: Int64
    /// `TANDEM_IDLE_TIMEOUT`. Invariant: > 0.
    public var idleTimeoutMs: Int64
    /// `TANDEM_UPSTREAM_CONNECT_TIMEOUT`. Invariant: > 0.
    public var upstreamConnectTimeoutMs: Int64
    /// `TANDEM_UPSTREAM_TIMEOUT` (response head of a proxied request). Invariant: > 0.
    public var upstreamTimeoutMs: Int64
    /// `TANDEM_RATE_LIMIT`; nil when off.
    public var rateLimit: RateLimit?
    /// `TANDEM_RATE_LIMIT_KEY`.
    public var rateLimitKey: RateLimitKey
    /// `TANDEM_RATE_LIMIT_KEYS`: keys the per-key limiter remembers. Invariant: > 0.
    public var rateLimitKeys: Int
    /// `TANDEM_RATE_LIMIT_GLOBAL`; nil when off.
    public var rateLimitGlobal: RateLimit?

    // Security.
    /// Peer mutual TLS (`TANDEM_TLS_CERT`, `TANDEM_TLS_KEY`, `TANDEM_TLS_CA`), all three or none.
    public var tls: TLSFiles?
    /// `TANDEM_CLUSTER_SECRET`; nil when unset.
    public var clusterSecret: String?
    /// `TANDEM_INSECURE_PEERS`: peers may run unauthenticated. Invariant: when false and `otherPeers` is not
    /// empty, `tls` or `clusterSecret` is set.
    public var insecurePeers: Bool
    /// `TANDEM_ADMIN_TOKEN`; nil when unset (then /admin/* actions are accepted only from loopback).
    public var adminToken: String?

    // Logs.
    /// `TANDEM_LOG_LEVEL`.
    public var logLevel: LogLevel
    /// `TANDEM_LOG_FORMAT`.
    public var logFormat: LogFormat

    /// The request classifier for the configured write methods and route lists.
    public var classifier: RequestClassifier {
        RequestClassifier(
            writeMethods: writeMethods, readRoutes: readRoutes, writeRoutes: writeRoutes, bypassRoutes: bypassRoutes)
    }

    /// The members other than this node.
    public var otherPeers: [Peer] { peers.filter { $0.id != nodeID } }

    /// Things that are allowed but probably not what the operator wants. The sidecar logs each at start with
    /// level warning; they never stop the process.
    public var warnings: [String] {
        var result: [String] = []
        if tls == nil && clusterSecret == nil && !otherPeers.isEmpty {
            result.append(
                "INSECURE: TANDEM_INSECURE_PEERS=true: peer connections are neither authenticated nor encrypted; "
                    + "anyone who reaches TANDEM_PEER_LISTEN can join the cluster as a member, vote and rewrite the "
                    + "log. Set TANDEM_TLS_CERT, TANDEM_TLS_KEY and TANDEM_TLS_CA, or TANDEM_CLUSTER_SECRET")
        }
        if peers.count > 1 && peers.count % 2 == 0 {
            result.append(
                "TANDEM_PEERS lists \(peers.count) nodes: an even cluster tolerates no more failures than "
                    + "\(peers.count - 1) nodes and needs a larger quorum")
        }
        if electionTimeoutMs < 5 * heartbeatIntervalMs {
            result.append(
                "TANDEM_ELECTION_TIMEOUT (\(electionTimeoutMs)ms) is less than 5 heartbeats "
                    + "(\(heartbeatIntervalMs)ms each): a few lost heartbeats will start elections")
        }
        return result
    }

    /// Checks the invariants written beside the fields. `load` calls it on what it built; code that edits a
    /// configuration by hand (tests, simulators) can call it too.
    public func checkInvariants() {
        precondition(upstream.port != 0, "upstream port is never 0")
        precondition(
            peers.isEmpty || peers.contains { $0.id == nodeID } || join != nil, "nodeID is a member of peers")
        precondition(Set(peers.map(\.id)).count == peers.count && peers.count <= Peer.countMax, "peer ids unique")
        precondition(heartbeatIntervalMs > 0 && heartbeatIntervalMs < electionTimeoutMs, "heartbeat < election")
        precondition(phiThreshold > 0 && phiMinStdDevMs > 0 && phiAcceptablePauseMs >= 0, "phi parameters")
        precondition(maxBodyBytes > 0 && maxBodyBytes <= maxUncommittedBytes, "one largest write fits")
        precondition(queueTargetMs > 0 && queueTargetMs < writeTimeoutMs, "queue target below write timeout")
        precondition(queueTargetMs < 100, "queue target below the CoDel interval")
        precondition(readWaitMaxMs >= 0 && idempotencyTTLMs > 0, "read wait and TTL")
        precondition(maxPendingWrites > 0 && maxConnections > 0, "limits are positive")
        precondition((1...256).contains(applyPipeline), "the apply pipeline holds 1 to 256 requests")
        precondition(headerTimeoutMs > 0 && idleTimeoutMs > 0, "connection timeouts are positive")
        precondition(upstreamConnectTimeoutMs > 0 && upstreamTimeoutMs > 0, "upstream timeouts are positive")
        precondition(rateLimitKeys > 0, "the rate limiter remembers at least one key")
        precondition(idempotencyMaxBytes > 0 && snapshotTimeoutMs > 0, "idempotency bound and hook timeout")
        precondition((snapshotSave == nil) == (snapshotRestore == nil), "snapshot save and restore come together")
        switch snapshotEvery {
        case .entries(let count), .bytes(let count): precondition(count > 0, "a snapshot cadence is positive")
        }
        precondition(
            insecurePeers || (otherPeers.isEmpty && join == nil) || tls != nil || clusterSecret != nil,
            "peers are authenticated")
    }
}
