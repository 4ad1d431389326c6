import Foundation
import Glibc
import XCTest

/// The value of an unlabelled metric on a replica's /metrics, nil when absent.
func metric(_ replica: Replica, _ name: String) -> Double? {
    guard let text = try? httpRequest(port: replica.adminPort, method: "GET", path: "/metrics").bodyText else {
        return nil
    }
    for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Double(line.split(separator: " ").last ?? "")
    }
    return nil
}

/// Snapshots, compaction and installation with real processes: example-kv's `GET /snapshot` and `PUT /snapshot`
/// as the hooks, snapshots every few dozen entries so that a short test compacts many times.
final class SnapshotClusterTests: ClusterTestCase {
    override func setUp() {
        super.setUp()
        extraEnvironment["TANDEM_SNAPSHOT_SAVE"] = "GET /snapshot"
        extraEnvironment["TANDEM_SNAPSHOT_RESTORE"] = "PUT /snapshot"
        extraEnvironment["TANDEM_SNAPSHOT_EVERY"] = "40"
        extraEnvironment["TANDEM_LOG_RETAIN"] = "10"
    }

    private func snapshotStatus(_ replica: Replica) -> [String: Any]? { status(replica)?["snapshot"] as? [String: Any] }

    private func counterValue(_ replica: Replica) throws -> String {
        try httpRequest(port: replica.appPort, method: "GET", path: "/counters/c").bodyText
    }

    /// What a replica's Tandem thinks of its app, and its last log lines: enough to tell which restart check missed.
    private func appReport(_ replica: Replica) -> String {
        let app = (status(replica)?["app"]).map { "\($0)" } ?? "no status"
        let lines = (replica.tandem?.process.output ?? "").split(separator: "\n").suffix(25).joined(separator: "\n")
        return "app status: \(app)\nlast log lines:\n\(lines)"
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
            "after the app alone restarted: \((try? counterValue(follower)) ?? "?")\n\(appReport(follower))")

        // 3. Both.
        writeSome(30)
        crash(follower)
        try start(follower, waitUntilReady: true)
        XCTAssertTrue(
            waitUntil(seconds: 20) { (try? counterValue(follower)) == expected() },
            "after both restarted: \((try? counterValue(follower)) ?? "?")\n\(appReport(follower))")
        XCTAssertNotNil(waitForConvergence())
    }
}

extension ClusterTestCase {
    /// Writes `/kv/k1` to `/kv/k45` (each acknowledged, retried with its idempotency key) with state digests every
    /// 20 entries, and waits until every replica compared one (equal states at 20 and 40): nobody is diverged.
    func writeUntilStateDigestsAgree(_ writer: RetryingWriter, file: StaticString = #filePath, line: UInt = #line) {
        for k in 1...45 {
            XCTAssertEqual(
                writer.write(method: "PUT", path: "/kv/k\(k)", body: "v\(k)", key: "a\(k)")?.status, 200, "write \(k)",
                file: file, line: line)
        }
        XCTAssertTrue(
            waitUntil(seconds: 10) {
                self.replicas.allSatisfy { (metric($0, "tandem_digest_comparisons_total") ?? 0) >= 1 }
            }, "no state digest was compared", file: file, line: line)
        for replica in replicas {
            XCTAssertEqual(status(replica)?["diverged"] as? Bool, false, replica.id, file: file, line: line)
        }
    }
}

/// `TANDEM_STATE_DIGEST` and `TANDEM_DIVERGENCE_ACTION=stop` with real processes: replicas compare digests of their
/// apps' state (example-kv's `/dump`) at fixed indexes; a replica whose app was changed behind Tandem's back is the
/// one found diverged, and stops applying and serving.
final class StateDigestTests: ClusterTestCase {
    func testAReplicaWhoseStateWasChangedBehindTandemIsFoundDivergedAndStops() throws {
        extraEnvironment["TANDEM_STATE_DIGEST"] = "GET /dump"
        extraEnvironment["TANDEM_DIVERGENCE_ACTION"] = "stop"
        extraEnvironment["TANDEM_SNAPSHOT_EVERY"] = "20"
        try startCluster()
        let writer = RetryingWriter { self.replicas.map(\.fixedClientPort) }
        writeUntilStateDigestsAgree(writer)

        // One app gets a write no log entry carries.
        let victim = replicas[2]
        XCTAssertEqual(try httpRequest(port: victim.appPort, method: "PUT", path: "/kv/rogue", body: "x").status, 200)
        for k in 46...85 {
            XCTAssertEqual(
                writer.write(method: "PUT", path: "/kv/k\(k)", body: "v\(k)", key: "b\(k)")?.status, 200, "write \(k)")
        }
        XCTAssertTrue(
            waitUntil(seconds: 15) { (self.status(victim)?["diverged"] as? Bool) == true },
            "the changed replica was not found diverged: \(String(describing: status(victim)))")
        for replica in replicas where replica.id != victim.id {
            XCTAssertEqual(status(replica)?["diverged"] as? Bool, false, "\(replica.id) flagged for another's fault")
        }
        let ready = try httpRequest(port: victim.adminPort, method: "GET", path: "/readyz")
        XCTAssertEqual(ready.status, 503)
        let read = try httpRequest(port: victim.fixedClientPort, method: "GET", path: "/kv/k1")
        XCTAssertEqual(read.status, 503, "a stopped replica serves nothing: \(read.bodyText)")
        // It applies nothing more: its applied index stays where it stopped while the others go on.
        let stoppedAt = status(victim)?["appliedIndex"] as? Int ?? -1
        for k in 86...95 {
            XCTAssertEqual(
                writer.write(method: "PUT", path: "/kv/k\(k)", body: "v\(k)", key: "c\(k)")?.status, 200, "write \(k)")
        }
        XCTAssertTrue(
            waitUntil(seconds: 5) {
                (self.status(self.replicas[0])?["appliedIndex"] as? Int ?? 0) > stoppedAt + 5
            })
        XCTAssertEqual(status(victim)?["appliedIndex"] as? Int, stoppedAt)
    }
}

/// `TANDEM_DIVERGENCE_ACTION=repair` with real processes: a replica whose app was changed behind Tandem's back is
/// found diverged by the state digests, saves its state aside, is rebuilt from the leader's snapshot and the log
/// after it, and serves again with the majority's state; nobody else is touched.
final class DivergenceRepairClusterTests: ClusterTestCase {
    override func setUp() {
        super.setUp()
        extraEnvironment["TANDEM_STATE_DIGEST"] = "GET /dump"
        extraEnvironment["TANDEM_DIVERGENCE_ACTION"] = "repair"
        extraEnvironment["TANDEM_SNAPSHOT_SAVE"] = "GET /snapshot"
        extraEnvironment["TANDEM_SNAPSHOT_RESTORE"] = "PUT /snapshot"
        extraEnvironment["TANDEM_SNAPSHOT_EVERY"] = "20"
        extraEnvironment["TANDEM_LOG_RETAIN"] = "10"
    }

    private func repairStatus(_ replica: Replica) -> [String: Any]? { status(replica)?["repair"] as? [String: Any] }

    func testADivergedFollowerIsRepairedFromTheLeadersSnapshot() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        try divergeAndRepair(victim: try XCTUnwrap(replicas.first { $0.id != leader.id }))
    }

    /// The diverged replica leads: it hands leadership to a member of the majority before it is repaired.
    func testADivergedLeaderHandsOffAndIsRepaired() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        try divergeAndRepair(victim: leader)
        XCTAssertNotEqual(status(leader)?["role"] as? String, "leader", "the repaired node still leads")
    }

    /// A repair under a write load into a slow app: entries are in flight on the victim's apply connection when the
    /// leader's snapshot arrives, and they are answered while the restore waits for them. The log after the snapshot
    /// must be replayed through the last of them (it once stopped short of them, the next entry came out of order,
    /// and the victim crashed).
    func testARepairWhileEntriesAreInFlightReplaysThroughTheLastOneAnswered() throws {
        let (leader, victim, writer) = try startWithARogueWrite(appDelayMs: 5)

        let load = UnkeyedWriteLoad(threads: 6, port: leader.fixedClientPort)
        let repaired = waitUntil(seconds: 30) { (self.repairStatus(victim)?["completed"] as? Int ?? 0) >= 1 }
        usleep(500_000)  // the replay after the snapshot runs under the load too
        load.stop()
        XCTAssertTrue(repaired, "the diverged replica was not repaired:\n\(divergenceReport())")
        XCTAssertEqual(
            try? httpRequest(port: victim.appPort, method: "GET", path: "/kv/rogue").status, 404,
            "the write made behind Tandem's back is still in the repaired app:\n\(divergenceReport())")
        XCTAssertEqual(
            writer.write(method: "PUT", path: "/kv/last", body: "v", key: "last")?.status, 200, "the last write")
        XCTAssertNotNil(waitForConvergence(), "the replicas did not converge:\n\(divergenceReport())")
        XCTAssertEqual(
            try? httpRequest(port: victim.fixedClientPort, method: "GET", path: "/kv/last").bodyText, "v",
            "the repaired replica does not serve the latest write:\n\(divergenceReport())")
        XCTAssertEqual(repairStatus(victim)?["completed"] as? Int, 1, "repaired once, not again and again")
    }

    /// The repaired replica's app dies while the restore of the leader's snapshot waits for the entries in flight to
    /// it: their answers never come. The restore gives up without having touched the app, the restarted app is
    /// rebuilt, the repair asks for the snapshot again, and it completes (it once waited for ever).
    func testAnAppKilledWhileTheRepairsRestoreWaitsForItIsRepairedAllTheSame() throws {
        let (leader, victim, writer) = try startWithARogueWrite(appDelayMs: 100)

        let load = UnkeyedWriteLoad(threads: 4, port: leader.fixedClientPort)
        defer { load.stop() }
        let restoreWaits = waitUntil(seconds: 40) {
            guard let status = self.status(victim), let app = status["app"] as? [String: Any] else { return false }
            return (status["repair"] as? [String: Any])?["phase"] as? String == "fetching the leader's snapshot"
                && (app["applier"] as? String)?.contains("then pausing") == true
        }
        XCTAssertTrue(restoreWaits, "the repair's restore never waited for entries in flight:\n\(divergenceReport())")
        try restartApp(victim, arguments: ["--delay-ms", "100"])
        load.stop()

        XCTAssertTrue(
            waitUntil(seconds: 40) { (self.repairStatus(victim)?["completed"] as? Int ?? 0) >= 1 },
            "the repair did not complete after the app restarted:\n\(divergenceReport())")
        XCTAssertEqual(
            writer.write(method: "PUT", path: "/kv/last", body: "v", key: "last")?.status, 200, "the last write")
        XCTAssertNotNil(waitForConvergence(seconds: 30), "the replicas did not converge:\n\(divergenceReport())")
        XCTAssertEqual(
            try? httpRequest(port: victim.appPort, method: "GET", path: "/kv/rogue").status, 404,
            "the write made behind Tandem's back is back in the repaired app")
        XCTAssertEqual(
            try? httpRequest(port: victim.fixedClientPort, method: "GET", path: "/kv/last").bodyText, "v",
            "the repaired replica does not serve the latest write:\n\(divergenceReport())")
    }

    /// A cluster of slow apps whose digests agreed once, then a write into one follower's app behind Tandem's back.
    private func startWithARogueWrite(appDelayMs: Int) throws -> (leader: Replica, victim: Replica, RetryingWriter) {
        appLauncher = { try self.startApp(extraArguments: ["--delay-ms", String(appDelayMs)]) }
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let victim = try XCTUnwrap(replicas.first { $0.id != leader.id })
        let writer = RetryingWriter { self.replicas.map(\.fixedClientPort) }
        writeUntilStateDigestsAgree(writer)
        XCTAssertEqual(try httpRequest(port: victim.appPort, method: "PUT", path: "/kv/rogue", body: "x").status, 200)
        return (leader, victim, writer)
    }

    private func divergeAndRepair(victim: Replica) throws {
        let writer = RetryingWriter { self.replicas.map(\.fixedClientPort) }
        writeUntilStateDigestsAgree(writer)

        // One app gets a write no log entry carries.
        XCTAssertEqual(try httpRequest(port: victim.appPort, method: "PUT", path: "/kv/rogue", body: "x").status, 200)
        for k in 46...85 {
            XCTAssertEqual(
                writer.write(method: "PUT", path: "/kv/k\(k)", body: "v\(k)", key: "b\(k)")?.status, 200, "write \(k)")
        }
        XCTAssertTrue(
            waitUntil(seconds: 30) { (self.repairStatus(victim)?["completed"] as? Int ?? 0) >= 1 },
            "the diverged replica was not repaired:\n\(divergenceReport())")
        for replica in replicas where replica.id != victim.id {
            XCTAssertEqual(repairStatus(replica)?["completed"] as? Int, 0, "\(replica.id) repaired for another's fault")
            XCTAssertEqual(status(replica)?["diverged"] as? Bool, false, "\(replica.id) flagged for another's fault")
        }
        XCTAssertEqual(
            try httpRequest(port: victim.appPort, method: "GET", path: "/kv/rogue").status, 404,
            "the write made behind Tandem's back is gone from the repaired app")

        // Its diverged state was kept aside, rogue write included.
        let copies = try FileManager.default.contentsOfDirectory(atPath: victim.dataDir + "/diverged")
            .filter { $0.hasSuffix(".snap") }
        XCTAssertEqual(copies.count, 1, "\(copies)")
        let copy = try Data(contentsOf: URL(fileURLWithPath: victim.dataDir + "/diverged/" + (copies.first ?? "")))
        XCTAssertNotNil(copy.range(of: Data("rogue".utf8)), "the copy does not hold the diverged state")

        // It serves again, stays sound, and every replica ends with the same state.
        for k in 86...110 {
            XCTAssertEqual(
                writer.write(method: "PUT", path: "/kv/k\(k)", body: "v\(k)", key: "c\(k)")?.status, 200, "write \(k)")
        }
        XCTAssertTrue(
            waitUntil(seconds: 15) {
                (try? httpRequest(port: victim.adminPort, method: "GET", path: "/readyz").status) == 200
            }, "the repaired replica is not ready:\n\(divergenceReport())")
        XCTAssertNotNil(waitForConvergence(), "the replicas did not converge:\n\(divergenceReport())")
        XCTAssertEqual(
            try? httpRequest(port: victim.fixedClientPort, method: "GET", path: "/kv/k110").bodyText, "v110",
            "the repaired replica does not serve the latest write:\n\(divergenceReport())")
        for replica in replicas { XCTAssertEqual(status(replica)?["diverged"] as? Bool, false, replica.id) }
        XCTAssertEqual(repairStatus(victim)?["completed"] as? Int, 1, "repaired once, not again and again")
        XCTAssertEqual(repairStatus(victim)?["phase"] as? String, "idle")
    }
}
