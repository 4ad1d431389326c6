// TandemStorage: the write-ahead log of one Tandem node.
//
// What it owns: the files of the data directory — segment files of CRC32C-checked records holding log entries,
// truncations, the hard state (term, vote, commit) and the applied index — their group commit (one fsync covers
// every record appended since the previous one) and their recovery after a crash (a torn tail is cut and
// reported; damage anywhere else stops the node with the file and offset).
//
// What counts as a torn tail (the full rule is at the top of Recovery.swift): only the first invalid record of
// the last segment with no valid record after it, and only when it is incomplete (the file ends before its
// length) or, complete but failing its CRC, holds unwritten space (all zeros, or a whole aligned 512-byte sector
// of zeros). A complete final record with non-zero garbage failing its CRC may have been fsynced and acknowledged
// (a vote, an entry), so it is corruption: `open` throws `.corrupt` naming the file and offset.
//
// What it must never do: know the consensus types (the node runtime encodes entries into payload bytes),
// acknowledge anything itself (the caller acknowledges after `sync()` returns), retry a failed fsync, or
// silently drop a record that is not a torn tail.
//
// Why the hard state and the applied index are records in the log rather than small files replaced atomically:
// they change with nearly every batch (commit, applied), and the vote must be durable before it is sent. As
// records they ride in the same buffer and the same fsync as the entries of that batch, so persisting "entries +
// hard state" costs one fsync; a separate file costs a write, an fsync, a rename and a directory fsync each time.
// Replay keeps the latest of each. Every new segment starts with a copy of both, so that when compaction later
// deletes old segments, the newest hard state and applied index are never deleted with them.
//
// Threading contract: a WriteAheadLog is used by one thread at a time (typically a dedicated disk thread). It
// may be handed from one thread to another (hence `@unchecked Sendable`), but never called concurrently.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A write-ahead log in a data directory. See the module header for the format, durability and threading rules.
///
/// Typical write path: `append(_:)` the batch's entries, `saveHardState(_:)` if it changed, then `sync()` once;
/// only after `sync()` returns may the caller acknowledge, vote or send. After a crash, recovery returns
/// everything synced plus some prefix of the records appended after the last sync (each entry, truncation, hard
/// state and applied index is its own record, so a batch may survive in part), never a record after a lost one. Any `fsyncFailed` or `writeFailed` error
/// is fatal: the log refuses all further work and the node must exit (never retry an fsync).
public final class WriteAheadLog: @unchecked Sendable {
    /// The data directory.
    public let directory: String
    private let options: WALOptions
    /// Holds the exclusive lock on `LOCK`, so that two processes never write one log.
    private var lockDescriptor: Int32
    /// The last segment, open for appending. Invariant: -1 exactly when closed.
    private var segmentDescriptor: Int32
    private var segment: SegmentName
    /// Bytes already written to the last segment. Invariant: equals its file size (pending bytes excluded).
    private var segmentBytes: Int64
    /// Bytes of every segment before the last.
    private var closedSegmentsBytes: Int64
    /// Encoded records not yet written. Invariant: shorter than `writeBufferBytes` between calls (a larger
    /// record is written out at once).
    private var pending: [UInt8] = []
    /// True when bytes were written to the last segment since its last fsync.
    private var needsSync = false
    private var indexState: LogIndexState
    private var hardState: HardState?
    private var appliedIndex: UInt64
    /// Set by the first failed write or fsync; every later call throws it again.
    private var failure: WALError?

    /// How many fsyncs `sync()` has issued (the measure of group commit).
    public private(set) var syncCount = 0

    /// The total size of the log on disk plus what is buffered, in bytes (exported as a metric).
    public var sizeBytes: Int64 { closedSegmentsBytes + segmentBytes + Int64(pending.count) }

    /// The index the next appended entry must have; nil while the log has never held an entry.
    public var nextIndex: UInt64? { indexState.nextIndex }

    private init(
        directory: String, options: WALOptions, lockDescriptor: Int32, recovery: RecoveryResult,
        segmentDescriptor: Int32, segment: SegmentName
    ) {
        self.directory = directory
        self.options = options
        self.lockDescriptor = lockDescriptor
        self.segmentDescriptor = segmentDescriptor
        self.segment = segment
        self.segmentBytes = recovery.lastSegmentBytes
        self.closedSegmentsBytes = recovery.closedSegmentsBytes
        self.indexState = recovery.indexState
        self.hardState = recovery.recovered.hardState
        self.appliedIndex = recovery.recovered.appliedIndex
    }

    deinit {
        // A log dropped without close() loses only what was never synced, exactly as a crash would.
        if segmentDescriptor >= 0 { FileIO.closeFile(segmentDescriptor) }
        if lockDescriptor >= 0 { FileIO.closeFile(lockDescriptor) }
    }

    /// Opens (creating if needed) the log in `directory`, recovers it, and returns the log ready for appending
    /// together with what it held.
    ///
    /// - Throws: `.locked` when another process holds the directory; `.corrupt` when a record before the tail is
    ///   damaged (the node must stop: this names the file and offset); `.io` or `.fsyncFailed` from the disk.
    public static func open(directory: String, options: WALOptions = WALOptions()) throws(WALError)
        -> (WriteAheadLog, RecoveredLog)
    {
        precondition(options.segmentSizeBytes > 0 && options.writeBufferBytes > 0)
        precondition(options.maxEntryPayloadBytes > 0 && options.maxEntryPayloadBytes <= WALOptions.payloadBytesLimit)
        // Writing and recovering use the same limit, so that whatever this log accepts it can read back; never
        // below the default, so that lowering the option between runs can never make a valid record look damaged.
        let recoveryPayloadLimit = max(options.maxEntryPayloadBytes, WALOptions.defaultMaxEntryPayloadBytes)
        try FileIO.ensureDirectory(directory)
        let lockDescriptor = try FileIO.openFile(directory + "/LOCK", O_RDWR | O_CREAT)
        guard FileIO.tryLock(lockDescriptor) else {
            FileIO.closeFile(lockDescriptor)
            throw .locked(directory: directory)
        }
        do {
            // A segment holds at most its size limit plus one record.
            let decoder = RecordDecoder(maxEntryPayloadBytes: recoveryPayloadLimit)
            let largestSegmentBytes = max(options.segmentSizeBytes, WALOptions().segmentSizeBytes)
            let recovery = Recovery(
                directory: directory, decoder: decoder,
                maxSegmentFileBytes: largestSegmentBytes + recordHeaderBytes + decoder.maxBodyBytes)
            var result = try recovery.replay(try recovery.listSegments())
            let segment: SegmentName
            if let last = result.segments.last {
                segment = last
            } else {
                segment = SegmentName(sequence: 1, firstIndex: result.indexState.nextIndex ?? 0)
                try createSegmentFile(directory: directory, segment)
                result.recovered.segmentCount = 1
            }
            let descriptor = try FileIO.openFile(directory + "/" + segment.fileName, O_WRONLY | O_APPEND)
            let log = WriteAheadLog(
                directory: directory, options: options, lockDescriptor: lockDescriptor, recovery: result,
                segmentDescriptor: descriptor, segment: segment)
            return (log, result.recovered)
        } catch {
            FileIO.closeFile(lockDescriptor)
            throw error
        }
    }

    /// Creates an empty segment file and makes its directory entry durable.
    private static func createSegmentFile(directory: String, _ segment: SegmentName) throws(WALError) {
        let path = directory + "/" + segment.fileName
        let descriptor = try FileIO.openFile(path, O_WRONLY | O_CREAT | O_EXCL)
        FileIO.closeFile(descriptor)
        try FileIO.syncDirectory(directory)
    }

    /// Appends entries (buffered; durable after the next `sync()`).
    ///
    /// Indexes must continue the log: the first entry has `nextIndex` (any index while the log is empty) and each
    /// next one the index after it; anything else is a programmer error and traps.
    /// - Throws: `.recordTooLarge` (and nothing is appended) when a payload is over the limit; `.writeFailed` or
    ///   `.fsyncFailed` when the buffer had to be written out or a segment rolled and the disk failed (fatal).
    public func append(_ entries: [WALEntry]) throws(WALError) {
        try checkUsable()
        for entry in entries where entry.payload.count > options.maxEntryPayloadBytes {
            throw .recordTooLarge(bytes: entry.payload.count, limit: options.maxEntryPayloadBytes)
        }
        for entry in entries {
            // The index state advances after the record is placed, so that a segment rolled for this record is
            // named after this entry's index.
            var advanced = indexState
            let problem = advanced.onAppend(index: entry.index)
            precondition(problem == nil, "WAL append: \(problem ?? "")")
            try appendRecord(
                .entry(entry), encodedBytes: RecordEncoder.entryRecordBytes(payloadBytes: entry.payload.count))
            indexState = advanced
        }
    }

    /// Drops the entry at `index` and every entry after it (a conflict with the leader's log): records a
    /// truncation, after which the next entry appended must have `index`. Durable after the next `sync()`.
    /// `index` must be at least 1 and at most `nextIndex`.
    public func truncate(from index: UInt64) throws(WALError) {
        try checkUsable()
        var advanced = indexState
        let problem = advanced.onTruncate(fromIndex: index)
        precondition(problem == nil, "WAL truncate: \(problem ?? "")")
        try appendRecord(.truncate(fromIndex: index), encodedBytes: recordHeaderBytes + 8)
        indexState = advanced
    }

    /// Records the hard state. Durable after the next `sync()`; the latest one saved is what recovery returns.
    public func saveHardState(_ state: HardState) throws(WALError) {
        try checkUsable()
        precondition(Array((state.votedFor ?? "").utf8).count <= votedForMaxBytes, "votedFor is a node id")
        hardState = state
        try appendRecord(.hardState(state), encodedBytes: hardStateRecordBytes(state))
    }

    /// Records the index of the last entry applied to the app. Durable after the next `sync()`.
    public func saveAppliedIndex(_ index: UInt64) throws(WALError) {
        try checkUsable()
        appliedIndex = index
        try appendRecord(.appliedIndex(index), encodedBytes: recordHeaderBytes + 8)
    }

    /// Makes every record appended so far durable: writes the buffer and issues one fsync for all of it (group
    /// commit). A sync with nothing new to write issues no fsync.
    /// - Throws: `.writeFailed` or `.fsyncFailed`, both fatal: the node must exit, never retry.
    public func sync() throws(WALError) {
        try checkUsable()
        try flushPending()
        guard needsSync else { return }
        assert(FileIO.size(of: segmentDescriptor) == segmentBytes, "segmentBytes tracks the file's size")
        try guardingFailure { () throws(WALError) in
            try FileIO.syncData(segmentDescriptor, path: segmentPath)
        }
        needsSync = false
        syncCount += 1
    }

    /// Syncs, then releases the files and the directory lock. The log must not be used afterwards.
    public func close() throws(WALError) {
        precondition(segmentDescriptor >= 0, "WAL closed twice")
        defer {
            FileIO.closeFile(segmentDescriptor)
            FileIO.closeFile(lockDescriptor)
            segmentDescriptor = -1
            lockDescriptor = -1
        }
        if failure == nil { try sync() }
    }

    // MARK: - Write path

    private var segmentPath: String { directory + "/" + segment.fileName }

    private func checkUsable() throws(WALError) {
        precondition(segmentDescriptor >= 0, "WAL used after close()")
        if let failure { throw failure }
    }

    /// Runs `body`; a failure poisons the log so that nothing is written after an unknown outcome.
    private func guardingFailure(_ body: () throws(WALError) -> Void) throws(WALError) {
        do {
            try body()
        } catch {
            failure = error
            throw error
        }
    }

    private func appendRecord(_ record: Record, encodedBytes: Int) throws(WALError) {
        let segmentUsedBytes = segmentBytes + Int64(pending.count)
        if segmentUsedBytes > 0 && segmentUsedBytes + Int64(encodedBytes) > Int64(options.segmentSizeBytes) {
            try rollSegment()
        }
        let before = pending.count
        RecordEncoder.append(record, to: &pending)
        assert(pending.count - before == encodedBytes, "record size estimate matches the encoding")
        if pending.count >= options.writeBufferBytes { try flushPending() }
        assert(pending.count < options.writeBufferBytes, "the write buffer is bounded between calls")
    }

    private func hardStateRecordBytes(_ state: HardState) -> Int {
        recordHeaderBytes + 19 + Array((state.votedFor ?? "").utf8).count
    }

    /// Writes the buffered records to the last segment (no fsync).
    private func flushPending() throws(WALError) {
        guard !pending.isEmpty else { return }
        try guardingFailure { () throws(WALError) in
            let written: Result<Void, WALError> = pending.withUnsafeBytes { bytes in
                Result { () throws(WALError) in try FileIO.writeAll(segmentDescriptor, bytes, path: segmentPath) }
            }
            try written.get()
        }
        segmentBytes += Int64(pending.count)
        needsSync = true
        // Keep the buffer's memory bounded after an unusually large record.
        if pending.capacity > 2 * options.writeBufferBytes {
            pending = []
        } else {
            pending.removeAll(keepingCapacity: true)
        }
    }

    /// Closes the full segment (fsynced, so that only the last segment can ever have a torn tail) and starts the
    /// next one, which begins with the current hard state and applied index.
    private func rollSegment() throws(WALError) {
        try flushPending()
        let next = SegmentName(sequence: segment.sequence + 1, firstIndex: indexState.nextIndex ?? 0)
        try guardingFailure { () throws(WALError) in
            try FileIO.syncData(segmentDescriptor, path: segmentPath)
            try Self.createSegmentFile(directory: directory, next)
        }
        needsSync = false
        let descriptor = try FileIO.openFile(directory + "/" + next.fileName, O_WRONLY | O_APPEND)
        FileIO.closeFile(segmentDescriptor)
        segmentDescriptor = descriptor
        segment = next
        closedSegmentsBytes += segmentBytes
        segmentBytes = 0
        if let hardState { RecordEncoder.append(.hardState(hardState), to: &pending) }
        if appliedIndex > 0 { RecordEncoder.append(.appliedIndex(appliedIndex), to: &pending) }
    }
}
