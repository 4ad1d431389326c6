// The few cryptographic primitives the peer transport needs, as Swift API over OpenSSL's libcrypto, so that no
// C type leaves TandemNet. This file must never implement a primitive itself: it only calls OpenSSL.

import CLibeventOpenSSL

/// Errors of the cryptographic primitives. Operating errors (the system's random source failed), not bugs.
public enum CryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    case randomSourceFailed
    case hmacFailed

    public var description: String {
        switch self {
        case .randomSourceFailed: return "the system random source (OpenSSL RAND_bytes) failed"
        case .hmacFailed: return "OpenSSL could not compute HMAC-SHA256"
        }
    }
}

/// HMAC-SHA256, secure random bytes and constant-time comparison. Thread-safe (OpenSSL 3 needs no locking setup).
public enum Crypto {
    /// The size of an HMAC-SHA256 tag in bytes.
    public static let hmacSHA256Bytes = 32

    /// Computes HMAC-SHA256 of `message` under `key`; always returns `hmacSHA256Bytes` bytes.
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) throws(CryptoError) -> [UInt8] {
        var tag = [UInt8](repeating: 0, count: hmacSHA256Bytes)
        let ok = key.withUnsafeBytes { keyBytes in
            message.withUnsafeBufferPointer { messageBytes in
                tag.withUnsafeMutableBufferPointer { out in
                    tandem_hmac_sha256(
                        keyBytes.baseAddress, Int32(keyBytes.count), messageBytes.baseAddress, messageBytes.count,
                        out.baseAddress)
                }
            }
        }
        guard ok == 1 else { throw .hmacFailed }
        return tag
    }

    /// Returns `count` bytes from OpenSSL's CSPRNG (seeded by the kernel). Used for handshake nonces.
    public static func secureRandomBytes(count: Int) throws(CryptoError) -> [UInt8] {
        precondition(count >= 0 && count <= 1 << 20, "random byte requests are small and non-negative")
        var bytes = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return bytes }
        let ok = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32($0.count)) }
        guard ok == 1 else { throw .randomSourceFailed }
        return bytes
    }

    /// Compares two byte strings in time that depends only on their lengths, never on where they first differ,
    /// so that a proof check leaks nothing about the expected value. Different lengths compare unequal.
    public static func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        if lhs.isEmpty { return true }
        return lhs.withUnsafeBytes { left in
            rhs.withUnsafeBytes { right in CRYPTO_memcmp(left.baseAddress, right.baseAddress, left.count) == 0 }
        }
    }
}
