import Foundation
import Glibc
import XCTest

/// Three unmodified example-kv apps behind three tandems behave as one highly available app.
final class ClusterTests: ClusterTestCase {
    func testThreeNodesElectOneLeaderAndEveryReplicaAppliesEveryWriteInOrder() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        var lastPosition: UInt64 = 0
        for (round, replica) in (replicas + replicas).enumerated() {
            let put = try httpRequest(port: replica.clientPort, method: "PUT", path: "/kv/k\(round)", body: "v\(round)")
            XCTAssertEqual(put.status, 200, put.bodyText)
            XCTAssertEqual(put.headers.first(name: "Tandem-Leader"), leader.id)
            let position = try XCTUnwrap(UInt64(put.headers.first(name: "Tandem-Position") ?? ""))
            XCTAssertGreaterThan(position, lastPosition, "positions grow along the log")
            lastPosition = position
            let incr = try httpRequest(port: replica.clientPort, method: "POST", path: "/counters/hits/incr")
            XCTAssertEqual(
                incr.bodyText, "{\"name\":\"hits\",\"value\":\(round + 1)}",
                "each node answers with its own app's response")
        }
        let dump = try XCTUnwrap(waitForConvergence(), "replicas never agreed")
        XCTAssertTrue(dump.contains("\"hits\":6"), dump)
        for round in 0..<6 { XCTAssertTrue(dump.contains("\"k\(round)\":\"v\(round)\""), dump) }
    }

    func testSessionReadOnAnotherNodeSeesTheWriteAndLinearizableReadsWorkOnFollowers() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let followers = replicas.filter { $0 !== leader }
        let write = try httpRequest(port: followers[0].clientPort, method: "PUT", path: "/kv/session", body: "mine")
        XCTAssertEqual(write.status, 200)
        let position = try XCTUnwrap(write.headers.first(name: "Tandem-Position"))
        let read = try httpRequest(
            port: followers[1].clientPort, method: "GET", path: "/kv/session",
            headers: [("Tandem-Consistency", "session"), ("Tandem-After", position)])
        XCTAssertEqual(read.status, 200)
        XCTAssertEqual(read.bodyText, "mine")
        XCTAssertGreaterThanOrEqual(UInt64(read.headers.first(name: "Tandem-Position") ?? "0") ?? 0, UInt64(position)!)

        let cookieRead = try httpRequest(
            port: leader.clientPort, method: "GET", path: "/kv/session",
            headers: [("Tandem-Consistency", "session"), ("Cookie", "theme=dark; tandem_pos=\(position)")])
        XCTAssertEqual(cookieRead.bodyText, "mine")

        for level in ["linearizable", "lease"] {
            let linear = try httpRequest(
                port: followers[1].clientPort, method: "GET", path: "/kv/session",
                headers: [("Tandem-Consistency", level)])
            XCTAssertEqual(linear.status, 200, "\(level): \(linear.bodyText)")
            XCTAssertEqual(linear.bodyText, "mine")
        }
        let farFuture = try httpRequest(
            port: followers[1].clientPort, method: "GET", path: "/kv/session",
            headers: [("Tandem-Consistency", "session"), ("Tandem-After", "999999")])
        XCTAssertEqual(farFuture.status, 503)
        XCTAssertTrue(farFuture.bodyText.contains("not_caught_up"), farFuture.bodyText)
        let bad = try httpRequest(
            port: leader.clientPort, method: "GET", path: "/kv/session", headers: [("Tandem-Consistency", "eventual")])
        XCTAssertEqual(bad.status, 400)
    }

    func testKillingTheLeaderUnderLoadLosesNoAcknowledgedWriteAndAppliesNothingTwice() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let ports = replicas.map(\.clientPort)
        let workers = 6
        let opsPerWorker = 40
        let acknowledged = Tally(count: workers)
        let acknowledgedAppends = Tally(count: workers)

        let group = DispatchGroup()
        for worker in 0..<workers {
            DispatchQueue.global().async(group: group) {
                let writer = RetryingWriter { ports.shuffled() }
                for op in 0..<opsPerWorker {
                    let incr = writer.write(
                        method: "POST", path: "/counters/w\(worker)/incr", body: "", key: "incr-\(worker)-\(op)")
                    if incr?.status == 200 { acknowledged.add(worker) }
                    let append = writer.write(
                        method: "POST", path: "/kv/log\(worker)/append", body: "<\(op)>", key: "append-\(worker)-\(op)")
                    if append?.status == 200 { acknowledgedAppends.add(worker) }
                }
            }
        }
        usleep(1_500_000)
        crash(leader)
        let newLeader = waitForLeader(among: replicas.filter { $0 !== leader }, excluding: leader.id)
        XCTAssertNotNil(newLeader, "no new leader after the leader was killed")
        XCTAssertEqual(group.wait(timeout: .now() + 120), .success, "the load did not finish")
        try start(leader)
        let dump = try XCTUnwrap(waitForConvergence(seconds: 30), "replicas never agreed after the restart")
        let state = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any])
        let counters = try XCTUnwrap(state["counters"] as? [String: Int])
        let kv = try XCTUnwrap(state["kv"] as? [String: String])
        // Then every node crashes and restarts: what was acknowledged is in the write-ahead logs, replayed into
        // the fresh apps.
        for replica in replicas { crash(replica) }
        for replica in replicas { try start(replica) }
        XCTAssertNotNil(waitForLeader(seconds: 20), "no leader after restarting every node")
        XCTAssertEqual(
            waitForConvergence(seconds: 30), dump, "a whole-cluster restart must bring back exactly the same state")
        for worker in 0..<workers {
            XCTAssertEqual(acknowledged[worker], opsPerWorker, "every write is eventually acknowledged through retries")
            XCTAssertEqual(
                counters["w\(worker)"], acknowledged[worker], "counter w\(worker): nothing lost, nothing applied twice")
            let log = kv["log\(worker)"] ?? ""
            for op in 0..<opsPerWorker {
                XCTAssertEqual(
                    log.components(separatedBy: "<\(op)>").count - 1, 1,
                    "append \(op) of worker \(worker) must appear exactly once in \(log)")
            }
        }
    }

    func testConcurrentDuplicatesWithOneIdempotencyKeyApplyOnce() throws {
        try startCluster()
        let bodies = Tally(count: 1)
        let answers = Locked<[String]>([])
        let group = DispatchGroup()
        for attempt in 0..<9 {
            let port = replicas[attempt % 3].clientPort
            DispatchQueue.global().async(group: group) {
                let response = try? httpRequest(
                    port: port, method: "POST", path: "/counters/once/incr", headers: [("Idempotency-Key", "same-key")])
                if response?.status == 200 {
                    bodies.add(0)
                    answers.withValue { $0.append(response!.bodyText) }
                }
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(bodies[0], 9)
        XCTAssertEqual(
            Set(answers.withValue { $0 }), ["{\"name\":\"once\",\"value\":1}"], "every duplicate gets the first answer")
        let dump = try XCTUnwrap(waitForConvergence())
        XCTAssertTrue(dump.contains("\"once\":1"), dump)
    }

    func testRollingRestartUnderWriteLoadLosesNothingAndKeepsWritesFlowing() throws {
        try startCluster()
        let ports = replicas.map(\.clientPort)
        let acknowledged = Tally(count: 1)
        let stop = Flag()
        let gaps = Locked<(last: Date, longest: Double)>((Date(), 0))
        let group = DispatchGroup()
        // Three writers: "some node serves writes at every moment" is about the cluster, not one client's luck
        // (a write whose forward is lost with a restarting link legitimately waits for its commit timeout).
        for writerID in 0..<3 {
            DispatchQueue.global().async(group: group) {
                let writer = RetryingWriter { ports.shuffled() }
                var op = 0
                while !stop.isSet {
                    op += 1
                    if writer.write(
                        method: "POST", path: "/counters/rolling/incr", body: "", key: "roll-\(writerID)-\(op)")?.status
                        == 200
                    {
                        acknowledged.add(0)
                        gaps.withValue { $0 = (Date(), max($0.longest, Date().timeIntervalSince($0.last))) }
                    }
                }
            }
        }
        // The orchestrator's way: one node at a time, SIGTERM (hand off, drain), restart, wait until ready.
        for replica in replicas {
            replica.tandem!.process.signal(SIGTERM)
            XCTAssertEqual(replica.tandem!.process.waitForExit(), 0)
            kill(replica.app!.pid, SIGTERM)
            _ = replica.app!.waitForExit()
            try start(replica)
            XCTAssertTrue(
                waitUntil(seconds: 20) {
                    (try? httpRequest(port: replica.adminPort, method: "GET", path: "/readyz").status) == 200
                })
        }
        usleep(1_000_000)
        stop.set()
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        let dump = try XCTUnwrap(waitForConvergence(seconds: 30))
        XCTAssertTrue(
            dump.contains("\"rolling\":\(acknowledged[0])"), "acknowledged \(acknowledged[0]) increments: \(dump)")
        let longestGap = gaps.withValue { max($0.longest, Date().timeIntervalSince($0.last)) }
        print(
            "rolling restart: \(acknowledged[0]) writes, longest gap between acknowledged writes \(Int(longestGap * 1000)) ms"
        )
        XCTAssertLessThan(longestGap, 3, "some node must keep serving writes while another restarts")
        if ProcessInfo.processInfo.environment["TANDEM_TEST_TRACE"] != nil {
            for replica in replicas {
                print("=== \(replica.id) :\(replica.clientPort)\n\(replica.tandem!.process.output)")
            }
        }
    }

    func testPausedLeaderIsReplacedAndStepsDownWhenItResumes() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let others = replicas.filter { $0 !== leader }
        kill(leader.pid, SIGSTOP)
        defer { kill(leader.pid, SIGCONT) }
        let started = Date()
        let newLeader = try XCTUnwrap(
            waitForLeader(among: others, excluding: leader.id), "no leader while the old one was paused")
        let failoverSeconds = Date().timeIntervalSince(started)
        XCTAssertLessThan(failoverSeconds, 10)
        let write = try httpRequest(port: newLeader.clientPort, method: "PUT", path: "/kv/after-pause", body: "new")
        XCTAssertEqual(write.status, 200)
        kill(leader.pid, SIGCONT)
        XCTAssertTrue(
            waitUntil(seconds: 10) { (self.status(leader)?["role"] as? String) == "follower" },
            "the old leader must step down")
        XCTAssertEqual(waitForLeader()?.id, newLeader.id)
        let read = try httpRequest(
            port: leader.clientPort, method: "GET", path: "/kv/after-pause",
            headers: [("Tandem-Consistency", "linearizable")])
        XCTAssertEqual(read.bodyText, "new", "the old leader must not serve stale data")
        XCTAssertNotNil(waitForConvergence())
    }

    func testPeerWithTheWrongSecretIsRefused() throws {
        let root = NSTemporaryDirectory() + "tandem-cluster-\(UUID().uuidString)"
        replicas = (1...3).map { Replica(id: "n\($0)", peerPort: freePort(), dataDir: "\(root)/n\($0)") }
        try start(replicas[0])
        try start(replicas[1])
        try start(replicas[2], environment: ["TANDEM_CLUSTER_SECRET": "definitely-not-the-cluster-secret"])
        let leader = try XCTUnwrap(waitForLeader(among: Array(replicas[0...1])))
        usleep(1_000_000)
        XCTAssertNil(status(replicas[2])?["leader"] as? String, "the impostor must not join")
        XCTAssertTrue(
            leader.tandem!.process.output.contains("refused a peer connection"), leader.tandem!.process.output)
        let write = try httpRequest(port: leader.clientPort, method: "PUT", path: "/kv/x", body: "y")
        XCTAssertEqual(write.status, 200, "two of three nodes are a quorum")
    }
}

/// Per-worker counts shared by load threads.
final class Tally: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var counts: [Int]

    init(count: Int) { counts = Array(repeating: 0, count: count) }

    func add(_ slot: Int) {
        lock.lock()
        counts[slot] += 1
        lock.unlock()
    }

    subscript(slot: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return counts[slot]
    }
}
