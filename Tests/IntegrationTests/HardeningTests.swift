import Foundation
import Glibc
import XCTest

/// The admin listener under hostile or careless clients: idle sockets, slow senders, pipelined requests that are
/// never read, and admin actions without a token or from a browser.
final class AdminHardeningTests: ProcessTestCase {
    private func startNode(_ environment: [String: String] = [:]) throws -> TandemProcess {
        let (_, appPort) = try startApp()
        return try startTandem(upstreamPort: appPort, environment: environment)
    }

    func testHealthzAnswersWhileThreeHundredIdleAdminSocketsAreOpen() throws {
        let node = try startNode()
        // Each socket sends nothing at all: the kubelet's probe must still get its answer.
        let idle = try (0..<300).map { _ in try RawClient(port: node.adminPort, timeoutSeconds: 3) }
        usleep(300_000)
        let probe = try httpRequest(port: node.adminPort, method: "GET", path: "/healthz", timeoutSeconds: 3)
        XCTAssertEqual(probe.status, 200)
        // Kept open until here: every one of them counted against the admin connection cap.
        XCTAssertEqual(idle.count, 300)
        let metrics = try httpRequest(port: node.adminPort, method: "GET", path: "/metrics").bodyText
        let evicted = metrics.split(separator: "\n").first { $0.hasPrefix("tandem_admin_connections_evicted_total ") }
        XCTAssertGreaterThanOrEqual(Double(evicted?.split(separator: " ").last ?? "") ?? 0, 45, metrics)
    }

    func testAnAdminRequestWhoseHeadersNeverCompleteIsClosedAfterTheHeaderTimeout() throws {
        let node = try startNode(["TANDEM_HEADER_TIMEOUT": "1s", "TANDEM_IDLE_TIMEOUT": "2s"])
        let slow = try RawClient(port: node.adminPort, timeoutSeconds: 6)
        slow.send("GET /healthz HTTP/1.1\r\nHost: x\r\n")
        let started = Date()
        XCTAssertTrue(slow.isClosedByPeer(), "a half-sent admin request was kept open")
        XCTAssertLessThan(Date().timeIntervalSince(started), 4)
        // An idle keep-alive connection goes too, after the idle timeout.
        let idle = try RawClient(port: node.adminPort, timeoutSeconds: 8)
        idle.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try idle.readResponse().status, 200)
        let idleSince = Date()
        XCTAssertTrue(idle.isClosedByPeer(), "an idle admin connection was kept open")
        XCTAssertLessThan(Date().timeIntervalSince(idleSince), 5)
    }

    func testPipelinedMetricsRequestsThatAreNeverReadDoNotGrowTheNode() throws {
        let node = try startNode()
        let oneScrape = try httpRequest(port: node.adminPort, method: "GET", path: "/metrics")
        XCTAssertEqual(oneScrape.status, 200)
        let requests = min(20_000, 48 * 1024 * 1024 / max(1, oneScrape.body.count))
        let before = node.process.residentBytes
        let greedy = try RawClient(port: node.adminPort)
        var sendTimeout = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(greedy.fd, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, socklen_t(MemoryLayout<timeval>.size))
        greedy.send(String(repeating: "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", count: requests))
        // Unbounded, the node renders every scrape into the output buffer (about 12 MB a second in a debug build).
        usleep(6_000_000)
        let growth = node.process.residentBytes - before
        XCTAssertLessThan(
            growth, 16 * 1024 * 1024,
            "\(requests) pipelined scrapes of \(oneScrape.body.count) bytes grew the node by \(growth) bytes")
        XCTAssertEqual(
            try httpRequest(port: node.adminPort, method: "GET", path: "/healthz", timeoutSeconds: 3).status, 200)
    }

    func testAConnectionThatNeverReadsItsAnswersIsClosedAfterTheIdleTimeout() throws {
        let node = try startNode(["TANDEM_IDLE_TIMEOUT": "2s"])
        let greedy = try RawClient(port: node.adminPort, timeoutSeconds: 8)
        var sendTimeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(greedy.fd, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, socklen_t(MemoryLayout<timeval>.size))
        var small: Int32 = 4096
        setsockopt(greedy.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        greedy.send(String(repeating: "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", count: 2000))
        // The node stopped reading it with its output full; the idle timeout must still end it.
        usleep(4_000_000)
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var sawEnd = false
        let deadline = Date().addingTimeInterval(6)
        while Date() < deadline {
            let count = recv(greedy.fd, &buffer, buffer.count, 0)
            if count == 0 || (count < 0 && errno == ECONNRESET) {
                sawEnd = true
                break
            }
            if count < 0 { break }
        }
        XCTAssertTrue(sawEnd, "a connection whose answers were never read was kept open")
    }

    /// A local address that is not loopback, or nil on a host that has none.
    private func nonLoopbackAddress() -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return nil }
        defer { freeifaddrs(list) }
        var cursor = list
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET) else {
                continue
            }
            let ipv4 = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
            guard let text = inet_ntoa(ipv4).map({ String(cString: $0) }), !text.hasPrefix("127.") else { continue }
            return text
        }
        return nil
    }

    private func transfer(
        _ node: TandemProcess, host: String = "127.0.0.1", headers: [(String, String)] = []
    ) throws -> TestResponse {
        let client = try RawClient(port: node.adminPort, host: host)
        var text = "POST /admin/transfer-leadership?to=n2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        client.send(text + "Content-Length: 0\r\n\r\n")
        return try client.readResponse(method: "POST")
    }

    func testAdminActionsWithoutAConfiguredTokenAreRefusedOffLoopback() throws {
        guard let outside = nonLoopbackAddress() else { throw XCTSkip("this host has no non-loopback address") }
        let node = try startNode(["TANDEM_ADMIN_LISTEN": "0.0.0.0:0"])
        let remote = try transfer(node, host: outside)
        XCTAssertEqual(remote.status, 403, remote.bodyText)
        XCTAssertTrue(remote.bodyText.contains("TANDEM_ADMIN_TOKEN"), remote.bodyText)
        // From loopback the action reaches the node (which refuses it for its own reasons: n2 is no member).
        let local = try transfer(node)
        XCTAssertEqual(local.status, 409, local.bodyText)
        // Reads stay open to anyone who can reach the port.
        let status = try RawClient(port: node.adminPort, host: outside)
        status.send("GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(try status.readResponse().status, 200)
    }

    func testBrowserRequestsToAdminActionsAreRefused() throws {
        let node = try startNode()
        for headers in [
            [("Origin", "http://evil.example")], [("Sec-Fetch-Site", "cross-site")],
            [("Sec-Fetch-Site", "same-site")],
        ] {
            let response = try transfer(node, headers: headers)
            XCTAssertEqual(response.status, 403, "\(headers): \(response.bodyText)")
        }
    }

    func testAConfiguredTokenIsRequiredEvenFromLoopback() throws {
        let node = try startNode(["TANDEM_ADMIN_TOKEN": "s3cret-token"])
        XCTAssertEqual(try transfer(node).status, 401)
        XCTAssertEqual(try transfer(node, headers: [("Authorization", "Bearer s3cret-tokeN")]).status, 401)
        XCTAssertEqual(try transfer(node, headers: [("Authorization", "Bearer s3cret-token2")]).status, 401)
        XCTAssertEqual(try transfer(node, headers: [("Authorization", "Bearer s3cret-token")]).status, 409)
        let browser = try transfer(
            node, headers: [("Authorization", "Bearer s3cret-token"), ("Origin", "http://evil.example")])
        XCTAssertEqual(browser.status, 403)
    }
}

extension AdminHardeningTests {
    func testTheTransferLeadershipCommandSendsTheTokenFromItsEnvironment() throws {
        let node = try startNode(["TANDEM_ADMIN_TOKEN": "s3cret-token"])
        func run(_ environment: [String: String]) throws -> ManagedProcess {
            let command = try ManagedProcess(
                name: "transfer", executable: BuiltProducts.path("tandem"),
                arguments: ["transfer-leadership", "n2", "--admin", "127.0.0.1:\(node.adminPort)"],
                environment: environment)
            track(command)
            XCTAssertEqual(command.waitForExit(), 1, command.output)
            return command
        }
        XCTAssertTrue(try run([:]).output.contains("unauthorized"))
        // With the token the node hears the request and refuses it for its own reason: n2 is no member.
        XCTAssertTrue(try run(["TANDEM_ADMIN_TOKEN": "s3cret-token"]).output.contains("transfer_refused"))
    }
}

/// Per-key rate limits under a flood of distinct keys.
final class RateLimitKeyFloodTests: ProcessTestCase {
    func testDistinctHeaderValuesNeitherEvictALimitedClientNorPassUnlimited() throws {
        let (_, appPort) = try startApp()
        let node = try startTandem(
            upstreamPort: appPort,
            environment: [
                "TANDEM_RATE_LIMIT": "1/m;burst=2", "TANDEM_RATE_LIMIT_KEY": "header:X-Client",
                "TANDEM_RATE_LIMIT_KEYS": "8",
            ])
        func get(_ client: String) throws -> Int {
            try httpRequest(port: node.clientPort, method: "GET", path: "/kv/x", headers: [("X-Client", client)])
                .status
        }
        XCTAssertNotEqual(try get("victim"), 429)
        XCTAssertNotEqual(try get("victim"), 429)
        XCTAssertEqual(try get("victim"), 429)
        var floodLimited = 0
        for index in 0..<50 where try get("flood-\(index)") == 429 { floodLimited += 1 }
        XCTAssertEqual(try get("victim"), 429, "the flood of distinct keys forgave the victim's debt")
        // 7 newcomers fit in the table; the other 43 share one overflow bucket with a burst of 2.
        XCTAssertGreaterThanOrEqual(floodLimited, 40)
        let metrics = try httpRequest(port: node.adminPort, method: "GET", path: "/metrics").bodyText
        let overflow = metrics.split(separator: "\n").first { $0.hasPrefix("tandem_rate_limit_overflow_total ") }
        XCTAssertEqual(Double(overflow?.split(separator: " ").last ?? "") ?? 0, 43, metrics)
    }
}

/// Keeps `count` idle connections open to each port from `sourceHost`, reopening the ones the server closes, until
/// stopped: strangers that hold the peer port's pending-handshake table.
final class IdleSocketFlood: Sendable {
    private let stopFlag = Locked(false)
    private let openCount = Locked(0)

    /// Connections open right now.
    var held: Int { openCount.withValue { $0 } }

    init(ports: [UInt16], count: Int, sourceHost: String) {
        let state = stopFlag
        let open = openCount
        let thread = Thread {
            struct Slot {
                var fd: Int32 = -1
                var openedAt = Date.distantPast
                var retryAt = Date.distantPast
                /// Connections in a row that the server closed within a second (evictions).
                var shortLived = 0
                let port: UInt16
            }
            var slots = ports.flatMap { port in (0..<count).map { _ in Slot(port: port) } }
            func connectIdle(_ port: UInt16) -> Int32 {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var source = sockaddr_in()
                source.sin_family = sa_family_t(AF_INET)
                source.sin_addr.s_addr = inet_addr(sourceHost)
                var target = sockaddr_in()
                target.sin_family = sa_family_t(AF_INET)
                target.sin_port = port.bigEndian
                target.sin_addr.s_addr = inet_addr("127.0.0.1")
                let ok = withUnsafePointer(to: &source) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                    }
                }
                let connected =
                    ok
                    && withUnsafePointer(to: &target) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                        }
                    }
                if !connected {
                    close(fd)
                    return -1
                }
                return fd
            }
            while !state.withValue({ $0 }) {
                let now = Date()
                for index in slots.indices where slots[index].fd < 0 && now >= slots[index].retryAt {
                    slots[index].fd = connectIdle(slots[index].port)
                    slots[index].openedAt = now
                }
                let openNow = slots.filter { $0.fd >= 0 }.count
                open.withValue { $0 = openNow }
                var fds = slots.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
                _ = poll(&fds, nfds_t(fds.count), 5)
                for (index, entry) in fds.enumerated() where entry.fd >= 0 && entry.revents != 0 {
                    // The server's hello is read and ignored; its close (after a refusal or an eviction) frees the
                    // slot, which is reopened above.
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    let count = recv(entry.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                    if count > 0 || (count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { continue }
                    close(entry.fd)
                    slots[index].fd = -1
                    // A socket that held its pending slot until the handshake timeout, or whose node restarted,
                    // comes back at once (the attack); one evicted again and again waits a little, so the flood
                    // does not spin the CPU.
                    let closedAt = Date()
                    if closedAt.timeIntervalSince(slots[index].openedAt) >= 1 {
                        slots[index].shortLived = 0
                    } else {
                        slots[index].shortLived += 1
                    }
                    slots[index].retryAt = closedAt.addingTimeInterval(slots[index].shortLived >= 2 ? 0.25 : 0)
                }
            }
            for slot in slots where slot.fd >= 0 { close(slot.fd) }
        }
        thread.start()
    }

    func stop() { stopFlag.withValue { $0 = true } }
}

/// Strangers holding the peer port open must not keep real peers out.
final class PeerPortFloodTests: ClusterTestCase {
    /// The node's limit of pending handshakes per source address.
    static let pendingPerSource = 4

    func testARestartedPeerReconnectsWhileStrangersHoldIdleSocketsOnEveryPeerPort() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let follower = try XCTUnwrap(replicas.first { $0 !== leader })
        // Every pending handshake the flood holds lasts 3 s (the handshake timeout): a table that refuses newcomers
        // stays full between the waves of timeouts, and the flood refills each slot as soon as it frees.
        let flood = IdleSocketFlood(ports: replicas.map(\.peerPort), count: 64, sourceHost: "127.0.0.2")
        defer { flood.stop() }
        // At least a full per-source table on every port (the node closes the rest at once, so how many more the
        // flood holds at a given moment depends on timing).
        XCTAssertTrue(
            waitUntil(seconds: 5) { flood.held >= 3 * PeerPortFloodTests.pendingPerSource },
            "the flood holds \(flood.held) sockets")
        let filled = Date()
        kill(follower.pid, SIGKILL)
        _ = follower.tandem!.process.waitForExit()
        // The others' redials back off to about 2 s apart; the flood retries the dead port every few ms, so it
        // takes the restarted node's table first. Restart between two waves of timeouts (3 s and 6 s after filling).
        usleep(UInt32(max(0, 3.3 - Date().timeIntervalSince(filled)) * 1_000_000))
        try startTandemOnly(follower)
        let restarted = Date()
        let others = replicas.filter { $0 !== follower }
        let reconnected = waitUntil(seconds: 10) {
            others.allSatisfy { other in
                let peers = self.status(other)?["peers"] as? [[String: Any]] ?? []
                return peers.contains { ($0["id"] as? String) == follower.id && ($0["connected"] as? Bool) == true }
            }
        }
        let took = Date().timeIntervalSince(restarted)
        XCTAssertTrue(reconnected, "the restarted peer did not get back in within 10 s while the flood ran")
        XCTAssertLessThan(took, 1.5, "the restarted peer waited for the strangers' handshakes to time out")
        XCTAssertNotNil(waitForLeader(seconds: 10), "the cluster has no leader serving")
    }
}
