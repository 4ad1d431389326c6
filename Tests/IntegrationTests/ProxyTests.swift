import Foundation
import Glibc
import XCTest

/// The foundation's proxy path, proven with real processes: `example-kv` behind `tandem`, on free ports.
final class ProxyTests: ProcessTestCase {
    func testWritesAndReadsPassThroughToTheAppAndAreCountedByClass() throws {
        let (_, appPort) = try startApp()
        let tandem = try startTandem(upstreamPort: appPort)

        let put = try httpRequest(port: tandem.clientPort, method: "PUT", path: "/kv/greeting", body: "hello")
        XCTAssertEqual(put.status, 200)
        let get = try httpRequest(port: tandem.clientPort, method: "GET", path: "/kv/greeting")
        XCTAssertEqual(get.status, 200)
        XCTAssertEqual(get.bodyText, "hello")
        let incr = try httpRequest(port: tandem.clientPort, method: "POST", path: "/counters/visits/incr")
        XCTAssertEqual(incr.bodyText, "{\"name\":\"visits\",\"value\":1}")
        let missing = try httpRequest(port: tandem.clientPort, method: "GET", path: "/kv/absent")
        XCTAssertEqual(missing.status, 404)

        let metrics = try httpRequest(port: tandem.adminPort, method: "GET", path: "/metrics").bodyText
        XCTAssertTrue(metrics.contains("tandem_requests_total{class=\"write\",code=\"200\"} 2"), metrics)
        XCTAssertTrue(metrics.contains("tandem_requests_total{class=\"read\",code=\"200\"} 1"), metrics)
        XCTAssertTrue(metrics.contains("tandem_requests_total{class=\"read\",code=\"404\"} 1"), metrics)
        XCTAssertTrue(metrics.contains("tandem_request_duration_seconds_count{class=\"write\"} 2"), metrics)
    }

    func testForwardingHeadersAreAppendedAndHopByHopFieldsDropped() throws {
        // The app echoes nothing about headers, so check what the app stored when the client sent a value that
        // names a hop-by-hop field: the request still arrives intact and the response carries no hop-by-hop field.
        let (_, appPort) = try startApp()
        let tandem = try startTandem(upstreamPort: appPort)
        let client = try RawClient(port: tandem.clientPort)
        client.send(
            "PUT /kv/h HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok"
        )
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 200)
        XCTAssertNil(response.headers.first(name: "Keep-Alive"))
        client.send("GET /kv/h HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try client.readResponse().bodyText, "ok")
    }

    func testKeepAliveServesManyRequestsOnOneConnection() throws {
        let (_, appPort) = try startApp()
        let tandem = try startTandem(upstreamPort: appPort)
        let client = try RawClient(port: tandem.clientPort)
        for round in 0..<50 {
            client.send(
                "PUT /kv/k\(round) HTTP/1.1\r\nHost: x\r\nContent-Length: \(String(round).count)\r\n\r\n\(round)")
            XCTAssertEqual(try client.readResponse().status, 200)
            client.send("GET /kv/k\(round) HTTP/1.1\r\nHost: x\r\n\r\n")
            XCTAssertEqual(try client.readResponse().bodyText, String(round))
        }
        let metrics = try httpRequest(port: tandem.adminPort, method: "GET", path: "/metrics").bodyText
        XCTAssertTrue(
            metrics.contains("tandem_connections_accepted_total 1\n"),
            "all 100 requests must share one client connection")
    }

    func testPipelinedRequestsAreAnsweredInOrder() throws {
        let (_, appPort) = try startApp()
        let tandem = try startTandem(upstreamPort: appPort)
        let client = try RawClient(port: tandem.clientPort)
        var batch = ""
        for index in 0..<10 {
            batch += "PUT /kv/p HTTP/1.1\r\nHost: x\r\nContent-Length: \(String(index).count)\r\n\r\n\(index)"
            batch += "GET /kv/p HTTP/1.1\r\nHost: x\r\n\r\n"
        }
        client.send(batch)
        for index in 0..<10 {
            XCTAssertEqual(try client.readResponse(method: "PUT").status, 200)
            XCTAssertEqual(try client.readResponse().bodyText, String(index), "response \(index) out of order")
        }
    }

    func testChunkedRequestBodyIsDeliveredWhole() throws {
        let (_, appPort) = try startApp()
        let tandem = try startTandem(upstreamPort: appPort)
        let client = try RawClient(port: tandem.clientPort)
        client.send(
            "PUT /kv/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        )
        XCTAssertEqual(try client.readResponse().status, 200)
        client.send("GET /kv/c HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try client.readResponse().bodyText, "hello world")
    }

    func testExpectContinueIsAnsweredBeforeTheBodyIsSent() throws {
        let (_, appPort) = try startApp()
        let tandem = try startTandem(upstreamPort: appPort)
        let client = try RawClient(port: tandem.clientPort)
        client.send("PUT /kv/e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        var interim = [UInt8](repeating: 0, count: 25)
        let count = recv(client.fd, &interim, interim.count, 0)
        XCTAssertEqual(String(decoding: interim.prefix(max(0, count)), as: UTF8.self), "HTTP/1.1 100 Continue\r\n\r\n")
        client.send("data")
        XCTAssertEqual(try client.readResponse().status, 200)
    }

    func testSmugglingPatternsGet400AndTheConnectionIsClosed() throws {
        let (_, appPort) = try startApp()
        let tandem = try startTandem(upstreamPort: appPort)
        let attacks = [
            "POST /kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST /kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
            "POST /kv/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            "GET /kv/x HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
            "GET /kv/x HTTP/1.1\nHost: x\n\n",
            "GET /kv/x HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
        ]
        for attack in attacks {
            let client = try RawClient(port: tandem.clientPort)
            client.send(attack)
            let response = try client.readResponse()
            XCTAssertTrue([400, 501].contains(response.status), "\(attack.debugDescription) got \(response.status)")
            XCTAssertTrue(response.bodyText.contains("\"error\":\"bad_request\""), response.bodyText)
            XCTAssertTrue(client.isClosedByPeer(), "connection must close after \(attack.debugDescription)")
        }
        // Nothing of the attacks reached the app.
        XCTAssertEqual(try httpRequest(port: appPort, method: "GET", path: "/kv/x").status, 404)
    }

    func testBodyOverTheLimitGets413() throws {
        let (_, appPort) = try startApp()
        let tandem = try startTandem(upstreamPort: appPort, environment: ["TANDEM_MAX_BODY": "1KiB"])
        let response = try httpRequest(
            port: tandem.clientPort, method: "PUT", path: "/kv/big", body: String(repeating: "x", count: 2048))
        XCTAssertEqual(response.status, 413)
        XCTAssertTrue(response.bodyText.contains("body_too_large"), response.bodyText)
    }

    func testLargeResponseToSlowReaderKeepsTandemMemoryBounded() throws {
        let (_, appPort) = try startApp()
        // 48 MiB stored directly in the app as four 12 MiB values; GET /dump returns them all at once.
        let piece = String(repeating: "abcdefgh", count: 12 * 1024 * 1024 / 8)
        for index in 0..<4 {
            XCTAssertEqual(
                try httpRequest(port: appPort, method: "PUT", path: "/kv/huge\(index)", body: piece).status, 200)
        }
        let tandem = try startTandem(upstreamPort: appPort)
        let baseline = tandem.process.residentBytes
        let client = try RawClient(port: tandem.clientPort)
        client.send("GET /dump HTTP/1.1\r\nHost: x\r\n\r\n")
        var peak = 0
        var reads = 0
        let response = try client.readResponse(readChunkBytes: 256 * 1024, pauseMicros: 5_000) {
            reads += 1
            if reads % 4 == 0 { peak = max(peak, tandem.process.residentBytes) }
        }
        XCTAssertEqual(response.status, 200)
        XCTAssertGreaterThan(response.body.count, 48 * 1024 * 1024)
        XCTAssertLessThan(peak - baseline, 16 * 1024 * 1024, "tandem grew by \(peak - baseline) bytes relaying 48 MiB")
    }

    func testAppDownGives502AndFlipsReadinessThenRecovers() throws {
        let (app, appPort) = try startApp()
        let tandem = try startTandem(upstreamPort: appPort, environment: [:])
        XCTAssertTrue(
            waitUntil { (try? httpRequest(port: tandem.adminPort, method: "GET", path: "/readyz").status) == 200 })
        app.stop()
        let failed = try httpRequest(port: tandem.clientPort, method: "GET", path: "/kv/a")
        XCTAssertEqual(failed.status, 502)
        XCTAssertTrue(failed.bodyText.contains("\"error\":\"upstream_unavailable\""), failed.bodyText)
        XCTAssertTrue(failed.bodyText.contains("\"retryable\":true"), failed.bodyText)
        XCTAssertTrue(
            waitUntil { (try? httpRequest(port: tandem.adminPort, method: "GET", path: "/readyz").status) == 503 })
        let reasons = try httpRequest(port: tandem.adminPort, method: "GET", path: "/readyz").bodyText
        XCTAssertTrue(reasons.contains("app_unreachable"), reasons)
        XCTAssertEqual(
            try httpRequest(port: tandem.adminPort, method: "GET", path: "/healthz").status, 200,
            "liveness never depends on the app")

        _ = try startApp(port: appPort)
        XCTAssertTrue(
            waitUntil { (try? httpRequest(port: tandem.adminPort, method: "GET", path: "/readyz").status) == 200 })
        XCTAssertEqual(try httpRequest(port: tandem.clientPort, method: "GET", path: "/kv/a").status, 404)
    }

    func testSigtermDrainsTheRequestInFlightThenExitsZero() throws {
        let (_, appPort) = try startApp(extraArguments: ["--delay-ms", "1500"])
        let tandem = try startTandem(upstreamPort: appPort)
        let client = try RawClient(port: tandem.clientPort)
        client.send("PUT /kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz")
        usleep(300_000)
        tandem.process.signal(SIGTERM)
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 200, "the request in flight must be answered")
        XCTAssertEqual(response.headers.first(name: "Connection")?.lowercased(), "close")
        XCTAssertEqual(tandem.process.waitForExit(), 0)
        XCTAssertThrowsError(try RawClient(port: tandem.clientPort), "no longer accepting")
    }

    func testAdminEndpointsAnswer() throws {
        let (_, appPort) = try startApp()
        let tandem = try startTandem(upstreamPort: appPort)
        let status = try httpRequest(port: tandem.adminPort, method: "GET", path: "/status")
        XCTAssertEqual(status.status, 200)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(status.body)) as? [String: Any])
        XCTAssertEqual(object["id"] as? String, "n1")
        for key in ["role", "term", "leader", "commitIndex", "appliedIndex", "diverged", "peers"] {
            XCTAssertTrue(object.keys.contains(key), "missing \(key)")
        }
        XCTAssertEqual(try httpRequest(port: tandem.adminPort, method: "GET", path: "/nope").status, 404)
    }
}

/// Polls `condition` every 50 ms for up to `seconds`.
func waitUntil(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(50_000)
    }
    return false
}

/// The admin port's status page, checked against /status.
final class StatusPageTests: ClusterTestCase {
    func testStatusPageShowsTheMembersRolesAndAPhiChartPerPeer() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        usleep(2_200_000)  // two phi samples per peer
        let page = try httpRequest(port: leader.adminPort, method: "GET", path: "/")
        XCTAssertEqual(page.status, 200)
        XCTAssertTrue(page.headers.first(name: "Content-Type")?.hasPrefix("text/html") == true)
        let html = page.bodyText
        let status = try XCTUnwrap(self.status(leader))
        XCTAssertTrue(html.contains(">leader<") || html.contains("leader"), html)
        XCTAssertTrue(html.contains("\(status["term"]!)"), html)
        for replica in replicas where replica !== leader {
            XCTAssertTrue(html.contains(replica.id), "peer \(replica.id) missing")
        }
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, replicas.count - 1, "one chart per peer")
        XCTAssertTrue(html.contains("<polyline"), "the charts must have samples")
        XCTAssertFalse(html.contains("<script"), "no JavaScript")
        XCTAssertFalse(html.contains("src=") || html.contains("<link") || html.contains("url("), "no external assets")
    }
}

/// The proxy's timeouts towards the app, and tunnels on bypass routes.
final class UpstreamBehaviourTests: ProcessTestCase {
    func testAnAppThatDoesNotAnswerInTimeGives504UpstreamTimeout() throws {
        let (_, appPort) = try startApp(extraArguments: ["--delay-ms", "3000"])
        let tandem = try startTandem(upstreamPort: appPort, environment: ["TANDEM_UPSTREAM_TIMEOUT": "500ms"])
        let response = try httpRequest(port: tandem.clientPort, method: "GET", path: "/kv/slow")
        XCTAssertEqual(response.status, 504)
        XCTAssertTrue(response.bodyText.contains("\"error\":\"upstream_timeout\""), response.bodyText)
        let metrics = try httpRequest(port: tandem.adminPort, method: "GET", path: "/metrics").bodyText
        XCTAssertTrue(metrics.contains("tandem_upstream_errors_total{kind=\"timeout\"} 1"), metrics)
    }

    /// A connect the app never completes (its accept queue full: the kernel drops the SYN, and its own retries are
    /// seconds apart) is given up after TANDEM_UPSTREAM_CONNECT_TIMEOUT and tried afresh: once the app accepts
    /// again, the write is applied on a new connection instead of waiting on the lost one.
    func testAnApplyConnectThatNeverCompletesIsGivenUpAndRetried() throws {
        let flag = NSTemporaryDirectory() + "accept-\(UUID().uuidString)"
        let (app, appPort) = try startPythonApp(
            name: "frozen-app",
            source: """
                import os, socket, sys, threading, time
                server = socket.socket()
                server.bind(("127.0.0.1", 0))
                server.listen(0)
                port = server.getsockname()[1]
                # Fill the accept queue (one connection with backlog 0): the kernel now drops every new SYN.
                fillers = []
                for _ in range(2):
                    filler = socket.socket()
                    filler.setblocking(False)
                    filler.connect_ex(("127.0.0.1", port))
                    fillers.append(filler)
                time.sleep(0.2)
                print("frozen app listening on 127.0.0.1:%d" % port, flush=True)
                while not os.path.exists(sys.argv[1]):
                    time.sleep(0.05)
                def serve(conn):
                    data = b""
                    while True:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                        while b"\\r\\n\\r\\n" in data:
                            head, data = data.split(b"\\r\\n\\r\\n", 1)
                            length = 0
                            for line in head.split(b"\\r\\n")[1:]:
                                name, _, value = line.partition(b":")
                                if name.strip().lower() == b"content-length":
                                    length = int(value)
                            while len(data) < length:
                                data += conn.recv(65536)
                            data = data[length:]
                            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
                while True:
                    conn, _ = server.accept()
                    threading.Thread(target=serve, args=(conn,), daemon=True).start()
                """, arguments: [flag])
        _ = app
        let tandem = try startTandem(
            upstreamPort: appPort, environment: ["TANDEM_UPSTREAM_CONNECT_TIMEOUT": "1s"], waitUntilReady: false)
        final class Answer: @unchecked Sendable {  // guarded by `lock`
            private let lock = NSLock()
            private var stored: TestResponse?
            var value: TestResponse? {
                get { lock.withLock { stored } }
                set { lock.withLock { stored = newValue } }
            }
        }
        let answer = Answer()
        let port = tandem.clientPort
        let writer = Thread {
            answer.value = try? httpRequest(port: port, method: "PUT", path: "/kv/a", body: "1", timeoutSeconds: 40)
        }
        // The node elects itself and takes the write only once it leads; retry until the write is in the log.
        XCTAssertTrue(
            waitUntil(seconds: 20) { tandem.process.output.contains("\"msg\":\"role changed\"") }, tandem.process.output
        )
        usleep(300_000)
        writer.start()
        XCTAssertTrue(
            waitUntil(seconds: 20) { tandem.process.output.contains("no connection to the app within 1000 ms") },
            "the stuck connect was not given up: \(tandem.process.output.suffix(2000))")
        FileManager.default.createFile(atPath: flag, contents: nil)
        XCTAssertTrue(waitUntil(seconds: 30) { answer.value != nil }, "the write was never answered")
        XCTAssertEqual(answer.value?.status, 200, answer.value?.bodyText ?? "")
    }

    /// More reads in flight than the pool's idle floor (128) keep their app connections: 200 keep-alive clients
    /// reading three times each cost the app 200 connections, not 200 new ones per burst above the floor (the
    /// pool used to close every connection released beyond 128, then dial again for the next burst: at 256 clients
    /// that was a connect and a close for every other read). The surplus over the floor is closed only once it
    /// has idled for the pool's surplus timeout.
    func testABurstAboveTheIdleFloorReusesItsAppConnections() throws {
        let (_, appPort) = try startPythonApp(
            name: "counting-app",
            source: """
                import socket, threading, time
                lock = threading.Lock()
                carried = set()
                server = socket.socket()
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                server.bind(("127.0.0.1", 0))
                server.listen(1024)
                print("counting app listening on 127.0.0.1:%d" % server.getsockname()[1], flush=True)
                def serve(conn, number):
                    data = b""
                    while True:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                        while b"\\r\\n\\r\\n" in data:
                            head, data = data.split(b"\\r\\n\\r\\n", 1)
                            if head.startswith(b"GET /count "):
                                with lock:
                                    body = str(len(carried)).encode()
                            else:
                                with lock:
                                    carried.add(number)
                                time.sleep(0.2)
                                body = b"ok"
                            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
                number = 0
                while True:
                    conn, _ = server.accept()
                    number += 1
                    threading.Thread(target=serve, args=(conn, number), daemon=True).start()
                """)
        let tandem = try startTandem(upstreamPort: appPort)
        let clients = try (0..<200).map { _ in try RawClient(port: tandem.clientPort) }
        for _ in 0..<3 {
            for client in clients { client.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") }
            for client in clients { XCTAssertEqual(try client.readResponse().bodyText, "ok") }
        }
        let carried = try httpRequest(port: appPort, method: "GET", path: "/count").bodyText
        XCTAssertEqual(carried, "200", "app connections that carried a read, for 600 reads by 200 clients")
        let metrics = try httpRequest(port: tandem.adminPort, method: "GET", path: "/metrics").bodyText
        XCTAssertTrue(metrics.contains("tandem_upstream_connections{state=\"idle\"} 200\n"), metrics)
        // The 72 above the floor go once they have idled for the surplus timeout (5 s), the floor stays.
        XCTAssertTrue(
            waitUntil(seconds: 15) {
                let text = (try? httpRequest(port: tandem.adminPort, method: "GET", path: "/metrics").bodyText) ?? ""
                return text.contains("tandem_upstream_connections{state=\"idle\"} 128\n")
            }, "the idle surplus was not closed")
    }

    func testUpgradeOnABypassRouteIsTunnelledBothWays() throws {
        let script = NSTemporaryDirectory() + "upgrade-\(UUID().uuidString).py"
        try """
        import socket, threading
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        print("example-kv listening on 127.0.0.1:%d" % server.getsockname()[1], flush=True)
        def serve(conn):
            data = b""
            while b"\\r\\n\\r\\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            if b"upgrade: echo" in data.lower():
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\\r\\nConnection: Upgrade\\r\\nUpgrade: echo\\r\\n\\r\\n")
                rest = data.split(b"\\r\\n\\r\\n", 1)[1]
                if rest:
                    conn.sendall(rest.upper())
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    conn.sendall(chunk.upper())
            else:
                conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
            conn.close()
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
        """.write(toFile: script, atomically: true, encoding: .utf8)
        let app = try ManagedProcess(name: "upgrade-app", executable: "/usr/bin/env", arguments: ["python3", script])
        track(app)
        let line = try XCTUnwrap(
            app.waitForOutput(containing: "listening on")?.split(separator: "\n").first { $0.contains("listening on") })
        let appPort = try XCTUnwrap(UInt16(line.split(separator: ":").last!))
        let tandem = try startTandem(upstreamPort: appPort, environment: ["TANDEM_BYPASS_ROUTES": "GET /ws/*"])
        let client = try RawClient(port: tandem.clientPort)
        client.send("GET /ws/chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !String(decoding: received, as: UTF8.self).contains("\r\n\r\n") {
            let count = recv(client.fd, &buffer, buffer.count, 0)
            guard count > 0 else { return XCTFail("no upgrade answer") }
            received.append(contentsOf: buffer[0..<count])
        }
        XCTAssertTrue(
            String(decoding: received, as: UTF8.self).hasPrefix("HTTP/1.1 101"),
            String(decoding: received, as: UTF8.self))
        for word in ["hello", "tunnel"] {
            client.send(word)
            var echoed = [UInt8]()
            while echoed.count < word.count {
                let count = recv(client.fd, &buffer, buffer.count, 0)
                guard count > 0 else { return XCTFail("tunnel closed") }
                echoed.append(contentsOf: buffer[0..<count])
            }
            XCTAssertEqual(String(decoding: echoed, as: UTF8.self), word.uppercased())
        }
        let metrics = try httpRequest(port: tandem.adminPort, method: "GET", path: "/metrics").bodyText
        XCTAssertFalse(metrics.contains("class=\"write\""), "an upgrade on a bypass route is never replicated")
    }
}
