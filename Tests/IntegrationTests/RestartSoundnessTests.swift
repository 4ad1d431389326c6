import Foundation
import Glibc
import XCTest

/// Restarts of one half of a pod, under load, with real processes: a graceful stop leaves nothing to redeliver,
/// a crash redelivers a bounded number of entries and marks each one, and idempotency keys outlive a restart.
final class RestartSoundnessTests: ClusterTestCase {
    override func setUp() {
        super.setUp()
        extraEnvironment["TANDEM_APP_STATE"] = "durable"
    }

    func testRollingSigtermRestartsUnderLoadDeliverEveryEntryExactlyOnce() throws {
        appLauncher = { try self.startIndexRecordingApp() }
        try startCluster()
        let load = WriteLoad(writers: 4, ports: { self.replicas.map(\.fixedClientPort) })
        load.start()
        defer { load.stop() }
        usleep(500_000)
        for replica in replicas {
            replica.tandem!.process.signal(SIGTERM)
            XCTAssertEqual(replica.tandem!.process.waitForExit(), 0, replica.tandem!.process.output)
            XCTAssertTrue(
                replica.tandem!.process.output.contains("stopped gracefully"), replica.tandem!.process.output)
            try startTandemOnly(replica)
            XCTAssertNotNil(
                waitForLeader(seconds: 20),
                "the cluster did not settle after restarting \(replica.id): \(replicas.map(readiness))"
                    + String(replica.tandem!.process.output.suffix(4000)))
            usleep(300_000)
        }
        usleep(500_000)
        load.stop()
        XCTAssertGreaterThan(load.acknowledged, 20, "the load made progress through the restarts")
        XCTAssertEqual(load.failures, [], "every logical write was acknowledged in the end")
        let stats = try XCTUnwrap(waitForEqualCounters())
        for (replica, stat) in zip(replicas, stats) {
            XCTAssertEqual(stat["duplicates"], 0, "\(replica.id) was handed an entry twice: \(stat)")
            XCTAssertEqual(stat["counter"], load.acknowledged, "\(replica.id): one increment per acknowledged write")
        }
        for replica in replicas {
            XCTAssertEqual(status(replica)?["diverged"] as? Bool, false, "\(replica.id) is flagged diverged")
        }
    }

    func testAfterASidecarCrashEveryEntryDeliveredAgainIsMarkedAndTheirNumberIsBounded() throws {
        appLauncher = { try self.startIndexRecordingApp() }
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let victim = try XCTUnwrap(replicas.first { $0 !== leader })
        let load = WriteLoad(writers: 4, ports: { [leader.fixedClientPort] })
        load.start()
        defer { load.stop() }
        for round in 0..<3 {
            usleep(useconds_t(400_000 + round * 150_000))
            kill(victim.pid, SIGKILL)  // The sidecar dies mid-apply; its app keeps running.
            _ = victim.tandem!.process.waitForExit()
            try startTandemOnly(victim)
        }
        usleep(800_000)
        load.stop()
        XCTAssertEqual(load.failures, [])
        XCTAssertNotNil(waitForLeader(seconds: 20))
        _ = waitUntil(seconds: 20) {
            let stats = self.replicas.compactMap { try? self.appStats($0) }
            return stats.count == 3 && Set(stats.map { $0["distinct"] ?? -1 }).count == 1
        }
        let stats = try replicas.map { try appStats($0) }
        XCTAssertEqual(Set(stats.map { $0["distinct"] ?? -1 }).count, 1, "every replica got every entry: \(stats)")
        for (replica, stat) in zip(replicas, stats) {
            XCTAssertEqual(stat["unmarkedDuplicates"], 0, "\(replica.id) got an entry twice without the mark: \(stat)")
            if replica !== victim { XCTAssertEqual(stat["duplicates"], 0, "\(replica.id) never crashed: \(stat)") }
        }
        let victimStats = try appStats(victim)
        XCTAssertLessThanOrEqual(victimStats["duplicates"] ?? .max, 3 * 256, "redelivery is bounded per crash")
    }

    func testAnIdempotencyKeyIsRememberedAcrossARestartOfAFollowersSidecar() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let follower = try XCTUnwrap(replicas.first { $0 !== leader })
        let first = try httpRequest(
            port: leader.clientPort, method: "POST", path: "/counters/k/incr", headers: [("Idempotency-Key", "K1")])
        XCTAssertEqual(first.bodyText, "{\"name\":\"k\",\"value\":1}")
        XCTAssertNotNil(waitForConvergence())
        follower.tandem!.process.signal(SIGTERM)
        XCTAssertEqual(follower.tandem!.process.waitForExit(), 0)
        try startTandemOnly(follower, waitUntilReady: true)
        let retry = try httpRequest(
            port: follower.clientPort, method: "POST", path: "/counters/k/incr", headers: [("Idempotency-Key", "K1")])
        XCTAssertEqual(retry.status, 200, retry.bodyText)
        XCTAssertEqual(retry.headers.first(name: "Tandem-Replayed"), "true")
        XCTAssertEqual(retry.bodyText, first.bodyText, "the first response, replayed")
        let dump = try XCTUnwrap(waitForConvergence())
        XCTAssertTrue(dump.contains("\"k\":1"), dump)

        // The same after a crash of the follower's sidecar: the decision survives (read again from the log),
        // though the stored response may not.
        kill(follower.pid, SIGKILL)
        _ = follower.tandem!.process.waitForExit()
        try startTandemOnly(follower, waitUntilReady: true)
        let again = try httpRequest(
            port: follower.clientPort, method: "POST", path: "/counters/k/incr", headers: [("Idempotency-Key", "K1")])
        XCTAssertEqual(again.headers.first(name: "Tandem-Replayed"), "true", again.bodyText)
        XCTAssertTrue([200, 409].contains(again.status), again.bodyText)
        let after = try XCTUnwrap(waitForConvergence())
        XCTAssertTrue(after.contains("\"k\":1"), after)
    }

    func testAnOverlongIdempotencyKeyIsRefusedBeforeTheLog() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let response = try httpRequest(
            port: leader.clientPort, method: "POST", path: "/counters/k/incr",
            headers: [("Idempotency-Key", String(repeating: "k", count: 257))])
        XCTAssertEqual(response.status, 400, response.bodyText)
        XCTAssertTrue(response.bodyText.contains("Idempotency-Key"), response.bodyText)
        XCTAssertEqual(
            try httpRequest(port: leader.appPort, method: "GET", path: "/counters/k").bodyText,
            "{\"name\":\"k\",\"value\":0}")
    }

    func testAWriteLargerThanSixtyFourMebibytesIsLoggedAndAppliedWhenTheBodyLimitAllowsIt() throws {
        extraEnvironment["TANDEM_MAX_BODY"] = "96MiB"
        extraEnvironment["TANDEM_MAX_UNCOMMITTED"] = "200MiB"
        extraEnvironment["TANDEM_WRITE_TIMEOUT"] = "60s"  // A debug build takes seconds to move 70 MiB...
        extraEnvironment["TANDEM_ELECTION_TIMEOUT"] = "10s"  // ...and its busy loop must not look like a dead leader.
        extraEnvironment["TANDEM_PHI_ACCEPTABLE_PAUSE"] = "8s"
        // The first election waits out a randomized timeout of up to twice the 10 s, plus a pre-vote round.
        leaderWaitSeconds = 45
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader(seconds: 45))
        let body = String(repeating: "x", count: 70 << 20)
        let response = try httpRequest(
            port: leader.clientPort, method: "PUT", path: "/kv/big", body: body, timeoutSeconds: 60)
        // example-kv takes at most 16 MiB: its 413 is the app's deterministic answer to the applied entry.
        XCTAssertEqual(response.status, 413, response.bodyText)
        XCTAssertNotNil(response.headers.first(name: "Tandem-Position"), "answered after the entry was applied")
        let small = try httpRequest(port: leader.clientPort, method: "PUT", path: "/kv/after", body: "1")
        XCTAssertEqual(small.status, 200, small.bodyText)
        for replica in replicas {
            XCTAssertTrue(
                replica.tandem!.process.process.isRunning,
                "\(replica.id) exited: \(replica.tandem!.process.output.suffix(2000))")
        }
        XCTAssertNotNil(waitForConvergence())
    }

    // MARK: helpers

    private func readiness(_ replica: Replica) -> String {
        let answer = try? httpRequest(port: replica.fixedAdminPort, method: "GET", path: "/readyz")
        return "\(replica.id): \(answer.map { "\($0.status) \($0.bodyText)" } ?? "no answer")"
    }

    private func appStats(_ replica: Replica) throws -> [String: Int] {
        let response = try httpRequest(port: replica.appPort, method: "GET", path: "/stats")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Int])
    }

    private func waitForEqualCounters(seconds: Double = 20) -> [[String: Int]]? {
        var result: [[String: Int]]?
        _ = waitUntil(seconds: seconds) {
            let stats = self.replicas.compactMap { try? self.appStats($0) }
            guard stats.count == self.replicas.count, Set(stats.map { $0["counter"] ?? -1 }).count == 1 else {
                return false
            }
            result = stats
            return true
        }
        return result
    }

    /// A naive app (it applies whatever it is sent) that records every `Tandem-Index` it receives, so a test can
    /// count entries delivered twice and whether each repeat carried `Tandem-Redelivery: true`.
    private func startIndexRecordingApp() throws -> (ManagedProcess, UInt16) {
        return try startPythonApp(
            name: "index-recorder",
            source: """
                import http.server, json, threading
                lock = threading.Lock()
                state = {"counter": 0, "seen": {}, "duplicates": 0, "unmarked": 0}
                class Handler(http.server.BaseHTTPRequestHandler):
                    protocol_version = "HTTP/1.1"
                    def reply(self, status, body):
                        self.send_response(status)
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                    def do_POST(self):
                        length = int(self.headers.get("Content-Length") or 0)
                        self.rfile.read(length)
                        index = self.headers.get("Tandem-Index")
                        with lock:
                            if index is not None:
                                if index in state["seen"]:
                                    state["duplicates"] += 1
                                    if self.headers.get("Tandem-Redelivery") != "true":
                                        state["unmarked"] += 1
                                state["seen"][index] = True
                            state["counter"] += 1
                            body = str(state["counter"]).encode()
                        self.reply(200, body)
                    do_PUT = do_POST
                    def do_GET(self):
                        with lock:
                            stats = {"counter": state["counter"], "distinct": len(state["seen"]),
                                     "duplicates": state["duplicates"], "unmarkedDuplicates": state["unmarked"]}
                        self.reply(200, json.dumps(stats, sort_keys=True).encode())
                    def log_message(self, *args):
                        pass
                server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
                print("example-kv listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
                server.serve_forever()
                """)
    }
}

/// Writers that each send increments with a fresh Idempotency-Key, retrying every one (same key, any node)
/// until it is acknowledged: each logical write must then be applied exactly once.
final class WriteLoad: @unchecked Sendable {  // mutable state is guarded by `state`
    private let writers: Int
    private let ports: () -> [UInt16]
    private let state = Locked((acknowledged: 0, failures: [String](), running: true))
    private var threads: [Thread] = []
    private let finished = DispatchGroup()

    init(writers: Int, ports: @escaping () -> [UInt16]) {
        self.writers = writers
        self.ports = ports
    }

    var acknowledged: Int { state.withValue { $0.acknowledged } }
    var failures: [String] { state.withValue { $0.failures } }

    func start() {
        for writer in 0..<writers {
            finished.enter()
            let thread = Thread { [self] in
                defer { self.finished.leave() }
                var sequence = 0
                while self.state.withValue({ $0.running }) {
                    sequence += 1
                    let key = "w\(writer)-\(sequence)-\(UUID().uuidString)"
                    let client = RetryingWriter(ports: self.ports)
                    let response = client.write(
                        method: "POST", path: "/counters/c/incr", body: "", key: key, seconds: 60)
                    self.state.withValue { state in
                        if let response, response.status == 200 || response.status == 409 {
                            state.acknowledged += 1
                        } else {
                            state.failures.append("\(key): \(response.map { "\($0.status) \($0.bodyText)" } ?? "none")")
                        }
                    }
                }
            }
            thread.start()
            threads.append(thread)
        }
    }

    /// Stops starting new writes and waits for those in flight to be acknowledged.
    func stop() {
        let wasRunning = state.withValue { state -> Bool in
            defer { state.running = false }
            return state.running
        }
        if wasRunning { _ = finished.wait(timeout: .now() + 90) }
    }
}
