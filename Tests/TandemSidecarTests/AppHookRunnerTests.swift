import Foundation
import Logging
import TandemConfig
import TandemHTTP
import TandemNet
import XCTest

@testable import TandemSidecar

/// A tiny HTTP app on the test's loop: records every request and answers with whatever `answer` returns.
private final class TinyApp: ListenerDelegate {
    struct Request {
        var head: HTTPRequestHead
        var body: Data
    }

    enum Answer {
        /// Whole response bytes, written after the request's body was read.
        case afterBody([UInt8])
        /// Whole response bytes, written as soon as the head arrived (the body is not read).
        case onHead([UInt8])
        /// A chunked 200 carrying `payload` in chunks of `chunkBytes`.
        case chunked(payload: [UInt8], chunkBytes: Int)
    }

    let listener: Listener
    private unowned let loop: EventLoop
    var answer: (HTTPRequestHead) -> Answer
    var requests: [Request] = []
    /// Set to read the request body slowly: this many bytes per 10 ms turn.
    var slowReadBytes: Int?
    /// Set to hold an `.afterBody` answer back this long after the body ended.
    var answerDelayMs: Int64?

    init(loop: EventLoop, answer: @escaping (HTTPRequestHead) -> Answer) throws {
        listener = try Listener(loop: loop, host: "127.0.0.1", port: 0)
        self.loop = loop
        self.answer = answer
        listener.delegate = self
    }

    var port: UInt16 { listener.port }

    func listener(_ listener: Listener, accepted connection: Connection) {
        let session = TinySession(app: self, loop: loop, connection: connection)
        connection.delegate = session
        // A slow app holds little unread: TCP pushes back on the sender instead.
        if slowReadBytes != nil { connection.setReadHighWatermark(bytes: 64 << 10) }
        connection.enableReading()
    }

    static func response(_ status: Int, _ body: [UInt8], extra: String = "") -> [UInt8] {
        Array(
            "HTTP/1.1 \(status) \(HTTPStatus.reasonPhrase(status))\r\nContent-Length: \(body.count)\r\n\(extra)\r\n"
                .utf8) + body
    }
}

private final class TinySession: ConnectionDelegate {
    private unowned let app: TinyApp
    private let connection: Connection
    private var parser = HTTPRequestParser(limits: HTTPLimits(bodyMaxBytes: 1 << 30))
    private var head: HTTPRequestHead?
    private var body = Data()
    private var answered = false
    private var slowTimer: TandemNet.Timer?

    private unowned let loop: EventLoop

    init(app: TinyApp, loop: EventLoop, connection: Connection) {
        self.app = app
        self.loop = loop
        self.connection = connection
        if app.slowReadBytes != nil {
            slowTimer = TandemNet.Timer(loop: loop) { [unowned self] in self.connectionHasInput(self.connection) }
            slowTimer?.scheduleRepeating(everyMs: 10)
        }
    }

    func connectionHasInput(_ connection: Connection) {
        guard !answered else {
            connection.consumeInput { $0.count }  // Answered early: the rest of the request is read and dropped.
            return
        }
        var budget = app.slowReadBytes ?? Int.max
        var ended = false
        connection.consumeInput { chunk in
            guard !ended, !answered, budget > 0 else { return 0 }
            let slice = UnsafeRawBufferPointer(rebasing: chunk.prefix(budget))
            let used =
                (try? parser.parse(slice) { event in
                    switch event {
                    case .head(let requestHead):
                        head = requestHead
                        if case .onHead(let bytes) = app.answer(requestHead) { reply(bytes, close: false) }
                    case .body(let bytes): body.append(bytes.assumingMemoryBound(to: UInt8.self))
                    case .end: ended = true
                    }
                }) ?? slice.count
            budget -= used
            return used
        }
        if ended, let head, !answered {
            app.requests.append(TinyApp.Request(head: head, body: body))
            switch app.answer(head) {
            case .afterBody(let bytes):
                if let delay = app.answerDelayMs {
                    slowTimer = TandemNet.Timer(loop: loop) { [unowned self] in self.reply(bytes) }
                    slowTimer?.schedule(afterMs: delay)
                } else {
                    reply(bytes)
                }
            case .onHead(let bytes): reply(bytes, close: false)
            case .chunked(let payload, let chunkBytes):
                var out = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
                var start = 0
                while start < payload.count {
                    let end = min(payload.count, start + chunkBytes)
                    payload[start..<end].withUnsafeBytes { HTTPSerializer.appendChunk($0, into: &out) }
                    start = end
                }
                HTTPSerializer.appendLastChunk(into: &out)
                reply(out)
            }
        }
    }

    /// An early answer keeps the connection open and reads on: closing with unread input would reset the
    /// connection, and the client could lose the answer.
    private func reply(_ bytes: [UInt8], close: Bool = true) {
        answered = true
        slowTimer?.invalidate()
        connection.write(bytes)
        if close { connection.closeAfterFlush() }
    }

    func connectionDidClose(_ connection: Connection, reason: CloseReason) {
        slowTimer?.invalidate()
    }
}

/// The runner against real children and a real HTTP app: byte-exact transfers both ways, errors that say what
/// happened, timeouts and cancels that kill, and no child left unreaped.
final class AppHookRunnerTests: XCTestCase {
    private var loop: EventLoop!
    private var directory: URL!
    private let log = Logger(label: "hooks-test")

    override func setUpWithError() throws {
        ignoreBrokenPipeSignals()  // As the sidecar does: a reset socket is an error on it, not the process's end.
        loop = try EventLoop()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-hooks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func runner(timeoutMs: Int64 = 20_000, port: UInt16 = 1) -> AppHookRunner {
        AppHookRunner(loop: loop, upstreamHost: "127.0.0.1", upstreamPort: port, timeoutMs: timeoutMs, log: log)
    }

    /// Runs the loop until `start`'s completion is called (at most 30 s), returning what it was given.
    private func wait<T>(
        file: StaticString = #filePath, line: UInt = #line, _ start: (@escaping (T) -> Void) -> Void
    ) -> T? {
        var result: T?
        let limit = TandemNet.Timer(loop: loop) { [loop] in loop!.stop() }
        limit.schedule(afterMs: 30_000)
        start { [loop] value in
            result = value
            loop!.stop()
        }
        loop.run()
        limit.invalidate()
        if result == nil { XCTFail("the hook did not complete within 30 s", file: file, line: line) }
        return result
    }

    /// Deterministic bytes that no shell quoting or text mode would leave unchanged by accident.
    private func payload(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        var words = [UInt64](repeating: 0, count: (count + 7) / 8)
        for position in words.indices {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            words[position] = state
        }
        return words.withUnsafeBytes { Array($0.prefix(count)) }
    }

    /// Byte equality at memcmp speed (the multi-MiB comparisons would dominate a debug build's run time).
    private func same(_ a: some ContiguousBytes, _ b: some ContiguousBytes) -> Bool {
        a.withUnsafeBytes { x in
            b.withUnsafeBytes { y in
                x.count == y.count && (x.isEmpty || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0)
            }
        }
    }

    private func file(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = directory.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    private func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    private func read(_ path: String) -> Data {
        (try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data()
    }

    /// A descriptor of `path` positioned at `offset`, as a restore gets it.
    private func descriptor(_ path: String, offset: Int = 0) -> Int32 {
        let fd = open(path, O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(lseek(fd, off_t(offset), SEEK_SET), off_t(offset))
        return fd
    }

    /// A process that is gone: no such pid, or (an orphan not yet collected by init) a zombie.
    private func isGone(_ pid: pid_t) -> Bool {
        if kill(pid, 0) != 0 { return errno == ESRCH }
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") ?? true
    }

    /// Killed processes die asynchronously: waits up to 5 s for `pid` to be gone.
    private func eventuallyGone(_ pid: pid_t) -> Bool {
        let deadline = EventLoop.preciseNowMs() + 5_000
        while !isGone(pid) {
            if EventLoop.preciseNowMs() > deadline { return false }
            usleep(10_000)
        }
        return true
    }

    private func pid(in path: String) -> pid_t? {
        pid_t(String(decoding: read(path), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Runs a save; the state is collected in a `Data` (appending raw bytes is a memcpy there).
    private func save(_ runner: AppHookRunner, _ hook: AppHook) -> (Result<UInt64, AppHookError>, Data)? {
        var received = Data()
        guard
            let result: Result<UInt64, AppHookError> = wait({ done in
                runner.save(hook, into: { received.append($0.assumingMemoryBound(to: UInt8.self)) }, completion: done)
            })
        else { return nil }
        return (result, received)
    }

    private func restore(_ runner: AppHookRunner, _ hook: AppHook, fd: Int32, length: UInt64)
        -> Result<Void, AppHookError>?
    {
        wait { done in runner.restore(hook, from: fd, length: length, completion: done) }
    }

    private func error<T>(_ result: Result<T, AppHookError>?) -> AppHookError? {
        if case .failure(let error) = result { return error }
        return nil
    }

    // MARK: saves

    func testAnExecSaveStreamsStandardOutputByteExact() throws {
        let state = payload(8 << 20, seed: 1)
        let source = try file("state.bin", state)
        let pidFile = path("pid")
        let runner = runner()
        let outcome = try XCTUnwrap(save(runner, .exec(command: "echo $$ > '\(pidFile)'; cat '\(source)'")))
        XCTAssertEqual(try outcome.0.get(), UInt64(state.count))
        XCTAssertTrue(same(outcome.1, state), "the saved bytes are the command's output, exactly")
        XCTAssertTrue(isGone(try XCTUnwrap(pid(in: pidFile))), "the child was reaped")
        XCTAssertEqual(runner.runningCount, 0)
    }

    func testAnExecSaveOfGeneratedOutputWithHeadAndPrintf() throws {
        let outcome = try XCTUnwrap(
            save(runner(), .exec(command: "printf 'A\\000B\\377'; head -c 3000000 /dev/zero; printf end")))
        XCTAssertEqual(try outcome.0.get(), 3_000_007)
        XCTAssertEqual(Array(outcome.1.prefix(4)), [0x41, 0x00, 0x42, 0xFF])
        XCTAssertEqual(Array(outcome.1.suffix(3)), Array("end".utf8))
        XCTAssertTrue(same(outcome.1[4..<3_000_004], [UInt8](repeating: 0, count: 3_000_000)))
    }

    func testANonZeroExitIsAnErrorNamingTheCodeAndTheStandardError() throws {
        let outcome = try XCTUnwrap(save(runner(), .exec(command: "echo partial; echo 'disk is full' >&2; exit 3")))
        let failure = try XCTUnwrap(error(outcome.0))
        XCTAssertEqual(failure.kind, .exitedWithError)
        XCTAssertTrue(failure.description.contains("exited with code 3"), failure.description)
        XCTAssertTrue(failure.description.contains("disk is full"), failure.description)
    }

    func testAHookThatRunsTooLongIsKilledWithItsChildrenAndReaped() throws {
        let shellFile = path("shell.pid")
        let sleeperFile = path("sleeper.pid")
        let started = EventLoop.preciseNowMs()
        let outcome = try XCTUnwrap(
            save(
                runner(timeoutMs: 300),
                .exec(command: "echo $$ > '\(shellFile)'; sleep 30 & echo $! > '\(sleeperFile)'; wait")))
        let failure = try XCTUnwrap(error(outcome.0))
        XCTAssertEqual(failure.kind, .timedOut)
        XCTAssertTrue(failure.description.contains("ran longer than 300ms"), failure.description)
        XCTAssertLessThan(EventLoop.preciseNowMs() - started, 10_000, "stopped by the timeout, not by sleep")
        XCTAssertTrue(isGone(try XCTUnwrap(pid(in: shellFile))), "the shell was killed and reaped")
        XCTAssertTrue(eventuallyGone(try XCTUnwrap(pid(in: sleeperFile))), "what the shell started was killed too")
    }

    func testASinkThatThrowsStopsTheCommand() throws {
        struct Full: Error {}
        let pidFile = path("pid")
        var delivered = 0
        let runner = runner()
        let result: Result<UInt64, AppHookError>? = wait { done in
            runner.save(
                .exec(command: "echo $$ > '\(pidFile)'; exec cat /dev/zero"),
                into: { bytes in
                    delivered += bytes.count
                    if delivered > 1 << 20 { throw Full() }
                }, completion: done)
        }
        let failure = try XCTUnwrap(error(result))
        XCTAssertEqual(failure.kind, .sinkFailed)
        XCTAssertTrue(isGone(try XCTUnwrap(pid(in: pidFile))))
    }

    func testCancelAllStopsARunningCommand() throws {
        let runner = runner()
        let cancel = TandemNet.Timer(loop: loop) { runner.cancelAll() }
        cancel.schedule(afterMs: 100)
        let outcome = try XCTUnwrap(save(runner, .exec(command: "sleep 30")))
        XCTAssertEqual(error(outcome.0)?.kind, .cancelled)
        XCTAssertEqual(runner.runningCount, 0)
    }

    func testARunnerThatGoesAwayStopsItsChildren() throws {
        let pidFile = path("pid")
        var runner: AppHookRunner? = runner()
        // Once the child is running (its pid file is complete), nothing holds the runner any more.
        let watch = TandemNet.Timer(loop: loop) { [unowned self] in
            if self.pid(in: pidFile) != nil { runner = nil }
        }
        watch.scheduleRepeating(everyMs: 10)
        let result: Result<UInt64, AppHookError>? = wait { done in
            runner?.save(
                .exec(command: "echo $$ > '\(pidFile).new'; mv '\(pidFile).new' '\(pidFile)'; exec sleep 30"),
                into: { _ in }, completion: done)
        }
        watch.invalidate()
        XCTAssertNil(runner)
        XCTAssertEqual(error(result)?.kind, .cancelled)
        XCTAssertTrue(isGone(try XCTUnwrap(pid(in: pidFile))), "the child was killed and reaped")
    }

    func testHooksDoNotSeeTandemsSecrets() throws {
        setenv("TANDEM_ADMIN_TOKEN", "hunter2-token", 1)
        defer { unsetenv("TANDEM_ADMIN_TOKEN") }
        let outcome = try XCTUnwrap(
            save(runner(), .exec(command: "printf '%s|%s' \"${TANDEM_ADMIN_TOKEN:-none}\" \"$PATH\"")))
        let text = String(decoding: outcome.1, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("none|"), text)
        XCTAssertGreaterThan(text.count, "none|".count, "the rest of the environment is passed on")
    }

    func testAnHTTPSaveStreamsAContentLengthBody() throws {
        let state = payload(8 << 20, seed: 2)
        let app = try TinyApp(loop: loop) { _ in .afterBody(TinyApp.response(200, state)) }
        let outcome = try XCTUnwrap(save(runner(port: app.port), .http(method: "GET", target: "/state?full=1")))
        XCTAssertEqual(try outcome.0.get(), UInt64(state.count))
        XCTAssertTrue(same(outcome.1, state))
        XCTAssertEqual(app.requests.map(\.head.method), ["GET"])
        XCTAssertEqual(app.requests.first?.head.target, "/state?full=1")
    }

    func testAnHTTPSaveStreamsAChunkedBody() throws {
        let state = payload(3 << 20, seed: 3)
        let app = try TinyApp(loop: loop) { _ in .chunked(payload: state, chunkBytes: 10_007) }
        let outcome = try XCTUnwrap(save(runner(port: app.port), .http(method: "GET", target: "/snapshot")))
        XCTAssertEqual(try outcome.0.get(), UInt64(state.count))
        XCTAssertTrue(same(outcome.1, state), "chunk framing removed, bytes exact")
    }

    func testAnHTTPSaveReadsABodyDelimitedByClose() throws {
        let state = payload(1 << 20, seed: 10)
        let app = try TinyApp(loop: loop) { _ in
            .afterBody(Array("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".utf8) + state)
        }
        let outcome = try XCTUnwrap(save(runner(port: app.port), .http(method: "GET", target: "/snapshot")))
        XCTAssertEqual(try outcome.0.get(), UInt64(state.count))
        XCTAssertTrue(same(outcome.1, state))
    }

    func testAnAppThatNeverAnswersTimesOut() throws {
        let app = try TinyApp(loop: loop) { _ in .onHead([]) }
        let runner = runner(timeoutMs: 200, port: app.port)
        let outcome = try XCTUnwrap(save(runner, .http(method: "GET", target: "/snapshot")))
        let failure = try XCTUnwrap(error(outcome.0))
        XCTAssertEqual(failure.kind, .timedOut)
        XCTAssertEqual(failure.description, "GET /snapshot ran longer than 200ms and was stopped")
        XCTAssertEqual(runner.runningCount, 0)
    }

    func testAnHTTPSaveAnsweredOtherThan200IsAnErrorNamingTheStatus() throws {
        let app = try TinyApp(loop: loop) { _ in .afterBody(TinyApp.response(503, Array("busy".utf8))) }
        let outcome = try XCTUnwrap(save(runner(port: app.port), .http(method: "GET", target: "/snapshot")))
        let failure = try XCTUnwrap(error(outcome.0))
        XCTAssertEqual(failure.kind, .unexpectedStatus)
        XCTAssertTrue(failure.description.contains("503 Service Unavailable, not 200"), failure.description)
        XCTAssertTrue(outcome.1.isEmpty, "an error page is not state")
    }

    func testAnHTTPSaveToAnAppThatIsNotThereFails() throws {
        let closed = try Listener(loop: loop, host: "127.0.0.1", port: 0)
        let port = closed.port
        closed.close()
        let outcome = try XCTUnwrap(save(runner(port: port), .http(method: "GET", target: "/snapshot")))
        XCTAssertEqual(error(outcome.0)?.kind, .connectionFailed)
    }

    // MARK: restores

    func testAnExecRestoreFeedsExactlyTheStateFromTheDescriptorsOffset() throws {
        let state = payload(6 << 20, seed: 4)
        let prefix = Array("HEADER-".utf8) + payload(993, seed: 5)
        let source = try file("snapshot", prefix + state + Array("TRAILER".utf8))
        let target = path("restored")
        let fd = descriptor(source, offset: prefix.count)
        let result = restore(runner(), .exec(command: "cat > '\(target)'"), fd: fd, length: UInt64(state.count))
        XCTAssertNoThrow(try XCTUnwrap(result).get())
        XCTAssertTrue(same(read(target), state), "exactly the state: not the header before it, not the trailer after")
        XCTAssertEqual(fcntl(fd, F_GETFD), -1, "the runner closed the descriptor")
    }

    func testAnExecRestoreThatFailsOrStopsReadingIsAnError() throws {
        let state = payload(1 << 20, seed: 6)
        let source = try file("snapshot", state)
        let failed = restore(
            runner(), .exec(command: "cat > /dev/null; echo 'bad format' >&2; exit 4"), fd: descriptor(source),
            length: UInt64(state.count))
        let failure = try XCTUnwrap(error(failed))
        XCTAssertEqual(failure.kind, .exitedWithError)
        XCTAssertTrue(failure.description.contains("code 4") && failure.description.contains("bad format"))
        let ignored = restore(runner(), .exec(command: "exit 0"), fd: descriptor(source), length: UInt64(state.count))
        XCTAssertEqual(error(ignored)?.kind, .incompleteInput, "a restore that did not take the whole state")
        let short = restore(
            runner(), .exec(command: "cat > /dev/null"), fd: descriptor(source), length: UInt64(state.count + 100))
        let shortFailure = try XCTUnwrap(error(short))
        XCTAssertEqual(shortFailure.kind, .sourceFailed)
        XCTAssertTrue(shortFailure.description.contains("ends after \(state.count) of"), shortFailure.description)
    }

    func testAnHTTPRestorePutsExactlyTheStateFromTheDescriptorsOffset() throws {
        let state = payload(6 << 20, seed: 7)
        let source = try file("snapshot", Array(repeating: 0xAA, count: 4096) + state + [1, 2, 3])
        let app = try TinyApp(loop: loop) { _ in .afterBody(TinyApp.response(204, [])) }
        app.slowReadBytes = 512 << 10  // the app reads slower than a file can be read: the runner must wait
        let fd = descriptor(source, offset: 4096)
        let result = restore(
            runner(port: app.port), .http(method: "PUT", target: "/state"), fd: fd, length: UInt64(state.count))
        XCTAssertNoThrow(try XCTUnwrap(result).get())
        XCTAssertEqual(app.requests.count, 1)
        let request = try XCTUnwrap(app.requests.first)
        XCTAssertEqual(request.head.method, "PUT")
        XCTAssertEqual(request.head.target, "/state")
        XCTAssertEqual(request.head.headers.first(name: "Content-Length"), String(state.count))
        XCTAssertTrue(same(request.body, state), "the body is the state, exactly")
        XCTAssertEqual(fcntl(fd, F_GETFD), -1, "the runner closed the descriptor")
    }

    /// The reader thread closes the state's descriptor once it has read it all; the runner must not close that
    /// number again when the app answers: by then the number may belong to another socket or file (a double close
    /// took a connection's socket from under libevent, and the applier's next connect was never heard of again).
    func testAnHTTPRestoreClosesItsDescriptorExactlyOnce() throws {
        let state = payload(300_000, seed: 12)
        let source = try file("snapshot", state)
        let fd = descriptor(source)
        var occupied = false
        let app = try TinyApp(loop: loop) { _ in .afterBody(TinyApp.response(204, [])) }
        app.answerDelayMs = 400  // the runner has long taken the reader's outcome when the answer arrives
        let plain = app.answer
        let occupy = TandemNet.Timer(loop: loop) {
            // The reader has read everything and closed the descriptor: its number goes to another file, as the
            // kernel would give it to the next socket or file opened.
            guard fcntl(fd, F_GETFD) == -1 else { return }
            let other = open("/dev/null", O_RDONLY)
            guard other >= 0 else { return }
            if other == fd {
                occupied = true  // The lowest free number: the kernel gave it back at once.
            } else {
                occupied = dup2(other, fd) == fd
                close(other)
            }
        }
        app.answer = { head in
            // Called at the head and again once the body ended.
            if !app.requests.isEmpty { occupy.schedule(afterMs: 200) }
            return plain(head)
        }
        let result = restore(
            runner(port: app.port), .http(method: "PUT", target: "/state"), fd: fd, length: UInt64(state.count))
        XCTAssertNoThrow(try XCTUnwrap(result).get())
        XCTAssertTrue(occupied, "the reader closed the descriptor and its number was reused")
        XCTAssertNotEqual(fcntl(fd, F_GETFD), -1, "the runner closed a descriptor that was no longer its own")
        close(fd)
    }

    func testAnHTTPRestoreRefusedEarlyIsAnErrorAndLeavesNothingRunning() throws {
        let state = payload(4 << 20, seed: 8)
        let source = try file("snapshot", state)
        let app = try TinyApp(loop: loop) { _ in .onHead(TinyApp.response(413, Array("too big".utf8))) }
        let runner = runner(port: app.port)
        let result = restore(
            runner, .http(method: "PUT", target: "/state"), fd: descriptor(source), length: UInt64(state.count))
        let failure = try XCTUnwrap(error(result))
        XCTAssertEqual(failure.kind, .unexpectedStatus)
        XCTAssertTrue(failure.description.contains("413"), failure.description)
        XCTAssertEqual(runner.runningCount, 0)
    }

    func testAnHTTPRestoreOfAShortSourceIsAnError() throws {
        let source = try file("snapshot", payload(100_000, seed: 9))
        let app = try TinyApp(loop: loop) { _ in .afterBody(TinyApp.response(200, [])) }
        let result = restore(
            runner(port: app.port), .http(method: "PUT", target: "/state"), fd: descriptor(source), length: 200_000)
        XCTAssertEqual(error(result)?.kind, .sourceFailed)
    }
}
