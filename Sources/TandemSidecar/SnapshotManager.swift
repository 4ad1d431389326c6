import Dispatch
import Glibc
import Logging
import Synchronization
import TandemConfig
import TandemConsensus
import TandemNet
import TandemNode
import TandemStorage

/// The sidecar's part of a snapshot file's payload, before the app's own bytes:
/// `"TSP1" | tandemStateBytes u64 LE | Tandem's state | appIncluded u8 | the app's state, to the end`.
/// Tandem's state (`TandemSnapshotState`) is what the app cannot know: the idempotency table, the apply digest, the
/// applied index, term and Tandem-Time. A snapshot without the app's state (no save hook) still carries it, so that a
/// compacted log loses no idempotency decision; it cannot rebuild another replica.
enum SnapshotPayload {
    static let magic: [UInt8] = Array("TSP1".utf8)
    /// Tandem's own state is small next to the app's; this bounds what a damaged or hostile file can make us read.
    static let maxTandemStateBytes: UInt64 = 256 << 20

    static func header(tandemState: [UInt8], appIncluded: Bool) -> [UInt8] {
        var bytes = magic
        var length = UInt64(tandemState.count).littleEndian
        withUnsafeBytes(of: &length) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: tandemState)
        bytes.append(appIncluded ? 1 : 0)
        return bytes
    }

    struct Parsed {
        var tandemState: [UInt8]
        var appIncluded: Bool
        /// Where the app's state starts, from the start of the payload.
        var appOffset: UInt64
    }

    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    static func parse(_ reader: SnapshotReader, payloadBytes: UInt64) throws -> Parsed {
        let fixed = try reader.readPayload(at: 0, maxBytes: 12)
        guard fixed.count == 12, Array(fixed[0..<4]) == magic else {
            throw Malformed(description: "not a Tandem snapshot payload")
        }
        var length: UInt64 = 0
        for k in 0..<8 { length |= UInt64(fixed[4 + k]) << (8 * UInt64(k)) }
        guard length <= maxTandemStateBytes, 12 + length + 1 <= payloadBytes else {
            throw Malformed(description: "Tandem's state section is \(length) bytes in a \(payloadBytes)-byte payload")
        }
        var state: [UInt8] = []
        state.reserveCapacity(Int(length))
        while UInt64(state.count) < length {
            let chunk = try reader.readPayload(
                at: 12 + UInt64(state.count), maxBytes: Int(min(length - UInt64(state.count), 1 << 20)))
            guard !chunk.isEmpty else { throw Malformed(description: "Tandem's state section is cut short") }
            state.append(contentsOf: chunk)
        }
        let flag = try reader.readPayload(at: 12 + length, maxBytes: 1)
        guard flag.count == 1, flag[0] <= 1 else { throw Malformed(description: "bad app-state flag") }
        return Parsed(tandemState: state, appIncluded: flag[0] == 1, appOffset: 12 + length + 1)
    }
}

/// Carries the save hook's bytes to the snapshot file off the loop thread: they are gathered into 1 MiB pieces and
/// written, in order, by the runtime's snapshot worker, so a disk that throttles writers stalls that thread and not
/// the loop (whose heartbeats keep a leader leading). At most `maxQueuedBytes` wait to be written: beyond that the
/// loop thread waits for the worker, which bounds memory by slowing the hook down to the disk's pace.
final class SnapshotFileSink: @unchecked Sendable {
    // Safety: `piece` is touched only on the loop thread; `shared` is guarded by its mutex; `writer` only on the
    // worker thread once the first piece is queued.
    private let writer: SnapshotWriter
    private unowned let runtime: ReplicaRuntime
    private var piece: [UInt8] = []
    private let shared = Mutex((queuedBytes: 0, failure: WALError?.none))
    private let drained = DispatchSemaphore(value: 0)
    static let pieceBytes = 1 << 20
    static let maxQueuedBytes = 32 << 20

    init(writer: SnapshotWriter, runtime: ReplicaRuntime) {
        self.writer = writer
        self.runtime = runtime
        piece.reserveCapacity(Self.pieceBytes)
    }

    /// The first write that failed, if any (read by the job that finishes the file, after every write).
    var failure: WALError? { shared.withLock { $0.failure } }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        if let failure { throw failure }
        piece.append(contentsOf: bytes)
        if piece.count >= Self.pieceBytes { flush() }
    }

    /// Queues what is gathered (call once the hook is done, before finishing the file).
    func flush() {
        guard !piece.isEmpty else { return }
        let data = piece
        piece = []
        piece.reserveCapacity(Self.pieceBytes)
        while shared.withLock({ $0.queuedBytes }) + data.count > Self.maxQueuedBytes {
            _ = drained.wait(timeout: .now() + .milliseconds(50))
        }
        shared.withLock { $0.queuedBytes += data.count }
        runtime.runInBackground({ [self] in
            if shared.withLock({ $0.failure }) == nil {
                do throws(WALError) { try writer.write(data) } catch {
                    shared.withLock { $0.failure = error }
                }
            }
            shared.withLock { $0.queuedBytes -= data.count }
            drained.signal()
        }) { _ in }
    }
}

/// Takes the local snapshots, restores the app from one, and decides how far the log may be compacted.
///
/// A snapshot is taken at an applied index with the applier paused (the app's state is exactly that index's), so
/// apply waits for the app's save hook, but commits do not: writes keep being replicated meanwhile. The file is
/// written on the loop thread as the hook streams it and finished (fsync, rename) off it.
final class SnapshotManager {
    enum Phase: Equatable {
        case idle
        case taking(index: UInt64)
        case restoring(index: UInt64)
        /// The state-digest hook runs at `index` (`TANDEM_STATE_DIGEST`).
        case digesting(index: UInt64)
        /// A restore failed: the app's state is unknown, so nothing is applied until a restore succeeds.
        case restoreFailed(reason: String)
    }

    private unowned let loop: EventLoop
    private unowned let runtime: ReplicaRuntime
    private unowned let applier: Applier
    private let hooks: AppHookRunner
    private let settings: WritePathSettings
    private let log: Logger
    private(set) var phase: Phase = .idle
    private var lastSnapshotIndex: UInt64
    private var appliedBytesAtLastSnapshot: UInt64 = 0
    /// The lowest applied index every other member reported, when all did (compaction without hooks).
    var othersAppliedIndex: () -> UInt64? = { nil }
    private(set) var taken: UInt64 = 0
    private(set) var takeFailures: UInt64 = 0
    private(set) var restores: UInt64 = 0
    private(set) var restoreFailures: UInt64 = 0
    private(set) var lastTakeMs: Int64 = 0
    /// How the take, state digest or restore whose pause still waits for the entries in flight gives up
    /// (`abandonPauseForLostApp`). Set just before that pause is asked for, cleared the moment it settles: while set,
    /// the applier's pause is waiting.
    private var onPauseAbandoned: (() -> Void)?

    init(
        loop: EventLoop, runtime: ReplicaRuntime, applier: Applier, upstreamHost: String, upstreamPort: UInt16,
        settings: WritePathSettings, log: Logger
    ) {
        self.loop = loop
        self.runtime = runtime
        self.applier = applier
        self.settings = settings
        self.log = log
        hooks = AppHookRunner(
            loop: loop, upstreamHost: upstreamHost, upstreamPort: upstreamPort, timeoutMs: settings.snapshotTimeoutMs,
            log: log)
        lastSnapshotIndex = runtime.latestSnapshot?.id.index ?? 0
    }

    /// The app's state can be saved and restored: snapshots can rebuild this replica and others.
    var hasAppHooks: Bool { settings.snapshotSave != nil && settings.snapshotRestore != nil }

    /// An in-memory app without hooks: the log is its only copy of the state, so it is never compacted.
    var mayCompact: Bool { hasAppHooks || settings.appState == .durable }

    func stop() { hooks.cancelAll() }

    /// Called after every applied entry: takes a snapshot when the cadence says so.
    func noteApplied() {
        guard phase == .idle, mayCompact, runtime.snapshots != nil, !applier.isPaused else { return }
        let index = applier.appliedIndex
        guard index > lastSnapshotIndex else { return }
        switch settings.snapshotCadence {
        case .entries(let count): guard index - lastSnapshotIndex >= count else { return }
        case .bytes(let bytes): guard applier.appliedBytes &- appliedBytesAtLastSnapshot >= bytes else { return }
        }
        take()
    }

    /// Takes a snapshot at the applied index now (after the entry in flight).
    func take(completion: ((SnapshotInfo?) -> Void)? = nil) {
        guard phase == .idle, let store = runtime.snapshots else {
            completion?(nil)
            return
        }
        write(into: store, asCopy: false, completion: completion)
    }

    /// The directory where a replica about to be repaired keeps its diverged state (`TANDEM_DIVERGENCE_ACTION`).
    var divergedCopyDirectory: String { runtime.config.dataDirectory + "/diverged" }

    /// Saves the app's state as it is now, in the snapshot file format, in `divergedCopyDirectory`: not a snapshot
    /// of this node (never sent, restored from or compacted to), a copy kept for an operator before a repair
    /// replaces the state. The newest copy is kept. Needs the save hook; nil when the copy could not be written.
    func saveDivergedCopy(completion: @escaping (SnapshotInfo?) -> Void) {
        guard phase == .idle, settings.snapshotSave != nil else {
            completion(nil)
            return
        }
        let store: SnapshotStore
        do { store = try SnapshotStore(directory: divergedCopyDirectory) } catch {
            log.error("cannot open the directory for the diverged copy", metadata: ["error": "\(error)"])
            completion(nil)
            return
        }
        write(into: store, asCopy: true) { info in
            if info != nil { store.prune(keep: 1, exceptReceiving: nil) }
            completion(info)
        }
    }

    private func write(into store: SnapshotStore, asCopy: Bool, completion: ((SnapshotInfo?) -> Void)?) {
        phase = .taking(index: applier.appliedIndex)
        let started = EventLoop.preciseNowMs()
        onPauseAbandoned = { [unowned self] in
            failTake(
                index: applier.appliedIndex, reason: "the app restarted while the snapshot waited for it",
                asCopy: asCopy, completion: completion)
        }
        applier.pause { [unowned self] in
            onPauseAbandoned = nil
            let index = applier.appliedIndex
            let id = SnapshotID(index: index, term: applier.appliedTerm)
            let state = TandemSnapshotState(
                appliedIndex: index, appliedTerm: applier.appliedTerm, timeMs: applier.appliedTimeMs,
                idempotency: applier.idempotency, digest: ApplyDigestState(applier.digest))
            let writer: SnapshotWriter
            do {
                writer = try store.beginWrite(id: id)
                try writer.write(
                    SnapshotPayload.header(tandemState: state.encoded(), appIncluded: settings.snapshotSave != nil))
            } catch {
                applier.resumeApplying()
                failTake(index: index, reason: "\(error)", asCopy: asCopy, completion: completion)
                return
            }
            guard let hook = settings.snapshotSave else {
                applier.resumeApplying()
                finishTake(writer, index: index, started: started, asCopy: asCopy, completion: completion)
                return
            }
            let sink = SnapshotFileSink(writer: writer, runtime: runtime)
            hooks.save(hook, into: { bytes in try sink.write(bytes) }) { [unowned self] result in
                applier.resumeApplying()
                sink.flush()
                switch result {
                case .success:
                    finishTake(
                        writer, index: index, started: started, sink: sink, asCopy: asCopy, completion: completion)
                case .failure(let error):
                    // After the writes still queued (the worker runs jobs in order).
                    runtime.runInBackground({ writer.abort() }) { _ in }
                    failTake(
                        index: index, reason: "the save hook failed: \(error)", asCopy: asCopy, completion: completion)
                }
            }
        }
    }

    private func finishTake(
        _ writer: SnapshotWriter, index: UInt64, started: Int64, sink: SnapshotFileSink? = nil, asCopy: Bool,
        completion: ((SnapshotInfo?) -> Void)?
    ) {
        let appliedBytes = applier.appliedBytes
        // Queued after every write of the sink, on the same worker: it sees them all, or the first failure.
        runtime.runInBackground({ () -> Result<SnapshotInfo, WALError> in
            if let failure = sink?.failure {
                writer.abort()
                return .failure(failure)
            }
            do throws(WALError) { return .success(try writer.finish()) } catch { return .failure(error) }
        }) { [unowned self] result in
            switch result {
            case .failure(let error):
                failTake(index: index, reason: "\(error)", asCopy: asCopy, completion: completion)
            case .success(let info) where asCopy:
                phase = .idle
                log.warning(
                    "the diverged app state was saved aside",
                    metadata: ["index": "\(index)", "bytes": "\(info.fileBytes)", "path": "\(info.path)"])
                completion?(info)
            case .success(let info):
                phase = .idle
                taken += 1
                lastSnapshotIndex = index
                appliedBytesAtLastSnapshot = appliedBytes
                lastTakeMs = EventLoop.preciseNowMs() - started
                let through = compactionPoint(snapshotIndex: index)
                log.info(
                    "snapshot taken",
                    metadata: [
                        "index": "\(index)", "bytes": "\(info.fileBytes)", "ms": "\(lastTakeMs)",
                        "compactThrough": "\(through)", "appState": "\(settings.snapshotSave != nil)",
                    ])
                runtime.snapshotTaken(info, compactThrough: through)
                completion?(info)
            }
        }
    }

    private func failTake(index: UInt64, reason: String, asCopy: Bool, completion: ((SnapshotInfo?) -> Void)?) {
        phase = .idle
        if asCopy {
            log.error("the diverged app state could not be saved aside", metadata: ["reason": "\(reason)"])
            completion?(nil)
            return
        }
        takeFailures += 1
        // The next attempt waits for another cadence's worth of entries rather than hammering a failing hook.
        lastSnapshotIndex = index
        appliedBytesAtLastSnapshot = applier.appliedBytes
        log.error("snapshot failed: the log is not compacted", metadata: ["index": "\(index)", "reason": "\(reason)"])
        completion?(nil)
    }

    /// How far the log may be dropped once a snapshot at `snapshotIndex` exists. With the app's state in it, slow
    /// followers are rebuilt from it, so `TANDEM_LOG_RETAIN` entries are kept behind it for them. Without it,
    /// nobody can be rebuilt: only what every member has applied is dropped.
    func compactionPoint(snapshotIndex: UInt64) -> UInt64 {
        if settings.snapshotSave != nil {
            return snapshotIndex > settings.logRetainEntries ? snapshotIndex - settings.logRetainEntries : 0
        }
        guard settings.appState == .durable else { return 0 }
        if runtime.config.peers.isEmpty { return snapshotIndex }
        guard let others = othersAppliedIndex() else { return 0 }
        return min(snapshotIndex, others)
    }

    // MARK: state digests

    /// Runs the state-digest hook at the applied index now (after the entry in flight), with the applier paused so
    /// that the app's state is exactly that index's, and hands back a 64-bit FNV-1a hash of its output (nil when
    /// the hook failed, or when a snapshot is being taken or restored: that index then goes unjudged).
    func stateDigest(_ hook: AppHook, completion: @escaping (_ index: UInt64, _ digest: UInt64?) -> Void) {
        guard phase == .idle, !applier.isPaused else {
            completion(applier.appliedIndex, nil)
            return
        }
        phase = .digesting(index: applier.appliedIndex)
        onPauseAbandoned = { [unowned self] in
            phase = .idle
            completion(applier.appliedIndex, nil)
        }
        applier.pause { [unowned self] in
            onPauseAbandoned = nil
            let index = applier.appliedIndex
            var hash = ApplyDigest.seed
            hooks.save(
                hook,
                into: { bytes in
                    for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
                }
            ) { [unowned self] result in
                phase = .idle
                applier.resumeApplying()
                switch result {
                case .success: completion(index, hash)
                case .failure(let error):
                    log.warning("the state-digest hook failed", metadata: ["index": "\(index)", "error": "\(error)"])
                    completion(index, nil)
                }
            }
        }
    }

    /// The in-memory app died while a take, a state digest or a restore waited for the entries in flight to it:
    /// their answers cannot come, so that pause would never settle, and the app could never be rebuilt (a restore
    /// waits for the take to end). The take gives up (a failed take: the next waits for the cadence), the digest
    /// leaves its index unjudged, the restore reports that it did not happen (its caller asks again; the app was not
    /// touched), and the applier is free to forget its window. Whether one gave up.
    @discardableResult
    func abandonPauseForLostApp() -> Bool {
        guard let abandoned = onPauseAbandoned else { return false }
        onPauseAbandoned = nil
        applier.withdrawPause()
        log.warning(
            "the app restarted while a snapshot, digest or restore waited for it: that one gives up",
            metadata: ["phase": "\(phase)"])
        abandoned()
        return true
    }

    // MARK: restoring

    /// A restore that worked: Tandem's state saved in the snapshot, and the index the app had applied when its state
    /// was replaced. The entries after the snapshot up to that index reached the app once and are replayed; it is
    /// read after the pause settled, because entries in flight when the restore was asked for are answered while
    /// it waits for them.
    struct Restored {
        let state: TandemSnapshotState
        let replacedAppliedIndex: UInt64
    }

    /// Replaces the app's state with `info`'s and Tandem's with the one saved beside it. The applier is paused
    /// meanwhile and resumes from the snapshot's index; `completion` hears whether it worked. A failed restore
    /// leaves the app's state unknown: the applier stays paused until a later restore succeeds.
    func restore(_ info: SnapshotInfo, completion: @escaping (Result<Restored, RestoreError>) -> Void) {
        switch phase {
        case .idle, .restoreFailed: break
        case .taking, .restoring, .digesting:
            completion(.failure(RestoreError(description: "a snapshot is being taken or restored")))
            return
        }
        phase = .restoring(index: info.id.index)
        let started = EventLoop.preciseNowMs()
        let wasPaused = applier.isPaused
        let begin = { [unowned self] in
            onPauseAbandoned = nil
            do {
                let reader = try SnapshotReader(info)
                let parsed: SnapshotPayload.Parsed
                let state: TandemSnapshotState
                do {
                    parsed = try SnapshotPayload.parse(reader, payloadBytes: info.payloadBytes)
                    state = try TandemSnapshotState.decode(parsed.tandemState)
                } catch {
                    reader.close()
                    throw error
                }
                guard state.appliedIndex == info.id.index else {
                    reader.close()
                    throw RestoreError(
                        description: "the snapshot's state is at \(state.appliedIndex), its file says \(info.id.index)")
                }
                guard parsed.appIncluded, let hook = settings.snapshotRestore else {
                    reader.close()
                    throw RestoreError(
                        description: parsed.appIncluded
                            ? "TANDEM_SNAPSHOT_RESTORE is not set" : "the snapshot carries no app state")
                }
                let descriptor = try reader.payloadDescriptor()
                reader.close()
                guard lseek(descriptor, off_t(parsed.appOffset), SEEK_CUR) >= 0 else {
                    close(descriptor)
                    throw RestoreError(description: "cannot seek in the snapshot: errno \(errno)")
                }
                log.info(
                    "restoring the app from a snapshot",
                    metadata: ["index": "\(info.id.index)", "bytes": "\(info.payloadBytes - parsed.appOffset)"])
                hooks.restore(hook, from: descriptor, length: info.payloadBytes - parsed.appOffset) {
                    [unowned self] result in
                    switch result {
                    case .success:
                        restores += 1
                        phase = .idle
                        let replaced = applier.appliedIndex
                        applier.reset(
                            to: state.appliedIndex, term: state.appliedTerm, timeMs: state.timeMs,
                            idempotency: state.idempotency, digest: ApplyDigest(state.digest))
                        lastSnapshotIndex = max(lastSnapshotIndex, state.appliedIndex)
                        log.info(
                            "app restored from a snapshot",
                            metadata: [
                                "index": "\(info.id.index)", "ms": "\(EventLoop.preciseNowMs() - started)",
                            ])
                        completion(.success(Restored(state: state, replacedAppliedIndex: replaced)))
                    case .failure(let error):
                        failRestore("the restore hook failed: \(error)", completion: completion)
                    }
                }
            } catch {
                failRestore("\(error)", completion: completion)
            }
        }
        if wasPaused {
            begin()
        } else {
            // Nothing touched the app yet: if it dies while the pause waits, the restore just did not happen.
            onPauseAbandoned = { [unowned self] in
                phase = .idle
                completion(.failure(RestoreError(description: "the app restarted before the restore could begin")))
            }
            applier.pause(begin)
        }
    }

    /// Resumes applying after a successful restore (the caller first moves the runtime and queues on).
    func resumeAfterRestore() {
        if applier.isPaused { applier.resumeApplying() }
    }

    private func failRestore(
        _ reason: String, completion: @escaping (Result<Restored, RestoreError>) -> Void
    ) {
        restoreFailures += 1
        phase = .restoreFailed(reason: reason)
        log.error("restoring the app from a snapshot failed", metadata: ["reason": "\(reason)"])
        completion(.failure(RestoreError(description: reason)))
    }

    struct RestoreError: Error, CustomStringConvertible {
        var description: String
    }

    /// Tandem's state saved in a snapshot, without touching the app (a durable app's restart: the idempotency
    /// table as of the snapshot, then the log after it).
    static func readTandemState(_ info: SnapshotInfo) -> TandemSnapshotState? {
        guard let reader = try? SnapshotReader(info) else { return nil }
        defer { reader.close() }
        guard let parsed = try? SnapshotPayload.parse(reader, payloadBytes: info.payloadBytes) else { return nil }
        return try? TandemSnapshotState.decode(parsed.tandemState)
    }

    /// Whether a snapshot carries the app's state (only such a snapshot can rebuild another replica).
    static func carriesAppState(_ info: SnapshotInfo) -> Bool {
        guard let reader = try? SnapshotReader(info) else { return false }
        defer { reader.close() }
        return (try? SnapshotPayload.parse(reader, payloadBytes: info.payloadBytes))?.appIncluded ?? false
    }
}
