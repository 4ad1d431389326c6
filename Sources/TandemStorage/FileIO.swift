// Thin POSIX wrappers: every call that can fail maps errno to a typed WALError at this edge.
//
// Modes: the log holds every write's body and its Authorization and Cookie headers, so what the log creates is
// private to the node's user: directories 0700, files 0600 (before the umask, which can only narrow them).
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

enum FileIO {
    /// Opens `path` with `flags`, retrying on EINTR; a file it creates gets `mode`.
    static func openFile(_ path: String, _ flags: Int32, mode: mode_t = 0o600) throws(WALError) -> Int32 {
        while true {
            let descriptor = open(path, flags | O_CLOEXEC, mode)
            if descriptor >= 0 { return descriptor }
            if errno != EINTR { throw .io(operation: "open", path: path, errno: errno) }
        }
    }

    /// Writes all of `bytes` at the file's current offset, looping over short writes and EINTR.
    static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(WALError) {
        var offset = 0
        while offset < bytes.count {
            let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written > 0 {
                offset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                throw .writeFailed(file: path, errno: written < 0 ? errno : EIO)
            }
        }
    }

    /// Makes the file's data (and the metadata needed to read it, such as its size) durable.
    static func syncData(_ descriptor: Int32, path: String) throws(WALError) {
        #if canImport(Glibc)
            let result = fdatasync(descriptor)
        #else
            let result = fsync(descriptor)
        #endif
        // EINTR is not retried either: after any failed sync the dirty pages' fate is unknown.
        if result != 0 { throw .fsyncFailed(file: path, errno: errno) }
    }

    /// Makes a directory's entries (created, renamed or removed files) durable.
    static func syncDirectory(_ path: String) throws(WALError) {
        let descriptor = try openFile(path, O_RDONLY | O_DIRECTORY)
        defer { _ = close(descriptor) }
        try syncDirectory(descriptor, path: path)
    }

    /// Makes the entries of the open directory `descriptor` durable.
    static func syncDirectory(_ descriptor: Int32, path: String) throws(WALError) {
        if fsync(descriptor) != 0 { throw .fsyncFailed(file: path, errno: errno) }
    }

    /// True for the errno values that mean the process or the system ran out of file descriptors.
    static func isDescriptorExhaustion(_ code: Int32) -> Bool { code == EMFILE || code == ENFILE }

    /// Reads the whole file at `path`, refusing files larger than `maxBytes`.
    static func readAll(_ path: String, maxBytes: Int) throws(WALError) -> [UInt8] {
        let descriptor = try openFile(path, O_RDONLY)
        defer { _ = close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw .io(operation: "fstat", path: path, errno: errno) }
        let size = Int(status.st_size)
        guard size <= maxBytes else {
            let name = String(path.split(separator: "/").last ?? Substring(path))
            throw .corrupt(file: name, offset: Int64(maxBytes), reason: "segment of \(size) bytes is over the limit")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var offset = 0
        while offset < size {
            let count = bytes.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress! + offset, size - offset)
            }
            if count > 0 {
                offset += count
            } else if count < 0 && errno == EINTR {
                continue
            } else {
                throw .io(operation: "read", path: path, errno: count < 0 ? errno : EIO)
            }
        }
        return bytes
    }

    /// Cuts the file at `path` to `length` bytes and makes that durable (a full fsync: the size is metadata).
    static func truncateFile(_ path: String, length: Int64) throws(WALError) {
        let descriptor = try openFile(path, O_WRONLY)
        defer { _ = close(descriptor) }
        guard ftruncate(descriptor, off_t(length)) == 0 else {
            throw .io(operation: "ftruncate", path: path, errno: errno)
        }
        if fsync(descriptor) != 0 { throw .fsyncFailed(file: path, errno: errno) }
    }

    /// The names of the entries of the directory at `path` (without "." and "..").
    static func listDirectory(_ path: String) throws(WALError) -> [String] {
        guard let directory = opendir(path) else { throw .io(operation: "opendir", path: path, errno: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Like `mkdir -p`: creates the directory at `path` and every missing parent, each with mode 0700, and
    /// fsyncs every directory in which it created an entry, so that none of them can vanish on power loss.
    /// Directories that exist are left as they are (a mount point's mode is the operator's).
    static func prepareDirectory(_ path: String) throws(WALError) {
        guard !path.isEmpty else { throw .io(operation: "mkdir", path: path, errno: ENOENT) }
        var missing: [String] = []
        var current = withoutTrailingSlashes(path)
        while true {
            var status = stat()
            if stat(current, &status) == 0 {
                guard status.st_mode & S_IFMT == S_IFDIR else {
                    throw .io(operation: "mkdir", path: current, errno: ENOTDIR)
                }
                break
            }
            guard errno == ENOENT else { throw .io(operation: "stat", path: current, errno: errno) }
            missing.append(current)
            let parent = parentDirectory(of: current)
            if parent == current { break }
            current = parent
        }
        for directory in missing.reversed() {
            if mkdir(directory, 0o700) == 0 {
                try syncDirectory(parentDirectory(of: directory))
            } else if errno != EEXIST {
                throw .io(operation: "mkdir", path: directory, errno: errno)
            }
        }
    }

    /// Removes group and other permissions from the regular file at `path` (left world-readable by an earlier
    /// version). Anything else, such as a symbolic link, is left alone.
    static func restrictToOwner(_ path: String) throws(WALError) {
        var status = stat()
        guard lstat(path, &status) == 0 else { throw .io(operation: "lstat", path: path, errno: errno) }
        guard status.st_mode & S_IFMT == S_IFREG, status.st_mode & 0o077 != 0 else { return }
        if chmod(path, status.st_mode & 0o700) != 0 { throw .io(operation: "chmod", path: path, errno: errno) }
    }

    private static func withoutTrailingSlashes(_ path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        return String(trimmed)
    }

    static func parentDirectory(of path: String) -> String {
        let trimmed = path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    /// Takes an exclusive advisory lock on the open `descriptor`, without waiting; false when someone holds it.
    static func tryLock(_ descriptor: Int32) -> Bool {
        flock(descriptor, LOCK_EX | LOCK_NB) == 0
    }

    /// The size of the open file, or -1 when fstat fails (used by debug assertions only).
    static func size(of descriptor: Int32) -> Int64 {
        var status = stat()
        return fstat(descriptor, &status) == 0 ? Int64(status.st_size) : -1
    }

    /// Removes the file at `path`; one already gone counts as removed (a deletion may be retried).
    static func removeFile(_ path: String) throws(WALError) {
        if unlink(path) != 0 && errno != ENOENT { throw .io(operation: "unlink", path: path, errno: errno) }
    }

    /// Renames `from` to `to`, replacing `to` atomically if it exists. Durable after the directory is synced.
    static func renameFile(_ from: String, to: String) throws(WALError) {
        if rename(from, to) != 0 { throw .io(operation: "rename", path: from, errno: errno) }
    }

    /// The size of the file at `path` (following links), or nil when it cannot be stat'ed.
    static func size(atPath path: String) -> Int64? {
        var status = stat()
        return stat(path, &status) == 0 ? Int64(status.st_size) : nil
    }

    /// Reads up to `count` bytes at `offset` into `buffer`, looping over short reads and EINTR; returns how many
    /// bytes were read (fewer only at the end of the file).
    static func readFully(
        _ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, count: Int, at offset: UInt64, path: String
    ) throws(WALError) -> Int {
        precondition(count <= buffer.count)
        var done = 0
        while done < count {
            let result = pread(descriptor, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            if result > 0 {
                done += result
            } else if result == 0 {
                break
            } else if errno != EINTR {
                throw .io(operation: "read", path: path, errno: errno)
            }
        }
        return done
    }

    /// Writes all of `bytes` at `offset` (pwrite), looping over short writes and EINTR.
    static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt64, path: String)
        throws(WALError)
    {
        var done = 0
        while done < bytes.count {
            let written = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if written > 0 {
                done += written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                throw .writeFailed(file: path, errno: written < 0 ? errno : EIO)
            }
        }
    }

    static func closeFile(_ descriptor: Int32) {
        _ = close(descriptor)
    }
}

extension Array where Element == UInt8 {
    /// `withUnsafeBytes` for a body with typed throws (the standard one only rethrows `any Error`).
    func withBytes<Result>(_ body: (UnsafeRawBufferPointer) throws(WALError) -> Result) throws(WALError) -> Result {
        let outcome: Swift.Result<Result, WALError> = withUnsafeBytes { raw in
            Swift.Result { () throws(WALError) in try body(raw) }
        }
        return try outcome.get()
    }

    /// `withUnsafeMutableBytes` for a body with typed throws.
    mutating func withMutableBytes<Result>(_ body: (UnsafeMutableRawBufferPointer) throws(WALError) -> Result)
        throws(WALError) -> Result
    {
        let outcome: Swift.Result<Result, WALError> = withUnsafeMutableBytes { raw in
            Swift.Result { () throws(WALError) in try body(raw) }
        }
        return try outcome.get()
    }
}
