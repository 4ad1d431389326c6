// The streams in and out of the snapshot directory: writing this node's snapshot, receiving a peer's file, and
// reading one back (for the app, or to send it). Formats and names are described at the top of SnapshotStore.swift.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Opens (creating) a staging file and takes its exclusive lock, so that `prune` leaves it alone and a second
/// writer or receiver of the same file is refused.
/// - Throws: `.locked` (naming the file) when someone holds it, `.io` when it cannot be opened.
private func openLockedStagingFile(_ path: String) throws(WALError) -> Int32 {
    let descriptor = try FileIO.openFile(path, O_RDWR | O_CREAT)
    guard FileIO.tryLock(descriptor) else {
        FileIO.closeFile(descriptor)
        throw .locked(directory: path)
    }
    return descriptor
}

private func emptyFile(_ descriptor: Int32, path: String) throws(WALError) {
    if ftruncate(descriptor, 0) != 0 { throw .io(operation: "ftruncate", path: path, errno: errno) }
}

/// Writes one snapshot of this node: payload bytes streamed in, header written last, then renamed into place.
/// Dropping an unfinished writer aborts it (its staging file is deleted). Used by one thread at a time.
public final class SnapshotWriter: @unchecked Sendable {
    public let id: SnapshotID
    private let directory: String
    private let stagingPath: String
    private let finalPath: String
    private let maxPayloadBytes: UInt64
    /// The staging file. Invariant: -1 exactly after `finish` or `abort`.
    private var descriptor: Int32
    /// Payload bytes not yet written. Invariant: shorter than `SnapshotStore.chunkBytes` between calls.
    private var buffer: [UInt8] = []
    /// Payload bytes already written to the file (after the header).
    private var writtenBytes: UInt64 = 0
    private var crc: UInt32 = 0
    /// Set by a failed write: the file's tail is unknown, so the snapshot can only be abandoned.
    private var failure: WALError?

    /// The payload bytes accepted so far.
    public private(set) var payloadBytes: UInt64 = 0

    init(id: SnapshotID, directory: String, maxPayloadBytes: UInt64) throws(WALError) {
        self.id = id
        self.directory = directory
        self.finalPath = directory + "/" + SnapshotFileName.complete(id)
        self.stagingPath = directory + "/" + SnapshotFileName.staging(id)
        self.maxPayloadBytes = maxPayloadBytes
        descriptor = try openLockedStagingFile(stagingPath)
        do {
            // A stale file of an earlier attempt is emptied only once the lock is held.
            try emptyFile(descriptor, path: stagingPath)
            let reserved = [UInt8](repeating: 0, count: SnapshotStore.headerBytes)
            try reserved.withBytes { bytes throws(WALError) in
                try FileIO.writeAll(descriptor, bytes, at: 0, path: stagingPath)
            }
        } catch {
            abort()
            throw error
        }
    }

    deinit { abort() }

    /// Appends payload bytes (buffered up to `SnapshotStore.chunkBytes`; larger pieces go straight to the file).
    /// - Throws: `.writeFailed` (errno EFBIG, nothing appended; the writer stays usable) when the payload would
    ///   exceed the store's `maxFileBytes`; `.writeFailed` from the disk, after which only `abort()` is left.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(WALError) {
        precondition(descriptor >= 0, "SnapshotWriter used after finish() or abort()")
        if let failure { throw failure }
        guard UInt64(bytes.count) <= maxPayloadBytes - payloadBytes else {
            throw .writeFailed(file: stagingPath, errno: EFBIG)
        }
        crc = CRC32C.update(crc, bytes)
        payloadBytes += UInt64(bytes.count)
        if buffer.count + bytes.count < SnapshotStore.chunkBytes {
            buffer.append(contentsOf: bytes)
            return
        }
        try flushBuffer()
        if bytes.count >= SnapshotStore.chunkBytes {
            try writeOut(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    /// Appends payload bytes; see `write(_:)` for the buffer.
    public func write(_ bytes: [UInt8]) throws(WALError) {
        try bytes.withBytes { raw throws(WALError) in try write(raw) }
    }

    /// Writes the rest of the payload and the header, fsyncs the file, renames it to its final name and fsyncs
    /// the directory: the snapshot is durable and listed when this returns. A snapshot of the same id already
    /// there is replaced. On any failure the staging file is deleted and the writer is done; only when the last
    /// step (the directory fsync) fails is the file already in place, with its name not yet durable.
    public func finish() throws(WALError) -> SnapshotInfo {
        precondition(descriptor >= 0, "SnapshotWriter used after finish() or abort()")
        do throws(WALError) {
            if let failure { throw failure }
            try flushBuffer()
            let header = SnapshotHeader(id: id, payloadBytes: payloadBytes, payloadCRC: crc).encoded()
            try header.withBytes { bytes throws(WALError) in
                try FileIO.writeAll(descriptor, bytes, at: 0, path: stagingPath)
            }
            try FileIO.syncData(descriptor, path: stagingPath)
            try FileIO.renameFile(stagingPath, to: finalPath)
        } catch {
            abort()
            throw error
        }
        // The file is in place: closing releases the lock on it, and only the directory entry is left to sync.
        FileIO.closeFile(descriptor)
        descriptor = -1
        try FileIO.syncDirectory(directory)
        return SnapshotInfo(
            id: id, payloadBytes: payloadBytes, payloadCRC: crc,
            fileBytes: UInt64(SnapshotStore.headerBytes) + payloadBytes, path: finalPath)
    }

    /// Abandons the snapshot: deletes the staging file. Does nothing after `finish` or a previous `abort`.
    public func abort() {
        guard descriptor >= 0 else { return }
        // Deleted while the lock is held, so that no other writer's file of the same name is deleted.
        try? FileIO.removeFile(stagingPath)
        FileIO.closeFile(descriptor)
        descriptor = -1
        buffer = []
    }

    private func flushBuffer() throws(WALError) {
        guard !buffer.isEmpty else { return }
        try buffer.withBytes { raw throws(WALError) in try writeOut(raw) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeOut(_ bytes: UnsafeRawBufferPointer) throws(WALError) {
        do {
            try FileIO.writeAll(
                descriptor, bytes, at: UInt64(SnapshotStore.headerBytes) + writtenBytes, path: stagingPath)
        } catch {
            failure = error
            throw error
        }
        writtenBytes += UInt64(bytes.count)
    }
}

/// Receives a peer's snapshot file byte for byte (header included) into a staging file that survives a crash, so
/// that a transfer resumes where it stopped. `finish()` checks it and puts it in place. Dropping the receiver
/// closes the staging file and keeps it (as a crash would); `abort(deleteStaging: true)` gives it up. Used by one
/// thread at a time.
public final class SnapshotReceiver: @unchecked Sendable {
    public let id: SnapshotID
    /// The size of the whole file being received.
    public let fileBytes: UInt64
    /// The payload CRC the sender announced.
    public let payloadCRC: UInt32
    /// The bytes already in the staging file: the offset the next write must start at. After a crash, the bytes
    /// found in the staging file; any of those the crash damaged is caught by the CRC check at `finish()`.
    public private(set) var offset: UInt64
    private let directory: String
    private let name: String
    private let stagingPath: String
    /// The staging file. Invariant: -1 exactly after `finish`, `abort`, or a header mismatch.
    private var descriptor: Int32

    init(id: SnapshotID, fileBytes: UInt64, payloadCRC: UInt32, directory: String, name: String) throws(WALError) {
        self.id = id
        self.fileBytes = fileBytes
        self.payloadCRC = payloadCRC
        self.directory = directory
        self.name = name
        self.stagingPath = directory + "/" + name
        descriptor = try openLockedStagingFile(stagingPath)
        offset = 0
        do throws(WALError) {
            let existing = FileIO.size(of: descriptor)
            guard existing >= 0 else { throw .io(operation: "fstat", path: stagingPath, errno: errno) }
            offset = UInt64(existing)
            if offset > fileBytes || (offset >= UInt64(SnapshotStore.headerBytes) && headerProblem() != nil) {
                try emptyFile(descriptor, path: stagingPath)
                offset = 0
            }
        } catch {
            FileIO.closeFile(descriptor)
            descriptor = -1
            throw error
        }
    }

    deinit {
        if descriptor >= 0 { FileIO.closeFile(descriptor) }
    }

    /// Writes the bytes of the file at `offset`. Exactly:
    /// - `offset == self.offset`: the bytes are written and `self.offset` advances by their count;
    /// - the bytes end at or before `self.offset` (a duplicate of what is already there, for example a chunk the
    ///   sender repeated): nothing is written, no error;
    /// - they start before `self.offset` and end after it (the sender resent from an earlier point): only the bytes
    ///   from `self.offset` on are written;
    /// - `offset > self.offset` (a gap): throws `.io` (errno EINVAL), nothing written;
    /// - they would end past `fileBytes`: throws `.io` (errno EFBIG), nothing written.
    /// When the write completes the header, the header is checked against the id, size and CRC this receiver was
    /// begun with; on a mismatch the staging file is deleted, the receiver is done and `.corrupt` is thrown.
    /// A failed disk write throws `.writeFailed` and leaves `self.offset` where it was (the write may be retried).
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(WALError) {
        precondition(descriptor >= 0, "SnapshotReceiver used after finish() or abort()")
        guard offset <= fileBytes, UInt64(bytes.count) <= fileBytes - offset else {
            throw .io(
                operation: "write of \(bytes.count) bytes at offset \(offset), past the file's \(fileBytes) bytes,",
                path: stagingPath, errno: EFBIG)
        }
        let end = offset + UInt64(bytes.count)
        if end <= self.offset { return }
        guard offset <= self.offset else {
            throw .io(
                operation: "write at offset \(offset) where the receiver is at \(self.offset)", path: stagingPath,
                errno: EINVAL)
        }
        let skip = Int(self.offset - offset)
        try FileIO.writeAll(
            descriptor, UnsafeRawBufferPointer(rebasing: bytes[skip...]), at: self.offset, path: stagingPath)
        let headerEnd = UInt64(SnapshotStore.headerBytes)
        let completesHeader = self.offset < headerEnd && end >= headerEnd
        self.offset = end
        if completesHeader, let problem = headerProblem() { try discard(reason: problem, at: 0) }
    }

    /// Writes the bytes of the file at `offset`; see `write(_:at:)`.
    public func write(_ bytes: [UInt8], at offset: UInt64) throws(WALError) {
        try bytes.withBytes { raw throws(WALError) in try write(raw, at: offset) }
    }

    /// Makes the bytes received so far durable, so that a resumed transfer after a power loss continues from them.
    public func sync() throws(WALError) {
        precondition(descriptor >= 0, "SnapshotReceiver used after finish() or abort()")
        try FileIO.syncData(descriptor, path: stagingPath)
    }

    /// Checks the whole file (header against the id, size and CRC begun with, then the payload's CRC, reading it in
    /// chunks), fsyncs it, renames it to `snapshot-<id>.snap` and fsyncs the directory. A snapshot of the same id
    /// already there is replaced.
    /// - Throws: `.io` (errno EINVAL; the staging file is kept) when fewer than `fileBytes` bytes were received;
    ///   `.corrupt` when the header or the CRC does not match: the staging file is deleted and the receiver is done
    ///   (the transfer must start over); `.io` or `.fsyncFailed` from the disk (the staging file is kept).
    public func finish() throws(WALError) -> SnapshotInfo {
        precondition(descriptor >= 0, "SnapshotReceiver used after finish() or abort()")
        guard offset == fileBytes else {
            throw .io(
                operation: "finish a snapshot received up to \(offset) of \(fileBytes) bytes", path: stagingPath,
                errno: EINVAL)
        }
        if let problem = headerProblem() { try discard(reason: problem, at: 0) }
        let payloadBytes = fileBytes - UInt64(SnapshotStore.headerBytes)
        let crc: UInt32
        do {
            crc = try payloadChecksum(descriptor, payloadBytes: payloadBytes, path: stagingPath)
        } catch {
            guard case .corrupt(_, let at, let reason) = error else { throw error }
            try discard(reason: reason, at: at)
        }
        if crc != payloadCRC {
            try discard(reason: "payload CRC \(crc) where the sender announced \(payloadCRC)", at: 0)
        }
        try FileIO.syncData(descriptor, path: stagingPath)
        let finalPath = directory + "/" + SnapshotFileName.complete(id)
        try FileIO.renameFile(stagingPath, to: finalPath)
        FileIO.closeFile(descriptor)
        descriptor = -1
        try FileIO.syncDirectory(directory)
        return SnapshotInfo(
            id: id, payloadBytes: payloadBytes, payloadCRC: payloadCRC, fileBytes: fileBytes, path: finalPath)
    }

    /// Stops receiving: closes the staging file, and deletes it when `deleteStaging` (else a later `beginReceive`
    /// of the same snapshot resumes from it). Does nothing after `finish` or a previous `abort`.
    public func abort(deleteStaging: Bool) {
        guard descriptor >= 0 else { return }
        if deleteStaging { try? FileIO.removeFile(stagingPath) }
        FileIO.closeFile(descriptor)
        descriptor = -1
    }

    /// What is wrong with the staging file's header (which must be complete), or nil when it is the one expected.
    private func headerProblem() -> String? {
        let expected = SnapshotHeader(
            id: id, payloadBytes: fileBytes - UInt64(SnapshotStore.headerBytes), payloadCRC: payloadCRC)
        switch try? SnapshotHeader.read(descriptor, path: stagingPath) {
        case .success(let header)? where header == expected: return nil
        case .success(let header)?: return "the header describes \(header), not \(expected)"
        case .failure(let problem)?: return problem.reason
        case nil: return "the header could not be read"
        }
    }

    /// Deletes the staging file, ends the receiver and throws `.corrupt`.
    private func discard(reason: String, at offset: Int64) throws(WALError) -> Never {
        abort(deleteStaging: true)
        try? FileIO.syncDirectory(directory)
        throw .corrupt(file: name, offset: offset, reason: reason)
    }
}

/// Reads a complete snapshot file: bytes of the file (to send it to a peer) or of the payload (to restore the app).
/// The open descriptor keeps the file readable even if it is pruned meanwhile. Used by one thread at a time.
public final class SnapshotReader: @unchecked Sendable {
    public let info: SnapshotInfo
    /// Invariant: -1 exactly after `close`.
    private var descriptor: Int32

    /// Opens the snapshot and checks (cheaply: header and size, not the payload CRC) that it is the one `info`
    /// describes. - Throws: `.io` when it cannot be opened; `.corrupt` when it is not that snapshot.
    public init(_ info: SnapshotInfo) throws(WALError) {
        self.info = info
        descriptor = try FileIO.openFile(info.path, O_RDONLY)
        let expected = SnapshotHeader(id: info.id, payloadBytes: info.payloadBytes, payloadCRC: info.payloadCRC)
        let problem: String?
        do {
            switch try SnapshotHeader.read(descriptor, path: info.path) {
            case .success(let header) where header == expected:
                problem =
                    FileIO.size(of: descriptor) == Int64(info.fileBytes)
                    ? nil : "the file is not \(info.fileBytes) bytes long"
            case .success(let header): problem = "the header describes \(header), not \(expected)"
            case .failure(let failure): problem = failure.reason
            }
        } catch {
            close()
            throw error
        }
        if let problem {
            close()
            throw .corrupt(file: String(info.path.split(separator: "/").last ?? ""), offset: 0, reason: problem)
        }
    }

    deinit { close() }

    /// Up to `maxBytes` bytes of the file (header included) from `offset`: fewer only at the end of the file, none
    /// at `info.fileBytes`.
    /// - Throws: `.io` (errno EINVAL) for an offset past the end; `.io` from the disk; `.corrupt` when the file
    ///   turns out shorter than its header says.
    public func read(at offset: UInt64, maxBytes: Int) throws(WALError) -> [UInt8] {
        precondition(descriptor >= 0, "SnapshotReader used after close()")
        precondition(maxBytes >= 0)
        guard offset <= info.fileBytes else {
            throw .io(
                operation: "read at offset \(offset) of a \(info.fileBytes)-byte snapshot", path: info.path,
                errno: EINVAL)
        }
        let count = Int(min(UInt64(maxBytes), info.fileBytes - offset))
        var bytes = [UInt8](repeating: 0, count: count)
        let got = try bytes.withMutableBytes { buffer throws(WALError) in
            try FileIO.readFully(descriptor, into: buffer, count: count, at: offset, path: info.path)
        }
        guard got == count else {
            throw .corrupt(
                file: String(info.path.split(separator: "/").last ?? ""), offset: Int64(offset) + Int64(got),
                reason: "the snapshot file ends before its payload does")
        }
        return bytes
    }

    /// Up to `maxBytes` bytes of the payload from `offset` (0 is the payload's first byte); see `read(at:maxBytes:)`.
    public func readPayload(at offset: UInt64, maxBytes: Int) throws(WALError) -> [UInt8] {
        guard offset <= info.payloadBytes else {
            throw .io(
                operation: "read at payload offset \(offset) of a \(info.payloadBytes)-byte payload", path: info.path,
                errno: EINVAL)
        }
        return try read(at: UInt64(SnapshotStore.headerBytes) + offset, maxBytes: maxBytes)
    }

    /// A new descriptor on the file, positioned at the payload's first byte, to hand a child process as its stdin;
    /// the caller closes it. It is close-on-exec (so no other child inherits it; `dup2` onto 0 clears that flag
    /// for the child's copy). It shares one file position with every other descriptor this reader returned (it is
    /// a duplicate of the reader's own, which works even if the file was pruned since), so take one per reader.
    /// - Throws: `.io` when no descriptor is free or the seek fails.
    public func payloadDescriptor() throws(WALError) -> Int32 {
        precondition(descriptor >= 0, "SnapshotReader used after close()")
        let duplicate = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
        guard duplicate >= 0 else { throw .io(operation: "dup", path: info.path, errno: errno) }
        guard lseek(duplicate, off_t(SnapshotStore.headerBytes), SEEK_SET) >= 0 else {
            let code = errno
            FileIO.closeFile(duplicate)
            throw .io(operation: "lseek", path: info.path, errno: code)
        }
        return duplicate
    }

    /// Closes the file. Idempotent; the reader must not be read from afterwards.
    public func close() {
        if descriptor >= 0 { FileIO.closeFile(descriptor) }
        descriptor = -1
    }
}
