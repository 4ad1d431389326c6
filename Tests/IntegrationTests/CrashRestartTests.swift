import Foundation
import Glibc
import XCTest

/// Pods crashing at random moments under load: kill -9 of a node's sidecar and app together, then a restart that
/// replays the log into the fresh app (TANDEM_APP_STATE=memory).
final class CrashRestartTests: ClusterTestCase {
    func testPodsKilledAtRandomMomentsLoseNoAcknowledgedWriteAndApplyNoneTwice() throws {
        let seed =
            UInt64(ProcessInfo.processInfo.environment["TANDEM_CRASH_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max)
        print("crash seed \(seed) (rerun with TANDEM_CRASH_SEED=\(seed))")
        var random = SeededGenerator(seed: seed)
        XCTAssertEqual(extraEnvironment["TANDEM_APP_STATE"], "memory", "a fresh app gets the log replayed")
        try startCluster()
        XCTAssertNotNil(waitForLeader())

        let ports = replicas.map(\.fixedClientPort)
        let load = KeyedWriteLoad(writers: 4) { ports.map { .init(host: "127.0.0.1", port: $0) } }
        load.start()
        defer { load.stop() }
        XCTAssertTrue(load.waitForProgress(beyond: 0, count: 10, seconds: 20), "no write went through")

        let crashes = Int.random(in: 5...8, using: &random)
        for round in 0..<crashes {
            let wait = Double.random(in: 0.2...2.5, using: &random)
            usleep(useconds_t(wait * 1_000_000))
            let victim = replicas[Int.random(in: 0..<replicas.count, using: &random)]
            let role = status(victim)?["role"] as? String ?? "unknown"
            let before = load.acknowledged
            crash(victim)  // tandem and app together, SIGKILL, as a pod dies
            let down = Double.random(in: 0...1.5, using: &random)
            usleep(useconds_t(down * 1_000_000))
            try start(victim)
            print(
                "crash \(round + 1)/\(crashes): \(victim.id) (\(role)) after \(String(format: "%.2f", wait)) s,"
                    + " down \(String(format: "%.2f", down)) s, \(before) writes acknowledged so far")
        }
        XCTAssertNotNil(waitForLeader(seconds: 30), "the cluster did not settle after the last crash")
        let settled = load.acknowledged
        XCTAssertTrue(
            load.waitForProgress(beyond: settled, count: 10, seconds: 20), "writes did not resume after the crashes")
        load.stop()

        XCTAssertEqual(load.failures, [], "every logical write was acknowledged in the end")
        let dump = try XCTUnwrap(waitForConvergence(seconds: 30), "the three /dump differ")
        let state = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any])
        let counters = try XCTUnwrap(state["counters"] as? [String: Int], dump)
        XCTAssertEqual(
            counters["c"], load.acknowledged, "nothing acknowledged lost, nothing applied twice (seed \(seed))")
        for replica in replicas {
            let counter = try httpRequest(port: replica.appPort, method: "GET", path: "/counters/c").bodyText
            XCTAssertEqual(counter, "{\"name\":\"c\",\"value\":\(load.acknowledged)}", "\(replica.id) (seed \(seed))")
            XCTAssertEqual(status(replica)?["diverged"] as? Bool, false, "\(replica.id) reports diverged")
        }
    }
}
