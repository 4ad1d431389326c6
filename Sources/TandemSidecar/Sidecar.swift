// TandemSidecar: the process around the layers. It owns the client listener and its proxy path to the local
// app, the admin listener, metrics, readiness and the shutdown sequence; later it owns the node runtime that
// drives the consensus core. It must never parse bytes itself (TandemHTTP does), never call libevent directly
// (TandemNet does), and never block the loop thread.

import Glibc
import Logging
import TandemNet

/// Everything the sidecar needs to run, resolved from configuration by the executable.
public struct SidecarOptions: Sendable {
    public var nodeID = "tandem"
    public var proxy = ProxySettings()
    public var adminHost = "0.0.0.0"
    public var adminPort: UInt16 = 9400
    public var adminToken: String?
    /// Configured peers (id, address), shown by /status until replication reports on them.
    public var peers: [(id: String, address: String)] = []
    /// How long SIGTERM waits for in-flight requests before closing them.
    public var drainTimeoutMs: Int64 = 10_000
    public var appProbeIntervalMs: Int64 = 1_000

    public init() {}
}

/// The running sidecar. Create it, then call `run()` on the thread that created it.
public final class Sidecar {
    private let options: SidecarOptions
    private let log: Logger
    private let loop: EventLoop
    private let metrics = Metrics()
    private let health = AppHealth()
    private let proxy: ProxyServer
    private let admin: AdminServer
    private let probe: AppProbe
    private var signalWatchers: [SignalWatcher] = []
    private var drainTimer: TandemNet.Timer?
    private var isDraining = false
    private let startedAtMs = EventLoop.preciseNowMs()

    public init(options: SidecarOptions, log: Logger) throws {
        self.options = options
        self.log = log
        ignoreBrokenPipeSignals()
        loop = try EventLoop()
        admin = try AdminServer(
            loop: loop, host: options.adminHost, port: options.adminPort, metrics: metrics,
            adminToken: options.adminToken)
        proxy = try ProxyServer(loop: loop, settings: options.proxy, metrics: metrics, health: health, log: log)
        probe = AppProbe(loop: loop, host: options.proxy.upstreamHost, port: options.proxy.upstreamPort, health: health)
        admin.handler = { [unowned self] method, path, query in self.adminRoute(method: method, path: path, query: query) }
        health.onChange = { [unowned self] reachable in
            if reachable {
                self.log.info("app answers", metadata: ["upstream": "\(self.upstreamAddress)"])
            } else {
                self.log.warning("app unreachable", metadata: ["upstream": "\(self.upstreamAddress)"])
            }
        }
    }

    private var upstreamAddress: String { "\(options.proxy.upstreamHost):\(options.proxy.upstreamPort)" }

    /// Serves until SIGTERM or SIGINT, then drains and returns the exit code (0).
    public func run() -> Int32 {
        for signalNumber in [SIGTERM, SIGINT] {
            signalWatchers.append(SignalWatcher(loop: loop, signal: signalNumber) { [unowned self] number in
                self.beginShutdown(signal: number)
            })
        }
        probe.start(intervalMs: options.appProbeIntervalMs)
        log.info(
            "listening",
            metadata: [
                "node": "\(options.nodeID)",
                "client": "\(options.proxy.listenHost):\(proxy.port)",
                "admin": "\(options.adminHost):\(admin.port)",
                "upstream": "\(upstreamAddress)",
            ])
        loop.run()
        log.info("stopped")
        return 0
    }

    private func beginShutdown(signal number: Int32) {
        guard !isDraining else {
            log.warning("second signal: stopping now")
            finishShutdown()
            return
        }
        isDraining = true
        log.info("draining", metadata: ["signal": "\(number)", "inFlight": "\(proxy.sessionCount)"])
        proxy.onAllSessionsEnded = { [unowned self] in self.finishShutdown() }
        drainTimer = TandemNet.Timer(loop: loop, priority: .control) { [unowned self] in
            self.log.warning("drain timeout: closing the remaining connections", metadata: ["open": "\(self.proxy.sessionCount)"])
            self.finishShutdown()
        }
        drainTimer?.schedule(afterMs: options.drainTimeoutMs)
        proxy.beginDrain()
    }

    private func finishShutdown() {
        proxy.onAllSessionsEnded = nil
        drainTimer?.invalidate()
        proxy.closeAll()
        probe.stop()
        admin.close()
        for watcher in signalWatchers { watcher.invalidate() }
        loop.stop()
    }

    // MARK: admin endpoints

    private func adminRoute(method: String, path: String, query: String) -> AdminResponse {
        switch (method, path) {
        case ("GET", "/healthz"), ("HEAD", "/healthz"):
            return .json(200, "{\"status\":\"ok\"}")
        case ("GET", "/readyz"), ("HEAD", "/readyz"):
            let reasons = readinessProblems()
            let list = reasons.map { jsonString($0) }.joined(separator: ",")
            return .json(reasons.isEmpty ? 200 : 503, "{\"ready\":\(reasons.isEmpty),\"reasons\":[\(list)]}")
        case ("GET", "/metrics"):
            publishProcessGauges()
            return AdminResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics.render())
        case ("GET", "/status"):
            return .json(200, statusJSON())
        case ("POST", "/admin/transfer-leadership"):
            return .json(409, errorJSON("no_replication", "leadership transfer needs a replicated cluster; this build proxies only", false))
        default:
            return .json(404, errorJSON("not_found", "no endpoint \(method) \(path)", false))
        }
    }

    private func readinessProblems() -> [String] {
        var reasons: [String] = []
        if isDraining { reasons.append("draining") }
        if !health.isReachable { reasons.append("app_unreachable") }
        return reasons
    }

    private func statusJSON() -> String {
        let peers = options.peers.map { peer in
            "{\"id\":\(jsonString(peer.id)),\"address\":\(jsonString(peer.address)),\"connected\":false}"
        }.joined(separator: ",")
        return "{\"id\":\(jsonString(options.nodeID)),\"role\":\"standalone\",\"term\":0,\"leader\":null,"
            + "\"commitIndex\":0,\"appliedIndex\":0,\"diverged\":false,\"replication\":false,"
            + "\"app\":{\"address\":\(jsonString(upstreamAddress)),\"reachable\":\(health.isReachable)},"
            + "\"draining\":\(isDraining),\"uptimeMs\":\(EventLoop.preciseNowMs() - startedAtMs),\"peers\":[\(peers)]}"
    }

    private func publishProcessGauges() {
        metrics.setGauge("tandem_app_reachable", help: "1 when the local app accepts connections.", value: health.isReachable ? 1 : 0)
        metrics.setGauge("tandem_process_resident_memory_bytes", help: "Resident set size of this process.", value: Double(residentMemoryBytes()))
    }
}

/// Resident set size from /proc/self/statm (pages), for the metrics endpoint.
func residentMemoryBytes() -> Int {
    guard let file = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(file) }
    var size = 0
    var resident = 0
    guard fscanf_statm(file, &size, &resident) else { return 0 }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

private func fscanf_statm(_ file: UnsafeMutablePointer<FILE>, _ size: inout Int, _ resident: inout Int) -> Bool {
    var buffer = [CChar](repeating: 0, count: 128)
    guard fgets(&buffer, Int32(buffer.count), file) != nil else { return false }
    let fields = String(cString: buffer).split(separator: " ")
    guard fields.count >= 2, let total = Int(fields[0]), let rss = Int(fields[1]) else { return false }
    size = total
    resident = rss
    return true
}
