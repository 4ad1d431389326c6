// Sealed frames: with a cluster secret, every frame after the handshake is encrypted and authenticated.
//
// Keys: each direction of a link has its own AES-256-GCM key, HKDF-SHA256(secret, salt: dialer nonce | acceptor
// nonce, info: label | direction | dialer id | acceptor id). The nonces are the handshake's fresh ones, so every
// link has keys of its own, and nothing sealed on one link (or in one direction) opens on another.
//
// Wire: [length u32 LE][type 0x05][AES-256-GCM(inner type u8 | payload)][16-byte tag], where the 5-byte header is
// the associated data and the GCM nonce is the frame's sequence number in its direction (0, 1, 2, ...), which
// both sides count and never send. A frame that was altered (header, ciphertext or tag), replayed, reordered,
// dropped before a later one, moved from another link or direction, or injected in plaintext does not open, and
// the link closes. The inner type is hidden too: an observer sees only frame sizes and timing.

import TandemConsensus
import TandemNet

extension PeerProtocol {
    /// The outer type of every frame after a cluster-secret handshake.
    static let sealedFrameType: UInt8 = 0x05
    /// What sealing adds to a payload: the inner type byte and the GCM tag.
    public static let sealedFrameOverheadBytes = 1 + AES256GCM.tagBytes
}

/// The two keys of one link in cluster-secret mode.
struct LinkKeys: Equatable {
    static let label = Array("tandem-frame-keys-v2".utf8)

    /// For the frames this side sends.
    var send: [UInt8]
    /// For the frames this side receives.
    var receive: [UInt8]

    /// The keys of the link `handshake` established with `peer`. Both sides derive the same pair, crossed.
    init(handshake: Handshake, peer: NodeID) {
        guard case .secret(let secret) = handshake.auth, let peerNonce = handshake.peerNonce else {
            preconditionFailure("link keys exist only after a cluster-secret hello")
        }
        let weDialled = handshake.role != .acceptor
        let (dialer, acceptor) = weDialled ? (handshake.selfID, peer) : (peer, handshake.selfID)
        let salt = weDialled ? handshake.nonce + peerNonce : peerNonce + handshake.nonce
        let fromDialer = LinkKeys.key(secret: secret, salt: salt, fromDialer: true, dialer: dialer, acceptor: acceptor)
        let toDialer = LinkKeys.key(secret: secret, salt: salt, fromDialer: false, dialer: dialer, acceptor: acceptor)
        (send, receive) = weDialled ? (fromDialer, toDialer) : (toDialer, fromDialer)
    }

    private static func key(secret: [UInt8], salt: [UInt8], fromDialer: Bool, dialer: NodeID, acceptor: NodeID)
        -> [UInt8]
    {
        var info = ByteWriter(reservingCapacity: 64)
        info.raw(LinkKeys.label)
        info.u8(fromDialer ? 0 : 1)
        info.string(dialer.rawValue)
        info.string(acceptor.rawValue)
        do {
            return try Crypto.hkdfSHA256(key: secret, salt: salt, info: info.bytes, outputBytes: AES256GCM.keyBytes)
        } catch {
            // Over memory this cannot fail short of OpenSSL being broken; running without keys is not an option.
            preconditionFailure("HKDF-SHA256 failed: \(error)")
        }
    }
}

/// The 5-byte frame header as a value, so that sealing and opening build their associated data without allocating.
private func withFrameHeader<R, E: Error>(
    type: UInt8, payloadBytes: Int, _ body: (UnsafeRawBufferPointer) throws(E) -> R
) throws(E) -> R {
    let length = UInt32(payloadBytes)
    var header = (
        UInt8(truncatingIfNeeded: length), UInt8(truncatingIfNeeded: length >> 8),
        UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 24), type
    )
    return try withUnsafeBytes(of: &header) { bytes throws(E) in try body(bytes) }
}

/// Seals the frames one side of a link sends. Each frame is encrypted through one fixed scratch buffer, so a frame
/// of any size costs no allocation, and a small frame leaves as one write of header, ciphertext and tag.
final class FrameSealer {
    static let scratchBytes = 64 * 1024

    private let cipher: AES256GCM
    /// The number of the next frame: its GCM nonce. Only increases; `UInt64.max` is never used.
    private(set) var sequence: UInt64
    // Invariant: scratchBytes long, owned here, freed in deinit.
    private let scratch: UnsafeMutableRawBufferPointer

    /// `sequence` is 0 on a real link; tests start near the end to see it run out.
    init(key: [UInt8], sequence: UInt64 = 0) {
        do {
            cipher = try AES256GCM(key: key, direction: .seal)
        } catch {
            preconditionFailure("AES-256-GCM unavailable: \(error)")
        }
        self.sequence = sequence
        scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: FrameSealer.scratchBytes, alignment: 16)
    }

    deinit { scratch.deallocate() }

    /// Seals one frame and hands its bytes to `write` in order (once for a frame that fits the scratch buffer).
    /// Returns false, writing nothing, when this direction has no sequence number left: the link must close.
    func seal(type: UInt8, payload: UnsafeRawBufferPointer, write: (UnsafeRawBufferPointer) -> Void) -> Bool {
        guard sequence < UInt64.max else { return false }
        let sealedBytes = payload.count + PeerProtocol.sealedFrameOverheadBytes
        precondition(sealedBytes <= Int(UInt32.max), "payload too large for a sealed frame")
        let base = scratch.baseAddress!
        let capacity = scratch.count
        do throws(AEADError) {
            let frameBytes = FrameParser.headerBytes + sealedBytes
            if frameBytes <= capacity {
                // The common case: the whole frame is sealed into the scratch buffer in one call and written once.
                var innerType = type
                try withFrameHeader(type: PeerProtocol.sealedFrameType, payloadBytes: sealedBytes) {
                    header throws(AEADError) in
                    base.copyMemory(from: header.baseAddress!, byteCount: header.count)
                    try withUnsafeBytes(of: &innerType) { prefix throws(AEADError) in
                        try cipher.sealMessage(
                            counter: sequence, associatedData: header, prefix: prefix, input: payload,
                            into: base + header.count, tagInto: base + (frameBytes - AES256GCM.tagBytes))
                    }
                }
                write(UnsafeRawBufferPointer(rebasing: scratch[0..<frameBytes]))
                sequence += 1
                return true
            }
            var used = 0
            try withFrameHeader(type: PeerProtocol.sealedFrameType, payloadBytes: sealedBytes) {
                header throws(AEADError) in
                try cipher.begin(counter: sequence, associatedData: header)
                base.copyMemory(from: header.baseAddress!, byteCount: header.count)
                used = header.count
            }
            var innerType = type
            try withUnsafeBytes(of: &innerType) { bytes throws(AEADError) in
                try cipher.update(bytes, into: base + used)
            }
            used += 1
            var offset = 0
            while offset < payload.count {
                if used == capacity {
                    write(UnsafeRawBufferPointer(scratch))
                    used = 0
                }
                let count = min(capacity - used, payload.count - offset)
                try cipher.update(
                    UnsafeRawBufferPointer(rebasing: payload[offset..<(offset + count)]), into: base + used)
                used += count
                offset += count
            }
            if capacity - used < AES256GCM.tagBytes {
                write(UnsafeRawBufferPointer(rebasing: scratch[0..<used]))
                used = 0
            }
            try cipher.finishSeal(tagInto: base + used)
            used += AES256GCM.tagBytes
            write(UnsafeRawBufferPointer(rebasing: scratch[0..<used]))
        } catch {
            preconditionFailure("AES-256-GCM failed on valid arguments: \(error)")
        }
        sequence += 1
        return true
    }
}

/// Opens the frames one side of a link receives, strictly in sequence. The plaintext goes to a buffer of the
/// opener's own, reused from frame to frame, and is handed out only once the whole frame authenticated.
final class FrameOpener {
    /// A buffer grown for a larger frame is given back once a smaller one follows: a link keeps at most this much.
    static let retainedBufferBytes = 256 * 1024
    /// Frames up to this size are opened in one call; larger ones (a frame limit raised past 1 GiB) in pieces.
    static let oneCallLimitBytes = 1 << 30

    enum Outcome {
        /// The frame authenticated. `payload` lies in the opener's buffer, valid until the next `open`.
        case opened(type: UInt8, payload: UnsafeRawBufferPointer)
        /// The frame did not; the link must close and nothing of it may be used.
        case failed(LinkFailure)
    }

    private let cipher: AES256GCM
    /// The number of the next frame expected: its GCM nonce.
    private(set) var sequence: UInt64
    // Invariant: owned here (freed in deinit or when replaced); empty until the first frame.
    private var buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    init(key: [UInt8], sequence: UInt64 = 0) {
        do {
            cipher = try AES256GCM(key: key, direction: .open)
        } catch {
            preconditionFailure("AES-256-GCM unavailable: \(error)")
        }
        self.sequence = sequence
    }

    deinit { buffer.deallocate() }

    /// Opens one received frame (its outer type and payload as the frame parser gives them).
    func open(frameType: UInt8, payload: UnsafeRawBufferPointer) -> Outcome {
        guard frameType == PeerProtocol.sealedFrameType else { return .failed(.unsealedFrame(type: frameType)) }
        guard payload.count >= PeerProtocol.sealedFrameOverheadBytes else {
            return .failed(.frameAuthenticationFailed(sequence: sequence))
        }
        guard sequence < UInt64.max else { return .failed(.sequenceExhausted) }
        let cipherBytes = payload.count - AES256GCM.tagBytes
        reserve(cipherBytes)
        let ciphertext = UnsafeRawBufferPointer(rebasing: payload[0..<cipherBytes])
        let tag = UnsafeRawBufferPointer(rebasing: payload[cipherBytes...])
        let authentic: Bool
        do throws(AEADError) {
            authentic = try withFrameHeader(type: frameType, payloadBytes: payload.count) {
                header throws(AEADError) in
                guard cipherBytes > FrameOpener.oneCallLimitBytes else {
                    return cipher.openMessage(
                        counter: sequence, associatedData: header, ciphertext: ciphertext, tag: tag,
                        into: buffer.baseAddress!)
                }
                try cipher.begin(counter: sequence, associatedData: header)
                try cipher.update(ciphertext, into: buffer.baseAddress!)
                return cipher.finishOpen(tag: tag)
            }
        } catch {
            preconditionFailure("AES-256-GCM failed on valid arguments: \(error)")
        }
        guard authentic else { return .failed(.frameAuthenticationFailed(sequence: sequence)) }
        sequence += 1
        return .opened(
            type: buffer[0], payload: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[1..<cipherBytes]))
    }

    /// Makes the buffer hold at least `bytes`, and gives back a large one when a small frame follows.
    private func reserve(_ bytes: Int) {
        let tooSmall = buffer.count < bytes
        let oversized = buffer.count > FrameOpener.retainedBufferBytes && bytes <= FrameOpener.retainedBufferBytes
        guard tooSmall || oversized else { return }
        buffer.deallocate()
        let size = max(bytes, min(FrameOpener.retainedBufferBytes, max(4096, buffer.count * 2)))
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
    }
}
