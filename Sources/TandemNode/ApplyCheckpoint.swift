import Foundation
import Glibc
import TandemStorage

/// What a node knows, at start, about how its last run ended, and the state its applier left behind.
///
/// Two files in the data directory:
/// - `running`: created (and its directory entry synced) before anything is applied, removed only after a
///   graceful stop wrote the checkpoint. Found at start, it means the previous run crashed: entries after the
///   recorded applied index may already have reached the app, and are delivered again marked as redeliveries.
/// - `apply-checkpoint`: written atomically (temporary file, fsync, rename, fsync of the directory) by a graceful
///   stop once the applier has finished the entry it was applying: the exact applied index, and an opaque payload
///   of the sidecar's own apply state (the idempotency table's stored responses). Framed with a CRC32C.
public struct ApplyCheckpoint: Equatable, Sendable {
    public var appliedIndex: UInt64
    /// Entries up to here may have reached the app in an earlier run that crashed, and were not handed out again
    /// yet: the next run must still mark them as redeliveries (0 when none). A graceful stop does not erase what
    /// a crash before it left uncertain.
    public var redeliveryThrough: UInt64
    public var payload: [UInt8]

    public init(appliedIndex: UInt64, redeliveryThrough: UInt64 = 0, payload: [UInt8]) {
        self.appliedIndex = appliedIndex
        self.redeliveryThrough = redeliveryThrough
        self.payload = payload
    }

    static let fileName = "apply-checkpoint"
    static let runningMarkerName = "running"
    private static let magic: UInt32 = 0x5441_4e43  // "TANC"
    private static let version: UInt32 = 2

    /// How the previous run ended, read at start.
    public struct Recovered: Sendable {
        /// The previous run stopped gracefully: the checkpoint's applied index is exact.
        public var cleanStop: Bool
        public var checkpoint: ApplyCheckpoint?
    }

    public enum CheckpointError: Error, Equatable {
        case io(String)
    }

    /// Reads the marker and the checkpoint, then marks this run as running (durably) before returning.
    public static func begin(directory: String) throws(CheckpointError) -> Recovered {
        let markerPath = directory + "/" + runningMarkerName
        let crashed = access(markerPath, F_OK) == 0
        let checkpoint = read(directory + "/" + fileName)
        // A first start (no checkpoint, nothing applied) is clean too.
        let recovered = Recovered(cleanStop: !crashed, checkpoint: checkpoint)
        let fd = open(markerPath, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io("cannot create \(markerPath): \(String(cString: strerror(errno)))") }
        let synced = fsync(fd) == 0
        close(fd)
        guard synced, syncDirectory(directory) else { throw .io("cannot sync \(markerPath)") }
        return recovered
    }

    /// Writes the checkpoint atomically, then removes the running marker: the next start sees a graceful stop.
    public static func finish(_ checkpoint: ApplyCheckpoint, directory: String) throws(CheckpointError) {
        let path = directory + "/" + fileName
        let temporary = path + ".tmp"
        let bytes = checkpoint.encoded()
        let fd = open(temporary, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var written = 0
        let complete = bytes.withUnsafeBytes { buffer -> Bool in
            while written < buffer.count {
                let n = write(fd, buffer.baseAddress! + written, buffer.count - written)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                written += n
            }
            return fsync(fd) == 0
        }
        close(fd)
        guard complete, rename(temporary, path) == 0, syncDirectory(directory) else {
            unlink(temporary)
            throw .io("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        guard unlink(directory + "/" + runningMarkerName) == 0 || errno == ENOENT, syncDirectory(directory) else {
            throw .io("cannot remove the running marker in \(directory)")
        }
    }

    static func read(_ path: String) -> ApplyCheckpoint? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return decode([UInt8](data))
    }

    func encoded() -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(24 + payload.count)
        append(Self.magic, to: &body)
        append(Self.version, to: &body)
        append(appliedIndex, to: &body)
        append(redeliveryThrough, to: &body)
        append(UInt64(payload.count), to: &body)
        body.append(contentsOf: payload)
        append(CRC32C.checksum(body), to: &body)
        return body
    }

    /// Nil for anything but a complete, checksummed checkpoint of this version (then the start is treated as
    /// after a crash: nothing is lost, entries are only marked as possible redeliveries).
    static func decode(_ bytes: [UInt8]) -> ApplyCheckpoint? {
        guard bytes.count >= 36 else { return nil }
        let crc = load(UInt32.self, bytes, bytes.count - 4)
        guard CRC32C.checksum(Array(bytes[0..<(bytes.count - 4)])) == crc,
            load(UInt32.self, bytes, 0) == magic, load(UInt32.self, bytes, 4) == version
        else { return nil }
        let applied = load(UInt64.self, bytes, 8)
        let redelivery = load(UInt64.self, bytes, 16)
        let length = load(UInt64.self, bytes, 24)
        guard length == UInt64(bytes.count - 36) else { return nil }
        return ApplyCheckpoint(
            appliedIndex: applied, redeliveryThrough: redelivery, payload: Array(bytes[32..<(bytes.count - 4)]))
    }

    private func append<T: FixedWidthInteger>(_ value: T, to buffer: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }

    private static func load<T: FixedWidthInteger>(_ type: T.Type, _ bytes: [UInt8], _ offset: Int) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    private static func syncDirectory(_ directory: String) -> Bool {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return fsync(fd) == 0
    }
}
