/// Why bytes are not a snapshot of Tandem's state. The bytes may come from a disk that lost a write or from a
/// peer: decoding never traps on them, it throws this.
struct SnapshotStateError: Error, CustomStringConvertible, Equatable {
    let description: String

    init(_ description: String) { self.description = description }
}

/// The rolling apply digest as it stands at a snapshot: `ApplyDigest`'s value, last folded index and last completed
/// block, so that a replica starting from the snapshot keeps comparing digests with replicas that applied the log.
struct ApplyDigestState: Equatable {
    var value: UInt64
    var index: UInt64
    var lastCompletedBlockIndex: UInt64?
    var lastCompletedBlockDigest: UInt64?

    init(value: UInt64, index: UInt64, lastCompletedBlock: (index: UInt64, digest: UInt64)?) {
        precondition(lastCompletedBlock.map { $0.index < index } ?? true, "a completed block precedes the index")
        self.value = value
        self.index = index
        lastCompletedBlockIndex = lastCompletedBlock?.index
        lastCompletedBlockDigest = lastCompletedBlock?.digest
    }

    init(_ digest: ApplyDigest) {
        self.init(value: digest.value, index: digest.index, lastCompletedBlock: digest.lastCompletedBlock)
    }

    var lastCompletedBlock: (index: UInt64, digest: UInt64)? {
        guard let index = lastCompletedBlockIndex, let digest = lastCompletedBlockDigest else { return nil }
        return (index, digest)
    }
}

/// What Tandem saves beside the app's own state in a snapshot: where the app's state stands in the log, and the
/// replicated state Tandem derived from the same entries (the idempotency table and the apply digest), so that a
/// replica that installs the snapshot decides the next entries exactly as the replicas that applied the log.
///
/// Encoding (little endian): the magic `TNDMSNAP`, a 16-bit format version, the 64-bit length of the body, the body,
/// then a 64-bit FNV-1a checksum of everything before it. The checksum catches a torn or corrupted file; it is not
/// a defence against a forger (peer links are authenticated for that).
struct TandemSnapshotState {
    static let magic: [UInt8] = Array("TNDMSNAP".utf8)
    static let formatVersion: UInt16 = 1
    /// magic + version + body length.
    static let headerBytes = 8 + 2 + 8
    static let checksumBytes = 8

    /// The last log index whose effect the app's state includes.
    var appliedIndex: UInt64
    /// The term of the entry at `appliedIndex` (0 only when `appliedIndex` is 0).
    var appliedTerm: UInt64
    /// Tandem-Time of the entry at `appliedIndex`: the log time the idempotency TTL counts from.
    var timeMs: Int64
    /// Decisions and, where this node has them, stored responses.
    var idempotency: IdempotencyTable
    var digest: ApplyDigestState

    init(
        appliedIndex: UInt64, appliedTerm: UInt64, timeMs: Int64, idempotency: IdempotencyTable,
        digest: ApplyDigestState
    ) {
        self.appliedIndex = appliedIndex
        self.appliedTerm = appliedTerm
        self.timeMs = timeMs
        self.idempotency = idempotency
        self.digest = digest
    }

    func encoded() -> [UInt8] {
        precondition(Self.isConsistent(appliedIndex, appliedTerm, idempotency, digest) == nil, "a consistent state")
        var body = StateBytesWriter()
        body.u64(appliedIndex)
        body.u64(appliedTerm)
        body.i64(timeMs)
        body.u64(digest.value)
        body.u64(digest.index)
        if let block = digest.lastCompletedBlock {
            body.u8(1)
            body.u64(block.index)
            body.u64(block.digest)
        } else {
            body.u8(0)
        }
        idempotency.encodeState(into: &body)
        var out = StateBytesWriter()
        out.raw(Self.magic)
        out.u16(Self.formatVersion)
        out.u64(UInt64(body.buffer.count))
        out.raw(body.buffer)
        out.u64(Self.checksum(out.buffer[...]))
        return out.buffer
    }

    static func decode(_ bytes: [UInt8]) throws(SnapshotStateError) -> TandemSnapshotState {
        guard bytes.count >= headerBytes + checksumBytes else {
            throw SnapshotStateError("\(bytes.count) bytes are too few for a snapshot state")
        }
        guard bytes[0..<magic.count].elementsEqual(magic) else {
            throw SnapshotStateError("the bytes do not start with the snapshot state magic")
        }
        var header = StateBytesReader(bytes[magic.count..<headerBytes])
        let version = try header.u16("format version")
        guard version == formatVersion else {
            throw SnapshotStateError("format version \(version) is not the supported \(formatVersion)")
        }
        let bodyLength = try header.u64("body length")
        guard bodyLength == UInt64(bytes.count - headerBytes - checksumBytes) else {
            throw SnapshotStateError("the body length \(bodyLength) does not match the \(bytes.count) bytes")
        }
        let checked = bytes.count - checksumBytes
        var trailer = StateBytesReader(bytes[checked...])
        guard try trailer.u64("checksum") == checksum(bytes[..<checked]) else {
            throw SnapshotStateError("the checksum does not match: the snapshot state is corrupt")
        }
        var reader = StateBytesReader(bytes[headerBytes..<checked])
        let appliedIndex = try reader.u64("applied index")
        let appliedTerm = try reader.u64("applied term")
        let timeMs = try reader.i64("time")
        let digestValue = try reader.u64("digest")
        let digestIndex = try reader.u64("digest index")
        var block: (index: UInt64, digest: UInt64)?
        switch try reader.u8("block flag") {
        case 0: block = nil
        case 1: block = (try reader.u64("block index"), try reader.u64("block digest"))
        case let flag: throw SnapshotStateError("unknown block flag \(flag)")
        }
        if let block, block.index >= digestIndex {
            throw SnapshotStateError("the last completed digest block \(block.index) is not before \(digestIndex)")
        }
        let digest = ApplyDigestState(value: digestValue, index: digestIndex, lastCompletedBlock: block)
        let idempotency = try IdempotencyTable(decodingState: &reader)
        guard reader.isAtEnd else { throw SnapshotStateError("\(reader.remaining) bytes follow the snapshot state") }
        if let problem = isConsistent(appliedIndex, appliedTerm, idempotency, digest) {
            throw SnapshotStateError(problem)
        }
        return TandemSnapshotState(
            appliedIndex: appliedIndex, appliedTerm: appliedTerm, timeMs: timeMs, idempotency: idempotency,
            digest: digest)
    }

    /// Why the parts cannot belong to one applied index, or nil: nothing may come from beyond it.
    private static func isConsistent(
        _ appliedIndex: UInt64, _ appliedTerm: UInt64, _ idempotency: IdempotencyTable, _ digest: ApplyDigestState
    ) -> String? {
        if (appliedIndex == 0) != (appliedTerm == 0) {
            return "applied index \(appliedIndex) and term \(appliedTerm) disagree about an empty log"
        }
        if digest.index > appliedIndex { return "the digest index \(digest.index) is beyond \(appliedIndex)" }
        if idempotency.lastRecordedIndex > appliedIndex {
            return "an idempotency key from index \(idempotency.lastRecordedIndex) is beyond \(appliedIndex)"
        }
        return nil
    }

    /// FNV-1a, 64 bit: stable across processes and machines.
    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return hash
    }
}

/// Little-endian, length-prefixed writing for snapshot state.
struct StateBytesWriter {
    private(set) var buffer: [UInt8] = []

    mutating func raw(_ bytes: [UInt8]) { buffer.append(contentsOf: bytes) }
    mutating func u8(_ value: UInt8) { buffer.append(value) }
    mutating func u16(_ value: UInt16) { withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) } }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) } }
    mutating func i64(_ value: Int64) { u64(UInt64(bitPattern: value)) }
    /// A 64-bit length, then the bytes.
    mutating func bytes(_ value: [UInt8]) {
        u64(UInt64(value.count))
        buffer.append(contentsOf: value)
    }
    mutating func string(_ value: String) { bytes(Array(value.utf8)) }
}

/// Reads what `StateBytesWriter` wrote. Every read checks the bytes left first, so a hostile length or count can
/// only make it throw, never read out of bounds or allocate more than the input's size.
struct StateBytesReader {
    private let input: ArraySlice<UInt8>
    private var offset: Int

    init(_ input: ArraySlice<UInt8>) {
        self.input = input
        offset = input.startIndex
    }

    var remaining: Int { input.endIndex - offset }
    var isAtEnd: Bool { remaining == 0 }

    private mutating func fixed(_ count: Int, _ what: String) throws(SnapshotStateError) -> UInt64 {
        guard remaining >= count else { throw SnapshotStateError("the bytes end inside the \(what)") }
        var value: UInt64 = 0
        for shift in 0..<count { value |= UInt64(input[offset + shift]) << (8 * UInt64(shift)) }
        offset += count
        return value
    }

    mutating func u8(_ what: String) throws(SnapshotStateError) -> UInt8 { UInt8(try fixed(1, what)) }
    mutating func u16(_ what: String) throws(SnapshotStateError) -> UInt16 { UInt16(try fixed(2, what)) }
    mutating func u32(_ what: String) throws(SnapshotStateError) -> UInt32 { UInt32(try fixed(4, what)) }
    mutating func u64(_ what: String) throws(SnapshotStateError) -> UInt64 { try fixed(8, what) }
    mutating func i64(_ what: String) throws(SnapshotStateError) -> Int64 { Int64(bitPattern: try fixed(8, what)) }

    mutating func bytes(_ what: String, maxBytes: Int = .max) throws(SnapshotStateError) -> [UInt8] {
        let length = try u64("length of the \(what)")
        guard length <= UInt64(remaining) else { throw SnapshotStateError("the \(what) runs past the end") }
        guard length <= UInt64(maxBytes) else { throw SnapshotStateError("the \(what) is longer than \(maxBytes)") }
        defer { offset += Int(length) }
        return Array(input[offset..<(offset + Int(length))])
    }

    /// Bytes that must be valid UTF-8, so that decoding them cannot change them (two different keys must never
    /// become one string).
    mutating func utf8String(_ what: String, maxBytes: Int) throws(SnapshotStateError) -> String {
        let raw = try bytes(what, maxBytes: maxBytes)
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw SnapshotStateError("the \(what) is not valid UTF-8")
        }
        return text
    }
}
