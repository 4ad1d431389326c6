import Foundation
import Glibc
import XCTest

/// Two independent three-node clusters behind haproxy, run from `Docker/sharding/haproxy.cfg` itself (only its
/// addresses are replaced by loopback ports), so the example cannot drift from what is tested: every key lands in
/// exactly the shard its slot names, each shard's replicas stay identical, and a leader killed in one shard loses
/// no acknowledged write and moves no key to the other shard.
final class ShardingTests: ClusterTestCase {
    /// One shard: an independent cluster, the haproxy backend that fronts it and the slots the example gives it.
    struct Shard {
        let backend: String
        let secret: String
        let slots: ClosedRange<UInt32>
        let replicas: [Replica]
    }

    /// One write sent through haproxy and what came back.
    struct Write {
        /// The key as the app stores it (percent-decoded); the path carries `segment`.
        let key: String
        let segment: String
        let value: String
        var status: Int?
        var answeredBy: String?
    }

    func testEachShardHoldsExactlyItsKeysThroughALeaderKillInOneShard() throws {
        guard let haproxy = Self.haproxyExecutable() else {
            throw XCTSkip("haproxy is not installed (scripts/ensure-deps.sh --test installs it)")
        }
        let shardA = try startShard(backend: "shard_a", ids: ["a1", "a2", "a3"], slots: 0...511)
        let shardB = try startShard(backend: "shard_b", ids: ["b1", "b2", "b3"], slots: 512...1023)
        let shards = [shardA, shardB]
        let proxy = try startHAProxy(executable: haproxy, shards: shards)
        XCTAssertTrue(
            waitUntil(seconds: 15) {
                proxy.serverStates().count == 6 && proxy.serverStates().values.allSatisfy { $0 == "UP" }
            },
            "haproxy never saw all six nodes ready: \(proxy.serverStates())")

        let keyless = try httpRequest(port: proxy.clientPort, method: "GET", path: "/dump")
        XCTAssertEqual(keyless.status, 404, "a path without a key belongs to no shard: \(keyless.bodyText)")

        // Before any failure: 200 keys, each in exactly its shard.
        var writes = (0..<200).map { Self.write(Self.key($0, prefix: "before"), through: proxy) }
        try checkPlacement(of: writes, in: shards)

        // Under load: kill shard A's leader pair, restart it, and keep writing through haproxy all along.
        let leader = try XCTUnwrap(on(shardA) { waitForLeader() }, "shard A has no leader")
        let load = Load()
        defer { load.stop.set() }  // also when the test fails early: the writers must not outlive it
        let writers = (0..<2).map { writer in
            Thread {
                var index = 0
                while !load.stop.isSet && index < 1500 {
                    load.record(Self.write(Self.key(index, prefix: "load\(writer)"), through: proxy))
                    index += 1
                }
                load.finished.signal()
            }
        }
        writers.forEach { $0.start() }
        XCTAssertTrue(waitUntil(seconds: 20) { load.acknowledged >= 40 }, "the load did not get going")
        on(shardA) { crash(leader) }
        let acknowledgedAtKill = load.acknowledged
        XCTAssertTrue(
            waitUntil(seconds: 15) { proxy.serverStates()["shard_a/\(leader.id)"]?.hasPrefix("DOWN") == true },
            "haproxy did not take the dead node out: \(proxy.serverStates())")
        let survivors = shardA.replicas.filter { $0 !== leader }
        XCTAssertNotNil(on(shardA) { waitForLeader(among: survivors, seconds: 20) }, "shard A elected no new leader")
        try on(shardA) { try start(leader) }
        XCTAssertNotNil(on(shardA) { waitForLeader(seconds: 30) }, "the restarted pair did not rejoin shard A")
        XCTAssertTrue(
            waitUntil(seconds: 15) { proxy.serverStates().values.allSatisfy { $0 == "UP" } },
            "haproxy did not take the restarted node back: \(proxy.serverStates())")
        let acknowledgedAtRestart = load.acknowledged
        XCTAssertTrue(
            waitUntil(seconds: 20) { load.acknowledged >= acknowledgedAtRestart + 40 },
            "writes did not continue after the restart")
        load.stop.set()
        for _ in writers { XCTAssertEqual(load.finished.wait(timeout: .now() + 60), .success, "a writer hung") }
        let loadWrites = load.writes
        XCTAssertGreaterThan(
            acknowledgedAtRestart, acknowledgedAtKill, "no write was acknowledged between the kill and the restart")
        writes += loadWrites
        try checkPlacement(of: writes, in: shards)
        print("sharding: \(writes.count) writes, \(loadWrites.count) under the leader kill")
    }

    // MARK: - Shards

    /// Starts one cluster of example-kv + tandem pairs with its own cluster secret (one secret per shard, so a
    /// node given another shard's peer address cannot join it).
    private func startShard(backend: String, ids: [String], slots: ClosedRange<UInt32>) throws -> Shard {
        let secret = "sharding-secret-\(backend)"
        extraEnvironment["TANDEM_CLUSTER_SECRET"] = secret
        try startCluster(ids: ids)
        return Shard(backend: backend, secret: secret, slots: slots, replicas: replicas)
    }

    /// Runs `body` with `shard` as the cluster the `ClusterTestCase` helpers act on (`replicas` and the cluster
    /// secret a restart uses); both are put back afterwards.
    private func on<Result>(_ shard: Shard, _ body: () throws -> Result) rethrows -> Result {
        let savedReplicas = replicas
        let savedEnvironment = extraEnvironment
        replicas = shard.replicas
        extraEnvironment["TANDEM_CLUSTER_SECRET"] = shard.secret
        defer {
            replicas = savedReplicas
            extraEnvironment = savedEnvironment
        }
        return try body()
    }

    /// Every shard's three replicas hold the same state, and that state is exactly the written keys whose slot the
    /// shard owns, with their last values; every write was answered by the shard its key belongs to.
    private func checkPlacement(
        of writes: [Write], in shards: [Shard], file: StaticString = #filePath, line: UInt = #line
    )
        throws
    {
        let unacknowledged = writes.filter { $0.status != 200 }.map {
            "\($0.key): \($0.status.map(String.init) ?? "none")"
        }
        XCTAssertEqual(unacknowledged, [], "writes not acknowledged", file: file, line: line)
        let misrouted = writes.filter { write in
            write.answeredBy != shards.first { $0.slots.contains(Self.slot(of: write.key)) }?.backend
        }.map { "\($0.key) answered by \($0.answeredBy ?? "none")" }
        XCTAssertEqual(misrouted, [], "keys routed to a shard their slot does not name", file: file, line: line)
        for shard in shards {
            let dump = try XCTUnwrap(
                on(shard) { waitForConvergence(seconds: 30) },
                "\(shard.backend) replicas differ: "
                    + on(shard) { divergenceReport() }, file: file, line: line)
            let object = try XCTUnwrap(
                JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any], dump, file: file, line: line)
            let stored = try XCTUnwrap(object["kv"] as? [String: String], dump, file: file, line: line)
            var expected: [String: String] = [:]
            for write in writes where shard.slots.contains(Self.slot(of: write.key)) {
                expected[write.key] = write.value
            }
            XCTAssertFalse(expected.isEmpty, "\(shard.backend) owns none of the keys", file: file, line: line)
            XCTAssertEqual(stored, expected, "\(shard.backend) does not hold exactly its keys", file: file, line: line)
        }
    }

    // MARK: - Keys and routing

    /// Key `index`: one in ten carries an escaped slash (`%2F`), so haproxy must hash the key as the app decodes it.
    private static func key(_ index: Int, prefix: String) -> (key: String, segment: String) {
        index % 10 == 0 ? ("\(prefix)/\(index)", "\(prefix)%2F\(index)") : ("\(prefix)-\(index)", "\(prefix)-\(index)")
    }

    /// The example's slot of a key, computed without haproxy: CRC-32 (IEEE 802.3, as zlib and haproxy's `crc32`)
    /// of the decoded key, modulo 1024.
    static func slot(of key: String) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in key.utf8 {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return (crc ^ 0xFFFF_FFFF) % 1024
    }

    /// PUTs the key through haproxy, retried with one Idempotency-Key until a node of its shard acknowledges it.
    private static func write(_ key: (key: String, segment: String), through proxy: HAProxy) -> Write {
        let value = "value-of-\(key.key)"
        let writer = RetryingWriter { [proxy.clientPort] }
        let response = writer.write(method: "PUT", path: "/kv/\(key.segment)", body: value, key: "put-\(key.key)")
        return Write(
            key: key.key, segment: key.segment, value: value, status: response?.status,
            answeredBy: response?.headers.first(name: "X-Tandem-Shard"))
    }

    // MARK: - haproxy

    /// A running haproxy: its client port and its stats page.
    struct HAProxy {
        let clientPort: UInt16
        let statsPort: UInt16

        /// Each server's state as haproxy sees it ("UP", "DOWN", "UP 1/2"...), keyed "backend/server".
        func serverStates() -> [String: String] {
            guard let csv = try? httpRequest(port: statsPort, method: "GET", path: "/stats;csv", timeoutSeconds: 2),
                csv.status == 200
            else { return [:] }
            let rows = csv.bodyText.split(separator: "\n").map {
                $0.split(separator: ",", omittingEmptySubsequences: false)
            }
            guard let header = rows.first, let status = header.firstIndex(of: "status") else { return [:] }
            var states: [String: String] = [:]
            for row in rows.dropFirst() where row.count > status && row[1] != "FRONTEND" && row[1] != "BACKEND" {
                states["\(row[0])/\(row[1])"] = String(row[status])
            }
            return states
        }
    }

    private static func haproxyExecutable() -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/local/sbin"]
        return directories.map { "\($0)/haproxy" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Checks (`haproxy -c`) and starts haproxy on the example configuration, pointed at `shards`; it is stopped by
    /// PID at tear-down with every other process.
    private func startHAProxy(executable: String, shards: [Shard]) throws -> HAProxy {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let example = try String(
            contentsOf: root.appendingPathComponent("Docker/sharding/haproxy.cfg"), encoding: .utf8)
        let proxy = HAProxy(clientPort: freePort(), statsPort: freePort())
        var servers: [String: Replica] = [:]
        for shard in shards { for replica in shard.replicas { servers["\(shard.backend)/\(replica.id)"] = replica } }
        let configuration = try Self.localized(example, proxy: proxy, servers: servers)
        let file = NSTemporaryDirectory() + "tandem-sharding-\(UUID().uuidString).cfg"
        try configuration.write(toFile: file, atomically: true, encoding: .utf8)

        let check = try ManagedProcess(name: "haproxy-check", executable: executable, arguments: ["-c", "-f", file])
        track(check)
        XCTAssertEqual(check.waitForExit(), 0, "haproxy -c refused the configuration: \(check.output)")
        let process = try ManagedProcess(name: "haproxy", executable: executable, arguments: ["-db", "-f", file])
        track(process)
        let listening = waitUntil(seconds: 10) {
            (try? httpRequest(port: proxy.statsPort, method: "GET", path: "/stats;csv", timeoutSeconds: 2))?.status
                == 200
        }
        XCTAssertTrue(listening, "haproxy did not start: \(process.output)")
        return proxy
    }

    /// The example with each `bind` on a loopback port and each server at its replica's client port, checked on its
    /// admin port; every other line is the example's own. Fails when the example names a server the test does not
    /// have, or leaves one out.
    static func localized(_ example: String, proxy: HAProxy, servers: [String: Replica]) throws -> String {
        var section = ""
        var placed: Set<String> = []
        var binds: [String] = []
        let lines = example.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            var words = line.split(separator: " ").map(String.init)
            guard let first = words.first, !first.hasPrefix("#") else { return String(line) }
            if !line.hasPrefix(" ") {
                section = words.count > 1 ? words[1] : first
                return String(line)
            }
            let indent = String(line.prefix { $0 == " " })
            switch first {
            case "bind":
                binds.append(section)
                let port = section == "stats" ? proxy.statsPort : proxy.clientPort
                return indent + "bind 127.0.0.1:\(port)"
            case "server" where words.count > 2:
                let name = "\(section)/\(words[1])"
                guard let replica = servers[name], let portWord = words.firstIndex(of: "port"),
                    portWord + 1 < words.count
                else { return "#unknown server \(name)" }
                placed.insert(name)
                words[2] = "127.0.0.1:\(replica.clientPort)"
                words[portWord + 1] = String(replica.adminPort)
                return indent + words.joined(separator: " ")
            default:
                return String(line)
            }
        }
        XCTAssertEqual(placed, Set(servers.keys), "the example's servers are not the test's six nodes")
        XCTAssertEqual(binds.sorted(), ["clients", "stats"], "the example's listeners changed")
        return lines.joined(separator: "\n")
    }
}

/// What the load threads wrote, shared with the test thread.
private final class Load: @unchecked Sendable {  // `recorded` is guarded by `lock`
    let stop = Flag()
    let finished = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var recorded: [ShardingTests.Write] = []

    func record(_ write: ShardingTests.Write) { lock.withLock { recorded.append(write) } }
    var writes: [ShardingTests.Write] { lock.withLock { recorded } }
    var acknowledged: Int { lock.withLock { recorded.filter { $0.status == 200 }.count } }
}
