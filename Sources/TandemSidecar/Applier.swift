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

/// Applies committed entries to the local app strictly in log order over one connection of its own. Up to
/// `pipelineLimit` requests are written ahead of their answers (HTTP/1.1 pipelining: the app reads them in order
/// and answers in order), and every answer is handed on (digest, idempotency table, the waiting client, the
/// applied index) strictly in index order. An unreachable app is retried with backoff and no entry is ever
/// skipped; meanwhile the node reports not-ready. Any HTTP response counts as applied: a 4xx is a deterministic
/// outcome, the same on every replica.
///
/// A connection that breaks, or an answer that closes it, leaves the requests written after the last answer
/// unanswered: they are written again, in order, on the next connection. Such an entry may be delivered twice; it
/// carries the same `Tandem-Index` both times, which an app can use to deduplicate (README, "Guarantees").
///
/// An entry whose outcome depends on the entries before it in a way the app cannot see waits until they are all
/// answered: one with an `Idempotency-Key` (the table must hold every earlier key when it is looked up, exactly as
/// on a replica applying one entry at a time), a no-op, and an undecodable one (answered by Tandem in order).
final class Applier: ConnectionDelegate {
    private unowned let loop: EventLoop
    private let upstreamHost: String
    private let upstreamPort: UInt16
    private let log: Logger
    /// Entries committed and not yet taken into the window, in order. Bounded by what the log holds (the core caps
    /// uncommitted bytes, and committed entries are handed out in bounded batches).
    private var queue: [Entry] = []
    private var queueHead = 0
    /// Entries taken from the queue whose answers are awaited, in order.
    private var window = ApplyWindow(limit: 1)
    private var connection: Connection?
    private var isConnected = false
    private var parser = HTTPResponseParser(limits: .upstreamResponse)
    private var responseHead: HTTPResponseHead?
    private var responseBody: [UInt8] = []
    private var retryTimer: TandemNet.Timer!
    /// A retry is scheduled: no connection is opened before it fires.
    private var isWaitingToRetry = false
    /// A connect to the app that has not completed within `connectTimeoutMs` is given up and tried again: nothing
    /// was delivered on it, and a connect nobody hears of again must not stop applying for good.
    private var connectTimer: TandemNet.Timer!
    /// `TANDEM_UPSTREAM_CONNECT_TIMEOUT`.
    var connectTimeoutMs: Int64 = 2_000
    /// `TANDEM_APPLY_PIPELINE`: the most requests written to the app ahead of their answers (1: one at a time).
    var pipelineLimit: Int {
        get { window.limit }
        set { window.limit = newValue }
    }
    /// Whether the answer to `index` must be handed on before anything after it is written: the owner may pause
    /// the applier there and needs the app's state to be exactly that index's (a state digest due at it).
    var pipelineStopsAfter: (UInt64) -> Bool = { _ in false }
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
    /// Set while a snapshot is taken or restored: the entries in flight finish, none other starts.
    private var pausedBy: (() -> Void)?
    private(set) var isPaused = false
    /// The app could not be reached for the entries in flight: the node is not ready until it applies again.
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
    /// Nothing is written on the current connection until the owner calls `releaseHeld()` (or replays).
    private var isHolding = false
    /// Entries up to this index may have reached the app before a crash: they carry `Tandem-Redelivery: true`.
    var redeliveryThrough: UInt64 = 0
    /// Whether `index` may be handed to the app now (the runtime bounds how far apply runs ahead of the applied
    /// index on disk). When it says no, `resume()` is called later.
    var mayApply: (UInt64) -> Bool = { _ in true }
    private var heldAtWindow = false
    /// Set by a graceful stop: finish the entries in flight, start no other; then call this.
    private var onIdle: ((Bool) -> Void)?
    private(set) var redeliveredCount: UInt64 = 0
    /// Requests written again on a new connection after the one they were written on closed unanswered.
    private(set) var rewrittenCount: UInt64 = 0

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
        self.retryTimer = TandemNet.Timer(loop: loop) { [weak self] in self?.retryFired() }
        self.connectTimer = TandemNet.Timer(loop: loop) { [weak self] in self?.connectTimedOut() }
    }

    var backlog: Int { queue.count - queueHead + window.count }

    /// Requests written to the app and not answered yet (at most `pipelineLimit`).
    var inFlight: Int { window.sent }
    /// Entries taken for the app and not answered yet, written on this connection or not.
    var unanswered: Int { window.count }

    /// What the applier is doing, for /status: an operator (or a test) whose replica stopped applying sees why.
    var activity: String {
        if isHalted { return "halted" }
        if isHolding, let held = window.first {
            let link = isConnected ? "connected" : connection?.isOpen == true ? "connecting" : "no connection"
            return "holding \(held.entry.index) until the app is known not to have restarted (\(link))"
        }
        if let first = window.first {
            // A pause (a snapshot, a state digest, a restore) waits for these answers before it starts.
            let then = pausedBy == nil ? "" : ", then pausing"
            if isStalled { return "retrying \(first.entry.index) (the app is unreachable)\(then)" }
            guard first.reachedApp else { return "connecting to apply \(first.entry.index)\(then)" }
            let last = window.last?.entry.index ?? first.entry.index
            let range = last == first.entry.index ? "\(last)" : "\(first.entry.index)...\(last)"
            return "applying \(range)\(then)"
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
            let last = queue.last?.index ?? window.last?.entry.index ?? appliedIndex
            precondition(
                entry.index == last + 1, "committed entries must arrive contiguous: \(entry.index) after \(last)")
            queue.append(entry)
        }
        pump()
    }

    /// Replaces the idempotency table (rebuilt from the log at start, before anything is applied).
    func restore(idempotency table: IdempotencyTable) {
        precondition(window.isEmpty && appliedCount == 0, "the table is restored before the first apply")
        idempotency = table
    }

    /// A graceful stop: lets the entries in flight finish (at most `timeoutMs`), starts no other, then calls
    /// `completion(true)` when nothing may have reached the app without being recorded as applied.
    func finishCurrent(timeoutMs: Int64, completion: @escaping (Bool) -> Void) {
        onIdle = completion
        if !window.anyReachedApp || isStalled {
            retryTimer.cancel()
            isWaitingToRetry = false
            settleIdle()  // Nothing in flight (stalled entries that reached the app count as not settled).
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
        onIdle(!window.anyReachedApp)
    }

    /// Stops applying after the entries in flight (which may wait for an unreachable app), then calls `completion`
    /// with nothing in flight: the app's state is exactly that of `appliedIndex` until `resumeApplying()`.
    func pause(_ completion: @escaping () -> Void) {
        loop.assertOnLoopThread()
        precondition(!isPaused, "one pause at a time")
        isPaused = true
        // Entries none of whose bytes reached the app (held back by a restart check, waiting for a connection, or to
        // retry an unreachable app) go back to the head of the queue instead of holding the pause.
        let unreached = window.removeUnreached()
        if !unreached.isEmpty {
            putBack(unreached)
            if window.isEmpty {
                retryTimer.cancel()
                isWaitingToRetry = false
                isStalled = false
                if isHolding || !isConnected { dropConnection() }
            }
        }
        if window.isEmpty {
            completion()
        } else {
            pausedBy = completion
        }
    }

    /// Gives up a pause that has not settled: its completion is never called. For when the app the window's
    /// requests went to is gone, so that their answers, which the pause waits for, cannot come.
    func withdrawPause() {
        loop.assertOnLoopThread()
        precondition(isPaused && pausedBy != nil, "only a pause still waiting for the window is withdrawn")
        pausedBy = nil
        isPaused = false
    }

    /// The app process the window's requests were written to is gone (an in-memory app restarted): none of them
    /// can be answered any more, and the new process holds none of them. They go back to the head of the queue, to
    /// be applied once the app is rebuilt, and the connection (held for the restart check) is dropped: the pause
    /// of the restore that follows must not wait for answers that cannot come (it waited forever when an entry was
    /// in flight as the app died). Not while a pause is under way: it waits for the window, and emptying it would
    /// let a snapshot being taken read the new, empty app.
    func forgetRequestsToLostApp() {
        loop.assertOnLoopThread()
        guard !window.isEmpty, !isPaused else { return }
        retryTimer.cancel()
        isWaitingToRetry = false
        isStalled = false
        dropConnection()
        putBack(window.removeAll())
    }

    /// Returns entries taken from the queue to its head, in order.
    private func putBack(_ entries: [Entry]) {
        guard let first = entries.first else { return }
        if queueHead >= entries.count && queue[queueHead - entries.count].index == first.index {
            // Their slots gave up the bytes when they were taken.
            queueHead -= entries.count
            queue.replaceSubrange(queueHead..<(queueHead + entries.count), with: entries)
        } else {
            queue.insert(contentsOf: entries, at: queueHead)
        }
    }

    /// Stops applying for good after the entries in flight (`TANDEM_DIVERGENCE_ACTION=stop`).
    func halt() {
        loop.assertOnLoopThread()
        isHalted = true
    }
    private(set) var isHalted = false

    func resumeApplying() {
        loop.assertOnLoopThread()
        precondition(isPaused && pausedBy == nil, "resume only a settled pause")
        isPaused = false
        pump()
    }

    /// The app's state was replaced by a snapshot at `index` (paused meanwhile): queued entries up to it are
    /// dropped, and Tandem's own state (idempotency table, digest) is the snapshot's.
    func reset(to index: UInt64, term: UInt64, timeMs: Int64, idempotency table: IdempotencyTable, digest: ApplyDigest)
    {
        loop.assertOnLoopThread()
        precondition(isPaused && window.isEmpty, "the app's state is replaced only while paused")
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
        pump()
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
        isWaitingToRetry = false
        dropConnection()
        let pending = window.removeAll() + Array(queue[queueHead...])
        queue = history + pending.filter { $0.index > (history.last?.index ?? index) }
        queueHead = 0
        // The replay and what follows it leave no gap: an entry answered while a restore waited for it must be in
        // the history (it was once missing, and the entry after the gap was applied out of order).
        precondition(
            queue.indices.allSatisfy { queue[$0].index == index + 1 + UInt64($0) },
            "a replay after \(index) is contiguous: \(queue.first?.index ?? 0)...\(queue.last?.index ?? 0), \(queue.count) entries"
        )
        appliedIndex = index
        self.digest = digest
        idempotency = table
        isStalled = false
        backoffMs = 50
        pump()
    }

    func stop() {
        retryTimer.invalidate()
        connectTimer.invalidate()
        idleTimer?.invalidate()
        connection?.close()
        connection = nil
    }

    // MARK: taking entries and writing requests

    /// Does whatever can be done now: settles a pause or a graceful stop once nothing is in flight, takes entries
    /// into the window (or answers those that need no app), and writes the window's unwritten requests.
    private func pump() {
        if window.isEmpty {
            if onIdle != nil {
                settleIdle()
                return
            }
            if isHalted { return }
            if isPaused {
                if let settled = pausedBy {
                    pausedBy = nil
                    settled()
                }
                return
            }
        }
        if queueHead > 1024 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
        if !isPaused && !isHalted && onIdle == nil {
            while takeNext() {}
        }
        writeUnsent()
    }

    /// Takes the next queued entry into the window; false when none may be taken now. An entry that needs no
    /// request to the app is answered here (then the caller stops: `finish` pumps again).
    private func takeNext() -> Bool {
        guard queueHead < queue.count, !window.isFull else { return false }
        if let last = window.last, pipelineStopsAfter(last.entry.index) { return false }
        let entry = queue[queueHead]
        guard mayApply(entry.index) else {
            heldAtWindow = true
            return false
        }
        heldAtWindow = false
        var command: WriteCommand?
        if entry.kind == .normal { command = try? WriteCommand.decode(entry.data) }
        let keyed = command.map { IdempotencyTable.key(of: $0) != nil } ?? false
        // Decided in order against everything before it: it waits until nothing is in flight.
        if (command == nil || keyed) && !window.isEmpty { return false }
        // The queue's slot lets go of the entry's bytes now (the slots themselves are reclaimed in batches):
        // large entries must not stay in memory for up to a thousand applies after they were applied.
        queue[queueHead].data = []
        queueHead += 1
        guard entry.kind == .normal else {
            finish(entry, response: nil, status: 0)
            return false
        }
        guard let command else {
            // Every replica decodes the same bytes the same way, so this outcome is deterministic too.
            log.error("undecodable log entry", metadata: ["index": "\(entry.index)"])
            finish(entry, response: Self.tandemAnswer(500, "bad_entry", "the log entry cannot be decoded"), status: 500)
            return false
        }
        if keyed, let answer = idempotency.check(command: command, timeMs: entry.timeMs) {
            // A replay is this node's stored answer, which another replica may lack: the digest folds a fixed
            // outcome for it (the decision itself is the same everywhere, being a function of the log).
            finish(entry, response: answer, status: answer.replayed ? 0 : answer.status)
            return false
        }
        window.append(entry, command: command)
        return true
    }

    /// Writes, in order, every request of the window not written on the current connection, opening one first if
    /// there is none (unless a retry is due later, or a new connection is held for a restart check).
    private func writeUnsent() {
        guard window.hasUnsent, !isWaitingToRetry else { return }
        if connection == nil || connection?.isOpen != true {
            dropConnection()
            connection = Connection.connect(loop: loop, host: upstreamHost, port: upstreamPort, delegate: self)
            guard let connection else {
                scheduleRetry(reason: "cannot create a socket")
                return
            }
            connectTimer.schedule(afterMs: connectTimeoutMs)
            connection.enableReading()
            isHolding = isHoldingForRestartCheck()
        }
        guard !isHolding, let connection else { return }
        while window.hasUnsent {
            let (slot, firstTime) = window.markNextSent()
            if !firstTime { rewrittenCount += 1 }
            write(slot, firstTime: firstTime, on: connection)
        }
    }

    private func write(_ slot: ApplyWindow.Slot, firstTime: Bool, on connection: Connection) {
        let entry = slot.entry
        let redelivery = entry.index <= redeliveryThrough
        if redelivery && firstTime { redeliveredCount += 1 }
        // `Expect` is dropped (the client's session drops it; an older log may hold it: nothing here waits for
        // 100 Continue), the framing restated, Tandem's fields added, in one pass over the command's fields.
        var head: [UInt8] = []
        HTTPSerializer.appendAppliedWriteHead(
            method: slot.command.method, target: slot.command.target, headers: slot.command.headers,
            fields: AppliedWriteFields(
                index: entry.index, term: entry.term, timeMs: entry.timeMs, redelivery: redelivery),
            bodyCount: slot.command.body.count, into: &head)
        parser.expect(requestMethod: slot.command.method)
        connection.write(head)
        connection.write(slot.command.body)
    }

    /// Forgets the current connection (closing it if open): whatever was written on it and not answered is
    /// written again on the next one.
    private func dropConnection() {
        connectTimer.cancel()
        connection?.close()
        connection = nil
        isConnected = false
        isHolding = false
        window.connectionLost()
        parser = HTTPResponseParser(limits: .upstreamResponse)
        responseHead = nil
        responseBody.removeAll(keepingCapacity: true)
    }

    // MARK: connection events

    func connectionDidConnect(_ connection: Connection) {
        guard connection === self.connection else { return }
        connectTimer.cancel()
        isConnected = true
        onConnected?()
        if isHolding {
            if isHoldingForRestartCheck() {
                onConnectedWhileHolding?()
            } else {
                releaseHeld()
            }
        }
    }

    /// Writes the requests held back while a restart check was pending.
    func releaseHeld() {
        guard isHolding, connection?.isOpen == true else { return }
        isHolding = false
        pump()
    }

    func connectionHasInput(_ connection: Connection) {
        // One response at a time: handing one on may pause, replay or close, which changes what follows.
        while connection === self.connection, connection.inputCount > 0 {
            guard window.sent > 0 else {
                // Bytes nobody asked for: the connection is out of step.
                dropConnection()
                if !window.isEmpty { scheduleRetry(reason: "the app sent bytes no request asked for") }
                return
            }
            let head: HTTPResponseHead
            do throws(HTTPParseError) {
                guard let complete = try parseOneResponse(connection) else { return }
                head = complete
            } catch {
                log.warning(
                    "malformed response from the app while applying",
                    metadata: ["index": "\(window.first?.entry.index ?? 0)", "error": "\(error)"])
                dropConnection()
                scheduleRetry(reason: "malformed response")
                return
            }
            handOn(head)
        }
    }

    /// Parses input up to the end of one final response; returns its head, or nil when more input is needed.
    private func parseOneResponse(_ connection: Connection) throws(HTTPParseError) -> HTTPResponseHead? {
        var complete = false
        try connection.parseInput(while: { !complete }) { rest throws(HTTPParseError) in
            try parser.parse(rest) { event in
                switch event {
                case .head(let head): if !head.isInterim { responseHead = head }
                case .body(let bytes):
                    if responseBody.count + bytes.count <= responseBodyMaxBytes {
                        responseBody.append(contentsOf: bytes)
                    }
                case .end: if responseHead != nil { complete = true }  // an interim response's end is not one
                }
            }
        }
        return complete ? responseHead : nil
    }

    /// The answer to the oldest request in flight: it is applied. An answer that closes the connection stops the
    /// pipeline there: the requests written after it are written again on a new connection.
    private func handOn(_ head: HTTPResponseHead) {
        let slot = window.completeFirst()
        let response = AppliedResponse(
            status: head.status, reason: head.reason, headers: head.headers, body: responseBody)
        responseHead = nil
        responseBody.removeAll(keepingCapacity: true)
        if !head.keepAlive {
            if window.sent > 0 {
                log.debug(
                    "the app closed the connection with requests unanswered: writing them again",
                    metadata: ["from": "\(slot.entry.index + 1)", "count": "\(window.sent)"])
            }
            dropConnection()
        }
        // Keyless entries look the table up in order here (its expiry sees every earlier entry, as with one at a
        // time); keyed ones were decided when nothing was in flight.
        if IdempotencyTable.key(of: slot.command) == nil {
            _ = idempotency.check(command: slot.command, timeMs: slot.entry.timeMs)
        }
        idempotency.record(
            command: slot.command, index: slot.entry.index, response: response, timeMs: slot.entry.timeMs)
        finish(slot.entry, response: response, status: head.status)
    }

    func connectionDidClose(_ connection: Connection, reason: CloseReason) {
        guard connection === self.connection else { return }
        connectTimer.cancel()
        if !isConnected, reason == .socketError(ECONNREFUSED) { onAppRefused?() }
        let wasConnected = isConnected
        let wasIdle = window.isEmpty
        // A response delimited by the close ends here.
        var endedAtClose: HTTPResponseHead?
        if window.sent > 0, let head = responseHead, parser.phase == .body {
            var ended = false
            try? parser.finishAtEOF { event in if case .end = event { ended = true } }
            if ended { endedAtClose = head }
        }
        self.connection = nil
        isConnected = false
        if wasConnected { onConnectionLost?(wasIdle) }
        if let head = endedAtClose, self.connection == nil, window.sent > 0 {
            // Handing it on drops the connection (its answer did not keep it alive); the rest is written again.
            handOn(head)
            return
        }
        dropConnection()
        guard !window.isEmpty else { return }
        scheduleRetry(reason: "\(reason)")
    }

    private func connectTimedOut() {
        guard connection != nil, !isConnected else { return }
        dropConnection()
        connectTimeouts += 1
        guard !window.isEmpty else { return }
        scheduleRetry(reason: "no connection to the app within \(connectTimeoutMs) ms")
    }
    private(set) var connectTimeouts: UInt64 = 0

    private func scheduleRetry(reason: String) {
        retryCount += 1
        if !isStalled {
            log.warning(
                "app unreachable while applying: retrying",
                metadata: ["index": "\(window.first?.entry.index ?? 0)", "reason": "\(reason)"])
        }
        isStalled = true
        isWaitingToRetry = true
        retryTimer.schedule(afterMs: backoffMs)
        backoffMs = min(backoffMs * 2, 2000)
    }

    private func retryFired() {
        isWaitingToRetry = false
        pump()
    }

    private func finish(_ entry: Entry, response: AppliedResponse?, status: Int) {
        loop.assertOnLoopThread()
        precondition(entry.index == appliedIndex + 1, "entries are applied once each, in order, none skipped")
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
        pump()
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
