import Foundation
import Glibc
import XCTest

/// Operating a cluster: idempotent retries, planned handoffs, the status command, divergence, and the WAL's
/// recovery rules, all with real processes.
final class OperationsTests: ClusterTestCase {
    func testIdempotencyKeyReplaysTheFirstResponseOnAnyNodeAndRefusesADifferentRequest() throws {
        try startCluster()
        let first = try httpRequest(
            port: replicas[0].clientPort, method: "POST", path: "/counters/pay/incr",
            headers: [("Idempotency-Key", "order-17")])
        XCTAssertEqual(first.bodyText, "{\"name\":\"pay\",\"value\":1}")
        XCTAssertNil(first.headers.first(name: "Tandem-Replayed"))
        let retry = try httpRequest(
            port: replicas[2].clientPort, method: "POST", path: "/counters/pay/incr",
            headers: [("Idempotency-Key", "order-17")])
        XCTAssertEqual(retry.status, 200)
        XCTAssertEqual(retry.bodyText, first.bodyText, "the retry gets the first response, not a second increment")
        XCTAssertEqual(retry.headers.first(name: "Tandem-Replayed"), "true")
        let other = try httpRequest(
            port: replicas[1].clientPort, method: "POST", path: "/counters/other/incr",
            headers: [("Idempotency-Key", "order-17")])
        XCTAssertEqual(other.status, 422)
        XCTAssertTrue(other.bodyText.contains("idempotency_key_reused"), other.bodyText)
        let dump = try XCTUnwrap(waitForConvergence())
        XCTAssertTrue(dump.contains("\"pay\":1"), dump)
        XCTAssertFalse(dump.contains("\"other\""), dump)
    }

    /// A member is added only with an address every node can dial: a host that is neither a DNS name nor an IP
    /// literal, or port 0, is refused before anything reaches the log.
    func testAMemberWithAnAddressNobodyCouldDialIsRefused() throws {
        try startCluster(size: 1)
        let node = try XCTUnwrap(waitForLeader())
        for address in ["bad host:7400", "999.1.1.1:7400", "h:0", "[zz]:7400"] {
            let answer = try httpRequest(
                port: node.adminPort, method: "POST", path: "/admin/members",
                body: "{\"id\":\"n9\",\"address\":\"\(address)\"}", timeoutSeconds: 20)
            XCTAssertEqual(answer.status, 400, "\(address): \(answer.bodyText)")
            XCTAssertTrue(answer.bodyText.contains("invalid_address"), "\(address): \(answer.bodyText)")
        }
        let members = try httpRequest(port: node.adminPort, method: "GET", path: "/members").bodyText
        XCTAssertFalse(members.contains("n9"), members)
        let good = try httpRequest(
            port: node.adminPort, method: "POST", path: "/admin/members",
            body: "{\"id\":\"n9\",\"address\":\"127.0.0.1:1\"}", timeoutSeconds: 20)
        XCTAssertEqual(
            good.status, 200, "a well-formed address is taken (the learner need not be up): \(good.bodyText)")
    }

    func testTransferLeadershipEndpointHandsOverAndRequiresTheAdminToken() throws {
        extraEnvironment["TANDEM_ADMIN_TOKEN"] = "operator-token"
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let target = try XCTUnwrap(replicas.first { $0 !== leader })
        let denied = try httpRequest(
            port: leader.adminPort, method: "POST", path: "/admin/transfer-leadership?to=\(target.id)")
        XCTAssertEqual(denied.status, 401)
        let accepted = try httpRequest(
            port: leader.adminPort, method: "POST", path: "/admin/transfer-leadership?to=\(target.id)",
            headers: [("Authorization", "Bearer operator-token")])
        XCTAssertEqual(accepted.status, 200, accepted.bodyText)
        XCTAssertEqual(waitForLeader(excluding: leader.id)?.id, target.id)
    }

    func testSigtermOnTheLeaderHandsLeadershipOffBeforeExiting() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let write = try httpRequest(port: leader.clientPort, method: "PUT", path: "/kv/before", body: "1")
        XCTAssertEqual(write.status, 200)
        let signalled = Date()
        leader.tandem!.process.signal(SIGTERM)
        let others = replicas.filter { $0 !== leader }
        let next = try XCTUnwrap(waitForLeader(among: others, excluding: leader.id, seconds: 10))
        let handoffSeconds = Date().timeIntervalSince(signalled)
        XCTAssertEqual(leader.tandem!.process.waitForExit(), 0, leader.tandem!.process.output)
        XCTAssertTrue(leader.tandem!.process.output.contains("handing leadership over"), leader.tandem!.process.output)
        // A handoff does not wait for an election timeout (1 s, randomized up to 2 s) to pass.
        XCTAssertLessThan(handoffSeconds, 2.0, "handoff took \(handoffSeconds) s")
        XCTAssertEqual(try httpRequest(port: next.clientPort, method: "PUT", path: "/kv/after", body: "2").status, 200)
    }

    func testStatusCommandPrintsTheClusterAsATable() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let command = try ManagedProcess(
            name: "status", executable: BuiltProducts.path("tandem"),
            arguments: ["status", "--admin", "127.0.0.1:\(leader.adminPort)"])
        track(command)
        XCTAssertEqual(command.waitForExit(), 0)
        XCTAssertTrue(command.output.contains("role leader"), command.output)
        XCTAssertTrue(command.output.contains("PEER"), command.output)
        for replica in replicas where replica !== leader {
            XCTAssertTrue(command.output.contains("\(replica.id)  "), command.output)
        }
    }

    func testAnAppNonDeterministicOnEveryReplicaIsReportedAsNoMajorityAndNeverIgnored() throws {
        // Three different answers: no majority holds any of them, so no replica can be named the wrong one (the
        // odd one out of a majority is flagged diverged: MajorityDivergenceTests).
        appLauncher = { try self.startNonDeterministicApp() }
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        for round in 0..<5 {
            _ = try httpRequest(port: leader.clientPort, method: "POST", path: "/anything", body: "\(round)")
        }
        XCTAssertTrue(
            waitUntil(seconds: 10) { self.replicas.allSatisfy { $0.tandem!.process.output.contains("NO MAJORITY") } },
            "every replica must say so loudly")
        for replica in replicas {
            let metrics = try httpRequest(port: replica.adminPort, method: "GET", path: "/metrics").bodyText
            XCTAssertFalse(metrics.contains("tandem_digest_no_majority_total 0\n"), metrics)
            XCTAssertEqual(status(replica)?["diverged"] as? Bool, false, "a node is flagged only by a majority")
        }
    }

    func testANodeThatResumedMidBlockLeadsWithoutMakingOthersLookDiverged() throws {
        // A durable app: only the sidecar crashes; on restart it resumes after its recorded applied index, so its
        // digest of the current block is partial. As leader it must not report that partial digest.
        extraEnvironment["TANDEM_APP_STATE"] = "durable"
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        for round in 0..<30 {
            XCTAssertEqual(
                try httpRequest(port: leader.clientPort, method: "PUT", path: "/kv/a\(round)", body: "x").status, 200)
        }
        let follower = try XCTUnwrap(replicas.first { $0 !== leader })
        kill(follower.tandem!.process.pid, SIGKILL)
        _ = follower.tandem!.process.waitForExit()
        for round in 30..<60 {
            XCTAssertEqual(
                try httpRequest(port: leader.clientPort, method: "PUT", path: "/kv/a\(round)", body: "x").status, 200)
        }
        var env = extraEnvironment
        env["TANDEM_NODE_ID"] = follower.id
        env["TANDEM_PEERS"] = peersVariable
        env["TANDEM_PEER_LISTEN"] = "127.0.0.1:\(follower.peerPort)"
        env["TANDEM_DATA_DIR"] = follower.dataDir
        env["TANDEM_LISTEN"] = "127.0.0.1:\(follower.fixedClientPort)"
        env["TANDEM_ADMIN_LISTEN"] = "127.0.0.1:\(follower.fixedAdminPort)"
        follower.tandem = try startTandem(upstreamPort: follower.appPort, environment: env)
        let handoff = try httpRequest(
            port: leader.adminPort, method: "POST", path: "/admin/transfer-leadership?to=\(follower.id)")
        XCTAssertEqual(handoff.status, 200, handoff.bodyText)
        XCTAssertEqual(waitForLeader(excluding: leader.id)?.id, follower.id)
        for round in 60..<70 {
            XCTAssertEqual(
                try httpRequest(port: follower.clientPort, method: "PUT", path: "/kv/a\(round)", body: "x").status, 200)
        }
        usleep(2_500_000)  // two digest reports from the new leader
        for replica in replicas {
            XCTAssertEqual(status(replica)?["diverged"] as? Bool, false, "\(replica.id) must not be flagged")
        }
        XCTAssertNotNil(waitForConvergence())
    }

    func testDeterministicReplicasAreNeverMarkedDiverged() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        for round in 0..<20 {
            _ = try httpRequest(port: leader.clientPort, method: "POST", path: "/kv/d/append", body: "\(round)")
        }
        usleep(2_500_000)  // at least two digest reports
        for replica in replicas {
            XCTAssertEqual(status(replica)?["diverged"] as? Bool, false)
        }
        let metrics = try httpRequest(
            port: replicas.first { $0 !== leader }!.adminPort, method: "GET", path: "/metrics"
        ).bodyText
        XCTAssertFalse(
            metrics.contains("tandem_digest_comparisons_total 0\n"), "comparisons must actually happen: \(metrics)")
    }

    func testARestartedInMemoryAppGetsTheLogReplayedBeforeItsNodeServesAgain() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        for round in 0..<10 {
            XCTAssertEqual(
                try httpRequest(port: leader.clientPort, method: "POST", path: "/counters/r/incr").status, 200)
            XCTAssertEqual(
                try httpRequest(port: leader.clientPort, method: "POST", path: "/kv/r/append", body: "\(round),")
                    .status, 200)
        }
        let follower = try XCTUnwrap(replicas.first { $0 !== leader })
        let before = try XCTUnwrap(waitForConvergence())
        // Only the app dies; its tandem keeps running and sees it refuse connections, then come back empty.
        kill(follower.app!.pid, SIGKILL)
        _ = follower.app!.waitForExit()
        XCTAssertTrue(
            waitUntil { (try? httpRequest(port: follower.adminPort, method: "GET", path: "/readyz").status) == 503 })
        let (app, _) = try startApp(port: follower.appPort)
        follower.app = app
        XCTAssertEqual(
            waitForConvergence(), before, "the replay must rebuild exactly the same state, nothing applied twice")
        XCTAssertTrue(follower.tandem!.process.output.contains("replaying the log"), follower.tandem!.process.output)
        XCTAssertTrue(
            waitUntil { (try? httpRequest(port: follower.adminPort, method: "GET", path: "/readyz").status) == 200 })
        XCTAssertEqual(
            try httpRequest(port: follower.clientPort, method: "GET", path: "/counters/r").bodyText,
            "{\"name\":\"r\",\"value\":10}")
    }

    func testATornWALTailIsTruncatedWithALogLineAndTheNodeCatchesUp() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        for round in 0..<10 {
            XCTAssertEqual(
                try httpRequest(port: leader.clientPort, method: "PUT", path: "/kv/t\(round)", body: "x").status, 200)
        }
        let follower = try XCTUnwrap(replicas.first { $0 !== leader })
        crash(follower)
        let segment = try XCTUnwrap(lastSegment(in: follower.dataDir))
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: segment))
        handle.seekToEndOfFile()
        handle.write(Data([0x40, 0x00, 0x00, 0x00, 0x12, 0x34]))  // half a record header: a torn write
        handle.closeFile()
        for round in 10..<15 {
            XCTAssertEqual(
                try httpRequest(port: leader.clientPort, method: "PUT", path: "/kv/t\(round)", body: "x").status, 200)
        }
        try start(follower)
        XCTAssertTrue(waitUntil { follower.tandem!.process.output.contains("torn") }, follower.tandem!.process.output)
        let dump = try XCTUnwrap(waitForConvergence())
        XCTAssertTrue(dump.contains("\"t14\""), dump)
    }

    func testAWALCorruptedMidFileStopsTheNodeNamingFileAndOffset() throws {
        let root = NSTemporaryDirectory() + "tandem-corrupt-\(UUID().uuidString)"
        let (_, appPort) = try startApp()
        let dataDir = root + "/n1"
        let env = ["TANDEM_DATA_DIR": dataDir]
        let first = try startTandem(upstreamPort: appPort, environment: env)
        for round in 0..<20 {
            XCTAssertEqual(
                try httpRequest(
                    port: first.clientPort, method: "PUT", path: "/kv/c\(round)",
                    body: String(repeating: "v", count: 200)
                ).status, 200)
        }
        first.process.signal(SIGTERM)
        XCTAssertEqual(first.process.waitForExit(), 0)
        let segment = try XCTUnwrap(lastSegment(in: dataDir))
        var bytes = try Data(contentsOf: URL(fileURLWithPath: segment))
        XCTAssertGreaterThan(bytes.count, 2000)
        bytes[bytes.count / 3] ^= 0xFF  // damage inside an early record, with valid records after it
        try bytes.write(to: URL(fileURLWithPath: segment))
        let second = try ManagedProcess(
            name: "tandem", executable: BuiltProducts.path("tandem"),
            environment: env.merging([
                "TANDEM_LISTEN": "127.0.0.1:0", "TANDEM_ADMIN_LISTEN": "127.0.0.1:0",
                "TANDEM_PEER_LISTEN": "127.0.0.1:0",
                "TANDEM_UPSTREAM": "127.0.0.1:\(appPort)", "TANDEM_NODE_ID": "n1", "TANDEM_LOG_FORMAT": "json",
            ]) { _, new in new })
        track(second)
        let status = try XCTUnwrap(second.waitForExit(), "a corrupted log must stop the node")
        XCTAssertNotEqual(status, 0)
        let segmentName = URL(fileURLWithPath: segment).lastPathComponent
        XCTAssertTrue(second.output.contains(segmentName), second.output)
        XCTAssertTrue(second.output.contains("offset"), second.output)
    }

    private func lastSegment(in directory: String) -> String? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix("wal-") && $0.hasSuffix(".log") }.sorted().last.map { directory + "/" + $0 }
    }

    /// An HTTP app that answers every request with a random body: deliberately not deterministic.
    private func startNonDeterministicApp() throws -> (ManagedProcess, UInt16) {
        return try startPythonApp(
            name: "nondeterministic",
            source: """
                import http.server, random
                class Handler(http.server.BaseHTTPRequestHandler):
                    protocol_version = "HTTP/1.1"
                    def answer(self):
                        length = int(self.headers.get("Content-Length") or 0)
                        self.rfile.read(length)
                        body = str(random.random()).encode()
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                    do_GET = do_POST = do_PUT = do_DELETE = answer
                    def log_message(self, *args):
                        pass
                server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
                print("example-kv listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
                server.serve_forever()
                """)
    }
}
