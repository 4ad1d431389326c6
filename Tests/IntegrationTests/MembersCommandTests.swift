import Foundation
import Glibc
import XCTest

/// `tandem members ...` against a fake admin listener: what the command sends, how it renders the answer, and
/// which answers make it exit 1.
final class MembersCommandTests: XCTestCase {
    func testListRendersTheTableWithADashForEachUnknown() throws {
        let server = try startServer { _ in (200, threeMembers(leader: nil)) }
        let list = try runTandem(["members", "list", "--admin", server.address])
        XCTAssertEqual(list.status, 0, list.stderr)
        XCTAssertEqual(list.stderr, "")
        let lines = list.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "leader -  configuration 7  committed yes", list.stdout)
        let rows = lines.dropFirst().map { $0.split(separator: " ").map(String.init) }
        XCTAssertEqual(
            rows,
            [
                ["ID", "ADDRESS", "ROLE", "MATCH", "LAG"], ["n1", "127.0.0.1:7401", "voter", "120", "0"],
                ["n2", "127.0.0.1:7402", "voter", "118", "2"], ["n3", "127.0.0.1:7403", "learner", "-", "-"],
            ], list.stdout)
        // The columns line up: each value starts where its heading does.
        let header = try XCTUnwrap(lines.first { $0.hasPrefix("ID") })
        let learner = try XCTUnwrap(lines.first { $0.hasPrefix("n3") })
        for (heading, value) in [("ROLE", "learner"), ("MATCH", "-")] {
            XCTAssertEqual(
                header.distance(from: header.startIndex, to: try XCTUnwrap(header.range(of: heading)).lowerBound),
                learner.distance(from: learner.startIndex, to: try XCTUnwrap(learner.range(of: value)).lowerBound),
                list.stdout)
        }
        XCTAssertEqual(server.requests.map { "\($0.method) \($0.path)" }, ["GET /members"])
    }

    func testListJSONPrintsTheRawBody() throws {
        let body = threeMembers(leader: "n1")
        let server = try startServer { _ in (200, body) }
        let list = try runTandem(["members", "list", "--json", "--admin", server.address])
        XCTAssertEqual(list.status, 0, list.stderr)
        XCTAssertEqual(list.stdout, body + "\n")
    }

    func testAddSendsTheMemberAsJSONWithTheTokenFromTheEnvironment() throws {
        let server = try startServer { _ in (200, threeMembers(leader: "n1", learner: "n4")) }
        let add = try runTandem(
            ["members", "add", "n4", "10.0.0.4:7400", "--admin", server.address],
            environment: ["TANDEM_ADMIN_TOKEN": "s3cret-token"])
        XCTAssertEqual(add.status, 0, add.stderr)
        let request = try XCTUnwrap(server.requests.first)
        XCTAssertEqual(request.method, "POST")
        XCTAssertEqual(request.path, "/admin/members")
        XCTAssertEqual(request.body, #"{"id":"n4","address":"10.0.0.4:7400"}"#)
        XCTAssertEqual(request.headers["content-type"], "application/json")
        XCTAssertEqual(request.headers["content-length"], "\(request.body.utf8.count)")
        XCTAssertEqual(request.headers["authorization"], "Bearer s3cret-token")
        // The answer is printed as the list prints it.
        XCTAssertTrue(add.stdout.hasPrefix("leader n1  configuration 7  committed yes\n"), add.stdout)
        XCTAssertTrue(add.stdout.contains("\nn4  "), add.stdout)

        // Without the variable no Authorization header is sent; an id that needs escaping stays one JSON string.
        let odd = try runTandem(["members", "add", #"n"5\"#, "h:1", "--admin", server.address])
        XCTAssertEqual(odd.status, 0, odd.stderr)
        let second = try XCTUnwrap(server.requests.last)
        XCTAssertNil(second.headers["authorization"])
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(second.body.utf8)) as? [String: String])
        XCTAssertEqual(object, ["id": #"n"5\"#, "address": "h:1"])
    }

    func testPromoteAndRemoveSendTheirMethodAndPath() throws {
        let server = try startServer { _ in (200, threeMembers(leader: "n1")) }
        let token = ["TANDEM_ADMIN_TOKEN": "s3cret-token"]
        XCTAssertEqual(
            try runTandem(["members", "promote", "n3", "--admin", server.address], environment: token).status, 0)
        XCTAssertEqual(
            try runTandem(["members", "remove", "n2", "--admin", server.address], environment: token).status, 0)
        XCTAssertEqual(try runTandem(["members", "remove", "a/b", "--admin", server.address]).status, 0)
        XCTAssertEqual(
            server.requests.map { "\($0.method) \($0.path)" },
            ["POST /admin/members/n3/promote", "DELETE /admin/members/n2", "DELETE /admin/members/a%2Fb"])
        XCTAssertEqual(
            server.requests.map { $0.headers["authorization"] }, ["Bearer s3cret-token", "Bearer s3cret-token", nil])
        XCTAssertEqual(server.requests.map(\.body), ["", "", ""])
    }

    func testAnErrorAnswerExitsOneWithItsMessageOnStandardError() throws {
        let server = try startServer { request in
            if request.path.hasSuffix("/promote") { return (502, "upstream went away") }
            return (
                409,
                #"{"error":"change_in_progress","message":"another membership change is in progress","retryable":true}"#
            )
        }
        let refused = try runTandem(["members", "add", "n4", "10.0.0.4:7400", "--admin", server.address])
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(refused.stderr, "tandem: another membership change is in progress (change_in_progress)\n")
        XCTAssertEqual(refused.stdout, "")
        // An answer that is not the listener's error JSON is shown with its status.
        let garbled = try runTandem(["members", "promote", "n4", "--admin", server.address])
        XCTAssertEqual(garbled.status, 1)
        XCTAssertEqual(garbled.stderr, "tandem: \(server.address) answered 502: upstream went away\n")
    }

    func testRemoveIfAbsentOkAcceptsOnlyAnUnknownMember() throws {
        let server = try startServer { request in
            switch request.path {
            case "/admin/members/gone":
                return (404, #"{"error":"unknown_member","message":"gone is not a member","retryable":false}"#)
            case "/admin/members/n1":
                return (409, #"{"error":"below_minimum","message":"the cluster needs 3 voters","retryable":false}"#)
            default:  // a node that predates the endpoint
                return (404, #"{"error":"not_found","message":"no endpoint","retryable":false}"#)
            }
        }
        func remove(_ id: String, _ flags: [String]) throws -> CommandResult {
            try runTandem(["members", "remove", id, "--admin", server.address] + flags)
        }
        let strict = try remove("gone", [])
        XCTAssertEqual(strict.status, 1)
        XCTAssertEqual(strict.stderr, "tandem: gone is not a member (unknown_member)\n")
        let lenient = try remove("gone", ["--if-absent-ok"])
        XCTAssertEqual(lenient.status, 0, lenient.stderr)
        XCTAssertEqual(lenient.stdout, "gone is not a member: nothing to remove\n")
        XCTAssertEqual(try remove("n1", ["--if-absent-ok"]).status, 1)
        let old = try remove("n5", ["--if-absent-ok"])
        XCTAssertEqual(old.status, 1)
        XCTAssertEqual(old.stderr, "tandem: no endpoint (not_found)\n")
        XCTAssertEqual(server.requests.count, 4)

        let help = try runTandem(["members", "remove", "--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.stdout.contains("--if-absent-ok"), help.stdout)
        XCTAssertTrue(help.stdout.contains("preStop"), help.stdout)
    }

    func testAnUnreachableAdminAddressExitsOne() throws {
        let port = freePort()
        for arguments in [["list"], ["add", "n4", "h:1"], ["promote", "n4"], ["remove", "n4", "--if-absent-ok"]] {
            let result = try runTandem(["members"] + arguments + ["--admin", "127.0.0.1:\(port)"])
            XCTAssertEqual(result.status, 1, "\(arguments)")
            XCTAssertTrue(result.stderr.hasPrefix("tandem: cannot connect to 127.0.0.1:\(port)"), result.stderr)
            XCTAssertEqual(result.stdout, "")
        }
    }

    // MARK: support

    private func startServer(
        _ respond: @escaping @Sendable (FakeAdminServer.Request) -> (Int, String)
    ) throws -> FakeAdminServer {
        let server = try FakeAdminServer(respond: respond)
        addTeardownBlock { server.stop() }
        return server
    }
}

/// A `/members` body of three members (the third a learner this node knows nothing about).
private func threeMembers(leader: String?, learner: String = "n3") -> String {
    let leaderJSON = leader.map { "\"\($0)\"" } ?? "null"
    let members = [
        #"{"id":"n1","address":"127.0.0.1:7401","role":"voter","matchIndex":120,"lagEntries":0}"#,
        #"{"id":"n2","address":"127.0.0.1:7402","role":"voter","matchIndex":118,"lagEntries":2}"#,
        #"{"id":"\#(learner)","address":"127.0.0.1:7403","role":"learner","matchIndex":null,"lagEntries":null}"#,
    ]
    let list = members.joined(separator: ",")
    return #"{"leader":\#(leaderJSON),"configurationIndex":7,"committed":true,"members":[\#(list)]}"#
}

private struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs the built `tandem` to completion with stdout and stderr kept apart (in files, so neither pipe can fill up).
/// A run that outlives the deadline is killed by its PID and fails the test.
private func runTandem(_ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-members-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let outURL = directory.appendingPathComponent("stdout")
    let errURL = directory.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL)
    let err = try FileHandle(forWritingTo: errURL)
    defer {
        try? out.close()
        try? err.close()
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: BuiltProducts.path("tandem"))
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TANDEM_") }
    env.merge(environment) { _, new in new }
    process.environment = env
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let deadline = Date().addingTimeInterval(20)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTFail("tandem \(arguments) did not exit within 20 s")
    }
    return CommandResult(
        status: process.terminationStatus,
        stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
        stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
}

/// A stand-in for a node's admin listener: HTTP/1.1 on 127.0.0.1 at a port the kernel picks, one request per
/// connection, served on its own thread. It records each request before answering, so a command that has exited
/// has been recorded.
private final class FakeAdminServer: @unchecked Sendable {  // `recorded` and `stopping` are guarded by `lock`
    struct Request: Sendable {
        var method: String
        var path: String
        /// Lower-cased names.
        var headers: [String: String]
        var body: String
    }

    let port: UInt16
    var address: String { "127.0.0.1:\(port)" }
    private let listener: Int32
    private let respond: @Sendable (Request) -> (Int, String)
    private let lock = NSLock()
    private var recorded: [Request] = []
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)

    init(respond: @escaping @Sendable (Request) -> (Int, String)) throws {
        self.respond = respond
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EMFILE) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0  // the kernel picks a free port
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else {
            let code = POSIXErrorCode(rawValue: errno) ?? .EADDRINUSE
            close(fd)
            throw POSIXError(code)
        }
        listener = fd
        port = UInt16(bigEndian: address.sin_port)
        Thread { [self] in serve() }.start()
    }

    var requests: [Request] {
        lock.lock()
        defer { lock.unlock() }
        return recorded
    }

    /// Stops accepting, waits for the serving thread to end, and closes the listening socket.
    func stop() {
        lock.lock()
        let already = stopping
        stopping = true
        lock.unlock()
        guard !already else { return }
        _ = finished.wait(timeout: .now() + 5)
        close(listener)
    }

    private var isStopping: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopping
    }

    private func serve() {
        defer { finished.signal() }
        while !isStopping {
            // A bounded wait so that `stop` is noticed; a connection is accepted as soon as it arrives.
            var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 50) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            answer(client)
            close(client)
        }
    }

    private func answer(_ client: Int32) {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var bytes = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headerEnd: Int?
        var request: Request?
        while request == nil {
            let count = recv(client, &buffer, buffer.count, 0)
            guard count > 0 else { return }
            bytes += buffer[0..<count]
            if headerEnd == nil {
                headerEnd = bytes.indices.dropLast(3).first { Array(bytes[$0..<$0 + 4]) == separator }
            }
            guard let end = headerEnd else { continue }
            let head = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
            let requestLine = head[0].split(separator: " ").map(String.init)
            guard requestLine.count == 3 else { return }
            var headers: [String: String] = [:]
            for line in head.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...]
                    .trimmingCharacters(in: .whitespaces)
            }
            let bodyLength = Int(headers["content-length"] ?? "0") ?? 0
            guard bytes.count >= end + 4 + bodyLength else { continue }
            let body = String(decoding: bytes[(end + 4)..<(end + 4 + bodyLength)], as: UTF8.self)
            request = Request(method: requestLine[0], path: requestLine[1], headers: headers, body: body)
        }
        guard let request else { return }
        lock.lock()
        recorded.append(request)
        lock.unlock()
        let (status, body) = respond(request)
        let response =
            "HTTP/1.1 \(status) Canned\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
            + "Connection: close\r\n\r\n" + body
        let out = Array(response.utf8)
        var sent = 0
        while sent < out.count {
            let count = out[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { return }
            sent += count
        }
    }
}
