import Foundation
import Glibc
import XCTest

/// Holding up under load, with real processes: rate limits, connection limits, slow clients, floods.
final class OverloadTests: ClusterTestCase {
    func testRateLimitAnswers429WithRetryAfterAndRateLimitHeaders() throws {
        let (_, appPort) = try startApp()
        let tandem = try startTandem(upstreamPort: appPort, environment: ["TANDEM_RATE_LIMIT": "5/s;burst=5"])
        let client = try RawClient(port: tandem.clientPort)
        var statuses: [Int] = []
        var limited: TestResponse?
        for _ in 0..<8 {
            client.send("GET /kv/x HTTP/1.1\r\nHost: x\r\n\r\n")
            let response = try client.readResponse()
            statuses.append(response.status)
            if response.status == 429 { limited = response }
        }
        XCTAssertEqual(statuses.prefix(5).filter { $0 == 404 }.count, 5, "the burst of 5 passes: \(statuses)")
        let refusal = try XCTUnwrap(limited, "requests beyond the burst are limited: \(statuses)")
        XCTAssertEqual(refusal.headers.first(name: "Retry-After"), "1")
        XCTAssertEqual(refusal.headers.first(name: "RateLimit-Policy"), "\"default\";q=5;w=1")
        XCTAssertTrue(
            refusal.headers.first(name: "RateLimit")?.hasPrefix("\"default\";r=0;t=") == true, "\(refusal.headers)")
        XCTAssertTrue(refusal.bodyText.contains("\"error\":\"rate_limited\""), refusal.bodyText)
        let metrics = try httpRequest(port: tandem.adminPort, method: "GET", path: "/metrics").bodyText
        XCTAssertTrue(metrics.contains("tandem_rate_limited_total{scope=\"key\"} 3"), metrics)
    }

    func testRateLimitByHeaderKeepsClientsApart() throws {
        let (_, appPort) = try startApp()
        let tandem = try startTandem(
            upstreamPort: appPort,
            environment: ["TANDEM_RATE_LIMIT": "2/m", "TANDEM_RATE_LIMIT_KEY": "header:X-Api-Key"])
        for _ in 0..<2 {
            XCTAssertEqual(
                try httpRequest(
                    port: tandem.clientPort, method: "GET", path: "/kv/a", headers: [("X-Api-Key", "alice")]
                ).status, 404)
        }
        XCTAssertEqual(
            try httpRequest(port: tandem.clientPort, method: "GET", path: "/kv/a", headers: [("X-Api-Key", "alice")])
                .status, 429)
        XCTAssertEqual(
            try httpRequest(port: tandem.clientPort, method: "GET", path: "/kv/a", headers: [("X-Api-Key", "bob")])
                .status, 404, "bob has his own budget")
    }

    func testConnectionsBeyondTheLimitGet503Overloaded() throws {
        let (_, appPort) = try startApp()
        let tandem = try startTandem(upstreamPort: appPort, environment: ["TANDEM_MAX_CONNECTIONS": "10"])
        let held = try (0..<10).map { _ in try RawClient(port: tandem.clientPort) }
        usleep(200_000)
        let extra = try RawClient(port: tandem.clientPort)
        let refusal = try extra.readResponse()
        XCTAssertEqual(refusal.status, 503)
        XCTAssertTrue(refusal.bodyText.contains("\"error\":\"overloaded\""), refusal.bodyText)
        XCTAssertEqual(refusal.headers.first(name: "Retry-After"), "1")
        withExtendedLifetime(held) {}
        XCTAssertEqual(try httpRequest(port: tandem.adminPort, method: "GET", path: "/healthz").status, 200)
    }

    func testSlowlorisIsCutOffByTheHeaderTimeout() throws {
        let (_, appPort) = try startApp()
        let tandem = try startTandem(upstreamPort: appPort, environment: ["TANDEM_HEADER_TIMEOUT": "1s"])
        let client = try RawClient(port: tandem.clientPort, timeoutSeconds: 10)
        let started = Date()
        var closed = false
        for byte in "GET /kv/x HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8 + Array(repeating: UInt8(ascii: "a"), count: 200) {
            client.send([byte])
            usleep(100_000)
            var peek = [UInt8](repeating: 0, count: 512)
            let count = recv(client.fd, &peek, peek.count, Int32(MSG_DONTWAIT))
            if count > 0 {
                XCTAssertTrue(String(decoding: peek.prefix(count), as: UTF8.self).hasPrefix("HTTP/1.1 408"))
                closed = client.isClosedByPeer()
                break
            }
            if count == 0 {
                closed = true
                break
            }
            if Date().timeIntervalSince(started) > 8 { break }
        }
        XCTAssertTrue(closed, "a client trickling its headers must be disconnected")
        XCTAssertLessThan(
            Date().timeIntervalSince(started), 5, "cut off near the 1 s header timeout, not after the trickle")
    }

    func testAFloodOfWritesIsShedWhileHealthAnswersAndNoAcknowledgedWriteIsLost() throws {
        let (_, appPort) = try startApp(extraArguments: ["--delay-ms", "2"])
        let tandem = try startTandem(upstreamPort: appPort, environment: ["TANDEM_MAX_PENDING_WRITES": "64"])
        let baseline = tandem.process.residentBytes
        let acknowledged = Tally(count: 1)
        let shed = Tally(count: 1)
        let other = Tally(count: 1)
        let group = DispatchGroup()
        // 400 connections, each with 2 pipelined writes, all sent before any answer is read: far more than the
        // 64 pending writes allowed, against an app that takes 2 ms per write.
        DispatchQueue.global().async(group: group) {
            let clients = (0..<400).compactMap { _ in try? RawClient(port: tandem.clientPort, timeoutSeconds: 30) }
            let request = "POST /counters/flood/incr HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            for client in clients { client.send(request + request) }
            for client in clients {
                for _ in 0..<2 {
                    guard let response = try? client.readResponse(method: "POST") else { break }
                    switch response.status {
                    case 200: acknowledged.add(0)
                    case 503: shed.add(0)
                    default: other.add(0)
                    }
                    if response.headers.first(name: "Connection") == "close" { break }
                }
            }
        }
        var healthAnswered = 0
        var slowestHealthMs = 0.0
        while group.wait(timeout: .now() + .milliseconds(50)) == .timedOut {
            let asked = Date()
            if (try? httpRequest(port: tandem.adminPort, method: "GET", path: "/healthz", timeoutSeconds: 5).status)
                == 200
            {
                healthAnswered += 1
                slowestHealthMs = max(slowestHealthMs, Date().timeIntervalSince(asked) * 1000)
            }
        }
        XCTAssertGreaterThan(acknowledged[0], 0)
        XCTAssertGreaterThan(shed[0], 0, "a flood beyond the pending-write limit must be shed with 503")
        XCTAssertEqual(other[0], 0, "only 200 and 503 are acceptable answers")
        XCTAssertGreaterThan(healthAnswered, 0)
        print(
            "flood: acknowledged \(acknowledged[0]), shed \(shed[0]), health answered \(healthAnswered) times, slowest \(Int(slowestHealthMs)) ms"
        )
        XCTAssertLessThan(tandem.process.residentBytes - baseline, 64 * 1024 * 1024, "memory stays bounded")
        // Every acknowledged increment was applied exactly once; shed ones were not applied at all.
        let counter = try httpRequest(port: appPort, method: "GET", path: "/counters/flood").bodyText
        XCTAssertEqual(counter, "{\"name\":\"flood\",\"value\":\(acknowledged[0])}")
        // Full recovery afterwards.
        XCTAssertEqual(
            try httpRequest(port: tandem.clientPort, method: "POST", path: "/counters/after/incr").status, 200)
        XCTAssertEqual(try httpRequest(port: tandem.adminPort, method: "GET", path: "/readyz").status, 200)
    }

    /// A client that comes straight back after each 503 `overloaded` is not read again before the Retry-After (one
    /// second) has passed: turned-away clients cost one parse and one 503 a second each, not four. (Lower bounds
    /// only: a loaded machine can make a pause longer, never shorter.)
    func testAShedClientIsNotReadAgainBeforeItsRetryAfter() throws {
        let (_, appPort) = try startApp(extraArguments: ["--delay-ms", "6000"])
        let tandem = try startTandem(
            upstreamPort: appPort, environment: ["TANDEM_MAX_PENDING_WRITES": "1", "TANDEM_WRITE_TIMEOUT": "30s"])
        let request = "POST /counters/shed/incr HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        // One write holds the only pending slot while the app takes six seconds over it.
        let holder = try RawClient(port: tandem.clientPort, timeoutSeconds: 30)
        holder.send(request)
        XCTAssertTrue(
            waitUntil(seconds: 10) {
                guard let body = try? httpRequest(port: tandem.adminPort, method: "GET", path: "/status").body,
                    let status = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
                    let committed = status["commitIndex"] as? Int, let applied = status["appliedIndex"] as? Int
                else { return false }
                return committed > applied
            }, "the holding write never committed")
        let client = try RawClient(port: tandem.clientPort, timeoutSeconds: 30)
        client.send(request)
        XCTAssertEqual(try client.readResponse(method: "POST").status, 503, "the second writer was not shed")
        var answeredAt = Date()
        var gapsMs: [Int] = []
        for _ in 0..<3 {
            client.send(request)
            let response = try client.readResponse(method: "POST")
            XCTAssertEqual(response.status, 503)
            XCTAssertEqual(response.headers.first(name: "Retry-After"), "1")
            XCTAssertNotEqual(response.headers.first(name: "Connection"), "close")
            gapsMs.append(Int(Date().timeIntervalSince(answeredAt) * 1000))
            answeredAt = Date()
        }
        for gap in gapsMs { XCTAssertGreaterThanOrEqual(gap, 980, "gaps \(gapsMs)") }
        XCTAssertEqual(try holder.readResponse(method: "POST").status, 200)
        XCTAssertEqual(
            try httpRequest(port: appPort, method: "GET", path: "/counters/shed").bodyText,
            "{\"name\":\"shed\",\"value\":1}", "only the admitted write reached the app")
    }
}
