import TandemConfig
import TandemHTTP
import TandemNet

/// One request/response exchange between a client and the local app. A class, because both connections'
/// callbacks update it in place.
final class Exchange {
    let head: HTTPRequestHead
    let requestClass: RequestClass
    let startMicros: Int64
    var upstream: UpstreamConnection?
    /// The request body goes to the app chunked: it arrived chunked and was still arriving when the app
    /// connection was attached. A body that arrived whole while the read waited goes with Content-Length.
    var bodyChunkedToApp = false
    var responseParser = HTTPResponseParser(limits: .upstreamResponse)
    var responseChunked = false
    var status = 0
    /// A bodiless GET or HEAD sent on a reused connection that the app closed before answering may be sent again
    /// once on a fresh connection: nothing can have been applied twice (a retried non-idempotent request must never apply twice).
    var retriedOnFreshConnection = false
    var isUpgrade: Bool
    /// Body bytes that arrived while no app connection was attached: the whole body of a replicated write, or
    /// the start of a read's body while the read waits for its consistency level. Bounded by the body limit.
    var deferredBody: [UInt8] = []
    /// Bytes of `deferredBody` counted against the proxy's global body budget (`ProxyServer.reserveBodyBytes`).
    var budgetedBodyBytes = 0
    /// The applied index a read was served at (`Tandem-Position`).
    var readPosition: UInt64?
    /// The admission slot this exchange holds (released when it ends), or the ticket it waits with.
    var slot: AdmissionSlot?
    var ticket: AdmissionTicket?

    init(head: HTTPRequestHead, requestClass: RequestClass, startMicros: Int64) {
        self.requestClass = requestClass
        self.startMicros = startMicros
        self.isUpgrade = head.upgrade != nil && requestClass == .bypass
        responseParser.expect(requestMethod: head.method)
        // Stored last, after its other uses: the head moves in instead of being copied and then destroyed.
        self.head = head
    }

    var isRetriable: Bool {
        !retriedOnFreshConnection && head.framing == .none && (head.method == "GET" || head.method == "HEAD")
    }
}

/// A client connection: parses requests one at a time (pipelined requests wait in the input buffer, so responses
/// leave in order), forwards each to the app through the pool, and streams the answer back, with backpressure in
/// both directions through the connections' watermarks.
///
/// Where the connection is (reading, responding, tunnelling, closing) and the progress of the exchange in flight
/// are kept by `ClientSessionMachine`; this class owns the resources (sockets, timers, the app connection, the
/// admission slot) and executes what the machine decides.
final class ClientSession: ConnectionDelegate, UpstreamOwner {
    let connection: Connection
    /// Without reference counting: the proxy owns every session (`sessions`) and ends them all before it goes
    /// (`closeAll`), and checked `unowned` cost an atomic retain and release on each of the dozen reads of it per
    /// request (1.4 % of the proxy's CPU under load).
    unowned(unsafe) let proxy: ProxyServer
    private var parser: HTTPRequestParser
    /// Where the connection is and how far the exchange in flight got.
    /// Invariant: `exchange != nil` exactly when `machine.hasExchange` (outside the methods that end exchanges).
    private(set) var machine = ClientSessionMachine()
    private var exchange: Exchange?
    /// The storage of the last response head's fields (emptied; at most the parser's bound), handed from each
    /// exchange's response parser to the next one's, so that a head is parsed without allocating.
    private var spareResponseFields = HTTPHeaders()
    private var timer: Timer!
    private var timerPurpose = TimerPurpose.idle
    /// The last method of this connection classified without route rules, and its class (see `classify`).
    private var lastRuleFreeClass: (method: String, requestClass: RequestClass)?
    /// The last method of this connection found to be a read method and no case variant of a write method: such a
    /// method is never refused, whatever its path and class (see `methodRefusal`).
    private var lastAcceptedReadMethod: String?
    /// The client's address and `Forwarded` element, the same for every request of the connection (checked once).
    private lazy var forwardingClient = ForwardingClient(address: connection.peerAddress)
    /// The classifier has route rules: without any, the class of a request depends on its method alone.
    private let classifierHasRules: Bool
    /// Fires when a request body stops arriving for the header timeout (408 and close).
    private var bodyTimer: Timer!
    /// `bodyTimer` is scheduled (it fires once). Most requests have no body: their end needs no cancel.
    private var bodyTimerScheduled = false

    private enum TimerPurpose { case idle, header, upstreamConnect, upstreamResponse, resumeAfterShed }

    /// After a request is shed, its connection is not read until the Retry-After its 503 gives has passed. A client
    /// that honours Retry-After is not slowed; one that retries at once is held back by TCP instead of costing a
    /// parse and a 503 each time. Under a closed-loop flood those 503s take the CPU the admitted writes need, at a
    /// rate of one per turned-away client per pause: with a quarter of a second, goodput at 10x the offered load
    /// fell to 0.57-0.83 of the best step; with the full second it stays at 0.93-0.95 (scripts/bench-overload.sh,
    /// BENCHMARKS.md).
    static func shedPause(for answer: TandemErrorResponse) -> Int64 {
        Int64(answer.retryAfterSeconds ?? overloadedRetryAfterSeconds) * 1000
    }
    /// The Retry-After of a 503 `overloaded` answered by the admission queues.
    static let overloadedRetryAfterSeconds = 1

    init(connection: Connection, proxy: ProxyServer) {
        self.connection = connection
        self.proxy = proxy
        self.parser = HTTPRequestParser(limits: proxy.settings.limits)
        let classifier = proxy.classifier
        self.classifierHasRules =
            !(classifier.bypassRoutes.isEmpty && classifier.writeRoutes.isEmpty && classifier.readRoutes.isEmpty)
        // `unowned`, not `weak`: a weak reference would give the session a side table, and every retain and
        // release of it would take the slow path. The timers live and die with the session.
        self.timer = Timer(loop: proxy.loop) { [unowned self] in onTimer() }
        self.bodyTimer = Timer(loop: proxy.loop) { [unowned self] in onBodyTimeout() }
        connection.setReadHighWatermark(bytes: proxy.settings.bufferHighWaterBytes)
        connection.setWriteLowWatermark(bytes: proxy.settings.bufferHighWaterBytes / 2)
        arm(.idle, proxy.settings.idleTimeoutMs)
    }

    deinit {
        // The app connection points back here without a reference count: it must not outlive this session doing so.
        if let upstream = exchange?.upstream, upstream.owner === self { proxy.pool.discard(upstream) }
    }

    var isIdle: Bool { exchange == nil && machine.isBetweenRequests && parser.phase == .idle }

    /// The exchange in flight, for callbacks that must check they still belong to it.
    var currentExchange: Exchange? { exchange }

    /// Continues a read that waited for its consistency level: now it goes to the app.
    func resumeAfterReadWait(_ exchange: Exchange) {
        admit(exchange, as: .read)
    }

    func answerWithError(_ error: TandemErrorResponse) {
        respondWithError(error)
    }

    func completeCurrentExchange() {
        finishExchange()
    }

    /// The read in flight waits for its consistency level before it goes to the app.
    func routeToReadLevel() {
        machine.route(.readLevel)
    }

    /// The wait for the read's level is over (reached or not).
    func readLevelReached() {
        machine.readLevelReached()
    }

    /// The applier's answer to the write in flight is about to be written whole; returns whether the
    /// connection stays open after it.
    func recordWriteAnswered(draining: Bool) -> Bool {
        machine.writeAnswered(draining: draining)
    }

    // MARK: client side

    func connectionHasInput(_ connection: Connection) {
        proxy.loop.assertOnLoopThread()
        if machine.isReading {
            readRequest()
        } else if machine.isTunnel {
            relay(from: connection, to: exchange?.upstream?.connection)
        }
        assertExchangeMatchesMachine()
    }

    /// The invariant beside `machine`, checked after every client and app event in debug builds.
    private func assertExchangeMatchesMachine() {
        assert((exchange != nil) == machine.hasExchange, "exchange and machine disagree: \(machine.state)")
    }

    /// Parses requests from the input buffer while this session is reading. An exchange may end synchronously
    /// while its last bytes are being parsed (an immediate error, a refused write): the loops then go on with the
    /// next pipelined request instead of leaving it unread in the buffer.
    private func readRequest() {
        do throws(HTTPParseError) {
            try connection.parseInput(while: { canReadRequestBytes() }) { rest throws(HTTPParseError) in
                let phaseBefore = parser.phase
                let used = try parser.parse(rest) { event in onRequestEvent(event) }
                if phaseBefore == .idle && parser.phase == .head {
                    arm(.header, proxy.settings.headerTimeoutMs)
                }
                if used > 0 && parser.phase == .body && machine.isReading && exchange != nil {
                    // Every byte of a body restarts the wait for the next one.
                    scheduleBodyTimer()
                }
                return used
            }
        } catch {
            rejectMalformed(error)
        }
    }

    /// Whether the request parse may take another step: only while reading, and only while the app takes the
    /// body as fast as the client sends it (otherwise the client is not read until the app drains).
    private func canReadRequestBytes() -> Bool {
        guard machine.isReading else { return false }
        if let upstream = exchange?.upstream, upstream.connection.outputCount > proxy.settings.bufferHighWaterBytes {
            connection.disableReading()
            return false
        }
        return true
    }

    private func onRequestEvent(_ event: HTTPRequestEvent) {
        switch event {
        case .head(let head): beginExchange(head)
        case .body(let bytes): forwardRequestBody(bytes)
        case .end(let trailers): finishRequest(trailers: trailers)
        }
    }

    private func beginExchange(_ head: HTTPRequestHead) {
        let requestClass = classify(head)
        let exchange = Exchange(head: head, requestClass: requestClass, startMicros: EventLoop.preciseNowMicros())
        exchange.responseParser.exchangeFieldStorage(with: &spareResponseFields)
        self.exchange = exchange
        machine.requestHeadParsed(keepAlive: head.keepAlive && !proxy.isDraining)
        timer.cancel()
        if let refusal = methodRefusal(head, requestClass: requestClass) {
            respondWithError(refusal, forceClose: head.framing != .none)
            return
        }
        if head.expectsContinue && head.framing != .none {
            // Tandem answers 100 Continue itself (and strips Expect), so that a client waiting for it sends the
            // body without a round trip through the app.
            connection.write(HTTPSerializer.continueResponse)
        }
        if let refusal = proxy.admission?.checkRateLimits(
            head: head, clientAddress: connection.peerAddress, nowMs: EventLoop.preciseNowMs())
        {
            respondWithError(refusal, forceClose: head.framing != .none)
            return
        }
        if let writePath = proxy.writePath {
            if requestClass != .bypass, let reason = writePath.notServingReason {
                // An app started before its sidecar is ready, or the reverse. Hold client traffic.
                respondWithError(
                    WritePath.error(503, "not_ready", reason, retryAfter: 1),
                    forceClose: !head.keepAlive || head.framing != .none)
                return
            }
            if requestClass == .write {
                machine.route(.replicatedWrite)
                return
            }
            if requestClass == .read {
                do throws(ReadLevelError) {
                    try startConsistentRead(exchange, writePath: writePath)
                } catch {
                    respondWithError(
                        TandemErrorResponse(status: 400, code: "bad_request", message: error.message, retryable: false),
                        forceClose: true)
                    return
                }
                if machine.exchange?.route == .readLevel { return }
            }
        }
        admit(exchange, as: .read)
    }

    /// The class of a request. Without route rules it depends on the method alone, so the class of the last
    /// method of the connection is remembered: a keep-alive client's requests skip the path normalization and the
    /// set lookup (the classifier is fixed for the life of the proxy).
    private func classify(_ head: HTTPRequestHead) -> RequestClass {
        guard !classifierHasRules else {
            // Normalized (dot segments removed, %-encoded unreserved characters decoded) so that `/a/../kv` or
            // `%2e` cannot dodge a route rule.
            return proxy.classifier.classify(method: head.method, path: normalizedRoutePath(head.path))
        }
        if let last = lastRuleFreeClass, last.method == head.method { return last.requestClass }
        let requestClass = proxy.classifier.classify(method: head.method, path: normalizedRoutePath(head.path))
        lastRuleFreeClass = (head.method, requestClass)
        return requestClass
    }

    /// Methods that are served as reads without a route rule. Methods are case-sensitive (RFC 9110 section 9.1):
    /// `get` is not `GET`, and `post` is not `POST`.
    static let readMethods: Set<String> = ["GET", "HEAD", "OPTIONS"]

    /// Refuses (501) a method Tandem would otherwise send to the app unreplicated without anyone having asked
    /// for it: one that is neither a read method nor a write method nor named by a read or bypass route, and any
    /// case variant of a write method (`post`, `Put`), which an app that ignores case would take as the write.
    private func methodRefusal(_ head: HTTPRequestHead, requestClass: RequestClass) -> TandemErrorResponse? {
        let method = head.method
        if method == lastAcceptedReadMethod { return nil }
        let writeMethods = proxy.classifier.writeMethods
        let caseVariantOfWrite =
            !writeMethods.contains(method) && proxy.lowercasedWriteMethods.contains(Self.asciiLowercased(method))
        let readMethod = Self.readMethods.contains(method)
        // Neither test depends on the path or the class for such a method: it is never refused on this proxy.
        if !caseVariantOfWrite && readMethod { lastAcceptedReadMethod = method }
        let unknownRead =
            requestClass == .read && !readMethod
            && !proxy.classifier.readRoutes.contains { $0.matches(method: method, path: String(head.path)) }
        guard caseVariantOfWrite || unknownRead else { return nil }
        return TandemErrorResponse(
            status: 501, code: "method_not_implemented",
            message:
                "method \"\(method)\" is neither a read (GET, HEAD, OPTIONS) nor a write (\(writeMethods.sorted().joined(separator: ", "))); methods are case-sensitive",
            retryable: false)
    }

    /// A method in lower case. Methods are tokens, so ASCII case mapping is all there is to do; `lowercased()`
    /// went through the Unicode tables on every request.
    static func asciiLowercased(_ method: String) -> String {
        let utf8 = method.utf8
        return String(unsafeUninitializedCapacity: utf8.count) { buffer in
            for (index, byte) in utf8.enumerated() {
                buffer[index] = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            }
            return utf8.count
        }
    }

    /// Waits for a slot (reads: towards the app; writes: into the log), then continues; shed with 503 overloaded
    /// when the queue is full or a standing queue forms.
    func admit(_ exchange: Exchange, as kind: Admission.Kind) {
        guard let admission = proxy.admission, exchange.requestClass != .bypass else {
            proceed(exchange, as: kind)
            return
        }
        // The common case, a slot free and nobody waiting, costs no ticket and no callbacks.
        if let slot = admission.grantNow(kind) {
            exchange.slot = slot
            proceed(exchange, as: kind)
            return
        }
        let ticket = AdmissionTicket()
        ticket.onGranted = { [weak self, weak exchange] slot in
            guard let self, let exchange, self.currentExchange === exchange else {
                admission.release(slot, dropped: false)
                return
            }
            exchange.ticket = nil
            exchange.slot = slot
            self.proceed(exchange, as: kind)
        }
        ticket.onShed = { [weak self, weak exchange] _ in
            guard let self, let exchange, self.currentExchange === exchange else { return }
            exchange.ticket = nil
            self.respondWithError(Self.overloaded("requests are waiting too long for the app; retry shortly"))
        }
        exchange.ticket = ticket
        if !admission.admit(kind, ticket: ticket) {
            exchange.ticket = nil
            respondWithError(
                Self.overloaded(
                    kind == .read ? "too many reads are waiting for the app" : "too many writes are waiting to commit"))
        }
    }

    /// An admitted exchange goes on: a read to the app, a write into the log.
    private func proceed(_ exchange: Exchange, as kind: Admission.Kind) {
        if kind == .read { attachUpstream(exchange) } else { submitWrite(exchange) }
    }

    static func overloaded(_ message: String) -> TandemErrorResponse {
        TandemErrorResponse(
            status: 503, code: "overloaded", message: message, retryable: true,
            retryAfterSeconds: overloadedRetryAfterSeconds)
    }

    /// Gives the exchange's slot back (its latency feeds the concurrency limit) and forgets any wait.
    func releaseAdmission(_ exchange: Exchange, dropped: Bool) {
        releaseDeferredBody(exchange)
        exchange.ticket?.isAbandoned = true
        exchange.ticket = nil
        if let slot = exchange.slot, let admission = proxy.admission {
            exchange.slot = nil
            admission.release(slot, dropped: dropped)
        }
    }

    /// Drops the body held for an exchange and gives its bytes back to the global budget.
    func releaseDeferredBody(_ exchange: Exchange) {
        // Nearly every exchange never held a body: nothing to free and nothing to give back.
        guard exchange.deferredBody.capacity > 0 || exchange.budgetedBodyBytes > 0 else { return }
        exchange.deferredBody = []
        proxy.releaseBodyBytes(exchange.budgetedBodyBytes)
        exchange.budgetedBodyBytes = 0
    }

    /// Sends the request head (and any body that arrived meanwhile) to a pooled app connection.
    private func attachUpstream(_ exchange: Exchange) {
        guard let upstream = proxy.pool.acquire(for: self) else {
            respondWithError(.upstreamUnavailable("cannot open a socket to the app"))
            return
        }
        exchange.upstream = upstream
        exchange.readPosition = proxy.writePath?.appliedIndex
        if !upstream.isConnected {
            arm(.upstreamConnect, proxy.settings.upstreamConnectTimeoutMs)
        } else if machine.requestComplete {
            arm(.upstreamResponse, proxy.settings.upstreamResponseTimeoutMs)
        }
        var framing = exchange.head.framing
        if machine.requestComplete && framing != .none {
            // The whole body is here (it arrived while the read waited): it goes with its length, however it
            // was framed by the client.
            framing = .contentLength(Int64(exchange.deferredBody.count))
        }
        exchange.bodyChunkedToApp = framing == .chunked
        // The head is serialized from the exchange's own copy, with the framing above declared instead of the
        // client's: copying the head to change that one field retained and released every part of it.
        let client = forwardingClient
        let keepUpgrade = exchange.isUpgrade
        proxy.writeSerializedHead(to: upstream.connection) { buffer in
            ProxyHeaders.appendForwardedRequestHead(
                exchange.head, client: client, keepUpgrade: keepUpgrade, framing: framing, into: &buffer)
        }
        if !exchange.deferredBody.isEmpty {
            exchange.deferredBody.withUnsafeBytes { forwardRequestBody($0) }
            releaseDeferredBody(exchange)
        }
    }

    private func forwardRequestBody(_ bytes: UnsafeRawBufferPointer) {
        guard let exchange else { return }
        guard let upstream = exchange.upstream else {
            guard proxy.reserveBodyBytes(bytes.count) else {
                proxy.metrics.recordShed("body_budget")
                respondWithError(
                    Self.overloaded("too many request bodies are held in memory; retry shortly"), forceClose: true)
                return
            }
            exchange.budgetedBodyBytes += bytes.count
            exchange.deferredBody.append(contentsOf: bytes)
            return
        }
        if exchange.bodyChunkedToApp {
            upstream.connection.write(HTTPSerializer.chunkHeader(sizeBytes: bytes.count))
            upstream.connection.write(bytes)
            upstream.connection.write(HTTPSerializer.chunkTerminator)
        } else {
            upstream.connection.write(bytes)
        }
    }

    private func finishRequest(trailers: HTTPHeaders?) {
        if bodyTimerScheduled {
            bodyTimer.cancel()
            bodyTimerScheduled = false
        }
        guard let exchange else { return }
        let action = machine.requestEnded()
        // Nothing more is read from the client until this exchange is answered and its answer has left: a
        // client that half-closed after its request (shutdown(SHUT_WR)) must get its response, and the EOF
        // would end the connection if it were read now. Pipelined requests wait meanwhile. Paused rather than
        // disabled: a client waiting for its answer sends nothing, and the read event then stays armed.
        connection.pauseReading()
        switch action {
        case .none:
            preconditionFailure("an exchange in flight has a request to end")
        case .submitWrite:
            admit(exchange, as: .write)
        case .awaitReadLevel:
            break
        case .forwardEnd(let finish):
            if exchange.bodyChunkedToApp, let upstream = exchange.upstream {
                var forwarded = trailers
                if forwarded != nil { _ = ProxyHeaders.removeForbiddenTrailers(from: &forwarded!) }
                upstream.connection.write(HTTPSerializer.lastChunk(trailers: forwarded))
            }
            if exchange.upstream?.isConnected == true {
                arm(.upstreamResponse, proxy.settings.upstreamResponseTimeoutMs)
            }
            if finish { finishExchange() }
        }
    }

    private func rejectMalformed(_ error: HTTPParseError) {
        proxy.metrics.recordParseError(error.code.rawValue)
        proxy.log.debug(
            "rejected malformed request", metadata: ["client": "\(connection.peerAddress)", "reason": "\(error)"])
        if machine.responseStarted {
            close()
            return
        }
        respondWithError(TandemErrorResponse(parseError: error), forceClose: true)
    }

    func connectionDidDrainOutput(_ connection: Connection) {
        let actions = machine.outputDrained(outputEmpty: connection.outputCount == 0)
        if actions.close {
            close()
            return
        }
        if actions.restoreWriteWatermark {
            connection.setWriteLowWatermark(bytes: proxy.settings.bufferHighWaterBytes / 2)
        }
        if actions.enableClientReading { connection.enableReading() }
        if actions.enableAppReading { exchange?.upstream?.connection.enableReading() }
        if actions.parseAppInput, let upstream = exchange?.upstream { upstreamHasInput(upstream) }
        assertExchangeMatchesMachine()
    }

    func connectionDidClose(_ connection: Connection, reason: CloseReason) {
        // The client went away: an exchange in flight cannot be finished, and its app connection is mid-message.
        teardown()
    }

    // MARK: app side

    func upstreamConnected(_ upstream: UpstreamConnection) {
        guard exchange != nil else { return }
        if machine.requestComplete {
            arm(.upstreamResponse, proxy.settings.upstreamResponseTimeoutMs)
        } else {
            timer.cancel()
        }
    }

    func upstreamDrained(_ upstream: UpstreamConnection) {
        // The app took the buffered body: resume reading the client.
        if machine.isReading || machine.isTunnel {
            connection.enableReading()
            if machine.isReading { readRequest() }
        }
    }

    func upstreamHasInput(_ upstream: UpstreamConnection) {
        if machine.isTunnel {
            relay(from: upstream.connection, to: connection)
            return
        }
        guard let exchange, exchange.upstream === upstream else { return }
        var failure: HTTPParseError?
        do throws(HTTPParseError) {
            try upstream.connection.parseInput(while: { canReadResponseBytes(exchange, from: upstream) }) {
                rest throws(HTTPParseError) in
                try exchange.responseParser.parse(rest) { event in onResponseEvent(event, exchange) }
            }
        } catch {
            failure = error
        }
        if let failure {
            proxy.metrics.recordUpstreamError("bad_response")
            failExchange(.badUpstreamResponse(failure.message))
            return
        }
        if machine.isTunnel {
            relay(from: upstream.connection, to: connection)
            if connection.inputCount > 0 { relay(from: connection, to: upstream.connection) }
        } else if currentExchange === exchange && machine.exchangeCanFinish {
            finishExchange()
        }
        assertExchangeMatchesMachine()
    }

    /// Whether the response parse may take another step: not past the end of the response or into a tunnel,
    /// and not while the client's output is above its mark (a slow client: the app is not read until it drains).
    private func canReadResponseBytes(_ exchange: Exchange, from upstream: UpstreamConnection) -> Bool {
        guard currentExchange === exchange, !machine.responseComplete else { return false }
        if connection.outputCount > proxy.settings.bufferHighWaterBytes {
            upstream.connection.disableReading()
            return false
        }
        return true
    }

    private func onResponseEvent(_ event: HTTPResponseEvent, _ exchange: Exchange) {
        switch event {
        case .head(let head): startResponse(head, exchange)
        case .body(let bytes):
            if exchange.responseChunked {
                connection.write(HTTPSerializer.chunkHeader(sizeBytes: bytes.count))
                connection.write(bytes)
                connection.write(HTTPSerializer.chunkTerminator)
            } else {
                connection.write(bytes)
            }
        case .end(let trailers):
            // An interim 1xx ended (the final head follows), or the 101 that began a tunnel.
            guard currentExchange === exchange, machine.responseStarted, !machine.isTunnel else { return }
            if exchange.responseChunked {
                var forwarded = trailers
                if forwarded != nil { _ = ProxyHeaders.removeForbiddenTrailers(from: &forwarded!) }
                connection.write(HTTPSerializer.lastChunk(trailers: forwarded))
            }
            machine.responseEnded()
        }
    }

    private func startResponse(_ head: HTTPResponseHead, _ exchange: Exchange) {
        if head.isInterim {
            return  // interim responses are not relayed: Tandem already answered any Expect itself
        }
        timer.cancel()
        exchange.status = head.status
        let action = machine.responseHeadReceived(
            switchesProtocols: head.status == 101, upgradeAllowed: exchange.isUpgrade, framing: head.framing,
            appKeepAlive: head.keepAlive, requestVersion: exchange.head.version, draining: proxy.isDraining)
        let clientKeepAlive: Bool
        switch action {
        case .refuseUpgrade:
            failExchange(.badUpstreamResponse("the app switched protocols on a route that is not bypass"))
            return
        case .upgrade:
            var upgraded = head.headers
            ProxyHeaders.removeHopByHop(from: &upgraded, keepUpgrade: true)
            connection.write(
                HTTPSerializer.responseHead(
                    HTTPResponseHead(status: head.status, reason: head.reason, headers: upgraded)))
            connection.enableReading()
            return
        case .relay(let chunked, let keepAlive):
            exchange.responseChunked = chunked
            clientKeepAlive = keepAlive
        }
        // Serialized straight from the app's fields: the end-to-end ones, then Tandem's own.
        let chunked = exchange.responseChunked
        let position = exchange.requestClass == .read ? exchange.readPosition : nil
        let connectionOption = !clientKeepAlive ? "close" : exchange.head.version == .http1_0 ? "keep-alive" : nil
        proxy.writeSerializedHead(to: connection) { buffer in
            ProxyHeaders.appendForwardedResponseHead(
                status: head.status, reason: head.reason, headers: head.headers, chunked: chunked, position: position,
                connectionOption: connectionOption, into: &buffer)
        }
    }

    func upstreamClosed(_ upstream: UpstreamConnection, reason: CloseReason) {
        guard let exchange, exchange.upstream === upstream else { return }
        exchange.upstream = nil
        if machine.isTunnel {
            connection.closeAfterFlush()
            teardown()
            return
        }
        if machine.responseStarted {
            if exchange.responseParser.phase == .body,
                (try? exchange.responseParser.finishAtEOF { event in onResponseEvent(event, exchange) }) != nil,
                machine.responseComplete
            {
                finishExchange()
            } else {
                proxy.metrics.recordUpstreamError("reset")
                close()  // a truncated response must not look complete to the client
            }
            return
        }
        if upstream.isConnected && upstream.completedExchanges > 0 && exchange.isRetriable {
            retryOnFreshConnection(exchange)
            return
        }
        let connectFailed = !upstream.isConnected
        proxy.metrics.recordUpstreamError(connectFailed ? "connect" : "reset")
        failExchange(
            connectFailed
                ? .upstreamUnavailable("cannot connect to the app: \(reason)")
                : .upstreamUnavailable("the app closed the connection: \(reason)"))
    }

    private func retryOnFreshConnection(_ exchange: Exchange) {
        exchange.retriedOnFreshConnection = true
        // The old connection may have delivered part of a status line: start the response parse afresh.
        exchange.responseParser.reset()
        exchange.responseParser.expect(requestMethod: exchange.head.method)
        guard let fresh = proxy.pool.acquire(for: self) else {
            failExchange(.upstreamUnavailable("cannot open a socket to the app"))
            return
        }
        exchange.upstream = fresh
        let client = forwardingClient
        proxy.writeSerializedHead(to: fresh.connection) { buffer in
            ProxyHeaders.appendForwardedRequestHead(exchange.head, client: client, keepUpgrade: false, into: &buffer)
        }
        arm(.upstreamConnect, proxy.settings.upstreamConnectTimeoutMs)
    }

    // MARK: ending exchanges

    private func finishExchange() {
        guard let exchange else { return }
        self.exchange = nil
        exchange.responseParser.exchangeFieldStorage(with: &spareResponseFields)
        releaseAdmission(exchange, dropped: false)
        proxy.metrics.recordRequest(
            class: exchange.requestClass.rawValue, status: exchange.status,
            latencyMicros: EventLoop.preciseNowMicros() - exchange.startMicros)
        if let upstream = exchange.upstream {
            // Bytes after the end of the response (a body on a 204, 304 or HEAD answer, more than its
            // Content-Length) belong to no request: on a reused connection they would be the next client's answer.
            let overran = upstream.connection.inputCount > 0
            if overran {
                proxy.metrics.recordUpstreamError("bytes_beyond_response")
                proxy.log.warning(
                    "the app sent bytes beyond the end of its response; its connection is closed",
                    metadata: ["status": "\(exchange.status)", "bytes": "\(upstream.connection.inputCount)"])
            }
            if machine.appKeepAlive && machine.requestComplete && !exchange.isUpgrade && !overran {
                proxy.pool.release(upstream)
            } else {
                proxy.pool.discard(upstream)
            }
        }
        guard machine.exchangeFinished(draining: proxy.isDraining) else {
            closeAfterFlush()
            return
        }
        readNextRequest()
    }

    /// Answers an exchange that failed before its response started with Tandem's own JSON error.
    private func failExchange(_ error: TandemErrorResponse) {
        guard let exchange, !machine.responseStarted else {
            close()
            return
        }
        if let upstream = exchange.upstream { proxy.pool.discard(upstream) }
        exchange.upstream = nil
        respondWithError(error, forceClose: !machine.requestComplete)
    }

    private func respondWithError(_ error: TandemErrorResponse, forceClose: Bool = false) {
        let exchange = self.exchange
        self.exchange = nil
        if let exchange {
            // Timeouts and overload are load signals for the concurrency limit; other errors are not.
            releaseAdmission(
                exchange, dropped: ["upstream_timeout", "commit_timeout", "overloaded"].contains(error.code))
        }
        if let upstream = exchange?.upstream { proxy.pool.discard(upstream) }
        // A request without a body is complete once its head is parsed: the connection can stay open.
        let keepAlive = machine.answeredWithError(
            forceClose: forceClose, requestBodiless: exchange?.head.framing == BodyFraming.none,
            draining: proxy.isDraining)
        var error = error
        error.closeConnection = !keepAlive
        connection.write(error.bytes)
        proxy.metrics.recordRequest(
            class: (exchange?.requestClass ?? .read).rawValue, status: error.status,
            latencyMicros: exchange.map { EventLoop.preciseNowMicros() - $0.startMicros } ?? 0)
        if !keepAlive {
            closeAfterFlush()
        } else if error.code == "overloaded" {
            connection.disableReading()
            arm(.resumeAfterShed, Self.shedPause(for: error))
        } else {
            readNextRequest()
        }
    }

    // MARK: timers, tunnels, shutdown

    /// Reads the client again after an exchange ended, once its answer has left the output buffer: reading
    /// earlier could see the EOF of a client that half-closed and end the connection with the answer unsent.
    /// Pipelined requests already buffered are parsed at once.
    private func readNextRequest() {
        switch machine.resumeReading(outputEmpty: connection.outputCount == 0) {
        case .now: connection.enableReading()
        case .whenFlushed: connection.setWriteLowWatermark(bytes: 0)
        }
        arm(.idle, proxy.settings.idleTimeoutMs)
        if connection.inputCount > 0 { readRequest() }  // a pipelined request is already waiting
    }

    /// A request body stopped arriving for the header timeout: 408 and close (the body is incomplete, so the
    /// connection cannot carry another request). A body that waits because the app is not taking it (the
    /// client is not being read) is not stalled.
    private func scheduleBodyTimer() {
        bodyTimer.schedule(afterMs: proxy.settings.headerTimeoutMs)
        bodyTimerScheduled = true
    }

    private func onBodyTimeout() {
        bodyTimerScheduled = false  // it fired
        guard let exchange, case .reading(_?) = machine.state else { return }
        if let upstream = exchange.upstream, upstream.connection.outputCount > proxy.settings.bufferHighWaterBytes {
            scheduleBodyTimer()
            return
        }
        proxy.metrics.recordParseError("body_timeout")
        guard !machine.responseStarted else {
            close()
            return
        }
        respondWithError(
            TandemErrorResponse(
                status: 408, code: "request_timeout",
                message: "the request body stopped arriving for the header timeout", retryable: true),
            forceClose: true)
    }

    private func arm(_ purpose: TimerPurpose, _ delayMs: Int64) {
        timerPurpose = purpose
        timer.schedule(afterMs: delayMs)
    }

    private func onTimer() {
        switch timerPurpose {
        case .idle:
            if isIdle || machine.isClosingAfterFlush { close() }
        case .header:
            if exchange == nil {
                proxy.metrics.recordParseError("header_timeout")
                respondWithError(
                    TandemErrorResponse(
                        status: 408, code: "request_timeout",
                        message: "request headers not complete within the header timeout", retryable: true),
                    forceClose: true)
            }
        case .upstreamConnect:
            proxy.metrics.recordUpstreamError("connect")
            failExchange(
                .upstreamUnavailable("cannot connect to the app within \(proxy.settings.upstreamConnectTimeoutMs) ms"))
        case .resumeAfterShed:
            guard machine.isReading else { return }
            readNextRequest()
        case .upstreamResponse:
            proxy.metrics.recordUpstreamError("timeout")
            failExchange(
                TandemErrorResponse(
                    status: 504, code: "upstream_timeout",
                    message: "the app did not answer within \(proxy.settings.upstreamResponseTimeoutMs) ms",
                    retryable: true))
        }
    }

    private func relay(from source: Connection, to destination: Connection?) {
        guard let destination, destination.isOpen else { return }
        source.moveInput(to: destination)
        if destination.outputCount > proxy.settings.bufferHighWaterBytes { source.disableReading() }
    }

    /// Ends the session once everything written has reached the socket. The session stays registered until
    /// then, so a draining process does not exit with a response still in its buffers.
    private func closeAfterFlush() {
        machine.closeAfterFlush()
        timer.cancel()
        connection.disableReading()
        if connection.outputCount == 0 {
            close()
            return
        }
        connection.setWriteLowWatermark(bytes: 0)
        arm(.idle, proxy.settings.idleTimeoutMs)  // a client that never reads is cut off by the idle timeout
    }

    /// Stops a session with no request in flight (drain) or one that must end now.
    func close() {
        connection.close()
        teardown()
    }

    private func teardown() {
        guard machine.state != .closed || exchange != nil || timer != nil else { return }
        if let exchange { releaseAdmission(exchange, dropped: false) }
        if let upstream = exchange?.upstream { proxy.pool.discard(upstream) }
        exchange = nil
        machine.closed()
        timer?.invalidate()
        bodyTimer?.invalidate()
        proxy.sessionEnded(self)
    }
}
