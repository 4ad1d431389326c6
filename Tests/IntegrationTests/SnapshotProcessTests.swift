import Foundation
import Glibc
import XCTest

/// Snapshots with real processes of every kind: a third-party app (nginx serving WebDAV) whose state is a
/// directory saved and restored by `exec:` hooks, transfers of a large snapshot broken by `kill -9` on either end,
/// and a local snapshot file damaged on disk.
final class SnapshotProcessTests: ClusterTestCase {
    /// Per replica: the nginx site (its root is the app's state), by replica id.
    private var sites: [String: WebDAVSite] = [:]
    /// Directories this test made, deleted after its processes stopped (snapshots of the large state are big).
    private var scratch: [String] = []

    override func tearDown() {
        super.tearDown()
        for directory in scratch { try? FileManager.default.removeItem(atPath: directory) }
        scratch.removeAll()
    }

    // MARK: 1. nginx with exec hooks

    /// nginx's WebDAV module is the app: files created, overwritten, copied, moved and deleted through the cluster.
    /// A follower that loses its data directory and its web root while writes go on is rebuilt from the leader's
    /// snapshot (`tar` out, `tar` in), then catches up from the log, and ends with a root byte-identical to the
    /// others', which hold exactly what the clients wrote.
    func testNginxWebDAVFollowerWipedOfDataAndRootIsRebuiltThroughASnapshot() throws {
        try startWebDAVCluster(snapshotEvery: 20, logRetain: 5)
        let leader = try XCTUnwrap(waitForLeader())
        var model = WebDAVModel()
        var generator = SeededGenerator(seed: 0x5EED_DA7A)
        for path in ["/copies/", "/moved/", "/empty/"] { try perform(.makeCollection(path), on: &model) }
        for _ in 0..<100 { try perform(model.randomOperation(using: &generator), on: &model) }

        let victim = try XCTUnwrap(replicas.first { $0.id != leader.id })
        let site = try XCTUnwrap(sites[victim.id])
        crash(victim)
        try FileManager.default.removeItem(atPath: victim.dataDir)
        try site.wipeRoot()
        for _ in 0..<40 { try perform(model.randomOperation(using: &generator), on: &model) }
        XCTAssertGreaterThan(
            (snapshotStatus(leader)?["logStartIndex"] as? Int) ?? 0, 1,
            "the leader never compacted its log, so no snapshot is needed: \(String(describing: status(leader)))")

        try startReplica(victim)  // an empty data directory and an empty web root
        XCTAssertTrue(
            waitUntil(seconds: 30) { (metric(victim, "tandem_snapshot_installs_total") ?? 0) >= 1 },
            "the wiped follower installed no snapshot: \(victim.tandem?.process.output.suffix(3000) ?? "")")
        XCTAssertGreaterThanOrEqual(metric(victim, "tandem_snapshot_restores_total") ?? 0, 1)
        XCTAssertGreaterThanOrEqual(metric(leader, "tandem_snapshot_sends_total") ?? 0, 1)
        for _ in 0..<20 { try perform(model.randomOperation(using: &generator), on: &model) }

        try assertRootsConverge(to: model)
        // The rebuilt replica serves reads from its restored root.
        let file = try XCTUnwrap(model.files.keys.sorted().first)
        let read = try httpRequest(port: victim.fixedClientPort, method: "GET", path: file)
        XCTAssertEqual(read.status, 200)
        XCTAssertEqual(read.body, model.files[file])
        for replica in replicas {
            XCTAssertEqual(status(replica)?["diverged"] as? Bool, false, "\(replica.id) reports diverged")
        }
    }

    // MARK: 2. kill -9 in the middle of a large transfer

    /// The receiver dies with a half-received snapshot: its staging file survives, and the next attempt resumes at
    /// its end instead of starting over.
    func testReceiverKilledMidTransferResumesFromItsStagingFile() throws {
        let setup = try startLargeStateClusterWithWipedFollower()
        let victim = setup.victim
        let atKill = try XCTUnwrap(
            waitForStagingProgress(victim, atLeast: setup.snapshotBytes / 4, below: setup.snapshotBytes),
            "no transfer in progress to interrupt: \(victim.tandem?.process.output.suffix(2000) ?? "")")
        let leader = try XCTUnwrap(sender(to: victim), "the receiver did not log its sender")
        let receiver = try XCTUnwrap(victim.tandem)
        kill(receiver.process.pid, SIGKILL)
        _ = receiver.process.waitForExit()
        let staging = try XCTUnwrap(stagingFile(victim), "the staging file did not survive the crash")
        XCTAssertGreaterThanOrEqual(staging.bytes, atKill.bytes)
        XCTAssertLessThan(staging.bytes, setup.snapshotBytes, "the transfer was complete before the kill")

        try startTandemOnly(victim, environment: try XCTUnwrap(sites[victim.id]).hookEnvironment)
        XCTAssertTrue(
            waitUntil(seconds: 60) { (metric(victim, "tandem_snapshot_installs_total") ?? 0) >= 1 },
            "the restarted follower installed no snapshot: \(victim.tandem?.process.output.suffix(3000) ?? "")")
        let resumedAt = logLines(victim, message: "receiving a snapshot").compactMap { Int($0["resumeAt"] ?? "") }
        XCTAssertEqual(resumedAt.first, staging.bytes, "the first attempt after the restart resumes at the staging end")
        let received = try XCTUnwrap(metric(victim, "tandem_snapshot_received_bytes_total"))
        XCTAssertGreaterThan(received, 0)
        XCTAssertLessThanOrEqual(
            Int(received), setup.snapshotBytes - staging.bytes + (8 << 20),
            "the restarted follower received the whole file again (\(Int(received)) of \(setup.snapshotBytes))")
        trace(
            "snapshot \(setup.snapshotBytes) B, staging at the kill \(atKill.bytes) B, after it \(staging.bytes) B, "
                + "resumed at \(resumedAt), received after the restart \(Int(received)) B")
        XCTAssertGreaterThanOrEqual(metric(leader, "tandem_snapshot_send_failures_total") ?? 0, 1)
        XCTAssertNil(stagingFile(victim), "the staging file is left behind after the install")

        var model = setup.model
        for k in 1...3 { try perform(.put("/after/\(k).txt", Array("after \(k)".utf8)), on: &model) }
        try assertRootsConverge(to: model, seconds: 60)
    }

    /// The sender (the leader) dies mid-transfer: the other follower is elected, sends its own snapshot, and the
    /// wiped follower ends identical to the others; the old leader rejoins.
    func testSenderKilledMidTransferANewLeaderRebuildsTheFollower() throws {
        let setup = try startLargeStateClusterWithWipedFollower()
        let victim = setup.victim
        _ = try XCTUnwrap(
            waitForStagingProgress(victim, atLeast: setup.snapshotBytes / 4, below: setup.snapshotBytes),
            "no transfer in progress to interrupt: \(victim.tandem?.process.output.suffix(2000) ?? "")")
        let leader = try XCTUnwrap(sender(to: victim), "the receiver did not log its sender")
        XCTAssertEqual(status(leader)?["role"] as? String, "leader", "the sender is not the leader")
        let other = try XCTUnwrap(replicas.first { $0.id != leader.id && $0.id != victim.id })
        let tandem = try XCTUnwrap(leader.tandem)
        kill(tandem.process.pid, SIGKILL)
        _ = tandem.process.waitForExit()

        XCTAssertTrue(
            waitUntil(seconds: 20) { (status(other)?["role"] as? String) == "leader" },
            "the surviving follower with a log was not elected: \(String(describing: status(other)))")
        XCTAssertTrue(
            waitUntil(seconds: 60) { (metric(victim, "tandem_snapshot_installs_total") ?? 0) >= 1 },
            "the follower installed no snapshot after the leader died: "
                + (victim.tandem?.process.output.suffix(3000) ?? ""))
        let senders = logLines(victim, message: "receiving a snapshot").compactMap { $0["from"] }
        XCTAssertEqual(senders.last, other.id, "the snapshot installed came from the new leader")

        // Its nginx kept running, as in a pod whose sidecar container restarted.
        try startTandemOnly(leader, environment: try XCTUnwrap(sites[leader.id]).hookEnvironment)
        var model = setup.model
        for k in 1...3 { try perform(.put("/after/\(k).txt", Array("after \(k)".utf8)), on: &model) }
        try assertRootsConverge(to: model, seconds: 60)
    }

    // MARK: 3. a damaged local snapshot

    /// A byte flipped inside the payload of a follower's newest snapshot, while it is down: the restart notices
    /// (the file is set aside as `.corrupt`), restores the in-memory app from the older snapshot and replays the
    /// log after it, so the state is exact. The log keeps more entries than the cadence, so the older snapshot is
    /// still followed by the whole log.
    func testACorruptNewestSnapshotIsSetAsideAndTheOlderOneRestored() throws {
        extraEnvironment["TANDEM_SNAPSHOT_EVERY"] = "20"
        extraEnvironment["TANDEM_LOG_RETAIN"] = "30"
        try startCluster()
        let writer = RetryingWriter { self.replicas.map(\.fixedClientPort) }
        for k in 1...100 {
            XCTAssertEqual(writer.write(method: "POST", path: "/counters/c/incr", body: "", key: "c\(k)")?.status, 200)
            if k % 10 == 0 {
                XCTAssertEqual(writer.write(method: "PUT", path: "/kv/k\(k)", body: "v\(k)", key: "p\(k)")?.status, 200)
            }
        }
        let follower = try XCTUnwrap(replicas.first { (status($0)?["role"] as? String) == "follower" })
        XCTAssertTrue(
            waitUntil(seconds: 20) { snapshotFiles(follower).count >= 2 && latestIndex(follower) >= 100 },
            "\(follower.id) has no two snapshots: \(snapshotFiles(follower)) \(String(describing: status(follower)))")
        let expected = try XCTUnwrap(waitForConvergence(), "the replicas' /dump differ")
        crash(follower)

        let files = snapshotFiles(follower)
        guard files.count >= 2 else { throw TestFailure(description: "no older snapshot to fall back to: \(files)") }
        let (newest, older) = (files[files.count - 1], files[files.count - 2])
        try flipByte(inTheMiddleOf: newest)
        let damaged = FileManager.default.contents(atPath: newest)
        try start(follower, waitUntilReady: true)

        // (A new snapshot may be taken at the same index by now: the set-aside file is what tells.)
        XCTAssertEqual(
            FileManager.default.contents(atPath: newest + ".corrupt"), damaged, "the damaged file was not set aside")
        let restoredFrom = logLines(follower, message: "restoring the app from a snapshot").compactMap { $0["index"] }
        XCTAssertEqual(restoredFrom.first, String(snapshotIndex(ofFile: older)), "restored from the older snapshot")
        XCTAssertFalse(restoredFrom.contains(String(snapshotIndex(ofFile: newest))), "restored from the corrupt one")
        XCTAssertGreaterThanOrEqual(metric(follower, "tandem_snapshot_restores_total") ?? 0, 1)
        XCTAssertEqual(
            try httpRequest(port: follower.appPort, method: "GET", path: "/dump").bodyText, expected,
            "the restarted follower's app does not hold the exact state")
        XCTAssertEqual(
            try httpRequest(port: follower.fixedClientPort, method: "GET", path: "/counters/c").bodyText,
            "{\"name\":\"c\",\"value\":100}")
        XCTAssertEqual(
            writer.write(method: "POST", path: "/counters/c/incr", body: "", key: "c101")?.status, 200)
        XCTAssertNotNil(waitForConvergence(), "the replicas' /dump differ after a write")
    }

    /// The newest snapshot damaged and no older one usable (the log is compacted past it): the node cannot rebuild
    /// its in-memory app from its own disk, says so, serves nothing meanwhile, and asks the leader for the leader's
    /// latest snapshot, which it restores before replaying its own log after it: it ends with the exact state.
    func testACorruptNewestSnapshotWithoutAUsableOlderOneIsRefetchedFromTheLeader() throws {
        extraEnvironment["TANDEM_SNAPSHOT_EVERY"] = "20"
        extraEnvironment["TANDEM_LOG_RETAIN"] = "5"
        try startCluster()
        let writer = RetryingWriter { self.replicas.map(\.fixedClientPort) }
        for k in 1...60 {
            XCTAssertEqual(writer.write(method: "POST", path: "/counters/c/incr", body: "", key: "c\(k)")?.status, 200)
        }
        let follower = try XCTUnwrap(replicas.first { (status($0)?["role"] as? String) == "follower" })
        XCTAssertTrue(
            waitUntil(seconds: 20) { snapshotFiles(follower).count >= 2 && latestIndex(follower) >= 60 },
            "\(follower.id) has no two snapshots: \(snapshotFiles(follower)) \(String(describing: status(follower)))")
        crash(follower)
        let newest = try XCTUnwrap(snapshotFiles(follower).last)
        try flipByte(inTheMiddleOf: newest)
        try start(follower)

        XCTAssertTrue(
            waitUntil(seconds: 10) { FileManager.default.fileExists(atPath: newest + ".corrupt") },
            "the corrupt snapshot was not set aside")
        // While it rebuilds, the app only passes through states of the log: the counter at the leader's snapshot,
        // then one more per entry replayed after it. A skipped range ends short of 60; an entry applied twice (the
        // log replayed on top of a state that already held it) goes past 60.
        var seen: [Int] = []
        let overshoot = waitUntil(seconds: 8) {
            let text = (try? httpRequest(port: follower.appPort, method: "GET", path: "/counters/c").bodyText) ?? ""
            guard let value = Self.counterValue(text) else { return false }
            if seen.last != value { seen.append(value) }
            return value > 60
        }
        XCTAssertFalse(overshoot, "applied twice: \(seen); " + (follower.tandem?.process.output.suffix(3000) ?? ""))
        XCTAssertTrue(
            waitUntil(seconds: 20) {
                (try? httpRequest(port: follower.adminPort, method: "GET", path: "/readyz").status) == 200
            },
            "the node did not rebuild its app: \(follower.tandem?.process.output.suffix(3000) ?? ""); the others: "
                + replicas.filter { $0.id != follower.id }.map { $0.tandem?.process.output.suffix(1500) ?? "" }
                .joined(separator: "\n"))
        XCTAssertGreaterThanOrEqual(metric(follower, "tandem_snapshot_restores_total") ?? 0, 1)
        XCTAssertTrue(
            follower.tandem?.process.output.contains("app rebuilt from a refetched snapshot") ?? false,
            "not rebuilt through a refetch")
        for k in 61...80 {
            XCTAssertEqual(writer.write(method: "POST", path: "/counters/c/incr", body: "", key: "c\(k)")?.status, 200)
        }
        XCTAssertTrue(
            waitUntil(seconds: 10) {
                (try? httpRequest(port: follower.appPort, method: "GET", path: "/counters/c").bodyText)
                    == "{\"name\":\"c\",\"value\":80}"
            }, "not exact after the refetch")
        XCTAssertNotNil(waitForConvergence())
    }

    /// The value of example-kv's `{"name":"c","value":N}`, nil for anything else (no counter yet, no answer).
    static func counterValue(_ text: String) -> Int? {
        guard let data = text.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return object["value"] as? Int
    }

    // MARK: - the large-state cluster

    private struct LargeStateSetup {
        var victim: Replica
        var model: WebDAVModel
        var snapshotBytes: Int
    }

    /// nginx replicas whose roots start with the same 192 MiB file (as baked into an image), a few writes, a
    /// snapshot on every node and a compacted log; then a follower loses its data and root and is restarted, so
    /// that the leader starts sending it its snapshot of about 192 MiB.
    private func startLargeStateClusterWithWipedFollower() throws -> LargeStateSetup {
        let base = NSTemporaryDirectory() + "tandem-big-\(UUID().uuidString)"
        scratch.append(base)
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        let seed = base + "/seed.bin"
        let made = runCommand("/bin/sh", ["-c", "head -c 192M /dev/urandom > '\(seed)'"])
        XCTAssertEqual(made.status, 0, made.output)
        try startWebDAVCluster(snapshotEvery: 10, logRetain: 2, seedFile: seed)
        let leader = try XCTUnwrap(waitForLeader())
        var model = WebDAVModel()
        for k in 1...12 { try perform(.put("/before/\(k).txt", Array("before \(k)".utf8)), on: &model) }
        XCTAssertTrue(
            waitUntil(seconds: 60) {
                replicas.allSatisfy { latestIndex($0) >= 10 }
                    && ((snapshotStatus(leader)?["logStartIndex"] as? Int) ?? 0) > 1
            }, "no snapshot everywhere and compacted log: \(replicas.map { String(describing: snapshotStatus($0)) })")
        let snapshotBytes = try XCTUnwrap(
            (snapshotStatus(leader)?["latest"] as? [String: Any])?["bytes"] as? Int, "no snapshot on the leader")
        XCTAssertGreaterThan(snapshotBytes, 192 << 20, "the snapshot does not carry the large file")

        let leaderNow = try XCTUnwrap(waitForLeader())
        if leaderNow.id != leader.id {
            trace("the leader changed while snapshots were taken: \(leader.id) -> \(leaderNow.id)")
        }

        let victim = try XCTUnwrap(replicas.first { $0.id != leaderNow.id })
        crash(victim)
        try FileManager.default.removeItem(atPath: victim.dataDir)
        try XCTUnwrap(sites[victim.id]).wipeRoot()
        try startReplica(victim)
        return LargeStateSetup(victim: victim, model: model, snapshotBytes: snapshotBytes)
    }

    /// Waits until the follower's staging file holds at least `atLeast` bytes, and returns it, or nil when the
    /// transfer ended (or never started) before: it must still be incomplete (below `below` bytes) to be cut.
    private func waitForStagingProgress(_ replica: Replica, atLeast: Int, below: Int) -> (path: String, bytes: Int)? {
        var found: (path: String, bytes: Int)?
        _ = waitUntil(seconds: 60) {
            if let staging = stagingFile(replica), staging.bytes >= atLeast {
                found = staging
                return true
            }
            return (metric(replica, "tandem_snapshot_installs_total") ?? 0) >= 1
        }
        guard let found, found.bytes < below else { return nil }
        return found
    }

    /// The replica the follower is receiving a snapshot from, as its latest "receiving a snapshot" line says.
    private func sender(to replica: Replica) -> Replica? {
        let from = logLines(replica, message: "receiving a snapshot").last?["from"]
        return replicas.first { $0.id == from }
    }

    private func stagingFile(_ replica: Replica) -> (path: String, bytes: Int)? {
        let directory = replica.dataDir + "/snapshots"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        guard let name = names.first(where: { $0.hasPrefix("receiving-") && $0.hasSuffix(".part") }) else {
            return nil
        }
        let path = directory + "/" + name
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
        return size.map { (path, $0) }
    }

    // MARK: - the nginx cluster

    /// Three replicas, each an nginx WebDAV server with its own root beside a tandem whose hooks tar that root.
    private func startWebDAVCluster(snapshotEvery: Int, logRetain: Int, seedFile: String? = nil) throws {
        let nginx = try nginxExecutable()
        extraEnvironment["TANDEM_APP_STATE"] = "durable"
        extraEnvironment["TANDEM_WRITE_METHODS"] = "PUT,DELETE,MKCOL,COPY,MOVE,POST,PATCH"
        extraEnvironment["TANDEM_SNAPSHOT_EVERY"] = String(snapshotEvery)
        extraEnvironment["TANDEM_LOG_RETAIN"] = String(logRetain)
        let base = NSTemporaryDirectory() + "tandem-dav-\(UUID().uuidString)"
        scratch.append(base)
        replicas = (1...3).map { Replica(id: "n\($0)", peerPort: freePort(), dataDir: "\(base)/n\($0)/data") }
        for replica in replicas {
            let site = try WebDAVSite(nginx: nginx, directory: "\(base)/n\(replica.id.dropFirst())")
            if let seedFile {
                try FileManager.default.createDirectory(atPath: site.root + "/seed", withIntermediateDirectories: true)
                // A hard link: every root starts with the same bytes without copying them three times.
                try FileManager.default.linkItem(atPath: seedFile, toPath: site.root + "/seed/seed.bin")
            }
            sites[replica.id] = site
            try startReplica(replica)
        }
        XCTAssertNotNil(waitForLeader(seconds: 30), "no leader elected")
    }

    /// Starts (or restarts) the replica's nginx and its tandem, with the hooks on its own root.
    private func startReplica(_ replica: Replica) throws {
        let site = try XCTUnwrap(sites[replica.id])
        appLauncher = { [unowned self] in
            let nginx = try site.start()
            self.track(nginx.process)
            return nginx
        }
        try start(replica, environment: site.hookEnvironment)
    }

    private func nginxExecutable() throws -> String {
        guard let path = ["/usr/sbin/nginx", "/usr/bin/nginx"].first(where: FileManager.default.isExecutableFile)
        else { throw XCTSkip("nginx is not installed (apt-get install nginx)") }
        let version = runCommand(path, ["-V"])
        guard version.output.contains("http_dav_module") else {
            throw XCTSkip("this nginx has no WebDAV module: \(version.output)")
        }
        return path
    }

    /// Sends `operation` through the cluster until a node acknowledges it (the same Idempotency-Key on every
    /// attempt), checks the answer against the model, and applies it to the model.
    private func perform(_ operation: WebDAVModel.Operation, on model: inout WebDAVModel) throws {
        let expected = model.expectedStatus(of: operation)
        let key = "dav-\(model.operationCount)-\(UUID().uuidString)"
        let deadline = Date().addingTimeInterval(30)
        var attempt = 0
        var last = "no attempt"
        while Date() < deadline {
            let port = replicas[attempt % replicas.count].fixedClientPort
            attempt += 1
            do {
                let response = try httpRequest(
                    host: "127.0.0.1", port: port, method: operation.method, path: operation.path,
                    body: operation.body, headers: operation.headers + [("Idempotency-Key", key)])
                last = "\(response.status) \(response.bodyText.prefix(300))"
                // A write applied whose answer this node no longer has is still applied.
                let appliedAnswerLost =
                    response.status == 409 && response.bodyText.contains("idempotency_response_unavailable")
                if response.status == expected || appliedAnswerLost {
                    model.apply(operation)
                    return
                }
                if response.status < 500 { break }
            } catch {
                last = "\(error)"
            }
            usleep(50_000)
        }
        XCTFail("\(operation.method) \(operation.path): expected \(expected), got \(last)")
        throw TestFailure(description: "\(operation.method) \(operation.path) was not acknowledged")
    }

    /// Every root ends the same, paths and bytes, and equal to what the clients wrote. Sizes are compared while
    /// waiting (hashing the large file on every poll would be slow), then the SHA-256 of every file.
    private func assertRootsConverge(to model: WebDAVModel, seconds: Double = 30) throws {
        let roots = try replicas.map { try XCTUnwrap(sites[$0.id]) }
        var manifests: [[String: String]] = []
        let sameSizes = waitUntil(seconds: seconds) {
            manifests = roots.compactMap { $0.manifest(hashing: false) }
            return manifests.count == roots.count && Set(manifests).count == 1
        }
        XCTAssertTrue(sameSizes, "the roots differ: \(describeDifferences(manifests))")
        // Equal sizes may still hide an overwrite of the same size not applied everywhere yet.
        let sameBytes = waitUntil(seconds: 15) {
            manifests = roots.compactMap { $0.manifest(hashing: true) }
            return manifests.count == roots.count && Set(manifests).count == 1
        }
        XCTAssertTrue(sameBytes, "the roots' bytes differ: \(describeDifferences(manifests))")
        XCTAssertEqual(
            Set(try XCTUnwrap(manifests.first).keys.filter { !$0.hasPrefix("/seed") }),
            Set(model.files.keys).union(model.directories), "the roots do not hold what was written")
        for (path, bytes) in model.files {
            XCTAssertEqual(FileManager.default.contents(atPath: roots[0].root + path).map(Array.init), bytes, path)
        }
    }

    /// Which paths each root has different from the first one's (missing, extra or other bytes).
    private func describeDifferences(_ manifests: [[String: String]]) -> String {
        guard let first = manifests.first else { return "no root could be read" }
        return manifests.indices.dropFirst().map { index in
            let keys = Set(first.keys).union(manifests[index].keys)
            let differing = keys.filter { first[$0] != manifests[index][$0] }.sorted()
            return "root \(index + 1) vs root 1: \(differing.count) paths differ \(differing.prefix(5))"
        }.joined(separator: "; ")
    }

    // MARK: - helpers

    /// Prints what a run measured when TANDEM_TEST_TRACE is set.
    private func trace(_ text: @autoclosure () -> String) {
        if ProcessInfo.processInfo.environment["TANDEM_TEST_TRACE"] != nil { print("trace: " + text()) }
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

    private func latestIndex(_ replica: Replica) -> Int {
        ((snapshotStatus(replica)?["latest"] as? [String: Any])?["index"] as? Int) ?? 0
    }

    /// The replica's complete snapshot files, oldest first (the names sort by index, then term).
    private func snapshotFiles(_ replica: Replica) -> [String] {
        let directory = replica.dataDir + "/snapshots"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix("snapshot-") && $0.hasSuffix(".snap") }.sorted().map { directory + "/" + $0 }
    }

    private func snapshotIndex(ofFile path: String) -> UInt64 {
        let name = path.split(separator: "/").last ?? ""
        return UInt64(name.dropFirst("snapshot-".count).prefix(20)) ?? 0
    }

    /// Inverts one byte halfway through the file: past the 64-byte header, inside the payload.
    private func flipByte(inTheMiddleOf path: String) throws {
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: path))
        defer { try? handle.close() }
        let size = try handle.seekToEnd()
        XCTAssertGreaterThan(size, 200, "the snapshot is too small to damage its payload")
        let offset = max(64 + 8, size / 2)
        try handle.seek(toOffset: offset)
        let byte = try XCTUnwrap(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: [byte ^ 0xFF])
    }

    /// The JSON log lines of the replica's current tandem with this message, as string fields.
    private func logLines(_ replica: Replica, message: String) -> [[String: String]] {
        let output = replica.tandem?.process.output ?? ""
        return output.split(separator: "\n").compactMap { line in
            guard line.contains(message),
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                object["msg"] as? String == message
            else { return nil }
            return object.compactMapValues { $0 as? String }
        }
    }
}

private struct TestFailure: Error, CustomStringConvertible {
    var description: String
}

/// One replica's nginx: a root (the app's state) and a directory for its configuration, pid file and temporary
/// files, all under the test's own directory.
private final class WebDAVSite {
    let nginx: String
    let directory: String
    var root: String { directory + "/root" }

    init(nginx: String, directory: String) throws {
        self.nginx = nginx
        self.directory = directory
        for sub in ["root", "nginx"] {
            try FileManager.default.createDirectory(atPath: directory + "/" + sub, withIntermediateDirectories: true)
        }
    }

    /// The hooks: the state is a tar of the root; a restore empties the root first (nothing of the previous
    /// state may survive), unpacks standard input, and reads whatever padding follows the archive.
    var hookEnvironment: [String: String] {
        [
            "TANDEM_SNAPSHOT_SAVE": "exec:tar -C '\(root)' -cf - .",
            "TANDEM_SNAPSHOT_RESTORE":
                "exec:mkdir -p '\(root)' && find '\(root)' -mindepth 1 -delete && tar -C '\(root)' -xf - "
                + "&& cat > /dev/null",
        ]
    }

    /// Deletes the root with everything in it and leaves an empty one, as a new volume would be.
    func wipeRoot() throws {
        try FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    /// Starts nginx in the foreground on a free loopback port and returns it once it accepts connections.
    func start() throws -> (process: ManagedProcess, port: UInt16) {
        let port = freePort()
        let state = directory + "/nginx"
        let configuration = """
            daemon off;
            master_process off;
            worker_processes 1;
            pid \(state)/nginx.pid;
            error_log stderr warn;
            events { worker_connections 512; }
            http {
                access_log off;
                client_body_temp_path \(state)/body;
                proxy_temp_path \(state)/proxy;
                fastcgi_temp_path \(state)/fastcgi;
                uwsgi_temp_path \(state)/uwsgi;
                scgi_temp_path \(state)/scgi;
                client_max_body_size 0;
                server {
                    listen 127.0.0.1:\(port);
                    root \(root);
                    location / {
                        dav_methods PUT DELETE MKCOL COPY MOVE;
                        create_full_put_path on;
                        dav_access user:rw group:r all:r;
                    }
                }
            }

            """
        let path = state + "/nginx-\(port).conf"
        try configuration.write(toFile: path, atomically: true, encoding: .utf8)
        let process = try ManagedProcess(
            name: "nginx", executable: nginx, arguments: ["-p", state, "-c", path, "-e", "stderr"])
        let up = waitUntil(seconds: 10) {
            guard process.process.isRunning else { return true }
            return (try? RawClient(port: port, timeoutSeconds: 1)) != nil
        }
        guard up, process.process.isRunning else {
            process.stop()
            throw TestFailure(description: "nginx did not start on port \(port): \(process.output)")
        }
        return (process, port)
    }

    /// Every entry under the root: relative path ("/a/b") to "dir", or for a file its SHA-256 (`hashing`) or its
    /// size. Nil when the root cannot be read whole (it may be changing).
    func manifest(hashing: Bool) -> [String: String]? {
        guard let paths = try? FileManager.default.subpathsOfDirectory(atPath: root) else { return nil }
        var result: [String: String] = [:]
        var files: [String] = []
        for path in paths {
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: root + "/" + path) else {
                return nil
            }
            if attributes[.type] as? FileAttributeType == .typeDirectory {
                result["/" + path] = "dir"
            } else {
                files.append(path)
                result["/" + path] = "size \((attributes[.size] as? Int) ?? -1)"
            }
        }
        guard hashing, !files.isEmpty else { return result }
        let sums = runCommand("/bin/sh", ["-c", "cd '\(root)' && sha256sum -- \"$@\"", "sha256sum"] + files)
        guard sums.status == 0 else { return nil }
        for line in sums.output.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            result["/" + parts[1].trimmingCharacters(in: .whitespaces)] = String(parts[0])
        }
        return result.count == paths.count ? result : nil
    }
}

/// What the WebDAV clients wrote: the files (path to bytes) and directories the root must hold, and which status
/// nginx answers each operation with.
private struct WebDAVModel {
    enum Operation {
        case put(String, [UInt8])
        case delete(String)
        case makeCollection(String)
        case copy(String, to: String)
        case move(String, to: String)

        var method: String {
            switch self {
            case .put: return "PUT"
            case .delete: return "DELETE"
            case .makeCollection: return "MKCOL"
            case .copy: return "COPY"
            case .move: return "MOVE"
            }
        }

        var path: String {
            switch self {
            case .put(let path, _), .delete(let path), .makeCollection(let path), .copy(let path, _),
                .move(let path, _):
                return path
            }
        }

        var body: [UInt8] {
            if case .put(_, let bytes) = self { return bytes }
            return []
        }

        var headers: [(String, String)] {
            switch self {
            case .copy(_, let destination), .move(_, let destination): return [("Destination", destination)]
            default: return []
            }
        }
    }

    var files: [String: [UInt8]] = [:]
    /// Directories, as "/a/b" (no trailing slash).
    var directories: Set<String> = []
    private(set) var operationCount = 0

    func expectedStatus(of operation: Operation) -> Int {
        switch operation {
        case .put(let path, _): return files[path] == nil ? 201 : 204
        case .delete: return 204
        case .makeCollection: return 201
        case .copy, .move: return 204  // nginx answers a file's copy or move so, new destination or not
        }
    }

    mutating func apply(_ operation: Operation) {
        operationCount += 1
        switch operation {
        case .put(let path, let bytes):
            files[path] = bytes
            addParents(of: path)
        case .delete(let path):
            files[path] = nil
        case .makeCollection(let path):
            directories.insert(String(path.dropLast()))
            addParents(of: String(path.dropLast()))
        case .copy(let source, let destination):
            files[destination] = files[source]
        case .move(let source, let destination):
            files[destination] = files[source]
            files[source] = nil
        }
    }

    private mutating func addParents(of path: String) {
        var parent = path.split(separator: "/").dropLast()
        while !parent.isEmpty {
            directories.insert("/" + parent.joined(separator: "/"))
            parent = parent.dropLast()
        }
    }

    /// Mostly new files (in a handful of directories, created on the way), some overwritten, copied, moved or
    /// deleted, and an empty collection now and then. Copies and moves go to `/copies/` and `/moved/`.
    func randomOperation(using generator: inout SeededGenerator) -> Operation {
        let existing = files.keys.filter { $0.hasPrefix("/docs/") }.sorted()
        let roll = Int.random(in: 0..<100, using: &generator)
        let content = (0..<Int.random(in: 1...4096, using: &generator)).map { _ in
            UInt8.random(in: 0...255, using: &generator)
        }
        let fresh = "\(operationCount)-\(Int.random(in: 0..<1_000_000, using: &generator))"
        guard !existing.isEmpty, roll >= 60 else {
            return .put("/docs/d\(Int.random(in: 0..<6, using: &generator))/f\(fresh).bin", content)
        }
        let target = existing[Int.random(in: 0..<existing.count, using: &generator)]
        switch roll {
        case 60..<72: return .put(target, content)
        case 72..<82: return .copy(target, to: "/copies/c\(fresh).bin")
        case 82..<90: return .move(target, to: "/moved/m\(fresh).bin")
        case 90..<96: return .delete(target)
        default: return .makeCollection("/empty/e\(fresh)/")
        }
    }
}
