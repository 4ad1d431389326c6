import Foundation
import XCTest

/// The outside of the executable: help text and configuration errors.
final class CommandLineTests: ProcessTestCase {
    func testHelpListsEveryVariableOfTheProductContract() throws {
        let help = try ManagedProcess(name: "help", executable: BuiltProducts.path("tandem"), arguments: ["--help"])
        track(help)
        XCTAssertEqual(help.waitForExit(), 0)
        for name in [
            "TANDEM_LISTEN", "TANDEM_UPSTREAM", "TANDEM_PEER_LISTEN", "TANDEM_ADMIN_LISTEN", "TANDEM_PROTOCOL",
            "TANDEM_NODE_ID", "TANDEM_PEERS", "TANDEM_DATA_DIR", "TANDEM_HEARTBEAT_INTERVAL", "TANDEM_PHI_THRESHOLD",
            "TANDEM_PHI_MIN_STDDEV", "TANDEM_PHI_ACCEPTABLE_PAUSE", "TANDEM_ELECTION_TIMEOUT", "TANDEM_WRITE_METHODS",
            "TANDEM_READ_ROUTES", "TANDEM_WRITE_ROUTES", "TANDEM_BYPASS_ROUTES", "TANDEM_WRITE_TIMEOUT",
            "TANDEM_READ_CONSISTENCY", "TANDEM_READ_WAIT_MAX", "TANDEM_IDEMPOTENCY_TTL", "TANDEM_MAX_BODY",
            "TANDEM_APP_STATE", "TANDEM_MAX_PENDING_WRITES", "TANDEM_MAX_UNCOMMITTED", "TANDEM_QUEUE_TARGET",
            "TANDEM_MAX_CONNECTIONS", "TANDEM_HEADER_TIMEOUT", "TANDEM_IDLE_TIMEOUT", "TANDEM_RATE_LIMIT",
            "TANDEM_RATE_LIMIT_KEY", "TANDEM_RATE_LIMIT_GLOBAL", "TANDEM_TLS_CERT", "TANDEM_TLS_KEY", "TANDEM_TLS_CA",
            "TANDEM_CLUSTER_SECRET", "TANDEM_ADMIN_TOKEN", "TANDEM_LOG_LEVEL", "TANDEM_LOG_FORMAT",
            "TANDEM_INSECURE_PEERS", "TANDEM_RATE_LIMIT_KEYS",
        ] {
            XCTAssertTrue(help.output.contains(name), "--help does not list \(name)")
        }
    }

    func testBadValueExitsTwoWithOneLineNamingTheVariable() throws {
        let bad = try ManagedProcess(
            name: "bad", executable: BuiltProducts.path("tandem"),
            environment: ["TANDEM_HEARTBEAT_INTERVAL": "fast", "TANDEM_LISTEN": "127.0.0.1:0"])
        track(bad)
        XCTAssertEqual(bad.waitForExit(), 2)
        let lines = bad.output.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, bad.output)
        XCTAssertTrue(bad.output.contains("TANDEM_HEARTBEAT_INTERVAL"), bad.output)
        XCTAssertTrue(bad.output.contains("fast"), bad.output)
    }

    func testTheReadmeConfigurationReferenceIsTheOneTheParserUses() throws {
        let reference = try ManagedProcess(
            name: "reference", executable: BuiltProducts.path("tandem"), arguments: ["config-reference"])
        track(reference)
        XCTAssertEqual(reference.waitForExit(), 0)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let begin = try XCTUnwrap(readme.range(of: "<!-- BEGIN CONFIG REFERENCE"))
        let afterMarker = try XCTUnwrap(readme.range(of: "-->\n", range: begin.upperBound..<readme.endIndex))
        let end = try XCTUnwrap(readme.range(of: "<!-- END CONFIG REFERENCE -->"))
        XCTAssertEqual(
            String(readme[afterMarker.upperBound..<end.lowerBound]), reference.output,
            "regenerate with: tandem config-reference")
    }

    func testUnknownVariableIsRefusedAsATypo() throws {
        let typo = try ManagedProcess(
            name: "typo", executable: BuiltProducts.path("tandem"), environment: ["TANDEM_LISTN": "127.0.0.1:0"])
        track(typo)
        XCTAssertEqual(typo.waitForExit(), 2)
        XCTAssertTrue(typo.output.contains("TANDEM_LISTN"), typo.output)
    }

    func testPeersWithoutAuthenticationExitTwoUnlessInsecurePeersIsSet() throws {
        let environment = [
            "TANDEM_NODE_ID": "n1", "TANDEM_PEERS": "n1=127.0.0.1:\(freePort()),n2=127.0.0.1:\(freePort())",
            "TANDEM_LISTEN": "127.0.0.1:0", "TANDEM_ADMIN_LISTEN": "127.0.0.1:0", "TANDEM_PEER_LISTEN": "127.0.0.1:0",
            "TANDEM_DATA_DIR": NSTemporaryDirectory() + "tandem-insecure-\(UUID().uuidString)",
            "TANDEM_LOG_FORMAT": "json",
        ]
        let refused = try ManagedProcess(
            name: "open", executable: BuiltProducts.path("tandem"), environment: environment)
        track(refused)
        XCTAssertEqual(refused.waitForExit(), 2, refused.output)
        XCTAssertEqual(refused.output.split(separator: "\n").count, 1, refused.output)
        for name in ["TANDEM_CLUSTER_SECRET", "TANDEM_TLS_CERT", "TANDEM_INSECURE_PEERS"] {
            XCTAssertTrue(refused.output.contains(name), refused.output)
        }
        let insecure = try ManagedProcess(
            name: "insecure", executable: BuiltProducts.path("tandem"),
            environment: environment.merging(["TANDEM_INSECURE_PEERS": "true"]) { _, new in new })
        track(insecure)
        let output = try XCTUnwrap(insecure.waitForOutput(containing: "\"msg\":\"listening\""), insecure.output)
        XCTAssertTrue(output.contains("INSECURE"), output)
    }
}
