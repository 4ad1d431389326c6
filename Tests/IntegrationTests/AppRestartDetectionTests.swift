import Foundation
import Glibc
import XCTest

/// How a replica tells an in-memory app that restarted from one that closed a connection: by the app's listening
/// socket. An app that closes idle connections (a keep-alive timeout, as most HTTP servers have) costs nothing;
/// an app back on the same port within milliseconds is rebuilt, with hooks (restore, then replay) or without
/// (the whole log replayed).
final class AppRestartDetectionTests: ClusterTestCase {
    private func counterValue(_ replica: Replica) -> String? {
        try? httpRequest(port: replica.appPort, method: "GET", path: "/counters/c").bodyText
    }

    private func increment(_ writer: RetryingWriter, _ count: Int, from first: Int) {
        for n in first..<(first + count) {
            XCTAssertEqual(writer.write(method: "POST", path: "/counters/c/incr", body: "", key: "i\(n)")?.status, 200)
        }
    }

    /// Kills the replica's app and starts a new one on the same port at once (a restart the health probe, one
    /// probe a second, usually never sees).
    private func restartAppAtOnce(_ replica: Replica) throws {
        try restartApp(replica, arguments: ["--idle-timeout", "1"])
    }

    func testAnAppClosingIdleConnectionsIsNeverRestoredButOneRestartedAtOnceIs() throws {
        extraEnvironment["TANDEM_SNAPSHOT_SAVE"] = "GET /snapshot"
        extraEnvironment["TANDEM_SNAPSHOT_RESTORE"] = "PUT /snapshot"
        appLauncher = { try self.startApp(extraArguments: ["--idle-timeout", "1"]) }
        try startCluster()
        let writer = RetryingWriter { self.replicas.map(\.fixedClientPort) }
        increment(writer, 20, from: 0)
        // Every app closes the applier's kept-alive connection after a second of quiet, twice over.
        usleep(2_600_000)
        increment(writer, 5, from: 20)
        usleep(2_600_000)
        for replica in replicas {
            XCTAssertEqual(
                metric(replica, "tandem_snapshot_restores_total"), 0,
                "\(replica.id) restored an app that only closed idle connections: \(divergenceReport())")
            XCTAssertEqual(try httpRequest(port: replica.adminPort, method: "GET", path: "/readyz").status, 200)
        }
        XCTAssertNotNil(waitForConvergence())

        let follower = try XCTUnwrap(replicas.first { (status($0)?["role"] as? String) != "leader" })
        try restartAppAtOnce(follower)
        XCTAssertTrue(
            waitUntil(seconds: 20) { self.counterValue(follower) == "{\"name\":\"c\",\"value\":25}" },
            "the restarted app was not rebuilt: \(counterValue(follower) ?? "no answer")")
        XCTAssertGreaterThanOrEqual(metric(follower, "tandem_snapshot_restores_total") ?? 0, 1)
        increment(writer, 5, from: 25)
        XCTAssertNotNil(waitForConvergence())
        XCTAssertEqual(counterValue(follower), "{\"name\":\"c\",\"value\":30}")
    }

    /// An app that dies while a snapshot waits for the entries in flight to it: their answers never come, so the
    /// snapshot's pause never settled, and the rebuild (which waits for the snapshot to end) was refused every
    /// 500 ms for ever. The snapshot gives up, the app is rebuilt, and the replica applies and serves again.
    func testAnAppKilledWhileASnapshotWaitsForItsEntriesInFlightIsRebuilt() throws {
        extraEnvironment["TANDEM_SNAPSHOT_SAVE"] = "GET /snapshot"
        extraEnvironment["TANDEM_SNAPSHOT_RESTORE"] = "PUT /snapshot"
        extraEnvironment["TANDEM_SNAPSHOT_EVERY"] = "4"
        // A slow app: a pipelined entry stays in flight for 300 ms while a snapshot waits for it.
        appLauncher = { try self.startApp(extraArguments: ["--delay-ms", "300"]) }
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let follower = try XCTUnwrap(replicas.first { $0.id != leader.id })
        // Writes without an Idempotency-Key: several are in flight to each app at any moment.
        let load = UnkeyedWriteLoad(threads: 4, port: leader.fixedClientPort)
        defer { load.stop() }
        let pausing = waitUntil(seconds: 30) {
            let app = self.status(follower)?["app"] as? [String: Any]
            return (app?["applier"] as? String)?.contains("then pausing") == true
        }
        XCTAssertTrue(pausing, "the follower never waited for entries in flight to pause:\n\(divergenceReport())")
        try restartApp(follower, arguments: ["--delay-ms", "300"])
        load.stop()

        XCTAssertEqual(
            RetryingWriter { self.replicas.map(\.fixedClientPort) }.write(
                method: "PUT", path: "/kv/last", body: "v", key: "last")?.status, 200)
        XCTAssertTrue(
            waitUntil(seconds: 30) {
                (try? httpRequest(port: follower.appPort, method: "GET", path: "/kv/last").bodyText) == "v"
            }, "the follower's restarted app was not rebuilt:\n\(divergenceReport())")
        XCTAssertNotNil(waitForConvergence(seconds: 30), "the replicas did not converge:\n\(divergenceReport())")
        XCTAssertGreaterThanOrEqual(
            metric(follower, "tandem_snapshot_restores_total") ?? 0, 1, "the app was rebuilt without a restore")
    }

    /// Without hooks a restarted in-memory app gets the whole log replayed; before the listener was compared, an app
    /// back before any connection was refused was never noticed, and kept only the writes made after it.
    func testWithoutHooksAnAppRestartedAtOnceGetsTheWholeLogReplayed() throws {
        appLauncher = { try self.startApp(extraArguments: ["--idle-timeout", "1"]) }
        try startCluster()
        let writer = RetryingWriter { self.replicas.map(\.fixedClientPort) }
        increment(writer, 20, from: 0)
        XCTAssertNotNil(waitForConvergence())
        let follower = try XCTUnwrap(replicas.first { (status($0)?["role"] as? String) != "leader" })
        try restartAppAtOnce(follower)
        increment(writer, 3, from: 20)
        XCTAssertTrue(
            waitUntil(seconds: 20) { self.counterValue(follower) == "{\"name\":\"c\",\"value\":23}" },
            "the restarted app was not rebuilt: \(counterValue(follower) ?? "no answer")")
        XCTAssertNotNil(waitForConvergence())
    }
}
