import Foundation
import Synchronization
import TandemNet
import TandemStorage

/// One batch of durable work: what a Ready requires on disk before its messages may be sent.
public struct PersistJob: Sendable {
    /// Delete stored entries from this index on before appending (a conflicting suffix).
    public var truncateFrom: UInt64?
    public var entries: [WALEntry] = []
    public var hardState: StoredHardState?
    public var appliedIndex: UInt64?
    /// A new start of the log: `reset` (an installed snapshot replaced the whole log; done first, before this job's
    /// entries) or `compact` (entries through the base are covered by a snapshot; done after this job's sync).
    public var logBase: LogBaseChange?

    public var isEmpty: Bool {
        truncateFrom == nil && entries.isEmpty && hardState == nil && appliedIndex == nil && logBase == nil
    }
}

/// How a persistence job moves the start of the log.
public enum LogBaseChange: Sendable, Equatable {
    /// Entries through the base are dropped; those after it stay.
    case compact(StoredLogBase)
    /// Every entry is dropped; the next one appended follows the base.
    case reset(StoredLogBase)
}

/// What the disk thread reports back for a job.
public struct PersistOutcome: Sendable {
    public var error: WALError?
    public var fsyncMicros: Int64
    public var walBytes: Int64

    public init(error: WALError? = nil, fsyncMicros: Int64 = 0, walBytes: Int64 = 0) {
        self.error = error
        self.fsyncMicros = fsyncMicros
        self.walBytes = walBytes
    }
}

/// Owns the write-ahead log on a thread of its own, so that write(2) and fsync(2) never block the loop.
///
/// Jobs are handled strictly in submission order and at most one is outstanding per submitter (the runtime
/// submits the next Ready only after the previous one completed), which is what makes one fsync cover every
/// entry proposed while the previous fsync ran: group commit without a timer.
final class DiskWorker: @unchecked Sendable {
    // Safety: `wal` is touched only by the worker thread after init; the queues are guarded by `state`;
    // `completions` and `wakeup` are touched only on the loop thread.
    private let wal: WriteAheadLog
    private struct Shared {
        var jobs: [PersistJob] = []
        var results: [PersistOutcome] = []
        var stopping = false
    }
    private let state = Mutex(Shared())
    private let jobReady = NSCondition()
    private var completions: [(PersistOutcome) -> Void] = []
    private var wakeup: LoopWakeup!
    private var thread: Thread?

    init(wal: WriteAheadLog, loop: EventLoop) {
        self.wal = wal
        self.wakeup = LoopWakeup(loop: loop, priority: .normal) { [weak self] in self?.deliverResults() }
    }

    /// Signalled by the worker when it has closed the log and is about to exit.
    private let finished = DispatchSemaphore(value: 0)

    func start() {
        // The thread holds the worker strongly: it must outlive whoever stops it, until the log is closed.
        let thread = Thread { [self] in
            self.runWorker()
            self.finished.signal()
        }
        thread.name = "tandem-disk"
        thread.start()
        self.thread = thread
    }

    /// Loop thread: queues a job; `completion` runs on the loop thread after the job is durable (or failed).
    func submit(_ job: PersistJob, completion: @escaping (PersistOutcome) -> Void) {
        completions.append(completion)
        jobReady.lock()
        state.withLock { $0.jobs.append(job) }
        jobReady.signal()
        jobReady.unlock()
    }

    /// Loop thread: asks the worker to finish its queue and close the log, and waits for that (bounded: a disk
    /// that hangs longer than this is not worth hanging the process for; the log is synced per job anyway).
    func stop() {
        jobReady.lock()
        state.withLock { $0.stopping = true }
        jobReady.signal()
        jobReady.unlock()
        guard thread != nil else { return }
        _ = finished.wait(timeout: .now() + .seconds(5))
        thread = nil
    }

    private func runWorker() {
        while true {
            jobReady.lock()
            var next: PersistJob?
            var stop = false
            while next == nil && !stop {
                state.withLock { shared in
                    if !shared.jobs.isEmpty {
                        next = shared.jobs.removeFirst()
                    } else if shared.stopping {
                        stop = true
                    }
                }
                if next == nil && !stop { jobReady.wait() }
            }
            jobReady.unlock()
            guard let job = next else {
                try? wal.close()
                return
            }
            let outcome = perform(job)
            state.withLock { $0.results.append(outcome) }
            wakeup.notify()
        }
    }

    private func perform(_ job: PersistJob) -> PersistOutcome {
        let start = EventLoop.preciseNowMicros()
        do throws(WALError) {
            if case .reset(let base) = job.logBase { try wal.reset(to: base) }
            if let index = job.truncateFrom, let next = wal.nextIndex, index < next {
                try wal.truncate(from: index)
            }
            if let first = job.entries.first, let next = wal.nextIndex, first.index < next {
                // The new entries replace a conflicting suffix (Raft's log truncation on conflict).
                try wal.truncate(from: first.index)
            }
            if !job.entries.isEmpty { try wal.append(job.entries) }
            if let hardState = job.hardState { try wal.saveHardState(hardState) }
            if let applied = job.appliedIndex { try wal.saveAppliedIndex(applied) }
            try wal.sync()
            if case .compact(let base) = job.logBase { try wal.compact(to: base) }
            return PersistOutcome(
                error: nil, fsyncMicros: EventLoop.preciseNowMicros() - start, walBytes: wal.sizeBytes)
        } catch {
            return PersistOutcome(
                error: error, fsyncMicros: EventLoop.preciseNowMicros() - start, walBytes: wal.sizeBytes)
        }
    }

    private func deliverResults() {
        let results = state.withLock { shared in
            let taken = shared.results
            shared.results.removeAll()
            return taken
        }
        for result in results {
            let completion = completions.removeFirst()
            completion(result)
        }
    }
}
