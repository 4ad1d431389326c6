// The on-disk record format and the rules that a sequence of records must obey.
//
// A record is `[length u32][crc32c u32][type u8][body]`, little-endian, where `length` is the byte count of the
// body and the CRC covers the length field, the type byte and the body (so a flipped length bit is caught too).
// Bodies:
//   entry        (1): index u64, term u64, payload (the rest)
//   hardState    (2): term u64, commit u64, voted u8 (0 none, 1 some), votedFor length u16, votedFor UTF-8
//   appliedIndex (3): index u64
//   truncate     (4): fromIndex u64 — every entry at or after fromIndex is void; later entries replace them
//   base         (5): index u64, term u64, reset u8 — entries through index are covered by a snapshot. reset 0
//                     (compaction): they are void, the entries after index are kept. reset 1 (an installed
//                     snapshot replaced the log): every entry is void and the next one has index + 1. Optionally
//                     followed by configuration length u32 and that many bytes: the cluster configuration in force
//                     at index (records without it, 17 bytes, were written before membership changes existed).
// Type 0 never exists, so zero-filled space never parses as a record.

/// The kinds of record.
enum RecordType: UInt8 {
    case entry = 1
    case hardState = 2
    case appliedIndex = 3
    case truncate = 4
    case base = 5
}

/// Bytes before a record's body: length, CRC and type.
let recordHeaderBytes = 9
/// The fixed part of an entry body: index and term.
let entryFixedBytes = 16
/// Bounds the votedFor string, which is a node id.
let votedForMaxBytes = 1024
/// The encoded size of a base record.
func baseRecordBytes(_ base: StoredLogBase) -> Int {
    recordHeaderBytes + 17 + (base.configuration.map { 4 + $0.count } ?? 0)
}

/// A decoded record.
enum Record: Equatable {
    case entry(WALEntry)
    case hardState(StoredHardState)
    case appliedIndex(UInt64)
    case truncate(fromIndex: UInt64)
    case base(StoredLogBase, reset: Bool)
}

/// Appends encoded records to a byte buffer.
struct RecordEncoder {
    /// Encodes `record` onto the end of `buffer`.
    static func append(_ record: Record, to buffer: inout [UInt8]) {
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: 8))  // Length and CRC, filled in below.
        switch record {
        case .entry(let entry):
            buffer.append(RecordType.entry.rawValue)
            appendUInt64(entry.index, to: &buffer)
            appendUInt64(entry.term, to: &buffer)
            buffer.append(contentsOf: entry.payload)
        case .hardState(let state):
            buffer.append(RecordType.hardState.rawValue)
            appendUInt64(state.term, to: &buffer)
            appendUInt64(state.commit, to: &buffer)
            let vote = Array((state.votedFor ?? "").utf8)
            precondition(vote.count <= votedForMaxBytes, "votedFor is a node id, at most \(votedForMaxBytes) bytes")
            buffer.append(state.votedFor == nil ? 0 : 1)
            buffer.append(UInt8(vote.count & 0xFF))
            buffer.append(UInt8(vote.count >> 8))
            buffer.append(contentsOf: vote)
        case .appliedIndex(let index):
            buffer.append(RecordType.appliedIndex.rawValue)
            appendUInt64(index, to: &buffer)
        case .truncate(let fromIndex):
            buffer.append(RecordType.truncate.rawValue)
            appendUInt64(fromIndex, to: &buffer)
        case .base(let base, let reset):
            buffer.append(RecordType.base.rawValue)
            appendUInt64(base.index, to: &buffer)
            appendUInt64(base.term, to: &buffer)
            buffer.append(reset ? 1 : 0)
            if let configuration = base.configuration {
                let count = UInt32(configuration.count)
                for shift in stride(from: 0, to: 32, by: 8) { buffer.append(UInt8(truncatingIfNeeded: count >> shift)) }
                buffer.append(contentsOf: configuration)
            }
        }
        let bodyBytes = UInt32(buffer.count - start - recordHeaderBytes)
        storeUInt32(bodyBytes, at: start, in: &buffer)
        let crc = buffer.withUnsafeBytes { bytes in
            let lengthAndCRC = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + 4)])
            let typeAndBody = UnsafeRawBufferPointer(rebasing: bytes[(start + 8)...])
            return CRC32C.update(CRC32C.checksum(lengthAndCRC), typeAndBody)
        }
        storeUInt32(crc, at: start + 4, in: &buffer)
    }

    /// The encoded size of an entry record with `payloadBytes` of payload.
    static func entryRecordBytes(payloadBytes: Int) -> Int { recordHeaderBytes + entryFixedBytes + payloadBytes }

    private static func appendUInt64(_ value: UInt64, to buffer: inout [UInt8]) {
        for shift in stride(from: 0, to: 64, by: 8) { buffer.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    private static func storeUInt32(_ value: UInt32, at offset: Int, in buffer: inout [UInt8]) {
        for byte in 0..<4 { buffer[offset + byte] = UInt8(truncatingIfNeeded: value >> (8 * byte)) }
    }
}

/// The outcome of reading one record.
enum RecordRead: Equatable {
    /// A valid record and the offset just after it.
    case record(Record, nextOffset: Int)
    /// No valid record starts here, and why.
    case invalid(InvalidRecord)
}

/// Why no valid record starts at an offset: the facts recovery needs to tell a torn write from damage.
struct InvalidRecord: Equatable {
    enum Kind: Equatable {
        /// The data ends before the record does: fewer bytes than a header, or a length (possibly over the
        /// limit) that runs past the end.
        case incomplete
        /// The whole record is present (its length fits) but its CRC does not match; it ends at `end`.
        case crcMismatch(end: Int)
        /// The whole record is present and its CRC matches, but its length is over this decoder's limit: it was
        /// written under a larger limit. Never a torn write.
        case overLimit
        /// The CRC matches but the body is not a record of its type. Never a torn write.
        case malformed
    }

    var kind: Kind
    var reason: String
}

/// Reads records out of a segment's bytes, checking each one's bounds and CRC.
struct RecordDecoder {
    /// The largest body any valid record can have.
    let maxBodyBytes: Int

    init(maxEntryPayloadBytes: Int) {
        maxBodyBytes = entryFixedBytes + maxEntryPayloadBytes
    }

    /// Reads the record at `offset` of `bytes`.
    func read(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> RecordRead {
        let remaining = bytes.count - offset
        guard remaining >= recordHeaderBytes else {
            return .invalid(InvalidRecord(kind: .incomplete, reason: "incomplete record header"))
        }
        let bodyBytes = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        guard bodyBytes <= remaining - recordHeaderBytes else {
            return .invalid(
                InvalidRecord(kind: .incomplete, reason: "record length \(bodyBytes) runs past the end of the file"))
        }
        let end = offset + recordHeaderBytes + bodyBytes
        guard Self.crcMatches(bytes, at: offset, end: end) else {
            return .invalid(InvalidRecord(kind: .crcMismatch(end: end), reason: "CRC mismatch"))
        }
        guard bodyBytes <= maxBodyBytes else {
            return .invalid(
                InvalidRecord(
                    kind: .overLimit,
                    reason: "record of \(bodyBytes) bytes is over the limit of \(maxBodyBytes) bytes (written under a "
                        + "larger limit: open the log with a maxEntryPayloadBytes at least as large as when it was written)"
                ))
        }
        let body = UnsafeRawBufferPointer(rebasing: bytes[(offset + recordHeaderBytes)..<end])
        guard let record = decodeBody(type: bytes[offset + 8], body) else {
            return .invalid(InvalidRecord(kind: .malformed, reason: "malformed record of type \(bytes[offset + 8])"))
        }
        return .record(record, nextOffset: end)
    }

    /// True when the CRC stored at `offset` covers the record's length, type and body up to `end`.
    static func crcMatches(_ bytes: UnsafeRawBufferPointer, at offset: Int, end: Int) -> Bool {
        let storedCRC = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
        let computedCRC = CRC32C.update(
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + 4)])),
            UnsafeRawBufferPointer(rebasing: bytes[(offset + 8)..<end]))
        return storedCRC == computedCRC
    }

    private func decodeBody(type: UInt8, _ body: UnsafeRawBufferPointer) -> Record? {
        switch RecordType(rawValue: type) {
        case .entry:
            guard body.count >= entryFixedBytes else { return nil }
            return .entry(
                WALEntry(index: loadUInt64(body, 0), term: loadUInt64(body, 8), payload: Array(body[16...])))
        case .hardState:
            guard body.count >= 19, body[16] <= 1 else { return nil }
            let voteBytes = Int(body[17]) | Int(body[18]) << 8
            guard body.count == 19 + voteBytes, voteBytes <= votedForMaxBytes else { return nil }
            let votedFor = body[16] == 1 ? String(decoding: body[19...], as: UTF8.self) : nil
            return .hardState(
                StoredHardState(term: loadUInt64(body, 0), votedFor: votedFor, commit: loadUInt64(body, 8)))
        case .appliedIndex:
            guard body.count == 8 else { return nil }
            return .appliedIndex(loadUInt64(body, 0))
        case .truncate:
            guard body.count == 8 else { return nil }
            return .truncate(fromIndex: loadUInt64(body, 0))
        case .base:
            guard body.count >= 17, body[16] <= 1 else { return nil }
            var configuration: [UInt8]?
            if body.count > 17 {
                guard body.count >= 21 else { return nil }
                let count = Int(body.loadUnaligned(fromByteOffset: 17, as: UInt32.self).littleEndian)
                guard count <= StoredLogBase.configurationMaxBytes, body.count == 21 + count else { return nil }
                configuration = Array(body[21...])
            }
            return .base(
                StoredLogBase(index: loadUInt64(body, 0), term: loadUInt64(body, 8), configuration: configuration),
                reset: body[16] == 1)
        case nil:
            return nil
        }
    }

    private func loadUInt64(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}

/// The index rules of the log, as a value-type state machine shared by the write path (where a violation is a
/// programmer error) and recovery (where it is corruption).
struct LogIndexState: Equatable {
    /// The index the next entry must have, or nil while the log has never held an entry nor had a base (the first
    /// entry may then have any index, as logs written before bases existed could start anywhere).
    private(set) var nextIndex: UInt64?
    /// The latest base: entries through its index are covered by a snapshot. Invariant: when set, `nextIndex` is
    /// set and above its index.
    private(set) var base: StoredLogBase?

    init(nextIndex: UInt64? = nil) {
        self.nextIndex = nextIndex
    }

    /// Accepts an entry at `index`, or explains why it breaks the log's contiguity.
    mutating func onAppend(index: UInt64) -> String? {
        if let expected = nextIndex, index != expected {
            return "entry index \(index) where \(expected) was expected"
        }
        guard index < UInt64.max else { return "entry index overflows" }
        nextIndex = index + 1
        return nil
    }

    /// Accepts a truncation from `fromIndex`, or explains why it is out of range. Truncating at the next index
    /// is a no-op that is still recorded. Entries a base covers are in a snapshot and can never be truncated.
    mutating func onTruncate(fromIndex: UInt64) -> String? {
        guard fromIndex >= 1 else { return "truncation from index 0" }
        if let expected = nextIndex, fromIndex > expected {
            return "truncation from \(fromIndex) beyond the next index \(expected)"
        }
        if let base, fromIndex <= base.index {
            return "truncation from \(fromIndex) of entries the snapshot base through \(base.index) covers"
        }
        nextIndex = fromIndex
        return nil
    }

    /// Accepts a compaction base, or explains why it cannot follow the current one. A base equal to the current
    /// one is the copy every new segment starts with. A base at or beyond the next index covers every entry: the
    /// log then continues after it.
    mutating func onCompaction(to newBase: StoredLogBase) -> String? {
        if let base, newBase.index < base.index || (newBase.index == base.index && newBase.term != base.term) {
            return "snapshot base \(newBase.index) (term \(newBase.term)) after base \(base.index) (term \(base.term))"
        }
        guard newBase.index < UInt64.max else { return "snapshot base index overflows" }
        base = newBase
        nextIndex = max(nextIndex ?? 0, newBase.index + 1)
        return nil
    }

    /// Accepts a reset: every entry is void and the log continues after `newBase`, whatever came before.
    mutating func onReset(to newBase: StoredLogBase) -> String? {
        guard newBase.index < UInt64.max else { return "snapshot base index overflows" }
        base = newBase
        nextIndex = newBase.index + 1
        return nil
    }
}
