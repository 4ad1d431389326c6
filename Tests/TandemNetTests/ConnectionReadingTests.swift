import Glibc
import XCTest

@testable import TandemNet

/// A plain TCP connection reads its socket itself (one `recv` per readable event, see `Connection`): these tests
/// hold that reading to the contract the bufferevent kept before, on real loopback sockets. The high-water mark
/// bounds what is buffered and reading resumes once it is consumed; a pause holds input and the peer's EOF until
/// reading is enabled again, then reports the input first and the close after it.
final class ConnectionReadingTests: XCTestCase {
    private final class Recorder: ListenerDelegate, ConnectionDelegate {
        var connection: Connection?
        var inputCallbacks = 0
        var events: [String] = []
        var received: [UInt8] = []
        var consumeOnInput = true
        var pauseAfterFirstInput = false
        var highWatermark = 0
        /// Nonzero: consume only whole records of this many bytes, leaving a partial one buffered.
        var recordBytes = 0

        func listener(_ listener: Listener, accepted connection: Connection) {
            self.connection = connection
            connection.delegate = self
            if highWatermark > 0 { connection.setReadHighWatermark(bytes: highWatermark) }
            connection.enableReading()
        }

        func connectionHasInput(_ connection: Connection) {
            inputCallbacks += 1
            guard consumeOnInput else { return }
            connection.consumeInput { chunk in
                let taken = recordBytes > 0 ? chunk.count - chunk.count % recordBytes : chunk.count
                received.append(contentsOf: chunk.prefix(taken))
                return taken
            }
            if recordBytes > 0 { return }
            events.append("input \(String(decoding: received, as: UTF8.self))")
            if pauseAfterFirstInput && inputCallbacks == 1 { connection.pauseReading() }
        }

        func connectionDidClose(_ connection: Connection, reason: CloseReason) {
            events.append("closed \(reason)")
        }
    }

    /// A blocking client socket connected to `port`.
    private func connectClient(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            close(fd)
            throw POSIXError(.ECONNREFUSED)
        }
        return fd
    }

    /// Turns the loop until `condition` holds or `seconds` pass; returns whether it held.
    private func run(_ loop: EventLoop, seconds: Double = 10, until condition: @escaping () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        let check = TandemNet.Timer(loop: loop) {
            if condition() || Date() > deadline { loop.stop() }
        }
        check.scheduleRepeating(everyMs: 5)
        loop.run()
        check.invalidate()
        return condition()
    }

    /// Turns the loop for `milliseconds`, whatever happens.
    private func idle(_ loop: EventLoop, milliseconds: Int64) {
        let stop = TandemNet.Timer(loop: loop) { loop.stop() }
        stop.schedule(afterMs: milliseconds)
        loop.run()
        stop.invalidate()
    }

    func testReadingStopsAtTheHighWaterMarkAndResumesOnceTheInputIsConsumed() throws {
        let loop = try EventLoop()
        let recorder = Recorder()
        recorder.consumeOnInput = false
        recorder.highWatermark = 1000
        let listener = try Listener(loop: loop, host: "127.0.0.1", port: 0)
        listener.delegate = recorder
        let client = try connectClient(port: listener.port)
        defer { close(client) }
        let payload = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        // 50 kB fit in the loopback socket buffers: the send completes without the server reading.
        XCTAssertEqual(payload.withUnsafeBytes { send(client, $0.baseAddress, $0.count, 0) }, payload.count)
        XCTAssertTrue(run(loop) { recorder.connection?.inputCount ?? 0 > 0 })
        idle(loop, milliseconds: 100)
        let connection = try XCTUnwrap(recorder.connection)
        XCTAssertEqual(connection.inputCount, 1000, "buffered up to the mark, not beyond, however long the loop turns")
        var received: [UInt8] = []
        while received.count < payload.count {
            let before = received.count
            connection.consumeInput { chunk in
                received.append(contentsOf: chunk)
                return chunk.count
            }
            XCTAssertLessThanOrEqual(received.count - before, 1000, "never more than the mark buffered")
            XCTAssertTrue(
                run(loop, seconds: 5) { connection.inputCount > 0 || received.count == payload.count },
                "reading did not resume after the input was consumed (\(received.count) of \(payload.count))")
        }
        XCTAssertEqual(received, payload)
    }

    func testAPauseHoldsInputAndTheEOFUntilReadingIsEnabledThenReportsInputBeforeTheClose() throws {
        let loop = try EventLoop()
        let recorder = Recorder()
        recorder.pauseAfterFirstInput = true
        let listener = try Listener(loop: loop, host: "127.0.0.1", port: 0)
        listener.delegate = recorder
        let client = try connectClient(port: listener.port)
        XCTAssertEqual(send(client, "abc", 3, 0), 3)
        XCTAssertTrue(run(loop) { recorder.events == ["input abc"] }, "\(recorder.events)")
        // Paused now: more bytes and the EOF arrive, and nothing is reported.
        XCTAssertEqual(send(client, "def", 3, 0), 3)
        close(client)
        idle(loop, milliseconds: 150)
        XCTAssertEqual(recorder.events, ["input abc"], "a paused connection reports neither input nor the close")
        XCTAssertEqual(recorder.inputCallbacks, 1)
        let connection = try XCTUnwrap(recorder.connection)
        XCTAssertTrue(connection.isOpen)
        connection.enableReading()
        XCTAssertEqual(recorder.events, ["input abc"], "nothing is reported from inside enableReading()")
        XCTAssertTrue(run(loop) { recorder.events.count == 3 }, "\(recorder.events)")
        XCTAssertEqual(recorder.events, ["input abc", "input abcdef", "closed peer closed"])
    }

    func testAConsumerOfWholeRecordsGetsEveryByteOnceInOrderWhenRecordsArriveSplitAcrossReads() throws {
        let loop = try EventLoop()
        let recorder = Recorder()
        recorder.recordBytes = 1000
        let listener = try Listener(loop: loop, host: "127.0.0.1", port: 0)
        listener.delegate = recorder
        let client = try connectClient(port: listener.port)
        defer { close(client) }
        let payload = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 9) }
        // Odd-sized sends from another thread while the loop reads, so records straddle reads and a partial one
        // waits in the input while more arrive behind it.
        let sender = Thread {
            var offset = 0
            var size = 1
            while offset < payload.count {
                let count = min(size, payload.count - offset)
                let sent = payload[offset..<offset + count].withUnsafeBytes {
                    send(client, $0.baseAddress, $0.count, 0)
                }
                guard sent > 0 else { return }
                offset += sent
                size = size % 7919 * 3 + 1
            }
        }
        sender.start()
        XCTAssertTrue(
            run(loop) { recorder.received.count == payload.count },
            "\(recorder.received.count) of \(payload.count) bytes consumed")
        XCTAssertEqual(recorder.received, payload)
        XCTAssertEqual(try XCTUnwrap(recorder.connection).inputCount, 0)
    }
}
