import Foundation
import XCTest

@testable import TandemStorage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A deterministic payload of `count` bytes that differs with `seed`.
func snapshotPayload(_ count: Int, seed: UInt64) -> [UInt8] {
    var random = SplitMix(seed: seed)
    var bytes: [UInt8] = []
    bytes.reserveCapacity(count + 8)
    while bytes.count < count {
        withUnsafeBytes(of: random.next()) { bytes.append(contentsOf: $0) }
    }
    return Array(bytes.prefix(count))
}

private func permissions(_ path: String) -> Int {
    var status = stat()
    guard stat(path, &status) == 0 else { return -1 }
    return Int(status.st_mode) & 0o777
}

private func fileNames(_ directory: String) -> Set<String> {
    Set((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
}

private func contents(_ path: String) -> [UInt8] {
    [UInt8](FileManager.default.contents(atPath: path) ?? Data())
}

final class SnapshotStoreTests: XCTestCase {
    /// Writes a snapshot whose payload is streamed in pieces of `piece` bytes.
    @discardableResult
    private func writeSnapshot(_ store: SnapshotStore, _ id: SnapshotID, _ payload: [UInt8], piece: Int = 4_096)
        throws -> SnapshotInfo
    {
        let writer = try store.beginWrite(id: id)
        var offset = 0
        while offset < payload.count {
            let end = min(payload.count, offset + piece)
            try writer.write(Array(payload[offset..<end]))
            offset = end
        }
        XCTAssertEqual(writer.payloadBytes, UInt64(payload.count))
        return try writer.finish()
    }

    func testWriteListVerifyAndReadBack() throws {
        let directory = makeTemporaryDirectory(self) + "/data/snapshots"
        let store = try SnapshotStore(directory: directory)
        XCTAssertEqual(permissions(directory), 0o700)
        XCTAssertEqual(store.list(), [])
        XCTAssertNil(store.latestVerified())

        // Over two chunks, written in small pieces and in one piece larger than a chunk.
        let big = snapshotPayload(2 * SnapshotStore.chunkBytes + 12_345, seed: 1)
        let older = try writeSnapshot(store, SnapshotID(index: 100, term: 2), big, piece: 1_000)
        let newerPayload = snapshotPayload(3 * SnapshotStore.chunkBytes / 2, seed: 2)
        let newer = try writeSnapshot(
            store, SnapshotID(index: 200, term: 3), newerPayload, piece: SnapshotStore.chunkBytes + 7)
        let empty = try writeSnapshot(store, SnapshotID(index: 150, term: 2), [])

        XCTAssertEqual(older.payloadBytes, UInt64(big.count))
        XCTAssertEqual(older.payloadCRC, CRC32C.checksum(big))
        XCTAssertEqual(older.fileBytes, UInt64(SnapshotStore.headerBytes + big.count))
        XCTAssertEqual(older.path, directory + "/snapshot-00000000000000000100-00000000000000000002.snap")
        XCTAssertEqual(permissions(older.path), 0o600)
        XCTAssertEqual(fileSize(older.path), SnapshotStore.headerBytes + big.count)
        XCTAssertEqual(Array(contents(older.path).prefix(8)), Array("TNDSNAP1".utf8))
        XCTAssertEqual(Array(contents(older.path).dropFirst(SnapshotStore.headerBytes)), big)
        XCTAssertEqual(empty.payloadBytes, 0)
        XCTAssertFalse(fileNames(directory).contains { $0.hasSuffix(".tmp") }, "no staging file is left")

        XCTAssertEqual(store.list(), [newer, empty, older], "newest first")
        XCTAssertTrue(store.verify(older))
        XCTAssertTrue(store.verify(empty))
        XCTAssertEqual(store.latestVerified(), newer)
        XCTAssertEqual(store.diskBytes(), older.fileBytes + newer.fileBytes + empty.fileBytes)

        let reader = try SnapshotReader(newer)
        XCTAssertEqual(
            try reader.read(at: 0, maxBytes: SnapshotStore.headerBytes), Array(contents(newer.path).prefix(64)))
        var streamed: [UInt8] = []
        while UInt64(streamed.count) < newer.payloadBytes {
            let piece = try reader.readPayload(at: UInt64(streamed.count), maxBytes: 300_000)
            XCTAssertFalse(piece.isEmpty)
            XCTAssertLessThanOrEqual(piece.count, 300_000)
            streamed += piece
        }
        XCTAssertEqual(streamed, newerPayload)
        XCTAssertEqual(try reader.readPayload(at: newer.payloadBytes, maxBytes: 10), [])
        XCTAssertThrowsError(try reader.read(at: newer.fileBytes + 1, maxBytes: 1))

        // The descriptor for a child's stdin starts at the payload.
        let descriptor = try reader.payloadDescriptor()
        var first = [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(first.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, 16) }, 16)
        XCTAssertEqual(first, Array(newerPayload.prefix(16)))
        XCTAssertEqual(fcntl(descriptor, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC)
        close(descriptor)
        reader.close()
    }

    func testACorruptedPayloadByteIsDetectedSetAsideAndTheOlderSnapshotReturned() throws {
        let directory = makeTemporaryDirectory(self)
        let store = try SnapshotStore(directory: directory)
        let older = try writeSnapshot(store, SnapshotID(index: 10, term: 1), snapshotPayload(50_000, seed: 3))
        let newer = try writeSnapshot(store, SnapshotID(index: 20, term: 1), snapshotPayload(50_000, seed: 4))
        flipBit(newer.path, at: SnapshotStore.headerBytes + 33_333)
        XCTAssertEqual(store.list().first, newer, "listing reads headers only")

        XCTAssertEqual(store.latestVerified(), older)
        XCTAssertFalse(FileManager.default.fileExists(atPath: newer.path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: newer.path + ".corrupt"), "kept for the operator")
        XCTAssertEqual(store.list(), [older])
        XCTAssertTrue(store.verify(older))
    }

    func testADamagedHeaderIsLeftOutOfTheListAndSetAside() throws {
        let directory = makeTemporaryDirectory(self)
        let store = try SnapshotStore(directory: directory)
        let older = try writeSnapshot(store, SnapshotID(index: 10, term: 1), [1, 2, 3])
        let newer = try writeSnapshot(store, SnapshotID(index: 20, term: 1), [4, 5, 6])
        flipBit(newer.path, at: 20)  // The index field: the header CRC fails.
        XCTAssertEqual(store.list(), [older])
        XCTAssertEqual(store.latestVerified(), older)
        XCTAssertTrue(fileNames(directory).contains((newer.path as NSString).lastPathComponent + ".corrupt"))
        // A reader refuses a file that is not the snapshot described.
        var wrong = older
        wrong.payloadCRC ^= 1
        XCTAssertThrowsError(try SnapshotReader(wrong)) { error in
            guard case .corrupt? = error as? WALError else { return XCTFail("\(error)") }
        }
    }

    func testOnlyTheNewestCorruptFilesAreKept() throws {
        let directory = makeTemporaryDirectory(self)
        let store = try SnapshotStore(directory: directory)
        for index in 1...4 {
            let info = try writeSnapshot(store, SnapshotID(index: UInt64(index), term: 1), [UInt8(index), 9, 9])
            flipBit(info.path, at: SnapshotStore.headerBytes + 1)
        }
        XCTAssertNil(store.latestVerified())
        let corrupt = fileNames(directory).filter { $0.hasSuffix(".corrupt") }.sorted()
        XCTAssertEqual(
            corrupt,
            [
                "snapshot-00000000000000000003-00000000000000000001.snap.corrupt",
                "snapshot-00000000000000000004-00000000000000000001.snap.corrupt",
            ])
        XCTAssertEqual(store.list(), [])
    }

    func testAnAbortedOrDroppedWriterLeavesNothing() throws {
        let directory = makeTemporaryDirectory(self)
        let store = try SnapshotStore(directory: directory)
        do {
            let writer = try store.beginWrite(id: SnapshotID(index: 5, term: 1))
            try writer.write([1, 2, 3])
            XCTAssertTrue(fileNames(directory).contains(SnapshotFileName.staging(SnapshotID(index: 5, term: 1))))
            writer.abort()
            XCTAssertEqual(fileNames(directory), [])
        }
        do {
            let writer = try store.beginWrite(id: SnapshotID(index: 6, term: 1))
            try writer.write(snapshotPayload(10, seed: 1))
        }
        XCTAssertEqual(fileNames(directory), [], "dropping an unfinished writer aborts it")
    }

    func testTheSizeLimitRefusesLargerSnapshots() throws {
        let directory = makeTemporaryDirectory(self)
        let limit = UInt64(SnapshotStore.headerBytes + 1_000)
        let store = try SnapshotStore(directory: directory, maxFileBytes: limit)
        let writer = try store.beginWrite(id: SnapshotID(index: 1, term: 1))
        try writer.write(snapshotPayload(900, seed: 1))
        XCTAssertThrowsError(try writer.write(snapshotPayload(101, seed: 2))) { error in
            XCTAssertEqual(
                error as? WALError,
                .writeFailed(
                    file: directory + "/" + SnapshotFileName.staging(SnapshotID(index: 1, term: 1)), errno: EFBIG))
        }
        try writer.write(snapshotPayload(100, seed: 2))
        let info = try writer.finish()
        XCTAssertEqual(info.fileBytes, limit)
        XCTAssertThrowsError(
            try store.beginReceive(id: SnapshotID(index: 2, term: 1), fileBytes: limit + 1, payloadCRC: 0))
        XCTAssertThrowsError(try store.beginReceive(id: SnapshotID(index: 2, term: 1), fileBytes: 10, payloadCRC: 0))
        // A store with a lower limit does not list a snapshot over it.
        XCTAssertEqual(try SnapshotStore(directory: directory, maxFileBytes: limit - 1).list(), [])
        XCTAssertEqual(try SnapshotStore(directory: directory, maxFileBytes: limit).list(), [info])
    }

    // MARK: - Receiving

    /// A snapshot that does not fit on the disk (with room kept for the log) is refused before anything is
    /// written; a resumed one needs room only for what is still missing.
    func testAReceiveThatDoesNotFitOnTheDiskIsRefusedBeforeWriting() throws {
        let (sent, file) = try peerSnapshot(payloadBytes: 100_000, seed: 9)
        let directory = makeTemporaryDirectory(self)
        let store = try SnapshotStore(directory: directory)
        let reserve: UInt64 = 1_000
        XCTAssertThrowsError(
            try store.beginReceive(
                id: sent.id, fileBytes: sent.fileBytes, payloadCRC: sent.payloadCRC, reserveBytes: reserve,
                freeBytes: { _ in sent.fileBytes + reserve - 1 })
        ) { error in
            guard case .io(_, _, let code)? = error as? WALError else { return XCTFail("\(error)") }
            XCTAssertEqual(code, ENOSPC)
        }
        XCTAssertEqual(
            try FileIO.listDirectory(directory).filter { $0.hasSuffix(".part") }, [], "nothing was written")
        do {
            let receiver = try store.beginReceive(
                id: sent.id, fileBytes: sent.fileBytes, payloadCRC: sent.payloadCRC, reserveBytes: reserve,
                freeBytes: { _ in sent.fileBytes + reserve })
            try receiver.write(Array(file[0..<60_000]), at: 0)
            try receiver.sync()
        }
        // 60,000 bytes are on disk: the rest and the reserve fit in less than the whole file would need.
        let resumed = try store.beginReceive(
            id: sent.id, fileBytes: sent.fileBytes, payloadCRC: sent.payloadCRC, reserveBytes: reserve,
            freeBytes: { _ in sent.fileBytes - 60_000 + reserve })
        XCTAssertEqual(resumed.offset, 60_000)
        XCTAssertNotNil(SnapshotStore.freeDiskBytes(directory), "statvfs reads the real disk")
    }

    /// A snapshot file made by another node's store, as the bytes a peer sends.
    private func peerSnapshot(payloadBytes: Int, seed: UInt64) throws -> (SnapshotInfo, [UInt8]) {
        let store = try SnapshotStore(directory: makeTemporaryDirectory(self))
        let info = try writeSnapshot(store, SnapshotID(index: 900, term: 7), snapshotPayload(payloadBytes, seed: seed))
        return (info, contents(info.path))
    }

    func testAReceiveResumesAfterACrashAtTheRightOffsetAndEndsByteIdentical() throws {
        let (sent, file) = try peerSnapshot(payloadBytes: 700_000, seed: 5)
        let directory = makeTemporaryDirectory(self)
        let store = try SnapshotStore(directory: directory)
        let chunk = 64 * 1_024
        var received: UInt64 = 0
        do {
            let receiver = try store.beginReceive(id: sent.id, fileBytes: sent.fileBytes, payloadCRC: sent.payloadCRC)
            XCTAssertEqual(receiver.offset, 0)
            // A first chunk shorter than the header, then whole chunks.
            try receiver.write(Array(file[0..<10]), at: 0)
            received = 10
            while received < 300_000 {
                let end = min(Int(received) + chunk, file.count)
                try receiver.write(Array(file[Int(received)..<end]), at: received)
                received = UInt64(end)
            }
            try receiver.sync()
            XCTAssertEqual(receiver.offset, received)
            // The receiver is dropped without finish(): the process crashed.
        }
        let partName = SnapshotFileName.receiving(sent.id, payloadCRC: sent.payloadCRC)
        XCTAssertTrue(fileNames(directory).contains(partName))
        XCTAssertEqual(store.list(), [], "a part file is not a snapshot")
        store.prune(keep: 2, exceptReceiving: sent.id)
        XCTAssertTrue(fileNames(directory).contains(partName), "the transfer in progress is kept")

        let receiver = try store.beginReceive(id: sent.id, fileBytes: sent.fileBytes, payloadCRC: sent.payloadCRC)
        XCTAssertEqual(receiver.offset, received, "resumes at what is already there")
        // A duplicate below the offset is ignored; a gap is refused; a piece straddling the offset is trimmed.
        try receiver.write(Array(file[0..<100]), at: 0)
        XCTAssertEqual(receiver.offset, received)
        XCTAssertThrowsError(try receiver.write([1], at: received + 1))
        XCTAssertThrowsError(try receiver.finish(), "incomplete")
        try receiver.write(Array(file[Int(received - 500)..<Int(received + 1_000)]), at: received - 500)
        received += 1_000
        XCTAssertEqual(receiver.offset, received)
        XCTAssertThrowsError(try receiver.write([UInt8](repeating: 0, count: 2), at: sent.fileBytes - 1))
        while received < sent.fileBytes {
            let end = min(Int(received) + chunk, file.count)
            try receiver.write(Array(file[Int(received)..<end]), at: received)
            received = UInt64(end)
        }
        let info = try receiver.finish()
        XCTAssertEqual(info.id, sent.id)
        XCTAssertEqual(info.fileBytes, sent.fileBytes)
        XCTAssertEqual(info.payloadCRC, sent.payloadCRC)
        XCTAssertEqual(contents(info.path), file, "byte-identical")
        XCTAssertEqual(permissions(info.path), 0o600)
        XCTAssertFalse(fileNames(directory).contains(partName))
        XCTAssertEqual(store.latestVerified(), info)
    }

    func testAWrongPayloadCRCAtFinishThrowsAndRemovesThePartFile() throws {
        let (sent, file) = try peerSnapshot(payloadBytes: 100_000, seed: 6)
        let directory = makeTemporaryDirectory(self)
        let store = try SnapshotStore(directory: directory)
        var damaged = file
        damaged[SnapshotStore.headerBytes + 5_000] ^= 0x01  // Damaged in transit; the header is intact.
        let receiver = try store.beginReceive(id: sent.id, fileBytes: sent.fileBytes, payloadCRC: sent.payloadCRC)
        try receiver.write(damaged, at: 0)
        XCTAssertThrowsError(try receiver.finish()) { error in
            guard case .corrupt(let file, _, let reason)? = error as? WALError else { return XCTFail("\(error)") }
            XCTAssertEqual(file, SnapshotFileName.receiving(sent.id, payloadCRC: sent.payloadCRC))
            XCTAssertTrue(reason.contains("CRC"), reason)
        }
        XCTAssertEqual(fileNames(directory), [], "the part file is removed")
        XCTAssertEqual(store.list(), [])
        // Starting over receives it whole.
        let again = try store.beginReceive(id: sent.id, fileBytes: sent.fileBytes, payloadCRC: sent.payloadCRC)
        XCTAssertEqual(again.offset, 0)
        try again.write(file, at: 0)
        XCTAssertEqual(contents(try again.finish().path), file)
    }

    func testAHeaderThatDisagreesWithTheAnnouncedSnapshotIsRefusedAsSoonAsItArrives() throws {
        let (sent, file) = try peerSnapshot(payloadBytes: 1_000, seed: 7)
        let directory = makeTemporaryDirectory(self)
        let store = try SnapshotStore(directory: directory)
        let receiver = try store.beginReceive(id: sent.id, fileBytes: sent.fileBytes, payloadCRC: sent.payloadCRC ^ 1)
        try receiver.write(Array(file[0..<40]), at: 0)
        XCTAssertThrowsError(try receiver.write(Array(file[40..<100]), at: 40)) { error in
            guard case .corrupt? = error as? WALError else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(fileNames(directory), [])
    }

    func testASecondReceiverOfTheSameFileIsRefusedWhileTheFirstHoldsIt() throws {
        let directory = makeTemporaryDirectory(self)
        let store = try SnapshotStore(directory: directory)
        let id = SnapshotID(index: 3, term: 1)
        let first = try store.beginReceive(id: id, fileBytes: 100, payloadCRC: 7)
        XCTAssertThrowsError(try store.beginReceive(id: id, fileBytes: 100, payloadCRC: 7)) { error in
            guard case .locked? = error as? WALError else { return XCTFail("\(error)") }
        }
        first.abort(deleteStaging: true)
        XCTAssertEqual(fileNames(directory), [])
        XCTAssertEqual(try store.beginReceive(id: id, fileBytes: 100, payloadCRC: 7).offset, 0)
    }

    // MARK: - Pruning

    func testPruneKeepsTheNewestSnapshotsAndDeletesStaleStagingFiles() throws {
        let directory = makeTemporaryDirectory(self)
        let store = try SnapshotStore(directory: directory)
        var infos: [SnapshotInfo] = []
        for index in 1...4 {
            infos.append(try writeSnapshot(store, SnapshotID(index: UInt64(10 * index), term: 1), [UInt8(index)]))
        }
        // Stale staging files a crash left behind, a receive in progress, and a write in progress.
        let staleTemporary = SnapshotFileName.staging(SnapshotID(index: 50, term: 1))
        let stalePart = SnapshotFileName.receiving(SnapshotID(index: 60, term: 1), payloadCRC: 0xAB)
        let keptPart = SnapshotFileName.receiving(SnapshotID(index: 70, term: 2), payloadCRC: 0xCD)
        for name in [staleTemporary, stalePart, keptPart] {
            XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/" + name, contents: Data([1, 2])))
        }
        let activeReceiver = try store.beginReceive(id: SnapshotID(index: 80, term: 2), fileBytes: 100, payloadCRC: 1)
        let activeWriter = try store.beginWrite(id: SnapshotID(index: 90, term: 2))
        try activeWriter.write([1, 2, 3])

        store.prune(keep: 2, exceptReceiving: SnapshotID(index: 70, term: 2))
        XCTAssertEqual(store.list(), [infos[3], infos[2]])
        XCTAssertEqual(
            fileNames(directory),
            Set(
                [
                    (infos[3].path as NSString).lastPathComponent, (infos[2].path as NSString).lastPathComponent,
                    keptPart, SnapshotFileName.receiving(SnapshotID(index: 80, term: 2), payloadCRC: 1),
                    SnapshotFileName.staging(SnapshotID(index: 90, term: 2)),
                ]), "files in use are never pruned")

        let finished = try activeWriter.finish()
        activeReceiver.abort(deleteStaging: false)
        store.prune(keep: 1, exceptReceiving: nil)
        XCTAssertEqual(fileNames(directory), [(finished.path as NSString).lastPathComponent])
        XCTAssertEqual(store.diskBytes(), finished.fileBytes)
    }
}
