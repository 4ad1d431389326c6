import Foundation
import Glibc
import XCTest

/// The real `tandem` binary at the edges of its numeric variables: every value validation accepts must start and
/// serve `GET /healthz`; every value it refuses must exit 2 with one line naming the variable, the value and what
/// is accepted. A signal (a trapped precondition) is never an acceptable outcome.
final class ConfigurationEdgeTests: ProcessTestCase {
    enum Outcome: CustomStringConvertible {
        /// Starts and answers `GET /healthz` with 200.
        case serves
        /// Exits 2 with one line naming this variable.
        case refused(naming: String)

        var description: String {
            switch self {
            case .serves: return "serves /healthz"
            case .refused(let name): return "exits 2 naming \(name)"
            }
        }
    }

    struct Case {
        let environment: [String: String]
        let outcome: Outcome
    }

    static func serves(_ environment: [String: String]) -> Case { Case(environment: environment, outcome: .serves) }

    static func refused(_ name: String, _ value: String, with companions: [String: String] = [:]) -> Case {
        Case(environment: companions.merging([name: value]) { _, new in new }, outcome: .refused(naming: name))
    }

    /// Failure detection and elections: the values that reach the consensus core's preconditions.
    static let electionCases: [Case] = [
        serves(["TANDEM_ELECTION_TIMEOUT": "500ms"]),  // Once a SIGILL: below the fixed 800 ms stickiness.
        serves(["TANDEM_ELECTION_TIMEOUT": "800ms"]),
        serves(["TANDEM_ELECTION_TIMEOUT": "801ms"]),
        serves(["TANDEM_ELECTION_TIMEOUT": "101ms"]),  // Just above the default heartbeat interval.
        serves(["TANDEM_ELECTION_TIMEOUT": "10ms", "TANDEM_HEARTBEAT_INTERVAL": "1ms"]),  // Smallest accepted.
        serves(["TANDEM_ELECTION_TIMEOUT": "10ms", "TANDEM_HEARTBEAT_INTERVAL": "9ms"]),
        serves(["TANDEM_ELECTION_TIMEOUT": "1m", "TANDEM_HEARTBEAT_INTERVAL": "10s"]),  // Largest accepted.
        serves(["TANDEM_ELECTION_TIMEOUT": "1m", "TANDEM_HEARTBEAT_INTERVAL": "1ms"]),
        serves(["TANDEM_HEARTBEAT_INTERVAL": "999ms"]),
        serves(["TANDEM_PHI_THRESHOLD": "0.1", "TANDEM_PHI_ACCEPTABLE_PAUSE": "0ms", "TANDEM_PHI_MIN_STDDEV": "1ms"]),
        serves(["TANDEM_PHI_THRESHOLD": "100", "TANDEM_PHI_ACCEPTABLE_PAUSE": "1m", "TANDEM_PHI_MIN_STDDEV": "1m"]),
        refused("TANDEM_ELECTION_TIMEOUT", "10ms"),  // Accepted alone, but not with the 100 ms heartbeat default.
        refused("TANDEM_ELECTION_TIMEOUT", "9ms", with: ["TANDEM_HEARTBEAT_INTERVAL": "1ms"]),
        refused("TANDEM_ELECTION_TIMEOUT", "60001ms"),
        refused("TANDEM_ELECTION_TIMEOUT", "0ms"),
        refused("TANDEM_ELECTION_TIMEOUT", "1000000h"),
        refused("TANDEM_ELECTION_TIMEOUT", "9223372036854775808ms"),  // 2^63
        refused("TANDEM_HEARTBEAT_INTERVAL", "1s"),  // Not below the 1 s election timeout default.
        refused("TANDEM_HEARTBEAT_INTERVAL", "0ms"),
        refused("TANDEM_HEARTBEAT_INTERVAL", "10001ms", with: ["TANDEM_ELECTION_TIMEOUT": "1m"]),
        refused("TANDEM_PHI_THRESHOLD", "0"),
        refused("TANDEM_PHI_THRESHOLD", "100.1"),
        refused("TANDEM_PHI_MIN_STDDEV", "0ms"),
        refused("TANDEM_PHI_ACCEPTABLE_PAUSE", "60001ms"),
    ]

    /// Sizes, counts and the other durations.
    static let limitCases: [Case] = [
        serves(["TANDEM_MAX_BODY": "1B"]),
        serves(["TANDEM_MAX_BODY": "1GiB", "TANDEM_MAX_UNCOMMITTED": "1GiB"]),
        serves(["TANDEM_MAX_UNCOMMITTED": "64GiB"]),
        serves(["TANDEM_MAX_PENDING_WRITES": "1", "TANDEM_MAX_CONNECTIONS": "1"]),
        serves(["TANDEM_MAX_PENDING_WRITES": "1000000", "TANDEM_MAX_CONNECTIONS": "1000000"]),
        serves(["TANDEM_IDEMPOTENCY_TTL": "720h", "TANDEM_IDLE_TIMEOUT": "24h", "TANDEM_UPSTREAM_TIMEOUT": "1h"]),
        serves(["TANDEM_WRITE_TIMEOUT": "10m", "TANDEM_QUEUE_TARGET": "99ms", "TANDEM_READ_WAIT_MAX": "10m"]),
        serves(["TANDEM_WRITE_TIMEOUT": "2ms", "TANDEM_QUEUE_TARGET": "1ms", "TANDEM_READ_WAIT_MAX": "0ms"]),
        serves(["TANDEM_HEADER_TIMEOUT": "1ms", "TANDEM_UPSTREAM_CONNECT_TIMEOUT": "1ms", "TANDEM_IDLE_TIMEOUT": "1ms"]
        ),
        serves(["TANDEM_HEADER_TIMEOUT": "10m", "TANDEM_UPSTREAM_CONNECT_TIMEOUT": "10m"]),
        refused("TANDEM_MAX_BODY", "0B"),
        refused("TANDEM_MAX_BODY", "1GiB"),  // Larger than the 64 MiB default of TANDEM_MAX_UNCOMMITTED.
        refused("TANDEM_MAX_BODY", "1073741825B", with: ["TANDEM_MAX_UNCOMMITTED": "2GiB"]),
        refused("TANDEM_MAX_UNCOMMITTED", "1023B"),
        refused("TANDEM_MAX_UNCOMMITTED", "9223372036854775808B"),
        refused("TANDEM_MAX_PENDING_WRITES", "0"),
        refused("TANDEM_MAX_PENDING_WRITES", "1000001"),
        refused("TANDEM_MAX_CONNECTIONS", "9223372036854775808"),
        refused("TANDEM_QUEUE_TARGET", "10s"),
        refused("TANDEM_QUEUE_TARGET", "100ms"),  // Once a SIGILL: CoDel's interval is a fixed 100 ms.
        refused("TANDEM_QUEUE_TARGET", "5ms", with: ["TANDEM_WRITE_TIMEOUT": "5ms"]),
        refused("TANDEM_IDEMPOTENCY_TTL", "721h"),
        refused("TANDEM_IDLE_TIMEOUT", "1000000h"),
        refused("TANDEM_READ_WAIT_MAX", "600001ms"),
    ]

    func testEveryElectionEdgeValueEitherServesOrExitsTwoNamingTheVariable() throws {
        for edge in Self.electionCases { try check(edge) }
    }

    func testEveryLimitEdgeValueEitherServesOrExitsTwoNamingTheVariable() throws {
        for edge in Self.limitCases { try check(edge) }
    }

    /// Starts the binary with `edge.environment` (a one-node cluster on free ports), checks the outcome, and stops
    /// the process by PID before returning; tear-down stops it too if an assertion throws first.
    func check(_ edge: Case, file: StaticString = #filePath, line: UInt = #line) throws {
        var environment = [
            "TANDEM_LISTEN": "127.0.0.1:0", "TANDEM_ADMIN_LISTEN": "127.0.0.1:0", "TANDEM_PEER_LISTEN": "127.0.0.1:0",
            "TANDEM_UPSTREAM": "127.0.0.1:\(freePort())", "TANDEM_LOG_FORMAT": "json", "TANDEM_NODE_ID": "n1",
            "TANDEM_DATA_DIR": NSTemporaryDirectory() + "tandem-edge-\(UUID().uuidString)",
        ]
        environment.merge(edge.environment) { _, new in new }
        let label = edge.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let process = try ManagedProcess(
            name: "tandem", executable: BuiltProducts.path("tandem"), environment: environment)
        track(process)
        defer {
            process.stop()
            try? FileManager.default.removeItem(atPath: environment["TANDEM_DATA_DIR"]!)
        }
        let listening = "\"msg\":\"listening\""
        _ = process.waitForOutput(containing: listening, timeoutSeconds: 20)
        if process.output.contains(listening) {
            let admin = try adminPort(in: process.output)
            let healthz = try? httpRequest(port: admin, method: "GET", path: "/healthz", timeoutSeconds: 5)
            guard case .serves = edge.outcome else {
                XCTFail("\(label): expected to \(edge.outcome), but it started", file: file, line: line)
                return
            }
            XCTAssertEqual(healthz?.status, 200, "\(label): /healthz\n\(process.output)", file: file, line: line)
            XCTAssertTrue(
                process.process.isRunning, "\(label): died after serving\n\(process.output)", file: file, line: line)
            return
        }
        let status = process.waitForExit(timeoutSeconds: 10)
        XCTAssertNotNil(status, "\(label): neither listened nor exited\n\(process.output)", file: file, line: line)
        guard status != nil else { return }
        XCTAssertEqual(
            process.process.terminationReason, .exit, "\(label): killed by signal \(status!)\n\(process.output)",
            file: file, line: line)
        XCTAssertEqual(status, 2, "\(label): exit status\n\(process.output)", file: file, line: line)
        let lines = process.output.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "\(label): one line\n\(process.output)", file: file, line: line)
        guard case .refused(let name) = edge.outcome else {
            XCTFail("\(label): expected to serve, but it was refused: \(process.output)", file: file, line: line)
            return
        }
        // The variable at fault comes first; a conflict names the other variable first and this one, with its
        // value, in the same line.
        let value = edge.environment[name]!
        let shown = "\(name)=\"\(value.prefix(40))"
        XCTAssertTrue(
            process.output.hasPrefix("tandem: TANDEM_"), "\(label): \(process.output)", file: file, line: line)
        XCTAssertTrue(
            process.output.contains(shown), "\(label): no \(shown) in \(process.output)", file: file, line: line)
        XCTAssertTrue(process.output.contains("; expected "), "\(label): \(process.output)", file: file, line: line)
    }

    func adminPort(in output: String) throws -> UInt16 {
        let line = try XCTUnwrap(output.split(separator: "\n").first { $0.contains("\"msg\":\"listening\"") })
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let address = try XCTUnwrap(object["admin"] as? String)
        return try XCTUnwrap(UInt16(address.split(separator: ":").last!))
    }
}
