// The frame layer of a peer link: [payload length u32 LE][type u8][payload], as a value-type state machine.

/// Why a byte stream is not a valid frame stream. Any of these closes that one link.
public enum FrameError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A header announced more payload than the limit allows (the limit is small until the handshake completes).
    case frameTooLarge(payloadBytes: UInt32, maxPayloadBytes: Int)

    public var description: String {
        switch self {
        case .frameTooLarge(let payloadBytes, let maxPayloadBytes):
            return "frame of \(payloadBytes) payload bytes exceeds the limit of \(maxPayloadBytes) bytes"
        }
    }
}

/// What the frame consumer wants after each frame.
public enum FrameVerdict: Equatable, Sendable {
    /// Keep parsing with the current limit.
    case proceed
    /// Keep parsing, with a new payload limit for the following frames (the handshake raising it).
    case proceedWithLimit(maxPayloadBytes: Int)
    /// Stop now (the link is closing); the rest of the input is ignored.
    case stop
}

/// Splits a byte stream into frames, chunk by chunk.
///
/// A frame lying wholly inside one input chunk is handed out in place, without copying. Only a frame split across
/// chunks is assembled in `pending`, which never holds more than one header plus `maxPayloadBytes`.
public struct FrameParser {
    /// Bytes before the payload: length (4) and type (1).
    public static let headerBytes = 5

    /// The largest payload accepted; larger announced lengths are errors before any payload is buffered.
    public private(set) var maxPayloadBytes: Int
    // Invariant: pending.count < headerBytes + maxPayloadBytes (a complete frame is delivered and removed at once).
    private var pending: [UInt8] = []
    // Invariant: set only once the header in `pending` was read and checked against the limit.
    private var pendingFrameBytes: Int? = nil
    /// Set after an error: the stream can no longer be trusted and every later input is refused.
    public private(set) var failure: FrameError?

    /// Bytes buffered for an incomplete frame (bounded by one frame).
    public var bufferedBytes: Int { pending.count }

    public init(maxPayloadBytes: Int) {
        precondition(maxPayloadBytes >= 0 && maxPayloadBytes <= Int(UInt32.max), "frame limit out of range")
        self.maxPayloadBytes = maxPayloadBytes
    }

    /// Consumes one chunk, calling `onFrame` for every complete frame in order. The payload pointer is valid only
    /// during the call. Returns normally when the chunk is used up or the consumer said `.stop`; throws (and stays
    /// failed) when a header breaks the limit.
    public mutating func consume(
        _ chunk: UnsafeRawBufferPointer, onFrame: (UInt8, UnsafeRawBufferPointer) -> FrameVerdict
    ) throws(FrameError) {
        if let failure { throw failure }
        var offset = 0
        // Each iteration consumes at least one byte or delivers a frame, so the loop ends within chunk.count rounds.
        while offset < chunk.count {
            if pending.isEmpty {
                guard let frameEnd = try completeFrameEnd(in: chunk, at: offset) else {
                    try buffer(chunk, from: &offset)
                    continue
                }
                let type = chunk[offset + 4]
                let payload = UnsafeRawBufferPointer(rebasing: chunk[(offset + FrameParser.headerBytes)..<frameEnd])
                offset = frameEnd
                if !apply(onFrame(type, payload)) { return }
            } else {
                try buffer(chunk, from: &offset)
                guard let total = pendingFrameBytes, pending.count == total else { continue }
                let verdict = pending.withUnsafeBytes { bytes in
                    onFrame(bytes[4], UnsafeRawBufferPointer(rebasing: bytes[FrameParser.headerBytes...]))
                }
                resetPending()
                if !apply(verdict) { return }
            }
        }
    }

    /// The end offset of a whole frame starting at `offset`, or nil when the chunk holds only part of it.
    private mutating func completeFrameEnd(in chunk: UnsafeRawBufferPointer, at offset: Int) throws(FrameError) -> Int?
    {
        guard chunk.count - offset >= FrameParser.headerBytes else { return nil }
        let payloadBytes = try checkedLength(chunk, at: offset)
        let end = offset + FrameParser.headerBytes + payloadBytes
        return end <= chunk.count ? end : nil
    }

    /// Copies as much of the current frame as the chunk holds into `pending`, checking the header once it is whole.
    private mutating func buffer(_ chunk: UnsafeRawBufferPointer, from offset: inout Int) throws(FrameError) {
        let wanted = (pendingFrameBytes ?? FrameParser.headerBytes) - pending.count
        let taken = min(wanted, chunk.count - offset)
        pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[offset..<(offset + taken)]))
        offset += taken
        if pendingFrameBytes == nil && pending.count == FrameParser.headerBytes {
            let payloadBytes = try checkedLength(pending[0], pending[1], pending[2], pending[3])
            pendingFrameBytes = FrameParser.headerBytes + payloadBytes
            pending.reserveCapacity(FrameParser.headerBytes + payloadBytes)
        }
        assert(pending.count <= (pendingFrameBytes ?? FrameParser.headerBytes), "buffered past the current frame")
    }

    private mutating func checkedLength(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(FrameError) -> Int {
        try checkedLength(bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3])
    }

    private mutating func checkedLength(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8) throws(FrameError) -> Int {
        let length = UInt32(b0) | UInt32(b1) << 8 | UInt32(b2) << 16 | UInt32(b3) << 24
        guard Int(length) <= maxPayloadBytes else {
            let error = FrameError.frameTooLarge(payloadBytes: length, maxPayloadBytes: maxPayloadBytes)
            failure = error
            resetPending()
            throw error
        }
        return Int(length)
    }

    private mutating func resetPending() {
        // Keep a small buffer for the next split frame; give a large one back rather than pin it per link.
        let keep = pending.capacity <= 64 * 1024
        pending.removeAll(keepingCapacity: keep)
        pendingFrameBytes = nil
    }

    private mutating func apply(_ verdict: FrameVerdict) -> Bool {
        switch verdict {
        case .proceed: return true
        case .stop: return false
        case .proceedWithLimit(let limit):
            precondition(limit >= 0 && limit <= Int(UInt32.max), "frame limit out of range")
            maxPayloadBytes = limit
            return true
        }
    }

    /// Writes a frame header for `payloadBytes` of payload of `type` into `header` (5 bytes).
    public static func header(type: UInt8, payloadBytes: Int) -> [UInt8] {
        precondition(payloadBytes >= 0 && payloadBytes <= Int(UInt32.max), "payload too large for a frame header")
        let length = UInt32(payloadBytes)
        return [
            UInt8(truncatingIfNeeded: length), UInt8(truncatingIfNeeded: length >> 8),
            UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 24), type,
        ]
    }
}
