// libFuzzer target: segment files written into an empty data directory, then `WriteAheadLog.open` recovers them.
// Traps when recovery traps or reads out of bounds (AddressSanitizer), throws anything but `.corrupt`, returns
// entries that are not consecutive or not all after the base, changes a segment other than by cutting the last
// one's torn tail, leaves a staged segment behind, or when a second recovery of what the first left on disk
// differs (another torn tail, other entries, or another error). With bit 7 of the mode byte, an entry appended at
// `nextIndex` after recovery must come back after it on the next open.
//
// Input: byte 0 = mode: segment count - 1 (bits 0-1), first sequence number - 1 (bits 2-4), a sequence gap before
// the last segment (bit 5), a staged `.log.tmp` segment an interrupted reset left (bit 6), append-and-reopen (bit 7);
// then per segment its first index (u16 LE; 0xFFF0 and above stand for UInt64.max - (0xFFFF - value)) and, for all
// but the last segment, its length (u16 LE) and bytes; the last segment takes the rest.
//
// Seeds are written by the WAL's own writer: run the binary with TANDEM_WAL_SEED_DIR set to a directory (see
// Fuzz/README.md); the entry points it uses are WriteAheadLog.open, append, truncate, saveHardState,
// saveAppliedIndex, compact, reset, sync and close.
import Glibc
import TandemStorage

/// One data directory reused by every input, on tmpfs when there is one (the WAL fsyncs).
private let directory: String = {
    let root = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    // A crash (the point of fuzzing) skips the exit handler: remove what dead runs left.
    for name in fileNames(in: root) where name.hasPrefix("tandem-fuzz-wal-") {
        if let pid = Int32(name.dropFirst("tandem-fuzz-wal-".count)), kill(pid, 0) != 0, errno == ESRCH {
            let stale = root + "/" + name
            if access(stale, R_OK | W_OK | X_OK) == 0 { emptyDirectory(stale) }
            rmdir(stale)
        }
    }
    let path = "\(root)/tandem-fuzz-wal-\(getpid())"
    precondition(mkdir(path, 0o700) == 0 || errno == EEXIST, "cannot create \(path)")
    atexit(removeDirectory)
    return path
}()

/// TANDEM_WAL_FUZZ_TRACE set: print what recovery made of each input (to check a seed does what its name says).
private let trace = getenv("TANDEM_WAL_FUZZ_TRACE") != nil

private func removeDirectory() {
    emptyDirectory(directory)
    rmdir(directory)
}

private func fileNames(in path: String) -> [String] {
    guard let stream = opendir(path) else { preconditionFailure("cannot list \(path)") }
    defer { closedir(stream) }
    var names: [String] = []
    while let entry = readdir(stream) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

private func emptyDirectory(_ path: String) {
    for name in fileNames(in: path) { precondition(unlink(path + "/" + name) == 0, "cannot remove \(name)") }
}

private func writeFile(_ path: String, _ bytes: [UInt8]) {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(descriptor >= 0, "cannot create \(path)")
    defer { close(descriptor) }
    let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    precondition(written == bytes.count, "short write to \(path)")
}

private func readFile(_ path: String) -> [UInt8] {
    let descriptor = open(path, O_RDONLY)
    precondition(descriptor >= 0, "cannot open \(path)")
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        precondition(count >= 0, "cannot read \(path)")
        if count == 0 { return bytes }
        bytes += chunk[0..<count]
    }
}

private func zeroPadded(_ value: UInt64, _ width: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// The segment file name the WAL uses: `wal-<sequence, 16 digits>-<first index, 20 digits>.log`.
private func segmentFileName(sequence: UInt64, firstIndex: UInt64) -> String {
    "wal-\(zeroPadded(sequence, 16))-\(zeroPadded(firstIndex, 20)).log"
}

private struct Segment {
    var name: String
    var bytes: [UInt8]
}

/// Reads the input layout of the header comment.
private func segments(of input: UnsafeBufferPointer<UInt8>) -> [Segment] {
    let mode = input[0]
    let count = Int(mode & 3) + 1
    var sequence = UInt64(mode >> 2 & 7) + 1
    var offset = 1
    func u16() -> Int {
        defer { offset = min(input.count, offset + 2) }
        return offset + 2 <= input.count ? Int(input[offset]) | Int(input[offset + 1]) << 8 : 0
    }
    var result: [Segment] = []
    for position in 0..<count {
        let coded = UInt64(u16())
        let firstIndex = coded >= 0xFFF0 ? UInt64.max - (0xFFFF - coded) : coded
        let isLast = position == count - 1
        let length = isLast ? input.count - offset : min(u16(), input.count - offset)
        if isLast && mode & 0x20 != 0 { sequence += 1 }
        result.append(
            Segment(
                name: segmentFileName(sequence: sequence, firstIndex: firstIndex),
                bytes: Array(input[offset..<(offset + length)])))
        offset += length
        sequence += 1
    }
    return result
}

private func checkShape(_ log: RecoveredLog) {
    for (earlier, later) in zip(log.entries, log.entries.dropFirst()) {
        precondition(earlier.index < UInt64.max && later.index == earlier.index + 1, "entries are not consecutive")
    }
    if let base = log.base, let first = log.entries.first {
        precondition(first.index > base.index, "entry \(first.index) at or below the base \(base.index)")
    }
}

/// The recovered log without what only the first recovery may report (the torn tail it cut).
private func durable(_ log: RecoveredLog) -> RecoveredLog {
    var copy = log
    copy.tornTail = nil
    return copy
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let written = segments(of: input)
    emptyDirectory(directory)
    defer { emptyDirectory(directory) }
    for segment in written { writeFile(directory + "/" + segment.name, segment.bytes) }
    if input[0] & 0x40 != 0, let last = written.last { writeFile(directory + "/" + last.name + ".tmp", last.bytes) }

    let first: RecoveredLog
    do {
        let (log, recovered) = try WriteAheadLog.open(directory: directory)
        try log.close()
        first = recovered
    } catch {
        guard case .corrupt = error else { preconditionFailure("recovery failed with \(error), not .corrupt") }
        if trace { print("refused: \(error)") }
        // What recovery left on disk must be refused again, for the same reason.
        do {
            let (log, _) = try WriteAheadLog.open(directory: directory)
            try? log.close()
            preconditionFailure("a log refused as \(error) was accepted on the second recovery")
        } catch let second {
            precondition(second == error, "the second recovery failed with \(second), the first with \(error)")
        }
        return 0
    }
    if trace {
        print("recovered \(first.entries.map(\.index)), base \(first.base as Any), torn \(first.tornTail as Any)")
    }
    checkShape(first)
    precondition(first.segmentCount == written.count, "recovery reported \(first.segmentCount) segments")
    precondition(fileNames(in: directory) == (written.map(\.name) + ["LOCK"]).sorted(), "the files changed")
    precondition(first.tornTail.map { $0.file == written.last!.name } ?? true, "a torn tail cut an early segment")
    for (position, segment) in written.enumerated() {
        let cut = position == written.count - 1 ? first.tornTail.map { Int($0.offset) } : nil
        let expected = cut.map { Array(segment.bytes.prefix($0)) } ?? segment.bytes
        precondition(readFile(directory + "/" + segment.name) == expected, "recovery changed \(segment.name)")
    }

    do {
        let (log, second) = try WriteAheadLog.open(directory: directory)
        precondition(second.tornTail == nil, "the second recovery cut another torn tail: \(second.tornTail!)")
        precondition(second == durable(first), "the second recovery differs from the first")
        if input[0] & 0x80 != 0, (log.nextIndex ?? 0) < UInt64.max - 1 {
            let entry = WALEntry(index: log.nextIndex ?? 1, term: 1, payload: [0xEE])
            try log.append([entry])
            try log.sync()
            try log.close()
            let (reopened, third) = try WriteAheadLog.open(directory: directory)
            try reopened.close()
            precondition(third.entries == first.entries + [entry], "the entry appended after recovery is lost")
        } else {
            try log.close()
        }
    } catch {
        preconditionFailure("recovering a log recovery accepted failed: \(error)")
    }
    return 0
}

// MARK: - Seeds

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutableRawPointer, _ argv: UnsafeMutableRawPointer) -> CInt {
    if let seedDirectory = getenv("TANDEM_WAL_SEED_DIR") {
        writeSeeds(to: String(cString: seedDirectory))
        exit(0)
    }
    return 0
}

/// Encodes the segments on disk (which must be consecutive) as an input with the given mode bits (5-7).
private func packDirectory(modeBits: UInt8 = 0, lastSegmentTail: (inout [UInt8]) -> Void = { _ in }) -> [UInt8] {
    let names = fileNames(in: directory).filter { $0.hasPrefix("wal-") && $0.hasSuffix(".log") }
    precondition((1...4).contains(names.count), "a seed has 1 to 4 segments, not \(names.count)")
    let sequences = names.map { UInt64($0.dropFirst(4).prefix(16))! }
    precondition((1...8).contains(sequences[0]), "a seed's first sequence is 1 to 8")
    var input = [UInt8(names.count - 1) | UInt8(sequences[0] - 1) << 2 | modeBits]
    for (position, name) in names.enumerated() {
        let firstIndex = Int(name.dropFirst(4 + 16 + 1).prefix(20))!
        precondition(firstIndex < 0xFFF0, "a seed's first indexes are small")
        input += [UInt8(firstIndex & 0xFF), UInt8(firstIndex >> 8)]
        var bytes = readFile(directory + "/" + name)
        if position == names.count - 1 {
            lastSegmentTail(&bytes)
        } else {
            precondition(bytes.count <= 0xFFFF, "a seed's segments are small")
            input += [UInt8(bytes.count & 0xFF), UInt8(bytes.count >> 8)]
        }
        input += bytes
    }
    return input
}

private func entries(_ indexes: ClosedRange<UInt64>, term: UInt64) -> [WALEntry] {
    indexes.map { WALEntry(index: $0, term: term, payload: Array("entry \($0) of term \(term)".utf8)) }
}

private func writeSeeds(to seedDirectory: String) {
    func seed(_ name: String, _ bytes: [UInt8]) { writeFile(seedDirectory + "/" + name, bytes) }
    func freshLog(segmentSizeBytes: Int = 64 << 20) -> WriteAheadLog {
        emptyDirectory(directory)
        do {
            return try WriteAheadLog.open(directory: directory, options: WALOptions(segmentSizeBytes: segmentSizeBytes))
                .0
        } catch {
            preconditionFailure("cannot open a fresh log: \(error)")
        }
    }
    do {
        // One segment: entries, a hard state with a vote, the applied index.
        let single = freshLog()
        try single.append(entries(1...5, term: 1))
        try single.saveHardState(StoredHardState(term: 2, votedFor: "n2", commit: 3))
        try single.saveAppliedIndex(3)
        try single.sync()
        try single.close()
        let record = 9 + 16 + entries(1...1, term: 1)[0].payload.count  // Every record of this log's size.
        seed("single-segment", packDirectory())
        seed("append-after-recovery", packDirectory(modeBits: 0x80))
        // A crash in the middle of the next entry's write: its first bytes only.
        seed("torn-last-record", packDirectory { $0 += [UInt8(record - 9), 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 1, 6, 0] })
        // A preallocated tail: a whole zero sector after the records.
        seed("zero-tail", packDirectory { $0 += [UInt8](repeating: 0, count: 600) })
        // A flipped byte in the middle record's payload: its CRC fails and valid records follow (damage).
        seed("crc-flipped-record", packDirectory { $0[2 * record + 30] ^= 0x01 })

        // Several segments: a truncation and the entries that replace the truncated ones.
        let rolled = freshLog(segmentSizeBytes: 160)
        try rolled.append(entries(1...4, term: 1))
        try rolled.truncate(from: 3)
        try rolled.append(entries(3...5, term: 2))
        try rolled.sync()
        try rolled.close()
        seed("rolled-truncated", packDirectory(modeBits: 0x80))
        seed("staged-reset-left-behind", packDirectory(modeBits: 0x40))

        // Compaction: a base record, the oldest segments deleted, so the first left is not segment 1.
        let compacted = freshLog(segmentSizeBytes: 160)
        try compacted.append(entries(1...8, term: 1))
        try compacted.saveHardState(StoredHardState(term: 1, votedFor: nil, commit: 8))
        try compacted.compact(to: StoredLogBase(index: 6, term: 1))
        try compacted.append(entries(9...9, term: 1))
        try compacted.sync()
        try compacted.close()
        seed("compacted-base", packDirectory(modeBits: 0x80))
        seed("compacted-base-segment-missing", packDirectory(modeBits: 0x20))

        // An installed snapshot: a reset base, every earlier entry void.
        let reset = freshLog()
        try reset.append(entries(1...3, term: 1))
        try reset.reset(to: StoredLogBase(index: 10, term: 4))
        try reset.append(entries(11...12, term: 4))
        try reset.sync()
        try reset.close()
        seed("reset-base", packDirectory(modeBits: 0x80))
    } catch {
        preconditionFailure("writing the seeds failed: \(error)")
    }
    emptyDirectory(directory)
}
