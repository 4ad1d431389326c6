import Foundation
import Glibc
import TandemHTTP
import XCTest

/// Where `swift build` put the executables: next to this test bundle.
enum BuiltProducts {
    static let directory: String = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let path = String(decoding: buffer.prefix(max(0, count)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var url = URL(fileURLWithPath: path).deletingLastPathComponent()
        // The bundle may be a directory (`*.xctest/...`) on some layouts: climb to the build products folder.
        while url.path.contains(".xctest") { url.deleteLastPathComponent() }
        return url.path
    }()

    static func path(_ name: String) -> String { directory + "/" + name }
}

/// A child process started by a test and stopped by PID when the test ends, also when it fails.
final class ManagedProcess: @unchecked Sendable {  // output is guarded by `lock`
    let process = Process()
    let name: String
    private let outputPipe = Pipe()
    private let lock = NSLock()
    private var captured = Data()
    private var drained = false

    private static let setpriv = "/usr/bin/setpriv"

    init(name: String, executable: String, arguments: [String] = [], environment: [String: String] = [:]) throws {
        self.name = name
        // Started through setpriv, which asks the kernel to kill the child when the thread that started it (the
        // test runner's) exits, then executes the program in its place (same PID): a runner killed mid-test does
        // not leave nodes running that load the machine and hold ports.
        if FileManager.default.isExecutableFile(atPath: Self.setpriv) {
            process.executableURL = URL(fileURLWithPath: Self.setpriv)
            process.arguments = ["--pdeathsig", "KILL", "--", executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TANDEM_") }
        env.merge(environment) { _, new in new }
        process.environment = env
        process.standardOutput = outputPipe
        process.standardError = outputPipe
        outputPipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock()
            self.captured.append(data)
            self.lock.unlock()
        }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    var output: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: captured, as: UTF8.self)
    }

    /// Waits until the output contains `text`; returns the output, or nil on timeout or early exit.
    func waitForOutput(containing text: String, timeoutSeconds: Double = 20) -> String? {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            let now = output
            if now.contains(text) { return now }
            if !process.isRunning {
                usleep(50_000)
                return output.contains(text) ? output : nil
            }
            usleep(10_000)
        }
        return nil
    }

    func signal(_ number: Int32) {
        if process.isRunning { kill(pid, number) }
    }

    /// Waits for the process to exit; returns its status, or nil on timeout.
    func waitForExit(timeoutSeconds: Double = 20) -> Int32? {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        guard !process.isRunning else { return nil }
        drainOutput()
        return process.terminationStatus
    }

    /// After exit, collects whatever output the readability handler has not delivered yet.
    private func drainOutput() {
        let handle = outputPipe.fileHandleForReading
        handle.readabilityHandler = nil
        lock.lock()
        defer { lock.unlock() }
        guard !drained else { return }
        drained = true
        if let rest = try? handle.readToEnd() { captured.append(rest) }
    }

    /// Stops the process by PID: SIGTERM, then SIGKILL if it lingers.
    func stop() {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        if waitForExit(timeoutSeconds: 5) == nil {
            kill(pid, SIGKILL)
            _ = waitForExit(timeoutSeconds: 5)
        }
        outputPipe.fileHandleForReading.readabilityHandler = nil
    }

    /// Resident memory from /proc/<pid>/status, in bytes.
    var residentBytes: Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let digits = line.split(separator: " ").dropFirst().first ?? "0"
            return (Int(digits) ?? 0) * 1024
        }
        return 0
    }

    deinit { stop() }
}

/// Processes a test started, stopped in reverse order at tear-down.
class ProcessTestCase: XCTestCase {
    private var processes: [ManagedProcess] = []

    override func tearDown() {
        for process in processes.reversed() { process.stop() }
        processes.removeAll()
        super.tearDown()
    }

    /// Starts `example-kv` on a free port and returns it with its port.
    func startApp(extraArguments: [String] = [], port: UInt16 = 0) throws -> (ManagedProcess, UInt16) {
        let app = try ManagedProcess(
            name: "example-kv", executable: BuiltProducts.path("example-kv"),
            arguments: ["--port", String(port)] + extraArguments)
        processes.append(app)
        let output = try XCTUnwrap(
            app.waitForOutput(containing: "listening on"), "example-kv did not start: \(app.output)")
        let line = try XCTUnwrap(output.split(separator: "\n").first { $0.contains("listening on") })
        let chosen = try XCTUnwrap(UInt16(line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)))
        return (app, chosen)
    }

    /// Starts `tandem` in front of `upstreamPort` on free client and admin ports.
    func startTandem(upstreamPort: UInt16, environment: [String: String] = [:], waitUntilReady: Bool = true) throws
        -> TandemProcess
    {
        var env = [
            "TANDEM_LISTEN": "127.0.0.1:0",
            "TANDEM_ADMIN_LISTEN": "127.0.0.1:0",
            "TANDEM_PEER_LISTEN": "127.0.0.1:0",
            "TANDEM_UPSTREAM": "127.0.0.1:\(upstreamPort)",
            "TANDEM_LOG_FORMAT": "json",
            "TANDEM_NODE_ID": "n1",
            "TANDEM_DATA_DIR": NSTemporaryDirectory() + "tandem-test-\(UUID().uuidString)",
        ]
        env.merge(environment) { _, new in new }
        let process = try ManagedProcess(name: "tandem", executable: BuiltProducts.path("tandem"), environment: env)
        processes.append(process)
        let output = try XCTUnwrap(
            process.waitForOutput(containing: "\"msg\":\"listening\""), "tandem did not start: \(process.output)")
        let line = try XCTUnwrap(output.split(separator: "\n").first { $0.contains("\"msg\":\"listening\"") })
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        func port(_ key: String) throws -> UInt16 {
            let address = try XCTUnwrap(object[key] as? String)
            return try XCTUnwrap(UInt16(address.split(separator: ":").last!))
        }
        let tandem = TandemProcess(
            process: process, clientPort: try port("client"), adminPort: try port("admin"), peerPort: try port("peer"))
        if waitUntilReady {
            // Like an orchestrator, send traffic only once /readyz says so (a leader is known, the app answers).
            let ready = waitUntil(seconds: 20) {
                (try? httpRequest(port: tandem.adminPort, method: "GET", path: "/readyz").status) == 200
            }
            XCTAssertTrue(ready, "tandem did not become ready: \(process.output)")
        }
        return tandem
    }

    func track(_ process: ManagedProcess) { processes.append(process) }

    /// Starts a small Python app from `source`, which prints "... listening on HOST:PORT" once it serves, and
    /// returns it with its port. Stopped by PID at tear-down like every other process.
    func startPythonApp(name: String, source: String, arguments: [String] = []) throws -> (ManagedProcess, UInt16) {
        let script = NSTemporaryDirectory() + "\(name)-\(UUID().uuidString).py"
        try source.write(toFile: script, atomically: true, encoding: .utf8)
        let app = try ManagedProcess(
            name: name, executable: "/usr/bin/env", arguments: ["python3", script] + arguments)
        track(app)
        let output = try XCTUnwrap(app.waitForOutput(containing: "listening on"), app.output)
        let line = try XCTUnwrap(output.split(separator: "\n").first { $0.contains("listening on") })
        return (app, try XCTUnwrap(UInt16(line.split(separator: ":").last!)))
    }
}

struct TandemProcess {
    let process: ManagedProcess
    let clientPort: UInt16
    let adminPort: UInt16
    let peerPort: UInt16
}

/// A parsed HTTP response as a test sees it.
struct TestResponse {
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]
    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// A blocking HTTP/1.1 client over a raw socket, so tests control every byte (pipelining, smuggling, trickling).
final class RawClient {
    let fd: Int32
    private var buffer: [UInt8] = []

    /// Connects or throws. The descriptor is stored only once connected: a throwing initializer of a fully
    /// initialized object still runs `deinit`, and closing a failed descriptor there a second time closed whatever
    /// socket another test thread had just been given the same number for (reads then got other requests' answers).
    /// `sourceHost` binds the local end first (any 127.x.y.z is local on Linux: a second client address).
    init(port: UInt16, host: String = "127.0.0.1", sourceHost: String? = nil, timeoutSeconds: Int = 15) throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw POSIXError(.EMFILE) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if let sourceHost {
            var source = sockaddr_in()
            source.sin_family = sa_family_t(AF_INET)
            source.sin_addr.s_addr = inet_addr(sourceHost)
            let bound = withUnsafePointer(to: &source) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else {
                close(descriptor)
                throw POSIXError(.EADDRNOTAVAIL)
            }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr(host)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            close(descriptor)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .ECONNREFUSED)
        }
        fd = descriptor
    }

    deinit { close(fd) }

    func send(_ text: String) { send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if sent <= 0 { return }
            offset += sent
        }
    }

    /// Reads one response (any framing). `readChunkBytes` and `pauseMicros` make a slow reader.
    func readResponse(
        method: String = "GET", readChunkBytes: Int = 65536, pauseMicros: UInt32 = 0, afterEachRead: (() -> Void)? = nil
    ) throws -> TestResponse {
        var parser = HTTPResponseParser(limits: .upstreamResponse)
        parser.expect(requestMethod: method)
        var head: HTTPResponseHead?
        var body: [UInt8] = []
        var done = false
        func feed() throws {
            let used = try buffer.withUnsafeBytes { raw in
                try parser.parse(raw) { event in
                    switch event {
                    case .head(let h): if h.status >= 200 || h.status == 101 { head = h }
                    case .body(let bytes): body.append(contentsOf: bytes)
                    case .end: if head != nil { done = true }
                    }
                }
            }
            buffer.removeFirst(used)
        }
        try feed()
        var chunk = [UInt8](repeating: 0, count: readChunkBytes)
        while !done {
            if pauseMicros > 0 { usleep(pauseMicros) }
            let count = recv(fd, &chunk, chunk.count, 0)
            if count <= 0 {
                if count == 0, head != nil {
                    _ = try? parser.finishAtEOF { event in if case .end = event { done = true } }
                    if done { break }
                }
                throw POSIXError(count == 0 ? .ECONNRESET : (POSIXErrorCode(rawValue: errno) ?? .EIO))
            }
            buffer.append(contentsOf: chunk[0..<count])
            try feed()
            afterEachRead?()
        }
        let final = try XCTUnwrap(head)
        return TestResponse(status: final.status, headers: final.headers, body: body)
    }

    /// True when the server closed the connection (EOF) within the receive timeout.
    func isClosedByPeer() -> Bool {
        var byte = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(fd, &byte, byte.count, 0)
            if count == 0 { return true }
            if count < 0 { return errno == ECONNRESET }
        }
    }
}

/// One request on a fresh connection.
func httpRequest(
    port: UInt16, method: String, path: String, body: String? = nil, headers: [(String, String)] = [],
    timeoutSeconds: Int = 15
) throws -> TestResponse {
    let client = try RawClient(port: port, timeoutSeconds: timeoutSeconds)
    var text = "\(method) \(path) HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    for (name, value) in headers { text += "\(name): \(value)\r\n" }
    if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
    text += "\r\n" + (body ?? "")
    client.send(text)
    return try client.readResponse(method: method)
}
