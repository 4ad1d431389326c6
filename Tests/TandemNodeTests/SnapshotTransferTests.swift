import TandemConsensus
import TandemStorage
import TandemTransport
import XCTest

@testable import TandemNode

/// A seeded world of one leader serving a snapshot to one follower, standing in for both runtimes: it carries out
/// every action of both state machines with a FIFO disk and a FIFO file reader of random latency, and joins them
/// with a channel that drops, duplicates, delays (so reorders) and breaks. Both processes may crash: a crashed
/// receiver keeps the bytes its disk completed, a crashed sender comes back as leader of a later term. It checks the
/// protocol's promises as it goes, and a failing seed replays exactly.
private final class TransferWorld {
    struct Faults {
        var dropPercent: UInt64 = 0
        var duplicatePercent: UInt64 = 0
        var maxDelayMs: UInt64 = 1
        /// Per 100 ms tick, in thousandths.
        var linkBreakPerMille: UInt64 = 0
        var receiverCrashPerMille: UInt64 = 0
        var senderCrashPerMille: UInt64 = 0
        var cancelPerMille: UInt64 = 0
        /// The leader dies and the follower does not notice (see `crashSenderUnnoticed`).
        var unnoticedSenderCrashPerMille: UInt64 = 0
        /// The link goes silent for up to 15 s without either side being told: long ones stall both.
        var silencePerMille: UInt64 = 0
        var shortReadPercent: UInt64 = 0
        /// At each new attempt, the chance the leader has taken a newer snapshot.
        var newSnapshotPercent: UInt64 = 0
        /// Faults stop here, so every run can finish.
        var untilMs: Int64 = .max
    }

    enum DiskJob {
        case open(UInt64, SnapshotDescriptor)
        case write(UInt64, UInt64, [UInt8])
        case sync(UInt64)
        case verify(UInt64, SnapshotDescriptor)
        case restore(UInt64, SnapshotDescriptor)
        case discard
    }

    enum Event {
        case toReceiver(link: Int, type: UInt8, payload: [UInt8])
        case toSender(link: Int, type: UInt8, payload: [UInt8])
        case read(incarnation: Int, transferID: UInt64, snapshot: SnapshotDescriptor, offset: UInt64, maxBytes: Int)
        case disk(incarnation: Int, DiskJob)
        case tick
        case retry
        case linkUp
    }

    let seed: UInt64
    var rng: SplitMix64
    var faults: Faults
    let options: SnapshotTransferOptions
    let leader = NodeID("n1")
    let follower = NodeID("n2")
    private(set) var nowMs: Int64 = 0
    private var events: [(atMs: Int64, order: UInt64, event: Event)] = []
    private var eventOrder: UInt64 = 0

    // The leader.
    private(set) var snapshot: SnapshotDescriptor
    private(set) var sources: [SnapshotDescriptor: [UInt8]] = [:]
    private(set) var leaderTerm: UInt64 = 1
    private(set) var sender: SnapshotSendState?
    private var senderIncarnation = 0
    private var senderFinishes = 0
    private var readerFreeAtMs: Int64 = 0
    private var retryPending = false
    private var highestAckSeen: UInt64 = 0
    private(set) var leaderDone = false
    private(set) var senderOutcomes: [(succeeded: Bool, reason: String)] = []
    /// Chunk bytes each attempt sent, resends included.
    private(set) var bytesSentPerAttempt: [UInt64] = []

    // The link.
    private(set) var linkIsUp = true
    private var linkGeneration = 0
    private var silentUntilMs: Int64 = 0

    // The follower.
    private(set) var receiver: SnapshotReceiveState
    private var receiverIncarnation = 0
    private(set) var commitIndex: UInt64 = 0
    private(set) var staging: (snapshot: SnapshotDescriptor, bytes: [UInt8])?
    private var syncedThrough = 0
    private(set) var installed: (snapshot: SnapshotDescriptor, bytes: [UInt8])?
    private(set) var restoredFromInstalled = false
    private var diskFreeAtMs: Int64 = 0
    private var stagingOpens = 0
    private var receiverFinishes = 0
    private(set) var stagingBytesWritten: UInt64 = 0

    init(seed: UInt64, fileBytes: Int, options: SnapshotTransferOptions, faults: Faults) {
        self.seed = seed
        rng = SplitMix64(seed: seed)
        self.options = options
        self.faults = faults
        receiver = SnapshotReceiveState(options: options)
        snapshot = SnapshotDescriptor(index: 100, term: 1, fileBytes: 1, payloadCRC: 0)
        snapshot = makeSnapshot(index: 100, term: 1, fileBytes: fileBytes)
        schedule(.tick, afterMs: 100)
        startAttempt()
    }

    private func random(_ range: ClosedRange<UInt64>) -> UInt64 { UInt64.random(in: range, using: &rng) }
    private func chance(_ percent: UInt64) -> Bool { percent > 0 && random(0...99) < percent }
    private func chancePerMille(_ perMille: UInt64) -> Bool { perMille > 0 && random(0...999) < perMille }
    private var faultsActive: Bool { nowMs < faults.untilMs }

    private func makeSnapshot(index: UInt64, term: UInt64, fileBytes: Int) -> SnapshotDescriptor {
        var bytes = [UInt8](repeating: 0, count: fileBytes)
        for k in bytes.indices { bytes[k] = UInt8(truncatingIfNeeded: rng.next()) }
        let descriptor = SnapshotDescriptor(
            index: index, term: term, fileBytes: UInt64(fileBytes), payloadCRC: CRC32C.checksum(bytes))
        sources[descriptor] = bytes
        return descriptor
    }

    private func schedule(_ event: Event, afterMs: Int64) {
        eventOrder += 1
        events.append((nowMs + afterMs, eventOrder, event))
    }

    /// Runs events in time order until `done` holds or the time limit passes; returns whether `done` held.
    @discardableResult
    func run(limitMs: Int64 = 3_600_000, until done: () -> Bool) -> Bool {
        while !done() {
            guard
                let next = events.indices.min(by: {
                    (events[$0].atMs, events[$0].order) < (events[$1].atMs, events[$1].order)
                })
            else { return false }
            let (atMs, _, event) = events.remove(at: next)
            guard atMs <= limitMs else { return false }
            nowMs = max(nowMs, atMs)
            handle(event)
        }
        return true
    }

    /// The leader is done, the follower restored what it installed, and nothing runs any more.
    var settled: Bool { leaderDone && (sender?.isFinished ?? true) && restoredFromInstalled }

    private func handle(_ event: Event) {
        switch event {
        case .toReceiver(let link, let type, let payload):
            guard link == linkGeneration, let frame = decode(type, payload) else { return }
            let commit = commitIndex
            driveReceiver { $0.onFrame(frame, from: leader, commitIndex: commit, nowMs: nowMs) }
        case .toSender(let link, let type, let payload):
            guard link == linkGeneration, let frame = decode(type, payload) else { return }
            guard let sender, sender.transferID == frame.transferID else { return }  // An ended attempt's.
            switch frame {
            case .ack(_, let offset), .accept(_, let offset): highestAckSeen = max(highestAckSeen, offset)
            default: break
            }
            driveSender { $0.onFrame(frame, nowMs: nowMs) }
        case .read(let incarnation, let id, let snapshot, let offset, let maxBytes):
            guard incarnation == senderIncarnation, let source = sources[snapshot] else { return }
            var count = min(maxBytes, source.count - Int(offset))
            if count > 1, faultsActive, chance(faults.shortReadPercent) { count = Int(random(1...UInt64(count - 1))) }
            let bytes = Array(source[Int(offset)..<(Int(offset) + count)])
            driveSender { $0.chunkRead(transferID: id, offset: offset, bytes: bytes) }
        case .disk(let incarnation, let job):
            guard incarnation == receiverIncarnation else { return }  // Lost with the crashed process.
            complete(job)
        case .tick:
            onTick()
        case .retry:
            retryPending = false
            startAttempt()
        case .linkUp:
            linkIsUp = true
            scheduleRetry()
        }
    }

    private func decode(_ type: UInt8, _ payload: [UInt8]) -> SnapshotTransferFrame? {
        do {
            return try SnapshotTransferCodec.decode(type: type, payload: payload)
        } catch {
            XCTFail("seed \(seed): a frame the state machines built does not decode: \(error)")
            return nil
        }
    }

    private func onTick() {
        schedule(.tick, afterMs: 100)
        driveSender { $0.tick(nowMs: nowMs) }
        driveReceiver { $0.tick(nowMs: nowMs) }
        guard faultsActive else { return }
        if linkIsUp, chancePerMille(faults.linkBreakPerMille) { breakLink() }
        if chancePerMille(faults.receiverCrashPerMille) { crashReceiver() }
        if sender != nil, chancePerMille(faults.senderCrashPerMille) { crashSender() }
        if chancePerMille(faults.cancelPerMille) { driveSender { $0.cancel(reason: "test cancels") } }
        if sender != nil, chancePerMille(faults.unnoticedSenderCrashPerMille) { crashSenderUnnoticed() }
        if chancePerMille(faults.silencePerMille) { silentUntilMs = nowMs + Int64(random(100...15_000)) }
    }

    // MARK: the leader's runtime

    func startAttempt() {
        guard linkIsUp, !leaderDone, sender?.isFinished ?? true else { return }
        if faultsActive, chance(faults.newSnapshotPercent) {
            snapshot = makeSnapshot(
                index: snapshot.index + 10, term: leaderTerm, fileBytes: Int(random(1...UInt64(snapshot.fileBytes) * 2))
            )
        }
        let (state, actions) = SnapshotSendState.begin(
            transferID: rng.next(), to: follower, snapshot: snapshot, leaderTerm: leaderTerm, options: options,
            nowMs: nowMs)
        sender = state
        senderFinishes = 0
        highestAckSeen = 0
        bytesSentPerAttempt.append(0)
        performSender(actions)
    }

    private func scheduleRetry() {
        guard !retryPending, linkIsUp, !leaderDone, sender?.isFinished ?? true else { return }
        retryPending = true
        schedule(.retry, afterMs: 200)
    }

    private func driveSender(_ step: (inout SnapshotSendState) -> [SnapshotSendState.Action]) {
        guard var state = sender else { return }
        let actions = step(&state)
        sender = state
        XCTAssertLessThanOrEqual(state.unacknowledgedBytes, UInt64(options.windowBytes), "seed \(seed)")
        performSender(actions)
    }

    private func performSender(_ actions: [SnapshotSendState.Action]) {
        guard let state = sender else { return }
        for action in actions {
            XCTAssertEqual(senderFinishes, 0, "seed \(seed): an action after the attempt finished")
            switch action {
            case .send(let type, let payload, let to):
                XCTAssertEqual(to, follower)
                if case .chunk(_, let offset, let bytes)? = try? SnapshotTransferCodec.decode(
                    type: type, payload: payload)
                {
                    // The window, counted independently of the sender: beyond the highest ack it was shown.
                    XCTAssertLessThanOrEqual(
                        offset + UInt64(bytes.count), highestAckSeen + UInt64(options.windowBytes),
                        "seed \(seed): window exceeded")
                    bytesSentPerAttempt[bytesSentPerAttempt.count - 1] += UInt64(bytes.count)
                }
                transmit(type, payload, fromReceiver: false)
            case .readChunk(let id, let offset, let maxBytes):
                XCTAssertGreaterThan(maxBytes, 0)
                XCTAssertLessThanOrEqual(offset + UInt64(maxBytes), state.snapshot.fileBytes)
                readerFreeAtMs = max(readerFreeAtMs, nowMs) + Int64(random(0...3))
                schedule(
                    .read(
                        incarnation: senderIncarnation, transferID: id, snapshot: state.snapshot, offset: offset,
                        maxBytes: maxBytes),
                    afterMs: readerFreeAtMs - nowMs)
            case .finished(let succeeded, let reason):
                senderFinishes += 1
                senderOutcomes.append((succeeded, reason))
                if succeeded || reason.contains("\(SnapshotDeclineReason.stale)") {
                    leaderDone = true
                } else {
                    scheduleRetry()
                }
            }
        }
    }

    // MARK: the channel

    private func transmit(_ type: UInt8, _ payload: [UInt8], fromReceiver: Bool) {
        guard linkIsUp, nowMs >= silentUntilMs else { return }
        if faultsActive, chance(faults.dropPercent) { return }
        let copies = faultsActive && chance(faults.duplicatePercent) ? 2 : 1
        for _ in 0..<copies {
            let delay = Int64(random(1...max(1, faultsActive ? faults.maxDelayMs : 1)))
            let event: Event =
                fromReceiver
                ? .toSender(link: linkGeneration, type: type, payload: payload)
                : .toReceiver(link: linkGeneration, type: type, payload: payload)
            schedule(event, afterMs: delay)
        }
    }

    func breakLink() {
        guard linkIsUp else { return }
        linkIsUp = false
        linkGeneration += 1  // Frames in flight die with the connection.
        driveSender { $0.linkDown() }
        driveReceiver { $0.linkDown(peer: leader) }
        schedule(.linkUp, afterMs: Int64(random(50...1000)))
    }

    /// The leader process dies; it comes back as leader of a later term, with no memory of the attempt.
    func crashSender() {
        sender = nil
        senderIncarnation += 1
        leaderTerm += 1
        breakLink()
    }

    /// The leader process dies and its connection with it, but the follower hears nothing of it: the new
    /// leader's Offer finds the old transfer still running there.
    func crashSenderUnnoticed() {
        sender = nil
        senderIncarnation += 1
        leaderTerm += 1
        linkGeneration += 1
        scheduleRetry()
    }

    /// The follower process dies: its state and its disk queue are lost, the bytes its disk completed are not.
    func crashReceiver() {
        receiver = SnapshotReceiveState(options: options)
        receiverIncarnation += 1
        diskFreeAtMs = nowMs
        stagingOpens = 0
        receiverFinishes = 0
        syncedThrough = 0
        if let installed, !restoredFromInstalled {
            // A snapshot moved into place is restored when the node starts.
            commitIndex = max(commitIndex, installed.snapshot.index)
            restoredFromInstalled = true
        }
        breakLink()
    }

    // MARK: the follower's runtime

    private func driveReceiver(_ step: (inout SnapshotReceiveState) -> [SnapshotReceiveState.Action]) {
        var state = receiver
        let actions = step(&state)
        receiver = state
        performReceiver(actions)
        XCTAssertEqual(
            stagingOpens - receiverFinishes, receiver.transferID == nil ? 0 : 1,
            "seed \(seed): every transfer started ends exactly once")
    }

    private func performReceiver(_ actions: [SnapshotReceiveState.Action]) {
        for action in actions {
            switch action {
            case .send(let type, let payload, let to):
                XCTAssertEqual(to, leader)
                transmit(type, payload, fromReceiver: true)
            case .openStaging(let id, let snapshot):
                stagingOpens += 1
                queueDisk(.open(id, snapshot))
            case .write(let id, let offset, let bytes): queueDisk(.write(id, offset, bytes))
            case .sync(let id): queueDisk(.sync(id))
            case .finishAndVerify(let id, let snapshot): queueDisk(.verify(id, snapshot))
            case .restore(let id, let snapshot): queueDisk(.restore(id, snapshot))
            case .discardStaging: queueDisk(.discard)
            case .finished: receiverFinishes += 1
            }
        }
    }

    private func queueDisk(_ job: DiskJob) {
        diskFreeAtMs = max(diskFreeAtMs, nowMs) + Int64(random(0...5))
        schedule(.disk(incarnation: receiverIncarnation, job), afterMs: diskFreeAtMs - nowMs)
    }

    private func complete(_ job: DiskJob) {
        switch job {
        case .open(let id, let snapshot):
            if staging?.snapshot != snapshot {
                staging = (snapshot, [])
                syncedThrough = 0
            }
            let held = UInt64(staging!.bytes.count)
            driveReceiver { $0.stagingOpened(transferID: id, resumeOffset: held, nowMs: nowMs) }
        case .write(let id, let offset, let bytes):
            guard let current = staging else { return XCTFail("seed \(seed): a write without a staging file") }
            // Staging only grows at its end, and never past the file: no byte is written twice.
            XCTAssertEqual(offset, UInt64(current.bytes.count), "seed \(seed): a write not at the staged end")
            staging!.bytes += bytes
            stagingBytesWritten += UInt64(bytes.count)
            XCTAssertLessThanOrEqual(UInt64(staging!.bytes.count), current.snapshot.fileBytes, "seed \(seed)")
            driveReceiver { $0.written(transferID: id, through: offset + UInt64(bytes.count)) }
        case .sync(let id):
            syncedThrough = staging?.bytes.count ?? 0
            driveReceiver { $0.synced(transferID: id) }
        case .verify(let id, let snapshot):
            let bytes = staging?.snapshot == snapshot ? staging!.bytes : []
            XCTAssertEqual(syncedThrough, Int(snapshot.fileBytes), "seed \(seed): verified before the last sync")
            let ok = bytes.count == Int(snapshot.fileBytes) && CRC32C.checksum(bytes) == snapshot.payloadCRC
            // Every completed transfer staged exactly the source's bytes.
            XCTAssertTrue(ok, "seed \(seed): staged bytes fail verification")
            XCTAssertEqual(bytes, sources[snapshot], "seed \(seed): staged bytes differ from the source")
            if ok {
                installed = (snapshot, bytes)
                restoredFromInstalled = false
                staging = nil
            }
            driveReceiver { $0.verified(transferID: id, ok: ok) }
        case .restore(let id, let snapshot):
            commitIndex = max(commitIndex, snapshot.index)
            restoredFromInstalled = true
            driveReceiver { $0.restored(transferID: id, ok: true) }
        case .discard:
            staging = nil
        }
    }
}

/// Snapshot installation: the frame codec, each state machine's rules, and whole transfers over a hostile channel.
final class SnapshotTransferTests: XCTestCase {
    private let leader = NodeID("n1")
    private let follower = NodeID("n2")

    private func descriptor(fileBytes: UInt64 = 10_000, index: UInt64 = 50) -> SnapshotDescriptor {
        SnapshotDescriptor(index: index, term: 2, fileBytes: fileBytes, payloadCRC: 0xABCD_EF01)
    }

    private func smallOptions(chunk: Int = 1000, window: Int = 3000) -> SnapshotTransferOptions {
        var options = SnapshotTransferOptions()
        options.chunkBytes = chunk
        options.windowBytes = window
        options.syncEveryBytes = 4000
        options.maxUnwrittenBytes = UInt64(window)
        return options
    }

    private func frames(_ actions: [SnapshotSendState.Action]) -> [SnapshotTransferFrame] {
        actions.compactMap {
            guard case .send(let type, let payload, _) = $0 else { return nil }
            return try? SnapshotTransferCodec.decode(type: type, payload: payload)
        }
    }

    private func frames(_ actions: [SnapshotReceiveState.Action]) -> [SnapshotTransferFrame] {
        actions.compactMap {
            guard case .send(let type, let payload, _) = $0 else { return nil }
            return try? SnapshotTransferCodec.decode(type: type, payload: payload)
        }
    }

    private func offer(_ id: UInt64, leaderTerm: UInt64 = 3, _ snapshot: SnapshotDescriptor) -> SnapshotOffer {
        SnapshotOffer(transferID: id, leaderTerm: leaderTerm, snapshot: snapshot)
    }

    /// A receiver with transfer `id` accepted from offset `resume`.
    private func receiving(
        _ id: UInt64 = 7, _ snapshot: SnapshotDescriptor, resume: UInt64 = 0,
        options: SnapshotTransferOptions? = nil
    ) -> SnapshotReceiveState {
        var receiver = SnapshotReceiveState(options: options ?? smallOptions())
        _ = receiver.onOffer(offer(id, snapshot), from: leader, commitIndex: 0, nowMs: 0)
        let actions = receiver.stagingOpened(transferID: id, resumeOffset: resume, nowMs: 0)
        XCTAssertEqual(frames(actions), [.accept(transferID: id, resumeOffset: resume)])
        return receiver
    }

    private func chunk(_ id: UInt64, _ offset: UInt64, _ count: Int) -> SnapshotTransferFrame {
        .chunk(
            transferID: id, offset: offset, bytes: [UInt8](repeating: UInt8(truncatingIfNeeded: offset), count: count))
    }

    // MARK: codec

    func testEveryFrameRoundTrips() throws {
        let all: [SnapshotTransferFrame] = [
            .offer(offer(.max, leaderTerm: Message.termMax, descriptor(fileBytes: 1 << 40, index: Message.indexMax))),
            .accept(transferID: 1, resumeOffset: 12_345),
            .decline(transferID: 2, reason: .busy),
            .chunk(transferID: 3, offset: 1 << 33, bytes: [1, 2, 3, 255]),
            .ack(transferID: 4, durableOffset: 99),
            .done(transferID: 5, outcome: .restoreFailed),
            .abort(transferID: 6, reason: .superseded),
        ]
        for frame in all {
            let (type, payload) = SnapshotTransferCodec.encode(frame)
            XCTAssertTrue(SnapshotTransferCodec.handles(frameType: type))
            XCTAssertLessThan(type, ReplicaRuntime.applicationFrameTypeMin)
            XCTAssertNil(ConsensusCodec.FrameType(rawValue: type), "a transfer frame type taken by consensus")
            XCTAssertEqual(try SnapshotTransferCodec.decode(type: type, payload: payload), frame)
        }
        let (_, offer) = SnapshotTransferCodec.encode(all[0])
        XCTAssertEqual(offer.count, 44)
        let (_, chunk) = SnapshotTransferCodec.encode(all[3])
        XCTAssertEqual(chunk.count, SnapshotTransferCodec.chunkOverheadBytes + 4)
    }

    func testEveryTruncationOfEveryFrameIsADecodeError() {
        let all: [SnapshotTransferFrame] = [
            .offer(offer(9, descriptor())), .accept(transferID: 1, resumeOffset: 5),
            .decline(transferID: 1, reason: .stale),
            chunk(3, 0, 10), .ack(transferID: 1, durableOffset: 2), .done(transferID: 1, outcome: .installed),
            .abort(transferID: 1, reason: .stalled),
        ]
        for frame in all {
            let (type, payload) = SnapshotTransferCodec.encode(frame)
            for length in 0..<payload.count {
                XCTAssertThrowsError(try SnapshotTransferCodec.decode(type: type, payload: Array(payload[..<length]))) {
                    guard case .truncated = $0 as? DecodeError else { return XCTFail("\(frame) at \(length): \($0)") }
                }
            }
            XCTAssertThrowsError(try SnapshotTransferCodec.decode(type: type, payload: payload + [0])) {
                if case .offer = frame {
                    // An Offer may go on with a configuration: one more byte is a length cut short.
                    guard case .truncated = $0 as? DecodeError else { return XCTFail("\(frame) + 1 byte: \($0)") }
                } else {
                    XCTAssertEqual($0 as? DecodeError, .trailingBytes(count: 1))
                }
            }
        }
    }

    func testHostileFieldsAreDecodeErrors() {
        func payload(_ build: (inout [UInt8]) -> Void) -> [UInt8] {
            var bytes: [UInt8] = []
            build(&bytes)
            return bytes
        }
        func u64(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
        func u32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
        func expectInvalid(_ type: SnapshotTransferCodec.FrameType, _ bytes: [UInt8], _ field: String) {
            XCTAssertThrowsError(try SnapshotTransferCodec.decode(type: type.rawValue, payload: bytes)) {
                guard case .invalidValue(let name, _) = $0 as? DecodeError else { return XCTFail("\(field): \($0)") }
                XCTAssertEqual(name, field)
            }
        }
        // A chunk claiming 4 GiB in a 24-byte payload: refused before anything is allocated.
        XCTAssertThrowsError(
            try SnapshotTransferCodec.decode(
                type: 0x32, payload: payload { $0 += u64(1) + u64(0) + u32(.max) + [1, 2, 3, 4] })
        ) { guard case .truncated = $0 as? DecodeError else { return XCTFail("\($0)") } }
        expectInvalid(.chunk, payload { $0 += u64(1) + u64(.max) + u32(2) + [1, 2] }, "chunk end")
        expectInvalid(.chunk, payload { $0 += u64(1) + u64(0) + u32(0) }, "empty chunk")
        expectInvalid(.answer, payload { $0 += u64(1) + [2] + u64(0) }, "answer tag")
        expectInvalid(.answer, payload { $0 += u64(1) + [1, 200] }, "decline reason")
        expectInvalid(.done, payload { $0 += u64(1) + [3] }, "install outcome")
        expectInvalid(.abort, payload { $0 += u64(1) + [6] }, "abort reason")
        let goodOffer = { (leaderTerm: UInt64, index: UInt64, term: UInt64, size: UInt64) in
            u64(1) + u64(leaderTerm) + u64(index) + u64(term) + u64(size) + u32(0)
        }
        expectInvalid(.offer, goodOffer(0, 1, 0, 1), "leader term")
        expectInvalid(.offer, goodOffer(.max, 1, 1, 1), "leader term")
        expectInvalid(.offer, goodOffer(2, 0, 1, 1), "snapshot index")
        expectInvalid(.offer, goodOffer(2, .max, 1, 1), "snapshot index")
        expectInvalid(.offer, goodOffer(2, 1, 3, 1), "snapshot term")
        expectInvalid(.offer, goodOffer(2, 1, 1, 0), "snapshot file size")
        XCTAssertNoThrow(try SnapshotTransferCodec.decode(type: 0x30, payload: goodOffer(2, 1, 1, 1)))
        for type: UInt8 in [0x00, 0x10, 0x2F, 0x36, 0x40, 0xFF] {
            XCTAssertThrowsError(try SnapshotTransferCodec.decode(type: type, payload: [])) {
                XCTAssertEqual($0 as? DecodeError, .unknownFrameType(type))
            }
        }
    }

    func testRandomBytesNeverTrapAndWhatDecodesIsCanonical() {
        var rng = SplitMix64(seed: 0xF00D)
        var decoded = 0
        var refused = 0
        for round in 0..<20_000 {
            let type = SnapshotTransferCodec.FrameType.allCases[round % 6].rawValue
            let count = Int(rng.next() % 64)
            var bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            // Chunk headers with small, often lying lengths reach the length checks rather than only truncation;
            // small codes reach the code checks.
            if type == 0x32, bytes.count >= 20 {
                bytes[16..<20] = [UInt8(truncatingIfNeeded: rng.next() % 48), 0, 0, 0]
            }
            if type != 0x32, type != 0x30, bytes.count >= 9, rng.next() % 2 == 0 { bytes[8] = UInt8(rng.next() % 8) }
            do {
                let frame = try SnapshotTransferCodec.decode(type: type, payload: bytes)
                decoded += 1
                // One encoding per frame: nothing a peer sends decodes to a frame that re-encodes differently.
                let (reType, rePayload) = SnapshotTransferCodec.encode(frame)
                XCTAssertEqual(reType, type)
                XCTAssertEqual(rePayload, bytes)
            } catch {
                refused += 1
            }
        }
        XCTAssertGreaterThan(decoded, 0, "the generator never reached a well-formed frame")
        XCTAssertGreaterThan(refused, decoded)
    }

    // MARK: receiver rules

    func testAStaleOfferIsDeclinedAndTheSenderFinishesUnsuccessfully() {
        var receiver = SnapshotReceiveState(options: smallOptions())
        var (sender, actions) = SnapshotSendState.begin(
            transferID: 11, to: follower, snapshot: descriptor(index: 50), leaderTerm: 3, options: smallOptions(),
            nowMs: 0)
        guard case .offer(let offer)? = frames(actions).first else { return XCTFail("no offer") }
        let answer = receiver.onOffer(offer, from: leader, commitIndex: 50, nowMs: 0)
        XCTAssertEqual(frames(answer), [.decline(transferID: 11, reason: .stale)])
        XCTAssertNil(receiver.transferID)
        XCTAssertEqual(
            sender.onFrame(.decline(transferID: 11, reason: .stale), nowMs: 1),
            [.finished(succeeded: false, reason: "declined: stale")])
        // One entry short of the snapshot: accepted.
        XCTAssertEqual(
            receiver.onOffer(offer, from: leader, commitIndex: 49, nowMs: 0),
            [.openStaging(transferID: 11, snapshot: offer.snapshot)])
    }

    func testAnOfferOfTheSnapshotJustInstalledIsDeclinedAsAlreadyInstalled() {
        let snapshot = descriptor(fileBytes: 500)
        var receiver = receiving(7, snapshot, resume: 500)
        XCTAssertEqual(receiver.synced(transferID: 7), [.finishAndVerify(transferID: 7, snapshot: snapshot)])
        XCTAssertEqual(receiver.verified(transferID: 7, ok: true), [.restore(transferID: 7, snapshot: snapshot)])
        let done = receiver.restored(transferID: 7, ok: true)
        XCTAssertEqual(frames(done), [.done(transferID: 7, outcome: .installed)])
        XCTAssertEqual(done.last, .finished(installed: true, reason: "installed"))
        // The same attempt asking again hears Done again; a new attempt of the same snapshot is told it is there.
        XCTAssertEqual(
            frames(receiver.onOffer(offer(7, snapshot), from: leader, commitIndex: 0, nowMs: 1)),
            [.done(transferID: 7, outcome: .installed)])
        XCTAssertEqual(
            frames(receiver.onOffer(offer(8, snapshot), from: leader, commitIndex: 0, nowMs: 1)),
            [.decline(transferID: 8, reason: .alreadyInstalled)])
    }

    func testARepeatedOfferIsAnsweredAgainWithWhatIsWritten() {
        let snapshot = descriptor()
        var receiver = SnapshotReceiveState(options: smallOptions())
        let first = receiver.onOffer(offer(7, snapshot), from: leader, commitIndex: 0, nowMs: 0)
        XCTAssertEqual(first, [.openStaging(transferID: 7, snapshot: snapshot)])
        // Staging is still opening: the Accept goes out once, when it is open.
        XCTAssertEqual(receiver.onOffer(offer(7, snapshot), from: leader, commitIndex: 0, nowMs: 0), [])
        XCTAssertEqual(
            frames(receiver.stagingOpened(transferID: 7, resumeOffset: 2000, nowMs: 0)),
            [.accept(transferID: 7, resumeOffset: 2000)])
        XCTAssertEqual(
            frames(receiver.onOffer(offer(7, snapshot), from: leader, commitIndex: 0, nowMs: 0)),
            [.accept(transferID: 7, resumeOffset: 2000)])
        _ = receiver.onFrame(chunk(7, 2000, 1000), from: leader, commitIndex: 0, nowMs: 0)
        _ = receiver.written(transferID: 7, through: 3000)
        XCTAssertEqual(
            frames(receiver.onOffer(offer(7, snapshot), from: leader, commitIndex: 0, nowMs: 0)),
            [.accept(transferID: 7, resumeOffset: 3000)])
        // The same id with different contents, or from another peer, is not the same offer.
        XCTAssertEqual(receiver.onOffer(offer(7, descriptor(index: 60)), from: leader, commitIndex: 0, nowMs: 0), [])
        XCTAssertEqual(receiver.onOffer(offer(7, snapshot), from: NodeID("n3"), commitIndex: 0, nowMs: 0), [])
        XCTAssertEqual(receiver.transferID, 7)
    }

    func testOneTransferAtATimeAndOnlyANewerOfferReplacesIt() {
        let snapshot = descriptor(index: 50)
        var receiver = receiving(7, snapshot)
        let n3 = NodeID("n3")
        // An older leader, an older snapshot of the same leader, or another node claiming the same term: busy.
        XCTAssertEqual(
            frames(
                receiver.onOffer(offer(8, leaderTerm: 2, descriptor(index: 90)), from: n3, commitIndex: 0, nowMs: 0)),
            [.decline(transferID: 8, reason: .busy)])
        XCTAssertEqual(
            frames(receiver.onOffer(offer(9, descriptor(index: 40)), from: leader, commitIndex: 0, nowMs: 0)),
            [.decline(transferID: 9, reason: .busy)])
        XCTAssertEqual(
            frames(receiver.onOffer(offer(10, descriptor(index: 90)), from: n3, commitIndex: 0, nowMs: 0)),
            [.decline(transferID: 10, reason: .busy)])
        XCTAssertEqual(receiver.transferID, 7)
        // A later leader replaces it: the old sender is told, the old transfer finishes, the new one opens.
        let newer = offer(12, leaderTerm: 4, descriptor(index: 60))
        let actions = receiver.onOffer(newer, from: n3, commitIndex: 0, nowMs: 0)
        guard actions.count == 3 else { return XCTFail("\(actions)") }
        XCTAssertEqual(frames(Array(actions.prefix(1))), [.abort(transferID: 7, reason: .superseded)])
        guard case .send(_, _, let to) = actions[0] else { return XCTFail("\(actions[0])") }
        XCTAssertEqual(to, leader)
        XCTAssertEqual(actions[1], .finished(installed: false, reason: "superseded by transfer 12"))
        XCTAssertEqual(actions[2], .openStaging(transferID: 12, snapshot: newer.snapshot))
        XCTAssertEqual(receiver.transferID, 12)
        // Completions of the replaced transfer are ignored.
        XCTAssertEqual(receiver.stagingOpened(transferID: 7, resumeOffset: 0, nowMs: 0), [])
        XCTAssertEqual(receiver.onFrame(chunk(7, 0, 100), from: leader, commitIndex: 0, nowMs: 0), [])
        // The same leader's new attempt at the same snapshot replaces it too (the sender gave the old one up).
        _ = receiver.stagingOpened(transferID: 12, resumeOffset: 0, nowMs: 0)
        let retry = receiver.onOffer(
            offer(13, leaderTerm: 4, descriptor(index: 60)), from: n3, commitIndex: 0, nowMs: 0)
        XCTAssertEqual(retry.last, .openStaging(transferID: 13, snapshot: newer.snapshot))
        // A late copy of an ended attempt's Offer never starts it again.
        XCTAssertEqual(receiver.onOffer(newer, from: n3, commitIndex: 0, nowMs: 0), [])
    }

    func testAnInstallationUnderWayIsNotReplaced() {
        let snapshot = descriptor(fileBytes: 1000)
        var receiver = receiving(7, snapshot)
        _ = receiver.onFrame(chunk(7, 0, 1000), from: leader, commitIndex: 0, nowMs: 0)
        _ = receiver.written(transferID: 7, through: 1000)
        XCTAssertEqual(
            frames(
                receiver.onOffer(offer(8, leaderTerm: 9, descriptor(index: 90)), from: leader, commitIndex: 0, nowMs: 0)
            ),
            [.decline(transferID: 8, reason: .busy)])
        // Nor ended by a broken link or an abort: every byte is in.
        XCTAssertEqual(receiver.linkDown(peer: leader), [])
        XCTAssertEqual(
            receiver.onFrame(.abort(transferID: 7, reason: .cancelled), from: leader, commitIndex: 0, nowMs: 0), [])
        XCTAssertEqual(receiver.synced(transferID: 7), [.finishAndVerify(transferID: 7, snapshot: snapshot)])
    }

    func testOnlyTheChunkAtTheStagedEndIsWrittenAndGapsAreAnsweredWithWhatIsWritten() {
        let snapshot = descriptor(fileBytes: 10_000)
        var receiver = receiving(7, snapshot, resume: 1000)
        func deliver(_ frame: SnapshotTransferFrame) -> [SnapshotReceiveState.Action] {
            receiver.onFrame(frame, from: leader, commitIndex: 0, nowMs: 0)
        }
        // Past a gap: nothing written, each such chunk answered with an ack of what is written.
        XCTAssertEqual(frames(deliver(chunk(7, 2000, 1000))), [.ack(transferID: 7, durableOffset: 1000)])
        XCTAssertEqual(frames(deliver(chunk(7, 3000, 1000))), [.ack(transferID: 7, durableOffset: 1000)])
        // The chunk at the staged end is written.
        let write = deliver(chunk(7, 1000, 1000))
        XCTAssertEqual(write, [.write(transferID: 7, offset: 1000, bytes: [UInt8](repeating: 232, count: 1000))])
        // A duplicate is not written again; it is answered with what is written (not yet what is received).
        XCTAssertEqual(frames(deliver(chunk(7, 1000, 1000))), [.ack(transferID: 7, durableOffset: 1000)])
        // A chunk overlapping the staged end contributes only its new bytes.
        let overlap = deliver(chunk(7, 1500, 1000))
        guard case .write(_, let offset, let bytes)? = overlap.first else { return XCTFail("\(overlap)") }
        XCTAssertEqual(offset, 2000)
        XCTAssertEqual(bytes.count, 500)
        // Acks follow the disk, cumulatively.
        XCTAssertEqual(
            frames(receiver.written(transferID: 7, through: 2000)), [.ack(transferID: 7, durableOffset: 2000)])
        XCTAssertEqual(
            frames(receiver.written(transferID: 7, through: 2500)), [.ack(transferID: 7, durableOffset: 2500)])
        // A gap further on.
        XCTAssertEqual(frames(deliver(chunk(7, 4000, 10))), [.ack(transferID: 7, durableOffset: 2500)])
        XCTAssertEqual(receiver.writtenOffset, 2500)
    }

    func testAChunkPastTheEndOfTheFileAbortsTheTransfer() {
        var receiver = receiving(7, descriptor(fileBytes: 1500))
        let actions = receiver.onFrame(chunk(7, 1000, 501), from: leader, commitIndex: 0, nowMs: 0)
        XCTAssertEqual(frames(actions), [.abort(transferID: 7, reason: .protocolError)])
        XCTAssertEqual(
            actions.last, .finished(installed: false, reason: "protocol error: a chunk at 1000 ends past the file"))
        XCTAssertNil(receiver.transferID)
    }

    func testFramesOfAnotherTransferOrPeerAreIgnored() {
        var receiver = receiving(7, descriptor())
        XCTAssertEqual(receiver.onFrame(chunk(8, 0, 100), from: leader, commitIndex: 0, nowMs: 0), [])
        XCTAssertEqual(receiver.onFrame(chunk(7, 0, 100), from: NodeID("n3"), commitIndex: 0, nowMs: 0), [])
        XCTAssertEqual(
            receiver.onFrame(.abort(transferID: 8, reason: .cancelled), from: leader, commitIndex: 0, nowMs: 0), [])
        XCTAssertEqual(receiver.written(transferID: 8, through: 5), [])
        XCTAssertEqual(receiver.transferID, 7)

        var (sender, _) = SnapshotSendState.begin(
            transferID: 1, to: follower, snapshot: descriptor(), leaderTerm: 3, options: smallOptions(), nowMs: 0)
        XCTAssertEqual(sender.onFrame(.accept(transferID: 2, resumeOffset: 0), nowMs: 0), [])
        XCTAssertEqual(sender.onFrame(.done(transferID: 2, outcome: .installed), nowMs: 0), [])
        XCTAssertEqual(sender.onFrame(.abort(transferID: 2, reason: .stalled), nowMs: 0), [])
        XCTAssertFalse(sender.isFinished)
    }

    func testTheReceiverSyncsEveryFewMegabytesAndBeforeVerifying() {
        var options = smallOptions(chunk: 1000, window: 10_000)
        options.syncEveryBytes = 2500
        let snapshot = descriptor(fileBytes: 6000)
        var receiver = receiving(7, snapshot, options: options)
        var syncs = 0
        for k in 0..<6 {
            let offset = UInt64(k * 1000)
            _ = receiver.onFrame(chunk(7, offset, 1000), from: leader, commitIndex: 0, nowMs: 0)
            let actions = receiver.written(transferID: 7, through: offset + 1000)
            if actions.contains(.sync(transferID: 7)) {
                syncs += 1
                if k == 2 {  // Written 3000 >= 2500: the first sync; it completes before the next write.
                    XCTAssertEqual(receiver.synced(transferID: 7), [])
                }
            }
            XCTAssertFalse(actions.contains(.finishAndVerify(transferID: 7, snapshot: snapshot)))
        }
        // The sync at 3000, then at 6000 the last one; verification waits for it.
        XCTAssertEqual(syncs, 2)
        XCTAssertEqual(receiver.synced(transferID: 7), [.finishAndVerify(transferID: 7, snapshot: snapshot)])
    }

    func testAFinalSyncWaitsForTheOneRunningAndThenCoversTheRest() {
        var options = smallOptions(chunk: 1000, window: 10_000)
        options.syncEveryBytes = 1000
        let snapshot = descriptor(fileBytes: 2000)
        var receiver = receiving(7, snapshot, options: options)
        _ = receiver.onFrame(chunk(7, 0, 1000), from: leader, commitIndex: 0, nowMs: 0)
        _ = receiver.onFrame(chunk(7, 1000, 1000), from: leader, commitIndex: 0, nowMs: 0)
        XCTAssertTrue(receiver.written(transferID: 7, through: 1000).contains(.sync(transferID: 7)))
        XCTAssertFalse(receiver.written(transferID: 7, through: 2000).contains(.sync(transferID: 7)))
        // The sync that completes covered 1000 bytes only: another one, then verification.
        XCTAssertEqual(receiver.synced(transferID: 7), [.sync(transferID: 7)])
        XCTAssertEqual(receiver.synced(transferID: 7), [.finishAndVerify(transferID: 7, snapshot: snapshot)])
    }

    func testAFailedVerificationDiscardsTheStagedFile() {
        let snapshot = descriptor(fileBytes: 100)
        var receiver = receiving(7, snapshot, resume: 100)
        _ = receiver.synced(transferID: 7)
        let actions = receiver.verified(transferID: 7, ok: false)
        XCTAssertEqual(actions.first, .discardStaging(transferID: 7))
        XCTAssertEqual(frames(actions), [.done(transferID: 7, outcome: .verifyFailed)])
        XCTAssertEqual(actions.last, .finished(installed: false, reason: "verification failed"))
        // The snapshot is not "already installed": a new attempt starts over.
        XCTAssertEqual(
            receiver.onOffer(offer(8, snapshot), from: leader, commitIndex: 0, nowMs: 0),
            [.openStaging(transferID: 8, snapshot: snapshot)])
    }

    func testTheReceiverBoundsBytesNotYetWritten() {
        let snapshot = descriptor(fileBytes: 10_000)
        var receiver = receiving(7, snapshot, options: smallOptions(chunk: 1000, window: 2000))
        XCTAssertEqual(receiver.onFrame(chunk(7, 0, 1000), from: leader, commitIndex: 0, nowMs: 0).count, 1)
        XCTAssertEqual(receiver.onFrame(chunk(7, 1000, 1000), from: leader, commitIndex: 0, nowMs: 0).count, 1)
        // The disk is 2000 bytes behind, the bound: the next chunk is dropped as if lost.
        XCTAssertEqual(receiver.onFrame(chunk(7, 2000, 1000), from: leader, commitIndex: 0, nowMs: 0), [])
        _ = receiver.written(transferID: 7, through: 1000)
        guard
            case .write(_, let offset, _)? = receiver.onFrame(
                chunk(7, 2000, 1000), from: leader, commitIndex: 0, nowMs: 0
            ).first
        else { return XCTFail("the chunk is written once the disk caught up") }
        XCTAssertEqual(offset, 2000)
    }

    func testAReceiverThatHearsNothingGivesUpAndALinkDownEndsItsTransfer() {
        var receiver = receiving(7, descriptor())
        XCTAssertEqual(receiver.tick(nowMs: 9_999), [])
        let actions = receiver.tick(nowMs: 10_000)
        XCTAssertEqual(frames(actions), [.abort(transferID: 7, reason: .stalled)])
        XCTAssertNil(receiver.transferID)

        var other = receiving(7, descriptor())
        XCTAssertEqual(other.linkDown(peer: NodeID("n3")), [])
        XCTAssertEqual(other.linkDown(peer: leader), [.finished(installed: false, reason: "link down")])
    }

    // MARK: sender rules

    func testTheSenderKeepsItsWindowAndGoesBackOnARepeatedAck() {
        let snapshot = descriptor(fileBytes: 10_000)
        var (sender, first) = SnapshotSendState.begin(
            transferID: 1, to: follower, snapshot: snapshot, leaderTerm: 3, options: smallOptions(), nowMs: 0)
        XCTAssertEqual(frames(first).count, 1)
        var reads = sender.onAccept(transferID: 1, resumeOffset: 500, nowMs: 0)
        var sent: [UInt64] = []
        // Serve each read at once; with no acks, 3000 bytes (the window) go out and then the sender waits.
        while case .readChunk(_, let offset, let maxBytes)? = reads.last {
            let actions = sender.chunkRead(transferID: 1, offset: offset, bytes: [UInt8](repeating: 0, count: maxBytes))
            for case .chunk(_, let chunkOffset, _) in frames(actions) { sent.append(chunkOffset) }
            reads = actions
        }
        XCTAssertEqual(sent, [500, 1500, 2500])
        XCTAssertEqual(sender.unacknowledgedBytes, 3000)
        // An ack advancing by one chunk opens room for exactly one more.
        XCTAssertEqual(
            sender.onAck(transferID: 1, durableOffset: 1500, nowMs: 10),
            [.readChunk(transferID: 1, offset: 3500, maxBytes: 1000)])
        _ = sender.chunkRead(transferID: 1, offset: 3500, bytes: [UInt8](repeating: 0, count: 1000))
        // Older acks are ignored. The current one repeated three times (chunks past a gap at the receiver) sends
        // the sender back, once; once or twice may be a reordered chunk or a duplicated ack.
        XCTAssertEqual(sender.onAck(transferID: 1, durableOffset: 500, nowMs: 20), [])
        XCTAssertEqual(sender.onAck(transferID: 1, durableOffset: 1500, nowMs: 20), [])
        XCTAssertEqual(sender.onAck(transferID: 1, durableOffset: 1500, nowMs: 20), [])
        XCTAssertEqual(sender.nextOffset, 4500)
        XCTAssertEqual(
            sender.onAck(transferID: 1, durableOffset: 1500, nowMs: 20),
            [.readChunk(transferID: 1, offset: 1500, maxBytes: 1000)])
        XCTAssertEqual(sender.nextOffset, 1500)
        // The rest of the repeats (one per chunk that was past the gap) do not send it back again.
        let resent = sender.chunkRead(transferID: 1, offset: 1500, bytes: [UInt8](repeating: 0, count: 1000))
        XCTAssertEqual(resent.last, .readChunk(transferID: 1, offset: 2500, maxBytes: 1000))
        for _ in 0..<5 { XCTAssertEqual(sender.onAck(transferID: 1, durableOffset: 1500, nowMs: 21), []) }
        XCTAssertEqual(sender.nextOffset, 2500)
        // An ack of bytes never sent is a protocol error.
        let bad = sender.onAck(transferID: 1, durableOffset: 9000, nowMs: 22)
        XCTAssertEqual(frames(bad), [.abort(transferID: 1, reason: .protocolError)])
        XCTAssertTrue(sender.isFinished)
    }

    func testAReadOvertakenByARewindIsDroppedAndTheRightOneAskedFor() {
        var (sender, _) = SnapshotSendState.begin(
            transferID: 1, to: follower, snapshot: descriptor(fileBytes: 10_000), leaderTerm: 3,
            options: smallOptions(), nowMs: 0)
        _ = sender.onAccept(transferID: 1, resumeOffset: 0, nowMs: 0)
        _ = sender.chunkRead(transferID: 1, offset: 0, bytes: [UInt8](repeating: 0, count: 1000))
        // The read at 1000 is outstanding when acks stop for a second: the sender goes back to 0.
        XCTAssertEqual(sender.tick(nowMs: 999), [])
        XCTAssertEqual(sender.tick(nowMs: 1000), [])
        XCTAssertEqual(sender.nextOffset, 0)
        XCTAssertEqual(
            sender.chunkRead(transferID: 1, offset: 1000, bytes: [UInt8](repeating: 0, count: 1000)),
            [.readChunk(transferID: 1, offset: 0, maxBytes: 1000)])
        // A read of another attempt is never used.
        XCTAssertEqual(sender.chunkRead(transferID: 2, offset: 0, bytes: [1]), [])
        // A file shorter than promised fails the attempt.
        XCTAssertEqual(
            frames(sender.chunkRead(transferID: 1, offset: 0, bytes: [])), [.abort(transferID: 1, reason: .readFailed)])
    }

    func testTheSenderResendsAnUnansweredOfferAndAbortsWhenNothingMoves() {
        var (sender, first) = SnapshotSendState.begin(
            transferID: 1, to: follower, snapshot: descriptor(), leaderTerm: 3, options: smallOptions(), nowMs: 0)
        XCTAssertEqual(sender.tick(nowMs: 999), [])
        XCTAssertEqual(sender.tick(nowMs: 1000), first)
        XCTAssertEqual(sender.tick(nowMs: 1500), [])
        let actions = sender.tick(nowMs: 10_000)
        XCTAssertEqual(frames(actions), [.abort(transferID: 1, reason: .stalled)])
        XCTAssertEqual(actions.last, .finished(succeeded: false, reason: "stalled: no progress for 10000 ms"))
        XCTAssertEqual(sender.tick(nowMs: 20_000), [])
    }

    func testOnceEveryByteIsAckedTheSenderProbesUntilDone() {
        var (sender, first) = SnapshotSendState.begin(
            transferID: 1, to: follower, snapshot: descriptor(fileBytes: 100), leaderTerm: 3, options: smallOptions(),
            nowMs: 0)
        // The receiver already holds the whole file from an earlier attempt: nothing to send.
        XCTAssertEqual(sender.onAccept(transferID: 1, resumeOffset: 100, nowMs: 0), [])
        XCTAssertEqual(sender.tick(nowMs: 1000), first)
        // The receiver's answers show it alive through a long restore: no stall.
        for second in Int64(1)...30 {
            _ = sender.onAccept(transferID: 1, resumeOffset: 100, nowMs: second * 1000)
            _ = sender.tick(nowMs: second * 1000 + 500)
            XCTAssertFalse(sender.isFinished)
        }
        XCTAssertFalse(sender.isFinished)
        XCTAssertEqual(
            sender.onDone(transferID: 1, outcome: .installed), [.finished(succeeded: true, reason: "installed")])
        XCTAssertEqual(sender.onDone(transferID: 1, outcome: .installed), [])
    }

    func testALinkDownOrCancelEndsTheAttemptOnce() {
        var (sender, _) = SnapshotSendState.begin(
            transferID: 1, to: follower, snapshot: descriptor(), leaderTerm: 3, options: smallOptions(), nowMs: 0)
        XCTAssertEqual(sender.linkDown(), [.finished(succeeded: false, reason: "link down")])
        XCTAssertEqual(sender.linkDown(), [])
        XCTAssertEqual(sender.cancel(reason: "x"), [])
        var (other, _) = SnapshotSendState.begin(
            transferID: 2, to: follower, snapshot: descriptor(), leaderTerm: 3, options: smallOptions(), nowMs: 0)
        XCTAssertEqual(frames(other.cancel(reason: "no longer leader")), [.abort(transferID: 2, reason: .cancelled)])
    }

    // MARK: whole transfers

    func testACleanTransferSendsEveryByteOnceAndInstallsIt() {
        let world = TransferWorld(
            seed: 1, fileBytes: 100_000, options: smallOptions(chunk: 4096, window: 16_384), faults: .init())
        XCTAssertTrue(world.run { world.settled })
        XCTAssertEqual(world.bytesSentPerAttempt, [100_000])
        XCTAssertEqual(world.stagingBytesWritten, 100_000)
        XCTAssertEqual(world.installed?.bytes, world.sources[world.snapshot])
        XCTAssertEqual(world.senderOutcomes.map(\.succeeded), [true])
    }

    /// Runs a clean transfer until the follower's disk holds more than half the file, then applies `fault`; the
    /// next attempt must send less than the half that was missing... and the file must still arrive whole.
    private func resumeScenario(_ fault: (TransferWorld) -> Void) {
        let fileBytes = 200_000
        let world = TransferWorld(
            seed: 2, fileBytes: fileBytes, options: smallOptions(chunk: 4096, window: 16_384), faults: .init())
        XCTAssertTrue(world.run { (world.staging?.bytes.count ?? 0) > fileBytes / 2 + 10_000 })
        let staged = world.staging?.bytes.count ?? 0
        fault(world)
        XCTAssertTrue(world.run { world.settled })
        XCTAssertEqual(world.installed?.bytes, world.sources[world.snapshot])
        XCTAssertGreaterThanOrEqual(world.bytesSentPerAttempt.count, 2)
        let resent = world.bytesSentPerAttempt.dropFirst().reduce(0, +)
        // Only what was missing (plus what was in flight when it broke) is sent again.
        XCTAssertLessThan(resent, UInt64(fileBytes / 2))
        XCTAssertLessThanOrEqual(resent, UInt64(fileBytes - staged + 16_384))
        XCTAssertLessThanOrEqual(world.stagingBytesWritten, UInt64(fileBytes))
    }

    func testAfterTheReceiverCrashesTheNextAttemptResumesFromItsStagedBytes() {
        resumeScenario { $0.crashReceiver() }
    }

    func testAfterTheSenderCrashesTheNewLeaderResumesFromTheStagedBytes() {
        resumeScenario { $0.crashSender() }
    }

    func testAfterABrokenLinkTheNextAttemptResumes() {
        resumeScenario { $0.breakLink() }
    }

    func testANewLeaderReplacesATransferTheFollowerStillThinksIsRunningAndResumesIt() {
        // The leader dies without the follower noticing: the new leader's Offer, of a later term, replaces the old
        // transfer and resumes from its bytes.
        resumeScenario { world in
            XCTAssertNotNil(world.receiver.transferID)
            world.crashSenderUnnoticed()
        }
    }

    /// Frames lost or duplicated on a link that stays up (and keeps its order, like TCP; a frame is lost when the
    /// sender's output is full) are repaired within the attempt, by going back to the last ack and acking old
    /// chunks again: the first attempt installs the file.
    func testLossOnALinkThatStaysUpIsRepairedWithoutStartingOver() {
        var sent: UInt64 = 0
        var fileBytes: UInt64 = 0
        for seed in UInt64(1)...20 {
            var faults = TransferWorld.Faults()
            faults.dropPercent = 5
            faults.duplicatePercent = 5
            let world = TransferWorld(
                seed: seed, fileBytes: 150_000, options: smallOptions(chunk: 4096, window: 32_768), faults: faults)
            XCTAssertTrue(world.run { world.settled }, "seed \(seed)")
            XCTAssertEqual(world.senderOutcomes.map(\.succeeded), [true], "seed \(seed)")
            XCTAssertEqual(world.bytesSentPerAttempt.count, 1, "seed \(seed)")
            XCTAssertEqual(world.installed?.bytes, world.sources[world.snapshot], "seed \(seed)")
            sent += world.bytesSentPerAttempt.reduce(0, +)
            fileBytes += world.snapshot.fileBytes
        }
        // Going back to the last ack resends at most a window per loss: about a third more here, never double.
        XCTAssertLessThan(sent, fileBytes * 2)
    }

    /// Many seeds over a channel that drops, duplicates, reorders and breaks, with crashes of both sides, cancels,
    /// short reads and newer snapshots: every run installs the leader's snapshot byte for byte, the window is never
    /// exceeded, no byte is staged twice, and every started transfer ends exactly once (checked as it runs).
    func testSeededTransfersOverAHostileChannelInstallExactlyTheSourceBytes() {
        var totalAttempts = 0
        for seed in UInt64(1)...150 {
            var rng = SplitMix64(seed: seed &* 0x9E37_79B9)
            func pick(_ range: ClosedRange<UInt64>) -> UInt64 { UInt64.random(in: range, using: &rng) }
            var options = SnapshotTransferOptions()
            options.chunkBytes = Int(pick(256...8192))
            options.windowBytes = options.chunkBytes * Int(pick(1...8)) + Int(pick(0...255))
            options.syncEveryBytes = pick(UInt64(options.chunkBytes)...65_536)
            // Sometimes below the window, so the receiver drops chunks its disk cannot take yet.
            options.maxUnwrittenBytes = pick(UInt64(options.chunkBytes)...UInt64(options.windowBytes) * 2)
            options.validate(frameLimit: 1 << 20)
            var faults = TransferWorld.Faults()
            faults.dropPercent = pick(0...8)
            faults.duplicatePercent = pick(0...8)
            faults.maxDelayMs = pick(1...40)
            faults.linkBreakPerMille = pick(0...10)
            faults.receiverCrashPerMille = pick(0...4)
            faults.senderCrashPerMille = pick(0...4)
            faults.cancelPerMille = pick(0...4)
            faults.unnoticedSenderCrashPerMille = pick(0...3)
            faults.silencePerMille = pick(0...3)
            faults.shortReadPercent = pick(0...30)
            faults.newSnapshotPercent = pick(0...20)
            faults.untilMs = 60_000
            let world = TransferWorld(
                seed: seed, fileBytes: Int(pick(1...200_000)), options: options, faults: faults)
            XCTAssertTrue(world.run { world.settled }, "seed \(seed): did not settle")
            guard let installed = world.installed else {
                XCTFail("seed \(seed): nothing installed")
                continue
            }
            XCTAssertEqual(installed.bytes, world.sources[installed.snapshot], "seed \(seed)")
            XCTAssertGreaterThanOrEqual(world.commitIndex, world.snapshot.index, "seed \(seed)")
            totalAttempts += world.bytesSentPerAttempt.count
        }
        // The faults were real: far more attempts than runs.
        XCTAssertGreaterThan(totalAttempts, 200)
    }
}
