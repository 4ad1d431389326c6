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
    /// Where this loop's repeating timers fire within their period: every one fires at `phase + k * interval`
    /// (CLOCK_MONOTONIC microseconds), so that timers whose intervals divide one another (the 10 ms tick, a 50 ms
    /// sweep, a 1 s flush) fire in the same wake-up instead of each in its own. Random per loop, so that the
    /// processes of one machine do not all wake at the same instant.
    let repeatingTimerPhaseMicros = Int64.random(in: 0..<1_000_000)
    /// The kernel timers of the repeating timers, one per priority (see `TimerCadence`); empty when the kernel
    /// refused one, and repeating timers then run on libevent's timers.
    private var cadences: [TimerCadence] = []
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
        // Made now, before the loop has any socket, and kept to its end (see `TimerCadence` for why).
        let made = [EventPriority.control, .normal].compactMap {
            TimerCadence(base: base, priority: $0, phaseMicros: repeatingTimerPhaseMicros)
        }
        if made.count == 2 {
            cadences = made
        } else {
            made.forEach { $0.close() }
        }
    }

    deinit {
        for cadence in cadences { cadence.close() }
        for batch in pendingFlushes { for connection in batch { connection.release() } }
        for event in flushEvents { event_free(event) }
        if let dns { evdns_base_free(dns, 0) }
        event_base_free(base)
    }

    /// The cadence of the repeating timers of `priority`; nil when the kernel refused a timer.
    func cadence(for priority: EventPriority) -> TimerCadence? {
        cadences.isEmpty ? nil : cadences[Int(priority.rawValue)]
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
///
/// A repeating timer runs on its loop's cadence (`TimerCadence`, a kernel timer), not on a libevent timer re-armed
/// at each firing: libevent's timers run on CLOCK_MONOTONIC_COARSE, which lags the clock `epoll_wait` sleeps on by
/// up to a jiffy, so that woken when the 10 ms were up, the loop found its timer not yet due and slept again for
/// 1-2 ms, two wake-ups per tick, and the re-arming from the late firing stretched the tick to ~12.6 ms. If the
/// kernel refuses a timer (out of file descriptors), repeating timers run on libevent's clock as before.
public final class Timer {
    private var event: OpaquePointer?
    private var handler: (() -> Void)?
    private var repeatingIntervalMs: Int64?
    /// When a one-shot schedule is due (monotonic microseconds); nil when none is scheduled.
    private var deadlineMicros: Int64?
    /// When the libevent event will fire (monotonic microseconds), at or before `deadlineMicros`; nil when the
    /// event is not armed.
    private var armedForMicros: Int64?
    private weak var loop: EventLoop?
    private let priority: EventPriority
    /// The cadence this timer repeats on, while it does (nil for one-shots and on libevent's fallback).
    private var cadence: TimerCadence?
    /// On the cadence: the interval and the next instant due (CLOCK_MONOTONIC microseconds).
    var cadenceIntervalMicros: Int64 = 0
    var cadenceDueMicros: Int64 = 0

    private static let fire: event_callback_fn = { _, _, context in
        guard let context else { return }
        let timer = Unmanaged<Timer>.fromOpaque(context).takeUnretainedValue()
        timer.onFire()
    }

    /// Creates a stopped timer. `handler` may capture what it needs; call `cancel()` to break cycles.
    public init(loop: EventLoop, priority: EventPriority = .normal, handler: @escaping () -> Void) {
        self.handler = handler
        self.loop = loop
        self.priority = priority
        self.event = tandem_evtimer_new(loop.base, Timer.fire, Unmanaged.passUnretained(self).toOpaque())
        precondition(event != nil, "evtimer_new failed: out of memory")
        event_priority_set(event, priority.rawValue)
    }

    deinit {
        leaveCadence()
        if let event { event_free(event) }
    }

    /// Fires once after `delayMs`, replacing any earlier schedule.
    public func schedule(afterMs delayMs: Int64) {
        leaveCadence()
        repeatingIntervalMs = nil
        let now = Self.monotonicMicros()
        let deadline = now + max(0, delayMs) * 1000
        deadlineMicros = deadline
        if let armed = armedForMicros, armed <= deadline { return }  // It fires first, then arms for the rest.
        arm(micros: deadline - now, until: deadline)
    }

    /// Fires every `intervalMs` on the loop's cadence (see `TimerCadence`): first within one interval from now,
    /// then every interval.
    public func scheduleRepeating(everyMs intervalMs: Int64) {
        precondition(intervalMs > 0, "a repeating timer needs a positive interval")
        leaveCadence()
        repeatingIntervalMs = intervalMs
        deadlineMicros = nil
        if let cadence = loop?.cadence(for: priority) {
            self.cadence = cadence
            cadence.join(self, intervalMicros: intervalMs * 1000)
            return
        }
        arm(micros: intervalMs * 1000, until: Self.monotonicMicros() + intervalMs * 1000)
    }

    public var isScheduled: Bool { repeatingIntervalMs != nil || deadlineMicros != nil }

    /// Stops the timer: its handler does not run until it is scheduled again. The libevent event may stay armed
    /// (see the type's comment) and then fires once with nothing to do.
    public func cancel() {
        leaveCadence()
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

    /// Called by the cadence when this timer is due.
    func cadenceFired() {
        handler?()
    }

    private func leaveCadence() {
        cadence?.leave(self)
        cadence = nil
    }

    private func arm(micros: Int64, until deadline: Int64) {
        guard let event else { return }
        _ = tandem_evtimer_add(event, max(0, micros))
        armedForMicros = deadline
    }

    private func onFire() {
        armedForMicros = nil
        if let interval = repeatingIntervalMs {
            guard cadence == nil else { return }  // A one-shot's leftover firing; the cadence repeats this one.
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

/// The repeating timers of one loop and priority, on one kernel timer (timerfd, CLOCK_MONOTONIC).
///
/// Every repeating timer is due at `phase + k * interval`, with one phase per loop (`EventLoop`'s
/// `repeatingTimerPhaseMicros`), and the kernel timer is armed for the earliest instant due. So the kernel wakes the
/// loop once per period, on time, and timers whose intervals divide one another (the 10 ms tick, a 50 ms sweep, the
/// 250 ms keepalive, a 1 s flush) are due in the same wake-up instead of each in its own. A timer due several
/// times over while the loop was busy runs once, then keeps its cadence.
///
/// The descriptor is made with the loop, before any socket, and closed with it. A first version gave each timer
/// a descriptor of its own, closed when the timer was freed, and a transport test that races two dials failed
/// every time: a descriptor number closed and taken again by a socket in the same loop turn does not mix with the
/// epoll changelist (`EventLoop.init`), which applies one turn's registrations and removals together. The read
/// event is added only while a timer is on the cadence, so that a loop with nothing else to do still returns from
/// `run()`.
final class TimerCadence {
    private let descriptor: Int32
    private let event: OpaquePointer
    private let phaseMicros: Int64
    /// The timers on the cadence, unretained: each leaves when cancelled, rescheduled or freed.
    private var members: [Unmanaged<Timer>] = []
    /// The timers due in the wake-up being handled whose handlers have not run yet, unretained too: a timer that
    /// leaves (cancelled, rescheduled or freed by an earlier handler) leaves this list as well, so its handler does
    /// not run.
    private var firing: [Unmanaged<Timer>] = []
    /// The instant the kernel timer is armed for; nil when disarmed.
    private var armedForMicros: Int64?
    private var eventAdded = false
    private var closed = false

    private static let fire: event_callback_fn = { _, _, context in
        guard let context else { return }
        Unmanaged<TimerCadence>.fromOpaque(context)._withUnsafeGuaranteedRef { $0.onFire() }
    }

    /// Nil when the kernel refuses a timer or libevent an event.
    init?(base: OpaquePointer, priority: EventPriority, phaseMicros: Int64) {
        let descriptor = tandem_timerfd_open()
        guard descriptor >= 0 else { return nil }
        self.descriptor = descriptor
        self.phaseMicros = phaseMicros
        guard let made = event_new(base, descriptor, tandem_ev_read_persist(), nil, nil) else {
            Glibc.close(descriptor)
            return nil
        }
        self.event = made
        // The context can only be given once self exists: assign the callback now.
        event_assign(
            made, base, descriptor, tandem_ev_read_persist(), TimerCadence.fire,
            Unmanaged.passUnretained(self).toOpaque())
        event_priority_set(made, priority.rawValue)
    }

    /// Puts `timer` on the cadence, first due within one interval from now.
    func join(_ timer: Timer, intervalMicros: Int64) {
        guard !closed else { return }
        timer.cadenceIntervalMicros = intervalMicros
        timer.cadenceDueMicros = Self.nextCadenceInstant(
            afterMicros: Self.nowMicros(), intervalMicros: intervalMicros, phaseMicros: phaseMicros)
        members.append(Unmanaged.passUnretained(timer))
        if let armed = armedForMicros, armed <= timer.cadenceDueMicros { return }
        rearm()
    }

    /// Takes `timer` off the cadence. The kernel timer stays armed unless no timer is left: a wake-up for a timer
    /// that left re-arms for the others.
    func leave(_ timer: Timer) {
        let identity = Unmanaged.passUnretained(timer).toOpaque()
        if let index = firing.firstIndex(where: { $0.toOpaque() == identity }) { firing.remove(at: index) }
        guard let index = members.firstIndex(where: { $0.toOpaque() == identity }) else { return }
        members.remove(at: index)
        if members.isEmpty { rearm() }
    }

    /// At the loop's end.
    func close() {
        guard !closed else { return }
        closed = true
        members.removeAll()
        event_del(event)
        event_free(event)
        Glibc.close(descriptor)
    }

    private func onFire() {
        _ = tandem_timerfd_take(descriptor)
        armedForMicros = nil
        let now = Self.nowMicros()
        for member in members {
            let timer = member.takeUnretainedValue()
            guard timer.cadenceDueMicros <= now else { continue }
            timer.cadenceDueMicros = Self.nextCadenceInstant(
                afterMicros: now, intervalMicros: timer.cadenceIntervalMicros, phaseMicros: phaseMicros)
            firing.append(member)
        }
        while !firing.isEmpty {
            // Still on the cadence, so alive; the strong reference holds it for its own handler's duration.
            let timer = firing.removeFirst().takeUnretainedValue()
            timer.cadenceFired()
        }
        if armedForMicros == nil { rearm() }
    }

    /// Arms the kernel timer for the earliest instant due, or disarms it and removes the read event when no timer
    /// is left.
    private func rearm() {
        guard !closed else { return }
        guard let earliest = members.lazy.map({ $0.takeUnretainedValue().cadenceDueMicros }).min() else {
            if armedForMicros != nil { _ = tandem_timerfd_disarm(descriptor) }
            armedForMicros = nil
            if eventAdded { event_del(event) }
            eventAdded = false
            return
        }
        if !eventAdded {
            event_add(event, nil)
            eventAdded = true
        }
        if armedForMicros == earliest { return }
        // A due instant already past (a handler ran long) expires at once; the kernel accepts it.
        precondition(tandem_timerfd_arm(descriptor, earliest, 0) == 0, "timerfd_settime failed on a valid timer")
        armedForMicros = earliest
    }

    /// The first instant strictly after `now` of the form `phase + k * interval` (k any integer).
    static func nextCadenceInstant(afterMicros now: Int64, intervalMicros: Int64, phaseMicros: Int64) -> Int64 {
        precondition(intervalMicros > 0, "a cadence needs a positive interval")
        let offset = now - phaseMicros
        var periods = offset / intervalMicros
        if offset < 0 && offset % intervalMicros != 0 { periods -= 1 }  // Floor, not truncation toward zero.
        return phaseMicros + (periods + 1) * intervalMicros
    }

    /// The clock the kernel timer runs on, in microseconds: CLOCK_MONOTONIC.
    private static func nowMicros() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
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
