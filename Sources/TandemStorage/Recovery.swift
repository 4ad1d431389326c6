// Reading a data directory back: segment names, the replay of every record, and the torn-tail rule.
//
// The torn-tail rule (torn writes are not corruption; corruption is not a torn write): only the
// last segment can end in the middle of a write, because a segment is fsynced before the next one is created.
// So the first invalid record of the last segment is a torn tail when no valid record exists anywhere after it
// (an incomplete record, a bad CRC on the very last record, or zero-filled space all qualify), and it is cut off.
// Any other invalid record, or one followed by a valid record, is damage: recovery stops and names file and
// offset, and the node must not start. Nothing in a torn tail was acknowledged, since acknowledgement waits for
// the sync that would have made it whole.

/// A segment file's identity: `wal-<sequence, 16 digits>-<first index, 20 digits>.log`. The sequence orders the
/// segments (indexes alone cannot, since a truncation can make a later segment start at a lower index); the first
/// index is the index the log expected next when the segment was created (0 when the log was still empty), kept
/// for the compaction to come.
struct SegmentName: Comparable, Hashable {
    var sequence: UInt64
    var firstIndex: UInt64

    var fileName: String { "wal-\(zeroPadded(sequence, 16))-\(zeroPadded(firstIndex, 20)).log" }

    /// Parses a segment file name; nil for any other file.
    init?(fileName: String) {
        guard fileName.hasPrefix("wal-"), fileName.hasSuffix(".log") else { return nil }
        let parts = fileName.dropFirst(4).dropLast(4).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 16, parts[1].count == 20,
            let sequence = UInt64(parts[0]), let firstIndex = UInt64(parts[1])
        else { return nil }
        self.sequence = sequence
        self.firstIndex = firstIndex
    }

    init(sequence: UInt64, firstIndex: UInt64) {
        self.sequence = sequence
        self.firstIndex = firstIndex
    }

    static func < (left: SegmentName, right: SegmentName) -> Bool { left.sequence < right.sequence }
}

private func zeroPadded(_ value: UInt64, _ width: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// Everything recovery learned, including what the writer needs to continue.
struct RecoveryResult {
    var recovered: RecoveredLog
    var indexState: LogIndexState
    var segments: [SegmentName]
    /// The size of every segment but the last, in bytes.
    var closedSegmentsBytes: Int64
    /// The size of the last segment after any torn tail was cut.
    var lastSegmentBytes: Int64
}

/// Replays the segments of `directory` in order.
struct Recovery {
    let directory: String
    let decoder: RecordDecoder
    /// The largest segment file accepted: a full segment plus one maximal record (a record is never split).
    let maxSegmentFileBytes: Int

    /// The segments present, in sequence order; a gap in the sequence is damage (a segment went missing).
    func listSegments() throws(WALError) -> [SegmentName] {
        var segments: [SegmentName] = []
        for name in try FileIO.listDirectory(directory) where name.hasPrefix("wal-") && name.hasSuffix(".log") {
            guard let segment = SegmentName(fileName: name) else {
                throw .corrupt(file: name, offset: 0, reason: "a file named like a segment that is not one")
            }
            segments.append(segment)
        }
        segments.sort()
        for (earlier, later) in zip(segments, segments.dropFirst()) where later.sequence != earlier.sequence + 1 {
            throw .corrupt(file: later.fileName, offset: 0, reason: "segment \(earlier.sequence + 1) is missing")
        }
        return segments
    }

    /// Replays every segment, cutting a torn tail off the last one.
    func replay(_ segments: [SegmentName]) throws(WALError) -> RecoveryResult {
        var replay = ReplayState()
        var closedSegmentsBytes: Int64 = 0
        var lastSegmentBytes: Int64 = 0
        var tornTail: TornTail?
        for (position, segment) in segments.enumerated() {
            let path = directory + "/" + segment.fileName
            let bytes = try FileIO.readAll(path, maxBytes: maxSegmentFileBytes)
            let isLast = position == segments.count - 1
            let validBytes = try replaySegment(bytes, name: segment.fileName, isLast: isLast, into: &replay)
            if validBytes.end < bytes.count {
                try FileIO.truncateFile(path, length: Int64(validBytes.end))
                tornTail = TornTail(
                    file: segment.fileName, offset: Int64(validBytes.end),
                    discardedBytes: Int64(bytes.count - validBytes.end), reason: validBytes.reason)
            }
            if isLast { lastSegmentBytes = Int64(validBytes.end) } else { closedSegmentsBytes += Int64(bytes.count) }
        }
        let recovered = RecoveredLog(
            hardState: replay.hardState, appliedIndex: replay.appliedIndex, entries: replay.entries,
            tornTail: tornTail, segmentCount: segments.count)
        return RecoveryResult(
            recovered: recovered, indexState: replay.indexState, segments: segments,
            closedSegmentsBytes: closedSegmentsBytes, lastSegmentBytes: lastSegmentBytes)
    }

    /// Replays one segment's records into `replay`; returns where the valid records end (and why they end there
    /// when that is before the end of the file, which only a torn last segment may do).
    private func replaySegment(_ bytes: [UInt8], name: String, isLast: Bool, into replay: inout ReplayState)
        throws(WALError) -> (end: Int, reason: String)
    {
        let outcome: Result<(end: Int, reason: String), WALError> = bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                switch decoder.read(buffer, at: offset) {
                case .record(let record, let nextOffset):
                    if let problem = replay.apply(record) {
                        return .failure(.corrupt(file: name, offset: Int64(offset), reason: problem))
                    }
                    offset = nextOffset
                case .invalid(let reason):
                    if isLast && !validRecordExists(in: buffer, after: offset) {
                        return .success((offset, reason))
                    }
                    return .failure(.corrupt(file: name, offset: Int64(offset), reason: reason))
                }
            }
            return .success((offset, ""))
        }
        return try outcome.get()
    }

    /// True when a valid record starts at any offset after `offset`. Only called once, for the first invalid
    /// record of the last segment; most offsets are rejected by their length field before any CRC is computed.
    private func validRecordExists(in buffer: UnsafeRawBufferPointer, after offset: Int) -> Bool {
        var candidate = offset + 1
        while candidate + recordHeaderBytes <= buffer.count {
            if case .record = decoder.read(buffer, at: candidate) { return true }
            candidate += 1
        }
        return false
    }
}

/// The log as replay rebuilds it, record by record.
struct ReplayState {
    var hardState: HardState?
    var appliedIndex: UInt64 = 0
    /// Invariant: indexes are consecutive, and `indexState` expects the index after the last entry.
    var entries: [WALEntry] = []
    var indexState = LogIndexState()

    /// Applies `record`; returns why it cannot follow the records before it, or nil.
    mutating func apply(_ record: Record) -> String? {
        switch record {
        case .entry(let entry):
            if let problem = indexState.onAppend(index: entry.index) { return problem }
            entries.append(entry)
        case .hardState(let state):
            hardState = state
        case .appliedIndex(let index):
            appliedIndex = index
        case .truncate(let fromIndex):
            if let problem = indexState.onTruncate(fromIndex: fromIndex) { return problem }
            while let last = entries.last, last.index >= fromIndex { entries.removeLast() }
        }
        assert(entries.last.map { $0.index + 1 == indexState.nextIndex } ?? true)
        return nil
    }
}
