extension TandemConfiguration {
    /// Every `TANDEM_*` variable Tandem reads, in the order `--help` lists them. `load` parses exactly these,
    /// with these defaults and bounds; any other `TANDEM_*` variable in the environment is refused as a typo.
    public static let variables: [ConfigVariable] = [
        // Listeners.
        ConfigVariable(
            "TANDEM_LISTEN", .listeners, default: "0.0.0.0:8080", .listenAddress,
            "Where clients connect; speaks the app's protocol."),
        ConfigVariable(
            "TANDEM_UPSTREAM", .listeners, default: "127.0.0.1:3000", .connectAddress,
            "The local app Tandem forwards reads and applies writes to."),
        ConfigVariable(
            "TANDEM_PEER_LISTEN", .listeners, default: "0.0.0.0:7400", .listenAddress,
            "Where other Tandem nodes connect (Tandem's own framed protocol)."),
        ConfigVariable(
            "TANDEM_ADMIN_LISTEN", .listeners, default: "0.0.0.0:9400", .listenAddress,
            "Health, readiness, metrics, status and admin actions over HTTP."),
        ConfigVariable(
            "TANDEM_PROTOCOL", .listeners, default: "http", .keyword(AppProtocol.supported.map(\.rawValue)),
            "The app's protocol (resp will come in a later release)."),
        // Cluster.
        ConfigVariable(
            "TANDEM_NODE_ID", .cluster, default: "", shown: "the host name", .nodeID,
            "This node's id; must appear in TANDEM_PEERS when peers are listed, unless TANDEM_JOIN is set."),
        ConfigVariable(
            "TANDEM_PEERS", .cluster, default: "", shown: "none (a one-node cluster)", .peers,
            "The founding members, this node included; used only by a node with no state (later the membership "
                + "persisted in the log is the one in force)."),
        ConfigVariable(
            "TANDEM_JOIN", .cluster, default: "", shown: "none", .joinTargets,
            "Members' peer addresses, or a DNS name (SRV records, else A records on port 7400), asked to admit this "
                + "node as a learner when it has no state and TANDEM_PEERS does not list it."),
        ConfigVariable(
            "TANDEM_JOIN_ADVERTISE", .cluster, default: "", shown: "the host name and the TANDEM_PEER_LISTEN port",
            .connectAddress, "The peer address the members record for this node when it joins."),
        ConfigVariable(
            "TANDEM_REMOVE_DEAD_AFTER", .cluster, default: "0s", shown: "off (0s)",
            .duration(minMs: 0, maxMs: 7 * 86_400_000),
            "When set, the leader removes a member it has not heard from for this long, one at a time, never leaving "
                + "fewer voters than TANDEM_REMOVE_DEAD_MIN_VOTERS."),
        ConfigVariable(
            "TANDEM_REMOVE_DEAD_MIN_VOTERS", .cluster, default: "3", .count(min: 1, max: 15),
            "The fewest voters the removal of dead members leaves (explicit removals may go lower)."),
        ConfigVariable(
            "TANDEM_DATA_DIR", .cluster, default: "./tandem-data", .directory,
            "Write-ahead log, hard state and applied index."),
        // Failure detection and elections.
        ConfigVariable(
            "TANDEM_HEARTBEAT_INTERVAL", .failureDetection, default: "100ms", .duration(minMs: 1, maxMs: 10_000),
            "How often the leader heartbeats; must be below TANDEM_ELECTION_TIMEOUT."),
        ConfigVariable(
            "TANDEM_PHI_THRESHOLD", .failureDetection, default: "8", .number(min: 0.1, max: 100),
            "Phi above which a peer is suspected (phi-accrual failure detector)."),
        ConfigVariable(
            "TANDEM_PHI_MIN_STDDEV", .failureDetection, default: "50ms", .duration(minMs: 1, maxMs: 60_000),
            "Floor of the heartbeat interval standard deviation used by phi."),
        ConfigVariable(
            "TANDEM_PHI_ACCEPTABLE_PAUSE", .failureDetection, default: "500ms", .duration(minMs: 0, maxMs: 60_000),
            "Pause tolerated on top of the mean interval before phi rises (GC, network hiccups)."),
        ConfigVariable(
            "TANDEM_ELECTION_TIMEOUT", .failureDetection, default: "1s", .duration(minMs: 10, maxMs: 60_000),
            "Election timeout, randomized to [1x, 2x)."),
        // Writes and reads.
        ConfigVariable(
            "TANDEM_WRITE_METHODS", .writesAndReads, default: "POST,PUT,PATCH,DELETE", .methods,
            "Methods that are replicated writes unless a route rule says otherwise."),
        ConfigVariable(
            "TANDEM_READ_ROUTES", .writesAndReads, default: "", .routes,
            "Requests served as reads whatever their method."),
        ConfigVariable(
            "TANDEM_WRITE_ROUTES", .writesAndReads, default: "", .routes,
            "Requests replicated as writes whatever their method; win over read routes."),
        ConfigVariable(
            "TANDEM_BYPASS_ROUTES", .writesAndReads, default: "", .routes,
            "Requests proxied to the local app, never replicated (e.g. websockets); win over all."),
        ConfigVariable(
            "TANDEM_WRITE_TIMEOUT", .writesAndReads, default: "5s", .duration(minMs: 1, maxMs: 600_000),
            "How long a write may take to commit and apply before 504 commit_timeout."),
        ConfigVariable(
            "TANDEM_READ_CONSISTENCY", .writesAndReads, default: "local",
            .keyword(ReadConsistency.allCases.map(\.rawValue)),
            "Default read level when a request has no Tandem-Consistency header."),
        ConfigVariable(
            "TANDEM_READ_WAIT_MAX", .writesAndReads, default: "2s", .duration(minMs: 0, maxMs: 600_000),
            "Longest a session or linearizable read waits to catch up before 503 not_caught_up."),
        ConfigVariable(
            "TANDEM_IDEMPOTENCY_TTL", .writesAndReads, default: "24h", .duration(minMs: 1000, maxMs: 720 * 3_600_000),
            "How long an Idempotency-Key is remembered."),
        ConfigVariable(
            "TANDEM_IDEMPOTENCY_MAX_BYTES", .writesAndReads, default: "64MiB",
            .size(minBytes: 64 << 10, maxBytes: 64 << 30),
            "Bound on the remembered keys and, separately, on the stored responses; the oldest go first."),
        ConfigVariable(
            "TANDEM_MAX_BODY", .writesAndReads, default: "16MiB", .size(minBytes: 1, maxBytes: 1 << 30),
            "Largest request body; larger gets 413 body_too_large."),
        ConfigVariable(
            "TANDEM_APP_STATE", .writesAndReads, default: "durable", .keyword(AppState.allCases.map(\.rawValue)),
            "durable: resume after the last applied index; memory: replay the log when the app restarts."),
        ConfigVariable(
            "TANDEM_APPLY_PIPELINE", .writesAndReads, default: "16", .count(min: 1, max: 256),
            "Committed writes sent to the app ahead of their answers on its one apply connection (HTTP/1.1 "
                + "pipelining, answers handed on in log order); 1 sends one at a time."),
        // Snapshots and divergence.
        ConfigVariable(
            "TANDEM_SNAPSHOT_SAVE", .snapshots, default: "", shown: "none (no app snapshots)", .appHook(method: "GET"),
            "How to read the app's state: a GET whose 200 body is the state, or a command printing it on stdout; "
                + "needs TANDEM_SNAPSHOT_RESTORE."),
        ConfigVariable(
            "TANDEM_SNAPSHOT_RESTORE", .snapshots, default: "", .appHook(method: "PUT"),
            "How to replace the app's state: a PUT with the state as its body, or a command reading it on stdin; "
                + "the app must discard all previous state."),
        ConfigVariable(
            "TANDEM_SNAPSHOT_EVERY", .snapshots, default: "10000",
            .cadence(minEntries: 1, maxEntries: 1_000_000_000, minBytes: 1 << 10, maxBytes: 1 << 40),
            "Snapshot the app after this many applied entries, or after this many bytes of them."),
        ConfigVariable(
            "TANDEM_LOG_RETAIN", .snapshots, default: "5000", .count(min: 0, max: 100_000_000),
            "Log entries kept behind a snapshot, so that a slightly slow follower catches up without one."),
        ConfigVariable(
            "TANDEM_SNAPSHOT_TIMEOUT", .snapshots, default: "10m", .duration(minMs: 1000, maxMs: 24 * 3_600_000),
            "The longest a snapshot save or restore hook may run before it is stopped and counted as failed."),
        ConfigVariable(
            "TANDEM_STATE_DIGEST", .snapshots, default: "", shown: "none (digests of the apply responses)",
            .appHook(method: "GET"),
            "How to read a digest of the app's state (a GET or a command) for the divergence check."),
        ConfigVariable(
            "TANDEM_DIVERGENCE_ACTION", .snapshots, default: "flag",
            .keyword(DivergenceAction.allCases.map(\.rawValue)),
            "What a replica whose state differs from the majority's does: flag it, stop applying and serving, or "
                + "repair it from the leader's snapshot (needs both snapshot hooks)."),
        // Overload and rate limiting.
        ConfigVariable(
            "TANDEM_MAX_PENDING_WRITES", .overload, default: "1024", .count(min: 1, max: 1_000_000),
            "Writes waiting to commit before new ones get 503 overloaded."),
        ConfigVariable(
            "TANDEM_MAX_UNCOMMITTED", .overload, default: "64MiB", .size(minBytes: 1024, maxBytes: 64 << 30),
            "Cap on uncommitted log bytes; at least TANDEM_MAX_BODY."),
        ConfigVariable(
            "TANDEM_QUEUE_TARGET", .overload, default: "5ms", .duration(minMs: 1, maxMs: 99),
            "CoDel target queueing delay; below CoDel's 100 ms interval and TANDEM_WRITE_TIMEOUT."),
        ConfigVariable(
            "TANDEM_MAX_CONNECTIONS", .overload, default: "10000", .count(min: 1, max: 1_000_000),
            "Open client connections beyond which new ones are refused."),
        ConfigVariable(
            "TANDEM_HEADER_TIMEOUT", .overload, default: "10s", .duration(minMs: 1, maxMs: 600_000),
            "A request whose headers are not complete by then is closed."),
        ConfigVariable(
            "TANDEM_IDLE_TIMEOUT", .overload, default: "60s", .duration(minMs: 1, maxMs: 24 * 3_600_000),
            "Idle keep-alive client connections are closed after this."),
        ConfigVariable(
            "TANDEM_UPSTREAM_CONNECT_TIMEOUT", .overload, default: "2s", .duration(minMs: 1, maxMs: 600_000),
            "A connection to the app not established by then gives 502 upstream_unavailable (an apply retries)."),
        ConfigVariable(
            "TANDEM_UPSTREAM_TIMEOUT", .overload, default: "30s", .duration(minMs: 1, maxMs: 3_600_000),
            "A proxied read whose response head has not come by then gives 504 upstream_timeout."),
        ConfigVariable(
            "TANDEM_RATE_LIMIT", .overload, default: "off", .rateLimit,
            "Per-key GCRA rate limit; excess gets 429 rate_limited."),
        ConfigVariable(
            "TANDEM_RATE_LIMIT_KEY", .overload, default: "ip", .rateLimitKey,
            "What TANDEM_RATE_LIMIT counts by."),
        ConfigVariable(
            "TANDEM_RATE_LIMIT_KEYS", .overload, default: "100000", .count(min: 1, max: 10_000_000),
            "Keys TANDEM_RATE_LIMIT remembers at most; when all of them still owe, new keys share one overflow limit."),
        ConfigVariable(
            "TANDEM_RATE_LIMIT_GLOBAL", .overload, default: "off", .rateLimit,
            "One rate limit shared by all clients of this node."),
        // Security.
        ConfigVariable(
            "TANDEM_TLS_CERT", .security, default: "", .file,
            "PEM certificate for peer mutual TLS; needs TANDEM_TLS_KEY and TANDEM_TLS_CA."),
        ConfigVariable(
            "TANDEM_TLS_KEY", .security, default: "", .file,
            "PEM private key of TANDEM_TLS_CERT."),
        ConfigVariable(
            "TANDEM_TLS_CA", .security, default: "", .file,
            "PEM CA bundle that peer certificates must chain to."),
        ConfigVariable(
            "TANDEM_CLUSTER_SECRET", .security, default: "", .secret(minCharacters: 16),
            "Shared secret when TLS is off: peers prove it in the handshake, then every frame is AES-256-GCM sealed."),
        ConfigVariable(
            "TANDEM_INSECURE_PEERS", .security, default: "false", .keyword(["false", "true"]),
            "true lets a node with peers run with neither TLS nor TANDEM_CLUSTER_SECRET (trusted networks only)."),
        ConfigVariable(
            "TANDEM_ADMIN_TOKEN", .security, default: "", .secret(minCharacters: 1),
            "Bearer token for /admin/*; when unset, admin actions are accepted only from loopback."),
        // Logs.
        ConfigVariable(
            "TANDEM_LOG_LEVEL", .logs, default: "info", .keyword(LogLevel.allCases.map(\.rawValue)),
            "Least severe level logged."),
        ConfigVariable(
            "TANDEM_LOG_FORMAT", .logs, default: "auto", shown: "text on a terminal, else json",
            .keyword(LogFormat.allCases.map(\.rawValue)),
            "Log line format."),
    ]

    /// The table entry for `name`; asking for a name that is not in the table is a programmer error.
    public static func variable(named name: String) -> ConfigVariable {
        guard let variable = variablesByName[name] else {
            preconditionFailure("\(name) is not in TandemConfiguration.variables")
        }
        return variable
    }

    static let variablesByName: [String: ConfigVariable] = Dictionary(
        uniqueKeysWithValues: variables.map { ($0.name, $0) })
}
