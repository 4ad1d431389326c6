// The binary layout of consensus messages in peer frames.
//
// Every message is one frame; the frame type names the message and its layout version (a new layout gets a new
// type, so old and new nodes never misread each other). All integers are little-endian. Layouts:
//   common      = from: string, to: string, term: u64            (string = u16 length + UTF-8)
//   vote req    = common, lastLogIndex u64, lastLogTerm u64, leadershipTransfer u8(0|1)
//   vote resp   = common, granted u8
//   append      = common, prevLogIndex u64, prevLogTerm u64, leaderCommit u64, count u32, entry*
//   entry       = term u64, index u64, kind u8, timeMs i64, hasProposal u8, [origin string, sequence u64], data blob
//   append resp = common, success u8, matchIndex u64, rejectedIndex u64, hintIndex u64, hintTerm u64
//   heartbeat   = common, commitIndex u64, round u64;  heartbeat resp = common, round u64;  timeout now = common
//   forward     = common, count u32, (origin string, sequence u64, data blob)*
//   forward resp= common, count u32, (origin string, sequence u64, tag u8, accepted: index u64 term u64 |
//                 rejected: error u8)*
//   read req    = common, mode u8, count u32, (origin string, sequence u64)*
//   read resp   = common, count u32, (origin string, sequence u64, tag u8, ready: index u64 | failed: error u8)*
// (blob = u32 length + bytes). Decoding checks every length against the payload and throws; it never traps.
// A decoded message must also pass `Message.malformation` (TandemConsensus/MessageValidation.swift): ids as a
// configuration allows them, terms and indexes at most UInt64.max / 2, entries contiguous after prevLogIndex with
// terms rising at most to the message term.

import TandemConsensus

/// Encodes and decodes `TandemConsensus.Message` as frame payloads. Pure functions; usable on any thread.
public enum ConsensusCodec {
    /// The frame types of consensus messages, layout version 1.
    public enum FrameType: UInt8, CaseIterable, Sendable {
        case preVoteRequest = 0x10
        case preVoteResponse = 0x11
        case voteRequest = 0x12
        case voteResponse = 0x13
        case appendEntries = 0x14
        case appendResponse = 0x15
        case heartbeat = 0x16
        case heartbeatResponse = 0x17
        case timeoutNow = 0x18
        case proposalForward = 0x19
        case proposalForwardResponse = 0x1A
        case readIndexRequest = 0x1B
        case readIndexResponse = 0x1C
    }

    /// The smallest encoded entry (no proposal, empty data): bounds a claimed count before allocating.
    static let minimumEntryBytes = WireSize.entryFixedBytes

    /// Exactly the payload bytes `encode` produces for `message` (computed by `WireSize` in the core, which sizes
    /// its batches with the same figures; `encode` asserts the two agree).
    public static func encodedSize(of message: Message) -> Int { message.encodedSizeBytes }

    /// Exactly the bytes `entry` takes inside an AppendEntries payload.
    public static func encodedSize(of entry: Entry) -> Int { entry.encodedSizeBytes }

    /// Exactly the bytes of an AppendEntries payload between `from` and `to` before its first entry.
    public static func appendEntriesFixedSize(from: NodeID, to: NodeID) -> Int {
        WireSize.appendEntriesFixed(from: from, to: to)
    }

    /// The frame type and payload of `message`. The payload is built in one buffer sized up front.
    public static func encode(_ message: Message) -> (type: UInt8, payload: [UInt8]) {
        let size = message.encodedSizeBytes
        var writer = ByteWriter(reservingCapacity: size)
        let type: FrameType
        switch message {
        case .preVoteRequest(let m):
            type = .preVoteRequest
            writeVoteRequest(m, into: &writer)
        case .voteRequest(let m):
            type = .voteRequest
            writeVoteRequest(m, into: &writer)
        case .preVoteResponse(let m):
            type = .preVoteResponse
            writeVoteResponse(m, into: &writer)
        case .voteResponse(let m):
            type = .voteResponse
            writeVoteResponse(m, into: &writer)
        case .appendEntries(let m):
            type = .appendEntries
            writeAppendEntries(m, into: &writer)
        case .appendResponse(let m):
            type = .appendResponse
            writeAppendResponse(m, into: &writer)
        case .heartbeat(let m):
            type = .heartbeat
            writeCommon(m.from, m.to, m.term, into: &writer)
            writer.u64(m.commitIndex)
            writer.u64(m.round)
        case .heartbeatResponse(let m):
            type = .heartbeatResponse
            writeCommon(m.from, m.to, m.term, into: &writer)
            writer.u64(m.round)
        case .timeoutNow(let m):
            type = .timeoutNow
            writeCommon(m.from, m.to, m.term, into: &writer)
        case .proposalForward(let m):
            type = .proposalForward
            writeProposalForward(m, into: &writer)
        case .proposalForwardResponse(let m):
            type = .proposalForwardResponse
            writeForwardResponse(m, into: &writer)
        case .readIndexRequest(let m):
            type = .readIndexRequest
            writeReadRequest(m, into: &writer)
        case .readIndexResponse(let m):
            type = .readIndexResponse
            writeReadResponse(m, into: &writer)
        }
        assert(writer.bytes.count == size, "WireSize disagrees with the codec for \(type)")
        return (type.rawValue, writer.bytes)
    }

    /// Decodes a payload of frame `type`. Throws on any malformed input (truncation, bad enum values, invalid
    /// UTF-8, counts the payload cannot hold, trailing bytes, and any `Message.malformation`). Entry data is copied
    /// once, out of the payload.
    public static func decode(type: UInt8, payload: UnsafeRawBufferPointer) throws(DecodeError) -> Message {
        guard let frameType = FrameType(rawValue: type) else { throw .unknownFrameType(type) }
        var reader = ByteReader(payload)
        let message: Message
        switch frameType {
        case .preVoteRequest: message = .preVoteRequest(try readVoteRequest(&reader))
        case .voteRequest: message = .voteRequest(try readVoteRequest(&reader))
        case .preVoteResponse: message = .preVoteResponse(try readVoteResponse(&reader))
        case .voteResponse: message = .voteResponse(try readVoteResponse(&reader))
        case .appendEntries: message = .appendEntries(try readAppendEntries(&reader))
        case .appendResponse: message = .appendResponse(try readAppendResponse(&reader))
        case .heartbeat:
            let (from, to, term) = try readCommon(&reader)
            message = .heartbeat(
                Heartbeat(from: from, to: to, term: term, commitIndex: try reader.u64(), round: try reader.u64()))
        case .heartbeatResponse:
            let (from, to, term) = try readCommon(&reader)
            message = .heartbeatResponse(HeartbeatResponse(from: from, to: to, term: term, round: try reader.u64()))
        case .timeoutNow:
            let (from, to, term) = try readCommon(&reader)
            message = .timeoutNow(TimeoutNow(from: from, to: to, term: term))
        case .proposalForward: message = .proposalForward(try readProposalForward(&reader))
        case .proposalForwardResponse: message = .proposalForwardResponse(try readForwardResponse(&reader))
        case .readIndexRequest: message = .readIndexRequest(try readReadRequest(&reader))
        case .readIndexResponse: message = .readIndexResponse(try readReadResponse(&reader))
        }
        try reader.expectEnd()
        // Well-formed bytes are not enough: a message no correct peer could send (a term with no room above it,
        // entries out of order, an id no configuration allows, an index past any log) is refused here, whole.
        if let problem = message.malformation { throw .invalidValue(field: problem, offset: 0) }
        return message
    }

    /// `decode(type:payload:)` for an array payload.
    public static func decode(type: UInt8, payload: [UInt8]) throws(DecodeError) -> Message {
        let result: Result<Message, DecodeError> = payload.withUnsafeBytes { bytes in
            do throws(DecodeError) { return .success(try decode(type: type, payload: bytes)) } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}

// MARK: - Writing

extension ConsensusCodec {
    private static func writeCommon(_ from: NodeID, _ to: NodeID, _ term: UInt64, into writer: inout ByteWriter) {
        writer.string(from.rawValue)
        writer.string(to.rawValue)
        writer.u64(term)
    }

    private static func writeVoteRequest(_ m: VoteRequest, into writer: inout ByteWriter) {
        writeCommon(m.from, m.to, m.term, into: &writer)
        writer.u64(m.lastLogIndex)
        writer.u64(m.lastLogTerm)
        writer.bool(m.leadershipTransfer)
    }

    private static func writeVoteResponse(_ m: VoteResponse, into writer: inout ByteWriter) {
        writeCommon(m.from, m.to, m.term, into: &writer)
        writer.bool(m.granted)
    }

    private static func writeAppendEntries(_ m: AppendEntries, into writer: inout ByteWriter) {
        writeCommon(m.from, m.to, m.term, into: &writer)
        writer.u64(m.prevLogIndex)
        writer.u64(m.prevLogTerm)
        writer.u64(m.leaderCommit)
        writer.u32(UInt32(m.entries.count))
        for entry in m.entries {
            writer.u64(entry.term)
            writer.u64(entry.index)
            writer.u8(entry.kind.rawValue)
            writer.i64(entry.timeMs)
            if let proposal = entry.proposal {
                writer.u8(1)
                writeID(proposal.origin, proposal.sequence, into: &writer)
            } else {
                writer.u8(0)
            }
            writer.blob(entry.data)
        }
    }

    private static func writeAppendResponse(_ m: AppendResponse, into writer: inout ByteWriter) {
        writeCommon(m.from, m.to, m.term, into: &writer)
        writer.bool(m.success)
        writer.u64(m.matchIndex)
        writer.u64(m.rejectedIndex)
        writer.u64(m.hintIndex)
        writer.u64(m.hintTerm)
    }

    private static func writeID(_ origin: NodeID, _ sequence: UInt64, into writer: inout ByteWriter) {
        writer.string(origin.rawValue)
        writer.u64(sequence)
    }

    private static func writeProposalForward(_ m: ProposalForward, into writer: inout ByteWriter) {
        writeCommon(m.from, m.to, m.term, into: &writer)
        writer.u32(UInt32(m.proposals.count))
        for proposal in m.proposals {
            writeID(proposal.id.origin, proposal.id.sequence, into: &writer)
            writer.blob(proposal.data)
        }
    }

    private static func writeForwardResponse(_ m: ProposalForwardResponse, into writer: inout ByteWriter) {
        writeCommon(m.from, m.to, m.term, into: &writer)
        writer.u32(UInt32(m.outcomes.count))
        for (id, outcome) in m.outcomes {
            writeID(id.origin, id.sequence, into: &writer)
            switch outcome {
            case .accepted(let index, let term):
                writer.u8(0)
                writer.u64(index)
                writer.u64(term)
            case .rejected(let error):
                writer.u8(1)
                writer.u8(proposalErrorCode(error))
            }
        }
    }

    private static func writeReadRequest(_ m: ReadIndexRequest, into writer: inout ByteWriter) {
        writeCommon(m.from, m.to, m.term, into: &writer)
        writer.u8(m.mode == .readIndex ? 0 : 1)
        writer.u32(UInt32(m.reads.count))
        for read in m.reads { writeID(read.origin, read.sequence, into: &writer) }
    }

    private static func writeReadResponse(_ m: ReadIndexResponse, into writer: inout ByteWriter) {
        writeCommon(m.from, m.to, m.term, into: &writer)
        writer.u32(UInt32(m.outcomes.count))
        for (id, outcome) in m.outcomes {
            writeID(id.origin, id.sequence, into: &writer)
            switch outcome {
            case .ready(let index):
                writer.u8(0)
                writer.u64(index)
            case .failed(let error):
                writer.u8(1)
                writer.u8(readErrorCode(error))
            }
        }
    }

    private static func proposalErrorCode(_ error: ProposalError) -> UInt8 {
        switch error {
        case .noLeader: return 0
        case .overloaded: return 1
        case .tooLarge: return 2
        case .leadershipTransferInProgress: return 3
        }
    }

    private static func readErrorCode(_ error: ReadError) -> UInt8 {
        switch error {
        case .noLeader: return 0
        case .notLeader: return 1
        case .overloaded: return 2
        case .timeout: return 3
        }
    }
}

// MARK: - Reading

extension ConsensusCodec {
    private static func readCommon(_ reader: inout ByteReader) throws(DecodeError) -> (NodeID, NodeID, UInt64) {
        let from = NodeID(try reader.string("from"))
        let to = NodeID(try reader.string("to"))
        return (from, to, try reader.u64())
    }

    private static func readVoteRequest(_ reader: inout ByteReader) throws(DecodeError) -> VoteRequest {
        let (from, to, term) = try readCommon(&reader)
        return VoteRequest(
            from: from, to: to, term: term, lastLogIndex: try reader.u64(), lastLogTerm: try reader.u64(),
            leadershipTransfer: try reader.bool("leadershipTransfer"))
    }

    private static func readVoteResponse(_ reader: inout ByteReader) throws(DecodeError) -> VoteResponse {
        let (from, to, term) = try readCommon(&reader)
        return VoteResponse(from: from, to: to, term: term, granted: try reader.bool("granted"))
    }

    private static func readAppendEntries(_ reader: inout ByteReader) throws(DecodeError) -> AppendEntries {
        let (from, to, term) = try readCommon(&reader)
        let prevLogIndex = try reader.u64()
        let prevLogTerm = try reader.u64()
        let leaderCommit = try reader.u64()
        let count = try reader.count("entry count", minimumElementBytes: minimumEntryBytes)
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count { entries.append(try readEntry(&reader)) }
        return AppendEntries(
            from: from, to: to, term: term, prevLogIndex: prevLogIndex, prevLogTerm: prevLogTerm, entries: entries,
            leaderCommit: leaderCommit)
    }

    private static func readEntry(_ reader: inout ByteReader) throws(DecodeError) -> Entry {
        let term = try reader.u64()
        let index = try reader.u64()
        let kindOffset = reader.offset
        guard let kind = EntryKind(rawValue: try reader.u8()) else {
            throw .invalidValue(field: "entry kind", offset: kindOffset)
        }
        let timeMs = try reader.i64()
        let proposal: ProposalID? = try reader.bool("hasProposal") ? try readProposalID(&reader) : nil
        return Entry(term: term, index: index, kind: kind, timeMs: timeMs, proposal: proposal, data: try reader.blob())
    }

    private static func readProposalID(_ reader: inout ByteReader) throws(DecodeError) -> ProposalID {
        ProposalID(origin: NodeID(try reader.string("origin")), sequence: try reader.u64())
    }

    private static func readAppendResponse(_ reader: inout ByteReader) throws(DecodeError) -> AppendResponse {
        let (from, to, term) = try readCommon(&reader)
        return AppendResponse(
            from: from, to: to, term: term, success: try reader.bool("success"), matchIndex: try reader.u64(),
            rejectedIndex: try reader.u64(), hintIndex: try reader.u64(), hintTerm: try reader.u64())
    }

    private static func readProposalForward(_ reader: inout ByteReader) throws(DecodeError) -> ProposalForward {
        let (from, to, term) = try readCommon(&reader)
        let count = try reader.count("proposal count", minimumElementBytes: 2 + 8 + 4)
        var proposals: [ForwardedProposal] = []
        proposals.reserveCapacity(count)
        for _ in 0..<count {
            let id = try readProposalID(&reader)
            proposals.append(ForwardedProposal(id: id, data: try reader.blob()))
        }
        return ProposalForward(from: from, to: to, term: term, proposals: proposals)
    }

    private static func readForwardResponse(_ reader: inout ByteReader) throws(DecodeError) -> ProposalForwardResponse {
        let (from, to, term) = try readCommon(&reader)
        let count = try reader.count("outcome count", minimumElementBytes: 2 + 8 + 2)
        var outcomes: [ProposalID: ProposalOutcome] = [:]
        outcomes.reserveCapacity(count)
        for _ in 0..<count {
            let idOffset = reader.offset
            let id = try readProposalID(&reader)
            let tagOffset = reader.offset
            let outcome: ProposalOutcome
            switch try reader.u8() {
            case 0: outcome = .accepted(index: try reader.u64(), term: try reader.u64())
            case 1: outcome = .rejected(try proposalError(&reader))
            default: throw .invalidValue(field: "proposal outcome", offset: tagOffset)
            }
            guard outcomes.updateValue(outcome, forKey: id) == nil else {
                throw .invalidValue(field: "duplicate proposal id", offset: idOffset)
            }
        }
        return ProposalForwardResponse(from: from, to: to, term: term, outcomes: outcomes)
    }

    private static func readReadRequest(_ reader: inout ByteReader) throws(DecodeError) -> ReadIndexRequest {
        let (from, to, term) = try readCommon(&reader)
        let modeOffset = reader.offset
        let mode: ReadMode
        switch try reader.u8() {
        case 0: mode = .readIndex
        case 1: mode = .lease
        default: throw .invalidValue(field: "read mode", offset: modeOffset)
        }
        let count = try reader.count("read count", minimumElementBytes: 2 + 8)
        var reads: [ReadID] = []
        reads.reserveCapacity(count)
        for _ in 0..<count {
            reads.append(ReadID(origin: NodeID(try reader.string("origin")), sequence: try reader.u64()))
        }
        return ReadIndexRequest(from: from, to: to, term: term, reads: reads, mode: mode)
    }

    private static func readReadResponse(_ reader: inout ByteReader) throws(DecodeError) -> ReadIndexResponse {
        let (from, to, term) = try readCommon(&reader)
        let count = try reader.count("outcome count", minimumElementBytes: 2 + 8 + 2)
        var outcomes: [ReadID: ReadOutcome] = [:]
        outcomes.reserveCapacity(count)
        for _ in 0..<count {
            let idOffset = reader.offset
            let id = ReadID(origin: NodeID(try reader.string("origin")), sequence: try reader.u64())
            let tagOffset = reader.offset
            let outcome: ReadOutcome
            switch try reader.u8() {
            case 0: outcome = .ready(index: try reader.u64())
            case 1: outcome = .failed(try readError(&reader))
            default: throw .invalidValue(field: "read outcome", offset: tagOffset)
            }
            guard outcomes.updateValue(outcome, forKey: id) == nil else {
                throw .invalidValue(field: "duplicate read id", offset: idOffset)
            }
        }
        return ReadIndexResponse(from: from, to: to, term: term, outcomes: outcomes)
    }

    private static func proposalError(_ reader: inout ByteReader) throws(DecodeError) -> ProposalError {
        let offset = reader.offset
        switch try reader.u8() {
        case 0: return .noLeader
        case 1: return .overloaded
        case 2: return .tooLarge
        case 3: return .leadershipTransferInProgress
        default: throw .invalidValue(field: "proposal error", offset: offset)
        }
    }

    private static func readError(_ reader: inout ByteReader) throws(DecodeError) -> ReadError {
        let offset = reader.offset
        switch try reader.u8() {
        case 0: return .noLeader
        case 1: return .notLeader
        case 2: return .overloaded
        case 3: return .timeout
        default: throw .invalidValue(field: "read error", offset: offset)
        }
    }
}

extension PeerTransport {
    /// Encodes `message` and queues it to `message.to` (see `send(type:payload:to:)` for the outcomes).
    @discardableResult
    public func send(_ message: Message) -> SendOutcome {
        let (type, payload) = ConsensusCodec.encode(message)
        return send(type: type, payload: payload, to: message.to)
    }
}
