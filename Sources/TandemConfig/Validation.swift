/// The words of a yes/no variable.
enum Toggle: String {
    case `true`, `false`
}

extension TandemConfiguration {
    /// Parses each variable on its own; relations between variables are checked by `checkCombinations`.
    init(reading reader: EnvironmentReader, hostName: String) throws(ConfigError) {
        listen = try reader.address("TANDEM_LISTEN")
        upstream = try reader.address("TANDEM_UPSTREAM")
        peerListen = try reader.address("TANDEM_PEER_LISTEN")
        adminListen = try reader.address("TANDEM_ADMIN_LISTEN")
        appProtocol = try reader.keyword("TANDEM_PROTOCOL", as: AppProtocol.self)
        nodeID = try TandemConfiguration.readNodeID(reader, hostName: hostName)
        peers = try reader.parse("TANDEM_PEERS") { text throws(ConfigValueError) in
            text.isEmpty ? [] : try Peer.parseList(text)
        }
        join = try reader.parse("TANDEM_JOIN") { text throws(ConfigValueError) in
            text.isEmpty ? nil : try JoinTargets(parsing: text)
        }
        joinAdvertise = reader.isSet("TANDEM_JOIN_ADVERTISE") ? try reader.address("TANDEM_JOIN_ADVERTISE") : nil
        removeDeadAfterMs = try reader.durationMs("TANDEM_REMOVE_DEAD_AFTER")
        removeDeadMinVoters = try reader.count("TANDEM_REMOVE_DEAD_MIN_VOTERS")
        dataDir = try TandemConfiguration.readDataDir(reader)
        heartbeatIntervalMs = try reader.durationMs("TANDEM_HEARTBEAT_INTERVAL")
        phiThreshold = try reader.number("TANDEM_PHI_THRESHOLD")
        phiMinStdDevMs = try reader.durationMs("TANDEM_PHI_MIN_STDDEV")
        phiAcceptablePauseMs = try reader.durationMs("TANDEM_PHI_ACCEPTABLE_PAUSE")
        electionTimeoutMs = try reader.durationMs("TANDEM_ELECTION_TIMEOUT")
        writeMethods = try reader.parse("TANDEM_WRITE_METHODS", HTTPMethod.parseSet)
        readRoutes = try reader.parse("TANDEM_READ_ROUTES", TandemConfiguration.parseRoutes)
        writeRoutes = try reader.parse("TANDEM_WRITE_ROUTES", TandemConfiguration.parseRoutes)
        bypassRoutes = try reader.parse("TANDEM_BYPASS_ROUTES", TandemConfiguration.parseRoutes)
        writeTimeoutMs = try reader.durationMs("TANDEM_WRITE_TIMEOUT")
        readConsistency = try reader.keyword("TANDEM_READ_CONSISTENCY", as: ReadConsistency.self)
        readWaitMaxMs = try reader.durationMs("TANDEM_READ_WAIT_MAX")
        idempotencyTTLMs = try reader.durationMs("TANDEM_IDEMPOTENCY_TTL")
        maxBodyBytes = try reader.sizeBytes("TANDEM_MAX_BODY")
        appState = try reader.keyword("TANDEM_APP_STATE", as: AppState.self)
        applyPipeline = try reader.count("TANDEM_APPLY_PIPELINE")
        idempotencyMaxBytes = try reader.sizeBytes("TANDEM_IDEMPOTENCY_MAX_BYTES")
        snapshotSave = try reader.appHook("TANDEM_SNAPSHOT_SAVE")
        snapshotRestore = try reader.appHook("TANDEM_SNAPSHOT_RESTORE")
        snapshotEvery = try reader.cadence("TANDEM_SNAPSHOT_EVERY")
        logRetainEntries = UInt64(try reader.count("TANDEM_LOG_RETAIN"))
        snapshotTimeoutMs = try reader.durationMs("TANDEM_SNAPSHOT_TIMEOUT")
        stateDigest = try reader.appHook("TANDEM_STATE_DIGEST")
        divergenceAction = try reader.keyword("TANDEM_DIVERGENCE_ACTION", as: DivergenceAction.self)
        if divergenceAction == .repair && (snapshotSave == nil || snapshotRestore == nil) {
            // A repair copies the leader's snapshot into the app and saves the diverged state aside first.
            throw reader.failure(
                .invalidValue, "TANDEM_DIVERGENCE_ACTION", "repair",
                "needs TANDEM_SNAPSHOT_SAVE and TANDEM_SNAPSHOT_RESTORE (a replica is repaired from the leader's "
                    + "snapshot, after its own state is saved aside)",
                "flag | stop, or set both hooks")
        }
        maxPendingWrites = try reader.count("TANDEM_MAX_PENDING_WRITES")
        maxUncommittedBytes = try reader.sizeBytes("TANDEM_MAX_UNCOMMITTED")
        queueTargetMs = try reader.durationMs("TANDEM_QUEUE_TARGET")
        maxConnections = try reader.count("TANDEM_MAX_CONNECTIONS")
        headerTimeoutMs = try reader.durationMs("TANDEM_HEADER_TIMEOUT")
        idleTimeoutMs = try reader.durationMs("TANDEM_IDLE_TIMEOUT")
        upstreamConnectTimeoutMs = try reader.durationMs("TANDEM_UPSTREAM_CONNECT_TIMEOUT")
        upstreamTimeoutMs = try reader.durationMs("TANDEM_UPSTREAM_TIMEOUT")
        rateLimit = try reader.rateLimit("TANDEM_RATE_LIMIT")
        rateLimitKey = try reader.parse("TANDEM_RATE_LIMIT_KEY", RateLimitKey.init(parsing:))
        rateLimitKeys = try reader.count("TANDEM_RATE_LIMIT_KEYS")
        rateLimitGlobal = try reader.rateLimit("TANDEM_RATE_LIMIT_GLOBAL")
        tls = try TandemConfiguration.readTLS(reader)
        clusterSecret = try reader.secret("TANDEM_CLUSTER_SECRET")
        insecurePeers = try reader.keyword("TANDEM_INSECURE_PEERS", as: Toggle.self) == .true
        adminToken = try reader.secret("TANDEM_ADMIN_TOKEN")
        logLevel = try reader.keyword("TANDEM_LOG_LEVEL", as: LogLevel.self)
        logFormat = try reader.keyword("TANDEM_LOG_FORMAT", as: LogFormat.self)
    }

    static func parseRoutes(_ text: String) throws(ConfigValueError) -> [RouteRule] {
        text.isEmpty ? [] : try RouteRule.parseList(text)
    }

    static func readNodeID(_ reader: EnvironmentReader, hostName: String) throws(ConfigError) -> String {
        let name = "TANDEM_NODE_ID"
        if reader.isSet(name) {
            let id = reader.text(name)
            guard NodeID.isValid(id) else {
                throw reader.failure(.invalidValue, name, id, "is not a valid node id", NodeID.syntax)
            }
            return id
        }
        guard NodeID.isValid(hostName) else {
            throw reader.failure(
                .invalidValue, name, "",
                "is unset and the host name \(ConfigError.show(hostName, isSecret: false)) is not a valid node id",
                "TANDEM_NODE_ID set to " + NodeID.syntax)
        }
        return hostName
    }

    static func readDataDir(_ reader: EnvironmentReader) throws(ConfigError) -> String {
        let path = reader.text("TANDEM_DATA_DIR")
        guard path.utf8.count <= 4096, !path.utf8.contains(0) else {
            throw reader.failure(
                .invalidValue, "TANDEM_DATA_DIR", path, "is not a usable path", "a path up to 4096 bytes")
        }
        return path
    }

    /// Mutual TLS needs all three files: our certificate and key to present, and the CA to check the peer's.
    static func readTLS(_ reader: EnvironmentReader) throws(ConfigError) -> TLSFiles? {
        let names = ["TANDEM_TLS_CERT", "TANDEM_TLS_KEY", "TANDEM_TLS_CA"]
        let setNames = names.filter { reader.isSet($0) }
        if setNames.isEmpty { return nil }
        if setNames.count < names.count {
            let first = setNames[0]
            let missing = names.filter { !reader.isSet($0) }.joined(separator: " and ")
            throw reader.failure(
                .conflict, first, reader.text(first), "is set without \(missing)",
                "TANDEM_TLS_CERT, TANDEM_TLS_KEY and TANDEM_TLS_CA together (peer mutual TLS), or none of them")
        }
        return TLSFiles(
            certificatePath: reader.text(names[0]), privateKeyPath: reader.text(names[1]),
            certificateAuthorityPath: reader.text(names[2]))
    }

    /// Relations between variables that each parsed fine on their own.
    func checkCombinations(reader: EnvironmentReader, hostName: String) throws(ConfigError) {
        // The consensus core derives its leader stickiness and lease from these (RaftConfig.leaderStickinessMs):
        // stickiness lies between 1 ms and 4/5 of the election timeout, the lease is 7/8 of it, so a heartbeat
        // interval below an election timeout of at least 10 ms (the table's minimum) is all the derivation needs.
        if heartbeatIntervalMs >= electionTimeoutMs {
            throw reader.failure(
                .conflict, "TANDEM_HEARTBEAT_INTERVAL", reader.text("TANDEM_HEARTBEAT_INTERVAL"),
                "is not shorter than TANDEM_ELECTION_TIMEOUT=\"\(reader.text("TANDEM_ELECTION_TIMEOUT"))\"",
                "a heartbeat interval below the election timeout, such as 100ms with 1s")
        }

        if queueTargetMs >= writeTimeoutMs {
            throw reader.failure(
                .conflict, "TANDEM_QUEUE_TARGET", reader.text("TANDEM_QUEUE_TARGET"),
                "is not shorter than TANDEM_WRITE_TIMEOUT=\"\(reader.text("TANDEM_WRITE_TIMEOUT"))\"",
                "a queue target well below the write timeout, such as 5ms with 5s")
        }
        if maxUncommittedBytes < maxBodyBytes {
            throw reader.failure(
                .conflict, "TANDEM_MAX_UNCOMMITTED", reader.text("TANDEM_MAX_UNCOMMITTED"),
                "is smaller than TANDEM_MAX_BODY=\"\(reader.text("TANDEM_MAX_BODY"))\"",
                "at least TANDEM_MAX_BODY, so that the largest write can be admitted")
        }
        try checkSnapshotHooksPaired(reader: reader)
        if !peers.isEmpty && !peers.contains(where: { $0.id == nodeID }) && join == nil {
            let origin = reader.isSet("TANDEM_NODE_ID") ? "TANDEM_NODE_ID" : "the host name (TANDEM_NODE_ID unset)"
            throw reader.failure(
                .conflict, "TANDEM_PEERS", reader.text("TANDEM_PEERS"),
                "does not list this node \(nodeID) from \(origin)",
                "every member including this node, TANDEM_NODE_ID set to one of the ids, or TANDEM_JOIN to join")
        }
        // A member that accepts unauthenticated peers lets anyone who reaches its peer port vote and append.
        if join != nil && tls == nil && clusterSecret == nil && !insecurePeers {
            throw reader.failure(
                .conflict, "TANDEM_JOIN", reader.text("TANDEM_JOIN"), "has no peer authentication",
                "TANDEM_CLUSTER_SECRET, or TANDEM_TLS_CERT, TANDEM_TLS_KEY and TANDEM_TLS_CA, "
                    + "or TANDEM_INSECURE_PEERS=true to run unauthenticated on a trusted network")
        }
        if !otherPeers.isEmpty && tls == nil && clusterSecret == nil && !insecurePeers {
            throw reader.failure(
                .conflict, "TANDEM_PEERS", reader.text("TANDEM_PEERS"), "has no peer authentication",
                "TANDEM_CLUSTER_SECRET, or TANDEM_TLS_CERT, TANDEM_TLS_KEY and TANDEM_TLS_CA, "
                    + "or TANDEM_INSECURE_PEERS=true to run unauthenticated on a trusted network")
        }
        try checkListenersDistinct(reader: reader)
    }

    /// A snapshot that cannot be restored is useless, and a restore with nothing to restore never runs: the two
    /// hooks come together or not at all.
    func checkSnapshotHooksPaired(reader: EnvironmentReader) throws(ConfigError) {
        let hooks = [
            ("TANDEM_SNAPSHOT_SAVE", "TANDEM_SNAPSHOT_RESTORE"), ("TANDEM_SNAPSHOT_RESTORE", "TANDEM_SNAPSHOT_SAVE"),
        ]
        for (name, other) in hooks where reader.isSet(name) && !reader.isSet(other) {
            throw reader.failure(
                .conflict, name, reader.text(name), "is set without \(other)",
                "TANDEM_SNAPSHOT_SAVE and TANDEM_SNAPSHOT_RESTORE together (a snapshot that cannot be restored is "
                    + "useless), or neither")
        }
    }

    /// Two listeners on the same port would fail at bind time with a vaguer error, or worse, on a dual-stack
    /// host one could shadow the other; port 0 never clashes because each gets its own free port.
    func checkListenersDistinct(reader: EnvironmentReader) throws(ConfigError) {
        let listeners = [
            ("TANDEM_LISTEN", listen), ("TANDEM_PEER_LISTEN", peerListen), ("TANDEM_ADMIN_LISTEN", adminListen),
        ]
        for (i, (name, address)) in listeners.enumerated() {
            for (otherName, other) in listeners[(i + 1)...] where address.port != 0 && address.port == other.port {
                let hostsOverlap =
                    address.isWildcard || other.isWildcard || address.host.lowercased() == other.host.lowercased()
                if hostsOverlap {
                    throw reader.failure(
                        .conflict, otherName, reader.text(otherName), "uses the same port as \(name)=\"\(address)\"",
                        "a different port for each of TANDEM_LISTEN, TANDEM_PEER_LISTEN and TANDEM_ADMIN_LISTEN")
                }
            }
        }
    }

    func checkTLSFilesReadable(_ isReadableFile: (String) -> Bool) throws(ConfigError) {
        guard let tls else { return }
        let files = [
            ("TANDEM_TLS_CERT", tls.certificatePath), ("TANDEM_TLS_KEY", tls.privateKeyPath),
            ("TANDEM_TLS_CA", tls.certificateAuthorityPath),
        ]
        for (name, path) in files where !isReadableFile(path) {
            throw ConfigError(
                .unreadableFile, variable: name, value: path, problem: "cannot be read",
                expected: "a path to a readable PEM file")
        }
    }
}
