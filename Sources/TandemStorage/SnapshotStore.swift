// Snapshot files: where a node keeps the app state that lets the write-ahead log forget the entries before it.
//
// What it owns: the snapshot directory (usually `<dataDir>/snapshots`, created 0700; files 0600) and its files:
//   snapshot-<index, 20 digits>-<term, 20 digits>.snap        a complete snapshot (only ever created by a rename)
//   snapshot-<index>-<term>.snap.tmp                           one being written by this node (SnapshotWriter)
//   receiving-<index>-<term>-<payload CRC, 8 hex>.part         one being received from a peer (SnapshotReceiver)
//   snapshot-<index>-<term>.snap.corrupt                       one that failed its CRC, kept for the operator
//
// File format: a fixed header of `SnapshotStore.headerBytes` bytes at offset 0, then the payload (opaque bytes,
// the app's state). Header, little-endian:
//   0  magic "TNDSNAP1"          8  format version u32 (1)     12 reserved u32 (0)
//   16 index u64                 24 term u64                    32 payloadBytes u64
//   40 payload CRC32C u32        44 reserved (16 zero bytes)    60 CRC32C of bytes 0..<60
// The writer reserves the header, streams the payload, then writes the real header, fsyncs the file, renames it
// into place and fsyncs the directory: a `.snap` file is complete or absent, never half there. A peer's snapshot is
// received as the same file byte for byte (header included), so the receiver checks exactly what the sender had.
//
// Memory: nothing here holds a whole snapshot; files are streamed in chunks of at most `chunkBytes`.
//
// Errors: a failing snapshot operation concerns that snapshot only; it never poisons the write-ahead log, and
// `WALError.isFatal` (which speaks for the log) does not apply: the caller decides (usually: abandon that snapshot,
// or that transfer, and try again later).
//
// Threading: the store has no mutable state, so its methods may be called from any thread at once (the file
// system orders them). A writer or receiver holds an exclusive flock on its staging file, which is how `prune`
// (from this process or another) tells a staging file in use from a stale one. Writers, receivers and readers are
// each used by one thread at a time.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A snapshot's identity: the last log index and its term that the snapshot covers. Ordered by index, then term.
public struct SnapshotID: Hashable, Sendable, Comparable {
    public var index: UInt64
    public var term: UInt64

    public init(index: UInt64, term: UInt64) {
        self.index = index
        self.term = term
    }

    public static func < (left: SnapshotID, right: SnapshotID) -> Bool {
        (left.index, left.term) < (right.index, right.term)
    }
}

/// A complete snapshot file, as its header describes it.
public struct SnapshotInfo: Hashable, Sendable {
    public var id: SnapshotID
    /// The size of the payload (the file less its header).
    public var payloadBytes: UInt64
    /// The CRC32C of the payload.
    public var payloadCRC: UInt32
    /// The size of the whole file: `SnapshotStore.headerBytes + payloadBytes`.
    public var fileBytes: UInt64
    /// The file's full path.
    public var path: String

    public init(id: SnapshotID, payloadBytes: UInt64, payloadCRC: UInt32, fileBytes: UInt64, path: String) {
        self.id = id
        self.payloadBytes = payloadBytes
        self.payloadCRC = payloadCRC
        self.fileBytes = fileBytes
        self.path = path
    }
}

/// The header at the start of every snapshot file (layout at the top of this file).
struct SnapshotHeader: Equatable {
    static let magic = Array("TNDSNAP1".utf8)
    static let formatVersion: UInt32 = 1
    static let bytes = 64

    var id: SnapshotID
    var payloadBytes: UInt64
    var payloadCRC: UInt32

    func encoded() -> [UInt8] {
        var bytes = Self.magic
        appendLittleEndian(UInt64(Self.formatVersion), byteCount: 4, to: &bytes)
        appendLittleEndian(0, byteCount: 4, to: &bytes)
        appendLittleEndian(id.index, byteCount: 8, to: &bytes)
        appendLittleEndian(id.term, byteCount: 8, to: &bytes)
        appendLittleEndian(payloadBytes, byteCount: 8, to: &bytes)
        appendLittleEndian(UInt64(payloadCRC), byteCount: 4, to: &bytes)
        bytes += repeatElement(0, count: Self.bytes - 4 - bytes.count)
        appendLittleEndian(UInt64(CRC32C.checksum(bytes)), byteCount: 4, to: &bytes)
        assert(bytes.count == Self.bytes)
        return bytes
    }

    /// Decodes a header, or explains why `bytes` is not one.
    static func decode(_ bytes: UnsafeRawBufferPointer) -> Result<SnapshotHeader, SnapshotHeaderProblem> {
        guard bytes.count >= Self.bytes else { return .failure(.init("the file is shorter than a header")) }
        guard bytes.prefix(8).elementsEqual(magic) else { return .failure(.init("not a snapshot file (bad magic)")) }
        let storedCRC = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 60, as: UInt32.self))
        guard storedCRC == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<60])) else {
            return .failure(.init("header CRC mismatch"))
        }
        let version = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        guard version == formatVersion else { return .failure(.init("unknown snapshot format version \(version)")) }
        guard bytes[12..<16].allSatisfy({ $0 == 0 }), bytes[44..<60].allSatisfy({ $0 == 0 }) else {
            return .failure(.init("reserved header bytes are not zero"))
        }
        func load(_ offset: Int) -> UInt64 {
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
        return .success(
            SnapshotHeader(
                id: SnapshotID(index: load(16), term: load(24)), payloadBytes: load(32),
                payloadCRC: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 40, as: UInt32.self))))
    }

    /// Reads and decodes the header of the open file.
    static func read(_ descriptor: Int32, path: String) throws(WALError) -> Result<
        SnapshotHeader, SnapshotHeaderProblem
    > {
        var header = [UInt8](repeating: 0, count: Self.bytes)
        let count = try header.withMutableBytes { buffer throws(WALError) in
            try FileIO.readFully(descriptor, into: buffer, count: Self.bytes, at: 0, path: path)
        }
        return header.withUnsafeBytes { decode(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
    }
}

struct SnapshotHeaderProblem: Error, Equatable {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}

private func appendLittleEndian(_ value: UInt64, byteCount: Int, to bytes: inout [UInt8]) {
    for byte in 0..<byteCount { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * byte))) }
}

/// The names of the snapshot directory's files (see the top of this file).
enum SnapshotFileName {
    static func complete(_ id: SnapshotID) -> String {
        "snapshot-\(zeroPadded(id.index, 20))-\(zeroPadded(id.term, 20)).snap"
    }

    static func staging(_ id: SnapshotID) -> String { complete(id) + ".tmp" }

    static func corrupt(_ id: SnapshotID) -> String { complete(id) + ".corrupt" }

    static func receiving(_ id: SnapshotID, payloadCRC: UInt32) -> String {
        let hex = String(payloadCRC, radix: 16)
        let crc = String(repeating: "0", count: 8 - hex.count) + hex
        return "receiving-\(zeroPadded(id.index, 20))-\(zeroPadded(id.term, 20))-\(crc).part"
    }

    /// The id of a complete snapshot's name, with `suffix` after `.snap` ("" for the complete file itself).
    static func parseSnapshot(_ name: String, suffix: String = "") -> SnapshotID? {
        let ending = ".snap" + suffix
        guard name.hasPrefix("snapshot-"), name.hasSuffix(ending) else { return nil }
        let parts = name.dropFirst(9).dropLast(ending.count).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ $0.count == 20 }), let index = UInt64(parts[0]),
            let term = UInt64(parts[1])
        else { return nil }
        return SnapshotID(index: index, term: term)
    }

    /// The id of a receiving file's name.
    static func parseReceiving(_ name: String) -> SnapshotID? {
        guard name.hasPrefix("receiving-"), name.hasSuffix(".part") else { return nil }
        let parts = name.dropFirst(10).dropLast(5).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 20, parts[1].count == 20, parts[2].count == 8,
            let index = UInt64(parts[0]), let term = UInt64(parts[1]), UInt32(parts[2], radix: 16) != nil
        else { return nil }
        return SnapshotID(index: index, term: term)
    }
}

/// The snapshot files of one node. See the top of this file for the names, the format and the threading rules.
public final class SnapshotStore: @unchecked Sendable {
    /// The snapshot directory.
    public let directory: String
    /// The largest snapshot file (header included) this store writes, receives or lists; a header claiming more is
    /// not a snapshot this node will use.
    public let maxFileBytes: UInt64

    /// The size of the fixed header at the start of every snapshot file.
    public static let headerBytes = SnapshotHeader.bytes
    /// The default of `maxFileBytes`: 1 TiB.
    public static let defaultMaxFileBytes: UInt64 = 1 << 40
    /// The most bytes any snapshot operation buffers at once.
    public static let chunkBytes = 1 << 20
    /// Room left free on the disk beyond a received snapshot: the write-ahead log shares it.
    public static let diskReserveBytes: UInt64 = 64 << 20

    /// The bytes an unprivileged writer may still use on the file system holding `path`; nil when unknown.
    public static func freeDiskBytes(_ path: String) -> UInt64? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return UInt64(info.f_bavail) * UInt64(info.f_frsize)
    }

    /// How many snapshots set aside as corrupt are kept for the operator (the newest by id).
    public static let corruptFilesKept = 2

    /// Opens the snapshot directory `directory`, creating it (and its missing parents) like
    /// `WriteAheadLog.prepareDirectory`: mode 0700, each new entry fsynced into its parent.
    /// - Throws: `.io` or `.fsyncFailed` when the directory cannot be created.
    public init(directory: String, maxFileBytes: UInt64 = SnapshotStore.defaultMaxFileBytes) throws(WALError) {
        precondition(maxFileBytes >= UInt64(SnapshotStore.headerBytes), "a snapshot file holds at least its header")
        try FileIO.prepareDirectory(directory)
        self.directory = directory
        self.maxFileBytes = maxFileBytes
    }

    /// The complete snapshots, newest first, judged by their headers only (cheap: the payload is not read; use
    /// `verify` or `latestVerified` before trusting one). A `.snap` file whose header is damaged, disagrees with its
    /// name or with the file's size is left out (`latestVerified` sets it aside).
    public func list() -> [SnapshotInfo] { scan().complete }

    /// Reads the whole payload (in chunks) and checks the header and the CRC against `info`. A file that fails is
    /// renamed to `<name>.corrupt` (only the newest `corruptFilesKept` of those are kept) and false returned; a
    /// file that cannot be opened (gone, or no descriptor free) returns false and is left alone.
    public func verify(_ info: SnapshotInfo) -> Bool {
        switch check(info) {
        case .valid:
            return true
        case .damaged:
            setAside(info.path)
            return false
        case .unreadable:
            return false
        }
    }

    /// The newest snapshot that verifies. Every newer one that fails is set aside as corrupt (see `verify`) and
    /// the next older tried; nil when none verifies.
    public func latestVerified() -> SnapshotInfo? {
        let (complete, damaged) = scan()
        for path in damaged { setAside(path) }
        return complete.first { verify($0) }
    }

    /// Starts writing the snapshot `id` in the staging file `snapshot-<id>.snap.tmp` (an earlier stale one is
    /// overwritten). `finish()` puts it in place.
    /// - Throws: `.locked` when a writer of this process or another is writing the same id; `.io` or
    ///   `.writeFailed` from the disk.
    public func beginWrite(id: SnapshotID) throws(WALError) -> SnapshotWriter {
        try SnapshotWriter(
            id: id, directory: directory, maxPayloadBytes: maxFileBytes - UInt64(SnapshotStore.headerBytes))
    }

    /// Starts, or resumes, receiving a peer's snapshot file `id` of `fileBytes` bytes (header included) whose
    /// payload has CRC `payloadCRC`, into `receiving-<index>-<term>-<crc hex>.part`. When that file is already
    /// there (an earlier attempt, even before a crash), the receiver resumes at its size: `offset` tells the
    /// sender where to continue. A staging file longer than `fileBytes`, or whose header disagrees with the id,
    /// size or CRC, is emptied and the transfer starts over.
    /// Before anything is written, the disk must have room for the rest of the file plus `reserveBytes` (kept
    /// for the write-ahead log, which shares the disk): a snapshot that cannot fit is refused at once, not after
    /// it filled the disk and stopped the log.
    /// - Throws: `.io` (errno EFBIG) when `fileBytes` is below the header size or above `maxFileBytes`; `.io`
    ///   (errno ENOSPC) when the disk lacks room; `.locked` when another receiver holds that staging file; `.io`
    ///   from the disk.
    public func beginReceive(
        id: SnapshotID, fileBytes: UInt64, payloadCRC: UInt32, reserveBytes: UInt64 = SnapshotStore.diskReserveBytes,
        freeBytes: (String) -> UInt64? = SnapshotStore.freeDiskBytes
    ) throws(WALError) -> SnapshotReceiver {
        let name = SnapshotFileName.receiving(id, payloadCRC: payloadCRC)
        guard fileBytes >= UInt64(SnapshotStore.headerBytes), fileBytes <= maxFileBytes else {
            throw .io(
                operation: "receive a snapshot file of \(fileBytes) bytes (accepted: \(SnapshotStore.headerBytes) "
                    + "to \(maxFileBytes))", path: directory + "/" + name, errno: EFBIG)
        }
        if let free = freeBytes(directory) {
            var status = stat()
            let received = stat(directory + "/" + name, &status) == 0 ? UInt64(max(0, status.st_size)) : 0
            let needed = fileBytes - min(received, fileBytes) + reserveBytes
            guard free >= needed else {
                throw .io(
                    operation: "receive a snapshot file of \(fileBytes) bytes: \(free) bytes free on the disk, "
                        + "\(needed) needed (the rest of the file and \(reserveBytes) kept for the log)",
                    path: directory + "/" + name, errno: ENOSPC)
            }
        }
        return try SnapshotReceiver(
            id: id, fileBytes: fileBytes, payloadCRC: payloadCRC, directory: directory, name: name)
    }

    /// Deletes all but the newest `keep` complete snapshots, every stale staging file (`*.tmp`, and `.part` files
    /// of ids other than `exceptReceiving`), and the corrupt files beyond the newest `corruptFilesKept`. A staging
    /// file a writer or receiver holds (its flock) is never deleted. Best effort: a file that cannot be deleted is
    /// left for the next prune.
    public func prune(keep: Int, exceptReceiving: SnapshotID?) {
        precondition(keep >= 0)
        var removed = false
        for info in list().dropFirst(keep) {
            removed = (try? FileIO.removeFile(info.path)) != nil || removed
        }
        for name in (try? FileIO.listDirectory(directory)) ?? [] {
            let stale: Bool
            if SnapshotFileName.parseSnapshot(name, suffix: ".tmp") != nil {
                stale = true
            } else if let id = SnapshotFileName.parseReceiving(name) {
                stale = id != exceptReceiving
            } else {
                stale = false
            }
            if stale { removed = removeUnlessLocked(directory + "/" + name) || removed }
        }
        removed = trimCorruptFiles() || removed
        if removed { try? FileIO.syncDirectory(directory) }
    }

    /// The bytes the directory's files take (their sizes), for metrics and for bounding what staging may use.
    public func diskBytes() -> UInt64 {
        var total: UInt64 = 0
        for name in (try? FileIO.listDirectory(directory)) ?? [] {
            var status = stat()
            if lstat(directory + "/" + name, &status) == 0, status.st_mode & S_IFMT == S_IFREG {
                total += UInt64(status.st_size)
            }
        }
        return total
    }

    // MARK: - Checking files

    private enum Verdict: Equatable {
        case valid
        /// The file is there but is not the snapshot `info` describes.
        case damaged(reason: String)
        /// The file could not be opened; nothing is known about its content.
        case unreadable
    }

    /// Reads every `.snap` file's header: the complete ones (newest first) and the paths of those whose header
    /// is damaged or disagrees with the name or the size. A file that cannot be opened or read is in neither.
    private func scan() -> (complete: [SnapshotInfo], damaged: [String]) {
        var complete: [SnapshotInfo] = []
        var damaged: [String] = []
        for name in (try? FileIO.listDirectory(directory)) ?? [] {
            guard let id = SnapshotFileName.parseSnapshot(name) else { continue }
            let path = directory + "/" + name
            guard let descriptor = try? FileIO.openFile(path, O_RDONLY) else { continue }
            defer { FileIO.closeFile(descriptor) }
            guard let header = try? SnapshotHeader.read(descriptor, path: path) else { continue }
            switch header {
            case .success(let header)
            where header.id == id && header.payloadBytes <= maxFileBytes - UInt64(SnapshotStore.headerBytes)
                && FileIO.size(of: descriptor) == Int64(header.payloadBytes) + Int64(SnapshotStore.headerBytes):
                complete.append(
                    SnapshotInfo(
                        id: id, payloadBytes: header.payloadBytes, payloadCRC: header.payloadCRC,
                        fileBytes: UInt64(SnapshotStore.headerBytes) + header.payloadBytes, path: path))
            default:
                damaged.append(path)
            }
        }
        return (complete.sorted { $0.id > $1.id }, damaged)
    }

    /// Checks the file at `info.path` against `info`: header, size and payload CRC.
    private func check(_ info: SnapshotInfo) -> Verdict {
        guard let descriptor = try? FileIO.openFile(info.path, O_RDONLY) else { return .unreadable }
        defer { FileIO.closeFile(descriptor) }
        do {
            let expected = SnapshotHeader(id: info.id, payloadBytes: info.payloadBytes, payloadCRC: info.payloadCRC)
            switch try SnapshotHeader.read(descriptor, path: info.path) {
            case .failure(let problem):
                return .damaged(reason: problem.reason)
            case .success(let header) where header != expected:
                return .damaged(reason: "the header describes \(header), not \(expected)")
            case .success:
                break
            }
            guard FileIO.size(of: descriptor) == Int64(info.fileBytes) else {
                return .damaged(reason: "the file is not \(info.fileBytes) bytes long")
            }
            let crc = try payloadChecksum(
                descriptor, payloadBytes: info.payloadBytes, path: info.path)
            return crc == info.payloadCRC ? .valid : .damaged(reason: "payload CRC mismatch")
        } catch {
            // Opened but unreadable (EIO, a file shorter than its header says): the file is failing.
            return .damaged(reason: error.description)
        }
    }

    /// Renames a failing snapshot to `<name>.corrupt` for the operator, then keeps only the newest few of those.
    private func setAside(_ path: String) {
        guard (try? FileIO.renameFile(path, to: path + ".corrupt")) != nil else { return }
        _ = trimCorruptFiles()
        try? FileIO.syncDirectory(directory)
    }

    /// Deletes the corrupt files beyond the newest `corruptFilesKept`; true when it deleted any.
    private func trimCorruptFiles() -> Bool {
        let names = ((try? FileIO.listDirectory(directory)) ?? []).compactMap { name in
            SnapshotFileName.parseSnapshot(name, suffix: ".corrupt").map { (id: $0, name: name) }
        }
        var removed = false
        for old in names.sorted(by: { $0.id > $1.id }).dropFirst(SnapshotStore.corruptFilesKept) {
            removed = (try? FileIO.removeFile(directory + "/" + old.name)) != nil || removed
        }
        return removed
    }

    /// Deletes the staging file at `path` unless a writer or receiver holds its lock; true when it deleted it.
    private func removeUnlessLocked(_ path: String) -> Bool {
        guard let descriptor = try? FileIO.openFile(path, O_RDONLY) else { return false }
        defer { FileIO.closeFile(descriptor) }
        // Deleted while holding the lock, so that no writer can take the file in between.
        guard FileIO.tryLock(descriptor) else { return false }
        return (try? FileIO.removeFile(path)) != nil
    }
}

/// The CRC32C of the `payloadBytes` bytes after the header of the open snapshot file, read in bounded chunks.
/// - Throws: `.io` when a read fails, `.corrupt` when the file ends before the payload does.
func payloadChecksum(_ descriptor: Int32, payloadBytes: UInt64, path: String) throws(WALError) -> UInt32 {
    var chunk = [UInt8](repeating: 0, count: Int(min(UInt64(SnapshotStore.chunkBytes), payloadBytes)))
    var crc: UInt32 = 0
    var done: UInt64 = 0
    while done < payloadBytes {
        let want = Int(min(UInt64(chunk.count), payloadBytes - done))
        let offset = UInt64(SnapshotStore.headerBytes) + done
        let got = try chunk.withMutableBytes { buffer throws(WALError) in
            try FileIO.readFully(descriptor, into: buffer, count: want, at: offset, path: path)
        }
        guard got == want else {
            throw .corrupt(
                file: String(path.split(separator: "/").last ?? Substring(path)), offset: Int64(offset) + Int64(got),
                reason: "the snapshot file ends before its payload does")
        }
        crc = chunk.withUnsafeBytes { CRC32C.update(crc, UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
        done += UInt64(got)
    }
    return crc
}
