import Glibc
import XCTest

@testable import TandemNet

/// An echo server and a client on one loop: proves listeners, outbound connects, zero-copy input and
/// close-after-flush work together on real sockets.
final class EchoServer: ListenerDelegate, ConnectionDelegate {
    var accepted = 0
    func listener(_ listener: Listener, accepted connection: Connection) {
        accepted += 1
        connection.delegate = self
        connection.enableReading()
    }
    func connectionHasInput(_ connection: Connection) {
        connection.consumeInput { chunk in
            connection.write(chunk)
            return chunk.count
        }
    }
    func connectionDidClose(_ connection: Connection, reason: CloseReason) {}
}

final class EchoClient: ConnectionDelegate {
    let loop: EventLoop
    var received: [UInt8] = []
    var expected: Int
    var connected = false
    var closeReason: CloseReason?
    init(loop: EventLoop, expected: Int) {
        self.loop = loop
        self.expected = expected
    }
    func connectionDidConnect(_ connection: Connection) { connected = true }
    func connectionHasInput(_ connection: Connection) {
        connection.consumeInput { chunk in
            received.append(contentsOf: chunk)
            return chunk.count
        }
        if received.count >= expected {
            connection.close()
            loop.stop()
        }
    }
    func connectionDidClose(_ connection: Connection, reason: CloseReason) {
        closeReason = reason
        loop.stop()
    }
}

final class EventLoopTests: XCTestCase {
    func testEchoRoundTripOverLoopbackPreservesEveryByte() throws {
        let loop = try EventLoop()
        let server = EchoServer()
        let listener = try Listener(loop: loop, host: "127.0.0.1", port: 0)
        listener.delegate = server
        XCTAssertNotEqual(listener.port, 0, "port 0 must be replaced by the chosen port")
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let client = EchoClient(loop: loop, expected: payload.count)
        let connection = try XCTUnwrap(
            Connection.connect(loop: loop, host: "127.0.0.1", port: listener.port, delegate: client))
        connection.enableReading()
        connection.write(payload)
        let watchdog = Timer(loop: loop) { loop.stop() }
        watchdog.schedule(afterMs: 10_000)
        loop.run()
        XCTAssertTrue(client.connected)
        XCTAssertEqual(client.received, payload)
        XCTAssertEqual(server.accepted, 1)
        watchdog.invalidate()
    }

    func testConnectToClosedPortReportsRefusal() throws {
        let loop = try EventLoop()
        // Bind then close a listener to find a port that nobody listens on.
        let probe = try Listener(loop: loop, host: "127.0.0.1", port: 0)
        let port = probe.port
        probe.close()
        let client = EchoClient(loop: loop, expected: 1)
        _ = Connection.connect(loop: loop, host: "127.0.0.1", port: port, delegate: client)
        let watchdog = Timer(loop: loop) { loop.stop() }
        watchdog.schedule(afterMs: 5_000)
        loop.run()
        XCTAssertEqual(client.closeReason, .socketError(ECONNREFUSED))
        watchdog.invalidate()
    }

    func testRepeatingTimerFiresUntilCancelled() throws {
        let loop = try EventLoop()
        var fired = 0
        var timer: TandemNet.Timer?
        timer = Timer(loop: loop) {
            fired += 1
            if fired == 3 {
                timer?.cancel()
                loop.stop()
            }
        }
        timer?.scheduleRepeating(everyMs: 5)
        loop.run()
        XCTAssertEqual(fired, 3)
        XCTAssertFalse(timer!.isScheduled)
        timer?.invalidate()
    }

    func testBindingAnAddressInUseFailsWithBindError() throws {
        let loop = try EventLoop()
        let first = try Listener(loop: loop, host: "127.0.0.1", port: 0)
        // SO_REUSEADDR does not allow two listeners on one port.
        XCTAssertThrowsError(try Listener(loop: loop, host: "127.0.0.1", port: first.port)) { error in
            guard case NetError.bindFailed = error else { return XCTFail("unexpected \(error)") }
        }
    }
}

/// Records whether a connect's callbacks ran before `Connection.connect` returned.
final class SynchronyProbe: ConnectionDelegate {
    var returned = false
    var earlyEvents = 0
    var connects = 0
    func connectionDidConnect(_ connection: Connection) {
        connects += 1
        if !returned { earlyEvents += 1 }
    }
    func connectionHasInput(_ connection: Connection) {}
    func connectionDidClose(_ connection: Connection, reason: CloseReason) {
        if !returned { earlyEvents += 1 }
    }
}

final class ConnectSynchronyTests: XCTestCase {
    /// A caller sets up its state after `connect` returns (it stores the connection, decides to hold a request):
    /// no delegate callback may run before that, even on loopback where the connect completes at once.
    func testConnectCallbacksNeverRunBeforeConnectReturns() throws {
        let loop = try EventLoop()
        let server = EchoServer()
        let listener = try Listener(loop: loop, host: "127.0.0.1", port: 0)
        listener.delegate = server
        var probes: [SynchronyProbe] = []
        var connections: [Connection] = []
        for _ in 0..<200 {
            let probe = SynchronyProbe()
            probes.append(probe)
            if let connection = Connection.connect(loop: loop, host: "127.0.0.1", port: listener.port, delegate: probe)
            {
                connections.append(connection)
            }
            probe.returned = true
        }
        let watchdog = Timer(loop: loop) { loop.stop() }
        watchdog.schedule(afterMs: 2_000)
        loop.run()
        XCTAssertEqual(probes.reduce(0) { $0 + $1.earlyEvents }, 0, "callbacks ran inside connect")
        XCTAssertEqual(probes.reduce(0) { $0 + $1.connects }, 200)
        for connection in connections { connection.close() }
        watchdog.invalidate()
    }
}
