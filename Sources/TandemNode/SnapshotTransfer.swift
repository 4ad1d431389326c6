// Snapshot installation between peers: the frames, and the two state machines that drive a transfer.
//
// A leader streams its latest snapshot file to a follower that is too far behind for the log: an Offer names the
// snapshot, the follower answers with how much of that very file it already holds (staged by an earlier attempt
// that broke off, possibly before a crash of either side) or declines, and the leader then sends Chunks from that
// offset, never more than a window beyond the follower's cumulative Ack. Once every byte is written and synced the
// follower verifies the file, the runtime restores the app from it, and the follower reports Done. Either side may
// Abort. Every frame carries the attempt's transfer id, so frames of an attempt that ended (an old link's, a crashed
// process's) are recognised and ignored.
//
// Both state machines are values that do no I/O and read no clock: the runtime feeds them frames, completions of
// the disk work they asked for and the time, and carries out the actions they return, in order. They must never
// block the runtime, hold more than a bounded amount of data, or let a peer's frame trap the process.
//
// Layouts (all integers little-endian; frame types below the application range and above the consensus types):
//   0x30 offer  = transferID u64, leaderTerm u64, index u64, term u64, fileBytes u64, payloadCRC u32,
//                 [configuration length u32, configuration bytes] (the cluster configuration in force at index;
//                 absent from senders that predate membership changes)
//   0x31 answer = transferID u64, tag u8: 0 accept (resumeOffset u64) | 1 decline (reason u8)
//   0x32 chunk  = transferID u64, offset u64, length u32, bytes
//   0x33 ack    = transferID u64, durableOffset u64
//   0x34 done   = transferID u64, outcome u8
//   0x35 abort  = transferID u64, reason u8

import TandemConsensus
import TandemTransport

/// Names one snapshot file: the log position it covers and what its bytes must add up to.
public struct SnapshotDescriptor: Hashable, Sendable, CustomStringConvertible {
    /// The last log index the snapshot covers.
    public var index: UInt64
    /// The term of the entry at `index`.
    public var term: UInt64
    /// The size of the whole file (header included).
    public var fileBytes: UInt64
    /// The file's own checksum of its payload, which the receiver's verification checks.
    public var payloadCRC: UInt32

    public init(index: UInt64, term: UInt64, fileBytes: UInt64, payloadCRC: UInt32) {
        self.index = index
        self.term = term
        self.fileBytes = fileBytes
        self.payloadCRC = payloadCRC
    }

    public var description: String { "snapshot \(index)/\(term) (\(fileBytes) bytes)" }
}

/// A leader's proposal to send a snapshot.
public struct SnapshotOffer: Equatable, Sendable {
    /// Unique per attempt: a new attempt of the same snapshot gets a new one.
    public var transferID: UInt64
    /// The sender's term as leader: an offer of a later leader replaces a transfer in progress.
    public var leaderTerm: UInt64
    public var snapshot: SnapshotDescriptor
    /// The cluster configuration in force at the snapshot's index (`ClusterConfiguration.encoded`): the receiver's
    /// log starts from it. At most `SnapshotOffer.configurationMaxBytes`.
    public var configuration: [UInt8]?

    public static let configurationMaxBytes = 64 * 1024

    public init(
        transferID: UInt64, leaderTerm: UInt64, snapshot: SnapshotDescriptor, configuration: [UInt8]? = nil
    ) {
        self.transferID = transferID
        self.leaderTerm = leaderTerm
        self.snapshot = snapshot
        self.configuration = configuration
    }
}

/// Why a receiver turned an offer down.
public enum SnapshotDeclineReason: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    /// This receiver installed exactly this snapshot already.
    case alreadyInstalled = 0
    /// The receiver's commit index is at or beyond the snapshot's index: the log serves it better.
    case stale = 1
    /// Another transfer is in progress and this offer does not replace it.
    case busy = 2
    /// The file is larger than the receiver allows, or its staging file could not be opened.
    case noSpace = 3

    public var description: String {
        switch self {
        case .alreadyInstalled: return "already installed"
        case .stale: return "stale"
        case .busy: return "busy"
        case .noSpace: return "no space"
        }
    }
}

/// How an installation that received every byte ended.
public enum SnapshotInstallOutcome: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    case installed = 0
    case verifyFailed = 1
    case restoreFailed = 2

    public var description: String {
        switch self {
        case .installed: return "installed"
        case .verifyFailed: return "verification failed"
        case .restoreFailed: return "restore failed"
        }
    }
}

/// Why a side ended a transfer early.
public enum SnapshotAbortReason: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    /// The sender's runtime gave the transfer up (e.g. it is no longer leader).
    case cancelled = 0
    /// Nothing arrived for the stall timeout.
    case stalled = 1
    /// A frame no correct peer sends (bytes past the end of the file, an ack of bytes never sent).
    case protocolError = 2
    /// The receiver could not write or sync its staging file.
    case storageFailed = 3
    /// The sender could not read its snapshot file.
    case readFailed = 4
    /// A newer offer replaced this transfer.
    case superseded = 5

    public var description: String {
        switch self {
        case .cancelled: return "cancelled"
        case .stalled: return "stalled"
        case .protocolError: return "protocol error"
        case .storageFailed: return "staging storage failed"
        case .readFailed: return "snapshot read failed"
        case .superseded: return "superseded"
        }
    }
}

/// One decoded snapshot-transfer frame.
public enum SnapshotTransferFrame: Equatable, Sendable {
    case offer(SnapshotOffer)
    case accept(transferID: UInt64, resumeOffset: UInt64)
    case decline(transferID: UInt64, reason: SnapshotDeclineReason)
    case chunk(transferID: UInt64, offset: UInt64, bytes: [UInt8])
    case ack(transferID: UInt64, durableOffset: UInt64)
    case done(transferID: UInt64, outcome: SnapshotInstallOutcome)
    case abort(transferID: UInt64, reason: SnapshotAbortReason)

    /// The attempt the frame belongs to (the runtime routes frames by it).
    public var transferID: UInt64 {
        switch self {
        case .offer(let offer): return offer.transferID
        case .accept(let id, _), .decline(let id, _), .chunk(let id, _, _), .ack(let id, _), .done(let id, _),
            .abort(let id, _):
            return id
        }
    }
}

// MARK: - Codec

/// Encodes and decodes snapshot-transfer frames. Pure functions; usable on any thread.
public enum SnapshotTransferCodec {
    /// The frame types, layout version 1: free between the consensus types (0x10...0x1C) and the application
    /// range (0x40 and up).
    public enum FrameType: UInt8, CaseIterable, Sendable {
        case offer = 0x30
        /// Accept or decline, told apart by a tag.
        case answer = 0x31
        case chunk = 0x32
        case ack = 0x33
        case done = 0x34
        case abort = 0x35
    }

    /// True for the frame types this codec owns.
    public static func handles(frameType: UInt8) -> Bool { FrameType(rawValue: frameType) != nil }

    /// The bytes of a chunk frame besides its data.
    public static let chunkOverheadBytes = 8 + 8 + 4

    /// The largest chunk whose frame fits a peer frame limit.
    public static func maxChunkBytes(frameLimit: Int) -> Int { max(0, frameLimit - chunkOverheadBytes) }

    /// The frame type and payload of `frame`, built in one buffer sized up front.
    public static func encode(_ frame: SnapshotTransferFrame) -> (type: UInt8, payload: [UInt8]) {
        switch frame {
        case .offer(let offer):
            var writer = TransferWireWriter(capacity: 44)
            writer.u64(offer.transferID)
            writer.u64(offer.leaderTerm)
            writer.u64(offer.snapshot.index)
            writer.u64(offer.snapshot.term)
            writer.u64(offer.snapshot.fileBytes)
            writer.u32(offer.snapshot.payloadCRC)
            if let configuration = offer.configuration {
                writer.u32(UInt32(configuration.count))
                writer.raw(configuration)
            }
            return (FrameType.offer.rawValue, writer.bytes)
        case .accept(let id, let resumeOffset):
            var writer = TransferWireWriter(capacity: 17)
            writer.u64(id)
            writer.u8(0)
            writer.u64(resumeOffset)
            return (FrameType.answer.rawValue, writer.bytes)
        case .decline(let id, let reason):
            var writer = TransferWireWriter(capacity: 10)
            writer.u64(id)
            writer.u8(1)
            writer.u8(reason.rawValue)
            return (FrameType.answer.rawValue, writer.bytes)
        case .chunk(let id, let offset, let bytes):
            precondition(bytes.count <= Int(UInt32.max), "chunk larger than its u32 length field")
            var writer = TransferWireWriter(capacity: chunkOverheadBytes + bytes.count)
            writer.u64(id)
            writer.u64(offset)
            writer.u32(UInt32(bytes.count))
            writer.raw(bytes)
            return (FrameType.chunk.rawValue, writer.bytes)
        case .ack(let id, let durableOffset):
            return (FrameType.ack.rawValue, idAndU64(id, durableOffset))
        case .done(let id, let outcome):
            return (FrameType.done.rawValue, idAndCode(id, outcome.rawValue))
        case .abort(let id, let reason):
            return (FrameType.abort.rawValue, idAndCode(id, reason.rawValue))
        }
    }

    private static func idAndU64(_ id: UInt64, _ value: UInt64) -> [UInt8] {
        var writer = TransferWireWriter(capacity: 16)
        writer.u64(id)
        writer.u64(value)
        return writer.bytes
    }

    private static func idAndCode(_ id: UInt64, _ code: UInt8) -> [UInt8] {
        var writer = TransferWireWriter(capacity: 9)
        writer.u64(id)
        writer.u8(code)
        return writer.bytes
    }

    /// Decodes a payload of frame `type`. Throws on any malformed input: truncation, unknown codes, a chunk whose
    /// length the payload does not hold or that is empty or ends past 2^64, an offer no correct leader sends
    /// (index, terms or size zero or beyond their bounds, the snapshot's term above the leader's), trailing bytes.
    /// Never traps. Chunk data is copied once, out of the payload.
    public static func decode(type: UInt8, payload: UnsafeRawBufferPointer) throws(DecodeError)
        -> SnapshotTransferFrame
    {
        guard let frameType = FrameType(rawValue: type) else { throw .unknownFrameType(type) }
        var reader = TransferWireReader(payload)
        let frame: SnapshotTransferFrame
        switch frameType {
        case .offer: frame = .offer(try readOffer(&reader))
        case .answer: frame = try readAnswer(&reader)
        case .chunk: frame = try readChunk(&reader)
        case .ack: frame = .ack(transferID: try reader.u64(), durableOffset: try reader.u64())
        case .done:
            let id = try reader.u64()
            frame = .done(transferID: id, outcome: try reader.code("install outcome", SnapshotInstallOutcome.self))
        case .abort:
            let id = try reader.u64()
            frame = .abort(transferID: id, reason: try reader.code("abort reason", SnapshotAbortReason.self))
        }
        try reader.expectEnd()
        return frame
    }

    /// `decode(type:payload:)` for an array payload.
    public static func decode(type: UInt8, payload: [UInt8]) throws(DecodeError) -> SnapshotTransferFrame {
        let result: Result<SnapshotTransferFrame, DecodeError> = payload.withUnsafeBytes { bytes in
            do throws(DecodeError) { return .success(try decode(type: type, payload: bytes)) } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    private static func readOffer(_ reader: inout TransferWireReader) throws(DecodeError) -> SnapshotOffer {
        let id = try reader.u64()
        let leaderTermOffset = reader.offset
        let leaderTerm = try reader.u64()
        let indexOffset = reader.offset
        let index = try reader.u64()
        let termOffset = reader.offset
        let term = try reader.u64()
        let sizeOffset = reader.offset
        let fileBytes = try reader.u64()
        let crc = try reader.u32()
        guard leaderTerm > 0, leaderTerm <= Message.termMax else {
            throw .invalidValue(field: "leader term", offset: leaderTermOffset)
        }
        guard index > 0, index <= Message.indexMax else {
            throw .invalidValue(field: "snapshot index", offset: indexOffset)
        }
        guard term > 0, term <= leaderTerm else { throw .invalidValue(field: "snapshot term", offset: termOffset) }
        guard fileBytes > 0, fileBytes <= UInt64(Int64.max) else {
            throw .invalidValue(field: "snapshot file size", offset: sizeOffset)
        }
        var configuration: [UInt8]?
        if !reader.isAtEnd {
            let lengthOffset = reader.offset
            let length = try reader.u32()
            guard length <= SnapshotOffer.configurationMaxBytes else {
                throw .invalidValue(field: "configuration length", offset: lengthOffset)
            }
            configuration = try reader.raw(Int(length))
        }
        return SnapshotOffer(
            transferID: id, leaderTerm: leaderTerm,
            snapshot: SnapshotDescriptor(index: index, term: term, fileBytes: fileBytes, payloadCRC: crc),
            configuration: configuration)
    }

    private static func readAnswer(_ reader: inout TransferWireReader) throws(DecodeError) -> SnapshotTransferFrame {
        let id = try reader.u64()
        let tagOffset = reader.offset
        switch try reader.u8() {
        case 0: return .accept(transferID: id, resumeOffset: try reader.u64())
        case 1: return .decline(transferID: id, reason: try reader.code("decline reason", SnapshotDeclineReason.self))
        default: throw .invalidValue(field: "answer tag", offset: tagOffset)
        }
    }

    private static func readChunk(_ reader: inout TransferWireReader) throws(DecodeError) -> SnapshotTransferFrame {
        let id = try reader.u64()
        let offset = try reader.u64()
        let lengthOffset = reader.offset
        let length = try reader.u32()
        guard length > 0 else { throw .invalidValue(field: "empty chunk", offset: lengthOffset) }
        guard !offset.addingReportingOverflow(UInt64(length)).overflow else {
            throw .invalidValue(field: "chunk end", offset: lengthOffset)
        }
        let bytes = try reader.raw(Int(length))
        return .chunk(transferID: id, offset: offset, bytes: bytes)
    }
}

/// Appends little-endian fields to one buffer reserved up front.
private struct TransferWireWriter {
    var bytes: [UInt8]

    init(capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func raw(_ value: [UInt8]) { bytes.append(contentsOf: value) }
}

/// Reads little-endian fields, checking every read against the end of the payload; throws, never traps.
private struct TransferWireReader {
    let bytes: UnsafeRawBufferPointer
    // Invariant: 0 <= offset <= bytes.count.
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var isAtEnd: Bool { offset == bytes.count }

    private mutating func take(_ count: Int) throws(DecodeError) -> UnsafeRawBufferPointer {
        guard count >= 0, count <= bytes.count - offset else { throw .truncated(offset: offset, neededBytes: count) }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        offset += count
        assert(offset <= bytes.count, "reader ran past its payload")
        return slice
    }

    mutating func u8() throws(DecodeError) -> UInt8 { try take(1)[0] }
    mutating func u32() throws(DecodeError) -> UInt32 {
        UInt32(littleEndian: try take(4).loadUnaligned(as: UInt32.self))
    }
    mutating func u64() throws(DecodeError) -> UInt64 {
        UInt64(littleEndian: try take(8).loadUnaligned(as: UInt64.self))
    }
    mutating func raw(_ count: Int) throws(DecodeError) -> [UInt8] { [UInt8](try take(count)) }

    /// A one-byte code of `Code`; an unknown value is an error, not a default.
    mutating func code<Code: RawRepresentable>(_ field: String, _: Code.Type) throws(DecodeError) -> Code
    where Code.RawValue == UInt8 {
        let at = offset
        guard let value = Code(rawValue: try u8()) else { throw .invalidValue(field: field, offset: at) }
        return value
    }

    func expectEnd() throws(DecodeError) {
        guard offset == bytes.count else { throw .trailingBytes(count: bytes.count - offset) }
    }
}

// MARK: - Options

/// The limits and timings of snapshot transfers, for both sides.
public struct SnapshotTransferOptions: Sendable {
    /// The data bytes of one chunk frame; it must fit the peer frame limit (`validate(frameLimit:)`).
    public var chunkBytes = 256 * 1024
    /// The sender never has more than this many bytes sent beyond the receiver's cumulative ack.
    public var windowBytes = 4 * 1024 * 1024
    /// With no progress for this long, a side aborts the attempt.
    public var stallTimeoutMs: Int64 = 10_000
    /// An unanswered Offer is sent again after this long; once every byte is acknowledged, the sender probes the
    /// receiver with its Offer at this interval until Done (the answer also shows a long restore is still alive).
    public var offerResendMs: Int64 = 1000
    /// With bytes unacknowledged and no ack advancing for this long, the sender goes back to the last ack.
    public var retransmitAfterMs: Int64 = 1000
    /// The receiver syncs its staging file at least every this many written bytes (and always before verifying).
    public var syncEveryBytes: UInt64 = 8 * 1024 * 1024
    /// The receiver's bound on bytes handed to its disk and not yet written; chunks beyond it are dropped as if
    /// lost (a sender keeping its window never reaches it).
    public var maxUnwrittenBytes: UInt64 = 8 * 1024 * 1024
    /// The largest snapshot file the receiver accepts.
    public var maxFileBytes: UInt64 = 1 << 40

    public init() {}

    /// Traps on options no transfer can work with (a programmer error in configuration).
    public func validate(frameLimit: Int) {
        precondition(chunkBytes > 0, "snapshot chunks carry at least one byte")
        precondition(
            chunkBytes <= SnapshotTransferCodec.maxChunkBytes(frameLimit: frameLimit),
            "a snapshot chunk of \(chunkBytes) bytes does not fit the frame limit of \(frameLimit) bytes")
        precondition(windowBytes >= chunkBytes, "the snapshot window holds at least one chunk")
        precondition(offerResendMs > 0 && retransmitAfterMs > 0, "resend intervals are positive")
        precondition(stallTimeoutMs > offerResendMs && stallTimeoutMs > retransmitAfterMs, "stall timeout too short")
        precondition(syncEveryBytes > 0, "the sync interval is positive")
        precondition(maxUnwrittenBytes >= UInt64(chunkBytes), "the receiver buffers at least one chunk")
    }
}

// MARK: - Sender

/// The leader's side of one transfer attempt to one follower. The runtime keeps one per follower being served and
/// starts a new one (with a new transfer id) for each new attempt.
///
/// Flow control: one read of the file is outstanding at a time, and a read is asked for only while the bytes sent
/// beyond the receiver's cumulative ack stay within `windowBytes`. Loss is repaired by going back to the last ack:
/// when the receiver repeated that ack `repeatedAcksToRewind` times (it saw chunks past a gap; one or two repeats
/// are as likely a reordered chunk or a duplicated ack), or after `retransmitAfterMs` without an ack advancing.
public struct SnapshotSendState: Sendable {
    public enum Action: Equatable, Sendable {
        /// Send this frame to the peer (a dropped frame needs no report: loss is repaired by the protocol).
        case send(type: UInt8, payload: [UInt8], to: NodeID)
        /// Read up to `maxBytes` (at least one) of the snapshot file at `offset`, off the runtime's thread, then
        /// call `chunkRead(transferID:offset:bytes:)` (or `readFailed`) on the state of this very attempt.
        case readChunk(transferID: UInt64, offset: UInt64, maxBytes: Int)
        /// The attempt is over; nothing more will be asked for. `succeeded` means the follower has the snapshot.
        case finished(succeeded: Bool, reason: String)
    }

    enum Phase: Equatable, Sendable {
        /// The Offer is out; waiting for Accept or Decline.
        case offering
        /// Sending chunks within the window.
        case streaming
        /// Every byte is acknowledged; the receiver verifies and restores, and will report Done.
        case awaitingDone
        case finished
    }

    public let transferID: UInt64
    public let peer: NodeID
    public let snapshot: SnapshotDescriptor
    public let leaderTerm: UInt64
    /// The cluster configuration in force at the snapshot's index, sent with the Offer.
    public let configuration: [UInt8]?
    public let options: SnapshotTransferOptions
    private(set) var phase = Phase.offering
    /// The receiver's cumulative ack: every byte below it is written to its staging file.
    /// Invariant: ackedOffset <= nextOffset <= highestSentOffset <= fileBytes, outside a read's completion.
    public private(set) var ackedOffset: UInt64 = 0
    /// The next byte to read and send.
    public private(set) var nextOffset: UInt64 = 0
    /// The end of the furthest chunk sent: an ack beyond it acknowledges bytes never sent.
    private var highestSentOffset: UInt64 = 0
    /// The read the runtime is doing, if any (one at a time). Invariant: its bytes fit the window when it was asked.
    private var readInFlight: (offset: UInt64, maxBytes: Int)?
    /// When the attempt last made progress: the Accept, an ack that advanced, a live answer while awaiting Done.
    private var lastProgressMs: Int64
    /// When the Offer was last sent (resent while unanswered, and as the probe while awaiting Done).
    private var lastOfferMs: Int64
    private var lastRewindMs: Int64
    /// The ack value the sender last went back to: repeated acks make it go back once, not once per repeat.
    private var rewoundAtAck: UInt64?
    /// How many times the current ack came again while bytes beyond it were out.
    private var repeatedAcks = 0
    /// Repeats of one ack that mean chunks were lost (a single reordered chunk or duplicated ack makes fewer).
    public static let repeatedAcksToRewind = 3
    /// Chunk bytes sent in this attempt, resends included.
    public private(set) var bytesSent: UInt64 = 0

    /// Bytes sent beyond the receiver's ack. Invariant: at most `options.windowBytes`.
    public var unacknowledgedBytes: UInt64 { nextOffset - ackedOffset }
    public var isFinished: Bool { phase == .finished }

    /// Starts an attempt: the state, and its first action (the Offer).
    public static func begin(
        transferID: UInt64, to peer: NodeID, snapshot: SnapshotDescriptor, leaderTerm: UInt64,
        configuration: [UInt8]? = nil, options: SnapshotTransferOptions = SnapshotTransferOptions(), nowMs: Int64
    ) -> (state: SnapshotSendState, actions: [Action]) {
        let state = SnapshotSendState(
            transferID: transferID, peer: peer, snapshot: snapshot, leaderTerm: leaderTerm,
            configuration: configuration, options: options, nowMs: nowMs)
        return (state, [state.offerFrame])
    }

    private init(
        transferID: UInt64, peer: NodeID, snapshot: SnapshotDescriptor, leaderTerm: UInt64,
        configuration: [UInt8]?, options: SnapshotTransferOptions, nowMs: Int64
    ) {
        precondition(snapshot.fileBytes > 0, "a snapshot file is never empty")
        precondition(options.chunkBytes > 0 && options.windowBytes >= options.chunkBytes, "invalid window")
        self.transferID = transferID
        self.peer = peer
        self.snapshot = snapshot
        self.leaderTerm = leaderTerm
        self.configuration = configuration
        self.options = options
        lastProgressMs = nowMs
        lastOfferMs = nowMs
        lastRewindMs = nowMs
    }

    private var offerFrame: Action {
        send(
            .offer(
                SnapshotOffer(
                    transferID: transferID, leaderTerm: leaderTerm, snapshot: snapshot, configuration: configuration)))
    }

    private func send(_ frame: SnapshotTransferFrame) -> Action {
        let (type, payload) = SnapshotTransferCodec.encode(frame)
        return .send(type: type, payload: payload, to: peer)
    }

    // MARK: frames from the receiver

    /// Any frame from the peer; frames that are not for a sender (Offer, Chunk) or of another attempt are ignored.
    public mutating func onFrame(_ frame: SnapshotTransferFrame, nowMs: Int64) -> [Action] {
        switch frame {
        case .accept(let id, let resumeOffset):
            return onAccept(transferID: id, resumeOffset: resumeOffset, nowMs: nowMs)
        case .decline(let id, let reason): return onDecline(transferID: id, reason: reason)
        case .ack(let id, let offset): return onAck(transferID: id, durableOffset: offset, nowMs: nowMs)
        case .done(let id, let outcome): return onDone(transferID: id, outcome: outcome)
        case .abort(let id, let reason): return onAbort(transferID: id, reason: reason)
        case .offer, .chunk: return []
        }
    }

    public mutating func onAccept(transferID id: UInt64, resumeOffset: UInt64, nowMs: Int64) -> [Action] {
        defer { assertInvariants() }
        guard id == transferID else { return [] }
        switch phase {
        case .offering:
            guard resumeOffset <= snapshot.fileBytes else {
                return fail(.protocolError, "the receiver claims more bytes than the file holds")
            }
            ackedOffset = resumeOffset
            nextOffset = resumeOffset
            highestSentOffset = resumeOffset
            lastProgressMs = nowMs
            rewoundAtAck = nil
            guard resumeOffset < snapshot.fileBytes else {
                awaitDone(nowMs: nowMs)
                return []
            }
            phase = .streaming
            return pump()
        case .streaming, .awaitingDone:
            // The answer to a resent Offer: what the receiver has written, like an ack.
            return onAck(transferID: id, durableOffset: resumeOffset, nowMs: nowMs)
        case .finished:
            return []
        }
    }

    public mutating func onDecline(transferID id: UInt64, reason: SnapshotDeclineReason) -> [Action] {
        guard id == transferID, phase != .finished else { return [] }
        phase = .finished
        return [.finished(succeeded: reason == .alreadyInstalled, reason: "declined: \(reason)")]
    }

    /// A cumulative ack. Acks only advance: an older one (reordered) is ignored; the current one repeated often
    /// enough means the receiver saw a gap, so the sender goes back to it (once per ack value).
    public mutating func onAck(transferID id: UInt64, durableOffset: UInt64, nowMs: Int64) -> [Action] {
        defer { assertInvariants() }
        guard id == transferID, phase == .streaming || phase == .awaitingDone else { return [] }
        guard durableOffset <= highestSentOffset else {
            return fail(.protocolError, "the receiver acknowledged bytes never sent")
        }
        if phase == .awaitingDone {
            // The receiver is alive and holds every byte: it is verifying or restoring.
            if durableOffset == snapshot.fileBytes { lastProgressMs = nowMs }
            return []
        }
        if durableOffset > ackedOffset {
            ackedOffset = durableOffset
            repeatedAcks = 0
            nextOffset = max(nextOffset, ackedOffset)
            lastProgressMs = nowMs
            if ackedOffset == snapshot.fileBytes {
                awaitDone(nowMs: nowMs)
                return []
            }
            return pump()
        }
        if durableOffset == ackedOffset, nextOffset > ackedOffset, rewoundAtAck != ackedOffset {
            repeatedAcks += 1
            guard repeatedAcks >= Self.repeatedAcksToRewind else { return [] }
            rewind(nowMs: nowMs)
            return pump()
        }
        return []
    }

    public mutating func onDone(transferID id: UInt64, outcome: SnapshotInstallOutcome) -> [Action] {
        guard id == transferID, phase != .finished else { return [] }
        phase = .finished
        return [.finished(succeeded: outcome == .installed, reason: "\(outcome)")]
    }

    public mutating func onAbort(transferID id: UInt64, reason: SnapshotAbortReason) -> [Action] {
        guard id == transferID, phase != .finished else { return [] }
        phase = .finished
        return [.finished(succeeded: false, reason: "aborted by the receiver: \(reason)")]
    }

    // MARK: runtime inputs

    /// The read asked for by `.readChunk` completed. A read overtaken by a rewind or an ack is dropped; the next
    /// one is asked for at once.
    public mutating func chunkRead(transferID id: UInt64, offset: UInt64, bytes: [UInt8]) -> [Action] {
        defer { assertInvariants() }
        guard id == transferID, phase == .streaming, let read = readInFlight, read.offset == offset else { return [] }
        readInFlight = nil
        precondition(bytes.count <= read.maxBytes, "read \(bytes.count) bytes, more than the \(read.maxBytes) asked")
        guard !bytes.isEmpty, UInt64(bytes.count) <= snapshot.fileBytes - offset else {
            return fail(.readFailed, "the snapshot file ended early at offset \(offset)")
        }
        guard offset == nextOffset else { return pump() }
        var actions = [send(.chunk(transferID: transferID, offset: offset, bytes: bytes))]
        nextOffset += UInt64(bytes.count)
        highestSentOffset = max(highestSentOffset, nextOffset)
        bytesSent += UInt64(bytes.count)
        actions += pump()
        return actions
    }

    /// The read at `offset` failed: the attempt cannot go on.
    public mutating func readFailed(transferID id: UInt64, offset: UInt64) -> [Action] {
        guard id == transferID, phase == .streaming, readInFlight?.offset == offset else { return [] }
        readInFlight = nil
        return fail(.readFailed, "cannot read the snapshot file at offset \(offset)")
    }

    /// The link to the peer went down: the attempt fails (the receiver keeps what it staged for the next one).
    public mutating func linkDown() -> [Action] {
        guard phase != .finished else { return [] }
        phase = .finished
        return [.finished(succeeded: false, reason: "link down")]
    }

    /// The runtime gives the attempt up (e.g. it is no longer leader): tells the receiver, and finishes.
    public mutating func cancel(reason: String) -> [Action] {
        guard phase != .finished else { return [] }
        return fail(.cancelled, reason)
    }

    /// Time passes: abort a stalled attempt, resend an unanswered Offer, probe while awaiting Done, and go back
    /// to the last ack when acks stopped advancing.
    public mutating func tick(nowMs: Int64) -> [Action] {
        defer { assertInvariants() }
        guard phase != .finished else { return [] }
        if nowMs - lastProgressMs >= options.stallTimeoutMs {
            return fail(.stalled, "no progress for \(nowMs - lastProgressMs) ms")
        }
        switch phase {
        case .offering, .awaitingDone:
            guard nowMs - lastOfferMs >= options.offerResendMs else { return [] }
            lastOfferMs = nowMs
            return [offerFrame]
        case .streaming:
            guard nextOffset > ackedOffset, nowMs - max(lastProgressMs, lastRewindMs) >= options.retransmitAfterMs
            else { return [] }
            rewind(nowMs: nowMs)
            return pump()
        case .finished:
            return []
        }
    }

    // MARK: helpers

    /// Asks for the next read when none is outstanding and the window has room for a whole chunk (or the rest
    /// of the file): smaller reads would fill the window with small frames.
    private mutating func pump() -> [Action] {
        guard phase == .streaming, readInFlight == nil, nextOffset < snapshot.fileBytes else { return [] }
        let room = UInt64(options.windowBytes) - unacknowledgedBytes
        let wanted = min(UInt64(options.chunkBytes), snapshot.fileBytes - nextOffset)
        guard room >= wanted else { return [] }
        readInFlight = (nextOffset, Int(wanted))
        return [.readChunk(transferID: transferID, offset: nextOffset, maxBytes: Int(wanted))]
    }

    private func assertInvariants() {
        precondition(
            ackedOffset <= nextOffset && nextOffset <= highestSentOffset && highestSentOffset <= snapshot.fileBytes,
            "snapshot send offsets out of order: \(ackedOffset) \(nextOffset) \(highestSentOffset)")
        precondition(unacknowledgedBytes <= UInt64(options.windowBytes), "snapshot window exceeded")
    }

    private mutating func rewind(nowMs: Int64) {
        nextOffset = ackedOffset
        rewoundAtAck = ackedOffset
        repeatedAcks = 0
        lastRewindMs = nowMs
    }

    private mutating func awaitDone(nowMs: Int64) {
        phase = .awaitingDone
        nextOffset = snapshot.fileBytes
        lastOfferMs = nowMs
    }

    private mutating func fail(_ reason: SnapshotAbortReason, _ detail: String) -> [Action] {
        phase = .finished
        return [
            send(.abort(transferID: transferID, reason: reason)),
            .finished(succeeded: false, reason: "\(reason): \(detail)"),
        ]
    }
}

// MARK: - Receiver

/// The follower's side: at most one transfer at a time, staged into one file the runtime keeps across attempts and
/// restarts (a new attempt of the same snapshot resumes from what it holds).
///
/// Only the chunk that continues the staged bytes is written (a chunk overlapping them, from its first new byte);
/// a chunk past a gap is answered with an ack of what is written, and an old one with the same ack, so the sender
/// goes back or learns of an ack it lost. Nothing is buffered out of order, and at most one ack answers a chunk.
/// Every transfer the receiver starts (`.openStaging`) ends with exactly one `.finished`.
public struct SnapshotReceiveState: Sendable {
    public enum Action: Equatable, Sendable {
        /// Send this frame to `to`.
        case send(type: UInt8, payload: [UInt8], to: NodeID)
        /// Open (or create) the staging file of `snapshot`, keeping the bytes already staged for this very snapshot
        /// and discarding any other; then call `stagingOpened(transferID:resumeOffset:nowMs:)` with how many bytes
        /// from the start it holds (or `stagingFailed`).
        case openStaging(transferID: UInt64, snapshot: SnapshotDescriptor)
        /// Write `bytes` at `offset` of the staging file, then call `written(transferID:through:)`.
        case write(transferID: UInt64, offset: UInt64, bytes: [UInt8])
        /// Sync the staging file (every write asked for before it), then call `synced(transferID:)`.
        case sync(transferID: UInt64)
        /// Every byte is written and synced: verify the file (header and CRC) and move it into place, then call
        /// `verified(transferID:ok:)`.
        case finishAndVerify(transferID: UInt64, snapshot: SnapshotDescriptor)
        /// Restore the app from the verified snapshot, then call `restored(transferID:ok:)`.
        case restore(transferID: UInt64, snapshot: SnapshotDescriptor)
        /// The staged file failed verification: delete it, so that no later attempt resumes from it.
        case discardStaging(transferID: UInt64)
        /// The current transfer is over.
        case finished(installed: Bool, reason: String)
    }

    /// How far a transfer has come.
    enum Stage: Equatable, Sendable {
        /// The runtime is opening the staging file; the Accept goes out when it reports what it holds.
        case opening
        /// Chunks are arriving.
        case receiving
        /// Every byte is written; the last sync is running.
        case finalSync
        case verifying
        case restoring
    }

    struct Transfer: Sendable {
        let offer: SnapshotOffer
        let peer: NodeID
        var stage = Stage.opening
        /// The end of the bytes handed to the disk. Invariant: written <= received <= fileBytes, and
        /// received - written <= maxUnwrittenBytes.
        var receivedOffset: UInt64 = 0
        /// Every byte below it is written (what the acks report).
        var writtenOffset: UInt64 = 0
        /// Every byte below it is synced. Invariant: synced <= written.
        var syncedOffset: UInt64 = 0
        /// The written offset when the running sync was asked for; nil when none runs.
        var syncInFlightThrough: UInt64?
        var lastHeardMs: Int64

        var transferID: UInt64 { offer.transferID }
        var snapshot: SnapshotDescriptor { offer.snapshot }
    }

    /// A transfer that ran to its end: its Done is sent again to a repeated Offer or a late chunk.
    struct Completed: Sendable {
        let transferID: UInt64
        let peer: NodeID
        let snapshot: SnapshotDescriptor
        let outcome: SnapshotInstallOutcome
    }

    public let options: SnapshotTransferOptions
    private var current: Transfer?
    private var completed: Completed?
    /// Transfer ids that ended here, newest last (bounded by `endedIDsMax`): a late copy of their Offer never
    /// starts them again.
    private var endedIDs: [UInt64] = []
    static let endedIDsMax = 16

    public init(options: SnapshotTransferOptions = SnapshotTransferOptions()) {
        precondition(options.syncEveryBytes > 0 && options.maxUnwrittenBytes > 0, "invalid receive limits")
        self.options = options
    }

    /// The transfer in progress, if any.
    public var transferID: UInt64? { current?.transferID }
    /// The bytes of the transfer in progress that are written (what it acknowledged).
    public var writtenOffset: UInt64? { current?.writtenOffset }

    private func send(_ frame: SnapshotTransferFrame, to peer: NodeID) -> Action {
        let (type, payload) = SnapshotTransferCodec.encode(frame)
        return .send(type: type, payload: payload, to: peer)
    }

    // MARK: frames from senders

    /// Any frame from `peer`; frames that are not for a receiver (answers, acks, Done) are ignored.
    public mutating func onFrame(
        _ frame: SnapshotTransferFrame, from peer: NodeID, commitIndex: UInt64, nowMs: Int64
    ) -> [Action] {
        switch frame {
        case .offer(let offer): return onOffer(offer, from: peer, commitIndex: commitIndex, nowMs: nowMs)
        case .chunk(let id, let offset, let bytes):
            return onChunk(transferID: id, offset: offset, bytes: bytes, from: peer, nowMs: nowMs)
        case .abort(let id, let reason): return onAbort(transferID: id, reason: reason, from: peer)
        case .accept, .decline, .ack, .done: return []
        }
    }

    /// An Offer. A repeat of the current one is answered again; one already declined or ended is not restarted;
    /// a stale one (the log already reaches the snapshot) is declined; a newer one (a later leader, or the same
    /// leader's new attempt at the same or a newer snapshot) replaces the transfer in progress unless that one is
    /// already verifying, and anything else finds the receiver busy.
    public mutating func onOffer(
        _ offer: SnapshotOffer, from peer: NodeID, commitIndex: UInt64, nowMs: Int64
    ) -> [Action] {
        if let done = completed, done.transferID == offer.transferID {
            return done.peer == peer ? [send(.done(transferID: done.transferID, outcome: done.outcome), to: peer)] : []
        }
        if var transfer = current, transfer.transferID == offer.transferID {
            // A repeated Offer (the Accept was lost, or the sender probes while awaiting Done).
            guard transfer.peer == peer, transfer.offer == offer else { return [] }
            transfer.lastHeardMs = nowMs
            current = transfer
            guard transfer.stage != .opening else { return [] }  // Answered once staging is open.
            return [send(.accept(transferID: offer.transferID, resumeOffset: transfer.writtenOffset), to: peer)]
        }
        guard !endedIDs.contains(offer.transferID), offer.snapshot.fileBytes > 0 else { return [] }
        if let done = completed, done.outcome == .installed, done.snapshot == offer.snapshot {
            return [decline(offer, .alreadyInstalled, to: peer)]
        }
        if offer.snapshot.index <= commitIndex { return [decline(offer, .stale, to: peer)] }
        if offer.snapshot.fileBytes > options.maxFileBytes { return [decline(offer, .noSpace, to: peer)] }
        var actions: [Action] = []
        if let transfer = current {
            guard Self.replaces(offer, from: peer, transfer) else { return [decline(offer, .busy, to: peer)] }
            actions.append(send(.abort(transferID: transfer.transferID, reason: .superseded), to: transfer.peer))
            actions.append(end(installed: false, reason: "superseded by transfer \(offer.transferID)"))
        }
        current = Transfer(offer: offer, peer: peer, lastHeardMs: nowMs)
        actions.append(.openStaging(transferID: offer.transferID, snapshot: offer.snapshot))
        return actions
    }

    private func decline(_ offer: SnapshotOffer, _ reason: SnapshotDeclineReason, to peer: NodeID) -> Action {
        send(.decline(transferID: offer.transferID, reason: reason), to: peer)
    }

    private static func replaces(_ offer: SnapshotOffer, from peer: NodeID, _ transfer: Transfer) -> Bool {
        guard transfer.stage == .opening || transfer.stage == .receiving else { return false }
        if offer.leaderTerm > transfer.offer.leaderTerm { return true }
        return offer.leaderTerm == transfer.offer.leaderTerm && peer == transfer.peer
            && offer.snapshot.index >= transfer.snapshot.index
    }

    /// A chunk. A chunk that ends past the file is a protocol error and aborts the transfer.
    public mutating func onChunk(
        transferID id: UInt64, offset: UInt64, bytes: [UInt8], from peer: NodeID, nowMs: Int64
    ) -> [Action] {
        defer { assertInvariants() }
        if let done = completed, done.transferID == id, done.peer == peer {
            return [send(.done(transferID: id, outcome: done.outcome), to: peer)]
        }
        guard var transfer = current, transfer.transferID == id, transfer.peer == peer, transfer.stage != .opening
        else { return [] }
        transfer.lastHeardMs = nowMs
        current = transfer
        let (end, overflow) = offset.addingReportingOverflow(UInt64(bytes.count))
        guard !bytes.isEmpty, !overflow, end <= transfer.snapshot.fileBytes else {
            // Once every byte is in, the installation runs in the runtime and is not cut short.
            guard transfer.stage == .receiving else { return [] }
            return [
                send(.abort(transferID: id, reason: .protocolError), to: peer),
                self.end(installed: false, reason: "protocol error: a chunk at \(offset) ends past the file"),
            ]
        }
        let ack = send(.ack(transferID: id, durableOffset: transfer.writtenOffset), to: peer)
        // Old: the sender may have lost an ack. (Every chunk is old once every byte is in.)
        if end <= transfer.receivedOffset { return [ack] }
        if offset > transfer.receivedOffset { return [ack] }  // A gap: the sender goes back after a few.
        let fresh = bytes[Int(transfer.receivedOffset - offset)...]
        guard transfer.receivedOffset - transfer.writtenOffset + UInt64(fresh.count) <= options.maxUnwrittenBytes
        else { return [] }  // The disk is behind: dropped as if lost, and sent again after the next ack.
        let write = Action.write(transferID: id, offset: transfer.receivedOffset, bytes: Array(fresh))
        transfer.receivedOffset = end
        current = transfer
        return [write]
    }

    /// The sender gave the attempt up. Once every byte is in, the installation goes on regardless.
    public mutating func onAbort(transferID id: UInt64, reason: SnapshotAbortReason, from peer: NodeID) -> [Action] {
        guard let transfer = current, transfer.transferID == id, transfer.peer == peer,
            transfer.stage == .opening || transfer.stage == .receiving
        else { return [] }
        return [end(installed: false, reason: "aborted by the sender: \(reason)")]
    }

    // MARK: runtime inputs

    /// The staging file is open and holds `resumeOffset` bytes of this snapshot from its start.
    public mutating func stagingOpened(transferID id: UInt64, resumeOffset: UInt64, nowMs: Int64) -> [Action] {
        guard var transfer = current, transfer.transferID == id, transfer.stage == .opening else { return [] }
        precondition(resumeOffset <= transfer.snapshot.fileBytes, "staging holds more than the snapshot file")
        transfer.stage = .receiving
        transfer.receivedOffset = resumeOffset
        transfer.writtenOffset = resumeOffset
        transfer.syncedOffset = resumeOffset
        transfer.lastHeardMs = nowMs
        current = transfer
        var actions = [send(.accept(transferID: id, resumeOffset: resumeOffset), to: transfer.peer)]
        if resumeOffset == transfer.snapshot.fileBytes { actions += beginFinalSync() }
        return actions
    }

    /// The staging file could not be opened (no space, or another disk error).
    public mutating func stagingFailed(transferID id: UInt64, reason: String) -> [Action] {
        guard let transfer = current, transfer.transferID == id, transfer.stage == .opening else { return [] }
        return [
            send(.decline(transferID: id, reason: .noSpace), to: transfer.peer),
            end(installed: false, reason: "cannot open the staging file: \(reason)"),
        ]
    }

    /// The writes asked for completed through `through` (in order).
    public mutating func written(transferID id: UInt64, through: UInt64) -> [Action] {
        defer { assertInvariants() }
        guard var transfer = current, transfer.transferID == id, transfer.stage == .receiving else { return [] }
        precondition(
            through > transfer.writtenOffset && through <= transfer.receivedOffset,
            "written through \(through): outside \(transfer.writtenOffset)...\(transfer.receivedOffset)")
        transfer.writtenOffset = through
        current = transfer
        var actions = [send(.ack(transferID: id, durableOffset: through), to: transfer.peer)]
        if through == transfer.snapshot.fileBytes {
            actions += beginFinalSync()
        } else if transfer.syncInFlightThrough == nil, through - transfer.syncedOffset >= options.syncEveryBytes {
            actions += requestSync()
        }
        return actions
    }

    /// The sync asked for completed.
    public mutating func synced(transferID id: UInt64) -> [Action] {
        defer { assertInvariants() }
        guard var transfer = current, transfer.transferID == id, let through = transfer.syncInFlightThrough else {
            return []
        }
        transfer.syncedOffset = through
        transfer.syncInFlightThrough = nil
        current = transfer
        guard transfer.stage == .finalSync else {
            return transfer.writtenOffset - through >= options.syncEveryBytes ? requestSync() : []
        }
        guard through == transfer.snapshot.fileBytes else { return requestSync() }
        transfer.stage = .verifying
        current = transfer
        return [.finishAndVerify(transferID: id, snapshot: transfer.snapshot)]
    }

    /// A write or sync of the staging file failed: the transfer ends (the staged bytes are kept for a retry).
    public mutating func storageFailed(transferID id: UInt64, reason: String) -> [Action] {
        guard let transfer = current, transfer.transferID == id, transfer.stage != .verifying,
            transfer.stage != .restoring
        else { return [] }
        return [
            send(.abort(transferID: id, reason: .storageFailed), to: transfer.peer),
            end(installed: false, reason: "staging storage failed: \(reason)"),
        ]
    }

    /// The verification of the staged file ended; on success the file is in place and the app is restored next.
    public mutating func verified(transferID id: UInt64, ok: Bool) -> [Action] {
        guard var transfer = current, transfer.transferID == id, transfer.stage == .verifying else { return [] }
        guard ok else {
            return [.discardStaging(transferID: id)] + complete(transfer, .verifyFailed)
        }
        transfer.stage = .restoring
        current = transfer
        return [.restore(transferID: id, snapshot: transfer.snapshot)]
    }

    /// The app's restore from the snapshot ended.
    public mutating func restored(transferID id: UInt64, ok: Bool) -> [Action] {
        guard let transfer = current, transfer.transferID == id, transfer.stage == .restoring else { return [] }
        return complete(transfer, ok ? .installed : .restoreFailed)
    }

    /// The link to `peer` went down: a transfer from it that is still receiving ends (its staged bytes stay for
    /// the next attempt); one with every byte in goes on to install.
    public mutating func linkDown(peer: NodeID) -> [Action] {
        guard let transfer = current, transfer.peer == peer,
            transfer.stage == .opening || transfer.stage == .receiving
        else { return [] }
        return [end(installed: false, reason: "link down")]
    }

    /// Time passes: a transfer that heard nothing from its sender for the stall timeout ends.
    public mutating func tick(nowMs: Int64) -> [Action] {
        guard let transfer = current, transfer.stage == .receiving,
            nowMs - transfer.lastHeardMs >= options.stallTimeoutMs
        else { return [] }
        return [
            send(.abort(transferID: transfer.transferID, reason: .stalled), to: transfer.peer),
            end(installed: false, reason: "stalled: nothing from the sender for \(nowMs - transfer.lastHeardMs) ms"),
        ]
    }

    // MARK: helpers

    private func assertInvariants() {
        guard let transfer = current else { return }
        precondition(
            transfer.syncedOffset <= transfer.writtenOffset && transfer.writtenOffset <= transfer.receivedOffset
                && transfer.receivedOffset <= transfer.snapshot.fileBytes,
            "snapshot receive offsets out of order")
        precondition(
            transfer.receivedOffset - transfer.writtenOffset <= options.maxUnwrittenBytes, "unwritten bytes unbounded")
    }

    private mutating func beginFinalSync() -> [Action] {
        guard var transfer = current else { return [] }
        transfer.stage = .finalSync
        current = transfer
        // A sync already running covers less than the whole file: the next one is asked for when it completes.
        return transfer.syncInFlightThrough == nil ? requestSync() : []
    }

    private mutating func requestSync() -> [Action] {
        guard var transfer = current else { return [] }
        precondition(transfer.syncInFlightThrough == nil, "one staging sync at a time")
        transfer.syncInFlightThrough = transfer.writtenOffset
        current = transfer
        return [.sync(transferID: transfer.transferID)]
    }

    private mutating func complete(_ transfer: Transfer, _ outcome: SnapshotInstallOutcome) -> [Action] {
        completed = Completed(
            transferID: transfer.transferID, peer: transfer.peer, snapshot: transfer.snapshot, outcome: outcome)
        return [
            send(.done(transferID: transfer.transferID, outcome: outcome), to: transfer.peer),
            end(installed: outcome == .installed, reason: "\(outcome)"),
        ]
    }

    /// Ends the current transfer and remembers its id.
    private mutating func end(installed: Bool, reason: String) -> Action {
        guard let transfer = current else { preconditionFailure("no transfer to end") }
        current = nil
        endedIDs.append(transfer.transferID)
        if endedIDs.count > Self.endedIDsMax { endedIDs.removeFirst(endedIDs.count - Self.endedIDsMax) }
        return .finished(installed: installed, reason: reason)
    }
}
