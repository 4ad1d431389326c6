import Glibc
import XCTest

@testable import TandemNet

/// `Connection.sendStagedNow()`: a caller that has staged the last byte of a message sends it at once instead of
/// after the turn's callbacks, on real loopback sockets. The bytes reach the peer before the callback returns; what
/// is written after them in the same turn follows in order; the drain is reported once, from the turn's flush and
/// never from inside the caller, as for any other flush.
final class ConnectionSendNowTests: XCTestCase {
    private final class Server: ListenerDelegate, ConnectionDelegate {
        var connection: Connection?
        /// The client's socket, read from inside the input callback.
        var clientFD: Int32 = -1
        var sendNow = true
        var writeAfterSending: [UInt8] = []
        var insideCallback = false
        /// What the client could read while the server's callback was still running.
        var readableInsideCallback: [UInt8] = []
        var drainsInsideCallback = 0
        var drains = 0

        func listener(_ listener: Listener, accepted connection: Connection) {
            self.connection = connection
            connection.delegate = self
            connection.enableReading()
        }

        func connectionHasInput(_ connection: Connection) {
            insideCallback = true
            defer { insideCallback = false }
            connection.consumeInput { $0.count }
            connection.write(Array("pong".utf8))
            if sendNow { connection.sendStagedNow() }
            if !writeAfterSending.isEmpty { connection.write(writeAfterSending) }
            readableInsideCallback = Self.readAvailable(clientFD, waitMs: sendNow ? 1000 : 50)
        }

        func connectionDidDrainOutput(_ connection: Connection) {
            drains += 1
            if insideCallback { drainsInsideCallback += 1 }
        }

        func connectionDidClose(_ connection: Connection, reason: CloseReason) {}

        /// What `fd` has to read within `waitMs` (the bytes of one readable moment, without blocking after it).
        static func readAvailable(_ fd: Int32, waitMs: Int32) -> [UInt8] {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, waitMs) == 1 else { return [] }
            var buffer = [UInt8](repeating: 0, count: 256)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            return count > 0 ? Array(buffer.prefix(count)) : []
        }
    }

    /// One ping through a fresh server; returns the server after its drain (or after 10 s without one).
    private func ping(sendNow: Bool, writeAfterSending: String = "") throws -> (Server, rest: [UInt8]) {
        let loop = try EventLoop()
        let server = Server()
        server.sendNow = sendNow
        server.writeAfterSending = Array(writeAfterSending.utf8)
        let listener = try Listener(loop: loop, host: "127.0.0.1", port: 0)
        listener.delegate = server
        let client = try connectLoopbackClient(port: listener.port)
        defer { close(client) }
        server.clientFD = client
        XCTAssertEqual(send(client, "ping", 4, 0), 4)
        XCTAssertTrue(runLoop(loop) { server.drains > 0 }, "no drain was reported")
        // Whatever the callback did not see arrives once the turn's flush has run.
        var rest: [UInt8] = []
        let expected = 4 + server.writeAfterSending.count
        while server.readableInsideCallback.count + rest.count < expected {
            let more = Server.readAvailable(client, waitMs: 1000)
            if more.isEmpty { break }
            rest += more
        }
        return (server, rest)
    }

    func testTheMessageReachesThePeerBeforeTheCallbackReturnsAndTheDrainIsReportedAfterIt() throws {
        let (server, rest) = try ping(sendNow: true)
        XCTAssertEqual(String(decoding: server.readableInsideCallback, as: UTF8.self), "pong")
        XCTAssertEqual(rest, [])
        XCTAssertEqual(server.drains, 1, "one drain, as for a flush at the end of the turn")
        XCTAssertEqual(server.drainsInsideCallback, 0, "the drain is never reported from inside the caller")
    }

    func testWithoutItTheBytesWaitForTheEndOfTheTurn() throws {
        // The control: staged bytes stay staged while the callback runs.
        let (server, rest) = try ping(sendNow: false)
        XCTAssertEqual(server.readableInsideCallback, [])
        XCTAssertEqual(String(decoding: rest, as: UTF8.self), "pong")
        XCTAssertEqual(server.drains, 1)
    }

    func testBytesWrittenAfterwardsInTheSameTurnFollowInOrderWithOneDrain() throws {
        let (server, rest) = try ping(sendNow: true, writeAfterSending: "-and-more")
        XCTAssertEqual(String(decoding: server.readableInsideCallback + rest, as: UTF8.self), "pong-and-more")
        XCTAssertEqual(String(decoding: server.readableInsideCallback.prefix(4), as: UTF8.self), "pong")
        XCTAssertEqual(server.drains, 1)
        XCTAssertEqual(server.drainsInsideCallback, 0)
    }
}
