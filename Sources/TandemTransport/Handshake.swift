// The hello and authentication exchange that opens every peer link, as a value-type state machine.
//
// Both sides send a hello at once: magic, protocol version, authentication mode, the sender's node id, its
// incarnation (random per transport instance, so a restarted peer is recognised) and a fresh 32-byte nonce.
// With a cluster secret, each side then sends proof = HMAC-SHA256(secret, label | dialer nonce | acceptor nonce |
// sender role | sender id | sender incarnation) and checks the other's proof in constant time. A recorded proof is
// useless on a later connection because the other side's nonce is fresh, a proof cannot be reflected back because
// it binds the sender's role and id, and a hello whose incarnation was altered on the way fails its proof. Every
// frame after the proofs is sealed under keys derived from the secret and both nonces (SealedFrames.swift). With
// TLS or no authentication the hello alone completes the handshake (the transport checks the certificate names the
// claimed node).
//
// A dialer that does not know whom it dials (`LinkRole.strangerDialer`, a node joining through any member's address)
// accepts any well-formed claimed id. That weakens nothing: the expected id never entered the proofs, which bind the
// sender's role, id and incarnation to both nonces, so the id the link is filed under is still the one the other
// side proved with the secret (or its certificate names), and the dialer's own proof is the same as for any dial.
// An acceptor that admits strangers likewise accepts an unconfigured id; the transport decides what such a link
// becomes.

import TandemConsensus
import TandemNet

/// Which side of a link this is.
public enum LinkRole: Equatable, Sendable {
    /// We dialled and expect this peer to answer.
    case dialer(expected: NodeID)
    /// We accepted; the peer names itself in its hello.
    case acceptor
    /// We dialled an address without knowing which node answers: any well-formed id but our own is accepted.
    case strangerDialer
}

/// The authentication a handshake performs. The secret is held as UTF-8 bytes.
public enum HandshakeAuth: Equatable, Sendable {
    case none
    case secret([UInt8])
    case tls

    var wireCode: UInt8 {
        switch self {
        case .none: return 0
        case .secret: return 1
        case .tls: return 2
        }
    }

    static func name(ofWireCode code: UInt8) -> String {
        switch code {
        case 0: return "no authentication"
        case 1: return "a cluster secret"
        case 2: return "mutual TLS"
        default: return "unknown mode \(code)"
        }
    }
}

/// Who the peer proved to be.
public struct PeerIdentity: Equatable, Sendable {
    public var id: NodeID
    /// Random per transport instance: a different value on a new link means the peer restarted.
    public var incarnation: UInt64
}

/// What the link must do after a handshake frame.
public enum HandshakeAction: Equatable, Sendable {
    /// Nothing yet; wait for the next frame.
    case wait
    /// Send this frame (type, payload) and wait for the peer's proof.
    case send(type: UInt8, payload: [UInt8])
    /// The peer is authenticated; send `reply` first when present.
    case established(PeerIdentity)
    /// Refuse the peer: tell it `reason` and close.
    case refuse(LinkFailure)
}

/// The handshake of one link. Feed it every frame received before it reports `.established`.
public struct Handshake {
    public static let nonceBytes = 32
    static let proofLabel = Array("tandem-peer-auth-v2".utf8)
    /// The longest node id a stranger may claim, in UTF-8 bytes (configured ids are matched exactly instead).
    public static let maxStrangerIDBytes = 255

    enum State: Equatable {
        case awaitingHello
        // Invariant: the peer's nonce is nonceBytes long and its id passed `checkClaim`.
        case awaitingProof(peer: PeerIdentity, peerNonce: [UInt8])
        case established(PeerIdentity)
        case failed
    }

    let selfID: NodeID
    let incarnation: UInt64
    let auth: HandshakeAuth
    let role: LinkRole
    let knownPeers: Set<NodeID>
    /// An acceptor that admits strangers takes any well-formed id but its own, not only `knownPeers`.
    let admitsStrangers: Bool
    // Invariant: nonce.count == nonceBytes.
    let nonce: [UInt8]
    private(set) var state: State = .awaitingHello
    /// The peer's nonce, once its hello arrived: with ours, what a cluster-secret link derives its frame keys from.
    public private(set) var peerNonce: [UInt8]?

    public init(
        selfID: NodeID, incarnation: UInt64, auth: HandshakeAuth, role: LinkRole, knownPeers: Set<NodeID>,
        nonce: [UInt8], admitsStrangers: Bool = false
    ) {
        precondition(nonce.count == Handshake.nonceBytes, "a handshake nonce is \(Handshake.nonceBytes) bytes")
        precondition(!knownPeers.contains(selfID), "a node is not its own peer")
        self.selfID = selfID
        self.incarnation = incarnation
        self.auth = auth
        self.role = role
        self.knownPeers = knownPeers
        self.admitsStrangers = admitsStrangers
        self.nonce = nonce
    }

    public var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    /// The hello payload this side sends first.
    public func helloPayload() -> [UInt8] {
        var writer = ByteWriter(reservingCapacity: 64 + selfID.rawValue.utf8.count)
        writer.raw(PeerProtocol.magic)
        writer.u16(PeerProtocol.version(for: auth))
        writer.u8(auth.wireCode)
        writer.u64(incarnation)
        writer.raw(nonce)
        writer.string(selfID.rawValue)
        return writer.bytes
    }

    /// Advances on one frame received during the handshake.
    public mutating func onFrame(type: UInt8, payload: UnsafeRawBufferPointer) -> HandshakeAction {
        let action: HandshakeAction
        switch (state, type) {
        case (_, PeerProtocol.refusalFrameType):
            let reason = String(decoding: payload.prefix(512), as: UTF8.self)
            action = .refuse(.refusedByPeer(reason))
        case (.awaitingHello, PeerProtocol.helloFrameType):
            action = onHello(payload)
        case (.awaitingProof(let peer, let peerNonce), PeerProtocol.proofFrameType):
            action = onProof(payload, peer: peer, peerNonce: peerNonce)
        case (.awaitingHello, _), (.awaitingProof, _):
            action = .refuse(
                type == PeerProtocol.helloFrameType ? .malformedHandshake("second hello") : .unexpectedFrame(type: type)
            )
        case (.established, _), (.failed, _):
            preconditionFailure("the handshake got a frame after it ended")
        }
        if case .refuse = action { state = .failed }
        return action
    }

    private mutating func onHello(_ payload: UnsafeRawBufferPointer) -> HandshakeAction {
        var reader = ByteReader(payload)
        do throws(DecodeError) {
            guard payload.count >= 6, try reader.raw(4) == PeerProtocol.magic else { return .refuse(.badMagic) }
            let version = try reader.u16()
            let mode = try reader.u8()
            // The mode first: the version follows from it (PeerProtocol.version(for:)), and a mode mismatch is
            // the more useful thing to tell an operator.
            guard mode == auth.wireCode else {
                return .refuse(
                    .authModeMismatch(
                        peerMode: HandshakeAuth.name(ofWireCode: mode),
                        ourMode: HandshakeAuth.name(ofWireCode: auth.wireCode)))
            }
            guard version == PeerProtocol.version(for: auth) else {
                return .refuse(.versionMismatch(peerVersion: version, ourVersion: PeerProtocol.version(for: auth)))
            }
            let peerIncarnation = try reader.u64()
            let peerNonce = try reader.raw(Handshake.nonceBytes)
            let claimed = try reader.string("node id")
            try reader.expectEnd()
            if let refusal = checkClaim(claimed) { return .refuse(refusal) }
            let peer = PeerIdentity(id: NodeID(claimed), incarnation: peerIncarnation)
            guard case .secret = auth else {
                state = .established(peer)
                return .established(peer)
            }
            state = .awaitingProof(peer: peer, peerNonce: peerNonce)
            self.peerNonce = peerNonce
            return .send(
                type: PeerProtocol.proofFrameType,
                payload: proof(by: selfID, incarnation: incarnation, role: role, peerNonce: peerNonce))
        } catch {
            return .refuse(.malformedHandshake("hello: \(error)"))
        }
    }

    private func checkClaim(_ claimed: String) -> LinkFailure? {
        switch role {
        case .dialer(let expected):
            return claimed == expected.rawValue ? nil : .unexpectedPeer(expected: expected, claimed: claimed)
        case .acceptor:
            if knownPeers.contains(NodeID(claimed)) { return nil }
            return admitsStrangers && Handshake.isWellFormedStrangerID(claimed, selfID: selfID)
                ? nil : .unknownPeer(claimed: claimed)
        case .strangerDialer:
            return Handshake.isWellFormedStrangerID(claimed, selfID: selfID) ? nil : .unknownPeer(claimed: claimed)
        }
    }

    /// An id a stranger may claim: not empty, not ours, at most `maxStrangerIDBytes`, no control characters (it
    /// ends up in log lines and status pages).
    static func isWellFormedStrangerID(_ claimed: String, selfID: NodeID) -> Bool {
        !claimed.isEmpty && claimed != selfID.rawValue && claimed.utf8.count <= maxStrangerIDBytes
            && !claimed.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    private mutating func onProof(
        _ payload: UnsafeRawBufferPointer, peer: PeerIdentity, peerNonce: [UInt8]
    ) -> HandshakeAction {
        let peerRole: LinkRole = role == .acceptor ? .dialer(expected: selfID) : .acceptor
        let expected = proof(by: peer.id, incarnation: peer.incarnation, role: peerRole, peerNonce: peerNonce)
        guard Crypto.constantTimeEqual(expected, [UInt8](payload)) else {
            return .refuse(.badProof(claimed: peer.id.rawValue))
        }
        state = .established(peer)
        return .established(peer)
    }

    /// The proof that `sender` (of `incarnation`), playing `role`, knows the secret, on this link's pair of nonces.
    /// `peerNonce` is the nonce of the side that is not this handshake's owner.
    func proof(by sender: NodeID, incarnation: UInt64, role senderRole: LinkRole, peerNonce: [UInt8]) -> [UInt8] {
        guard case .secret(let key) = auth else { preconditionFailure("proofs exist only with a cluster secret") }
        let (dialerNonce, acceptorNonce) = role == .acceptor ? (peerNonce, nonce) : (nonce, peerNonce)
        var message = ByteWriter(reservingCapacity: 128)
        message.raw(Handshake.proofLabel)
        message.raw(dialerNonce)
        message.raw(acceptorNonce)
        message.u8(senderRole == .acceptor ? 1 : 0)
        message.string(sender.rawValue)
        message.u64(incarnation)
        do {
            return try Crypto.hmacSHA256(key: key, message: message.bytes)
        } catch {
            // HMAC over memory cannot fail short of OpenSSL being broken; carrying on without proofs is not an option.
            preconditionFailure("HMAC-SHA256 failed: \(error)")
        }
    }
}
