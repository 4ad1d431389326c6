// TandemNet: the only module that touches libevent.
//
// It owns the event base, listeners, TCP connections (bufferevents), timers and signals, and exposes them as
// small Swift classes with delegate callbacks. No C type crosses its public surface. It must never block the loop
// thread, never parse a protocol, and never decide policy: the sidecar decides, this module moves bytes.
//
// Threading: one EventLoop per thread, created and run on that thread. Every object created from a loop is used
// only on that loop's thread. C callbacks are non-capturing closures stored as `static let` on the owning class,
// with the Swift object passed through libevent's context pointer (see ARCHITECTURE.md, "The event loop").

import CLibevent
import CLibeventPthreads
import Glibc

/// Errors the operating system or libevent can hand us. Everything here is an operating error, never a bug.
public enum NetError: Error, CustomStringConvertible, Sendable {
    case eventBaseCreationFailed
    case invalidAddress(String)
    case resolutionFailed(host: String, reason: String)
    case bindFailed(address: String, errno: Int32)
    case socketFailed(errno: Int32)

    public var description: String {
        switch self {
        case .eventBaseCreationFailed: return "libevent could not create an event base"
        case .invalidAddress(let text): return "invalid address \"\(text)\": expected host:port"
        case .resolutionFailed(let host, let reason): return "cannot resolve \(host): \(reason)"
        case .bindFailed(let address, let code):
            return "cannot listen on \(address): \(String(cString: strerror(code)))"
        case .socketFailed(let code): return "socket error: \(String(cString: strerror(code)))"
        }
    }
}

/// The priority classes of the loop. Admin traffic (health checks) is served before client traffic, so an
/// orchestrator never kills a replica that is coping with load (health checks queued behind client traffic fail pods under load).
public enum EventPriority: Int32, Sendable {
    case control = 0
    case normal = 1
}

private let threadingInitialized: Bool = {
    // Must run before any event base exists, so that cross-thread wakeups (event_active) are safe.
    evthread_use_pthreads()
    return true
}()

/// One libevent event base, run on the thread that created it.
public final class EventLoop {
    let base: OpaquePointer
    let dns: OpaquePointer?
    /// The thread that created the loop, and the only one that may touch it (see the threading rule above).
    private let ownerThread = pthread_self()
    /// Connections with staged writes, by priority, and the events that flush them once the callbacks of the
    /// turn have run (an active event of the same priority runs after those already active). Each entry holds
    /// one retain of its connection, taken when it is scheduled and given back after its flush: one atomic
    /// operation each way, where an array of strong references retained and released every connection again
    /// to append it, iterate over it and empty the batch.
    private var pendingFlushes: [[Unmanaged<Connection>]] = [[], []]
    /// The batch being flushed, kept between turns so that its storage is reused instead of allocated per turn.
    private var flushingBatch: [Unmanaged<Connection>] = []
    private var flushEvents: [OpaquePointer] = []
    private var flushContexts: [FlushContext] = []

    /// What a flush event's callback needs: the loop and the priority it flushes.
    private final class FlushContext {
        unowned(unsafe) let loop: EventLoop
        let priority: Int

        init(loop: EventLoop, priority: Int) {
            self.loop = loop
            self.priority = priority
        }
    }

    private static let flush: event_callback_fn = { _, _, context in
        guard let context else { return }
        // The loop owns its flush contexts and outlives their events: no retain of the context for the call.
        Unmanaged<FlushContext>.fromOpaque(context)._withUnsafeGuaranteedRef { flushContext in
            flushContext.loop.runFlushes(priority: flushContext.priority)
        }
    }

    public init() throws(NetError) {
        _ = threadingInitialized
        // The epoll changelist folds the add/delete pairs of one loop turn into one epoll_ctl: a proxy enables
        // and disables write events on every response, so this halves those system calls.
        guard let config = event_config_new() else { throw .eventBaseCreationFailed }
        defer { event_config_free(config) }
        event_config_set_flag(config, Int32(EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST.rawValue))
        guard let base = event_base_new_with_config(config) else { throw .eventBaseCreationFailed }
        event_base_priority_init(base, 2)
        self.base = base
        // Names are resolved at connect time and again on every reconnect (Kubernetes headless services).
        self.dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE)
        for priority in [EventPriority.control, .normal] {
            let context = FlushContext(loop: self, priority: Int(priority.rawValue))
            let event = event_new(base, -1, 0, EventLoop.flush, Unmanaged.passUnretained(context).toOpaque())
            precondition(event != nil, "event_new failed: out of memory")
            event_priority_set(event, priority.rawValue)
            flushContexts.append(context)
            flushEvents.append(event!)
        }
    }

    deinit {
        for batch in pendingFlushes { for connection in batch { connection.release() } }
        for event in flushEvents { event_free(event) }
        if let dns { evdns_base_free(dns, 0) }
        event_base_free(base)
    }

    /// Runs until `stop()` is called or no events remain.
    public func run() {
        event_base_dispatch(base)
    }

    /// Makes `run()` return after the callbacks of the current turn.
    public func stop() {
        event_base_loopexit(base, nil)
    }

    /// Flushes `connection`'s staged writes after the callbacks already active in this turn (loop thread only).
    func scheduleFlush(_ connection: Connection) {
        let priority = Int(connection.priority.rawValue)
        if pendingFlushes[priority].isEmpty { event_active(flushEvents[priority], 0, 0) }
        pendingFlushes[priority].append(Unmanaged.passRetained(connection))
    }

    private func runFlushes(priority: Int) {
        // A flush can report a drain whose handler writes again: those join the next batch.
        while !pendingFlushes[priority].isEmpty {
            swap(&flushingBatch, &pendingFlushes[priority])
            for connection in flushingBatch {
                // Alive through the call: the batch holds its retain until the line after.
                connection._withUnsafeGuaranteedRef { $0.flushStaged() }
                connection.release()
            }
            flushingBatch.removeAll(keepingCapacity: true)
        }
    }

    /// Monotonic milliseconds (a coarse clock: cheap, a few milliseconds of resolution).
    public var nowMs: Int64 { Self.read(CLOCK_MONOTONIC_COARSE) / 1_000_000 }

    /// Traps when called off the loop's thread: state owned by the loop is never shared.
    public func assertOnLoopThread(file: StaticString = #fileID, line: UInt = #line) {
        precondition(
            pthread_equal(pthread_self(), ownerThread) != 0, "touched off the loop thread", file: file, line: line)
    }

    /// Milliseconds of the clock that drives consensus (timeouts, leases, suspicion), with full precision. It is
    /// the boot-time clock: monotonic, and, unlike CLOCK_MONOTONIC, it keeps counting while the machine or VM is
    /// suspended. A leader suspended past its lease must see the lease as expired when it resumes.
    public static func preciseNowMs() -> Int64 { read(CLOCK_BOOTTIME) / 1_000_000 }

    /// Microseconds of the same clock, for latency histograms.
    public static func preciseNowMicros() -> Int64 { read(CLOCK_BOOTTIME) / 1000 }

    private static func read(_ clock: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Unix wall-clock milliseconds.
    public static func wallClockMs() -> Int64 { read(CLOCK_REALTIME) / 1_000_000 }
}

/// A one-shot or repeating timer on a loop. The handler runs on the loop thread.
///
/// A one-shot timer is moved later and cancelled without telling libevent: a session re-arms its timeout on every
/// request and cancels it on every answer, and each `event_add`/`event_del` took the base's lock and reordered its
/// timer heap. The libevent event stays armed for the earliest deadline asked for; when it fires, a deadline
/// that moved later arms it again for the rest, and a cancelled one does nothing. Only an earlier deadline
/// re-adds the event. So the handler runs at the latest deadline set, as before, and never for a cancelled one.
public final class Timer {
    private var event: OpaquePointer?
    private var handler: (() -> Void)?
    private var repeatingIntervalMs: Int64?
    /// When a one-shot schedule is due (monotonic microseconds); nil when none is scheduled.
    private var deadlineMicros: Int64?
    /// When the libevent event will fire (monotonic microseconds), at or before `deadlineMicros`; nil when the
    /// event is not armed.
    private var armedForMicros: Int64?

    private static let fire: event_callback_fn = { _, _, context in
        guard let context else { return }
        let timer = Unmanaged<Timer>.fromOpaque(context).takeUnretainedValue()
        timer.onFire()
    }

    /// Creates a stopped timer. `handler` may capture what it needs; call `cancel()` to break cycles.
    public init(loop: EventLoop, priority: EventPriority = .normal, handler: @escaping () -> Void) {
        self.handler = handler
        self.event = tandem_evtimer_new(loop.base, Timer.fire, Unmanaged.passUnretained(self).toOpaque())
        precondition(event != nil, "evtimer_new failed: out of memory")
        event_priority_set(event, priority.rawValue)
    }

    deinit {
        if let event { event_free(event) }
    }

    /// Fires once after `delayMs`, replacing any earlier schedule.
    public func schedule(afterMs delayMs: Int64) {
        repeatingIntervalMs = nil
        let now = Self.monotonicMicros()
        let deadline = now + max(0, delayMs) * 1000
        deadlineMicros = deadline
        if let armed = armedForMicros, armed <= deadline { return }  // It fires first, then arms for the rest.
        arm(micros: deadline - now, until: deadline)
    }

    /// Fires every `intervalMs`, starting one interval from now.
    public func scheduleRepeating(everyMs intervalMs: Int64) {
        precondition(intervalMs > 0, "a repeating timer needs a positive interval")
        repeatingIntervalMs = intervalMs
        deadlineMicros = nil
        arm(micros: intervalMs * 1000, until: Self.monotonicMicros() + intervalMs * 1000)
    }

    public var isScheduled: Bool { repeatingIntervalMs != nil || deadlineMicros != nil }

    /// Stops the timer: its handler does not run until it is scheduled again. The libevent event may stay armed
    /// (see the type's comment) and then fires once with nothing to do.
    public func cancel() {
        repeatingIntervalMs = nil
        deadlineMicros = nil
    }

    /// Cancels and drops the handler, so that anything it captured is released.
    public func invalidate() {
        cancel()
        if let event { _ = tandem_evtimer_del(event) }
        armedForMicros = nil
        handler = nil
    }

    private func arm(micros: Int64, until deadline: Int64) {
        guard let event else { return }
        _ = tandem_evtimer_add(event, max(0, micros))
        armedForMicros = deadline
    }

    private func onFire() {
        armedForMicros = nil
        if let interval = repeatingIntervalMs {
            arm(micros: interval * 1000, until: Self.monotonicMicros() + interval * 1000)
            handler?()
            return
        }
        guard let deadline = deadlineMicros else { return }  // Cancelled after it was armed.
        let now = Self.monotonicMicros()
        if now < deadline {
            arm(micros: deadline - now, until: deadline)  // Moved later after it was armed.
            return
        }
        deadlineMicros = nil
        handler?()
    }

    /// The clock libevent's timers run on, in microseconds: CLOCK_MONOTONIC_COARSE (libevent 2.1 picks it unless a
    /// base asks for precise timers). On the same clock, a deadline the event was armed for has passed when it fires.
    private static func monotonicMicros() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &now)
        return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
    }
}

/// Runs a handler on the loop thread when a POSIX signal arrives.
public final class SignalWatcher {
    private var event: OpaquePointer?
    private var handler: ((Int32) -> Void)?
    private let signalNumber: Int32

    private static let fire: event_callback_fn = { signalNumber, _, context in
        guard let context else { return }
        let watcher = Unmanaged<SignalWatcher>.fromOpaque(context).takeUnretainedValue()
        watcher.handler?(signalNumber)
    }

    public init(loop: EventLoop, signal signalNumber: Int32, handler: @escaping (Int32) -> Void) {
        self.signalNumber = signalNumber
        self.handler = handler
        self.event = tandem_evsignal_new(
            loop.base, signalNumber, SignalWatcher.fire, Unmanaged.passUnretained(self).toOpaque())
        precondition(event != nil, "evsignal_new failed: out of memory")
        event_priority_set(event, EventPriority.control.rawValue)
        event_add(event, nil)
    }

    public func invalidate() {
        if let event {
            event_del(event)
            event_free(event)
        }
        event = nil
        handler = nil
    }

    deinit { invalidate() }
}

/// Ignores SIGPIPE process-wide: a peer closing its socket must be an error on that connection, not our death.
public func ignoreBrokenPipeSignals() {
    signal(SIGPIPE, SIG_IGN)
}

/// Wakes a loop from another thread: `notify()` may be called from any thread; the handler runs on the loop's
/// thread, once per wakeup (several notifications before it runs coalesce into one call, so the handler must
/// drain whatever queue it serves).
public final class LoopWakeup: @unchecked Sendable {
    // Safety: `event` is created and freed on the loop thread; `event_active` is thread-safe once
    // evthread_use_pthreads() ran (EventLoop.init guarantees that); `handler` is only touched on the loop thread.
    private var event: OpaquePointer?
    private var handler: (() -> Void)?

    private static let fire: event_callback_fn = { _, _, context in
        guard let context else { return }
        Unmanaged<LoopWakeup>.fromOpaque(context).takeUnretainedValue().handler?()
    }

    public init(loop: EventLoop, priority: EventPriority = .normal, handler: @escaping () -> Void) {
        self.handler = handler
        self.event = event_new(loop.base, -1, 0, LoopWakeup.fire, Unmanaged.passUnretained(self).toOpaque())
        precondition(event != nil, "event_new failed: out of memory")
        event_priority_set(event, priority.rawValue)
    }

    /// Thread-safe.
    public func notify() {
        if let event { event_active(event, 0, 0) }
    }

    /// Loop thread only.
    public func invalidate() {
        if let event {
            event_del(event)
            event_free(event)
        }
        event = nil
        handler = nil
    }

    deinit { invalidate() }
}
