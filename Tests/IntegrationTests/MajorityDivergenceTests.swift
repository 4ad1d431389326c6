import Foundation
import Glibc
import XCTest

/// Divergence is judged by the majority of the cluster, each node judging only itself: a wrong leader is flagged,
/// and the correct followers are not turned against by it.
final class MajorityDivergenceTests: ClusterTestCase {
    /// One flag file per replica, in start order: while it exists, that replica's app answers at random.
    private var flagFiles: [String] = []

    func testTheLeadersNonDeterministicAppIsFlaggedAndTheCorrectFollowersAreNot() throws {
        appLauncher = { try self.startSwitchableApp() }
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let position = try XCTUnwrap(replicas.firstIndex { $0 === leader })
        // From now on only the leader's app goes wrong (as one that applies a redelivered entry twice would).
        XCTAssertTrue(FileManager.default.createFile(atPath: flagFiles[position], contents: Data()))
        for round in 0..<5 {
            let response = try httpRequest(port: leader.clientPort, method: "POST", path: "/anything", body: "\(round)")
            XCTAssertEqual(response.status, 200, response.bodyText)
        }
        XCTAssertTrue(
            waitUntil(seconds: 10) { (self.status(leader)?["diverged"] as? Bool) == true },
            "the leader, whose app answered differently from both others, must judge itself diverged: "
                + leader.tandem!.process.output)
        let readiness = try httpRequest(port: leader.adminPort, method: "GET", path: "/readyz")
        XCTAssertEqual(readiness.status, 503)
        XCTAssertTrue(readiness.bodyText.contains("diverged"), readiness.bodyText)
        let metrics = try httpRequest(port: leader.adminPort, method: "GET", path: "/metrics").bodyText
        XCTAssertTrue(metrics.contains("tandem_diverged 1"), metrics)
        XCTAssertTrue(leader.tandem!.process.output.contains("DIVERGED"))

        usleep(2_500_000)  // more rounds of reports: a verdict against a follower would have come by now
        for follower in replicas where follower !== leader {
            XCTAssertEqual(
                status(follower)?["diverged"] as? Bool, false, "\(follower.id) agrees with the majority")
            XCTAssertFalse(follower.tandem!.process.output.contains("DIVERGED"), follower.tandem!.process.output)
            let followerMetrics = try httpRequest(port: follower.adminPort, method: "GET", path: "/metrics").bodyText
            XCTAssertTrue(followerMetrics.contains("tandem_diverged 0"), followerMetrics)
            XCTAssertFalse(
                followerMetrics.contains("tandem_digest_comparisons_total 0\n"),
                "the follower must actually have judged itself: \(followerMetrics)")
        }
    }

    /// An HTTP app that answers deterministically (a hash of the request) until its flag file exists, then at
    /// random.
    private func startSwitchableApp() throws -> (ManagedProcess, UInt16) {
        let flag = NSTemporaryDirectory() + "tandem-random-\(UUID().uuidString)"
        flagFiles.append(flag)
        return try startPythonApp(
            name: "switchable",
            source: """
                import hashlib, http.server, os, random, sys
                FLAG = sys.argv[1]
                class Handler(http.server.BaseHTTPRequestHandler):
                    protocol_version = "HTTP/1.1"
                    def answer(self):
                        length = int(self.headers.get("Content-Length") or 0)
                        data = self.rfile.read(length)
                        if os.path.exists(FLAG):
                            body = str(random.random()).encode()
                        else:
                            body = hashlib.sha256(self.command.encode() + self.path.encode() + data).hexdigest().encode()
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                    do_GET = do_POST = do_PUT = do_DELETE = answer
                    def log_message(self, *args):
                        pass
                server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
                print("switchable app listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
                server.serve_forever()
                """, arguments: [flag])
    }
}
