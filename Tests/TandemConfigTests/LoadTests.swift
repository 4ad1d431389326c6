import XCTest

@testable import TandemConfig

/// Loads `environment` with a fixed host name and a file system where every path is readable.
private func load(_ environment: [String: String], hostName: String = "node-a") throws -> TandemConfiguration {
    try TandemConfiguration.load(environment: environment, hostName: hostName, isReadableFile: { _ in true })
}

/// The one-line error for `environment`, or a failure when it loads.
private func errorLine(
    _ environment: [String: String], hostName: String = "node-a", file: StaticString = #filePath, line: UInt = #line
) -> String {
    do {
        let configuration = try load(environment, hostName: hostName)
        XCTFail("expected an error, loaded \(configuration)", file: file, line: line)
        return ""
    } catch {
        return (error as? ConfigError)?.description ?? "not a ConfigError: \(error)"
    }
}

final class DefaultsTests: XCTestCase {
    func testAnEmptyEnvironmentGivesTheDefaultsOfPRODUCT() throws {
        let c = try load([:])
        XCTAssertEqual(c.listen.description, "0.0.0.0:8080")
        XCTAssertEqual(c.upstream.description, "127.0.0.1:3000")
        XCTAssertEqual(c.peerListen.description, "0.0.0.0:7400")
        XCTAssertEqual(c.adminListen.description, "0.0.0.0:9400")
        XCTAssertEqual(c.appProtocol, .http)
        XCTAssertEqual(c.nodeID, "node-a")
        XCTAssertEqual(c.peers, [])
        XCTAssertEqual(c.dataDir, "./tandem-data")
        XCTAssertEqual(c.heartbeatIntervalMs, 100)
        XCTAssertEqual(c.phiThreshold, 8)
        XCTAssertEqual(c.phiMinStdDevMs, 50)
        XCTAssertEqual(c.phiAcceptablePauseMs, 500)
        XCTAssertEqual(c.electionTimeoutMs, 1000)
        XCTAssertEqual(c.writeMethods, ["POST", "PUT", "PATCH", "DELETE"])
        XCTAssertEqual(c.readRoutes, [])
        XCTAssertEqual(c.writeRoutes, [])
        XCTAssertEqual(c.bypassRoutes, [])
        XCTAssertEqual(c.writeTimeoutMs, 5000)
        XCTAssertEqual(c.readConsistency, .local)
        XCTAssertEqual(c.readWaitMaxMs, 2000)
        XCTAssertEqual(c.idempotencyTTLMs, 86_400_000)
        XCTAssertEqual(c.maxBodyBytes, 16 << 20)
        XCTAssertEqual(c.appState, .durable)
        XCTAssertEqual(c.maxPendingWrites, 1024)
        XCTAssertEqual(c.maxUncommittedBytes, 64 << 20)
        XCTAssertEqual(c.queueTargetMs, 5)
        XCTAssertEqual(c.maxConnections, 10_000)
        XCTAssertEqual(c.headerTimeoutMs, 10_000)
        XCTAssertEqual(c.idleTimeoutMs, 60_000)
        XCTAssertNil(c.rateLimit)
        XCTAssertEqual(c.rateLimitKey, .ip)
        XCTAssertNil(c.rateLimitGlobal)
        XCTAssertNil(c.tls)
        XCTAssertNil(c.clusterSecret)
        XCTAssertNil(c.adminToken)
        XCTAssertEqual(c.logLevel, .info)
        XCTAssertEqual(c.logFormat, .auto)
    }

    func testAutoLogFormatIsTextOnATerminalAndJSONOtherwise() {
        XCTAssertEqual(LogFormat.auto.resolved(standardErrorIsTerminal: true), .text)
        XCTAssertEqual(LogFormat.auto.resolved(standardErrorIsTerminal: false), .json)
        XCTAssertEqual(LogFormat.json.resolved(standardErrorIsTerminal: true), .json)
    }

    func testEmptyValuesMeanTheDefault() throws {
        let empty = Dictionary(uniqueKeysWithValues: TandemConfiguration.variables.map { ($0.name, "") })
        XCTAssertEqual(try load(empty), try load([:]))
    }

    func testSettingEveryVariableToItsShownDefaultChangesNothing() throws {
        var environment: [String: String] = [:]
        for variable in TandemConfiguration.variables where !variable.defaultValue.isEmpty {
            environment[variable.name] = variable.defaultValue
        }
        XCTAssertEqual(try load(environment), try load([:]))
    }

    func testTheDefaultsHelperMatchesAnEmptyEnvironment() throws {
        XCTAssertEqual(TandemConfiguration.defaults(hostName: "node-a"), try load([:]))
    }

    func testAOneNodeClusterNeedsNoPeerAuthentication() throws {
        XCTAssertEqual(try load([:]).warnings, [])
        XCTAssertEqual(try load(["TANDEM_CLUSTER_SECRET": "0123456789abcdef"]).warnings, [])
    }

    func testPeersWithoutTLSOrASecretAreRefusedUnlessInsecurePeersIsTrue() throws {
        let peers = ["TANDEM_PEERS": "n1=a:7400,n2=b:7400,n3=c:7400", "TANDEM_NODE_ID": "n1"]
        XCTAssertEqual(
            errorLine(peers),
            "TANDEM_PEERS=\"n1=a:7400,n2=b:7400,n3=c:7400\" has no peer authentication; expected "
                + "TANDEM_CLUSTER_SECRET, or TANDEM_TLS_CERT, TANDEM_TLS_KEY and TANDEM_TLS_CA, "
                + "or TANDEM_INSECURE_PEERS=true to run unauthenticated on a trusted network")
        let insecure = try load(peers.merging(["TANDEM_INSECURE_PEERS": "true"]) { _, new in new })
        XCTAssertTrue(insecure.insecurePeers)
        XCTAssertEqual(insecure.warnings.count, 1)
        XCTAssertTrue(insecure.warnings[0].hasPrefix("INSECURE"), insecure.warnings[0])
        let secret = try load(peers.merging(["TANDEM_CLUSTER_SECRET": "0123456789abcdef"]) { _, new in new })
        XCTAssertEqual(secret.warnings, [])
        XCTAssertEqual(errorLine(["TANDEM_INSECURE_PEERS": "maybe"]).hasPrefix("TANDEM_INSECURE_PEERS="), true)
    }
}

final class LoadedValuesTests: XCTestCase {
    func testEveryVariableIsParsedIntoItsTypedField() throws {
        let c = try load([
            "TANDEM_LISTEN": "[::]:0", "TANDEM_UPSTREAM": "app:3001", "TANDEM_PEER_LISTEN": "10.0.0.1:7401",
            "TANDEM_ADMIN_LISTEN": "127.0.0.1:0", "TANDEM_PROTOCOL": "HTTP", "TANDEM_NODE_ID": "n2",
            "TANDEM_PEERS": "n1=a:7400,n2=b:7400,n3=c:7400", "TANDEM_DATA_DIR": "/var/lib/tandem",
            "TANDEM_HEARTBEAT_INTERVAL": "50ms", "TANDEM_PHI_THRESHOLD": "12.5", "TANDEM_PHI_MIN_STDDEV": "20ms",
            "TANDEM_PHI_ACCEPTABLE_PAUSE": "0s", "TANDEM_ELECTION_TIMEOUT": "1.5s", "TANDEM_WRITE_METHODS": "POST",
            "TANDEM_READ_ROUTES": "POST /search", "TANDEM_WRITE_ROUTES": "GET /touch/*",
            "TANDEM_BYPASS_ROUTES": "* /ws/*", "TANDEM_WRITE_TIMEOUT": "2s", "TANDEM_READ_CONSISTENCY": "lease",
            "TANDEM_READ_WAIT_MAX": "0ms", "TANDEM_IDEMPOTENCY_TTL": "1h", "TANDEM_MAX_BODY": "1MiB",
            "TANDEM_APP_STATE": "memory", "TANDEM_MAX_PENDING_WRITES": "10", "TANDEM_MAX_UNCOMMITTED": "1MiB",
            "TANDEM_QUEUE_TARGET": "10ms", "TANDEM_MAX_CONNECTIONS": "100", "TANDEM_HEADER_TIMEOUT": "1s",
            "TANDEM_IDLE_TIMEOUT": "5m", "TANDEM_RATE_LIMIT": "200/s;burst=400",
            "TANDEM_RATE_LIMIT_KEY": "header:X-Key",
            "TANDEM_RATE_LIMIT_GLOBAL": "1000/s", "TANDEM_TLS_CERT": "/c.pem", "TANDEM_TLS_KEY": "/k.pem",
            "TANDEM_TLS_CA": "/ca.pem", "TANDEM_CLUSTER_SECRET": "0123456789abcdef", "TANDEM_ADMIN_TOKEN": "t0ken",
            "TANDEM_LOG_LEVEL": "Debug", "TANDEM_LOG_FORMAT": "json",
        ])
        XCTAssertEqual(c.listen.description, "[::]:0")
        XCTAssertEqual(c.upstream.description, "app:3001")
        XCTAssertEqual(c.peerListen.description, "10.0.0.1:7401")
        XCTAssertEqual(c.adminListen.port, 0)
        XCTAssertEqual(c.appProtocol, .http)
        XCTAssertEqual(c.nodeID, "n2")
        XCTAssertEqual(c.otherPeers.map(\.id), ["n1", "n3"])
        XCTAssertEqual(c.dataDir, "/var/lib/tandem")
        XCTAssertEqual(
            [c.heartbeatIntervalMs, c.phiMinStdDevMs, c.phiAcceptablePauseMs, c.electionTimeoutMs], [50, 20, 0, 1500])
        XCTAssertEqual(c.phiThreshold, 12.5)
        XCTAssertEqual(c.writeMethods, ["POST"])
        XCTAssertEqual(c.readRoutes, [RouteRule(method: "POST", pathPattern: "/search")])
        XCTAssertEqual(c.writeRoutes, [RouteRule(method: "GET", pathPattern: "/touch/*")])
        XCTAssertEqual(c.bypassRoutes, [RouteRule(method: "*", pathPattern: "/ws/*")])
        XCTAssertEqual(c.classifier.classify(method: "GET", path: "/touch/x"), .write)
        XCTAssertEqual([c.writeTimeoutMs, c.readWaitMaxMs, c.idempotencyTTLMs], [2000, 0, 3_600_000])
        XCTAssertEqual(c.readConsistency, .lease)
        XCTAssertEqual([c.maxBodyBytes, c.maxUncommittedBytes], [1 << 20, 1 << 20])
        XCTAssertEqual(c.appState, .memory)
        XCTAssertEqual([c.maxPendingWrites, c.maxConnections], [10, 100])
        XCTAssertEqual([c.queueTargetMs, c.headerTimeoutMs, c.idleTimeoutMs], [10, 1000, 300_000])
        XCTAssertEqual(c.rateLimit, RateLimit(count: 200, periodMs: 1000, burst: 400))
        XCTAssertEqual(c.rateLimitKey, .header("X-Key"))
        XCTAssertEqual(c.rateLimitGlobal, RateLimit(count: 1000, periodMs: 1000, burst: 1000))
        XCTAssertEqual(
            c.tls, TLSFiles(certificatePath: "/c.pem", privateKeyPath: "/k.pem", certificateAuthorityPath: "/ca.pem"))
        XCTAssertEqual(c.clusterSecret, "0123456789abcdef")
        XCTAssertEqual(c.adminToken, "t0ken")
        XCTAssertEqual(c.logLevel, .debug)
        XCTAssertEqual(c.logFormat, .json)
    }

    func testTheNodeIdDefaultsToTheHostNameAndMustBeValid() throws {
        XCTAssertEqual(try load([:], hostName: "tandem-0").nodeID, "tandem-0")
        XCTAssertEqual(try load(["TANDEM_NODE_ID": "n1"], hostName: "tandem-0").nodeID, "n1")
        XCTAssertEqual(
            errorLine([:], hostName: ""),
            "TANDEM_NODE_ID=\"\" is unset and the host name \"\" is not a valid node id; expected TANDEM_NODE_ID set "
                + "to 1...64 letters, digits, \".\", \"_\" or \"-\", starting with a letter or digit")
        XCTAssertEqual(
            errorLine(["TANDEM_NODE_ID": "n 1"]),
            "TANDEM_NODE_ID=\"n 1\" is not a valid node id; expected 1...64 letters, digits, \".\", \"_\" or \"-\", "
                + "starting with a letter or digit")
    }

    func testLogLevelsFollowSwiftLogsOrder() {
        XCTAssertEqual(
            LogLevel.allCases.map(\.rawValue), ["trace", "debug", "info", "notice", "warning", "error", "critical"])
        XCTAssertLessThan(LogLevel.debug, LogLevel.info)
        XCTAssertLessThan(LogLevel.error, LogLevel.critical)
    }

    func testTheSystemHostNameIsAValidDefaultOnThisMachine() {
        XCTAssertFalse(TandemConfiguration.systemHostName().isEmpty)
    }
}

/// The exact lines an operator sees: variable, quoted value, problem, what is accepted.
final class ErrorLineTests: XCTestCase {
    func testABadDurationNamesTheVariableTheValueAndTheSyntax() {
        XCTAssertEqual(
            errorLine(["TANDEM_HEARTBEAT_INTERVAL": "fast"]),
            "TANDEM_HEARTBEAT_INTERVAL=\"fast\" is not a duration; expected a number with a unit: 150ms, 2s, 1m")
        XCTAssertEqual(
            errorLine(["TANDEM_WRITE_TIMEOUT": "5"]),
            "TANDEM_WRITE_TIMEOUT=\"5\" is a duration without a unit; expected a number with a unit: 150ms, 2s, 1m")
        XCTAssertEqual(
            errorLine(["TANDEM_WRITE_TIMEOUT": "-5s"]),
            "TANDEM_WRITE_TIMEOUT=\"-5s\" is negative; expected a duration of zero or more: number with a unit: "
                + "150ms, 2s, 1m")
    }

    func testOutOfRangeValuesStateTheRange() {
        XCTAssertEqual(
            errorLine(["TANDEM_HEARTBEAT_INTERVAL": "0ms"]),
            "TANDEM_HEARTBEAT_INTERVAL=\"0ms\" is out of range; expected a duration from 1ms to 10s")
        XCTAssertEqual(
            errorLine(["TANDEM_MAX_BODY": "2GiB"]),
            "TANDEM_MAX_BODY=\"2GiB\" is out of range; expected a size from 1B to 1GiB")
        XCTAssertEqual(
            errorLine(["TANDEM_MAX_PENDING_WRITES": "0"]),
            "TANDEM_MAX_PENDING_WRITES=\"0\" is out of range; expected a whole number from 1 to 1000000")
        XCTAssertEqual(
            errorLine(["TANDEM_PHI_THRESHOLD": "0"]),
            "TANDEM_PHI_THRESHOLD=\"0\" is out of range; expected a number from 0.1 to 100")
        XCTAssertEqual(
            errorLine(["TANDEM_IDEMPOTENCY_TTL": "721h"]),
            "TANDEM_IDEMPOTENCY_TTL=\"721h\" is out of range; expected a duration from 1s to 720h")
    }

    func testAProtocolThisBuildCannotServeIsRefusedRatherThanProxiedAsHTTP() {
        XCTAssertEqual(
            errorLine(["TANDEM_PROTOCOL": "resp"]),
            "TANDEM_PROTOCOL=\"resp\" is not one of the accepted words; expected http")
    }

    func testBadSizesAndAddressesAndWords() {
        XCTAssertEqual(
            errorLine(["TANDEM_MAX_BODY": "16M"]),
            "TANDEM_MAX_BODY=\"16M\" has an unknown size unit \"M\"; expected a number with a unit: 512B, 64KiB, "
                + "16MiB, 1GiB (KB, MB, GB are powers of 1000)")
        XCTAssertEqual(
            errorLine(["TANDEM_LISTEN": "8080"]),
            "TANDEM_LISTEN=\"8080\" has no port; expected host:port such as 0.0.0.0:8080, [::1]:8080 or "
                + "tandem-0.tandem:7400, port 0...65535")
        XCTAssertEqual(
            errorLine(["TANDEM_UPSTREAM": "127.0.0.1:0"]),
            "TANDEM_UPSTREAM=\"127.0.0.1:0\" has port 0; expected a port Tandem can connect to, 1...65535")
        XCTAssertEqual(
            errorLine(["TANDEM_READ_CONSISTENCY": "strong"]),
            "TANDEM_READ_CONSISTENCY=\"strong\" is not one of the accepted words; expected local | session | "
                + "linearizable | lease")
        XCTAssertEqual(
            errorLine(["TANDEM_LOG_LEVEL": "warn"]),
            "TANDEM_LOG_LEVEL=\"warn\" is not one of the accepted words; expected trace | debug | info | notice | "
                + "warning | error | critical")
        XCTAssertEqual(
            errorLine(["TANDEM_RATE_LIMIT": "fast"]),
            "TANDEM_RATE_LIMIT=\"fast\" is not a rate; expected off, or N/s, N/m or N/h with an optional ;burst=N, "
                + "such as 200/s or 200/s;burst=400")
    }

    func testAnUnknownTandemVariableIsRefusedWithASuggestion() {
        XCTAssertEqual(
            errorLine(["TANDEM_HEARTBEAT": "100ms"]),
            "TANDEM_HEARTBEAT=<redacted, 5 characters> is not a Tandem variable; expected only the variables listed "
                + "by tandem --help (did you mean TANDEM_HEARTBEAT_INTERVAL?)")
        XCTAssertEqual(
            errorLine(["TANDEM_PEER": "n1=a:1"]),
            "TANDEM_PEER=<redacted, 6 characters> is not a Tandem variable; expected only the variables listed by "
                + "tandem --help (did you mean TANDEM_PEERS?)")
        XCTAssertEqual(
            errorLine(["TANDEM_XYZZY_PLUGH_FROB": "1"]),
            "TANDEM_XYZZY_PLUGH_FROB=<redacted, 1 characters> is not a Tandem variable; expected only the variables "
                + "listed by tandem --help")
    }

    func testOtherEnvironmentVariablesAreIgnored() throws {
        XCTAssertNoThrow(try load(["PATH": "/bin", "HOME": "/root", "TANDEMX": "1", "tandem_listen": "x"]))
    }

    func testSecretsAreNeverEchoed() {
        let line = errorLine(["TANDEM_CLUSTER_SECRET": "short secret"])
        XCTAssertEqual(
            line,
            "TANDEM_CLUSTER_SECRET=<redacted, 12 characters> has spaces or non-ASCII characters; expected visible "
                + "ASCII characters")
        XCTAssertFalse(line.contains("short"))
        XCTAssertEqual(
            errorLine(["TANDEM_CLUSTER_SECRET": "tooshort"]),
            "TANDEM_CLUSTER_SECRET=<redacted, 8 characters> has the wrong length; expected 16 to 1024 characters")
    }

    func testAnErrorIsAlwaysOneLineWhateverTheValue() {
        let line = errorLine(["TANDEM_LISTEN": "a\nb\"c\\d\u{1b}[31m:80"])
        XCTAssertFalse(line.contains("\n"))
        XCTAssertFalse(line.contains("\u{1b}"))
        XCTAssertTrue(line.hasPrefix("TANDEM_LISTEN=\"a\\nb\\\"c\\\\d\\u{1b}[31m:80\" "), line)
        let long = errorLine(["TANDEM_DATA_DIR": String(repeating: "x", count: 5000)])
        XCTAssertLessThan(long.count, 300)
    }
}

final class CombinationTests: XCTestCase {
    func testTheHeartbeatMustBeShorterThanTheElectionTimeout() throws {
        XCTAssertEqual(
            errorLine(["TANDEM_HEARTBEAT_INTERVAL": "1s"]),
            "TANDEM_HEARTBEAT_INTERVAL=\"1s\" is not shorter than TANDEM_ELECTION_TIMEOUT=\"1s\"; expected a heartbeat "
                + "interval below the election timeout, such as 100ms with 1s")
        XCTAssertNoThrow(try load(["TANDEM_HEARTBEAT_INTERVAL": "999ms"]))
    }

    func testAFewHeartbeatsPerElectionTimeoutOnlyWarns() throws {
        let c = try load(["TANDEM_HEARTBEAT_INTERVAL": "500ms", "TANDEM_CLUSTER_SECRET": "0123456789abcdef"])
        XCTAssertEqual(c.warnings.count, 1)
        XCTAssertTrue(c.warnings[0].hasPrefix("TANDEM_ELECTION_TIMEOUT (1000ms) is less than 5 heartbeats"))
    }

    func testTheQueueTargetMustBeShorterThanTheWriteTimeout() {
        XCTAssertEqual(
            errorLine(["TANDEM_QUEUE_TARGET": "50ms", "TANDEM_WRITE_TIMEOUT": "50ms"]),
            "TANDEM_QUEUE_TARGET=\"50ms\" is not shorter than TANDEM_WRITE_TIMEOUT=\"50ms\"; expected a queue target well "
                + "below the write timeout, such as 5ms with 5s")
    }

    func testTheUncommittedCapMustHoldTheLargestBody() throws {
        XCTAssertEqual(
            errorLine(["TANDEM_MAX_BODY": "128MiB"]),
            "TANDEM_MAX_UNCOMMITTED=\"64MiB\" is smaller than TANDEM_MAX_BODY=\"128MiB\"; expected at least "
                + "TANDEM_MAX_BODY, so that the largest write can be admitted")
        XCTAssertNoThrow(try load(["TANDEM_MAX_BODY": "64MiB"]))
    }

    func testANodeMissingFromThePeersJoinsThroughTANDEMJOINWhichNeedsAuthentication() throws {
        let founders = "n1=a:7400,n2=b:7400,n3=c:7400"
        let secret = "0123456789abcdef"
        let joining = try load([
            "TANDEM_PEERS": founders, "TANDEM_NODE_ID": "n4", "TANDEM_JOIN": "a:7400, b:7400",
            "TANDEM_CLUSTER_SECRET": secret, "TANDEM_JOIN_ADVERTISE": "d:7400",
        ])
        XCTAssertTrue(joining.joinsCluster)
        XCTAssertEqual(joining.join?.description, "a:7400,b:7400")
        XCTAssertEqual(joining.advertisedPeerAddress(hostName: "ignored"), "d:7400")
        let named = try load([
            "TANDEM_NODE_ID": "n4", "TANDEM_JOIN": "tandem-peers.default.svc.cluster.local",
            "TANDEM_CLUSTER_SECRET": secret,
        ])
        XCTAssertEqual(named.join, .dnsName("tandem-peers.default.svc.cluster.local"))
        XCTAssertEqual(named.advertisedPeerAddress(hostName: "box"), "box:7400", "host name and peer port")
        let founder = try load([
            "TANDEM_PEERS": founders, "TANDEM_NODE_ID": "n1", "TANDEM_JOIN": "tandem-peers",
            "TANDEM_CLUSTER_SECRET": secret,
        ])
        XCTAssertFalse(founder.joinsCluster, "a node listed in TANDEM_PEERS founds, whatever TANDEM_JOIN says")
        XCTAssertTrue(
            errorLine(["TANDEM_NODE_ID": "n4", "TANDEM_JOIN": "a:7400"]).hasPrefix(
                "TANDEM_JOIN=\"a:7400\" has no peer authentication"))
        for bad in ["a:0", "a:7400,,b:7400", "bad name!", "a:99999"] {
            XCTAssertTrue(
                errorLine(["TANDEM_NODE_ID": "n4", "TANDEM_JOIN": bad, "TANDEM_CLUSTER_SECRET": secret]).hasPrefix(
                    "TANDEM_JOIN="), bad)
        }
    }

    func testThisNodeMustBeAmongItsPeers() throws {
        XCTAssertEqual(
            errorLine(["TANDEM_PEERS": "n1=a:7400,n2=b:7400,n3=c:7400", "TANDEM_NODE_ID": "n4"]),
            "TANDEM_PEERS=\"n1=a:7400,n2=b:7400,n3=c:7400\" does not list this node n4 from TANDEM_NODE_ID; expected "
                + "every member including this node, TANDEM_NODE_ID set to one of the ids, or TANDEM_JOIN to join")
        XCTAssertEqual(
            errorLine(["TANDEM_PEERS": "n1=a:7400"], hostName: "box"),
            "TANDEM_PEERS=\"n1=a:7400\" does not list this node box from the host name (TANDEM_NODE_ID unset); "
                + "expected every member including this node, TANDEM_NODE_ID set to one of the ids, or TANDEM_JOIN to join"
        )
        XCTAssertEqual(
            try load(
                ["TANDEM_PEERS": "box=a:7400,n2=b:7400,n3=c:7400", "TANDEM_CLUSTER_SECRET": "0123456789abcdef"],
                hostName: "box"
            ).nodeID, "box")
    }

    func testPeerListErrorsNameTheVariable() {
        XCTAssertEqual(
            errorLine(["TANDEM_PEERS": "n1=a:7400,n1=b:7400", "TANDEM_NODE_ID": "n1"]),
            "TANDEM_PEERS=\"n1=a:7400,n1=b:7400\" lists node id n1 twice; expected unique node ids")
    }

    func testAnEvenClusterOnlyWarns() throws {
        let c = try load([
            "TANDEM_PEERS": "n1=a:1,n2=b:1,n3=c:1,n4=d:1", "TANDEM_NODE_ID": "n1",
            "TANDEM_CLUSTER_SECRET": "0123456789abcdef",
        ])
        XCTAssertEqual(c.warnings.count, 1)
        XCTAssertTrue(c.warnings[0].hasPrefix("TANDEM_PEERS lists 4 nodes"))
    }

    func testListenersMayNotShareAPortOnOverlappingHosts() throws {
        XCTAssertEqual(
            errorLine(["TANDEM_ADMIN_LISTEN": "127.0.0.1:8080"]),
            "TANDEM_ADMIN_LISTEN=\"127.0.0.1:8080\" uses the same port as TANDEM_LISTEN=\"0.0.0.0:8080\"; expected a "
                + "different port for each of TANDEM_LISTEN, TANDEM_PEER_LISTEN and TANDEM_ADMIN_LISTEN")
        XCTAssertThrowsError(try load(["TANDEM_LISTEN": "[::]:7400"]))
        // Different hosts, or port 0 everywhere (each gets its own free port), do not clash.
        XCTAssertNoThrow(try load(["TANDEM_LISTEN": "127.0.0.1:9000", "TANDEM_ADMIN_LISTEN": "127.0.0.2:9000"]))
        XCTAssertNoThrow(
            try load([
                "TANDEM_LISTEN": "127.0.0.1:0", "TANDEM_PEER_LISTEN": "127.0.0.1:0",
                "TANDEM_ADMIN_LISTEN": "127.0.0.1:0",
            ]))
    }

    func testTLSNeedsCertificateKeyAndCATogether() throws {
        XCTAssertEqual(
            errorLine(["TANDEM_TLS_CERT": "/c.pem", "TANDEM_TLS_KEY": "/k.pem"]),
            "TANDEM_TLS_CERT=\"/c.pem\" is set without TANDEM_TLS_CA; expected TANDEM_TLS_CERT, TANDEM_TLS_KEY and "
                + "TANDEM_TLS_CA together (peer mutual TLS), or none of them")
        XCTAssertEqual(
            errorLine(["TANDEM_TLS_CA": "/ca.pem"]),
            "TANDEM_TLS_CA=\"/ca.pem\" is set without TANDEM_TLS_CERT and TANDEM_TLS_KEY; expected TANDEM_TLS_CERT, "
                + "TANDEM_TLS_KEY and TANDEM_TLS_CA together (peer mutual TLS), or none of them")
        let c = try load(["TANDEM_TLS_CERT": "/c", "TANDEM_TLS_KEY": "/k", "TANDEM_TLS_CA": "/ca"])
        XCTAssertNotNil(c.tls)
        XCTAssertEqual(c.warnings, [], "TLS authenticates peers, so no warning")
    }

    func testTLSFilesMustBeReadable() {
        let environment = ["TANDEM_TLS_CERT": "/c", "TANDEM_TLS_KEY": "/missing/k", "TANDEM_TLS_CA": "/ca"]
        XCTAssertThrowsError(
            try TandemConfiguration.load(
                environment: environment, hostName: "h", isReadableFile: { $0 != "/missing/k" })
        ) { error in
            XCTAssertEqual((error as? ConfigError)?.kind, .unreadableFile)
            XCTAssertEqual(
                (error as? ConfigError)?.description,
                "TANDEM_TLS_KEY=\"/missing/k\" cannot be read; expected a path to a readable PEM file")
        }
        XCTAssertFalse(TandemConfiguration.fileIsReadable("/nonexistent/tandem/file"))
    }
}

/// `TANDEM_APPLY_PIPELINE`: requests in flight to the app, 1 (one at a time) to 256 (what a response parser tracks).
final class ApplyPipelineVariableTests: XCTestCase {
    func testTheDefaultIsSixteenAndTheBoundsAreAccepted() throws {
        XCTAssertEqual(try load([:]).applyPipeline, 16)
        XCTAssertEqual(try load(["TANDEM_APPLY_PIPELINE": "1"]).applyPipeline, 1)
        XCTAssertEqual(try load(["TANDEM_APPLY_PIPELINE": "256"]).applyPipeline, 256)
        XCTAssertTrue(
            try load(["TANDEM_APPLY_PIPELINE": "4"]).effectiveValues.contains { $0 == ("TANDEM_APPLY_PIPELINE", "4") })
    }

    func testValuesOutsideOneToTwoHundredFiftySixAreRefused() {
        XCTAssertEqual(
            errorLine(["TANDEM_APPLY_PIPELINE": "0"]),
            "TANDEM_APPLY_PIPELINE=\"0\" is out of range; expected a whole number from 1 to 256")
        XCTAssertEqual(
            errorLine(["TANDEM_APPLY_PIPELINE": "257"]),
            "TANDEM_APPLY_PIPELINE=\"257\" is out of range; expected a whole number from 1 to 256")
    }
}
