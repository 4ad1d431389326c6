// Key derivation and authenticated encryption for the peer transport's sealed frames, as Swift API over OpenSSL's
// libcrypto (like Crypto.swift, whose rule holds here too: this file only calls OpenSSL, it implements nothing).

import CLibeventOpenSSL

/// Errors of key derivation and AEAD. OpenSSL refusing valid arguments: operating errors, not authentication
/// failures (a message that does not authenticate is a `false` from `AES256GCM.finishOpen`, not an error).
public enum AEADError: Error, Equatable, Sendable, CustomStringConvertible {
    case keyDerivationFailed
    case cipherFailed

    public var description: String {
        switch self {
        case .keyDerivationFailed: return "OpenSSL could not derive a key with HKDF-SHA256"
        case .cipherFailed: return "OpenSSL could not run AES-256-GCM"
        }
    }
}

extension Crypto {
    /// HKDF-SHA256 (RFC 5869): `outputBytes` of key material from `key`, `salt` and the context label `info`.
    public static func hkdfSHA256(
        key: [UInt8], salt: [UInt8], info: [UInt8], outputBytes: Int
    ) throws(AEADError) -> [UInt8] {
        precondition(outputBytes > 0 && outputBytes <= 255 * 32, "HKDF-SHA256 gives 1...8160 bytes")
        var out = [UInt8](repeating: 0, count: outputBytes)
        let ok = key.withUnsafeBufferPointer { keyBytes in
            salt.withUnsafeBufferPointer { saltBytes in
                info.withUnsafeBufferPointer { infoBytes in
                    out.withUnsafeMutableBufferPointer { outBytes in
                        tandem_hkdf_sha256(
                            keyBytes.baseAddress, keyBytes.count, saltBytes.baseAddress, saltBytes.count,
                            infoBytes.baseAddress, infoBytes.count, outBytes.baseAddress, outBytes.count)
                    }
                }
            }
        }
        guard ok == 1 else { throw .keyDerivationFailed }
        return out
    }
}

/// AES-256-GCM under one key, for one direction of a stream of messages (seal or open). Each message is
/// `begin` (its nonce and associated data), any number of `update`s, then `finishSeal` or `finishOpen`, so that a
/// large message needs no buffer of its own size on the sealing side. The key schedule is computed once, at init.
///
/// Not thread-safe: one instance per direction of one link, used on that link's thread. The caller owns nonce
/// uniqueness (`begin`'s counter must never repeat under one key: GCM loses everything when a nonce repeats).
public final class AES256GCM {
    public static let keyBytes = 32
    public static let tagBytes = 16

    public enum Direction: Sendable {
        case seal
        case open
    }

    public let direction: Direction
    // Invariant: a live EVP_CIPHER_CTX keyed for `direction`, freed only in deinit.
    private let context: OpaquePointer

    public init(key: [UInt8], direction: Direction) throws(AEADError) {
        precondition(key.count == AES256GCM.keyBytes, "an AES-256 key is \(AES256GCM.keyBytes) bytes")
        let context = key.withUnsafeBufferPointer {
            tandem_aes256gcm_new($0.baseAddress, direction == .seal ? 1 : 0)
        }
        guard let context else { throw .cipherFailed }
        self.context = context
        self.direction = direction
    }

    deinit { EVP_CIPHER_CTX_free(context) }

    /// Starts a message whose 96-bit nonce is four zero bytes and then `counter` big-endian, authenticating
    /// `associatedData` (which is not encrypted).
    public func begin(counter: UInt64, associatedData: UnsafeRawBufferPointer) throws(AEADError) {
        precondition(associatedData.count <= Int(Int32.max), "associated data too large")
        let ok = AES256GCM.withNonce(counter) { nonce in
            tandem_aes256gcm_begin(context, nonce, bytes(associatedData), Int32(associatedData.count))
        }
        guard ok == 1 else { throw .cipherFailed }
    }

    /// Seals a whole message in one call (`begin`, `update`s and `finishSeal` at once, which saves their per-call
    /// costs on small messages): `prefix` then `input` are encrypted into `output`, which must hold both.
    public func sealMessage(
        counter: UInt64, associatedData: UnsafeRawBufferPointer, prefix: UnsafeRawBufferPointer,
        input: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer, tagInto tag: UnsafeMutableRawPointer
    ) throws(AEADError) {
        precondition(direction == .seal, "sealMessage on an opening context")
        precondition(
            associatedData.count <= 1 << 30 && prefix.count <= 1 << 30 && input.count <= 1 << 30,
            "one-call messages are below 1 GiB; stream larger ones")
        let ok = AES256GCM.withNonce(counter) { nonce in
            tandem_aes256gcm_seal_message(
                context, nonce, bytes(associatedData), Int32(associatedData.count), bytes(prefix),
                Int32(prefix.count), bytes(input), Int32(input.count), output.assumingMemoryBound(to: UInt8.self),
                tag.assumingMemoryBound(to: UInt8.self))
        }
        guard ok == 1 else { throw .cipherFailed }
    }

    /// Opens a whole message in one call: true only when `tag` authenticates the nonce, the associated data and
    /// `ciphertext`; `output` (`ciphertext.count` bytes) then holds the plaintext, and garbage otherwise.
    public func openMessage(
        counter: UInt64, associatedData: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer,
        tag: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer
    ) -> Bool {
        precondition(direction == .open, "openMessage on a sealing context")
        precondition(
            associatedData.count <= 1 << 30 && ciphertext.count <= 1 << 30, "one-call messages are below 1 GiB")
        guard tag.count == AES256GCM.tagBytes else { return false }
        let ok = AES256GCM.withNonce(counter) { nonce in
            tandem_aes256gcm_open_message(
                context, nonce, bytes(associatedData), Int32(associatedData.count), bytes(ciphertext),
                Int32(ciphertext.count), bytes(tag), output.assumingMemoryBound(to: UInt8.self))
        }
        return ok == 1
    }

    /// The 96-bit nonce of message `counter`: four zero bytes, then the counter big-endian.
    private static func withNonce<R>(_ counter: UInt64, _ body: (UnsafePointer<UInt8>) -> R) -> R {
        // Three 32-bit words lie contiguous in a homogeneous tuple: exactly the 12 nonce bytes.
        var nonce: (UInt32, UInt32, UInt32) = (
            0, UInt32(truncatingIfNeeded: counter >> 32).bigEndian, UInt32(truncatingIfNeeded: counter).bigEndian
        )
        return withUnsafeBytes(of: &nonce) { body($0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
    }

    /// Encrypts (seal) or decrypts (open) `input` into `output`, which must hold `input.count` bytes. The two may be
    /// the same memory (in place) but must not otherwise overlap.
    public func update(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) throws(AEADError) {
        var offset = 0
        // EVP takes an int length: large inputs go in pieces (GCM is a stream mode, so pieces change nothing).
        while offset < input.count {
            let length = min(input.count - offset, 1 << 30)
            let ok = tandem_aes256gcm_update(
                context, input.baseAddress!.advanced(by: offset).assumingMemoryBound(to: UInt8.self),
                output.advanced(by: offset).assumingMemoryBound(to: UInt8.self), Int32(length))
            guard ok == 1 else { throw .cipherFailed }
            offset += length
        }
    }

    /// Ends a sealed message and writes its tag (`tagBytes`) at `tag`.
    public func finishSeal(tagInto tag: UnsafeMutableRawPointer) throws(AEADError) {
        precondition(direction == .seal, "finishSeal on an opening context")
        guard tandem_aes256gcm_finish_seal(context, tag.assumingMemoryBound(to: UInt8.self)) == 1 else {
            throw .cipherFailed
        }
    }

    /// Ends an opened message: true only when `tag` authenticates the nonce, the associated data and every byte
    /// given to `update`. On false the output of `update` is garbage and must be discarded unread.
    public func finishOpen(tag: UnsafeRawBufferPointer) -> Bool {
        precondition(direction == .open, "finishOpen on a sealing context")
        guard tag.count == AES256GCM.tagBytes, let base = tag.baseAddress else { return false }
        return tandem_aes256gcm_finish_open(context, base.assumingMemoryBound(to: UInt8.self)) == 1
    }
}

private func bytes(_ buffer: UnsafeRawBufferPointer) -> UnsafePointer<UInt8>? {
    buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
}
