// Mutual TLS between peers, with a throwaway CA made by the `openssl` command line in a temporary directory.

import Foundation
import TandemConsensus
import TandemNet
import XCTest

@testable import TandemTransport

final class TLSTransportTests: XCTestCase {
    private var loop: EventLoop!
    private var directory: URL!

    override func setUpWithError() throws {
        ignoreBrokenPipeSignals()
        loop = try EventLoop()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        loop = nil
        try? FileManager.default.removeItem(at: directory)
    }

    private func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        process.currentDirectoryURL = directory
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw XCTSkip("openssl \(arguments.first ?? "") failed with status \(process.terminationStatus)")
        }
    }

    private func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    private func makeCA(_ name: String) throws {
        try openssl([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "\(name).key", "-out", "\(name).pem", "-days", "2", "-subj", "/CN=\(name)",
        ])
    }

    /// A leaf certificate for `node`, signed by `ca`, naming `dnsNames` and `ipAddresses`.
    private func makeCertificate(
        _ file: String, commonName: String, dnsNames: [String], ipAddresses: [String] = [], ca: String
    ) throws {
        try openssl([
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "\(file).key", "-out", "\(file).csr", "-subj", "/CN=\(commonName)",
        ])
        let names = dnsNames.map { "DNS:\($0)" } + ipAddresses.map { "IP:\($0)" }
        let extensions = "subjectAltName=" + names.joined(separator: ",")
        try extensions.write(toFile: path("\(file).ext"), atomically: true, encoding: .utf8)
        try openssl([
            "x509", "-req", "-in", "\(file).csr", "-CA", "\(ca).pem", "-CAkey", "\(ca).key",
            "-CAcreateserial", "-out", "\(file).pem", "-days", "2", "-extfile", "\(file).ext",
        ])
    }

    private func tls(_ file: String, ca: String = "ca") -> PeerAuth {
        .tls(certPath: path("\(file).pem"), keyPath: path("\(file).key"), caPath: path("\(ca).pem"))
    }

    private func pair(_ auth1: PeerAuth, _ auth2: PeerAuth) throws -> [TestNode] {
        let ports = try (0..<2).map { _ in try freePort(loop) }
        let endpoints = (0..<2).map { PeerEndpoint(id: NodeID("n\($0 + 1)"), host: "127.0.0.1", port: ports[$0]) }
        var options = PeerTransportOptions()
        options.reconnectBackoffMinMs = 20
        options.reconnectBackoffMaxMs = 200
        return try [auth1, auth2].enumerated().map { index, auth in
            let transport = try PeerTransport(
                loop: loop, selfID: endpoints[index].id, peers: endpoints, listenHost: "127.0.0.1",
                listenPort: ports[index], auth: auth, options: options)
            let recorder = Recorder()
            transport.delegate = recorder
            transport.start()
            return TestNode(transport: transport, recorder: recorder)
        }
    }

    func testPeersWithCertificatesFromTheClusterCAConnectAndExchangeFrames() throws {
        try makeCA("ca")
        try makeCertificate("n1", commonName: "n1", dnsNames: ["n1"], ca: "ca")
        try makeCertificate("n2", commonName: "n2", dnsNames: ["n2"], ca: "ca")
        let nodes = try pair(tls("n1"), tls("n2"))
        XCTAssertTrue(
            runLoop(loop) {
                nodes[0].transport.isConnected(to: NodeID("n2")) && nodes[1].transport.isConnected(to: NodeID("n1"))
            },
            "\(nodes.map { $0.recorder.authFailures })")
        // Both nodes dial each other at start; when both dials complete, each side keeps the link the smaller id
        // dialled and closes the other, and a frame already sent on the closed one is lost (Raft sends again).
        // So, like Raft, send again until each side has heard the other: each frame must arrive whole.
        var delivered = false
        for _ in 0..<10 where !delivered {
            if nodes[1].recorder.frames.isEmpty {
                nodes[0].transport.send(type: 0x10, payload: Array(repeating: 0xAB, count: 200_000), to: NodeID("n2"))
            }
            if nodes[0].recorder.frames.isEmpty { nodes[1].transport.send(type: 0x11, payload: [1], to: NodeID("n1")) }
            delivered = runLoop(loop, timeoutMs: 2_000) {
                !nodes[0].recorder.frames.isEmpty && !nodes[1].recorder.frames.isEmpty
            }
        }
        XCTAssertTrue(
            delivered,
            "\(nodes.map { ($0.recorder.frames.count, $0.recorder.disconnected, $0.transport.peerStatuses) })")
        XCTAssertEqual(nodes[1].recorder.frames.first?.payload, Array(repeating: 0xAB, count: 200_000))
        XCTAssertEqual(nodes[0].recorder.frames.first?.payload, [1])
        XCTAssertTrue(
            nodes.allSatisfy { $0.recorder.authFailures.isEmpty }, "\(nodes.map { $0.recorder.authFailures })")
    }

    func testACertificateFromAnotherCAIsRefused() throws {
        try makeCA("ca")
        try makeCA("rogue-ca")
        try makeCertificate("n1", commonName: "n1", dnsNames: ["n1"], ca: "ca")
        try makeCertificate("n2", commonName: "n2", dnsNames: ["n2"], ca: "rogue-ca")
        // n2 trusts the cluster CA, but its own certificate comes from another CA.
        let nodes = try pair(tls("n1"), tls("n2"))
        XCTAssertTrue(
            runLoop(loop) { !nodes[0].recorder.authFailures.isEmpty && !nodes[1].recorder.authFailures.isEmpty })
        runLoop(loop, forMs: 100)
        XCTAssertTrue(nodes.allSatisfy { $0.recorder.connected.isEmpty }, "neither side ever accepts the link")
        let verifierReasons = nodes[0].recorder.authFailures.map { $0.1.description }
        XCTAssertTrue(verifierReasons.contains { $0.contains("peer certificate rejected") }, "\(verifierReasons)")
    }

    func testACertificateThatDoesNotNameTheClaimedNodeIsRefused() throws {
        try makeCA("ca")
        try makeCertificate("n1", commonName: "n1", dnsNames: ["n1"], ca: "ca")
        try makeCertificate("n3", commonName: "n3", dnsNames: ["n3"], ca: "ca")
        // A valid cluster certificate for n3, used by a process claiming to be n2.
        let nodes = try pair(tls("n1"), tls("n3"))
        XCTAssertTrue(
            runLoop(loop) {
                nodes[0].recorder.authFailures.contains {
                    if case .certificateMismatch(claimed: "n2", _) = $0.1 { true } else { false }
                }
            }, "\(nodes[0].recorder.authFailures)")
        XCTAssertTrue(nodes[0].recorder.connected.isEmpty)
    }

    func testUnreadableTLSFilesFailAtStartNamingTheFile() throws {
        try makeCA("ca")
        XCTAssertThrowsError(
            try PeerTransport(
                loop: loop, selfID: NodeID("n1"), peers: [], listenHost: "127.0.0.1", listenPort: 0,
                auth: .tls(certPath: path("missing.pem"), keyPath: path("missing.key"), caPath: path("ca.pem")))
        ) { error in
            XCTAssertTrue("\(error)".contains("missing.pem"), "\(error)")
        }
    }

    func testACertificateNamingTheConfiguredIPAddressIsAccepted() throws {
        try makeCA("ca")
        try makeCertificate("n1", commonName: "host-a", dnsNames: ["host-a"], ipAddresses: ["127.0.0.1"], ca: "ca")
        try makeCertificate("n2", commonName: "host-b", dnsNames: ["host-b"], ipAddresses: ["127.0.0.1"], ca: "ca")
        let nodes = try pair(tls("n1"), tls("n2"))
        XCTAssertTrue(
            runLoop(loop) {
                nodes[0].transport.isConnected(to: NodeID("n2")) && nodes[1].transport.isConnected(to: NodeID("n1"))
            }, "\(nodes.map { $0.recorder.authFailures })")
    }
}
