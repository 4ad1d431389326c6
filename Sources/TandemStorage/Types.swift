// The values that cross the WAL's public boundary.

/// One log entry as the WAL stores it. The WAL knows nothing of what the payload means: the node runtime encodes
/// its consensus entries into it.
public struct WALEntry: Sendable, Hashable {
    /// The log index, starting wherever the caller's log starts; consecutive entries have consecutive indexes.
    public var index: UInt64
    /// The term the entry was created in.
    public var term: UInt64
    /// The encoded entry.
    public var payload: [UInt8]

    public init(index: UInt64, term: UInt64, payload: [UInt8]) {
        self.index = index
        self.term = term
        self.payload = payload
    }
}

/// The consensus hard state: what must be on disk before a vote is sent or an entry acknowledged.
public struct StoredHardState: Sendable, Hashable {
    public var term: UInt64
    /// The node voted for in `term`, nil when none.
    public var votedFor: String?
    /// The highest index known to be committed.
    public var commit: UInt64

    public init(term: UInt64, votedFor: String?, commit: UInt64) {
        self.term = term
        self.votedFor = votedFor
        self.commit = commit
    }
}

/// The point the log starts after: entries through `index` are covered by a snapshot, so the log holds (at most)
/// the entries after it. `term` is the term of the entry at `index`, which the consensus layer needs to check the
/// entry that follows; the log records it without checking it.
public struct StoredLogBase: Sendable, Hashable {
    /// The last index the snapshot covers.
    public var index: UInt64
    /// The term of the entry at `index`.
    public var term: UInt64
    /// The cluster configuration in force at `index`, encoded by the consensus layer (opaque here); nil when the
    /// writer did not record one (logs written before membership changes existed). At most
    /// `StoredLogBase.configurationMaxBytes`.
    public var configuration: [UInt8]?

    public static let configurationMaxBytes = 64 * 1024

    public init(index: UInt64, term: UInt64, configuration: [UInt8]? = nil) {
        precondition(
            (configuration?.count ?? 0) <= Self.configurationMaxBytes, "a base configuration over its bound")
        self.index = index
        self.term = term
        self.configuration = configuration
    }
}

/// What `WriteAheadLog.open` found on disk.
public struct RecoveredLog: Sendable, Hashable {
    /// The latest hard state saved, nil when none ever was.
    public var hardState: StoredHardState?
    /// The latest applied index saved, 0 when none ever was.
    public var appliedIndex: UInt64
    /// The entries, in index order, with every truncation already applied: consecutive, and all after `base`
    /// when it is set. The first then has index `base.index + 1` (recovery refuses a log where entries between
    /// the base and the first segment left are missing), unless the log's very first entry, never compacted
    /// away, came later than that.
    public var entries: [WALEntry]
    /// Set when recovery cut off a torn tail (a crash in the middle of a write: an incomplete record, or one
    /// with unwritten zero sectors; see the rule at the top of Recovery.swift). The caller should log it; nothing
    /// in that tail had been synced, so nothing acknowledged was in it. A damaged complete record is never cut:
    /// `open` throws `.corrupt` instead.
    public var tornTail: TornTail?
    /// How many segment files the log has.
    public var segmentCount: Int
    /// The latest base recorded by `compact(to:)` or `reset(to:)`, nil when the log never had one (it then holds
    /// every entry since the first ever appended).
    public var base: StoredLogBase? = nil
}

/// The tail recovery removed from the last segment.
public struct TornTail: Sendable, Hashable {
    /// The segment's file name (not the full path).
    public var file: String
    /// Where the damaged tail started; the file now ends here.
    public var offset: Int64
    /// How many bytes were cut.
    public var discardedBytes: Int64
    /// Why the record at `offset` was not valid.
    public var reason: String
}

/// Tunables of the log. The defaults suit production; tests shrink the segment size to exercise rolling.
public struct WALOptions: Sendable, Hashable {
    /// A segment is closed and a new one started when the next record would take it past this size.
    public var segmentSizeBytes: Int
    /// The largest entry payload accepted, both when appending (a larger one is refused with the non-fatal
    /// `.recordTooLarge`) and when recovering. Raise it with the largest write the node admits (the sidecar's
    /// `TANDEM_MAX_BODY` plus the command's framing): every replica must accept every entry the leader does.
    /// At most `payloadBytesLimit`. Recovery accepts records up to the larger of this and
    /// `defaultMaxEntryPayloadBytes`, so that lowering it to the default between runs never makes valid records
    /// look damaged; a record over what recovery accepts is reported as corruption (never cut as torn).
    public var maxEntryPayloadBytes: Int
    /// Appended records are buffered in memory and written out (without fsync) once this many bytes are waiting,
    /// so the buffer stays bounded between syncs.
    public var writeBufferBytes: Int

    /// The default of `maxEntryPayloadBytes`.
    public static let defaultMaxEntryPayloadBytes = 64 << 20
    /// The bound the record format puts on any entry payload: a record's length field is 32 bits.
    public static let payloadBytesLimit = Int(UInt32.max) - 16

    public init(
        segmentSizeBytes: Int = 64 << 20, maxEntryPayloadBytes: Int = WALOptions.defaultMaxEntryPayloadBytes,
        writeBufferBytes: Int = 1 << 20
    ) {
        self.segmentSizeBytes = segmentSizeBytes
        self.maxEntryPayloadBytes = maxEntryPayloadBytes
        self.writeBufferBytes = writeBufferBytes
    }
}

/// Everything the disk can do to the WAL. All but `locked`, `recordTooLarge` and `descriptorsExhausted` (see
/// `isFatal`) are fatal for a node: after
/// `fsyncFailed` or `writeFailed` the WAL refuses further work, because the page cache may have dropped data the
/// process believed written (PostgreSQL's fsyncgate). Never retry an fsync.
public enum WALError: Error, Sendable, Hashable {
    /// A record before the tail is damaged, or the records do not form a valid log. The node must stop.
    /// `file` is the segment's name inside the data directory; `offset` is where the bad record starts.
    case corrupt(file: String, offset: Int64, reason: String)
    /// fsync (or fdatasync) failed on the file at path `file`: the data's fate is unknown. Fatal; never retried.
    case fsyncFailed(file: String, errno: Int32)
    /// A write to the file at path `file` failed (for example ENOSPC): the file's tail is unknown. Fatal.
    case writeFailed(file: String, errno: Int32)
    /// Another operation on the file system failed (open, read, rename, mkdir...).
    case io(operation: String, path: String, errno: Int32)
    /// Another process holds the data directory.
    case locked(directory: String)
    /// An entry payload is larger than `WALOptions.maxEntryPayloadBytes`; nothing was appended. Not fatal: refuse
    /// that one write and carry on.
    case recordTooLarge(bytes: Int, limit: Int)
    /// The process ran out of file descriptors (EMFILE or ENFILE) where the log needed one and could not
    /// continue without it; nothing was appended and the log is still usable. Not fatal: retry later.
    case descriptorsExhausted(operation: String, path: String, errno: Int32)
}

extension WALError {
    /// False for the errors after which the log is still usable and the node must keep running: `recordTooLarge`
    /// (that one write is refused; nothing was appended), `locked` (from `open`; nothing was touched), and
    /// `descriptorsExhausted` (nothing was appended; retry later). Every other error is fatal: the node exits.
    public var isFatal: Bool {
        switch self {
        case .recordTooLarge, .locked, .descriptorsExhausted: return false
        case .corrupt, .fsyncFailed, .writeFailed, .io: return true
        }
    }
}

extension WALError: CustomStringConvertible {
    /// One line for the log, naming the file and what to do.
    public var description: String {
        switch self {
        case .corrupt(let file, let offset, let reason):
            return "write-ahead log corrupt in \(file) at offset \(offset): \(reason); refusing to start "
                + "(restore this node's data directory or rebuild it from the other replicas)"
        case .fsyncFailed(let file, let code):
            return "fsync of \(file) failed (errno \(code)): data may be lost; exiting without retrying"
        case .writeFailed(let file, let code):
            return "write to \(file) failed (errno \(code)); exiting"
        case .io(let operation, let path, let code):
            return "\(operation) of \(path) failed (errno \(code))"
        case .locked(let directory):
            return "data directory \(directory) is in use by another process"
        case .recordTooLarge(let bytes, let limit):
            return "log entry of \(bytes) bytes is over the limit of \(limit) bytes"
        case .descriptorsExhausted(let operation, let path, let code):
            return "\(operation) of \(path) failed: out of file descriptors (errno \(code)); will retry"
        }
    }
}

extension TornTail: CustomStringConvertible {
    /// One line for the log.
    public var description: String {
        "write-ahead log: cut a torn tail of \(discardedBytes) bytes off \(file) at offset \(offset) (\(reason)); "
            + "it held nothing that had been synced"
    }
}
