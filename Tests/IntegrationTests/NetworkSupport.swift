import Foundation
import Glibc
import TandemHTTP
import XCTest

/// One HTTP/1.1 request on a fresh connection to any IPv4 `host`, with a bounded connect time: a client facing a cut
/// link gives up after `connectTimeoutMs` like a real one, instead of waiting minutes for TCP's SYN retries.
func httpRequest(
    host: String, port: UInt16, method: String, path: String, body: [UInt8] = [], headers: [(String, String)] = [],
    connectTimeoutMs: Int32 = 1500, timeoutSeconds: Int = 8
) throws -> TestResponse {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EMFILE) }
    defer { close(fd) }
    let flags = fcntl(fd, F_GETFL)
    _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr(host)
    let started = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    if started != 0 {
        guard errno == EINPROGRESS else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .ECONNREFUSED) }
        var waiting = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&waiting, 1, connectTimeoutMs) == 1 else { throw POSIXError(.ETIMEDOUT) }
        var failure: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
        guard failure == 0 else { throw POSIXError(POSIXErrorCode(rawValue: failure) ?? .ECONNREFUSED) }
    }
    _ = fcntl(fd, F_SETFL, flags)
    var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

    var head = "\(method) \(path) HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    for (name, value) in headers { head += "\(name): \(value)\r\n" }
    head += "Content-Length: \(body.count)\r\n\r\n"
    let request = Array(head.utf8) + body
    var offset = 0
    while offset < request.count {
        let sent = request[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EPIPE) }
        offset += sent
    }

    var parser = HTTPResponseParser(limits: .upstreamResponse)
    parser.expect(requestMethod: method)
    var response: HTTPResponseHead?
    var received: [UInt8] = []
    var pending: [UInt8] = []
    var done = false
    var chunk = [UInt8](repeating: 0, count: 65536)
    while !done {
        let count = recv(fd, &chunk, chunk.count, 0)
        if count == 0 {
            if response != nil { try parser.finishAtEOF { if case .end = $0 { done = true } } }
            guard done else { throw POSIXError(.ECONNRESET) }
            break
        }
        guard count > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        pending.append(contentsOf: chunk[0..<count])
        let used = try pending.withUnsafeBytes { raw in
            try parser.parse(raw) { event in
                switch event {
                case .head(let h): if h.status >= 200 { response = h }
                case .body(let bytes): received.append(contentsOf: bytes)
                case .end: if response != nil { done = true }
                }
            }
        }
        pending.removeFirst(used)
    }
    let final = try XCTUnwrap(response)
    return TestResponse(status: final.status, headers: final.headers, body: received)
}

/// Runs a command to completion (no shell) and returns its exit status and combined output.
@discardableResult
func runCommand(_ executable: String, _ arguments: [String]) -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    do { try process.run() } catch { return (-1, "\(error)") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Process ids whose command line or environment contains `marker` (a unique data directory): what a test
/// started and must have stopped. Like `pgrep -f`, but also sees the environment, where Tandem's settings live.
func processesMentioning(_ marker: String) -> [Int32] {
    let me = getpid()
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { Int32($0) }.filter { pid in
        guard pid != me else { return false }
        for file in ["cmdline", "environ"] {
            if let data = FileManager.default.contents(atPath: "/proc/\(pid)/\(file)"),
                String(decoding: data, as: UTF8.self).contains(marker)
            {
                return true
            }
        }
        return false
    }
}

/// Network namespaces, one per node, each joined by a veth pair to one bridge in the host namespace, which also
/// holds an address on the subnet so the test reaches every node at its own address. Every name carries the test
/// process's pid; `tearDown()` deletes all of it (and SIGKILLs by pid whatever still runs inside), also after a
/// failure. A link is cut by taking the host end of the node's veth down: the node keeps its address and its
/// sockets, and packets in both directions vanish, as when a cable is pulled.
final class NamespaceNetwork {
    let ipTool: String
    let tag: String
    let subnet: String
    let namespaces: [String]
    private var createdNamespaces: [String] = []
    private var createdLinks: [String] = []

    var bridge: String { "tb\(tag)" }
    func hostLink(_ node: Int) -> String { "tv\(tag)n\(node)" }
    /// Node `node` (0-based) lives at `subnet.(node + 1)`; the host side at `subnet.254`.
    func address(_ node: Int) -> String { "\(subnet).\(node + 1)" }

    private static let sequence = Locked(0)

    /// Builds the network, or throws XCTSkip when `ip` is missing or namespaces, bridges or veth pairs are not
    /// permitted here.
    init(nodes: Int) throws {
        guard
            let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else {
            throw XCTSkip("the `ip` tool (iproute2) is not installed: network-namespace tests need it")
        }
        ipTool = ip
        let serial = Self.sequence.withValue { value -> Int in
            value += 1
            return value
        }
        let pid = Int(getpid())
        tag = "\(pid)\(serial % 10)"  // at most 8 characters: interface names stay below 16
        // A /24 derived from the pid, skipping any already on a host interface (another run's, or a real one).
        let used = runCommand(ip, ["-o", "-4", "addr", "show"]).output
        var candidate = pid
        var chosen = ""
        for _ in 0..<256 {
            let third = "10.\((candidate >> 8) % 200 + 50).\(candidate % 256)"
            if !used.contains(" \(third).") {
                chosen = third
                break
            }
            candidate += 1
        }
        subnet = chosen
        namespaces = (0..<nodes).map { "tandem-\(pid)-\(serial)-n\($0 + 1)" }
        guard !chosen.isEmpty else { throw XCTSkip("no free 10.x.y.0/24 subnet for the test network") }
        do {
            try build(nodes: nodes)
        } catch {
            tearDown()
            throw error
        }
    }

    private func build(nodes: Int) throws {
        try ip(["link", "add", bridge, "type", "bridge"], skipOnFailure: "cannot create a bridge")
        createdLinks.append(bridge)
        try ip(["addr", "add", "\(subnet).254/24", "dev", bridge])
        try ip(["link", "set", bridge, "up"])
        for node in 0..<nodes {
            let namespace = namespaces[node]
            try ip(["netns", "add", namespace], skipOnFailure: "cannot create a network namespace")
            createdNamespaces.append(namespace)
            try ip(
                ["link", "add", hostLink(node), "type", "veth", "peer", "name", "eth0", "netns", namespace],
                skipOnFailure: "cannot create a veth pair")
            createdLinks.append(hostLink(node))
            try ip(["link", "set", hostLink(node), "master", bridge, "up"])
            try ip(["-n", namespace, "addr", "add", "\(address(node))/24", "dev", "eth0"])
            try ip(["-n", namespace, "link", "set", "eth0", "up"])
            try ip(["-n", namespace, "link", "set", "lo", "up"])
        }
    }

    private func ip(_ arguments: [String], skipOnFailure reason: String? = nil) throws {
        let result = runCommand(ipTool, arguments)
        guard result.status == 0 else {
            let text = "ip \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.output)"
            if let reason { throw XCTSkip("\(reason) here (not root, or no permission): \(text)") }
            throw NSError(
                domain: "NamespaceNetwork", code: Int(result.status), userInfo: [NSLocalizedDescriptionKey: text])
        }
    }

    /// Arguments that run `executable` inside node `node`'s namespace; `ip netns exec` execs it, so the pid a
    /// test gets is the real process's.
    func command(node: Int, _ executable: String, _ arguments: [String] = []) -> [String] {
        ["netns", "exec", namespaces[node], executable] + arguments
    }

    func cut(_ node: Int) throws { try ip(["link", "set", hostLink(node), "down"]) }
    func heal(_ node: Int) throws { try ip(["link", "set", hostLink(node), "up"]) }

    /// Cuts the path between two nodes only (both still reach the third and the host): a blackhole route to the
    /// other's address in each of the two namespaces.
    func separate(_ first: Int, _ second: Int) throws {
        try ip(["-n", namespaces[first], "route", "add", "blackhole", "\(address(second))/32"])
        try ip(["-n", namespaces[second], "route", "add", "blackhole", "\(address(first))/32"])
    }

    func rejoin(_ first: Int, _ second: Int) throws {
        try ip(["-n", namespaces[first], "route", "del", "blackhole", "\(address(second))/32"])
        try ip(["-n", namespaces[second], "route", "del", "blackhole", "\(address(first))/32"])
    }

    /// Pids of every process still inside any of the namespaces.
    func remainingProcesses() -> [Int32] {
        createdNamespaces.flatMap { namespace in
            runCommand(ipTool, ["netns", "pids", namespace]).output.split(whereSeparator: \.isNewline).compactMap {
                Int32($0.trimmingCharacters(in: .whitespaces))
            }
        }
    }

    /// Deletes everything this network created; idempotent.
    func tearDown() {
        for pid in remainingProcesses() { kill(pid, SIGKILL) }
        for namespace in createdNamespaces { runCommand(ipTool, ["netns", "del", namespace]) }
        createdNamespaces.removeAll()
        for link in createdLinks.reversed() { runCommand(ipTool, ["link", "del", link]) }
        createdLinks.removeAll()
    }

    /// What of this network is still visible in the host: must be empty after `tearDown()`.
    func leftovers() -> [String] {
        let links = runCommand(ipTool, ["-o", "link", "show"]).output
        let netns = runCommand(ipTool, ["netns", "list"]).output
        return namespaces.filter { netns.contains($0) }
            + ([bridge] + namespaces.indices.map(hostLink)).filter {
                links.contains("\($0):") || links.contains("\($0)@")
            }
    }

    deinit { tearDown() }
}

/// Writers that each send increments of one counter with a fresh Idempotency-Key, retrying every write (same key,
/// next node) until it is acknowledged, so each logical write must be applied exactly once. Endpoints are any
/// `host:port`, and a test can wait for progress to tell that writes resumed.
final class KeyedWriteLoad: @unchecked Sendable {  // mutable state is guarded by `state`
    struct Endpoint {
        var host: String
        var port: UInt16
    }

    private let writers: Int
    private let endpoints: @Sendable () -> [Endpoint]
    private let path: String
    private let state = Locked((acknowledged: 0, failures: [String](), running: true))
    private let finished = DispatchGroup()

    init(writers: Int, path: String = "/counters/c/incr", endpoints: @escaping @Sendable () -> [Endpoint]) {
        self.writers = writers
        self.path = path
        self.endpoints = endpoints
    }

    var acknowledged: Int { state.withValue { $0.acknowledged } }
    var failures: [String] { state.withValue { $0.failures } }

    func start() {
        for writer in 0..<writers {
            finished.enter()
            Thread { [self] in
                defer { self.finished.leave() }
                var sequence = 0
                while self.state.withValue({ $0.running }) {
                    sequence += 1
                    self.writeUntilAcknowledged(key: "w\(writer)-\(sequence)-\(UUID().uuidString)", first: writer)
                }
            }.start()
        }
    }

    private func writeUntilAcknowledged(key: String, first: Int) {
        let deadline = Date().addingTimeInterval(90)
        var attempt = first
        var last = "none"
        while Date() < deadline {
            let candidates = endpoints()
            let target = candidates[attempt % candidates.count]
            attempt += 1
            do {
                let response = try httpRequest(
                    host: target.host, port: target.port, method: "POST", path: path,
                    headers: [("Idempotency-Key", key)])
                if response.status == 200 || response.status == 409 {
                    state.withValue { $0.acknowledged += 1 }
                    return
                }
                last = "\(target.host):\(target.port) \(response.status) \(response.bodyText)"
                if response.status < 500 { break }  // a deterministic refusal: retrying cannot help
            } catch {
                last = "\(target.host):\(target.port) \(error)"
            }
            usleep(50_000)
        }
        state.withValue { $0.failures.append("\(key): \(last)") }
    }

    /// Waits until `count` more writes than `since` were acknowledged; false after `seconds`.
    func waitForProgress(beyond since: Int, count: Int = 5, seconds: Double) -> Bool {
        waitUntil(seconds: seconds) { self.acknowledged >= since + count }
    }

    /// Stops starting new writes and waits for those in flight to be acknowledged.
    func stop() {
        let wasRunning = state.withValue { state -> Bool in
            defer { state.running = false }
            return state.running
        }
        if wasRunning { _ = finished.wait(timeout: .now() + 120) }
    }
}

/// A small seeded generator (SplitMix64), so a run of random faults can be replayed from its printed seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
