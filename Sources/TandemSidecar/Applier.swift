import Glibc
import Logging
import TandemConsensus
import TandemHTTP
import TandemNet

/// The app's answer to one applied entry (or Tandem's own deterministic answer, such as an idempotency conflict).
struct AppliedResponse {
    var status: Int
    var reason: String
    var headers: HTTPHeaders
    var body: [UInt8]
    /// The answer is replayed from the idempotency table: the entry was not applied again.
    var replayed = false
}

/// Applies committed entries to the local app strictly in log order, one at a time, over one connection of its
/// own. An unreachable app is retried with backoff and the entry is never skipped; meanwhile the node reports
/// not-ready. Any HTTP response counts as applied: a 4xx is a deterministic outcome, the same on every replica.
///
/// A retry after a connection broke mid-request may deliver an entry twice; it carries the same `Tandem-Index`
/// both times, which an app can use to deduplicate (README, "Guarantees").
final class Applier: ConnectionDelegate {
    private unowned let loop: EventLoop
    private let upstreamHost: String
    private let upstreamPort: UInt16
    private let log: Logger
    /// Entries committed and not yet applied, in order. Bounded by what the log holds (the core caps uncommitted
    /// bytes, and committed entries are handed out in bounded batches).
    private var queue: [Entry] = []
    private var queueHead = 0
    private var current: Entry?
    private var connection: Connection?
    private var isConnected = false
    private var parser = HTTPResponseParser(limits: .upstreamResponse)
    private var responseHead: HTTPResponseHead?
    private var responseBody: [UInt8] = []
    private var retryTimer: TandemNet.Timer!
    /// A connect to the app that has not completed within `connectTimeoutMs` is given up and tried again: nothing
    /// was delivered on it, and a connect nobody hears of again must not stop applying for good.
    private var connectTimer: TandemNet.Timer!
    /// `TANDEM_UPSTREAM_CONNECT_TIMEOUT`.
    var connectTimeoutMs: Int64 = 2_000
    private var backoffMs: Int64 = 50
    private let responseBodyMaxBytes: Int
    /// Folds (index, status, body hash) of every applied entry: equal digests at equal indexes mean equal outcomes.
    private(set) var digest = ApplyDigest()
    private(set) var idempotency: IdempotencyTable
    /// Invariant: appliedIndex only grows (except when the app's state is replaced: `reset(to:)`, a replay), and
    /// every index up to it was applied (or was a no-op).
    private(set) var appliedIndex: UInt64
    /// The term and Tandem-Time of the entry at `appliedIndex` (what a snapshot taken now records).
    private(set) var appliedTerm: UInt64 = 0
    private(set) var appliedTimeMs: Int64 = 0
    /// Bytes of entries applied since start (drives `TANDEM_SNAPSHOT_EVERY` given as a size).
    private(set) var appliedBytes: UInt64 = 0
    /// Set while a snapshot is taken or restored: the entry in flight finishes, none other starts.
    private var pausedBy: (() -> Void)?
    private(set) var isPaused = false
    /// The app could not be reached for the current entry: the node is not ready until it applies again.
    private(set) var isStalled = false
    private(set) var appliedCount: UInt64 = 0
    private(set) var retryCount: UInt64 = 0
    /// Called after each entry is applied, with the answer the origin node gives its client.
    var onApplied: ((Entry, AppliedResponse?) -> Void)?
    /// The app refused a connection (it is not running).
    var onAppRefused: (() -> Void)?
    /// An open connection to the app closed (`idle`: no entry was in flight): the app may have restarted (however
    /// quickly: a new process on the same port accepts the next connection at once), or it closed a connection.
    var onConnectionLost: ((_ idle: Bool) -> Void)?
    /// A connection to the app opened.
    var onConnected: (() -> Void)?
    /// Whether to hold requests after connecting until a possible restart was dealt with (in-memory apps: the
    /// first request into a restarted app must be entry 1 of a replay, not the next entry).
    var isHoldingForRestartCheck: () -> Bool = { false }
    /// Connected while holding: the owner decides (replay from the start, or `releaseHeld()`).
    var onConnectedWhileHolding: (() -> Void)?
    private var heldRequest: (command: WriteCommand, entry: Entry)?
    /// Entries up to this index may have reached the app before a crash: they carry `Tandem-Redelivery: true`.
    var redeliveryThrough: UInt64 = 0
    /// Whether `index` may be handed to the app now (the runtime bounds how far apply runs ahead of the applied
    /// index on disk). When it says no, `resume()` is called later.
    var mayApply: (UInt64) -> Bool = { _ in true }
    private var heldAtWindow = false
    /// Bytes of the current entry were written to the app at least once: it may have been applied.
    private var currentReachedApp = false
    /// Set by a graceful stop: finish the current entry, start no other; then call this.
    private var onIdle: ((Bool) -> Void)?
    private(set) var redeliveredCount: UInt64 = 0

    init(
        loop: EventLoop, upstreamHost: String, upstreamPort: UInt16, startAfter index: UInt64,
        idempotencyTTLMs: Int64, idempotencyMaxBytes: Int, responseBodyMaxBytes: Int, log: Logger
    ) {
        self.loop = loop
        self.upstreamHost = upstreamHost
        self.upstreamPort = upstreamPort
        self.appliedIndex = index
        self.idempotency = IdempotencyTable(ttlMs: idempotencyTTLMs, maxBytes: idempotencyMaxBytes)
        self.responseBodyMaxBytes = responseBodyMaxBytes
        self.log = log
        self.retryTimer = TandemNet.Timer(loop: loop) { [weak self] in self?.applyNext() }
        self.connectTimer = TandemNet.Timer(loop: loop) { [weak self] in self?.connectTimedOut() }
    }

    var backlog: Int { queue.count - queueHead + (current == nil ? 0 : 1) }

    /// What the applier is doing, for /status: an operator (or a test) whose replica stopped applying sees why.
    var activity: String {
        if isHalted { return "halted" }
        if let held = heldRequest {
            let link = isConnected ? "connected" : connection?.isOpen == true ? "connecting" : "no connection"
            return "holding \(held.entry.index) until the app is known not to have restarted (\(link))"
        }
        if let entry = current {
            if isStalled { return "retrying \(entry.index) (the app is unreachable)" }
            return currentReachedApp ? "applying \(entry.index)" : "connecting to apply \(entry.index)"
        }
        if isPaused { return pausedBy == nil ? "paused" : "pausing" }
        if heldAtWindow { return "waiting for the applied index on disk" }
        return queueHead < queue.count ? "queued" : "idle"
    }

    /// Queues committed entries (in log order, continuing the queue).
    func enqueue(_ entries: [Entry]) {
        loop.assertOnLoopThread()
        for entry in entries where entry.index > appliedIndex {
            // The runtime hands out committed entries once each, contiguous and in order.
            let last = queue.last?.index ?? current?.index ?? appliedIndex
            precondition(
                entry.index == last + 1, "committed entries must arrive contiguous: \(entry.index) after \(last)")
            queue.append(entry)
        }
        if current == nil { applyNext() }
    }

    /// Replaces the idempotency table (rebuilt from the log at start, before anything is applied).
    func restore(idempotency table: IdempotencyTable) {
        precondition(current == nil && appliedCount == 0, "the table is restored before the first apply")
        idempotency = table
    }

    /// A graceful stop: lets the entry in flight finish (at most `timeoutMs`), starts no other, then calls
    /// `completion(true)` when nothing may have reached the app without being recorded as applied.
    func finishCurrent(timeoutMs: Int64, completion: @escaping (Bool) -> Void) {
        onIdle = completion
        if current == nil || !currentReachedApp || isStalled {
            retryTimer.cancel()
            settleIdle()  // Nothing in flight (a stalled entry that reached the app counts as not settled).
            return
        }
        idleTimer = TandemNet.Timer(loop: loop, priority: .control) { [weak self] in
            guard let self, let onIdle = self.onIdle else { return }
            self.onIdle = nil
            onIdle(false)
        }
        idleTimer?.schedule(afterMs: timeoutMs)
    }
    private var idleTimer: TandemNet.Timer?

    private func settleIdle() {
        guard let onIdle else { return }
        self.onIdle = nil
        idleTimer?.invalidate()
        onIdle(current == nil || !currentReachedApp)
    }

    /// Stops applying after the entry in flight (which may wait for an unreachable app), then calls `completion`
    /// with nothing in flight: the app's state is exactly that of `appliedIndex` until `resumeApplying()`.
    func pause(_ completion: @escaping () -> Void) {
        loop.assertOnLoopThread()
        precondition(!isPaused, "one pause at a time")
        isPaused = true
        if let entry = current, !currentReachedApp {
            // Held back (a restart check) or waiting to retry an unreachable app: nothing of it reached the app, so
            // it goes back to the head of the queue instead of holding the pause.
            retryTimer.cancel()
            heldRequest = nil
            connection?.close()
            connection = nil
            current = nil
            isStalled = false
            if queueHead > 0 && queue[queueHead - 1].index == entry.index {
                queueHead -= 1
                queue[queueHead] = entry  // Its slot gave up the bytes when it was taken.
            } else {
                queue.insert(entry, at: queueHead)
            }
        }
        if current == nil {
            completion()
        } else {
            pausedBy = completion
        }
    }

    /// Stops applying for good after the entry in flight (`TANDEM_DIVERGENCE_ACTION=stop`).
    func halt() {
        loop.assertOnLoopThread()
        isHalted = true
    }
    private(set) var isHalted = false

    func resumeApplying() {
        loop.assertOnLoopThread()
        precondition(isPaused && pausedBy == nil, "resume only a settled pause")
        isPaused = false
        applyNext()
    }

    /// The app's state was replaced by a snapshot at `index` (paused meanwhile): queued entries up to it are
    /// dropped, and Tandem's own state (idempotency table, digest) is the snapshot's.
    func reset(to index: UInt64, term: UInt64, timeMs: Int64, idempotency table: IdempotencyTable, digest: ApplyDigest)
    {
        loop.assertOnLoopThread()
        precondition(isPaused && current == nil, "the app's state is replaced only while paused")
        // Entries after the snapshot stay queued (an app restart replays the ones in between before them).
        queue = Array(queue[queueHead...].filter { $0.index > index })
        queueHead = 0
        appliedIndex = index
        appliedTerm = term
        appliedTimeMs = timeMs
        idempotency = table
        self.digest = digest
        isStalled = false
        backoffMs = 50
    }

    /// The applied index on disk advanced: an entry held at the redelivery window may go now.
    func resume() {
        guard heldAtWindow else { return }
        heldAtWindow = false
        applyNext()
    }

    /// Starts over from the beginning of the log: the app restarted and lost its in-memory state
    /// (`TANDEM_APP_STATE=memory`). `history` is every entry up to the applied index, in order; entries already
    /// queued follow it. The digest and the idempotency table are rebuilt by the replay itself.
    func replayFromStart(history: [Entry]) {
        replay(history: history, after: 0, idempotency: idempotency.emptied(), digest: ApplyDigest())
    }

    /// Starts over from a snapshot the app was just restored to (at `index`), replaying `history` (the entries
    /// after it up to the applied index) before what is queued.
    func replay(history: [Entry], after index: UInt64, idempotency table: IdempotencyTable, digest: ApplyDigest) {
        retryTimer.cancel()
        connection?.close()
        connection = nil
        heldRequest = nil
        let pending = (current.map { [$0] } ?? []) + Array(queue[queueHead...])
        current = nil
        queue = history + pending.filter { $0.index > (history.last?.index ?? index) }
        queueHead = 0
        appliedIndex = index
        self.digest = digest
        idempotency = table
        isStalled = false
        backoffMs = 50
        applyNext()
    }

    func stop() {
        retryTimer.invalidate()
        connectTimer.invalidate()
        idleTimer?.invalidate()
        connection?.close()
        connection = nil
    }

    private func applyNext() {
        guard current == nil || isStalled else { return }
        if current == nil && onIdle != nil {
            settleIdle()
            return
        }
        if current == nil && isHalted { return }
        if current == nil && isPaused {
            if let settled = pausedBy {
                pausedBy = nil
                settled()
            }
            return
        }
        if queueHead > 1024 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
        guard let entry = current ?? (queueHead < queue.count ? queue[queueHead] : nil) else { return }
        guard current != nil || mayApply(entry.index) else {
            heldAtWindow = true
            return
        }
        if current == nil {
            // The queue's slot lets go of the entry's bytes now (the slots themselves are reclaimed in batches):
            // large entries must not stay in memory for up to a thousand applies after they were applied.
            queue[queueHead].data = []
            queueHead += 1
            currentReachedApp = false
        }
        current = entry
        guard entry.kind == .normal else {
            finish(entry, response: nil, status: 0)
            return
        }
        let command: WriteCommand
        do {
            command = try WriteCommand.decode(entry.data)
        } catch {
            // Every replica decodes the same bytes the same way, so this outcome is deterministic too.
            log.error("undecodable log entry", metadata: ["index": "\(entry.index)", "error": "\(error)"])
            finish(entry, response: Self.tandemAnswer(500, "bad_entry", "the log entry cannot be decoded"), status: 500)
            return
        }
        if let answer = idempotency.check(command: command, timeMs: entry.timeMs) {
            // A replay is this node's stored answer, which another replica may lack: the digest folds a fixed
            // outcome for it (the decision itself is the same everywhere, being a function of the log).
            finish(entry, response: answer, status: answer.replayed ? 0 : answer.status)
            return
        }
        send(command, for: entry)
    }

    private func send(_ command: WriteCommand, for entry: Entry) {
        precondition(current?.index == entry.index, "only the current entry is sent to the app")
        if connection == nil || connection?.isOpen != true {
            isConnected = false
            connection = Connection.connect(loop: loop, host: upstreamHost, port: upstreamPort, delegate: self)
            connectTimer.schedule(afterMs: connectTimeoutMs)
            connection?.enableReading()
            guard connection != nil else {
                scheduleRetry(reason: "cannot create a socket")
                return
            }
            if isHoldingForRestartCheck() {
                heldRequest = (command, entry)
                return
            }
        }
        var headers = command.headers
        headers.add(name: "Tandem-Index", value: String(entry.index))
        headers.add(name: "Tandem-Term", value: String(entry.term))
        headers.add(name: "Tandem-Time", value: String(entry.timeMs))
        headers.add(name: "Tandem-Request-Id", value: "\(entry.term)-\(entry.index)")
        if entry.index <= redeliveryThrough {
            headers.add(name: "Tandem-Redelivery", value: "true")
            if !currentReachedApp { redeliveredCount += 1 }
        }
        currentReachedApp = true
        ProxyHeaders.setFraming(.contentLength(Int64(command.body.count)), in: &headers)
        parser = HTTPResponseParser(limits: .upstreamResponse)
        parser.expect(requestMethod: command.method)
        responseHead = nil
        responseBody.removeAll(keepingCapacity: true)
        connection?.write(
            HTTPSerializer.requestHead(
                HTTPRequestHead(method: command.method, target: command.target, headers: headers)))
        connection?.write(command.body)
    }

    // MARK: connection events

    func connectionDidConnect(_ connection: Connection) {
        connectTimer.cancel()
        isConnected = true
        onConnected?()
        if heldRequest != nil {
            if isHoldingForRestartCheck() {
                onConnectedWhileHolding?()
            } else {
                releaseHeld()
            }
        }
    }

    /// Sends the request held back while a restart check was pending.
    func releaseHeld() {
        guard let held = heldRequest, connection?.isOpen == true else { return }
        heldRequest = nil
        send(held.command, for: held.entry)
    }

    func connectionHasInput(_ connection: Connection) {
        guard let entry = current else {
            connection.close()  // bytes nobody asked for: the connection is out of step
            self.connection = nil
            return
        }
        var complete = false
        var failure: HTTPParseError?
        do throws(HTTPParseError) {
            try connection.parseInput(while: { !complete }) { rest throws(HTTPParseError) in
                try parser.parse(rest) { event in
                    switch event {
                    case .head(let head): if !head.isInterim { responseHead = head }
                    case .body(let bytes):
                        if responseBody.count + bytes.count <= responseBodyMaxBytes {
                            responseBody.append(contentsOf: bytes)
                        }
                    case .end: if responseHead != nil { complete = true }
                    }
                }
            }
        } catch {
            failure = error
        }
        if let failure {
            log.warning(
                "malformed response from the app while applying",
                metadata: ["index": "\(entry.index)", "error": "\(failure)"])
            connection.close()
            self.connection = nil
            scheduleRetry(reason: "malformed response")
            return
        }
        guard complete, let head = responseHead else { return }
        if !head.keepAlive {
            connection.close()
            self.connection = nil
        }
        let response = AppliedResponse(
            status: head.status, reason: head.reason, headers: head.headers, body: responseBody)
        if let command = try? WriteCommand.decode(entry.data) {
            idempotency.record(command: command, index: entry.index, response: response, timeMs: entry.timeMs)
        }
        finish(entry, response: response, status: head.status)
    }

    func connectionDidClose(_ connection: Connection, reason: CloseReason) {
        connectTimer.cancel()
        self.connection = nil
        heldRequest = nil
        if !isConnected, reason == .socketError(ECONNREFUSED) { onAppRefused?() }
        let wasConnected = isConnected
        isConnected = false
        if wasConnected { onConnectionLost?(current == nil) }
        guard current != nil else { return }
        if responseHead != nil, parser.phase == .body {
            var ended = false
            try? parser.finishAtEOF { event in if case .end = event { ended = true } }
            if ended {
                connectionHasInputAfterEOF()
                return
            }
        }
        scheduleRetry(reason: "\(reason)")
    }

    private func connectionHasInputAfterEOF() {
        guard let entry = current, let head = responseHead else { return }
        let response = AppliedResponse(
            status: head.status, reason: head.reason, headers: head.headers, body: responseBody)
        if let command = try? WriteCommand.decode(entry.data) {
            idempotency.record(command: command, index: entry.index, response: response, timeMs: entry.timeMs)
        }
        finish(entry, response: response, status: head.status)
    }

    private func connectTimedOut() {
        guard let pending = connection, !isConnected else { return }
        pending.close()
        connection = nil
        heldRequest = nil
        connectTimeouts += 1
        guard current != nil else { return }
        scheduleRetry(reason: "no connection to the app within \(connectTimeoutMs) ms")
    }
    private(set) var connectTimeouts: UInt64 = 0

    private func scheduleRetry(reason: String) {
        retryCount += 1
        if !isStalled {
            log.warning(
                "app unreachable while applying: retrying",
                metadata: ["index": "\(current?.index ?? 0)", "reason": "\(reason)"])
        }
        isStalled = true
        retryTimer.schedule(afterMs: backoffMs)
        backoffMs = min(backoffMs * 2, 2000)
    }

    private func finish(_ entry: Entry, response: AppliedResponse?, status: Int) {
        loop.assertOnLoopThread()
        precondition(entry.index == appliedIndex + 1, "entries are applied once each, in order, none skipped")
        current = nil
        if isStalled { log.info("app reachable again: applying", metadata: ["index": "\(entry.index)"]) }
        isStalled = false
        backoffMs = 50
        if entry.kind == .normal { digest.fold(index: entry.index, status: status, body: response?.body ?? []) }
        appliedIndex = entry.index
        appliedTerm = entry.term
        appliedTimeMs = entry.timeMs
        appliedBytes &+= UInt64(entry.data.count)
        appliedCount += 1
        onApplied?(entry, response)
        applyNext()
    }

    static func tandemAnswer(_ status: Int, _ code: String, _ message: String) -> AppliedResponse {
        let body = TandemErrorResponse.jsonBody(code: code, message: message, retryable: false)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        return AppliedResponse(status: status, reason: HTTPStatus.reasonPhrase(status), headers: headers, body: body)
    }
}

/// A rolling digest of applied outcomes (FNV-1a, 64 bit): stable across processes and machines, unlike Swift's
/// seeded Hasher. It detects a non-deterministic app; it is not a defence against an adversary.
///
/// The fold restarts at every block of `blockSize` log indexes, so that a replica that resumed in the middle of
/// the log (a durable app) can compare every block after the one it resumed in.
struct ApplyDigest: Equatable {
    static let seed: UInt64 = 0xcbf2_9ce4_8422_2325
    static let blockSize: UInt64 = 1024
    private(set) var value: UInt64 = ApplyDigest.seed
    private(set) var index: UInt64 = 0
    /// The final digest of the last block that ended (its last folded index), to report block by block.
    private(set) var lastCompletedBlock: (index: UInt64, digest: UInt64)?

    init() {}

    /// A digest carried on from a snapshot.
    init(_ state: ApplyDigestState) {
        value = state.value
        index = state.index
        lastCompletedBlock = state.lastCompletedBlock
    }

    mutating func fold(index: UInt64, status: Int, body: [UInt8]) {
        if self.index > 0 && index / Self.blockSize != self.index / Self.blockSize {
            lastCompletedBlock = (self.index, value)
            value = Self.seed
        }
        var bodyHash = Self.seed
        for byte in body { bodyHash = (bodyHash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        for word in [index, UInt64(status), bodyHash] {
            for shift in stride(from: 0, to: 64, by: 8) {
                value = (value ^ ((word >> UInt64(shift)) & 0xff)) &* 0x0000_0100_0000_01b3
            }
        }
        self.index = index
    }

    var hex: String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: 16 - text.count) + text
    }

    static func == (lhs: ApplyDigest, rhs: ApplyDigest) -> Bool { lhs.value == rhs.value && lhs.index == rhs.index }
}
