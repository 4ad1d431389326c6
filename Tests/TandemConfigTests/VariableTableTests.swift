import XCTest

@testable import TandemConfig

/// The table is the single source of truth for help, docs and the parser; these tests keep the three in step.
final class VariableTableTests: XCTestCase {
    /// Every variable the README's reference names, so a variable dropped from the table fails here.
    static let productVariables: Set<String> = [
        "TANDEM_LISTEN", "TANDEM_UPSTREAM", "TANDEM_PEER_LISTEN", "TANDEM_ADMIN_LISTEN", "TANDEM_PROTOCOL",
        "TANDEM_NODE_ID", "TANDEM_PEERS", "TANDEM_DATA_DIR", "TANDEM_HEARTBEAT_INTERVAL", "TANDEM_PHI_THRESHOLD",
        "TANDEM_PHI_MIN_STDDEV", "TANDEM_PHI_ACCEPTABLE_PAUSE", "TANDEM_ELECTION_TIMEOUT", "TANDEM_WRITE_METHODS",
        "TANDEM_READ_ROUTES", "TANDEM_WRITE_ROUTES", "TANDEM_BYPASS_ROUTES", "TANDEM_WRITE_TIMEOUT",
        "TANDEM_READ_CONSISTENCY", "TANDEM_READ_WAIT_MAX", "TANDEM_IDEMPOTENCY_TTL", "TANDEM_MAX_BODY",
        "TANDEM_APP_STATE", "TANDEM_MAX_PENDING_WRITES", "TANDEM_MAX_UNCOMMITTED", "TANDEM_QUEUE_TARGET",
        "TANDEM_MAX_CONNECTIONS", "TANDEM_HEADER_TIMEOUT", "TANDEM_IDLE_TIMEOUT", "TANDEM_RATE_LIMIT",
        "TANDEM_RATE_LIMIT_KEY", "TANDEM_RATE_LIMIT_GLOBAL", "TANDEM_TLS_CERT", "TANDEM_TLS_KEY", "TANDEM_TLS_CA",
        "TANDEM_CLUSTER_SECRET", "TANDEM_ADMIN_TOKEN", "TANDEM_LOG_LEVEL", "TANDEM_LOG_FORMAT",
        // Security and abuse bounds: unauthenticated peers only on request, the rate limiter's key table.
        "TANDEM_INSECURE_PEERS", "TANDEM_RATE_LIMIT_KEYS",
        // Beyond the original contract: the proxy's own timeouts towards the app.
        "TANDEM_UPSTREAM_CONNECT_TIMEOUT", "TANDEM_UPSTREAM_TIMEOUT",
        // App snapshots, log compaction, state digests and divergence handling; the idempotency table's bound.
        "TANDEM_SNAPSHOT_SAVE", "TANDEM_SNAPSHOT_RESTORE", "TANDEM_SNAPSHOT_EVERY", "TANDEM_LOG_RETAIN",
        "TANDEM_SNAPSHOT_TIMEOUT", "TANDEM_STATE_DIGEST", "TANDEM_DIVERGENCE_ACTION", "TANDEM_IDEMPOTENCY_MAX_BYTES",
        // Pipelined apply requests.
        "TANDEM_APPLY_PIPELINE",
        // Joining a running cluster (TANDEM_JOIN is in the contract; the advertised address is ours).
        "TANDEM_JOIN", "TANDEM_JOIN_ADVERTISE", "TANDEM_REMOVE_DEAD_AFTER", "TANDEM_REMOVE_DEAD_MIN_VOTERS",
    ]

    func testTheTableListsExactlyTheVariablesOfPRODUCTOnce() {
        let names = TandemConfiguration.variables.map(\.name)
        XCTAssertEqual(names.count, Set(names).count, "no duplicates")
        XCTAssertEqual(Set(names), VariableTableTests.productVariables)
    }

    func testEveryVariableInTheTableIsReadByLoad() {
        // A value no variable accepts must be refused with that variable named: proof that load reads it.
        for variable in TandemConfiguration.variables {
            let badValue = variable.kind == .directory ? String(repeating: "d", count: 5000) : "\u{1}bad"
            XCTAssertThrowsError(
                try TandemConfiguration.load(
                    environment: [variable.name: badValue], hostName: "h", isReadableFile: { _ in false }),
                variable.name
            ) { error in
                XCTAssertEqual((error as? ConfigError)?.variable, variable.name)
            }
        }
    }

    func testEveryDefaultInTheTableIsAcceptedOnItsOwn() {
        for variable in TandemConfiguration.variables where !variable.defaultValue.isEmpty {
            XCTAssertNoThrow(
                try TandemConfiguration.load(environment: [variable.name: variable.defaultValue], hostName: "h"),
                variable.name)
        }
    }

    func testEveryVariableHasASummaryAndAnAcceptsText() {
        for variable in TandemConfiguration.variables {
            XCTAssertTrue(variable.summary.hasSuffix("."), variable.name)
            XCTAssertFalse(variable.accepts.isEmpty, variable.name)
            XCTAssertFalse(variable.shownDefault.isEmpty, variable.name)
        }
    }

    func testHelpListsEveryVariableWithItsDefaultUnderItsGroup() {
        let help = TandemConfiguration.helpText()
        for group in ConfigGroup.allCases {
            XCTAssertTrue(help.contains("\n\(group.rawValue):\n"), group.rawValue)
        }
        for variable in TandemConfiguration.variables {
            XCTAssertTrue(help.contains("  \(variable.name)  (default: \(variable.shownDefault))"), variable.name)
        }
        XCTAssertTrue(help.contains("  TANDEM_HEARTBEAT_INTERVAL  (default: 100ms)"))
        XCTAssertTrue(help.contains("  TANDEM_NODE_ID  (default: the host name)"))
        XCTAssertTrue(help.contains("unknown TANDEM_* variable"))
    }

    func testTheMarkdownReferenceHasOneRowPerVariable() {
        let markdown = TandemConfiguration.markdownTable()
        let rows = markdown.split(separator: "\n").filter { $0.hasPrefix("| `TANDEM_") }
        XCTAssertEqual(rows.count, TandemConfiguration.variables.count)
        XCTAssertTrue(markdown.contains("| `TANDEM_MAX_BODY` | `16MiB` | size 1B...1GiB"))
        XCTAssertTrue(markdown.contains("| `TANDEM_RATE_LIMIT_KEY` | `ip` | ip \\| header:NAME |"))
        for row in rows {
            // Five unescaped pipes make four cells; an escaped pipe inside a cell must not add a column.
            let pipes = row.replacingOccurrences(of: "\\|", with: "").filter { $0 == "|" }.count
            XCTAssertEqual(pipes, 5, String(row))
        }
    }

    func testTheEditDistanceSuggestsOnlyCloseNames() {
        XCTAssertEqual(TandemConfiguration.editDistance(Array("kitten".utf8), Array("sitting".utf8)), 3)
        XCTAssertEqual(TandemConfiguration.closestVariableName(to: "TANDEM_LISTN"), "TANDEM_LISTEN")
        XCTAssertEqual(TandemConfiguration.closestVariableName(to: "TANDEM_MAX_BODY_SIZE"), "TANDEM_MAX_BODY")
        XCTAssertNil(TandemConfiguration.closestVariableName(to: "TANDEM_COMPLETELY_DIFFERENT_THING"))
    }
}

/// What the sidecar may log about its configuration, and that it says the truth.
final class EffectiveValuesTests: XCTestCase {
    private let environment = [
        "TANDEM_LISTEN": "[::1]:0", "TANDEM_NODE_ID": "n2", "TANDEM_PEERS": "n1=a:7400, n2=b:7400 ,n3=c:7400",
        "TANDEM_HEARTBEAT_INTERVAL": "0.05s", "TANDEM_PHI_THRESHOLD": "12.5", "TANDEM_ELECTION_TIMEOUT": "30s",
        "TANDEM_WRITE_METHODS": "PUT, POST", "TANDEM_BYPASS_ROUTES": "* /ws/*, GET /x", "TANDEM_MAX_BODY": "1.5MiB",
        "TANDEM_IDEMPOTENCY_TTL": "1440m", "TANDEM_RATE_LIMIT": "10/m", "TANDEM_RATE_LIMIT_KEY": "header:X-Key",
        "TANDEM_TLS_CERT": "/c", "TANDEM_TLS_KEY": "/k", "TANDEM_TLS_CA": "/ca",
        "TANDEM_CLUSTER_SECRET": "s3cr3t-s3cr3t-s3cr3t", "TANDEM_ADMIN_TOKEN": "adm1n-t0ken",
        "TANDEM_LOG_LEVEL": "ERROR", "TANDEM_SNAPSHOT_SAVE": "exec:pg_dump -Fc app",
        "TANDEM_SNAPSHOT_RESTORE": "PUT /admin/state?replace=1", "TANDEM_SNAPSHOT_EVERY": "0.5GiB",
        "TANDEM_LOG_RETAIN": "0", "TANDEM_SNAPSHOT_TIMEOUT": "90s", "TANDEM_STATE_DIGEST": "GET /digest",
        "TANDEM_DIVERGENCE_ACTION": "Stop", "TANDEM_IDEMPOTENCY_MAX_BYTES": "1GB",
    ]

    func testEffectiveValuesLoadBackToTheSameConfiguration() throws {
        let original = try TandemConfiguration.load(
            environment: environment, hostName: "h", isReadableFile: { _ in true })
        var rendered: [String: String] = [:]
        for (name, value) in original.effectiveValues { rendered[name] = value }
        XCTAssertEqual(rendered["TANDEM_HEARTBEAT_INTERVAL"], "50ms")
        XCTAssertEqual(rendered["TANDEM_ELECTION_TIMEOUT"], "30s")
        XCTAssertEqual(rendered["TANDEM_WRITE_METHODS"], "POST,PUT")
        XCTAssertEqual(rendered["TANDEM_IDEMPOTENCY_TTL"], "24h")
        XCTAssertEqual(rendered["TANDEM_MAX_BODY"], "1536KiB")
        XCTAssertEqual(rendered["TANDEM_PEERS"], "n1=a:7400,n2=b:7400,n3=c:7400")
        XCTAssertEqual(rendered["TANDEM_SNAPSHOT_SAVE"], "exec:pg_dump -Fc app")
        XCTAssertEqual(rendered["TANDEM_SNAPSHOT_RESTORE"], "PUT /admin/state?replace=1")
        XCTAssertEqual(rendered["TANDEM_SNAPSHOT_EVERY"], "512MiB")
        XCTAssertEqual(rendered["TANDEM_SNAPSHOT_TIMEOUT"], "90s")
        XCTAssertEqual(rendered["TANDEM_DIVERGENCE_ACTION"], "stop")
        XCTAssertEqual(rendered["TANDEM_IDEMPOTENCY_MAX_BYTES"], "1000000000B")
        // Secrets are redacted, so put the real ones back before loading.
        rendered["TANDEM_CLUSTER_SECRET"] = environment["TANDEM_CLUSTER_SECRET"]
        rendered["TANDEM_ADMIN_TOKEN"] = environment["TANDEM_ADMIN_TOKEN"]
        let reloaded = try TandemConfiguration.load(environment: rendered, hostName: "h", isReadableFile: { _ in true })
        XCTAssertEqual(reloaded, original)
    }

    func testEachDefaultRendersToAValueMeaningTheSame() throws {
        let defaults = TandemConfiguration.defaults(hostName: "h")
        for ((name, value), variable) in zip(defaults.effectiveValues, TandemConfiguration.variables) {
            XCTAssertEqual(name, variable.name)
            XCTAssertEqual(try TandemConfiguration.load(environment: [name: value], hostName: "h"), defaults, name)
        }
        XCTAssertEqual(
            defaults.effectiveValues.first { $0.name == "TANDEM_WRITE_METHODS" }?.value, "POST,PUT,PATCH,DELETE")
        XCTAssertEqual(defaults.effectiveValues.first { $0.name == "TANDEM_IDLE_TIMEOUT" }?.value, "1m")
    }

    func testNoWayOfPrintingTheConfigurationRevealsASecret() throws {
        let c = try TandemConfiguration.load(environment: environment, hostName: "h", isReadableFile: { _ in true })
        var dumped = ""
        dump(c, to: &dumped)
        for text in [c.description, c.debugDescription, "\(c)", String(reflecting: c), dumped] {
            XCTAssertFalse(text.contains("s3cr3t"), text)
            XCTAssertFalse(text.contains("adm1n"), text)
        }
        XCTAssertTrue(c.description.contains("TANDEM_CLUSTER_SECRET=<redacted>"))
        XCTAssertTrue(TandemConfiguration.defaults().description.contains("TANDEM_ADMIN_TOKEN= "))
    }
}
