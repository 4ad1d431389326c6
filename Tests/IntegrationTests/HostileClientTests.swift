import Foundation
import Glibc
import TandemHTTP
import XCTest

/// Clients (and apps) that bend HTTP: every test runs a real `tandem` in front of a tiny app that records the raw
/// bytes of every connection it accepts, so the assertions are about exactly what reached the app.
final class HostileClientTests: ProcessTestCase {
    /// A response the recording app appends after a response's framing ends; it must never reach a client.
    static let smuggled = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED"

    // MARK: 1. chunked bodies on reads that wait for their consistency level

    func testAChunkedBodyOnAReadThatWaitsReachesTheAppAsOneWellFramedRequest() throws {
        let app = try RecordingApp(test: self)
        let tandem = try startTandem(upstreamPort: app.port)
        let first = try httpRequest(port: tandem.clientPort, method: "GET", path: "/position")
        let position = try XCTUnwrap(UInt64(first.headers.first(name: "Tandem-Position") ?? ""))

        // A session read after the next write: it waits, and its whole chunked body arrives meanwhile.
        let reader = try RawClient(port: tandem.clientPort)
        reader.send(
            "GET /wait HTTP/1.1\r\nHost: x\r\nTandem-Consistency: session\r\nTandem-After: \(position + 1)\r\n"
                + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        usleep(200_000)
        XCTAssertEqual(try httpRequest(port: tandem.clientPort, method: "PUT", path: "/w", body: "x").status, 200)
        let answer = try reader.readResponse()
        XCTAssertEqual(answer.status, 200, answer.bodyText)
        // The next read on the same client connection gets its own answer, not one to left-over bytes.
        reader.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try reader.readResponse().bodyText, "ok GET /after")

        let requests = try app.recordedRequests()
        let waits = requests.filter { $0.head.target == "/wait" }
        XCTAssertEqual(waits.count, 1, "\(requests.map { $0.head.target })")
        XCTAssertEqual(waits.first.map { String(decoding: $0.body, as: UTF8.self) }, "hello world")
        XCTAssertFalse(requests.contains { $0.head.target != "/wait" && $0.head.target.contains("llo") })
    }

    // MARK: 2. bytes beyond a response's framing

    func testBytesBeyondAResponsesFramingNeverReachTheNextClient() throws {
        let app = try RecordingApp(test: self)
        let tandem = try startTandem(upstreamPort: app.port)
        let cases: [(method: String, path: String, status: Int)] = [
            ("GET", "/extra-204", 204), ("GET", "/extra-304", 304), ("GET", "/extra-length", 200),
            ("HEAD", "/extra-head", 200),
        ]
        for (method, path, status) in cases {
            let first = try RawClient(port: tandem.clientPort)
            first.send("\(method) \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
            let response = try first.readResponse(method: method)
            XCTAssertEqual(response.status, status, path)
            XCTAssertFalse(response.bodyText.contains("SMUGGLED"), path)
            usleep(100_000)
            // Another client, served over the pooled app connection if it was kept.
            let next = try httpRequest(port: tandem.clientPort, method: "GET", path: "/next")
            XCTAssertEqual(next.bodyText, "ok GET /next", "after \(method) \(path) the next client got another answer")
            // The first client's connection is still usable and in step.
            first.send("GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
            XCTAssertEqual(try first.readResponse().bodyText, "ok GET /again", path)
        }
    }

    // MARK: 3. methods

    func testMethodsAreCaseSensitiveAndUnknownOnesNeverReachTheAppUnreplicated() throws {
        let app = try RecordingApp(test: self)
        let tandem = try startTandem(upstreamPort: app.port)
        for method in ["post", "Put", "delete", "PROPPATCH", "get"] {
            let response = try httpRequest(port: tandem.clientPort, method: method, path: "/m", body: "b")
            XCTAssertEqual(response.status, 501, "\(method) got \(response.status) \(response.bodyText)")
            XCTAssertTrue(response.bodyText.contains("\"error\":\"method_not_implemented\""), response.bodyText)
        }
        let write = try httpRequest(port: tandem.clientPort, method: "POST", path: "/m", body: "b")
        XCTAssertEqual(write.status, 200)
        XCTAssertNotNil(write.headers.first(name: "Tandem-Leader"), "POST is still replicated")
        for method in ["GET", "HEAD", "OPTIONS"] {
            XCTAssertEqual(try httpRequest(port: tandem.clientPort, method: method, path: "/m").status, 200, method)
        }
        let methods = try app.recordedRequests().filter { $0.head.target == "/m" }.map { $0.head.method }
        XCTAssertEqual(methods.sorted(), ["GET", "HEAD", "OPTIONS", "POST"])
    }

    // MARK: 4. client Tandem-* fields

    func testClientTandemFieldsNeverReachTheAppOnAnyPath() throws {
        let app = try RecordingApp(test: self)
        let tandem = try startTandem(
            upstreamPort: app.port, environment: ["TANDEM_BYPASS_ROUTES": "GET /bypass/*"])
        let forged: [(String, String)] = [
            ("Tandem-Index", "999"), ("Tandem-Time", "1"), ("Tandem-Term", "7"), ("Tandem-Request-Id", "forged"),
            ("Tandem-Redelivery", "true"), ("tandem-consistency", "local"), ("Tandem-After", "0"),
            ("Tandem-Whatever", "x"),
        ]
        for (method, path) in [("GET", "/read"), ("GET", "/bypass/x"), ("PUT", "/write")] {
            let response = try httpRequest(
                port: tandem.clientPort, method: method, path: path, body: method == "PUT" ? "v" : nil,
                headers: forged)
            XCTAssertEqual(response.status, 200, "\(path): \(response.bodyText)")
        }
        let requests = try app.recordedRequests()
        for target in ["/read", "/bypass/x"] {
            let request = try XCTUnwrap(requests.first { $0.head.target == target }, target)
            let tandemFields = request.head.headers.filter { $0.name.lowercased().hasPrefix("tandem-") }
            XCTAssertTrue(tandemFields.isEmpty, "\(target) reached the app with \(tandemFields.map { $0.name })")
        }
        let write = try XCTUnwrap(requests.first { $0.head.target == "/write" })
        XCTAssertEqual(write.head.headers.values(name: "Tandem-Index").count, 1)
        XCTAssertNotEqual(write.head.headers.first(name: "Tandem-Index"), "999")
        XCTAssertNil(write.head.headers.first(name: "Tandem-Whatever"))
    }

    // MARK: 5. Forwarded and HTTP/1.0

    func testAnUnparseableForwardedFieldIsNeverMergedWithTandemsElement() throws {
        let app = try RecordingApp(test: self)
        let tandem = try startTandem(upstreamPort: app.port)
        for (method, path) in [("GET", "/fwd-read"), ("PUT", "/fwd-write")] {
            _ = try httpRequest(
                port: tandem.clientPort, method: method, path: path, body: method == "PUT" ? "v" : nil,
                headers: [("Forwarded", "for=\"1.2.3.4")])
        }
        _ = try httpRequest(
            port: tandem.clientPort, method: "GET", path: "/fwd-valid", headers: [("Forwarded", "for=192.0.2.1")])
        let requests = try app.recordedRequests()
        for path in ["/fwd-read", "/fwd-write"] {
            let request = try XCTUnwrap(requests.first { $0.head.target == path }, path)
            XCTAssertEqual(request.head.headers.values(name: "Forwarded"), ["for=127.0.0.1;proto=http"], path)
        }
        let valid = try XCTUnwrap(requests.first { $0.head.target == "/fwd-valid" })
        XCTAssertEqual(
            valid.head.headers.values(name: "Forwarded"), ["for=192.0.2.1, for=127.0.0.1;proto=http"],
            "a well-formed Forwarded keeps its elements")
    }

    func testAnHTTP10ClientNeverReceivesAChunkedResponse() throws {
        let app = try RecordingApp(test: self)
        let tandem = try startTandem(upstreamPort: app.port)
        for keepAlive in [false, true] {
            let client = try RawClient(port: tandem.clientPort, timeoutSeconds: 3)
            client.send("GET /chunked HTTP/1.0\r\nHost: x\r\n\(keepAlive ? "Connection: keep-alive\r\n" : "")\r\n")
            let raw = String(decoding: client.readUntilClosed(), as: UTF8.self)
            let parts = raw.components(separatedBy: "\r\n\r\n")
            XCTAssertGreaterThanOrEqual(parts.count, 2, raw)
            XCTAssertTrue(raw.hasPrefix("HTTP/1.1 200"), raw)
            XCTAssertFalse(parts[0].lowercased().contains("transfer-encoding"), raw)
            XCTAssertEqual(parts.dropFirst().joined(separator: "\r\n\r\n"), "hello world", raw)
        }
    }

    // MARK: 6. stalled requests and the global body budget

    func testARequestBodyThatStallsGets408AndTheConnectionCloses() throws {
        let app = try RecordingApp(test: self)
        let tandem = try startTandem(upstreamPort: app.port, environment: ["TANDEM_HEADER_TIMEOUT": "500ms"])
        for request in [
            "PUT /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
            "GET /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
            "GET /stall HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            "GET /stall HTTP/1.1\r\nHost: x\r\n",
        ] {
            let client = try RawClient(port: tandem.clientPort, timeoutSeconds: 5)
            let start = Date()
            client.send(request)
            let response = try client.readResponse()
            XCTAssertEqual(response.status, 408, request.debugDescription)
            XCTAssertTrue(response.bodyText.contains("request_timeout"), response.bodyText)
            XCTAssertLessThan(Date().timeIntervalSince(start), 3, request.debugDescription)
            XCTAssertTrue(client.isClosedByPeer(), request.debugDescription)
        }
    }

    func testBodiesBufferedAcrossAllConnectionsAreBounded() throws {
        let app = try RecordingApp(test: self)
        // With a 1 MiB body limit the budget is 16 MiB: the 17th nearly complete body cannot be held.
        let tandem = try startTandem(
            upstreamPort: app.port, environment: ["TANDEM_MAX_BODY": "1MiB", "TANDEM_HEADER_TIMEOUT": "1s"])
        let almost = [UInt8](repeating: UInt8(ascii: "a"), count: 1024 * 1024 - 1)
        var clients: [RawClient] = []
        for _ in 0..<24 {
            let client = try RawClient(port: tandem.clientPort, timeoutSeconds: 3)
            client.send("PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: \(1024 * 1024)\r\n\r\n")
            client.send(almost)
            clients.append(client)
        }
        var shed = 0
        for client in clients {
            // A held body never completes: it is shed now (503) or ends with the body timeout (408).
            guard let response = try? client.readResponse() else { continue }
            XCTAssertTrue([503, 408].contains(response.status), response.bodyText)
            if response.status == 503 {
                XCTAssertTrue(response.bodyText.contains("\"error\":\"overloaded\""), response.bodyText)
                shed += 1
            }
        }
        XCTAssertGreaterThanOrEqual(shed, 8, "beyond the budget, bodies must be shed")
        clients.removeAll()
        // The budget is given back when the connections end.
        usleep(300_000)
        XCTAssertEqual(
            try httpRequest(port: tandem.clientPort, method: "PUT", path: "/small", body: "x").status, 200)
    }

    // MARK: 7. half-closed clients

    func testAClientThatHalfClosesAfterItsRequestGetsItsResponse() throws {
        let app = try RecordingApp(test: self)
        let tandem = try startTandem(upstreamPort: app.port)
        for request in [
            "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n",
            "PUT /half HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz",
            "GET /slow HTTP/1.1\r\nHost: x\r\nTandem-Consistency: linearizable\r\n\r\n",
        ] {
            let client = try RawClient(port: tandem.clientPort)
            client.send(request)
            shutdown(client.fd, Int32(SHUT_WR))
            let response = try client.readResponse()
            XCTAssertEqual(response.status, 200, request.debugDescription)
            XCTAssertTrue(client.isClosedByPeer(), request.debugDescription)
        }
    }
}

extension RawClient {
    /// Every byte until the server closes (or the receive timeout passes).
    func readUntilClosed() -> [UInt8] {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { return received }
            received.append(contentsOf: buffer[0..<count])
        }
    }
}

/// A small app (Python, raw sockets) that writes every byte it receives to one file per connection and answers by
/// path, including answers that break their own framing (`/extra-*`).
final class RecordingApp {
    let directory: String
    let port: UInt16

    init(test: ProcessTestCase) throws {
        directory = NSTemporaryDirectory() + "recording-app-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = directory + "/app.py"
        try """
        import itertools, os, socket, sys, threading, time
        directory = sys.argv[1]
        counter = itertools.count()
        SMUGGLED = b"HTTP/1.1 200 OK\\r\\nContent-Length: 8\\r\\n\\r\\nSMUGGLED"
        def respond(method, target):
            path = target.split("?")[0]
            if path == "/slow":
                time.sleep(0.5)
            if path == "/extra-204":
                return b"HTTP/1.1 204 No Content\\r\\n\\r\\n" + SMUGGLED
            if path == "/extra-304":
                return b"HTTP/1.1 304 Not Modified\\r\\nContent-Length: 8\\r\\n\\r\\n" + SMUGGLED
            if path == "/extra-length":
                return b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok" + SMUGGLED
            if path == "/extra-head":
                return b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(SMUGGLED) + SMUGGLED
            if path == "/chunked":
                return b"HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n5\\r\\nhello\\r\\n6\\r\\n world\\r\\n0\\r\\n\\r\\n"
            body = ("ok %s %s" % (method, target)).encode()
            if method == "HEAD":
                return b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body)
            return b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body
        def serve(conn, record):
            buffer = b""
            def more():
                nonlocal buffer
                chunk = conn.recv(65536)
                if not chunk:
                    raise EOFError
                record.write(chunk)
                record.flush()
                buffer += chunk
            try:
                while True:
                    while b"\\r\\n\\r\\n" not in buffer:
                        more()
                    head, buffer = buffer.split(b"\\r\\n\\r\\n", 1)
                    lines = head.decode("latin-1").split("\\r\\n")
                    method, target = lines[0].split(" ")[0:2]
                    fields = {}
                    for line in lines[1:]:
                        name, _, value = line.partition(":")
                        fields[name.strip().lower()] = value.strip()
                    if fields.get("transfer-encoding", "").lower() == "chunked":
                        while True:
                            while b"\\r\\n" not in buffer:
                                more()
                            size_line, buffer = buffer.split(b"\\r\\n", 1)
                            size = int(size_line.split(b";")[0], 16)
                            if size == 0:
                                while not buffer.startswith(b"\\r\\n") and b"\\r\\n\\r\\n" not in buffer:
                                    more()
                                buffer = buffer[2:] if buffer.startswith(b"\\r\\n") else buffer.split(b"\\r\\n\\r\\n", 1)[1]
                                break
                            while len(buffer) < size + 2:
                                more()
                            buffer = buffer[size + 2:]
                    else:
                        length = int(fields.get("content-length", "0"))
                        while len(buffer) < length:
                            more()
                        buffer = buffer[length:]
                    conn.sendall(respond(method, target))
            except Exception:
                pass
            finally:
                record.close()
                conn.close()
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        print("example-kv listening on 127.0.0.1:%d" % server.getsockname()[1], flush=True)
        while True:
            conn, _ = server.accept()
            record = open(os.path.join(directory, "conn-%06d" % next(counter)), "wb")
            threading.Thread(target=serve, args=(conn, record), daemon=True).start()
        """.write(toFile: script, atomically: true, encoding: .utf8)
        let process = try ManagedProcess(
            name: "recording-app", executable: "/usr/bin/env", arguments: ["python3", script, directory])
        test.track(process)
        let output = try XCTUnwrap(process.waitForOutput(containing: "listening on"), process.output)
        let line = try XCTUnwrap(output.split(separator: "\n").first { $0.contains("listening on") })
        port = try XCTUnwrap(UInt16(line.split(separator: ":").last!))
    }

    struct Request {
        var head: HTTPRequestHead
        var body: [UInt8]
    }

    /// Every request the app received, parsed strictly connection by connection; fails the test when any
    /// connection carried bytes that are not whole, well-framed requests.
    func recordedRequests(file: StaticString = #filePath, line: UInt = #line) throws -> [Request] {
        usleep(100_000)  // the app flushes each read; let the last one land
        var requests: [Request] = []
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("conn-") }
        for name in names.sorted() {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
            var parser = HTTPRequestParser(limits: HTTPLimits(bodyMaxBytes: Int64.max))
            var offset = 0
            var current: Request?
            while offset < bytes.count {
                let used: Int
                do {
                    used = try bytes[offset...].withUnsafeBytes { raw in
                        try parser.parse(raw) { event in
                            switch event {
                            case .head(let head): current = Request(head: head, body: [])
                            case .body(let slice): current?.body.append(contentsOf: slice)
                            case .end:
                                if let done = current { requests.append(done) }
                                current = nil
                            }
                        }
                    }
                } catch {
                    XCTFail(
                        "\(name): bytes that are not a well-framed request: \(error) at "
                            + String(decoding: bytes[offset...].prefix(80), as: UTF8.self).debugDescription,
                        file: file, line: line)
                    break
                }
                if used == 0 { break }
                offset += used
            }
            if !parser.isIdle {
                XCTFail(
                    "\(name): a request was cut short: "
                        + String(decoding: bytes.suffix(80), as: UTF8.self).debugDescription, file: file, line: line)
            }
        }
        return requests
    }
}
