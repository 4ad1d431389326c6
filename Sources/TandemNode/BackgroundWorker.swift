import Foundation
import Synchronization

/// Runs slow file work (reading a whole snapshot to check its CRC, fsyncing a staging file) on a thread of its own,
/// in submission order, and hands each result back on the runtime's thread. It is separate from the WAL's disk
/// thread on purpose: a gigabyte-long verification must never hold back the fsync a write is waiting for.
///
/// The thread starts with the first job and ends when the worker is released after `stop()`. Results are polled by
/// the runtime's clock (`soon`), so the worker needs nothing from the event loop itself and runs in the node
/// simulator too.
final class BackgroundWorker: @unchecked Sendable {
    // Safety: `queue`, `results` and `stopping` are guarded by `state`; `completions` is touched only on the
    // runtime's thread.
    private struct Shared {
        var queue: [@Sendable () -> Any] = []
        var results: [UncheckedBox<Any>] = []
        var stopping = false
        var threadStarted = false
    }
    private let state = Mutex(Shared())
    private let signal = NSCondition()
    private var completions: [(Any) -> Void] = []
    private unowned let clock: NodeClock
    private let name: String
    private var pollTimer: NodeTimer?

    init(name: String, clock: NodeClock) {
        self.name = name
        self.clock = clock
    }

    /// Runs `work` on the worker thread, then `completion` with its result on the runtime's thread.
    func run<Result>(_ work: @escaping @Sendable () -> Result, completion: @escaping (Result) -> Void) {
        clock.assertOnOwnThread()
        completions.append { completion($0 as! Result) }
        let job: @Sendable () -> Any = { work() }
        let startThread = state.withLock { shared -> Bool in
            shared.queue.append(job)
            let start = !shared.threadStarted
            shared.threadStarted = true
            return start
        }
        signal.lock()
        signal.signal()
        signal.unlock()
        if startThread {
            let thread = Thread { [self] in self.runThread() }
            thread.name = name
            thread.start()
        }
        if pollTimer == nil {
            pollTimer = clock.every(ms: 5) { [unowned self] in self.deliver() }
        }
    }

    /// Stops taking work; jobs queued are still run, but their completions are not called.
    func stop() {
        pollTimer?.cancel()
        pollTimer = nil
        completions.removeAll()
        state.withLock { $0.stopping = true }
        signal.lock()
        signal.signal()
        signal.unlock()
    }

    var hasWork: Bool { !completions.isEmpty }

    private func runThread() {
        while true {
            signal.lock()
            var job: (@Sendable () -> Any)?
            var stop = false
            while job == nil && !stop {
                state.withLock { shared in
                    if !shared.queue.isEmpty {
                        job = shared.queue.removeFirst()
                    } else if shared.stopping {
                        stop = true
                    }
                }
                if job == nil && !stop { signal.wait() }
            }
            signal.unlock()
            guard let job else { return }
            let result = UncheckedBox(job())
            state.withLock { $0.results.append(result) }
        }
    }

    private func deliver() {
        let results = state.withLock { shared in
            let taken = shared.results
            shared.results.removeAll()
            return taken
        }
        for result in results where !completions.isEmpty {
            completions.removeFirst()(result.value)
        }
        if completions.isEmpty {
            pollTimer?.cancel()
            pollTimer = nil
        }
    }
}
