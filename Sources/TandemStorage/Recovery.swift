// Reading a data directory back: segment names, the replay of every record, and the torn-tail rule.
//
// The torn-tail rule (torn writes are not corruption; corruption is not a torn write). Only the last segment can
// end in the middle of a write, because a segment is fsynced before the next one is created; any invalid record
// in an earlier segment is damage. In the last segment, the first invalid record is a torn tail, cut off and
// reported (`RecoveredLog.tornTail`, which the caller logs), only when no valid record starts anywhere after it
// and one of these holds:
//   1. it is incomplete: fewer bytes than a header remain, or its length runs past the end of the file (a write
//      the crash interrupted), unless restoring a single bit of that length makes it a whole record ending
//      exactly at the end of the file with a matching CRC (a damaged length of a complete record);
//   2. it is complete (its length fits in the file) but fails its CRC, and it holds unwritten space: every one of
//      its bytes is zero (a zero-filled or preallocated tail), or it covers a whole 512-byte sector, aligned in
//      the file, that is all zeros (a sector the crash left unwritten; the rule of etcd's WAL).
// Everything else is damage, and recovery stops with an error naming the file and offset so that the node does
// not start: in particular a complete final record with non-zero garbage failing its CRC (it may have been
// fsynced and acknowledged: a vote, or an entry a leader counted), a record with a valid CRC but a malformed
// body, and a valid record over the configured size limit (written under a larger limit). Nothing in a real
// torn tail was acknowledged, since acknowledgement waits for the sync that would have made it whole.
// Known limits of the rule: a complete record that legitimately contains an aligned sector of zeros and is then
// damaged is taken for torn; a torn write that leaves only part of a sector unwritten at a record's end is
// refused as damage (the node is rebuilt from its peers rather than risk dropping a synced record).
//
// Compaction and gaps. Only `compact(to:)` and `reset(to:)` delete segments, oldest first, each deletion durable
// before the next, and only after the base that allows it is durable; so the segments on disk are always
// consecutive in sequence, and when the first one is not segment 1 a base must cover every entry that the
// deleted ones held. The first segment's name says where the log stood when it was created (its first index), so
// replay resumes there; if the entries it then finds do not start right after the base, entries were lost
// (a segment deleted by hand, or a base record damaged into a torn tail) and recovery stops with `.corrupt`.

/// The size of a disk sector as the torn-write rule assumes it: a write is torn at sector boundaries.
let sectorBytes = 512

/// A segment file's identity: `wal-<sequence, 16 digits>-<first index, 20 digits>.log`. The sequence orders the
/// segments (indexes alone cannot, since a truncation can make a later segment start at a lower index); the first
/// index is the index the log expected next when the segment was created (0 when the log was still empty): every
/// entry live before the segment was created has a lower index, which is what lets compaction decide that the
/// segments before it may go, and recovery resume the log where they left it.
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

func zeroPadded(_ value: UInt64, _ width: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// Everything recovery learned, including what the writer needs to continue.
struct RecoveryResult {
    var recovered: RecoveredLog
    var indexState: LogIndexState
    var segments: [SegmentName]
    /// The size of each segment in bytes, in the order of `segments` (the last after any torn tail was cut).
    var segmentSizes: [Int64]
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
        if let first = segments.first, first.sequence > 1, first.firstIndex > 0 {
            // The segments before this one were deleted by a compaction or a reset: the log resumes where they
            // left it, so that a gap between the base and this segment's entries shows.
            replay.indexState = LogIndexState(nextIndex: first.firstIndex)
        }
        var segmentSizes: [Int64] = []
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
            segmentSizes.append(Int64(validBytes.end))
        }
        if let first = segments.first { try checkNothingIsMissing(before: first, replay) }
        let recovered = RecoveredLog(
            hardState: replay.hardState, appliedIndex: replay.appliedIndex, entries: replay.entries,
            tornTail: tornTail, segmentCount: segments.count, base: replay.indexState.base)
        return RecoveryResult(
            recovered: recovered, indexState: replay.indexState, segments: segments, segmentSizes: segmentSizes)
    }

    /// When segments before `first` were deleted, checks that a base covers every entry they held (see the
    /// module header): the entries replayed must start right after the base.
    private func checkNothingIsMissing(before first: SegmentName, _ replay: ReplayState) throws(WALError) {
        guard first.sequence > 1 else { return }
        guard let base = replay.indexState.base else {
            throw .corrupt(
                file: first.fileName, offset: 0,
                reason: "segments 1 through \(first.sequence - 1) are missing and no snapshot base covers the "
                    + "entries they held")
        }
        // A segment created while the log was empty had no entry before it; the log may start after the base.
        guard first.firstIndex > 0, let nextIndex = replay.indexState.nextIndex else { return }
        let start = replay.entries.first?.index ?? nextIndex
        if start != base.index + 1 {
            throw .corrupt(
                file: first.fileName, offset: 0,
                reason: "entries \(base.index + 1) through \(start - 1) are missing: the snapshot base covers "
                    + "entries through \(base.index) but the log resumes at \(start)")
        }
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
                case .invalid(let invalid):
                    guard isLast, invalid.kind != .overLimit, invalid.kind != .malformed,
                        !validRecordExists(in: buffer, after: offset)
                    else {
                        return .failure(.corrupt(file: name, offset: Int64(offset), reason: invalid.reason))
                    }
                    if let damage = damageAtTail(invalid, in: buffer, at: offset) {
                        return .failure(.corrupt(file: name, offset: Int64(offset), reason: damage))
                    }
                    return .success((offset, invalid.reason))
                }
            }
            return .success((offset, ""))
        }
        return try outcome.get()
    }

    /// Applies the torn-tail rule of the module header to the last invalid record of the last segment: nil when
    /// it is a torn write, else why it is damage.
    private func damageAtTail(_ invalid: InvalidRecord, in buffer: UnsafeRawBufferPointer, at offset: Int)
        -> String?
    {
        switch invalid.kind {
        case .incomplete:
            if lengthIsOneBitFromACompleteRecord(in: buffer, at: offset) {
                return "\(invalid.reason), but with one bit of its length restored it is a whole record with a "
                    + "matching CRC: a damaged length, not a torn write"
            }
            return nil
        case .crcMismatch(let end):
            if isAllZero(buffer, offset..<end) || containsZeroSector(buffer, offset..<end) { return nil }
            return "CRC mismatch in a complete final record holding no unwritten (zero) sector: damage, not a torn "
                + "write"
        case .overLimit, .malformed:
            return invalid.reason  // Whole records with a matching CRC: never torn (the caller checks first).
        }
    }

    /// True when the record at `offset` would end exactly at the end of the buffer, with a matching CRC, if one
    /// bit of its stored length were flipped.
    private func lengthIsOneBitFromACompleteRecord(in buffer: UnsafeRawBufferPointer, at offset: Int) -> Bool {
        let remaining = buffer.count - offset
        guard remaining >= recordHeaderBytes, remaining - recordHeaderBytes <= Int(UInt32.max) else { return false }
        let stored = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        let fitting = UInt32(remaining - recordHeaderBytes)
        guard (stored ^ fitting).nonzeroBitCount == 1 else { return false }
        var lengthBytes = fitting.littleEndian
        let lengthCRC = withUnsafeBytes(of: &lengthBytes) { CRC32C.checksum($0) }
        let storedCRC = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
        return CRC32C.update(lengthCRC, UnsafeRawBufferPointer(rebasing: buffer[(offset + 8)...])) == storedCRC
    }

    private func isAllZero(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        buffer[range].allSatisfy { $0 == 0 }
    }

    /// True when `range` covers a whole sector (aligned in the file) that is all zeros.
    private func containsZeroSector(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        var sector = (range.lowerBound + sectorBytes - 1) / sectorBytes * sectorBytes
        while sector + sectorBytes <= range.upperBound {
            if isAllZero(buffer, sector..<(sector + sectorBytes)) { return true }
            sector += sectorBytes
        }
        return false
    }

    /// True when a valid record (or a whole one over the size limit) starts at any offset after `offset`. Only
    /// called once, for the first invalid record of the last segment; most offsets are rejected by their length
    /// field before any CRC is computed.
    private func validRecordExists(in buffer: UnsafeRawBufferPointer, after offset: Int) -> Bool {
        var candidate = offset + 1
        while candidate + recordHeaderBytes <= buffer.count {
            switch decoder.read(buffer, at: candidate) {
            case .record:
                return true
            case .invalid(let invalid) where invalid.kind == .overLimit:
                return true
            case .invalid:
                candidate += 1
            }
        }
        return false
    }
}

/// The log as replay rebuilds it, record by record.
struct ReplayState {
    var hardState: StoredHardState?
    var appliedIndex: UInt64 = 0
    /// Invariant: indexes are consecutive and above the base's, and `indexState` expects the index after the last
    /// entry.
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
        case .base(let base, reset: false):
            if let problem = indexState.onCompaction(to: base) { return problem }
            // Usually nothing to drop: every segment starts with a copy of the current base.
            let covered = entries.prefix { $0.index <= base.index }.count
            if covered > 0 { entries.removeFirst(covered) }
        case .base(let base, reset: true):
            if let problem = indexState.onReset(to: base) { return problem }
            entries.removeAll()
        }
        assert(entries.last.map { $0.index + 1 == indexState.nextIndex } ?? true)
        return nil
    }
}
