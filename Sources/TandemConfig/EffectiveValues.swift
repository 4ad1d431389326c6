extension TandemConfiguration: CustomStringConvertible, CustomDebugStringConvertible {
    /// Every variable with its effective value, in table order, written in the syntax `load` accepts (so the
    /// list can be logged at start, or fed back as an environment). Secrets show as `<redacted>` when set;
    /// unset optional values are "" (or `off` for rate limits).
    public var effectiveValues: [(name: String, value: String)] {
        let routes: ([RouteRule]) -> String = { $0.map(\.description).joined(separator: ",") }
        let secret: (String?) -> String = { $0 == nil ? "" : "<redacted>" }
        let values: [(String, String)] = [
            ("TANDEM_LISTEN", listen.description),
            ("TANDEM_UPSTREAM", upstream.description),
            ("TANDEM_PEER_LISTEN", peerListen.description),
            ("TANDEM_ADMIN_LISTEN", adminListen.description),
            ("TANDEM_PROTOCOL", appProtocol.rawValue),
            ("TANDEM_NODE_ID", nodeID),
            ("TANDEM_PEERS", peers.map(\.description).joined(separator: ",")),
            ("TANDEM_JOIN", join?.description ?? ""),
            ("TANDEM_JOIN_ADVERTISE", joinAdvertise?.description ?? ""),
            ("TANDEM_REMOVE_DEAD_AFTER", ConfigFormat.duration(removeDeadAfterMs)),
            ("TANDEM_REMOVE_DEAD_MIN_VOTERS", String(removeDeadMinVoters)),
            ("TANDEM_DATA_DIR", dataDir),
            ("TANDEM_HEARTBEAT_INTERVAL", ConfigFormat.duration(heartbeatIntervalMs)),
            ("TANDEM_PHI_THRESHOLD", ConfigFormat.number(phiThreshold)),
            ("TANDEM_PHI_MIN_STDDEV", ConfigFormat.duration(phiMinStdDevMs)),
            ("TANDEM_PHI_ACCEPTABLE_PAUSE", ConfigFormat.duration(phiAcceptablePauseMs)),
            ("TANDEM_ELECTION_TIMEOUT", ConfigFormat.duration(electionTimeoutMs)),
            ("TANDEM_WRITE_METHODS", TandemConfiguration.canonicalOrder(writeMethods).joined(separator: ",")),
            ("TANDEM_READ_ROUTES", routes(readRoutes)),
            ("TANDEM_WRITE_ROUTES", routes(writeRoutes)),
            ("TANDEM_BYPASS_ROUTES", routes(bypassRoutes)),
            ("TANDEM_WRITE_TIMEOUT", ConfigFormat.duration(writeTimeoutMs)),
            ("TANDEM_READ_CONSISTENCY", readConsistency.rawValue),
            ("TANDEM_READ_WAIT_MAX", ConfigFormat.duration(readWaitMaxMs)),
            ("TANDEM_IDEMPOTENCY_TTL", ConfigFormat.duration(idempotencyTTLMs)),
            ("TANDEM_IDEMPOTENCY_MAX_BYTES", ConfigFormat.size(idempotencyMaxBytes)),
            ("TANDEM_MAX_BODY", ConfigFormat.size(maxBodyBytes)),
            ("TANDEM_APP_STATE", appState.rawValue),
            ("TANDEM_APPLY_PIPELINE", String(applyPipeline)),
            ("TANDEM_SNAPSHOT_SAVE", snapshotSave?.description ?? ""),
            ("TANDEM_SNAPSHOT_RESTORE", snapshotRestore?.description ?? ""),
            ("TANDEM_SNAPSHOT_EVERY", snapshotEvery.description),
            ("TANDEM_LOG_RETAIN", String(logRetainEntries)),
            ("TANDEM_SNAPSHOT_TIMEOUT", ConfigFormat.duration(snapshotTimeoutMs)),
            ("TANDEM_STATE_DIGEST", stateDigest?.description ?? ""),
            ("TANDEM_DIVERGENCE_ACTION", divergenceAction.rawValue),
            ("TANDEM_MAX_PENDING_WRITES", String(maxPendingWrites)),
            ("TANDEM_MAX_UNCOMMITTED", ConfigFormat.size(maxUncommittedBytes)),
            ("TANDEM_QUEUE_TARGET", ConfigFormat.duration(queueTargetMs)),
            ("TANDEM_MAX_CONNECTIONS", String(maxConnections)),
            ("TANDEM_HEADER_TIMEOUT", ConfigFormat.duration(headerTimeoutMs)),
            ("TANDEM_IDLE_TIMEOUT", ConfigFormat.duration(idleTimeoutMs)),
            ("TANDEM_UPSTREAM_CONNECT_TIMEOUT", ConfigFormat.duration(upstreamConnectTimeoutMs)),
            ("TANDEM_UPSTREAM_TIMEOUT", ConfigFormat.duration(upstreamTimeoutMs)),
            ("TANDEM_RATE_LIMIT", rateLimit?.description ?? "off"),
            ("TANDEM_RATE_LIMIT_KEY", rateLimitKey.description),
            ("TANDEM_RATE_LIMIT_KEYS", String(rateLimitKeys)),
            ("TANDEM_RATE_LIMIT_GLOBAL", rateLimitGlobal?.description ?? "off"),
            ("TANDEM_TLS_CERT", tls?.certificatePath ?? ""),
            ("TANDEM_TLS_KEY", tls?.privateKeyPath ?? ""),
            ("TANDEM_TLS_CA", tls?.certificateAuthorityPath ?? ""),
            ("TANDEM_CLUSTER_SECRET", secret(clusterSecret)),
            ("TANDEM_INSECURE_PEERS", insecurePeers ? "true" : "false"),
            ("TANDEM_ADMIN_TOKEN", secret(adminToken)),
            ("TANDEM_LOG_LEVEL", logLevel.rawValue),
            ("TANDEM_LOG_FORMAT", logFormat.rawValue),
        ]
        assert(values.map(\.0) == TandemConfiguration.variables.map(\.name), "one effective value per table row")
        return values.map { (name: $0.0, value: $0.1) }
    }

    /// The methods in the documented order (POST, PUT, PATCH, DELETE), then any others sorted, so the
    /// rendering is stable and reads like the default.
    static func canonicalOrder(_ methods: Set<String>) -> [String] {
        let usual = ["POST", "PUT", "PATCH", "DELETE"]
        return usual.filter { methods.contains($0) } + methods.subtracting(usual).sorted()
    }

    /// `TANDEM_X=value` pairs separated by spaces, secrets redacted: safe to log.
    public var description: String {
        effectiveValues.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
    }

    /// The same as `description`, so that `dump`, `debugPrint` and test failures never print a secret either.
    public var debugDescription: String { description }
}

extension TandemConfiguration: CustomReflectable {
    /// Reflection (`dump`, debuggers, XCTest failure messages) sees the effective values, so secrets stay
    /// redacted there too.
    public var customMirror: Mirror {
        Mirror(self, children: effectiveValues.map { (label: $0.name, value: $0.value as Any) }, displayStyle: .struct)
    }
}
