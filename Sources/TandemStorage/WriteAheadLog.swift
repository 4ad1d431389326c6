// TandemStorage: the write-ahead log of one Tandem node.
//
// What it owns: the files of the data directory — segment files of CRC32C-checked records holding log entries,
// truncations, the hard state (term, vote, commit), the applied index and the base (the index a snapshot covers
// the log through) — their group commit (one fsync covers every record appended since the previous one), their
// compaction (deleting the segments a snapshot made useless), and their recovery after a crash (a torn tail is
// cut and reported; damage anywhere else stops the node with the file and offset). Snapshot files themselves are
// the SnapshotStore's.
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
// Replay keeps the latest of each. Every new segment starts with a copy of both and of the base, so that when
// compaction deletes old segments, the newest hard state, applied index and base are never deleted with them.
//
// Compaction, and why it is crash-safe without a manifest: `compact(to:)` first makes a base record durable, then
// deletes whole segments from the oldest, making each deletion durable (a directory fsync) before the next, so
// that the segments left are always consecutive in sequence. A segment may go when the segment after it was
// created at an index at most one past the base: every entry live before that point is covered. A crash before
// the base is durable recovers the old log; after it, the new one whatever was deleted yet. `reset(to:)` writes
// the next segment (a reset base, the hard state, the applied index) under a temporary name, fsyncs it and
// renames it into place, so that it exists whole or not at all; only then are all older segments deleted, and
// replaying any that a crash left is harmless, since the reset record voids every entry before it.
//
// File descriptors: the log holds four (the lock, the directory, the last segment, and a spare opened on
// /dev/null). Running out of descriptors is not a disk failure: at a segment roll the spare is released just
// before the next segment is opened, so the roll succeeds even when the process's table is full. When no spare
// can be had (someone else took the slot), the roll is put off and the last segment grows past its nominal size,
// up to twice it; beyond that a write is refused with the non-fatal `descriptorsExhausted`, nothing appended.
//
// Files: the data directory is created 0700 (with its missing parents, like `mkdir -p`, each fsynced into its
// parent) and every file 0600; files an earlier version left readable by others are restricted on open.
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
/// state and applied index is its own record, so a batch may survive in part), never a record after a lost one.
/// Any error whose `isFatal` is true (`fsyncFailed`, `writeFailed`, ...) is fatal: the log refuses all further
/// work and the node must exit (never retry an fsync). `recordTooLarge` and `descriptorsExhausted` are not: that
/// call appended nothing and the log goes on.
public final class WriteAheadLog: @unchecked Sendable {
    /// The data directory.
    public let directory: String
    private let options: WALOptions
    /// Holds the exclusive lock on `LOCK`, so that two processes never write one log.
    private var lockDescriptor: Int32
    /// The data directory, open for fsyncing the entries of new segments without needing a descriptor then.
    private var directoryDescriptor: Int32
    /// A descriptor on /dev/null held in reserve and released just before a segment is opened; -1 when the log
    /// could not get one back (the next roll tries again).
    private var spareDescriptor: Int32 = -1
    /// The errno of the last failed attempt to reserve `spareDescriptor`.
    private var spareErrno: Int32 = 0
    /// The last segment, open for appending. Invariant: -1 exactly when closed.
    private var segmentDescriptor: Int32
    private var segment: SegmentName
    /// Bytes already written to the last segment. Invariant: equals its file size (pending bytes excluded).
    private var segmentBytes: Int64
    /// Every segment before the last, oldest first, with its size; compaction deletes from the front.
    private var closedSegments: [(name: SegmentName, bytes: Int64)]
    /// Bytes of every segment before the last. Invariant: the sum of `closedSegments`' sizes.
    private var closedSegmentsBytes: Int64
    /// Encoded records not yet written. Invariant: shorter than `writeBufferBytes` between calls (a larger
    /// record is written out at once).
    private var pending: [UInt8] = []
    /// True when bytes were written to the last segment since its last fsync.
    private var needsSync = false
    private var indexState: LogIndexState
    private var hardState: StoredHardState?
    private var appliedIndex: UInt64
    /// Set by the first failed write or fsync; every later call throws it again.
    private var failure: WALError?

    /// How many fsyncs `sync()` has issued (the measure of group commit).
    public private(set) var syncCount = 0

    /// The total size of the log on disk plus what is buffered, in bytes (exported as a metric).
    public var sizeBytes: Int64 { closedSegmentsBytes + segmentBytes + Int64(pending.count) }

    /// The index the next appended entry must have; nil while the log has never held an entry nor had a base.
    public var nextIndex: UInt64? { indexState.nextIndex }

    /// The latest base recorded by `compact(to:)` or `reset(to:)` (or recovered), nil when there was none.
    public var base: StoredLogBase? { indexState.base }

    private init(
        directory: String, options: WALOptions, lockDescriptor: Int32, directoryDescriptor: Int32,
        recovery: RecoveryResult, segmentDescriptor: Int32, segment: SegmentName
    ) {
        self.directory = directory
        self.options = options
        self.lockDescriptor = lockDescriptor
        self.directoryDescriptor = directoryDescriptor
        self.segmentDescriptor = segmentDescriptor
        self.segment = segment
        self.segmentBytes = recovery.segmentSizes.last ?? 0
        self.closedSegments = Array(zip(recovery.segments.dropLast(), recovery.segmentSizes.dropLast()))
        self.closedSegmentsBytes = recovery.segmentSizes.dropLast().reduce(0, +)
        self.indexState = recovery.indexState
        self.hardState = recovery.recovered.hardState
        self.appliedIndex = recovery.recovered.appliedIndex
        _ = reserveSpareDescriptor()
    }

    deinit {
        // A log dropped without close() loses only what was never synced, exactly as a crash would.
        for descriptor in [segmentDescriptor, spareDescriptor, directoryDescriptor, lockDescriptor]
        where descriptor >= 0 {
            FileIO.closeFile(descriptor)
        }
    }

    /// Creates the data directory like `mkdir -p`: every missing directory on `path` is created with mode 0700
    /// and its entry fsynced into its parent, so that it cannot vanish on power loss. An existing directory is
    /// left as it is. `open` calls this itself; callers need it only to create the directory earlier.
    /// - Throws: `.io` (for example ENOTDIR when a file is in the way, EACCES) or `.fsyncFailed`.
    public static func prepareDirectory(_ path: String) throws(WALError) {
        try FileIO.prepareDirectory(path)
    }

    /// Opens (creating if needed, as `prepareDirectory` does) the log in `directory`, recovers it, and returns the
    /// log ready for appending together with what it held. `options.maxEntryPayloadBytes` is the record size limit
    /// for both appending and recovery.
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
        try FileIO.prepareDirectory(directory)
        let lockDescriptor = try FileIO.openFile(directory + "/LOCK", O_RDWR | O_CREAT)
        guard FileIO.tryLock(lockDescriptor) else {
            FileIO.closeFile(lockDescriptor)
            throw .locked(directory: directory)
        }
        var directoryDescriptor: Int32 = -1
        do {
            try FileIO.restrictToOwner(directory + "/LOCK")
            directoryDescriptor = try FileIO.openFile(directory, O_RDONLY | O_DIRECTORY)
            // A segment holds at most its size limit plus one record, or twice its limit while rolls are put off
            // for want of a descriptor; the bound leaves room for a batch that overshoots when a roll fails.
            let decoder = RecordDecoder(maxEntryPayloadBytes: recoveryPayloadLimit)
            let largestSegmentBytes = max(options.segmentSizeBytes, WALOptions().segmentSizeBytes)
            let recovery = Recovery(
                directory: directory, decoder: decoder,
                maxSegmentFileBytes: 4 * largestSegmentBytes + recordHeaderBytes + decoder.maxBodyBytes)
            try removeStagedSegments(directory: directory, directoryDescriptor)
            var result = try recovery.replay(try recovery.listSegments())
            for segment in result.segments { try FileIO.restrictToOwner(directory + "/" + segment.fileName) }
            let segment: SegmentName
            let descriptor: Int32
            if let last = result.segments.last {
                segment = last
                descriptor = try FileIO.openFile(directory + "/" + segment.fileName, O_WRONLY | O_APPEND)
            } else {
                segment = SegmentName(sequence: 1, firstIndex: result.indexState.nextIndex ?? 0)
                descriptor = try createSegmentFile(segment, directory: directory, directoryDescriptor)
                result.recovered.segmentCount = 1
            }
            let log = WriteAheadLog(
                directory: directory, options: options, lockDescriptor: lockDescriptor,
                directoryDescriptor: directoryDescriptor, recovery: result, segmentDescriptor: descriptor,
                segment: segment)
            return (log, result.recovered)
        } catch {
            if directoryDescriptor >= 0 { FileIO.closeFile(directoryDescriptor) }
            FileIO.closeFile(lockDescriptor)
            throw error
        }
    }

    /// Creates an empty segment file, makes its directory entry durable, and returns it open for appending.
    /// - Throws: `.descriptorsExhausted` when no descriptor was free (nothing was created), `.io` for any other
    ///   failure to create it, `.fsyncFailed` when the directory could not be synced.
    private static func createSegmentFile(_ segment: SegmentName, directory: String, _ directoryDescriptor: Int32)
        throws(WALError) -> Int32
    {
        let path = directory + "/" + segment.fileName
        let descriptor: Int32
        do {
            descriptor = try FileIO.openFile(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL)
        } catch {
            if case .io(let operation, _, let code) = error, FileIO.isDescriptorExhaustion(code) {
                throw .descriptorsExhausted(operation: operation, path: path, errno: code)
            }
            throw error
        }
        do {
            try FileIO.syncDirectory(directoryDescriptor, path: directory)
        } catch {
            FileIO.closeFile(descriptor)
            throw error
        }
        return descriptor
    }

    /// Deletes what an interrupted `reset(to:)` left: a next segment still under its temporary name, never renamed
    /// into place, so never part of the log.
    private static func removeStagedSegments(directory: String, _ directoryDescriptor: Int32) throws(WALError) {
        var removed = false
        for name in try FileIO.listDirectory(directory) where name.hasPrefix("wal-") && name.hasSuffix(".log.tmp") {
            try FileIO.removeFile(directory + "/" + name)
            removed = true
        }
        if removed { try FileIO.syncDirectory(directoryDescriptor, path: directory) }
    }

    /// Takes a descriptor on /dev/null into reserve unless one is held; false when none could be had.
    private func reserveSpareDescriptor() -> Bool {
        guard spareDescriptor < 0 else { return true }
        do {
            spareDescriptor = try FileIO.openFile("/dev/null", O_RDONLY)
            return true
        } catch {
            if case .io(_, _, let code) = error { spareErrno = code }
            return false
        }
    }

    /// Gives the spare descriptor up (a roll is about to need its slot, or a test simulates losing it).
    func releaseReservedDescriptor() {
        if spareDescriptor >= 0 { FileIO.closeFile(spareDescriptor) }
        spareDescriptor = -1
    }

    /// Appends entries (buffered; durable after the next `sync()`).
    ///
    /// Indexes must continue the log: the first entry has `nextIndex` (any index while the log is empty) and each
    /// next one the index after it; anything else is a programmer error and traps.
    /// - Throws: `.recordTooLarge` (and nothing is appended) when a payload is over the limit;
    ///   `.descriptorsExhausted` (nothing appended; not fatal) when the last segment is at its overflow bound and
    ///   no descriptor is free to start the next one; `.writeFailed` or `.fsyncFailed` when the buffer had to be
    ///   written out or a segment rolled and the disk failed (fatal).
    public func append(_ entries: [WALEntry]) throws(WALError) {
        try checkUsable()
        for entry in entries where entry.payload.count > options.maxEntryPayloadBytes {
            throw .recordTooLarge(bytes: entry.payload.count, limit: options.maxEntryPayloadBytes)
        }
        try checkRoom(
            forBytes: entries.reduce(0) { $0 + RecordEncoder.entryRecordBytes(payloadBytes: $1.payload.count) })
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
        try checkRoom(forBytes: recordHeaderBytes + 8)
        try appendRecord(.truncate(fromIndex: index), encodedBytes: recordHeaderBytes + 8)
        indexState = advanced
    }

    /// Records the hard state. Durable after the next `sync()`; the latest one saved is what recovery returns.
    public func saveHardState(_ state: StoredHardState) throws(WALError) {
        try checkUsable()
        precondition(Array((state.votedFor ?? "").utf8).count <= votedForMaxBytes, "votedFor is a node id")
        try checkRoom(forBytes: hardStateRecordBytes(state))
        hardState = state
        try appendRecord(.hardState(state), encodedBytes: hardStateRecordBytes(state))
    }

    /// Records the index of the last entry applied to the app. Durable after the next `sync()`.
    public func saveAppliedIndex(_ index: UInt64) throws(WALError) {
        try checkUsable()
        try checkRoom(forBytes: recordHeaderBytes + 8)
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
            releaseReservedDescriptor()
            FileIO.closeFile(segmentDescriptor)
            FileIO.closeFile(directoryDescriptor)
            FileIO.closeFile(lockDescriptor)
            segmentDescriptor = -1
            directoryDescriptor = -1
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

    /// The most the last segment may hold while rolls are put off for want of a descriptor.
    private var overflowLimitBytes: Int64 { 2 * Int64(options.segmentSizeBytes) }

    /// Refuses, before anything is appended, records of `bytes` that would take the last segment past its
    /// overflow bound when no descriptor is free to start the next segment.
    private func checkRoom(forBytes bytes: Int) throws(WALError) {
        let segmentUsedBytes = segmentBytes + Int64(pending.count)
        guard segmentUsedBytes > 0, segmentUsedBytes + Int64(bytes) > overflowLimitBytes else { return }
        guard !reserveSpareDescriptor() else { return }
        throw .descriptorsExhausted(operation: "open", path: directory + "/" + nextSegment.fileName, errno: spareErrno)
    }

    private func appendRecord(_ record: Record, encodedBytes: Int) throws(WALError) {
        let segmentUsedBytes = segmentBytes + Int64(pending.count)
        if segmentUsedBytes > 0 && segmentUsedBytes + Int64(encodedBytes) > Int64(options.segmentSizeBytes) {
            try rollSegmentUnlessOutOfDescriptors()
        }
        let before = pending.count
        RecordEncoder.append(record, to: &pending)
        assert(pending.count - before == encodedBytes, "record size estimate matches the encoding")
        if pending.count >= options.writeBufferBytes { try flushPending() }
        assert(pending.count < options.writeBufferBytes, "the write buffer is bounded between calls")
    }

    private func hardStateRecordBytes(_ state: StoredHardState) -> Int {
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

    private var nextSegment: SegmentName {
        SegmentName(sequence: segment.sequence + 1, firstIndex: indexState.nextIndex ?? 0)
    }

    /// Closes the full segment (fsynced, so that only the last segment can ever have a torn tail) and starts the
    /// next one, which begins with the current hard state and applied index. When no descriptor can be had for
    /// the next segment, nothing changes and the records keep going to the current one (the next record that
    /// finds the segment full tries again); the failure to roll is never fatal and loses nothing.
    private func rollSegmentUnlessOutOfDescriptors() throws(WALError) {
        // Without a spare there is likely no free slot: do not fsync for a roll that would fail.
        guard reserveSpareDescriptor() else { return }
        try flushPending()
        let next = nextSegment
        try guardingFailure { () throws(WALError) in
            try FileIO.syncData(segmentDescriptor, path: segmentPath)
        }
        needsSync = false
        releaseReservedDescriptor()
        let descriptor: Int32
        do {
            descriptor = try Self.createSegmentFile(next, directory: directory, directoryDescriptor)
        } catch {
            _ = reserveSpareDescriptor()
            if case .descriptorsExhausted = error { return }
            failure = error
            throw error
        }
        FileIO.closeFile(segmentDescriptor)
        _ = reserveSpareDescriptor()
        segmentDescriptor = descriptor
        closedSegments.append((segment, segmentBytes))
        closedSegmentsBytes += segmentBytes
        segment = next
        segmentBytes = 0
        appendSegmentHeader(to: &pending, reset: false)
    }

    /// Encodes what every segment starts with: the base (as a reset for the segment `reset(to:)` writes), the hard
    /// state and the applied index, so that deleting the segments before it loses none of them.
    private func appendSegmentHeader(to buffer: inout [UInt8], reset: Bool) {
        if let base = indexState.base { RecordEncoder.append(.base(base, reset: reset), to: &buffer) }
        if let hardState { RecordEncoder.append(.hardState(hardState), to: &buffer) }
        if appliedIndex > 0 { RecordEncoder.append(.appliedIndex(appliedIndex), to: &buffer) }
    }
}

// MARK: - Compaction

extension WriteAheadLog {
    /// Records that the entries through `base.index` are covered by a snapshot (a base record), syncs it together
    /// with every record appended before it, then deletes every whole segment that holds no entry above the base
    /// (oldest first, each deletion made durable by a directory fsync before the next). The entries after the base
    /// are kept and appends continue as before. See the module header for why a crash at any point recovers either
    /// the old log or the compacted one.
    ///
    /// The caller makes the snapshot durable first: once this returns, the covered entries are gone for good.
    /// A base whose index is at or below the current base's is a no-op. A base at or beyond `nextIndex` covers
    /// every entry: the log is then empty and the next append must have index `base.index + 1`. The term is
    /// recorded as given (the log keeps no entries in memory to check it against).
    /// - Throws: `.descriptorsExhausted` (nothing recorded; not fatal) when the last segment is at its overflow
    ///   bound and no descriptor is free to start the next one (as for `append`); `.writeFailed` or `.fsyncFailed` (fatal); `.io` when a segment could
    ///   not be deleted: the base is durable and the segments left are still consecutive, but the node should
    ///   treat it as fatal like any other `.io`.
    public func compact(to base: StoredLogBase) throws(WALError) {
        try checkUsable()
        if let current = indexState.base, base.index <= current.index { return }
        var advanced = indexState
        let problem = advanced.onCompaction(to: base)
        precondition(problem == nil, "WAL compact: \(problem ?? "")")
        try checkRoom(forBytes: baseRecordBytes(base))
        // The index state advances after the record is placed, so that a segment rolled for it is named after
        // where the log stood (as for entries), never after the base.
        try appendRecord(.base(base, reset: false), encodedBytes: baseRecordBytes(base))
        indexState = advanced
        try sync()
        try deleteOldestSegments(deletableSegmentCount(for: base))
    }

    /// Discards every entry, because an installed snapshot replaced the log: starts the next segment with a reset
    /// base record, the hard state and the applied index, makes it durable (written under a temporary name,
    /// fsynced, renamed into place, directory fsynced), then deletes every older segment. Records appended before
    /// and not yet synced are written and synced first (only the last segment may ever have a torn tail); the
    /// entries among them are discarded with the rest. Any base is accepted, even one below the current base.
    /// The next append must have index `base.index + 1`. Durable when it returns.
    /// - Throws: `.descriptorsExhausted` (nothing changed; not fatal) when no descriptor is free for the new
    ///   segment; `.writeFailed`, `.fsyncFailed` or `.io` (fatal). A crash at any point recovers either the old log
    ///   or the reset one.
    public func reset(to base: StoredLogBase) throws(WALError) {
        try checkUsable()
        var advanced = indexState
        let problem = advanced.onReset(to: base)
        precondition(problem == nil, "WAL reset: \(problem ?? "")")
        try flushPending()
        if needsSync {
            try guardingFailure { () throws(WALError) in try FileIO.syncData(segmentDescriptor, path: segmentPath) }
            needsSync = false
        }
        let next = SegmentName(sequence: segment.sequence + 1, firstIndex: base.index + 1)
        let path = directory + "/" + next.fileName
        let stagingPath = path + ".tmp"
        guard reserveSpareDescriptor() else {
            throw .descriptorsExhausted(operation: "open", path: stagingPath, errno: spareErrno)
        }
        releaseReservedDescriptor()
        let descriptor: Int32
        do {
            descriptor = try FileIO.openFile(stagingPath, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC)
        } catch {
            _ = reserveSpareDescriptor()
            if case .io(let operation, _, let code) = error, FileIO.isDescriptorExhaustion(code) {
                throw .descriptorsExhausted(operation: operation, path: stagingPath, errno: code)
            }
            throw error
        }
        indexState = advanced
        var header: [UInt8] = []
        appendSegmentHeader(to: &header, reset: true)
        do {
            try guardingFailure { () throws(WALError) in
                try header.withBytes { bytes throws(WALError) in
                    try FileIO.writeAll(descriptor, bytes, path: stagingPath)
                }
                try FileIO.syncData(descriptor, path: stagingPath)
                try FileIO.renameFile(stagingPath, to: path)
                try FileIO.syncDirectory(directoryDescriptor, path: directory)
            }
        } catch {
            FileIO.closeFile(descriptor)
            _ = reserveSpareDescriptor()
            throw error
        }
        FileIO.closeFile(segmentDescriptor)
        _ = reserveSpareDescriptor()
        closedSegments.append((segment, segmentBytes))
        closedSegmentsBytes += segmentBytes
        segmentDescriptor = descriptor
        segment = next
        segmentBytes = Int64(header.count)
        try deleteOldestSegments(closedSegments.count)
    }

    /// How many of the closed segments, from the oldest, hold no entry above `base`: all those before the newest
    /// segment that was created at an index at most one past the base (every entry live before a segment was
    /// created has an index below its first index; later truncations only void entries, never revive them).
    private func deletableSegmentCount(for base: StoredLogBase) -> Int {
        guard !closedSegments.isEmpty else { return 0 }
        // followers[p] is the segment after closedSegments[p].
        let followers = closedSegments.dropFirst().map(\.name) + [segment]
        return followers.lastIndex { $0.firstIndex <= base.index + 1 }.map { $0 + 1 } ?? 0
    }

    /// Deletes the `count` oldest segments, oldest first, fsyncing the directory after each deletion so that the
    /// segments left are consecutive whatever a crash keeps.
    private func deleteOldestSegments(_ count: Int) throws(WALError) {
        precondition(count <= closedSegments.count, "only closed segments are deleted")
        for _ in 0..<count {
            let oldest = closedSegments[0]
            try FileIO.removeFile(directory + "/" + oldest.name.fileName)
            try guardingFailure { () throws(WALError) in
                try FileIO.syncDirectory(directoryDescriptor, path: directory)
            }
            closedSegments.removeFirst()
            closedSegmentsBytes -= oldest.bytes
        }
    }
}
