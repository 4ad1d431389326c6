import TandemHTTP
import TandemNet
import XCTest

@testable import TandemSidecar

/// Accepts one connection and hands every input callback to `onInput`.
private final class InputServer: ListenerDelegate, ConnectionDelegate {
    var onInput: (Connection) -> Void = { _ in }
    func listener(_ listener: Listener, accepted connection: Connection) {
        connection.delegate = self
        connection.enableReading()
    }
    func connectionHasInput(_ connection: Connection) { onInput(connection) }
    func connectionDidClose(_ connection: Connection, reason: CloseReason) {}
}

private final class SilentClient: ConnectionDelegate {
    func connectionHasInput(_ connection: Connection) {}
    func connectionDidClose(_ connection: Connection, reason: CloseReason) {}
}

/// `Connection.parseInput` on real sockets: the loop every HTTP reader of the sidecar shares.
final class ParseLoopTests: XCTestCase {
    /// Sends `bytes` in one write to a server whose input callbacks run `onInput` until it stops the loop (or a
    /// 10 s watchdog does).
    private func deliver(_ bytes: String, onInput: @escaping (EventLoop, Connection) -> Void) throws {
        let loop = try EventLoop()
        let server = InputServer()
        server.onInput = { connection in onInput(loop, connection) }
        let listener = try Listener(loop: loop, host: "127.0.0.1", port: 0)
        listener.delegate = server
        let client = SilentClient()
        let connection = try XCTUnwrap(
            Connection.connect(loop: loop, host: "127.0.0.1", port: listener.port, delegate: client))
        connection.write(bytes)
        let watchdog = TandemNet.Timer(loop: loop) { loop.stop() }
        watchdog.schedule(afterMs: 10_000)
        loop.run()
        watchdog.invalidate()
        connection.close()
        listener.close()
    }

    func testAFinalResponseAfterAnInterimOneInTheSameChunkIsParsedWithoutWaitingForMoreBytes() throws {
        var parser = HTTPResponseParser(limits: .upstreamResponse)
        parser.expect(requestMethod: "GET")
        var status: Int?
        var body: [UInt8] = []
        var complete = false
        try deliver("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        {
            loop, connection in
            do throws(HTTPParseError) {
                try connection.parseInput(while: { !complete }) { rest throws(HTTPParseError) in
                    try parser.parse(rest) { event in
                        switch event {
                        case .head(let head): if !head.isInterim { status = head.status }
                        case .body(let bytes): body.append(contentsOf: bytes)
                        case .end: if status != nil { complete = true }
                        }
                    }
                }
            } catch {
                XCTFail("\(error)")
            }
            if complete { loop.stop() }
        }
        XCTAssertTrue(complete, "the final response waited for bytes that were already buffered")
        XCTAssertEqual(status, 200)
        XCTAssertEqual(body, Array("ok".utf8))
    }

    func testPipelinedRequestsAreParsedOneAtATimeAndTheRestStaysBuffered() throws {
        var parser = HTTPRequestParser(limits: HTTPLimits())
        var targets: [String] = []
        var ended = 0
        var leftAfterFirst = 0
        try deliver("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n") { loop, connection in
            let endedBefore = ended
            do throws(HTTPParseError) {
                try connection.parseInput(while: { ended == endedBefore }) { rest throws(HTTPParseError) in
                    try parser.parse(rest) { event in
                        switch event {
                        case .head(let head): targets.append(head.target)
                        case .body: break
                        case .end: ended += 1
                        }
                    }
                }
            } catch {
                XCTFail("\(error)")
            }
            if ended == 1 {
                leftAfterFirst = connection.inputCount
                // The caller is ready for the next request: a second call parses it from the buffer.
                do throws(HTTPParseError) {
                    try connection.parseInput(while: { ended == 1 }) { rest throws(HTTPParseError) in
                        try parser.parse(rest) { event in
                            if case .head(let head) = event { targets.append(head.target) }
                            if case .end = event { ended += 1 }
                        }
                    }
                } catch {
                    XCTFail("\(error)")
                }
            }
            if ended == 2 { loop.stop() }
        }
        XCTAssertEqual(targets, ["/a", "/b"])
        XCTAssertEqual(leftAfterFirst, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n".utf8.count)
    }

    func testAParseErrorIsThrownAfterTheBytesBeforeItAreDrained() throws {
        var parser = HTTPRequestParser(limits: HTTPLimits())
        var targets: [String] = []
        var failure: HTTPParseError?
        try deliver("GET /a HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP\r\n\r\n") { loop, connection in
            do throws(HTTPParseError) {
                try connection.parseInput(while: { true }) { rest throws(HTTPParseError) in
                    try parser.parse(rest) { event in
                        if case .head(let head) = event { targets.append(head.target) }
                    }
                }
            } catch {
                failure = error
                loop.stop()
            }
        }
        XCTAssertEqual(targets, ["/a"], "the request before the bad bytes was parsed")
        XCTAssertNotNil(failure)
    }
}
