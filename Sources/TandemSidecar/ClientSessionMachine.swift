import TandemHTTP

/// Where a client connection is in its life, as a value: `ClientSession` reports what happened (a request head
/// or end was parsed, a response head arrived, the output drained, an exchange ended) and executes what the
/// machine answers. The machine touches no socket, timer or app connection, so its decisions (which request may
/// be read, when the connection stays open, when reading resumes) are tested without a network.
///
/// One exchange at a time: pipelined requests wait unparsed in the input buffer until the exchange before them
/// has ended, which is what keeps responses in request order.
struct ClientSessionMachine: Equatable {
    /// Where the answer to the request in flight comes from.
    enum Route: Equatable {
        /// The app, through a pooled connection (possibly after waiting for an admission slot).
        case app
        /// Nothing yet: the read waits until this replica may serve it at its consistency level, then goes to
        /// the app.
        case readLevel
        /// The applier, once the write has gone through the log.
        case replicatedWrite
    }

    /// How far the answer has gone towards the client.
    enum Response: Equatable {
        case pending
        /// The head was written to the client: from now on a failure can only cut the connection.
        /// `appKeepAlive`: the app's connection can carry another request after this response.
        case streaming(appKeepAlive: Bool)
        case complete(appKeepAlive: Bool)
    }

    /// The request/response exchange in flight.
    struct ExchangeProgress: Equatable {
        var route: Route
        var response: Response
        /// The client connection may carry another request after this one.
        var clientKeepAlive: Bool
    }

    enum State: Equatable {
        /// Reading a request: between requests (nil), or its head is parsed and its body and end are arriving.
        case reading(ExchangeProgress?)
        /// The request was read whole; its answer is awaited or being written. The client is not read meanwhile,
        /// so that a client that half-closed after its request still gets the answer.
        case responding(ExchangeProgress)
        /// The app switched protocols: bytes flow both ways unparsed until either side closes.
        case tunnel
        /// The last answer is written; the connection closes once its output buffer is empty.
        case closingAfterFlush
        case closed
    }

    private(set) var state = State.reading(nil)
    /// Reading the client resumes once the output buffer is empty (an exchange ended with its answer still
    /// buffered). Independent of the exchange: a pipelined request already buffered is parsed meanwhile.
    /// Invariant: false once closing.
    private(set) var resumesReadingWhenFlushed = false

    // MARK: queries

    /// Requests are parsed from the input only in this state.
    var isReading: Bool {
        if case .reading = state { return true }
        return false
    }

    /// No request head parsed and no exchange in flight.
    var isBetweenRequests: Bool { state == .reading(nil) }

    var isTunnel: Bool { state == .tunnel }
    var isClosingAfterFlush: Bool { state == .closingAfterFlush }

    /// An exchange holds app-side resources: one is in flight, or a tunnel relays through its app connection.
    var hasExchange: Bool {
        switch state {
        case .reading(let exchange): return exchange != nil
        case .responding, .tunnel: return true
        case .closingAfterFlush, .closed: return false
        }
    }

    /// The exchange in flight, if any (none in a tunnel: its response is over).
    var exchange: ExchangeProgress? {
        switch state {
        case .reading(let exchange): return exchange
        case .responding(let exchange): return exchange
        case .tunnel, .closingAfterFlush, .closed: return nil
        }
    }

    /// The request in flight was read whole (its end parsed).
    var requestComplete: Bool {
        if case .responding = state { return true }
        return false
    }

    /// The head of the answer was written to the client (a tunnel's 101 included).
    var responseStarted: Bool {
        if state == .tunnel { return true }
        guard let exchange else { return false }
        return exchange.response != .pending
    }

    var responseComplete: Bool {
        if state == .tunnel { return true }
        if case .complete = exchange?.response { return true }
        return false
    }

    /// The app's connection can carry another request once this response is complete.
    var appKeepAlive: Bool {
        switch exchange?.response {
        case .streaming(let keepAlive), .complete(let keepAlive): return keepAlive
        case .pending, nil: return false
        }
    }

    /// The client connection may carry another request after the exchange in flight.
    var clientKeepAlive: Bool { exchange?.clientKeepAlive ?? false }

    /// The exchange's response is complete and nothing more is expected of it: the request was read whole, or
    /// the app closes its connection (the client's is then closed too, so the rest of the body is not needed).
    var exchangeCanFinish: Bool { exchange != nil && responseComplete && (requestComplete || !appKeepAlive) }

    // MARK: request events

    /// A request head was parsed. `keepAlive`: the client allows another request after this one and the process
    /// is not draining.
    mutating func requestHeadParsed(keepAlive: Bool) {
        precondition(isBetweenRequests, "a request head is parsed only between exchanges, got \(state)")
        state = .reading(ExchangeProgress(route: .app, response: .pending, clientKeepAlive: keepAlive))
    }

    /// The request in flight is answered from elsewhere than the app (or only later by it).
    mutating func route(_ route: Route) {
        updateExchange { exchange in
            precondition(exchange.response == .pending, "an exchange is routed before it is answered")
            exchange.route = route
        }
    }

    /// A read's consistency level was reached: it goes to the app now.
    mutating func readLevelReached() {
        updateExchange { exchange in
            precondition(exchange.route == .readLevel, "only a waiting read reaches its level")
            exchange.route = .app
        }
    }

    /// What ends a request once its last byte is parsed.
    enum RequestEndAction: Equatable {
        /// The exchange was already answered (an early refusal): nothing to do.
        case none
        /// Stop reading, and submit the whole request to the log.
        case submitWrite
        /// Stop reading; the read goes to the app once its level is reached.
        case awaitReadLevel
        /// Stop reading and send the end of the request to the app; finish the exchange at once when its
        /// response is already complete.
        case forwardEnd(finishExchange: Bool)
    }

    /// The request's end was parsed: nothing more is read from the client until the exchange is answered.
    mutating func requestEnded() -> RequestEndAction {
        guard case .reading(let current?) = state else { return .none }
        state = .responding(current)
        switch current.route {
        case .replicatedWrite: return .submitWrite
        case .readLevel: return .awaitReadLevel
        case .app: return .forwardEnd(finishExchange: exchangeCanFinish)
        }
    }

    // MARK: response events

    /// What becomes of a final response head from the app.
    enum ResponseHeadAction: Equatable {
        /// Relay the head (and then the body) to the client; `chunked`: re-frame the body chunked (it was
        /// delimited by the app's close, or chunked, for an HTTP/1.1 client); `clientKeepAlive`: the
        /// connection stays open after it.
        case relay(chunked: Bool, clientKeepAlive: Bool)
        /// Relay the 101 and tunnel from now on.
        case upgrade
        /// The app switched protocols where no upgrade was asked on a bypass route: cut the connection.
        case refuseUpgrade
    }

    /// A final (not 1xx interim) response head arrived from the app. Decides whether and how its body reaches
    /// the client and whether either connection can be reused.
    mutating func responseHeadReceived(
        switchesProtocols: Bool, upgradeAllowed: Bool, framing: ResponseFraming, appKeepAlive: Bool,
        requestVersion: HTTPVersion, draining: Bool
    ) -> ResponseHeadAction {
        var action = ResponseHeadAction.upgrade
        let requestComplete = self.requestComplete
        updateExchange { exchange in
            precondition(exchange.response == .pending, "one final response per exchange")
            guard !switchesProtocols else {
                exchange.response = .streaming(appKeepAlive: appKeepAlive)
                action = upgradeAllowed ? .upgrade : .refuseUpgrade
                return
            }
            var chunked = false
            var appKeepAlive = appKeepAlive
            switch framing {
            case .chunked:
                // HTTP/1.0 has no chunked coding: the body goes de-chunked, delimited by the close.
                if requestVersion == .http1_1 { chunked = true } else { exchange.clientKeepAlive = false }
            case .untilClose:
                appKeepAlive = false
                if requestVersion == .http1_1 { chunked = true } else { exchange.clientKeepAlive = false }
            case .none, .contentLength:
                break
            }
            // A request whose body is still arriving cannot be followed by another; a draining process keeps none.
            if !requestComplete || draining { exchange.clientKeepAlive = false }
            exchange.response = .streaming(appKeepAlive: appKeepAlive)
            action = .relay(chunked: chunked, clientKeepAlive: exchange.clientKeepAlive)
        }
        if action == .upgrade { state = .tunnel }
        return action
    }

    /// The response's end was parsed (check `exchangeCanFinish` afterwards).
    mutating func responseEnded() {
        updateExchange { exchange in
            guard case .streaming(let keepAlive) = exchange.response else {
                preconditionFailure("a response ends after its head, got \(exchange.response)")
            }
            exchange.response = .complete(appKeepAlive: keepAlive)
        }
    }

    /// A replicated write was applied and its whole answer written at once. Returns whether the client
    /// connection stays open after it.
    mutating func writeAnswered(draining: Bool) -> Bool {
        var keepAlive = false
        updateExchange { exchange in
            precondition(exchange.route == .replicatedWrite, "only a replicated write is answered by the applier")
            if draining { exchange.clientKeepAlive = false }
            exchange.response = .complete(appKeepAlive: false)
            keepAlive = exchange.clientKeepAlive
        }
        return keepAlive
    }

    // MARK: ending exchanges

    /// The exchange in flight ended with its response complete (relayed, or answered by the applier). Returns
    /// whether the connection reads another request; if not, it is closing once its output is empty.
    mutating func exchangeFinished(draining: Bool) -> Bool {
        precondition(exchange != nil, "only an exchange in flight finishes, got \(state)")
        guard clientKeepAlive && !draining else {
            closeAfterFlush()
            return false
        }
        state = .reading(nil)
        return true
    }

    /// Tandem answered with its own error (no response of the app's had started, or none was asked for; there
    /// may be no exchange at all, as for a request head that never completed). `requestBodiless`: the request has
    /// no body, so it was complete once its head was parsed. Returns whether the connection reads another
    /// request; if not, it is closing once its output is empty.
    mutating func answeredWithError(forceClose: Bool, requestBodiless: Bool, draining: Bool) -> Bool {
        let requestComplete = exchange != nil && (self.requestComplete || requestBodiless)
        guard !forceClose && clientKeepAlive && requestComplete && !draining else {
            closeAfterFlush()
            return false
        }
        state = .reading(nil)
        return true
    }

    /// When the socket is read again for the next request. Buffered pipelined requests are parsed at once either
    /// way.
    enum ReadResumption: Equatable {
        /// Now: the answer has left.
        case now
        /// Once the output buffer is empty (watch for it with a zero low watermark): until the answer has left,
        /// reading could see the EOF of a client that half-closed and end the connection with its answer unsent.
        case whenFlushed
    }

    /// The session reads requests again (after an exchange, or after the pause that follows a shed request).
    mutating func resumeReading(outputEmpty: Bool) -> ReadResumption {
        precondition(isReading, "reading resumes only in the reading state, got \(state)")
        if outputEmpty { return .now }
        resumesReadingWhenFlushed = true
        return .whenFlushed
    }

    /// Ends the connection once the output has left.
    mutating func closeAfterFlush() {
        guard state != .closed else { return }
        state = .closingAfterFlush
        resumesReadingWhenFlushed = false
    }

    /// The connection is gone (closed by either side).
    mutating func closed() {
        state = .closed
        resumesReadingWhenFlushed = false
    }

    // MARK: output

    /// What to do when the client's output buffer fell to its low watermark.
    struct DrainActions: Equatable {
        /// The last answer has left: close now.
        var close = false
        /// The wait for an empty buffer is over: restore the usual low watermark.
        var restoreWriteWatermark = false
        /// Read the client again.
        var enableClientReading = false
        /// Read the app again (its response waits on this client's buffer).
        var enableAppReading = false
        /// Also parse what the app already sent.
        var parseAppInput = false
    }

    mutating func outputDrained(outputEmpty: Bool) -> DrainActions {
        var actions = DrainActions()
        if state == .closingAfterFlush {
            actions.close = outputEmpty
            return actions
        }
        if resumesReadingWhenFlushed && outputEmpty {
            resumesReadingWhenFlushed = false
            actions.restoreWriteWatermark = true
            actions.enableClientReading = isReading
        }
        switch state {
        case .responding:
            actions.enableAppReading = true
            actions.parseAppInput = true
        case .tunnel:
            actions.enableAppReading = true
        case .reading, .closingAfterFlush, .closed:
            break
        }
        return actions
    }

    // MARK: helpers

    private mutating func updateExchange(_ change: (inout ExchangeProgress) -> Void) {
        switch state {
        case .reading(var exchange?):
            change(&exchange)
            state = .reading(exchange)
        case .responding(var exchange):
            change(&exchange)
            state = .responding(exchange)
        default:
            preconditionFailure("no exchange in flight in state \(state)")
        }
    }
}
