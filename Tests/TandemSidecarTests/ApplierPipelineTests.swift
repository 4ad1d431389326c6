import Foundation
import Logging
import TandemConsensus
import TandemHTTP
import TandemNet
import XCTest

@testable import TandemSidecar

/// An HTTP/1.1 app on the test's loop that reads pipelined requests, records each one it takes in (a receipt), and
/// answers per `policy`. All the requests found in one read are answered together after it, so `largestBatch`
/// tells how many requests the applier had in flight at once. Each answer's body names its receipt, so a test can
/// tell which delivery of an entry the applier handed on.
private final class PipelineApp: ListenerDelegate {
    struct Receipt {
        let connection: Int
        /// 1-based position of the request on its connection.
        let position: Int
        let tandemIndex: UInt64?
        let target: String
        var answered = false
    }

    enum Action {
        /// A final response after the body.
        case answer
        /// A final response as soon as the head arrived, before the body is read.
        case answerEarly
        /// `100 Continue`, then the final response.
        case interimThenAnswer
        /// A final response with `Connection: close`; the rest of the connection is read and dropped.
        case answerAndClose
        /// No answer: the connection is closed once the answers before this request are written.
        case closeUnanswered
    }

    let listener: Listener
    private unowned let loop: EventLoop
    var policy: (Receipt) -> Action = { _ in .answer }
    var receipts: [Receipt] = []
    var connectionCount = 0
    var largestBatch = 0
    var parseErrors: [HTTPParseError] = []
    private var sessions: [PipelineSession] = []

    init(loop: EventLoop) throws {
        listener = try Listener(loop: loop, host: "127.0.0.1", port: 0)
        self.loop = loop
        listener.delegate = self
    }

    var port: UInt16 { listener.port }

    func listener(_ listener: Listener, accepted connection: Connection) {
        connectionCount += 1
        let session = PipelineSession(app: self, connection: connection, number: connectionCount)
        sessions.append(session)
        connection.delegate = session
        connection.enableReading()
    }

    func stop() {
        listener.close()
        for session in sessions { session.connection.close() }
        sessions.removeAll()
    }

    static func response(to receipt: Int, index: UInt64?, closing: Bool = false) -> [UInt8] {
        let body = Array("\(index.map(String.init) ?? "none") \(receipt)".utf8)
        let close = closing ? "Connection: close\r\n" : ""
        return Array("HTTP/1.1 200 OK\r\nContent-Length: \(body.count)\r\n\(close)\r\n".utf8) + body
    }
}

private final class PipelineSession: ConnectionDelegate {
    private unowned let app: PipelineApp
    let connection: Connection
    private let number: Int
    private var parser = HTTPRequestParser(limits: HTTPLimits(bodyMaxBytes: 1 << 30))
    private var position = 0
    private var receipt = 0
    private var action = PipelineApp.Action.answer
    /// After a closing answer: everything else is read and dropped until the applier closes.
    private var lingering = false

    init(app: PipelineApp, connection: Connection, number: Int) {
        self.app = app
        self.connection = connection
        self.number = number
    }

    func connectionHasInput(_ connection: Connection) {
        guard !lingering else {
            _ = connection.consumeInput { $0.count }
            return
        }
        var out: [UInt8] = []
        var batch = 0
        var closing = false
        _ = connection.consumeInput { chunk in
            var offset = 0
            while offset < chunk.count && !closing && !lingering {
                let rest = UnsafeRawBufferPointer(rebasing: chunk[offset...])
                let parsed: Int?
                do throws(HTTPParseError) {
                    parsed = try parser.parse(rest, { event in handle(event, out: &out, batch: &batch) })
                } catch {
                    app.parseErrors.append(error)
                    parsed = nil
                }
                guard let used = parsed, used > 0 else { return chunk.count }
                offset += used
                if action == .closeUnanswered && parser.isIdle { closing = true }
            }
            return lingering || closing ? chunk.count : offset
        }
        app.largestBatch = max(app.largestBatch, batch)
        if !out.isEmpty { connection.write(out) }
        if closing { connection.closeAfterFlush() }
    }

    private func handle(_ event: HTTPRequestEvent, out: inout [UInt8], batch: inout Int) {
        switch event {
        case .head(let head):
            position += 1
            let index = head.headers.first(name: "Tandem-Index").flatMap { UInt64($0) }
            app.receipts.append(
                PipelineApp.Receipt(connection: number, position: position, tandemIndex: index, target: head.target))
            receipt = app.receipts.count - 1
            action = app.policy(app.receipts[receipt])
            if action == .answerEarly { answer(&out) }
        case .body: break
        case .end:
            batch += 1
            switch action {
            case .answer: answer(&out)
            case .answerEarly: break
            case .interimThenAnswer:
                out += Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
                answer(&out)
            case .answerAndClose:
                answer(&out, closing: true)
                lingering = true
            case .closeUnanswered: break
            }
        }
    }

    private func answer(_ out: inout [UInt8], closing: Bool = false) {
        app.receipts[receipt].answered = true
        out += PipelineApp.response(to: receipt, index: app.receipts[receipt].tandemIndex, closing: closing)
    }

    func connectionDidClose(_ connection: Connection, reason: CloseReason) {}
}

/// The applier's pipeline against a real app over real sockets: answers handed on in log order and matched to the
/// right entries, unanswered requests written again in order after a close (and only those), `Connection: close`,
/// interim and early answers, a pause that settles only with nothing in flight, and window 1 as one at a time.
final class ApplierPipelineTests: XCTestCase {
    private var loop: EventLoop!
    private var app: PipelineApp!
    private var applier: Applier!
    private let log = Logger(label: "applier-pipeline-test")
    /// What the applier handed on, in order: the entry's index, the receipt whose answer it was, and whether it
    /// was a replay from the idempotency table.
    private var handed: [(index: UInt64, receipt: Int?, replayed: Bool)] = []
    /// Called after each handed-on entry is recorded.
    private var afterApplied: ((Entry) -> Void)?

    override func setUpWithError() throws {
        ignoreBrokenPipeSignals()
        loop = try EventLoop()
        app = try PipelineApp(loop: loop)
    }

    override func tearDown() {
        applier?.stop()
        app?.stop()
        applier = nil
        app = nil
        loop = nil
    }

    private func startApplier(window: Int) {
        applier = Applier(
            loop: loop, upstreamHost: "127.0.0.1", upstreamPort: app.port, startAfter: 0,
            idempotencyTTLMs: 3_600_000, idempotencyMaxBytes: 64 << 20, responseBodyMaxBytes: 1 << 20, log: log)
        applier.pipelineLimit = window
        applier.onApplied = { [unowned self] entry, response in
            let words = response.map { String(decoding: $0.body, as: UTF8.self).split(separator: " ") } ?? []
            if let response, !response.replayed {
                XCTAssertEqual(words.first.map(String.init), String(entry.index), "the answer is this entry's")
            }
            handed.append((entry.index, words.count == 2 ? Int(words[1]) : nil, response?.replayed ?? false))
            afterApplied?(entry)
        }
    }

    private static func command(_ index: UInt64, bodyBytes: Int = 16, key: String? = nil) -> WriteCommand {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "app.test")
        headers.add(name: "Content-Type", value: "text/plain")
        if let key { headers.add(name: "Idempotency-Key", value: key) }
        // A repeated key comes with the same request (same body), as a client's retry does.
        let body = [UInt8](repeating: UInt8(ascii: "a") + UInt8(key == nil ? index % 26 : 0), count: bodyBytes)
        return WriteCommand(method: "PUT", target: "/kv/\(key ?? String(index))", headers: headers, body: body)
    }

    private static func entries(
        _ range: ClosedRange<UInt64>, command: (UInt64) -> WriteCommand = { ApplierPipelineTests.command($0) }
    ) -> [Entry] {
        range.map { index in
            Entry(
                term: 1, index: index, kind: .normal, timeMs: 1_000 + Int64(index), proposal: nil,
                data: command(index).encoded())
        }
    }

    /// Hands `entries` to the applier in batches of 50 (as the runtime does) and runs the loop until every one was
    /// applied, or 60 s passed.
    private func applyAll(_ entries: [Entry], file: StaticString = #filePath, line: UInt = #line) {
        let target = entries.last?.index ?? 0
        for start in stride(from: 0, to: entries.count, by: 50) {
            applier.enqueue(Array(entries[start..<min(entries.count, start + 50)]))
        }
        let limit = TandemNet.Timer(loop: loop) { [loop] in loop!.stop() }
        limit.schedule(afterMs: 60_000)
        let poll = TandemNet.Timer(loop: loop) { [loop, unowned self] in
            if applier.appliedIndex >= target { loop!.stop() }
        }
        poll.scheduleRepeating(everyMs: 5)
        loop.run()
        poll.invalidate()
        limit.invalidate()
        XCTAssertEqual(applier.appliedIndex, target, "every entry applied within 60 s", file: file, line: line)
    }

    /// The invariants of every run: entries handed on once each, in log order, each with the answer to its own
    /// request; that answer was the entry's last delivery (an entry is delivered again only when the answer to its
    /// earlier delivery was never handed on); each connection carried contiguous indexes in order; and every
    /// delivery carried its `Tandem-Index`.
    private func assertDeliveredInOrder(_ count: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(handed.map(\.index), Array(1...count), "handed on in log order", file: file, line: line)
        XCTAssertEqual(app.parseErrors, [], "every request was well formed", file: file, line: line)
        for receipt in app.receipts {
            XCTAssertNotNil(receipt.tandemIndex, "every delivery carries Tandem-Index", file: file, line: line)
            if let index = receipt.tandemIndex {
                XCTAssertEqual(receipt.target, "/kv/\(index)", "Tandem-Index names the entry", file: file, line: line)
            }
        }
        for item in handed where !item.replayed {
            guard let receipt = item.receipt else {
                XCTFail("entry \(item.index) was handed on without the app's answer", file: file, line: line)
                continue
            }
            let last = app.receipts.lastIndex { $0.tandemIndex == item.index }
            XCTAssertEqual(
                receipt, last, "entry \(item.index) delivered again after its answer", file: file, line: line)
        }
        for connection in Set(app.receipts.map(\.connection)) {
            let indexes = app.receipts.filter { $0.connection == connection }.compactMap(\.tandemIndex)
            XCTAssertEqual(
                indexes, Array((indexes.first ?? 0)..<((indexes.first ?? 0) + UInt64(indexes.count))),
                "connection \(connection) carried contiguous indexes in order", file: file, line: line)
        }
    }

    func testAWindowOfSixteenKeepsLogOrderOverFiveHundredWrites() {
        startApplier(window: 16)
        applyAll(Self.entries(1...500))
        assertDeliveredInOrder(500)
        XCTAssertEqual(app.receipts.count, 500, "no entry delivered twice on a healthy connection")
        XCTAssertEqual(app.connectionCount, 1)
        XCTAssertGreaterThan(app.largestBatch, 1, "requests were pipelined")
        XCTAssertLessThanOrEqual(app.largestBatch, 16, "never more than the window in flight")
        XCTAssertEqual(applier.inFlight, 0)
        var expected = ApplyDigest()
        for index in UInt64(1)...500 {
            expected.fold(index: index, status: 200, body: Array("\(index) \(index - 1)".utf8))  // receipt = index - 1
        }
        XCTAssertEqual(applier.digest, expected, "the digest folds the answers in log order")
    }

    func testAWindowOfOneSendsOneRequestAtATime() {
        startApplier(window: 1)
        applyAll(Self.entries(1...100))
        assertDeliveredInOrder(100)
        XCTAssertEqual(app.receipts.count, 100)
        XCTAssertEqual(app.largestBatch, 1, "never a second request before the first one's answer")
    }

    func testAConnectionClosedInTheMiddleOfAWindowRedeliversOnlyUnansweredEntriesInOrder() {
        startApplier(window: 16)
        app.policy = { receipt in
            (receipt.connection == 1 && receipt.position == 40) || (receipt.connection == 2 && receipt.position == 75)
                ? .closeUnanswered : .answer
        }
        applyAll(Self.entries(1...300))
        assertDeliveredInOrder(300)
        XCTAssertGreaterThanOrEqual(app.connectionCount, 3, "the app closed twice")
        XCTAssertGreaterThan(app.receipts.count, 300, "the unanswered entry was delivered again")
        let firstClose = app.receipts.first { $0.connection == 1 && $0.position == 40 }?.tandemIndex
        XCTAssertEqual(
            app.receipts.first { $0.connection == 2 }?.tandemIndex.map { $0 <= firstClose ?? 0 }, true,
            "the next connection starts at or before the unanswered entry")
        XCTAssertGreaterThan(applier.rewrittenCount, 0)
    }

    func testAConnectionCloseAnswerInTheMiddleStopsThePipelineAndTheRestIsResent() {
        startApplier(window: 16)
        app.policy = { receipt in receipt.connection == 1 && receipt.position == 25 ? .answerAndClose : .answer }
        applyAll(Self.entries(1...200))
        assertDeliveredInOrder(200)
        let closing = app.receipts.firstIndex { $0.connection == 1 && $0.position == 25 }
        XCTAssertEqual(
            handed.dropFirst(24).first?.receipt, closing, "the closing answer was handed on, not redelivered")
        XCTAssertEqual(app.receipts.filter { $0.connection == 1 }.count, 25, "the app took nothing after closing")
        XCTAssertEqual(app.receipts.first { $0.connection == 2 }?.tandemIndex, 26, "the rest resent from 26")
        XCTAssertEqual(app.receipts.count, 200, "the entries after the close were not delivered twice")
        XCTAssertEqual(applier.retryCount, 0, "a closing answer is not a failure: no backoff")
        XCTAssertGreaterThan(applier.rewrittenCount, 0, "requests written after the closing one were resent")
    }

    func testInterimResponsesAndAnswersBeforeTheBodyKeepTheirEntries() {
        startApplier(window: 16)
        app.policy = { receipt in
            guard let index = receipt.tandemIndex else { return .answer }
            if index % 11 == 0 { return .answerEarly }
            return index % 7 == 0 ? .interimThenAnswer : .answer
        }
        applyAll(Self.entries(1...120) { index in Self.command(index, bodyBytes: index % 11 == 0 ? 256 << 10 : 16) })
        assertDeliveredInOrder(120)
        XCTAssertEqual(app.receipts.count, 120)
        XCTAssertEqual(app.connectionCount, 1, "neither an interim nor an early answer breaks the connection")
    }

    func testAPauseSettlesOnlyWhenNothingIsInFlight() throws {
        startApplier(window: 16)
        var settled: (applied: UInt64, inFlight: Int, received: Int)?
        let resume = TandemNet.Timer(loop: loop) { [unowned self] in applier.resumeApplying() }
        afterApplied = { [unowned self] entry in
            guard entry.index == 50 else { return }
            XCTAssertGreaterThan(applier.inFlight, 0, "requests after 50 are in flight when the pause is asked for")
            applier.pause { [unowned self] in
                settled = (applier.appliedIndex, applier.inFlight, app.receipts.count)
                resume.schedule(afterMs: 20)
            }
        }
        applyAll(Self.entries(1...200))
        assertDeliveredInOrder(200)
        let state = try XCTUnwrap(settled, "the pause settled")
        XCTAssertEqual(state.inFlight, 0, "nothing in flight when the pause settles")
        XCTAssertGreaterThan(state.applied, 50, "the requests in flight were answered before it settled")
        XCTAssertEqual(UInt64(state.received), state.applied, "the app got nothing beyond the applied index")
    }

    /// An in-memory app dies with requests in flight and comes back at once: the applier reconnects and holds
    /// them for the restart check, and the owner rebuilds the app. The requests went to the dead process and can
    /// never be answered, so the owner forgets them before pausing for the restore: the pause settles at once
    /// (it waited forever before), and every entry is then applied, in order, to the new process.
    func testRequestsToAnAppThatDiedAreForgottenSoTheRestorePauseSettles() throws {
        startApplier(window: 16)
        app.policy = { $0.tandemIndex == 3 && $0.connection == 1 ? .closeUnanswered : .answer }
        var holding = false
        var settledWithInFlight: Int?
        applier.onConnectionLost = { idle in if !idle { holding = true } }
        applier.isHoldingForRestartCheck = { holding }
        let resume = TandemNet.Timer(loop: loop) { [unowned self] in applier.resumeApplying() }
        applier.onConnectedWhileHolding = { [unowned self] in
            XCTAssertGreaterThan(applier.unanswered, 0, "requests to the dead process are still in the window")
            applier.forgetRequestsToLostApp()
            applier.pause { [unowned self] in
                settledWithInFlight = applier.unanswered
                holding = false
                resume.schedule(afterMs: 5)
            }
        }
        applyAll(Self.entries(1...100))
        XCTAssertEqual(settledWithInFlight, 0, "the restore's pause settled, with nothing unanswered")
        assertDeliveredInOrder(100)
        XCTAssertEqual(
            app.receipts.filter { $0.connection > 1 }.first?.tandemIndex, 3,
            "the new process got the first unanswered entry first")
    }

    func testAnEntryAfterWhichTheOwnerMayPauseIsAnsweredBeforeAnythingFollowsIt() {
        startApplier(window: 16)
        applier.pipelineStopsAfter = { $0 % 25 == 0 }
        var seenBeyond: [UInt64] = []
        afterApplied = { [unowned self] entry in
            if entry.index % 25 == 0, app.receipts.count != Int(entry.index) { seenBeyond.append(entry.index) }
        }
        applyAll(Self.entries(1...200))
        assertDeliveredInOrder(200)
        XCTAssertEqual(seenBeyond, [], "the app received nothing past a pause point before its answer")
        XCTAssertGreaterThan(app.largestBatch, 1, "requests between pause points were still pipelined")
    }

    func testEntriesWithAnIdempotencyKeyAreDecidedAfterEveryEntryBeforeThem() {
        startApplier(window: 16)
        // Ten keys, each sent ten times with the same request: only the first of each reaches the app.
        applyAll(Self.entries(1...100) { index in Self.command(index, key: "k\((index - 1) % 10)") })
        XCTAssertEqual(handed.map(\.index), Array(1...100))
        XCTAssertEqual(app.receipts.count, 10, "a repeated key is answered from the table, never applied again")
        XCTAssertEqual(handed.filter(\.replayed).map(\.index), Array(11...100))
        XCTAssertEqual(app.receipts.map(\.tandemIndex), (1...10).map { Optional($0) })
    }
}
