import Foundation
import Glibc
import XCTest

/// A follower that falls far behind (its sidecar frozen while the others commit more than one frame's worth of
/// entries) catches up when it thaws, with node ids near the 64-character limit.
final class LaggingFollowerTests: ClusterTestCase {
    func testAFollowerFrozenWhileManyLargeEntriesCommitCatchesUpWithLongNodeIds() throws {
        let ids = (1...3).map { "replica-\($0)_of-three.zone-\($0)a.tandem-lagging-follower-test" }
        XCTAssertTrue(ids.allSatisfy { $0.count >= 40 && $0.count <= 64 }, "\(ids.map(\.count))")
        try startCluster(ids: ids)
        let leader = try XCTUnwrap(waitForLeader())
        let lagging = try XCTUnwrap(replicas.first { $0 !== leader })
        let termBefore = try XCTUnwrap(status(leader)?["term"] as? Int)

        lagging.tandem!.process.signal(SIGSTOP)
        var stopped = true
        defer { if stopped { lagging.tandem!.process.signal(SIGCONT) } }  // so tear-down's SIGTERM is heard

        // 6000 entries of 4 KiB: about 24 MiB, well above one frame (the 16 MiB body limit + 256 KiB).
        let total = Int(ProcessInfo.processInfo.environment["TANDEM_LAG_WRITES"] ?? "") ?? 6000
        let entryBytes = 4096
        XCTAssertGreaterThan(total * entryBytes, (16 << 20) + (256 << 10) + (4 << 20))
        let next = Locked(0)
        let failures = Locked<[String]>([])
        let livePorts = replicas.filter { $0 !== lagging }.map(\.clientPort)
        let writers = DispatchGroup()
        let started = Date()
        for _ in 0..<6 {
            DispatchQueue.global().async(group: writers) {
                let client = RetryingWriter { livePorts }
                while true {
                    let index = next.withValue { value -> Int in
                        defer { value += 1 }
                        return value
                    }
                    guard index < total else { return }
                    let prefix = "entry \(index) "
                    let body = prefix + String(repeating: "x", count: entryBytes - prefix.utf8.count)
                    let response = client.write(
                        method: "PUT", path: "/kv/k\(index % 256)", body: body, key: "lag-\(index)", seconds: 60)
                    if response?.status != 200 {
                        failures.withValue { $0.append("\(index): \(response.map { "\($0.status)" } ?? "none")") }
                    }
                }
            }
        }
        XCTAssertEqual(writers.wait(timeout: .now() + 120), .success, "the writes did not finish")
        let writeSeconds = Date().timeIntervalSince(started)
        XCTAssertEqual(failures.withValue { $0 }, [], "every write was acknowledged by the two live nodes")
        let leaderStatus = try XCTUnwrap(status(leader))
        let commit = try XCTUnwrap(leaderStatus["commitIndex"] as? Int)
        XCTAssertGreaterThanOrEqual(commit, total, "every write is one entry")
        let peers = try XCTUnwrap(leaderStatus["peers"] as? [[String: Any]])
        let lag = try XCTUnwrap(peers.first { $0["id"] as? String == lagging.id }?["lagEntries"] as? Int)
        XCTAssertGreaterThan(lag, total - 100, "the leader sees the frozen follower far behind: \(peers)")

        let thawed = Date()
        lagging.tandem!.process.signal(SIGCONT)
        stopped = false
        var applied = 0
        let caughtUp = waitUntil(seconds: 30) {
            applied = self.status(lagging)?["appliedIndex"] as? Int ?? applied
            return applied >= commit
        }
        let catchUpSeconds = Date().timeIntervalSince(thawed)
        print(
            "\(total) writes of \(entryBytes) B in \(String(format: "%.1f", writeSeconds)) s;"
                + " the thawed follower applied up to \(commit) in \(String(format: "%.1f", catchUpSeconds)) s")
        XCTAssertTrue(
            caughtUp,
            "\(lagging.id) applied \(applied) of \(commit) within 30 s: \(lagging.tandem!.process.output.suffix(3000))")

        let dump = try XCTUnwrap(waitForConvergence(seconds: 30), "the three /dump differ")
        XCTAssertTrue(dump.contains("entry \(total - 1) "), "the last write is in the state")
        XCTAssertEqual(status(leader)?["role"] as? String, "leader", "the thawed follower did not unseat the leader")
        XCTAssertEqual(
            status(leader)?["term"] as? Int, termBefore, "pre-vote kept the thawed follower from an election")
        for replica in replicas {
            XCTAssertTrue(replica.tandem!.process.process.isRunning, "\(replica.id) exited")
            XCTAssertFalse(
                replica.tandem!.process.output.contains("larger than the peer frame limit"),
                "\(replica.id) dropped a frame as too large")
            XCTAssertEqual(status(replica)?["diverged"] as? Bool, false, "\(replica.id) reports diverged")
        }
    }
}
