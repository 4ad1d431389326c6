import Foundation
import Glibc
import XCTest

/// Snapshots, compaction and installation with real processes: example-kv's `GET /snapshot` and `PUT /snapshot`
/// as the hooks, snapshots every few dozen entries so that a short test compacts many times.
final class SnapshotTests: ClusterTestCase {
    override func setUp() {
        super.setUp()
        extraEnvironment["TANDEM_SNAPSHOT_SAVE"] = "GET /snapshot"
        extraEnvironment["TANDEM_SNAPSHOT_RESTORE"] = "PUT /snapshot"
        extraEnvironment["TANDEM_SNAPSHOT_EVERY"] = "40"
        extraEnvironment["TANDEM_LOG_RETAIN"] = "10"
    }

    private func metric(_ replica: Replica, _ name: String) -> Double? {
        guard let text = try? httpRequest(port: replica.adminPort, method: "GET", path: "/metrics").bodyText else {
            return nil
        }
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    private func snapshotStatus(_ replica: Replica) -> [String: Any]? { status(replica)?["snapshot"] as? [String: Any] }

    private func counterValue(_ replica: Replica) throws -> String {
        try httpRequest(port: replica.appPort, method: "GET", path: "/counters/c").bodyText
    }

    /// A follower whose data directory and app are lost while writes go on is rebuilt from the leader's snapshot
    /// (it needs entries the leader compacted away), then catches up from the log: every replica ends with the
    /// same bytes, and every acknowledged increment counted once.
    func testAWipedFollowerIsRebuiltThroughASnapshotUnderWriteLoad() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let ports = replicas.map(\.fixedClientPort)
        let load = KeyedWriteLoad(writers: 3) { ports.map { .init(host: "127.0.0.1", port: $0) } }
        load.start()
        defer { load.stop() }
        XCTAssertTrue(load.waitForProgress(beyond: 0, count: 150, seconds: 60), "writes did not go through")

        let victim = try XCTUnwrap(replicas.first { $0.id != leader.id })
        crash(victim)
        try FileManager.default.removeItem(atPath: victim.dataDir)
        let atWipe = load.acknowledged
        XCTAssertTrue(load.waitForProgress(beyond: atWipe, count: 150, seconds: 60), "writes stopped without it")
        XCTAssertTrue(
            waitUntil(seconds: 20) {
                ((snapshotStatus(leader)?["logStartIndex"] as? Int) ?? 0) > atWipe / 2
            }, "the leader did not compact its log: \(String(describing: snapshotStatus(leader)))")

        try start(victim)  // an empty data directory and a fresh app
        XCTAssertTrue(
            waitUntil(seconds: 30) { (metric(victim, "tandem_snapshot_installs_total") ?? 0) >= 1 },
            "the wiped follower installed no snapshot: \(victim.tandem?.process.output.suffix(3000) ?? "")")
        let resumed = load.acknowledged
        XCTAssertTrue(load.waitForProgress(beyond: resumed, count: 50, seconds: 30), "writes did not go on")
        load.stop()
        XCTAssertEqual(load.failures, [])

        let dump = try XCTUnwrap(waitForConvergence(seconds: 30), "the replicas' /dump differ")
        let state = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any])
        XCTAssertEqual((state["counters"] as? [String: Int])?["c"], load.acknowledged, "exactly once, everywhere")
        XCTAssertGreaterThanOrEqual(metric(leader, "tandem_snapshot_sends_total") ?? 0, 1)
        for replica in replicas {
            XCTAssertEqual(status(replica)?["diverged"] as? Bool, false, "\(replica.id) reports diverged")
        }
    }

    /// Compaction bounds the log: after hundreds of writes every node keeps a short tail behind its latest
    /// snapshot, and a restart reads only that (it is ready, with the exact state, after restoring the snapshot).
    func testCompactionKeepsTheLogShortAndARestartRestoresFromTheSnapshot() throws {
        try startCluster()
        let writer = RetryingWriter { self.replicas.map(\.fixedClientPort) }
        for k in 1...300 {
            XCTAssertEqual(
                writer.write(method: "POST", path: "/counters/c/incr", body: "", key: "k\(k)")?.status, 200,
                "write \(k)")
        }
        for replica in replicas {
            XCTAssertTrue(
                waitUntil(seconds: 20) {
                    let snapshot = snapshotStatus(replica)
                    let latest = (snapshot?["latest"] as? [String: Any])?["index"] as? Int ?? 0
                    let start = snapshot?["logStartIndex"] as? Int ?? 0
                    return latest >= 240 && start >= latest - 10 - 40
                }, "\(replica.id): \(String(describing: snapshotStatus(replica)))")
        }
        // Tandem alone restarts beside its in-memory app (one container of a pod): the app is reset from the
        // snapshot and the tail replayed, so nothing is applied twice.
        let follower = try XCTUnwrap(replicas.first { (status($0)?["role"] as? String) != "leader" })
        if let tandem = follower.tandem {
            kill(tandem.process.pid, SIGTERM)
            _ = tandem.process.waitForExit()
        }
        try startTandemOnly(follower, waitUntilReady: true)
        XCTAssertEqual(try counterValue(follower), "{\"name\":\"c\",\"value\":300}")
        XCTAssertGreaterThanOrEqual(metric(follower, "tandem_snapshot_restores_total") ?? 0, 1)
        XCTAssertNotNil(waitForConvergence())
    }

    /// The three restart orders of an in-memory app, each with exact counters: Tandem alone, the app alone
    /// (restarted on the same port, however quickly), and both.
    func testInMemoryAppRestartOrdersKeepExactCounters() throws {
        try startCluster()
        let writer = RetryingWriter { self.replicas.map(\.fixedClientPort) }
        var written = 0
        func writeSome(_ count: Int) {
            for _ in 0..<count {
                written += 1
                XCTAssertEqual(
                    writer.write(method: "POST", path: "/counters/c/incr", body: "", key: "o\(written)")?.status, 200)
            }
        }
        writeSome(60)
        let follower = try XCTUnwrap(replicas.first { (status($0)?["role"] as? String) != "leader" })
        let expected = { "{\"name\":\"c\",\"value\":\(written)}" }

        // 1. Tandem alone.
        if let tandem = follower.tandem {
            kill(tandem.process.pid, SIGKILL)
            _ = tandem.process.waitForExit()
        }
        try startTandemOnly(follower, waitUntilReady: true)
        XCTAssertEqual(try counterValue(follower), expected(), "after Tandem alone restarted")

        // 2. The app alone, back on the same port at once.
        writeSome(30)
        if let app = follower.app {
            kill(app.pid, SIGKILL)
            _ = app.waitForExit()
        }
        let (app, _) = try startApp(port: follower.appPort)
        follower.app = app
        XCTAssertTrue(
            waitUntil(seconds: 20) { (try? counterValue(follower)) == expected() },
            "after the app alone restarted: \((try? counterValue(follower)) ?? "?")")

        // 3. Both.
        writeSome(30)
        crash(follower)
        try start(follower, waitUntilReady: true)
        XCTAssertTrue(
            waitUntil(seconds: 20) { (try? counterValue(follower)) == expected() },
            "after both restarted: \((try? counterValue(follower)) ?? "?")")
        XCTAssertNotNil(waitForConvergence())
    }
}
