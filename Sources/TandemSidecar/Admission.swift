import TandemConfig
import TandemHTTP
import TandemNet
import TandemOverload

/// A request waiting for a slot towards the app (a read) or into the log (a write).
final class AdmissionTicket {
    /// Runs when a slot is granted; the holder must call `Admission.release` when the exchange ends.
    var onGranted: ((AdmissionSlot) -> Void)?
    /// Runs when the request is shed while waiting (503 overloaded).
    var onShed: ((ShedReason) -> Void)?
    /// The client went away: drop the request before it costs anything.
    var isAbandoned = false
}

/// A granted slot: what `release` needs to feed the concurrency limit.
struct AdmissionSlot {
    let kind: Admission.Kind
    let startMicros: Int64
    let inflightAtStart: Int
}

/// Overload control on the request path (README, "Overload"): GCRA rate limits per key and
/// global (429), and for reads towards the app and writes into the log an adaptive concurrency limit (Gradient2)
/// in front of a bounded CoDel queue (503 `overloaded` when full or when a standing queue forms). Every queue here
/// is bounded; a waiting request whose client left is dropped before it costs anything.
final class Admission {
    enum Kind { case read, write }

    private struct Lane {
        var limit: AdaptiveConcurrencyLimit
        var queue: BoundedCoDelQueue<AdmissionTicket>
    }

    private var lanes: [Lane]
    private var perKey: GCRARateLimiter?
    private var global: GCRARateLimiter?
    private let rateLimitKey: RateLimitKey
    /// Some rate limit is configured: without one, `checkRateLimits` has nothing to look at.
    private let hasRateLimits: Bool
    private var sweepTimer: TandemNet.Timer!
    private let metrics: Metrics

    init(
        loop: EventLoop, rateLimit: RateLimit?, globalRateLimit: RateLimit?, rateLimitKey: RateLimitKey,
        rateLimitKeys: Int = 100_000, queueTargetMs: Int64, writeQueueCapacity: Int, readQueueCapacity: Int,
        metrics: Metrics
    ) {
        self.metrics = metrics
        self.rateLimitKey = rateLimitKey
        self.hasRateLimits = rateLimit != nil || globalRateLimit != nil
        let codel = CoDelController.Configuration(targetMicros: max(1, queueTargetMs) * 1000, intervalMicros: 100_000)
        // No probing down to a tiny concurrency: at a floor of 4, 50 healthy clients queue behind the probe and
        // CoDel sheds them (Envoy #8337). The floors stay well above ordinary client concurrency.
        var readConfig = AdaptiveConcurrencyLimit.Configuration()
        // The read floor is the starting limit: with a floor of 64, a jump from 50 to 256 clients of a healthy
        // app (their latency five times what the long average had learned, the app's own queue) drove the limit
        // to 64 within a second and CoDel shed reads the app served in 17 ms (scripts/bench-proxy.sh). Above the
        // floor the limit still follows the app's latency, up to 4096; a slow app's answers stay bounded by
        // TANDEM_UPSTREAM_TIMEOUT.
        readConfig.initialLimit = 256
        readConfig.minLimit = 256
        readConfig.maxLimit = 4096
        readConfig.probeIntervalSamples = nil
        var writeConfig = AdaptiveConcurrencyLimit.Configuration()
        // Writes are batched into one fsync: allow many in flight, or group commit has nothing to group. A small
        // window buys no latency, only rejections: each refused client comes straight back, and at 10x load
        // answering 503s ate the CPU the writes needed (goodput fell to 16 % of peak in scripts/bench-overload.sh).
        // A window near the pending limit keeps the log's batches full; CoDel still sheds a queue that stands
        // beyond it.
        writeConfig.maxLimit = max(8, writeQueueCapacity)
        writeConfig.initialLimit = writeConfig.maxLimit
        writeConfig.minLimit = max(4, writeConfig.maxLimit / 4)
        writeConfig.probeIntervalSamples = nil
        lanes = [
            Lane(
                limit: AdaptiveConcurrencyLimit(configuration: readConfig, seed: 0x5EAD),
                queue: BoundedCoDelQueue(capacity: readQueueCapacity, codel: codel)),
            Lane(
                limit: AdaptiveConcurrencyLimit(configuration: writeConfig, seed: 0x3417E),
                queue: BoundedCoDelQueue(capacity: writeQueueCapacity, codel: codel)),
        ]
        perKey = rateLimit.map {
            GCRARateLimiter(
                configuration: .init(
                    count: $0.count, periodMs: $0.periodMs, burst: $0.burst, keyCapacity: rateLimitKeys))
        }
        global = globalRateLimit.map {
            GCRARateLimiter(
                configuration: .init(count: $0.count, periodMs: $0.periodMs, burst: $0.burst, keyCapacity: 1))
        }
        sweepTimer = TandemNet.Timer(loop: loop) { [unowned self] in self.sweep() }
    }

    /// How often a waiting request is looked at, so a stalled lane still sheds its standing queue on time. The
    /// sweep runs only while some request waits: an idle node does not wake for it (it woke 100 times a second).
    static let sweepIntervalMs: Int64 = 10

    /// Whether the sweep is running: exactly while some request waits, or until the first sweep after the last
    /// one left.
    var isSweeping: Bool { sweepTimer.isScheduled }

    func stop() { sweepTimer.invalidate() }

    private func index(_ kind: Kind) -> Int { kind == .read ? 0 : 1 }

    // MARK: rate limits

    /// Nil when the request may pass; else the 429 to answer. Per key first, so one abusive client is refused
    /// without spending the global budget.
    func checkRateLimits(head: HTTPRequestHead, clientAddress: String, nowMs: Int64) -> TandemErrorResponse? {
        guard hasRateLimits else { return nil }
        if perKey != nil {
            let key: String
            switch rateLimitKey {
            case .ip: key = clientAddress
            case .header(let name): key = head.headers.first(name: name) ?? ""
            }
            let decision = perKey!.check(key: key, nowMs: nowMs)
            if !decision.isAllowed {
                metrics.recordRateLimited("key")
                return Self.tooManyRequests(decision, policy: perKey!.configuration.policyHeaderValue)
            }
        }
        if global != nil {
            let decision = global!.check(nowMs: nowMs)
            if !decision.isAllowed {
                metrics.recordRateLimited("global")
                return Self.tooManyRequests(decision, policy: global!.configuration.policyHeaderValue)
            }
        }
        return nil
    }

    private static func tooManyRequests(_ decision: RateDecision, policy: String) -> TandemErrorResponse {
        var headers = HTTPHeaders()
        headers.add(name: "RateLimit-Policy", value: policy)
        headers.add(name: "RateLimit", value: decision.rateLimitHeaderValue)
        return TandemErrorResponse(
            status: 429, code: "rate_limited", message: "rate limit exceeded; retry after the indicated delay",
            retryable: true, retryAfterSeconds: Int(decision.retryAfterSeconds ?? 1), extraHeaders: headers)
    }

    // MARK: concurrency

    /// The slot `admit` would grant at once (nothing waits and the limit has room), or nil when the request would
    /// have to wait or be refused. The common case needs no ticket and no callbacks: callers try this first and
    /// make a ticket only when it returns nil; the decision is the same as `admit`'s.
    func grantNow(_ kind: Kind) -> AdmissionSlot? {
        let lane = index(kind)
        guard lanes[lane].queue.isEmpty && lanes[lane].limit.tryAcquire() else { return nil }
        return slot(kind, now: EventLoop.preciseNowMicros())
    }

    /// Grants a slot now, queues the ticket, or refuses it (false: the queue is full, answer 503).
    func admit(_ kind: Kind, ticket: AdmissionTicket) -> Bool {
        let lane = index(kind)
        let now = EventLoop.preciseNowMicros()
        if lanes[lane].queue.isEmpty && lanes[lane].limit.tryAcquire() {
            grant(ticket, kind: kind, now: now)
            return true
        }
        switch lanes[lane].queue.enqueue(ticket, nowMicros: now) {
        case .accepted:
            if !sweepTimer.isScheduled { sweepTimer.scheduleRepeating(everyMs: Self.sweepIntervalMs) }
            return true
        case .rejectedFull:
            metrics.recordShed(kind == .read ? "read_queue" : "pending_writes")
            return false
        }
    }

    /// The exchange that held `slot` ended; `dropped` when it failed for load reasons (timeouts, 5xx of ours).
    func release(_ slot: AdmissionSlot, dropped: Bool) {
        let lane = index(slot.kind)
        let now = EventLoop.preciseNowMicros()
        lanes[lane].limit.onSample(
            rttMicros: now - slot.startMicros, inflightAtStart: slot.inflightAtStart, didDrop: dropped)
        lanes[lane].limit.release()
        drain(lane, kind: slot.kind, now: now)
    }

    /// Requests the per-key limiter decided in its shared overflow bucket (its key table was full of keys that
    /// still owe).
    var rateLimitOverflowChecks: Int64 { perKey?.overflowCheckCount ?? 0 }

    var readLimit: Int { lanes[0].limit.limit }
    var writeLimit: Int { lanes[1].limit.limit }
    var readQueueLength: Int { lanes[0].queue.count }
    var writeQueueLength: Int { lanes[1].queue.count }

    private func slot(_ kind: Kind, now: Int64) -> AdmissionSlot {
        AdmissionSlot(kind: kind, startMicros: now, inflightAtStart: lanes[index(kind)].limit.inflight)
    }

    private func grant(_ ticket: AdmissionTicket, kind: Kind, now: Int64) {
        let slot = slot(kind, now: now)
        let onGranted = ticket.onGranted
        ticket.onGranted = nil
        ticket.onShed = nil
        onGranted?(slot)
    }

    private func drain(_ lane: Int, kind: Kind, now: Int64) {
        // Nearly always nobody waits: nothing is stale and nothing is granted (an empty queue sheds nothing).
        guard !lanes[lane].queue.isEmpty else { return }
        shed(lanes[lane].queue.removeStale(nowMicros: now))
        while !lanes[lane].queue.isEmpty && lanes[lane].limit.tryAcquire() {
            let result = lanes[lane].queue.dequeue(nowMicros: now, isAbandoned: { $0.isAbandoned })
            shed(result.shed)
            guard let ticket = result.element else {
                lanes[lane].limit.release()
                break
            }
            grant(ticket, kind: kind, now: now)
        }
    }

    private func shed(_ elements: [ShedElement<AdmissionTicket>]) {
        for element in elements {
            let onShed = element.element.onShed
            element.element.onShed = nil
            element.element.onGranted = nil
            if element.reason != .abandoned { metrics.recordShed("standing_queue") }
            onShed?(element.reason)
        }
    }

    private func sweep() {
        let now = EventLoop.preciseNowMicros()
        for lane in lanes.indices {
            shed(lanes[lane].queue.removeStale(nowMicros: now))
        }
        if lanes.allSatisfy({ $0.queue.isEmpty }) { sweepTimer.cancel() }
    }
}
