// libFuzzer target: a sequence of frames fed to the peer-link handshake, as the dialer or the acceptor, with no
// authentication, a cluster secret or TLS. Traps when the handshake traps, or when it
//   - establishes a peer that is not a configured one (or, dialling, not the one dialled), or not the peer its
//     accepted hello named;
//   - establishes a peer in secret mode on anything but a proof frame equal to the HMAC this file computes itself
//     from the secret, both nonces, the peer's role and its id (so a mutated or reflected proof is never taken);
//   - answers with a proof other than that HMAC for this node, or answers at all outside secret mode;
//   - does not refuse a proof that differs from the honest one (see "stand-ins" below).
//
// Input: byte 0 = role (bit 0: 0 dialer of n2, 1 acceptor), authentication (bits 1-2, modulo 3: none, secret,
// TLS) and stand-ins (bit 3); then frames, each [type u8][length u16 LE][payload], the last one cut at the end.
// With stand-ins on, a hello frame with a 1-byte payload stands for an honest hello from n1 (ourselves), n2, n3 or
// the stranger n4 (the byte modulo 4), and a proof frame with a 2-byte payload [position, mask] stands for the
// honest proof of the peer of the last hello, with its byte `position % 32` XORed with `mask`: the handshake must
// establish that peer exactly when `mask` is 0. The fuzzer cannot find an HMAC by mutation; the stand-ins take it
// to the proof check on every input that asks for them.
//
// Entry points of the handshake used: Handshake.init(selfID:incarnation:auth:role:knownPeers:nonce:),
// helloPayload(), onFrame(type:payload:), isEstablished, Handshake.proofLabel, Handshake.nonceBytes, PeerProtocol's
// magic, version and frame types, and Crypto.hmacSHA256(key:message:) for the oracle.
import Glibc
import TandemConsensus
import TandemNet

private let selfID = NodeID("n1")
private let knownPeers: Set<NodeID> = [NodeID("n2"), NodeID("n3")]
private let dialled = NodeID("n2")
private let secret = Array("fuzz-cluster-secret".utf8)
/// This side's nonce, fixed so that seeds can carry honest proofs (Fuzz/make-seeds.py computes them too).
private let ourNonce = (0..<UInt8(Handshake.nonceBytes)).map { 0xA0 &+ $0 }
/// The nonce of the stand-in hellos.
private let standInNonce = (0..<UInt8(Handshake.nonceBytes)).map { 0x40 &+ $0 }
private let standInIDs = ["n1", "n2", "n3", "n4"]
/// TANDEM_HANDSHAKE_FUZZ_TRACE set: print each action (to check a seed does what its name says).
private let trace = getenv("TANDEM_HANDSHAKE_FUZZ_TRACE") != nil

/// A hello as this file reads it, independently of `Handshake.onHello`.
private struct Hello: Equatable {
    var incarnation: UInt64
    var nonce: [UInt8]
    var id: String
}

/// The version a hello carries in each mode: 2 with a cluster secret (sealed frames), 1 otherwise.
private func version(mode: UInt8) -> UInt16 { mode == 1 ? 2 : 1 }

/// The hello layout: magic, version u16, mode u8, incarnation u64, nonce, id (u16 length + UTF-8), nothing after.
private func helloPayload(id: String, incarnation: UInt64, mode: UInt8, nonce: [UInt8]) -> [UInt8] {
    var bytes = PeerProtocol.magic
    bytes += [UInt8(truncatingIfNeeded: version(mode: mode)), UInt8(truncatingIfNeeded: version(mode: mode) >> 8)]
    bytes.append(mode)
    bytes += (0..<8).map { UInt8(truncatingIfNeeded: incarnation >> (8 * $0)) }
    bytes += nonce
    let utf8 = Array(id.utf8)
    bytes += [UInt8(truncatingIfNeeded: utf8.count), UInt8(truncatingIfNeeded: utf8.count >> 8)] + utf8
    return bytes
}

private func parseHello(_ bytes: [UInt8], mode: UInt8) -> Hello? {
    let nonceAt = 15
    let idAt = nonceAt + Handshake.nonceBytes + 2
    guard bytes.count >= idAt, Array(bytes[0..<4]) == PeerProtocol.magic,
        UInt16(bytes[4]) | UInt16(bytes[5]) << 8 == version(mode: mode), bytes[6] == mode
    else { return nil }
    let idBytes = Int(bytes[idAt - 2]) | Int(bytes[idAt - 1]) << 8
    guard bytes.count == idAt + idBytes, let id = String(validating: bytes[idAt...], as: UTF8.self) else {
        return nil
    }
    let incarnation = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[7 + $1]) << (8 * $1) }
    return Hello(incarnation: incarnation, nonce: Array(bytes[nonceAt..<(nonceAt + Handshake.nonceBytes)]), id: id)
}

/// HMAC-SHA256(secret, label | dialer nonce | acceptor nonce | sender is acceptor | sender id as u16 + UTF-8 |
/// sender incarnation as u64).
private func honestProof(
    sender: String, incarnation: UInt64, senderIsAcceptor: Bool, dialerNonce: [UInt8], acceptorNonce: [UInt8]
) -> [UInt8] {
    let id = Array(sender.utf8)
    let message =
        Handshake.proofLabel + dialerNonce + acceptorNonce + [senderIsAcceptor ? 1 : 0]
        + [UInt8(truncatingIfNeeded: id.count), UInt8(truncatingIfNeeded: id.count >> 8)] + id
        + (0..<8).map { UInt8(truncatingIfNeeded: incarnation >> (8 * $0)) }
    do {
        return try Crypto.hmacSHA256(key: secret, message: message)
    } catch {
        preconditionFailure("HMAC-SHA256 failed: \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let weAccept = input[0] & 1 == 1
    let auth: HandshakeAuth = [.none, .secret(secret), .tls][Int(input[0] >> 1 & 3) % 3]
    let standIns = input[0] & 8 != 0
    let mode: UInt8 = auth == .none ? 0 : auth == .tls ? 2 : 1
    var handshake = Handshake(
        selfID: selfID, incarnation: 7, auth: auth, role: weAccept ? .acceptor : .dialer(expected: dialled),
        knownPeers: knownPeers, nonce: ourNonce)
    precondition(parseHello(handshake.helloPayload(), mode: mode) == Hello(incarnation: 7, nonce: ourNonce, id: "n1"))

    var accepted: Hello?  // The hello the handshake answered with a proof.
    var lastHello: Hello?  // The last well-formed hello fed, for the proof stand-in.
    var offset = 1
    while offset < input.count {
        let type = input[offset]
        let length = offset + 3 <= input.count ? Int(input[offset + 1]) | Int(input[offset + 2]) << 8 : 0
        let start = min(input.count, offset + 3)
        let end = min(input.count, start + length)
        offset = end
        var payload = Array(input[start..<end])
        var expectProof: Bool?  // Set when this frame is a proof stand-in: whether it is the honest one.
        if standIns, type == PeerProtocol.helloFrameType, payload.count == 1 {
            let id = standInIDs[Int(payload[0]) % standInIDs.count]
            payload = helloPayload(id: id, incarnation: UInt64(payload[0]), mode: mode, nonce: standInNonce)
        } else if standIns, type == PeerProtocol.proofFrameType, payload.count == 2, let hello = lastHello {
            let (position, mask) = (Int(payload[0]), payload[1])
            payload = honestProof(
                sender: hello.id, incarnation: hello.incarnation, senderIsAcceptor: !weAccept, dialerNonce: weAccept ? hello.nonce : ourNonce,
                acceptorNonce: weAccept ? ourNonce : hello.nonce)
            payload[position % payload.count] ^= mask
            expectProof = mask == 0
        }
        if type == PeerProtocol.helloFrameType, let hello = parseHello(payload, mode: mode) { lastHello = hello }

        let action = payload.withUnsafeBytes { handshake.onFrame(type: type, payload: $0) }
        if trace { print("frame \(type) of \(payload.count) bytes: \(action)") }
        switch action {
        case .wait:
            precondition(!handshake.isEstablished, "waiting once established")
        case .send(let sentType, let proof):
            precondition(auth == .secret(secret) && accepted == nil, "a proof outside secret mode, or a second one")
            precondition(type == PeerProtocol.helloFrameType && sentType == PeerProtocol.proofFrameType)
            guard let hello = parseHello(payload, mode: mode) else { preconditionFailure("answered a bad hello") }
            precondition(
                proof
                    == honestProof(
                        sender: selfID.rawValue, incarnation: 7, senderIsAcceptor: weAccept,
                        dialerNonce: weAccept ? hello.nonce : ourNonce, acceptorNonce: weAccept ? ourNonce : hello.nonce
                    ),
                "this node's proof is not the HMAC of the protocol")
            accepted = hello
        case .established(let peer):
            precondition(handshake.isEstablished, "reported established but is not")
            precondition(knownPeers.contains(peer.id), "established \(peer.id), not a configured peer")
            precondition(weAccept || peer.id == dialled, "dialled \(dialled) but established \(peer.id)")
            precondition(expectProof != false, "established on a mutated proof")
            let hello: Hello?
            if auth == .secret(secret) {
                precondition(type == PeerProtocol.proofFrameType, "established in secret mode without a proof")
                guard let accepted else { preconditionFailure("established on a proof with no hello answered") }
                hello = accepted
                let expected = honestProof(
                    sender: accepted.id, incarnation: accepted.incarnation, senderIsAcceptor: !weAccept,
                    dialerNonce: weAccept ? accepted.nonce : ourNonce,
                    acceptorNonce: weAccept ? ourNonce : accepted.nonce)
                precondition(payload == expected, "established on a proof that is not the peer's HMAC")
            } else {
                precondition(type == PeerProtocol.helloFrameType, "established without a hello")
                hello = parseHello(payload, mode: mode)
            }
            precondition(
                hello.map { $0.id == peer.id.rawValue && $0.incarnation == peer.incarnation } == true,
                "established a peer other than the one its hello named")
            return 0  // The link takes over: the handshake must see no further frame.
        case .refuse:
            precondition(!handshake.isEstablished, "refused once established")
            precondition(expectProof != true || accepted == nil, "refused the honest proof")
            return 0  // The link closes.
        }
        precondition(expectProof == nil || accepted == nil, "a proof stand-in neither established nor refused")
    }
    return 0
}
