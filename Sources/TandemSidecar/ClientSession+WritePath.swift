import TandemConfig
import TandemConsensus
import TandemHTTP
import TandemNet

/// A `Tandem-Consistency` or `Tandem-After` value Tandem cannot use.
struct ReadLevelError: Error {
    let message: String
}

extension ClientSession {
    // MARK: replicated writes

    /// The request as the log carries it: end-to-end fields only, forwarding fields appended, framing restated
    /// by the applier. Client-sent `Tandem-*` fields are dropped so no client can forge `Tandem-Index`.
    func writeCommand(for exchange: Exchange) -> WriteCommand {
        var headers = exchange.head.headers
        ProxyHeaders.removeHopByHop(from: &headers)
        headers.remove(name: "Expect")
        ProxyHeaders.removeTandemFields(from: &headers)
        ProxyHeaders.appendForwarding(to: &headers, clientAddress: connection.peerAddress)
        ProxyHeaders.setFraming(.none, in: &headers)
        return WriteCommand(
            method: exchange.head.method, target: exchange.head.target, headers: headers, body: exchange.deferredBody)
    }

    func submitWrite(_ exchange: Exchange) {
        guard let writePath = proxy.writePath else { return }
        if let key = exchange.head.headers.first(name: "Idempotency-Key"),
            key.utf8.count > IdempotencyTable.keyBytesMax
        {
            // Every replica keeps a key for the TTL: a bounded key keeps that table bounded in bytes.
            answerWithError(
                TandemErrorResponse(
                    status: 400, code: "bad_request",
                    message: "Idempotency-Key is longer than \(IdempotencyTable.keyBytesMax) bytes", retryable: false))
            return
        }
        let command = writeCommand(for: exchange)
        releaseDeferredBody(exchange)
        writePath.submitWrite(command) { [weak self] outcome in
            guard let self, self.currentExchange === exchange else { return }
            switch outcome {
            case .applied(let response, let index):
                self.answerWrite(exchange, response: response, index: index, leader: writePath.leader)
            case .failed(let error):
                self.answerWithError(error)
            }
        }
    }

    private func answerWrite(
        _ exchange: Exchange, response: AppliedResponse, index: UInt64, leader: TandemConsensus.NodeID?
    ) {
        let clientKeepAlive = recordWriteAnswered(draining: proxy.isDraining)
        let connectionOption: String? =
            !clientKeepAlive ? "close" : exchange.head.version == .http1_0 ? "keep-alive" : nil
        var head: [UInt8] = []
        ProxyHeaders.appendWriteAnswerHead(
            status: response.status, reason: response.reason, headers: response.headers,
            bodyCount: response.body.count, position: index, leader: leader?.rawValue ?? proxy.nodeID,
            replayed: response.replayed, connectionOption: connectionOption, into: &head)
        connection.write(head)
        connection.write(response.body)
        exchange.status = response.status
        completeCurrentExchange()
    }

    // MARK: consistent reads

    /// Starts the wait a read's consistency level asks for; leaves the read routed to the app when none is needed.
    func startConsistentRead(_ exchange: Exchange, writePath: WritePath) throws(ReadLevelError) {
        let level = try Self.consistency(of: exchange.head, default: proxy.writePathSettings.defaultReadConsistency)
        let waitMs = proxy.writePathSettings.readWaitMaxMs
        switch level {
        case .local:
            return
        case .session:
            guard let after = try Self.sessionIndex(of: exchange.head), after > writePath.appliedIndex else { return }
            routeToReadLevel()
            writePath.waitUntilApplied(after, timeoutMs: waitMs) { [weak self] applied in
                self?.readWaitEnded(exchange, applied: applied)
            }
        case .linearizable, .lease:
            routeToReadLevel()
            writePath.confirmRead(mode: level == .lease ? .lease : .readIndex) { [weak self] result in
                switch result {
                case .success(let index):
                    writePath.waitUntilApplied(index, timeoutMs: waitMs) { [weak self] applied in
                        self?.readWaitEnded(exchange, applied: applied)
                    }
                case .failure(let error):
                    self?.readConfirmationFailed(exchange, error)
                }
            }
        }
    }

    private func readWaitEnded(_ exchange: Exchange, applied: Bool) {
        guard currentExchange === exchange else { return }
        readLevelReached()
        guard applied else {
            answerWithError(
                WritePath.error(
                    503, "not_caught_up", "this replica did not apply the requested position in time", retryAfter: 1))
            return
        }
        resumeAfterReadWait(exchange)
    }

    private func readConfirmationFailed(_ exchange: Exchange, _ error: ReadError) {
        guard currentExchange === exchange else { return }
        let message: String
        switch error {
        case .noLeader, .notLeader: message = "no leader could confirm the read; retry shortly"
        case .overloaded: message = "too many reads are waiting for confirmation"
        case .timeout: message = "the leader did not confirm the read in time"
        }
        answerWithError(
            WritePath.error(503, error == .overloaded ? "overloaded" : "no_leader", message, retryAfter: 1))
    }

    static func consistency(of head: HTTPRequestHead, default level: ReadConsistency) throws(ReadLevelError)
        -> ReadConsistency
    {
        guard let text = head.headers.first(name: "Tandem-Consistency") else { return level }
        guard let parsed = ReadConsistency(rawValue: text.lowercased()) else {
            throw ReadLevelError(
                message: "Tandem-Consistency must be local, session, linearizable or lease, not \"\(text)\"")
        }
        return parsed
    }

    /// `Tandem-After`, else the `tandem_pos` cookie; nil when neither is present.
    static func sessionIndex(of head: HTTPRequestHead) throws(ReadLevelError) -> UInt64? {
        if let text = head.headers.first(name: "Tandem-After") {
            guard let index = UInt64(text) else {
                throw ReadLevelError(message: "Tandem-After must be a log index, not \"\(text)\"")
            }
            return index
        }
        for cookieHeader in head.headers.values(name: "Cookie") {
            for pair in cookieHeader.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == "tandem_pos" {
                    return UInt64(parts[1].trimmingCharacters(in: .whitespaces))
                }
            }
        }
        return nil
    }
}
