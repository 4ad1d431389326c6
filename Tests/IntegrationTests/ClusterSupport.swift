import Foundation
import Glibc
import XCTest

/// A free TCP port on 127.0.0.1 (bound, read, released). Peers must know each other's ports before they start.
/// A port no socket holds now, chosen below the kernel's ephemeral range (32768 and up): a port from that range
/// can be taken as the local end of any outgoing connection (a peer link, an upstream connection) in the moment
/// between this check and the listener's bind, which made cluster starts fail with "Address already in use".
/// Ports already handed out are never handed out again in this process: a cluster's ports are all chosen before
/// any of its nodes binds one, so two replicas of one test could otherwise be given the same free port.
func freePort() -> UInt16 {
    for _ in 0..<500 {
        let candidate = UInt16.random(in: 20_000...32_000)
        guard portIsFree(candidate) else { continue }
        let isNew = handedOutPorts.withValue { ports in
            if ports.count > 8_000 { ports.removeAll() }
            return ports.insert(candidate).inserted
        }
        if isNew { return candidate }
    }
    preconditionFailure("no free port between 20000 and 32000")
}

private let handedOutPorts = Locked(Set<UInt16>())

private func portIsFree(_ port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = port.bigEndian
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return bound == 0
}

/// One replica: an example-kv app and the tandem beside it, as in a pod.
final class Replica {
    let id: String
    let peerPort: UInt16
    let dataDir: String
    var app: ManagedProcess?
    var appPort: UInt16 = 0
    var tandem: TandemProcess?

    /// Client and admin ports stay the same across restarts, as a service's addresses do.
    let fixedClientPort = freePort()
    let fixedAdminPort = freePort()

    init(id: String, peerPort: UInt16, dataDir: String) {
        self.id = id
        self.peerPort = peerPort
        self.dataDir = dataDir
    }

    var clientPort: UInt16 { tandem!.clientPort }
    var adminPort: UInt16 { tandem!.adminPort }
    var pid: Int32 { tandem!.process.pid }
}

/// Three (or five) replicas on loopback, started and stopped by the test.
class ClusterTestCase: ProcessTestCase {
    var replicas: [Replica] = []
    var extraEnvironment: [String: String] = [
        "TANDEM_CLUSTER_SECRET": "integration-secret", "TANDEM_APP_STATE": "memory",
    ]
    /// How long `startCluster` waits for the first leader (a test with a long election timeout waits longer).
    var leaderWaitSeconds: Double = 15
    /// Starts the app of a replica; example-kv unless a test needs another app.
    var appLauncher: (() throws -> (ManagedProcess, UInt16))?

    func startCluster(size: Int = 3) throws {
        try startCluster(ids: (1...size).map { "n\($0)" })
    }

    /// Starts one replica per id (ids as in TANDEM_NODE_ID: up to 64 letters, digits, '.', '_' or '-').
    func startCluster(ids: [String]) throws {
        let root = NSTemporaryDirectory() + "tandem-cluster-\(UUID().uuidString)"
        replicas = ids.map { Replica(id: $0, peerPort: freePort(), dataDir: "\(root)/\($0)") }
        for replica in replicas { try start(replica) }
        XCTAssertNotNil(waitForLeader(seconds: leaderWaitSeconds), "no leader elected")
    }

    var peersVariable: String {
        replicas.map { "\($0.id)=127.0.0.1:\($0.peerPort)" }.joined(separator: ",")
    }

    /// Starts (or restarts) the replica's app and its tandem, with the same data directory and peer port.
    func start(_ replica: Replica, waitUntilReady: Bool = false, environment: [String: String] = [:]) throws {
        let (app, appPort) = try appLauncher?() ?? startApp()
        replica.app = app
        replica.appPort = appPort
        try startTandemOnly(replica, waitUntilReady: waitUntilReady, environment: environment)
    }

    /// Starts (or restarts) only the replica's tandem, beside the app that keeps running (as when Kubernetes
    /// restarts one container of a pod).
    func startTandemOnly(_ replica: Replica, waitUntilReady: Bool = false, environment: [String: String] = [:])
        throws
    {
        var env = extraEnvironment
        if appLauncher == nil && env["TANDEM_SNAPSHOT_SAVE"] == nil {
            // example-kv keeps its state in memory: with its snapshot endpoints as the hooks, every restart order
            // of Tandem and the app is exact (the app is reset from a snapshot, then the log after it replayed).
            env["TANDEM_SNAPSHOT_SAVE"] = "GET /snapshot"
            env["TANDEM_SNAPSHOT_RESTORE"] = "PUT /snapshot"
        }
        env["TANDEM_NODE_ID"] = replica.id
        env["TANDEM_PEERS"] = peersVariable
        env["TANDEM_PEER_LISTEN"] = "127.0.0.1:\(replica.peerPort)"
        env["TANDEM_DATA_DIR"] = replica.dataDir
        env["TANDEM_LISTEN"] = "127.0.0.1:\(replica.fixedClientPort)"
        env["TANDEM_ADMIN_LISTEN"] = "127.0.0.1:\(replica.fixedAdminPort)"
        env.merge(environment) { _, new in new }
        replica.tandem = try startTandem(
            upstreamPort: replica.appPort, environment: env, waitUntilReady: waitUntilReady)
    }

    /// Kills the replica's tandem and app with SIGKILL (a crashed pod).
    func crash(_ replica: Replica) {
        if let tandem = replica.tandem {
            kill(tandem.process.pid, SIGKILL)
            _ = tandem.process.waitForExit()
        }
        if let app = replica.app {
            kill(app.pid, SIGKILL)
            _ = app.waitForExit()
        }
    }

    /// Kills the replica's app with SIGKILL and starts a new one on the same port at once, with `arguments` (an
    /// app process restarted by its supervisor).
    func restartApp(_ replica: Replica, arguments: [String]) throws {
        if let app = replica.app {
            kill(app.pid, SIGKILL)
            _ = app.waitForExit()
        }
        replica.app = try startApp(extraArguments: arguments, port: replica.appPort).0
    }

    func status(_ replica: Replica) -> [String: Any]? {
        guard let response = try? httpRequest(port: replica.adminPort, method: "GET", path: "/status"),
            response.status == 200
        else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
    }

    /// The replica every live node names as leader, once they agree.
    func waitForLeader(among candidates: [Replica]? = nil, excluding excluded: String? = nil, seconds: Double = 15)
        -> Replica?
    {
        let pool = candidates ?? replicas
        var found: Replica?
        _ = waitUntil(seconds: seconds) {
            let statuses = pool.compactMap { status($0) }
            guard statuses.count == pool.count else { return false }
            let leaders = Set(statuses.compactMap { $0["leader"] as? String })
            guard leaders.count == 1, let leader = leaders.first, leader != excluded,
                let replica = pool.first(where: { $0.id == leader }),
                (status(replica)?["role"] as? String) == "leader"
            else { return false }
            // Like an orchestrator's readiness gate: every node applied what was committed and serves clients.
            guard
                pool.allSatisfy({ (try? httpRequest(port: $0.adminPort, method: "GET", path: "/readyz").status) == 200 }
                )
            else {
                return false
            }
            found = replica
            return true
        }
        return found
    }

    /// Waits until every replica's app holds the same state, and returns it.
    func waitForConvergence(seconds: Double = 20) -> String? {
        var dump: String?
        _ = waitUntil(seconds: seconds) {
            let dumps = replicas.compactMap {
                try? httpRequest(port: $0.appPort, method: "GET", path: "/dump").bodyText
            }
            guard dumps.count == replicas.count, Set(dumps).count == 1 else { return false }
            dump = dumps[0]
            return true
        }
        return dump
    }

    /// What each replica's app holds and its tandem reports, with the end of its log: the message for a test whose
    /// replicas did not converge.
    func divergenceReport() -> String {
        replicas.map { replica in
            let dump = (try? httpRequest(port: replica.appPort, method: "GET", path: "/dump").bodyText) ?? "no answer"
            let statusText =
                (try? httpRequest(port: replica.adminPort, method: "GET", path: "/status").bodyText) ?? "no answer"
            let lines = (replica.tandem?.process.output ?? "").split(separator: "\n")
            // A crash's message and first frames come before its long backtrace: kept apart from the tail.
            let crash =
                lines.firstIndex { $0.contains("Fatal error") || $0.contains("failed: ") || $0.contains("Crash at") }
                .map { lines[$0..<min(lines.count, $0 + 12)].joined(separator: "\n") + "\n...\n" } ?? ""
            let log = crash + lines.suffix(40).joined(separator: "\n")
            return "== \(replica.id)\napp: \(dump.prefix(2000))\nstatus: \(statusText.prefix(3000))\nlog:\n\(log)"
        }.joined(separator: "\n")
    }
}

/// A client that retries a write with the same Idempotency-Key on every node until it is acknowledged.
struct RetryingWriter {
    let ports: () -> [UInt16]

    /// Returns the response that acknowledged the write, or nil if none did before the deadline.
    func write(method: String, path: String, body: String, key: String, seconds: Double = 30) -> TestResponse? {
        let deadline = Date().addingTimeInterval(seconds)
        var attempt = 0
        while Date() < deadline {
            let candidates = ports()
            let port = candidates[attempt % candidates.count]
            attempt += 1
            let started = Date()
            let response = try? httpRequest(
                port: port, method: method, path: path, body: body, headers: [("Idempotency-Key", key)],
                timeoutSeconds: 8)
            if let response, response.status < 500 { return response }
            if ProcessInfo.processInfo.environment["TANDEM_TEST_TRACE"] != nil {
                print(
                    "write \(key) to :\(port) -> \(response.map { "\($0.status) \($0.bodyText)" } ?? "no answer") after \(Int(Date().timeIntervalSince(started) * 1000)) ms"
                )
            }
            usleep(50_000)
        }
        return nil
    }
}

/// Threads that send writes without an Idempotency-Key to one port as fast as they are answered, ignoring the
/// answers: such writes are pipelined to the apps, so several are in flight to each app at any moment.
final class UnkeyedWriteLoad: Sendable {
    private let running = Locked(true)
    private let finished = DispatchGroup()

    init(threads: Int, port: UInt16) {
        for thread in 0..<threads {
            finished.enter()
            Thread { [running, finished] in
                defer { finished.leave() }
                var sequence = 0
                while running.withValue({ $0 }) {
                    sequence += 1
                    _ = try? httpRequest(
                        port: port, method: "PUT", path: "/kv/load\(thread)-\(sequence)", body: "x", timeoutSeconds: 10)
                }
            }.start()
        }
    }

    /// Stops the threads and waits for their last requests; calling it again does nothing.
    func stop() {
        running.withValue { $0 = false }
        finished.wait()
    }
}

/// A value shared by load threads and the test thread.
final class Locked<Value>: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withValue<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
