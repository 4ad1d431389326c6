import Foundation
import Glibc
import XCTest

@testable import TandemNet

/// A UDP DNS server on loopback for one test: a thread answers each query with the datagrams `respond` builds
/// (none: silence). It records the queries it saw. `stop()` ends the thread and closes the socket.
final class FakeDNSServer: @unchecked Sendable {
    typealias Responder = @Sendable (_ index: Int, _ query: [UInt8]) -> [[UInt8]]

    let port: UInt16
    private let fd: Int32
    private let respond: Responder
    private let lock = NSLock()
    private var received: [[UInt8]] = []
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)

    /// Binds `host:port` (port 0: a free one) and starts answering.
    init(host: String = "127.0.0.1", port: UInt16 = 0, respond: @escaping Responder) throws {
        self.respond = respond
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        self.fd = fd
        self.port = SocketAddress.localPort(of: fd)
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    var queries: [[UInt8]] { lock.withLock { received } }

    func stop() {
        lock.withLock { stopping = true }
        finished.wait()
        close(fd)
    }

    private func serve() {
        defer { finished.signal() }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !lock.withLock({ stopping }) {
            // A short poll so that stop() is noticed promptly; queries are answered as soon as they arrive.
            var pollFD = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pollFD, 1, 20) > 0 else { continue }
            var source = sockaddr_storage()
            var sourceLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = buffer.withUnsafeMutableBytes { bytes in
                withUnsafeMutablePointer(to: &source) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, bytes.baseAddress, bytes.count, 0, $0, &sourceLength)
                    }
                }
            }
            guard count > 0 else { continue }
            let query = Array(buffer[0..<count])
            let index = lock.withLock {
                received.append(query)
                return received.count - 1
            }
            for datagram in respond(index, query) {
                _ = datagram.withUnsafeBytes { bytes in
                    withUnsafePointer(to: &source) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(fd, bytes.baseAddress, bytes.count, 0, $0, sourceLength)
                        }
                    }
                }
            }
        }
    }
}

// MARK: - Building DNS messages in the tests

enum DNSBuild {
    static func name(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        for label in text.split(separator: ".") {
            out.append(UInt8(label.utf8.count))
            out += Array(label.utf8)
        }
        return out + [0]
    }

    static func u16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }

    static func pointer(to offset: Int) -> [UInt8] { [0xC0 | UInt8(offset >> 8), UInt8(offset & 0xFF)] }

    /// The end of the (uncompressed) question of a query the resolver sent.
    static func questionEnd(_ query: [UInt8]) -> Int {
        var index = 12
        while query[index] != 0 { index += Int(query[index]) + 1 }
        return index + 1 + 4
    }

    static func questionType(_ query: [UInt8]) -> UInt16 {
        let end = questionEnd(query)
        return UInt16(query[end - 4]) << 8 | UInt16(query[end - 3])
    }

    static func additionalCount(_ query: [UInt8]) -> UInt16 { UInt16(query[10]) << 8 | UInt16(query[11]) }

    /// A response echoing the query's id and question; `id` overrides the id.
    static func reply(
        to query: [UInt8], rcode: UInt16 = 0, truncated: Bool = false, answers: [[UInt8]] = [], id: UInt16? = nil
    ) -> [UInt8] {
        var out = id.map { u16($0) } ?? Array(query[0..<2])
        out += u16(0x8180 | (truncated ? 0x0200 : 0) | rcode)
        out += u16(1) + u16(UInt16(answers.count)) + u16(0) + u16(0)
        out += query[12..<questionEnd(query)]
        for answer in answers { out += answer }
        return out
    }

    /// A resource record; the owner defaults to a pointer to the question's name (offset 12).
    static func record(owner: [UInt8] = [0xC0, 0x0C], type: UInt16, recordClass: UInt16 = 1, data: [UInt8])
        -> [UInt8]
    {
        owner + u16(type) + u16(recordClass) + [0, 0, 0, 30] + u16(UInt16(data.count)) + data
    }

    static func srv(priority: UInt16, weight: UInt16, port: UInt16, target: [UInt8]) -> [UInt8] {
        record(type: 33, data: u16(priority) + u16(weight) + u16(port) + target)
    }

    static func a(_ text: String, owner: [UInt8] = [0xC0, 0x0C]) -> [UInt8] {
        record(owner: owner, type: 1, data: text.split(separator: ".").map { UInt8($0)! })
    }

    static func aaaa(_ text: String) -> [UInt8] {
        var raw = in6_addr()
        inet_pton(AF_INET6, text, &raw)
        return record(type: 28, data: withUnsafeBytes(of: raw) { Array($0) })
    }
}

/// SplitMix64: a small seeded generator so that the randomised test is reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class DNSResolverTests: XCTestCase {
    private let service = "_peer._tcp.tandem.default.svc.cluster.local"
    private let headless = "tandem.default.svc.cluster.local"

    private func resolver(_ server: FakeDNSServer, timeoutMs: Int = 2000) -> DNSResolver {
        DNSResolver(nameservers: ["127.0.0.1"], nameserverPort: server.port, timeoutMs: timeoutMs)
    }

    private func assertThrows<T>(
        _ expected: DNSError, _ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual(error as? DNSError, expected, "\(error)", file: file, line: line)
        }
    }

    private func assertMalformed<T>(
        _ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard case .malformedResponse = error as? DNSError else {
                return XCTFail("expected malformedResponse, got \(error)", file: file, line: line)
            }
        }
    }

    // MARK: Answers over the network

    func testSRVRecordsAreSortedByPriorityThenWeightDescending() throws {
        let server = try FakeDNSServer { _, query in
            // The first target is written out; the others compress their common suffix onto it.
            let first = DNSBuild.name("tandem-2.tandem.default.svc.cluster.local.")
            // Answers start where the question ends; the target follows the 12-byte record header and 6 bytes of
            // priority, weight and port. "tandem.default..." starts after the 9 bytes of the label "tandem-2".
            let suffix = DNSBuild.pointer(to: DNSBuild.questionEnd(query) + 12 + 6 + 9)
            return [
                DNSBuild.reply(
                    to: query,
                    answers: [
                        DNSBuild.srv(priority: 10, weight: 5, port: 7002, target: first),
                        DNSBuild.srv(
                            priority: 0, weight: 10, port: 7000, target: [8] + Array("tandem-0".utf8) + suffix),
                        DNSBuild.srv(
                            priority: 10, weight: 50, port: 7001, target: [8] + Array("tandem-1".utf8) + suffix),
                        DNSBuild.record(type: 1, recordClass: 3, data: [1, 2, 3, 4]),  // another class: skipped
                    ])
            ]
        }
        defer { server.stop() }
        let targets = try resolver(server).srv(service)
        XCTAssertEqual(
            targets,
            [
                ResolvedTarget(host: "tandem-0.tandem.default.svc.cluster.local", port: 7000),
                ResolvedTarget(host: "tandem-1.tandem.default.svc.cluster.local", port: 7001),
                ResolvedTarget(host: "tandem-2.tandem.default.svc.cluster.local", port: 7002),
            ])
        XCTAssertEqual(server.queries.count, 1)
        let query = try XCTUnwrap(server.queries.first)
        XCTAssertEqual(DNSBuild.questionType(query), 33)
        XCTAssertEqual(Array(query[12..<(DNSBuild.questionEnd(query) - 4)]), DNSBuild.name(service))
        XCTAssertEqual(query[2] & 0x01, 0x01, "recursion desired")
        XCTAssertEqual(DNSBuild.additionalCount(query), 1, "the EDNS(0) OPT record")
    }

    func testSRVOfNameWithoutRecordsIsEmptyForNoDataAndNXDomain() throws {
        let server = try FakeDNSServer { index, query in
            [DNSBuild.reply(to: query, rcode: index == 0 ? 0 : 3)]
        }
        defer { server.stop() }
        XCTAssertEqual(try resolver(server).srv(service), [])
        XCTAssertEqual(try resolver(server).srv(service), [])
        XCTAssertEqual(server.queries.count, 2)
    }

    func testAddressesGiveARecordsThenAAAARecordsWithThePort() throws {
        let server = try FakeDNSServer { _, query in
            switch DNSBuild.questionType(query) {
            case 1: return [DNSBuild.reply(to: query, answers: [DNSBuild.a("10.0.0.5"), DNSBuild.a("10.0.0.6")])]
            case 28: return [DNSBuild.reply(to: query, answers: [DNSBuild.aaaa("fd00::7")])]
            default: return []
            }
        }
        defer { server.stop() }
        XCTAssertEqual(
            try resolver(server).addresses(headless, port: 7000),
            [
                ResolvedTarget(host: "10.0.0.5", port: 7000), ResolvedTarget(host: "10.0.0.6", port: 7000),
                ResolvedTarget(host: "fd00::7", port: 7000),
            ])
        XCTAssertEqual(server.queries.map(DNSBuild.questionType), [1, 28])
    }

    func testAddressesFollowTheCNAMEChainAndIgnoreOtherOwners() throws {
        let server = try FakeDNSServer { _, query in
            guard DNSBuild.questionType(query) == 1 else { return [DNSBuild.reply(to: query)] }
            let alias = DNSBuild.name("real.example")
            let aliasOffset = UInt8(DNSBuild.questionEnd(query) + 12)  // where the CNAME's data starts
            return [
                DNSBuild.reply(
                    to: query,
                    answers: [
                        DNSBuild.record(type: 5, data: alias),
                        DNSBuild.a("192.0.2.1", owner: [0xC0, aliasOffset]),
                        DNSBuild.a("192.0.2.99", owner: DNSBuild.name("unrelated.example")),
                    ])
            ]
        }
        defer { server.stop() }
        XCTAssertEqual(
            try resolver(server).addresses("alias.example", port: 80), [ResolvedTarget(host: "192.0.2.1", port: 80)])
    }

    func testResolveJoinNamePrefersSRVAndAsksNothingElse() throws {
        let server = try FakeDNSServer { _, query in
            [
                DNSBuild.reply(
                    to: query, answers: [DNSBuild.srv(priority: 1, weight: 1, port: 7100, target: DNSBuild.name("a.b"))]
                )
            ]
        }
        defer { server.stop() }
        XCTAssertEqual(
            try resolver(server).resolveJoinName(service, defaultPort: 7000), [ResolvedTarget(host: "a.b", port: 7100)])
        XCTAssertEqual(server.queries.map(DNSBuild.questionType), [33])
    }

    func testResolveJoinNameFallsBackToAddressesWhenThereIsNoSRV() throws {
        // The same name is answered differently per query: no SRV records, then the pods' A records.
        let server = try FakeDNSServer { index, query in
            switch (index, DNSBuild.questionType(query)) {
            case (0, 33): return [DNSBuild.reply(to: query)]
            case (1, 1): return [DNSBuild.reply(to: query, answers: [DNSBuild.a("10.1.0.1"), DNSBuild.a("10.1.0.2")])]
            case (2, 28): return [DNSBuild.reply(to: query)]
            default: return [DNSBuild.reply(to: query, rcode: 2)]
            }
        }
        defer { server.stop() }
        XCTAssertEqual(
            try resolver(server).resolveJoinName(headless, defaultPort: 7000),
            [ResolvedTarget(host: "10.1.0.1", port: 7000), ResolvedTarget(host: "10.1.0.2", port: 7000)])
        XCTAssertEqual(server.queries.map(DNSBuild.questionType), [33, 1, 28])
    }

    func testResolveJoinNameOfAMissingNameOrOneWithoutRecordsThrows() throws {
        let missing = try FakeDNSServer { _, query in [DNSBuild.reply(to: query, rcode: 3)] }
        defer { missing.stop() }
        assertThrows(.nameError(headless), try resolver(missing).resolveJoinName(headless, defaultPort: 1))
        XCTAssertEqual(missing.queries.map(DNSBuild.questionType), [33, 1], "NXDOMAIN for A: no AAAA query")

        let empty = try FakeDNSServer { _, query in [DNSBuild.reply(to: query)] }
        defer { empty.stop() }
        assertThrows(.noRecords(headless), try resolver(empty).resolveJoinName(headless, defaultPort: 1))
        XCTAssertEqual(empty.queries.map(DNSBuild.questionType), [33, 1, 28])
    }

    func testResolveJoinNameOfAnIPLiteralOrLocalhostAsksNoNameserver() throws {
        let server = try FakeDNSServer { _, query in [DNSBuild.reply(to: query, rcode: 2)] }
        defer { server.stop() }
        let dns = resolver(server)
        XCTAssertEqual(
            try dns.resolveJoinName("10.2.3.4", defaultPort: 7000), [ResolvedTarget(host: "10.2.3.4", port: 7000)])
        XCTAssertEqual(
            try dns.resolveJoinName("[fd00::1]", defaultPort: 7000), [ResolvedTarget(host: "fd00::1", port: 7000)])
        XCTAssertEqual(try dns.resolveJoinName("::1", defaultPort: 9), [ResolvedTarget(host: "::1", port: 9)])
        XCTAssertEqual(
            try dns.resolveJoinName("localhost", defaultPort: 9), [ResolvedTarget(host: "localhost", port: 9)])
        XCTAssertEqual(server.queries.count, 0)
        // And with no nameserver at all: still no query needed.
        XCTAssertEqual(
            try DNSResolver(nameservers: []).resolveJoinName("127.0.0.1", defaultPort: 5),
            [ResolvedTarget(host: "127.0.0.1", port: 5)])
    }

    // MARK: Failures over the network

    func testSilentServerTimesOutWithinTheBound() throws {
        let server = try FakeDNSServer { _, _ in [] }
        defer { server.stop() }
        let started = DNSWire.monotonicMs()
        assertThrows(.timeout, try resolver(server, timeoutMs: 200).srv(service))
        let elapsed = DNSWire.monotonicMs() - started
        XCTAssertGreaterThanOrEqual(elapsed, 195)
        XCTAssertLessThan(elapsed, 2000)
        XCTAssertEqual(server.queries.count, 1)
    }

    func testSilentFirstNameserverFailsOverToTheSecond() throws {
        let answering = try FakeDNSServer { _, query in [DNSBuild.reply(to: query, answers: [DNSBuild.a("10.9.9.9")])] }
        defer { answering.stop() }
        // The same port on another loopback address: the resolver has one port for all nameservers.
        let silent = try FakeDNSServer(host: "127.0.0.2", port: answering.port) { _, _ in [] }
        defer { silent.stop() }
        let dns = DNSResolver(nameservers: ["127.0.0.2", "127.0.0.1"], nameserverPort: answering.port, timeoutMs: 200)
        XCTAssertEqual(try dns.addresses("x.example", port: 1).first, ResolvedTarget(host: "10.9.9.9", port: 1))
        XCTAssertEqual(silent.queries.count, 2, "the A and the AAAA query each waited for it first")
        XCTAssertEqual(answering.queries.count, 2)
    }

    func testAnswerWithAnotherIdIsIgnored() throws {
        let server = try FakeDNSServer { _, query in
            let id = UInt16(query[0]) << 8 | UInt16(query[1])
            return [
                DNSBuild.reply(to: query, answers: [DNSBuild.a("6.6.6.6")], id: id ^ 0x5A5A),
                DNSBuild.reply(to: query, answers: [DNSBuild.a("10.0.0.1")]),
            ]
        }
        defer { server.stop() }
        XCTAssertEqual(
            try resolver(server).addresses("x.example", port: 1), [ResolvedTarget(host: "10.0.0.1", port: 1)])
    }

    func testQuestionNotEchoedIsMalformed() throws {
        let server = try FakeDNSServer { _, query in
            var other = DNSBuild.reply(to: query, answers: [DNSBuild.a("10.0.0.1")])
            other[13] ^= 0x01  // a letter of the first label changes (not only its case)
            return [other]
        }
        defer { server.stop() }
        assertMalformed(try resolver(server).addresses("x.example", port: 1))
    }

    func testTruncatedAnswerServerFailureAndUnreachableServerThrow() throws {
        let truncating = try FakeDNSServer { _, query in [DNSBuild.reply(to: query, truncated: true)] }
        defer { truncating.stop() }
        assertThrows(.truncated, try resolver(truncating).srv(service))

        let failing = try FakeDNSServer { _, query in [DNSBuild.reply(to: query, rcode: 2)] }
        defer { failing.stop() }
        assertThrows(.serverFailure(rcode: 2), try resolver(failing).srv(service))

        // A port nobody listens on: the ICMP port unreachable surfaces as ECONNREFUSED, well before the timeout.
        let closed = try FakeDNSServer { _, _ in [] }
        let closedPort = closed.port
        closed.stop()
        let started = DNSWire.monotonicMs()
        let dns = DNSResolver(nameservers: ["127.0.0.1"], nameserverPort: closedPort, timeoutMs: 5000)
        assertThrows(.socketError(nameserver: "127.0.0.1", errno: ECONNREFUSED), try dns.srv(service))
        XCTAssertLessThan(DNSWire.monotonicMs() - started, 4000)
    }

    func testNoNameserverAndInvalidNamesThrowWithoutAQuery() {
        assertThrows(.noNameserver, try DNSResolver(nameservers: []).srv(service))
        let dns = DNSResolver(nameservers: ["127.0.0.1"], nameserverPort: 9, timeoutMs: 1)
        for name in [
            "", ".", "a..b", String(repeating: "x", count: 64) + ".example",
            Array(repeating: String(repeating: "y", count: 63), count: 4).joined(separator: "."),
        ] {
            XCTAssertThrowsError(try dns.srv(name), name) { error in
                guard case .invalidName = error as? DNSError else { return XCTFail("\(name): \(error)") }
            }
        }
        // 63+1 bytes per label, four labels minus one byte: exactly 255 with the root, accepted.
        let longest =
            Array(repeating: String(repeating: "y", count: 63), count: 3).joined(separator: ".") + "."
            + String(repeating: "z", count: 61)
        XCTAssertEqual(try DNSWire.labels(of: longest).count, 4)
    }

    func testMalformedAndOversizedAnswersOverTheNetworkAreErrors() throws {
        let server = try FakeDNSServer { index, query in
            let full = DNSBuild.reply(to: query, answers: [DNSBuild.a("10.0.0.1")])
            return index == 0 ? [Array(full.prefix(full.count - 3))] : [full + [UInt8](repeating: 0, count: 5000)]
        }
        defer { server.stop() }
        assertMalformed(try resolver(server).srv(service))
        XCTAssertThrowsError(try resolver(server).srv(service)) { error in
            XCTAssertTrue("\(error)".contains("exceeds 4096"), "\(error)")
        }
    }

    func testFormatErrorToEDNSIsRetriedWithoutIt() throws {
        let server = try FakeDNSServer { _, query in
            if DNSBuild.additionalCount(query) == 1 {
                return [Array(query[0..<2]) + DNSBuild.u16(0x8181) + [0, 0, 0, 0, 0, 0, 0, 0]]  // FORMERR, no question
            }
            return [DNSBuild.reply(to: query, answers: [DNSBuild.a("10.0.0.3")])]
        }
        defer { server.stop() }
        XCTAssertEqual(
            try resolver(server).addresses("x.example", port: 2).first, ResolvedTarget(host: "10.0.0.3", port: 2))
        XCTAssertEqual(server.queries.prefix(2).map(DNSBuild.additionalCount), [1, 0])
    }

    // MARK: The parser on its own

    private func query(_ name: String = "x.example", type: UInt16 = DNSWire.typeA) throws -> DNSQuery {
        DNSQuery(id: 0x1234, labels: try DNSWire.labels(of: name), type: type, edns: true)
    }

    func testParserAcceptsAnEchoInOtherCaseAndSkipsOtherTypes() throws {
        let asked = try query("X.Example")
        var packet = DNSBuild.reply(
            to: asked.encoded(),
            answers: [DNSBuild.aaaa("::1"), DNSBuild.a("192.0.2.8"), DNSBuild.record(type: 16, data: [3, 65, 66, 67])])
        packet[13] = UInt8(ascii: "x")
        XCTAssertEqual(try DNSWire.parseReply(packet, to: asked), .answer([.address("192.0.2.8")]))
        var otherID = packet
        otherID[1] ^= 0xFF
        XCTAssertEqual(try DNSWire.parseReply(otherID, to: asked), .unrelated)
        XCTAssertEqual(try DNSWire.parseReply(asked.encoded(), to: asked), .unrelated, "a query, not a response")
    }

    func testMalformedPacketsThrowInsteadOfTrapping() throws {
        let asked = try query()
        let good = DNSBuild.reply(to: asked.encoded(), answers: [DNSBuild.a("10.0.0.1")])
        XCTAssertEqual(try DNSWire.parseReply(good, to: asked), .answer([.address("10.0.0.1")]))
        let questionEnd = DNSBuild.questionEnd(asked.encoded())
        let header = Array(good[0..<12])
        let question = Array(good[12..<questionEnd])
        var cases: [String: [UInt8]] = [:]
        cases["short header"] = Array(good[0..<7])
        cases["truncated answer"] = Array(good.dropLast(2))
        cases["truncated question"] = Array(good[0..<(questionEnd - 2)])
        cases["pointer to itself"] = header + question + [0xC0, UInt8(questionEnd)] + Array(good[(questionEnd + 2)...])
        // Two names pointing at each other: 0xC0 at offset q points forward to q+2, which points back to q.
        var loop = header + question + [0xC0, UInt8(questionEnd + 2), 0xC0, UInt8(questionEnd)]
        loop += [0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]
        cases["pointer loop"] = loop
        cases["pointer past the end"] = header + question + [0xC3, 0xFF] + Array(good[(questionEnd + 2)...])
        cases["pointer cut in half"] = header + question + [0xC0]
        cases["label too long"] = header + [0x40] + [UInt8](repeating: 0x61, count: 64) + [0] + [0, 1, 0, 1]
        cases["reserved label type"] = header + question + [0x80, 0x01] + Array(good[(questionEnd + 2)...])
        cases["label past the end"] = header + [10, 0x61, 0x62]
        cases["rdata past the end"] = Array(good.dropLast(6)) + [0, 40, 1, 2, 3, 4]
        cases["A of five bytes"] = header + question + DNSBuild.record(type: 1, data: [1, 2, 3, 4, 5])
        cases["two questions"] = Array(good[0..<4]) + [0, 2] + Array(good[6...])
        var long = header
        for _ in 0..<5 { long += [63] + [UInt8](repeating: 0x62, count: 63) }
        cases["name over 255 bytes"] = long + [0, 0, 1, 0, 1]
        // Compression can also assemble an over-long name from short parts: four 64-byte chunks, each ending in a
        // pointer to the one before, kept in the data of a record of another type; a second record's owner points
        // at the last chunk.
        var chained = Array(good[0..<6]) + [0, 2, 0, 0, 0, 0] + question
        let chunksStart = chained.count + 12
        var chunks: [UInt8] = []
        var previous: Int?
        for _ in 0..<4 {
            let start = chunksStart + chunks.count
            chunks += [63] + [UInt8](repeating: 0x63, count: 63) + (previous.map(DNSBuild.pointer) ?? [0])
            previous = start
        }
        chained += DNSBuild.record(type: 16, data: chunks)
        chained += DNSBuild.a("1.2.3.4", owner: DNSBuild.pointer(to: previous!))
        cases["compressed name over 255"] = chained
        let srvAsked = try query(type: DNSWire.typeSRV)
        let srvGood = DNSBuild.reply(
            to: srvAsked.encoded(),
            answers: [DNSBuild.srv(priority: 0, weight: 0, port: 1, target: DNSBuild.name("a.b"))])
        XCTAssertEqual(
            try DNSWire.parseReply(srvGood, to: srvAsked),
            .answer([.service(priority: 0, weight: 0, port: 1, target: "a.b")]))
        var badTarget = srvGood
        badTarget[badTarget.count - 4] = UInt8(ascii: ".")  // the label "a" becomes "."
        cases["SRV target with a dot in a label"] = badTarget
        // Each case must fail for its own reason, not for an earlier defect of the hand-built packet.
        let reasons = [
            "short header": "ends inside a field", "truncated answer": "data runs past the end",
            "truncated question": "ends inside a field", "pointer to itself": "does not point backwards",
            "pointer loop": "does not point backwards", "pointer past the end": "does not point backwards",
            "pointer cut in half": "pointer runs past the end", "label too long": "0x40 (over 63",
            "reserved label type": "0x80 (over 63 or extended)", "label past the end": "label runs past the end",
            "rdata past the end": "data runs past the end", "A of five bytes": "A record of 5 bytes",
            "two questions": "2 questions", "name over 255 bytes": "longer than 255",
            "compressed name over 255": "longer than 255", "SRV target with a dot in a label": "byte 0x2e",
        ]
        XCTAssertEqual(Set(reasons.keys), Set(cases.keys))
        for (label, packet) in cases.sorted(by: { $0.key < $1.key }) {
            let target = label.hasPrefix("SRV") ? srvAsked : asked
            XCTAssertThrowsError(try DNSWire.parseReply(packet, to: target), label) { error in
                guard case .malformedResponse(let reason) = error as? DNSError else {
                    return XCTFail("\(label): \(error)")
                }
                XCTAssertTrue(reason.contains(reasons[label] ?? "?"), "\(label): \(reason)")
            }
        }
    }

    func testRandomAndMutatedPacketsEitherParseOrThrow() throws {
        var random = SplitMix64(state: 0x7A4D_E3_2026)
        let aQuery = try query("tandem-0.tandem.default.svc.cluster.local")
        let srvQuery = try query(service, type: DNSWire.typeSRV)
        let aaaaQuery = try query("v6.example", type: DNSWire.typeAAAA)
        let srvEncoded = srvQuery.encoded()
        let targetOffset = UInt16(DNSBuild.questionEnd(srvEncoded) + 12 + 6)
        let seeds: [(DNSQuery, [UInt8])] = [
            (aQuery, DNSBuild.reply(to: aQuery.encoded(), answers: [DNSBuild.a("10.0.0.1"), DNSBuild.a("10.0.0.2")])),
            (
                aQuery,
                DNSBuild.reply(
                    to: aQuery.encoded(),
                    answers: [
                        DNSBuild.record(type: 5, data: DNSBuild.name("b.c")),
                        DNSBuild.a("1.2.3.4", owner: DNSBuild.name("b.c")),
                    ])
            ),
            (aQuery, DNSBuild.reply(to: aQuery.encoded(), rcode: 3)),
            (
                aaaaQuery,
                DNSBuild.reply(
                    to: aaaaQuery.encoded(), answers: [DNSBuild.aaaa("fd00::1"), DNSBuild.aaaa("::ffff:1.2.3.4")])
            ),
            (
                srvQuery,
                DNSBuild.reply(
                    to: srvEncoded,
                    answers: [
                        DNSBuild.srv(
                            priority: 1, weight: 2, port: 3,
                            target: DNSBuild.name("p-0.tandem.default.svc.cluster.local")),
                        DNSBuild.srv(
                            priority: 1, weight: 2, port: 4,
                            target: [3, 0x70, 0x2D, 0x31, 0xC0, UInt8(targetOffset + 4)]),
                    ])
            ),
        ]
        var outcomes = (parsed: 0, nameErrors: 0, unrelated: 0, thrown: 0)
        for index in 0..<10_000 {
            let (asked, seed) = seeds[index % seeds.count]
            var packet = seed
            switch random.next() % 6 {
            case 0:  // random bytes behind a header that passes the id check
                packet =
                    Array(seed[0..<4])
                    + (0..<Int(random.next() % 300)).map { _ in UInt8.random(in: 0...255, using: &random) }
            case 1:  // a few bytes flipped
                for _ in 0...(random.next() % 6) {
                    packet[Int(random.next() % UInt64(packet.count))] ^= UInt8.random(in: 1...255, using: &random)
                }
            case 2:  // cut short
                packet = Array(packet.prefix(Int(random.next() % UInt64(packet.count))))
            case 3:  // a compression pointer planted anywhere past the id
                let at = 2 + Int(random.next() % UInt64(packet.count - 2))
                packet[at] = 0xC0 | UInt8(random.next() % 64)
                if at + 1 < packet.count { packet[at + 1] = UInt8.random(in: 0...255, using: &random) }
            case 4:  // counts rewritten
                packet[4 + Int(random.next() % 8)] = UInt8.random(in: 0...255, using: &random)
                packet += (0..<Int(random.next() % 40)).map { _ in UInt8.random(in: 0...255, using: &random) }
            default:  // random bytes spliced into the middle
                let at = Int(random.next() % UInt64(packet.count))
                packet.insert(
                    contentsOf: (0..<Int(1 + random.next() % 20)).map { _ in UInt8.random(in: 0...255, using: &random)
                    }, at: at)
            }
            do {
                switch try DNSWire.parseReply(packet, to: asked) {
                case .answer(let records):
                    outcomes.parsed += 1
                    for record in records {
                        switch record {
                        case .address(let literal): XCTAssertTrue(DNSWire.isIPLiteral(literal), literal)
                        case .service(_, _, _, let target):
                            XCTAssertLessThanOrEqual(target.utf8.count, 253)
                            XCTAssertFalse(target.hasSuffix(".") || target.contains(".."), target)
                        }
                    }
                case .nameError: outcomes.nameErrors += 1
                case .unrelated: outcomes.unrelated += 1
                }
            } catch {
                outcomes.thrown += 1
            }
        }
        XCTAssertEqual(outcomes.parsed + outcomes.nameErrors + outcomes.unrelated + outcomes.thrown, 10_000)
        XCTAssertGreaterThan(outcomes.parsed, 500, "\(outcomes)")
        XCTAssertGreaterThan(outcomes.thrown, 2000, "\(outcomes)")
    }

    // MARK: resolv.conf

    func testResolvConfGivesTheFirstThreeUsableNameservers() throws {
        let path = NSTemporaryDirectory() + "dns-resolver-test-\(getpid()).conf"
        defer { unlink(path) }
        let text = """
            # generated
            search default.svc.cluster.local svc.cluster.local
            nameserver 10.96.0.10
            ;nameserver 1.1.1.1
            nameserver\tfe80::1%eth0
            nameserver not-an-address
            nameserver fd00::53   # trailing words are ignored
            options ndots:5
            nameserver 10.96.0.11
            nameserver 10.96.0.12
            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let dns = DNSResolver.fromResolvConf(path: path)
        XCTAssertEqual(dns.nameservers, ["10.96.0.10", "fd00::53", "10.96.0.11"])
        XCTAssertEqual(dns.nameserverPort, 53)
        XCTAssertEqual(dns.timeoutMs, 2000)
        XCTAssertEqual(DNSResolver.fromResolvConf(path: path + ".missing").nameservers, [])
    }
}
