import XCTest

@testable import TandemConfig

private func load(_ environment: [String: String]) throws -> TandemConfiguration {
    try TandemConfiguration.load(environment: environment, hostName: "node-a", isReadableFile: { _ in true })
}

/// The one-line error for `environment`, or a failure when it loads.
private func errorLine(_ environment: [String: String], file: StaticString = #filePath, line: UInt = #line) -> String {
    do {
        let configuration = try load(environment)
        XCTFail("expected an error, loaded \(configuration)", file: file, line: line)
        return ""
    } catch {
        return (error as? ConfigError)?.description ?? "not a ConfigError: \(error)"
    }
}

/// Both snapshot hooks, so that one can be varied while the pair stays valid.
private let pair = ["TANDEM_SNAPSHOT_SAVE": "GET /snapshot", "TANDEM_SNAPSHOT_RESTORE": "PUT /snapshot"]

private func with(_ extra: [String: String]) -> [String: String] {
    pair.merging(extra) { _, new in new }
}

/// App snapshots, log retention, state digests, divergence handling and the idempotency bound.
final class SnapshotVariableTests: XCTestCase {
    func testTheDefaultsMeanNoSnapshotsAndTheDocumentedBounds() throws {
        let c = try load([:])
        XCTAssertNil(c.snapshotSave)
        XCTAssertNil(c.snapshotRestore)
        XCTAssertEqual(c.snapshotEvery, .entries(10_000))
        XCTAssertEqual(c.logRetainEntries, 5_000)
        XCTAssertEqual(c.snapshotTimeoutMs, 600_000)
        XCTAssertNil(c.stateDigest)
        XCTAssertEqual(c.divergenceAction, .flag)
        XCTAssertEqual(c.idempotencyMaxBytes, 64 << 20)
    }

    func testHooksParseIntoHTTPRequestsAndCommands() throws {
        let http = try load(with(["TANDEM_STATE_DIGEST": "GET /state/digest?algo=sha256"]))
        XCTAssertEqual(http.snapshotSave, .http(method: "GET", target: "/snapshot"))
        XCTAssertEqual(http.snapshotRestore, .http(method: "PUT", target: "/snapshot"))
        XCTAssertEqual(http.stateDigest, .http(method: "GET", target: "/state/digest?algo=sha256"))
        let exec = try load([
            "TANDEM_SNAPSHOT_SAVE": "exec:redis-cli --rdb - | cat", "TANDEM_SNAPSHOT_RESTORE": "exec:sh restore.sh\n",
            "TANDEM_STATE_DIGEST": "exec:sha256sum /data/db",
        ])
        XCTAssertEqual(exec.snapshotSave, .exec(command: "redis-cli --rdb - | cat"))
        XCTAssertEqual(exec.snapshotRestore, .exec(command: "sh restore.sh\n"))
        XCTAssertEqual(exec.stateDigest, .exec(command: "sha256sum /data/db"))
        // Either form on either side.
        let mixed = try load(["TANDEM_SNAPSHOT_SAVE": "exec:dump", "TANDEM_SNAPSHOT_RESTORE": "PUT /state"])
        XCTAssertEqual(mixed.snapshotSave?.description, "exec:dump")
        XCTAssertEqual(mixed.snapshotRestore?.description, "PUT /state")
    }

    func testOneSnapshotHookWithoutTheOtherIsAConflictNamingBoth() {
        XCTAssertEqual(
            errorLine(["TANDEM_SNAPSHOT_SAVE": "GET /snapshot"]),
            "TANDEM_SNAPSHOT_SAVE=\"GET /snapshot\" is set without TANDEM_SNAPSHOT_RESTORE; expected "
                + "TANDEM_SNAPSHOT_SAVE and TANDEM_SNAPSHOT_RESTORE together (a snapshot that cannot be restored is "
                + "useless), or neither")
        let restoreOnly = errorLine(["TANDEM_SNAPSHOT_RESTORE": "exec:cat > /data/db"])
        XCTAssertTrue(
            restoreOnly.hasPrefix(
                "TANDEM_SNAPSHOT_RESTORE=\"exec:cat > /data/db\" is set without TANDEM_SNAPSHOT_SAVE; expected"),
            restoreOnly)
        do {
            _ = try load(["TANDEM_SNAPSHOT_RESTORE": "PUT /x"])
            XCTFail("a lone restore hook loaded")
        } catch {
            XCTAssertEqual((error as? ConfigError)?.kind, .conflict)
        }
    }

    func testHooksAreValidatedStrictly() {
        let expectedSave =
            "expected GET /path (an HTTP request on the app) or exec:COMMAND (a shell command run beside the app)"
        let cases: [(String, String, String)] = [
            // variable, value, the error line's tail after the quoted value
            ("TANDEM_SNAPSHOT_SAVE", "PUT /snapshot", "uses the method \"PUT\"; " + expectedSave),
            ("TANDEM_SNAPSHOT_SAVE", "get /snapshot", "has the method in lower case; " + expectedSave),
            ("TANDEM_SNAPSHOT_SAVE", "GET snapshot", "has a path that does not start with /; " + expectedSave),
            ("TANDEM_SNAPSHOT_SAVE", "/snapshot", "is neither an HTTP request nor an exec: command; " + expectedSave),
            (
                "TANDEM_SNAPSHOT_SAVE", "GET /a b",
                "has spaces, control characters, # or non-ASCII characters in its path; expected a path of visible "
                    + "ASCII characters, percent-encoded where needed"
            ),
            ("TANDEM_SNAPSHOT_SAVE", "GET  /a", "has a path that does not start with /; " + expectedSave),
            ("TANDEM_SNAPSHOT_SAVE", "exec:", "has an empty command; expected exec: followed by a shell command"),
            ("TANDEM_SNAPSHOT_SAVE", "exec:  \t", "has an empty command; expected exec: followed by a shell command"),
            (
                "TANDEM_SNAPSHOT_SAVE", "exec:dump\u{1b}[0m",
                "has control characters in its command; expected a command of printable characters"
            ),
            (
                "TANDEM_SNAPSHOT_RESTORE", "GET /snapshot",
                "uses the method \"GET\"; expected PUT /path (an HTTP request on the app) or exec:COMMAND (a shell "
                    + "command run beside the app)"
            ),
            (
                "TANDEM_SNAPSHOT_RESTORE", "POST /snapshot",
                "uses the method \"POST\"; expected PUT /path (an HTTP request on the app) or exec:COMMAND (a shell "
                    + "command run beside the app)"
            ),
            ("TANDEM_STATE_DIGEST", "PUT /digest", "uses the method \"PUT\"; " + expectedSave),
            (
                "TANDEM_STATE_DIGEST", "GET /digest#frag",
                "has spaces, control characters, # or non-ASCII characters in its path; expected a path of visible "
                    + "ASCII characters, percent-encoded where needed"
            ),
            (
                "TANDEM_STATE_DIGEST", "GET /d\u{e9}",
                "has spaces, control characters, # or non-ASCII characters in its path; expected a path of visible "
                    + "ASCII characters, percent-encoded where needed"
            ),
        ]
        for (name, value, tail) in cases {
            let line = errorLine(with([name: value]))
            XCTAssertEqual(line, "\(name)=\(ConfigError.show(value, isSecret: false)) \(tail)", "\(name)=\(value)")
        }
        let long = errorLine(with(["TANDEM_SNAPSHOT_SAVE": "GET /" + String(repeating: "a", count: 5000)]))
        XCTAssertTrue(long.hasSuffix("is too long; expected a path of at most 4096 bytes"), long)
    }

    func testAHookWrittenBackByItsDescriptionParsesToTheSameHook() throws {
        for (text, method) in [("GET /a?b=c%20d", "GET"), ("PUT /", "PUT"), ("exec:echo 'a b' | tr a b", "GET")] {
            let hook = try AppHook.parse(text, method: method)
            XCTAssertEqual(hook.description, text)
            XCTAssertEqual(try AppHook.parse(hook.description, method: method), hook)
        }
    }

    func testTheCadenceIsEntriesOrBytes() throws {
        XCTAssertEqual(try load(["TANDEM_SNAPSHOT_EVERY": "1"]).snapshotEvery, .entries(1))
        XCTAssertEqual(try load(["TANDEM_SNAPSHOT_EVERY": "250000"]).snapshotEvery, .entries(250_000))
        XCTAssertEqual(try load(["TANDEM_SNAPSHOT_EVERY": "64MiB"]).snapshotEvery, .bytes(64 << 20))
        XCTAssertEqual(try load(["TANDEM_SNAPSHOT_EVERY": "2kb"]).snapshotEvery, .bytes(2000))
        XCTAssertEqual(SnapshotCadence.bytes(64 << 20).description, "64MiB")
        XCTAssertEqual(SnapshotCadence.entries(7).description, "7")
        let range = "expected a number of entries from 1 to 1000000000, or a size from 1KiB to 1TiB such as 64MiB"
        XCTAssertEqual(
            errorLine(["TANDEM_SNAPSHOT_EVERY": "0"]), "TANDEM_SNAPSHOT_EVERY=\"0\" is out of range; \(range)")
        XCTAssertEqual(
            errorLine(["TANDEM_SNAPSHOT_EVERY": "512B"]), "TANDEM_SNAPSHOT_EVERY=\"512B\" is out of range; \(range)")
        XCTAssertEqual(
            errorLine(["TANDEM_SNAPSHOT_EVERY": "often"]),
            "TANDEM_SNAPSHOT_EVERY=\"often\" is neither a number of entries nor a size; \(range)")
        XCTAssertEqual(
            errorLine(["TANDEM_SNAPSHOT_EVERY": "-5"]),
            "TANDEM_SNAPSHOT_EVERY=\"-5\" is neither a number of entries nor a size; \(range)")
        XCTAssertTrue(errorLine(["TANDEM_SNAPSHOT_EVERY": "10s"]).contains("is neither a number of entries nor a size"))
    }

    func testLogRetentionTimeoutActionAndIdempotencyBound() throws {
        XCTAssertEqual(try load(["TANDEM_LOG_RETAIN": "0"]).logRetainEntries, 0, "zero: nothing kept behind")
        XCTAssertEqual(try load(["TANDEM_LOG_RETAIN": "100000000"]).logRetainEntries, 100_000_000)
        XCTAssertEqual(
            errorLine(["TANDEM_LOG_RETAIN": "100000001"]),
            "TANDEM_LOG_RETAIN=\"100000001\" is out of range; expected a whole number from 0 to 100000000")
        XCTAssertEqual(try load(["TANDEM_SNAPSHOT_TIMEOUT": "1h"]).snapshotTimeoutMs, 3_600_000)
        XCTAssertEqual(
            errorLine(["TANDEM_SNAPSHOT_TIMEOUT": "500ms"]),
            "TANDEM_SNAPSHOT_TIMEOUT=\"500ms\" is out of range; expected a duration from 1s to 24h")
        XCTAssertEqual(try load(["TANDEM_DIVERGENCE_ACTION": "STOP"]).divergenceAction, .stop)
        XCTAssertEqual(
            errorLine(["TANDEM_DIVERGENCE_ACTION": "repair", "TANDEM_SNAPSHOT_SAVE": "GET /snapshot"]),
            "TANDEM_DIVERGENCE_ACTION=\"repair\" needs TANDEM_SNAPSHOT_SAVE and TANDEM_SNAPSHOT_RESTORE (a replica "
                + "is repaired from the leader's snapshot, after its own state is saved aside); expected flag | stop, "
                + "or set both hooks")
        let repairing = try load([
            "TANDEM_DIVERGENCE_ACTION": "repair", "TANDEM_SNAPSHOT_SAVE": "GET /snapshot",
            "TANDEM_SNAPSHOT_RESTORE": "PUT /snapshot",
        ])
        XCTAssertEqual(repairing.divergenceAction, .repair)
        XCTAssertEqual(
            errorLine(["TANDEM_DIVERGENCE_ACTION": "fix"]),
            "TANDEM_DIVERGENCE_ACTION=\"fix\" is not one of the accepted words; expected flag | repair | stop")
        XCTAssertEqual(try load(["TANDEM_IDEMPOTENCY_MAX_BYTES": "1GiB"]).idempotencyMaxBytes, 1 << 30)
        XCTAssertEqual(
            errorLine(["TANDEM_IDEMPOTENCY_MAX_BYTES": "1KiB"]),
            "TANDEM_IDEMPOTENCY_MAX_BYTES=\"1KiB\" is out of range; expected a size from 64KiB to 64GiB")
    }

    func testHelpAndTheReferenceListTheNewVariablesWithTheirDefaults() {
        let help = TandemConfiguration.helpText()
        XCTAssertTrue(help.contains("\nSnapshots and divergence:\n"), help)
        for (name, shown) in [
            ("TANDEM_SNAPSHOT_SAVE", "none (no app snapshots)"), ("TANDEM_SNAPSHOT_RESTORE", "none"),
            ("TANDEM_SNAPSHOT_EVERY", "10000"), ("TANDEM_LOG_RETAIN", "5000"), ("TANDEM_SNAPSHOT_TIMEOUT", "10m"),
            ("TANDEM_STATE_DIGEST", "none (digests of the apply responses)"), ("TANDEM_DIVERGENCE_ACTION", "flag"),
            ("TANDEM_IDEMPOTENCY_MAX_BYTES", "64MiB"),
        ] {
            XCTAssertTrue(help.contains("  \(name)  (default: \(shown))"), name)
        }
        XCTAssertTrue(help.contains("Accepts: GET /path | exec:COMMAND."), help)
        XCTAssertTrue(help.contains("Accepts: PUT /path | exec:COMMAND."), help)
        let markdown = TandemConfiguration.markdownTable()
        XCTAssertTrue(markdown.contains("| `TANDEM_SNAPSHOT_RESTORE` | none | PUT /path \\| exec:COMMAND |"), markdown)
        XCTAssertTrue(
            markdown.contains(
                "| `TANDEM_SNAPSHOT_EVERY` | `10000` | whole number 1...1000000000 (entries), or size 1KiB...1TiB"),
            markdown)
    }
}
