// Mutual TLS for peer links, over libevent's OpenSSL bufferevents.
//
// This file owns the OpenSSL context (certificate, key, trusted CA, TLS 1.2 minimum, peer certificate required) and
// makes TLS connections and a TLS listener that hand out ordinary `Connection`s, so the layers above read and write
// plaintext exactly as on TCP. It must never decide who a peer is: it verifies the certificate chain and answers
// "does the peer certificate name X?", and the transport decides what X must be.
//
// Threading: like everything in TandemNet, a TLSConnection and a TLSListener are used only on their loop's thread.
// A TLSContext is immutable after init and may be shared by the connections of one loop.

import CLibevent
import CLibeventOpenSSL
import Glibc

/// Why a TLS context could not be built. Operating errors: bad paths, unreadable or mismatched files.
public struct TLSError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What failed, naming the file, with OpenSSL's own reason appended.
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// OpenSSL's pending errors as one line (and clears them), for log lines.
private func drainOpenSSLErrors() -> String {
    var reasons: [String] = []
    // The error queue is bounded by OpenSSL (16 entries); the loop bound only guards against surprises.
    for _ in 0..<16 {
        let code = ERR_get_error()
        if code == 0 { break }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        reasons.append(stringFromCBuffer(buffer))
    }
    return reasons.isEmpty ? "no OpenSSL reason" : reasons.joined(separator: "; ")
}

/// The text of a NUL-terminated C buffer (invalid UTF-8 repaired: it only goes to log lines).
private func stringFromCBuffer(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A TLS configuration for mutual authentication: this node's certificate chain and key, and the CA that every
/// peer certificate must chain to. Both directions require a peer certificate; TLS 1.2 is the oldest version.
public final class TLSContext {
    let context: OpaquePointer

    /// Loads the PEM files. `certificatePath` may hold a chain (leaf first). Throws naming the file that failed.
    public init(certificatePath: String, privateKeyPath: String, trustedCAPath: String) throws(TLSError) {
        guard let context = SSL_CTX_new(TLS_method()) else {
            throw TLSError("cannot create a TLS context: \(drainOpenSSLErrors())")
        }
        self.context = context
        guard tandem_ssl_ctx_set_min_tls12(context) == 1 else {
            throw TLSError("cannot require TLS 1.2: \(drainOpenSSLErrors())")
        }
        guard SSL_CTX_use_certificate_chain_file(context, certificatePath) == 1 else {
            throw TLSError("cannot load TLS certificate \(certificatePath): \(drainOpenSSLErrors())")
        }
        guard SSL_CTX_use_PrivateKey_file(context, privateKeyPath, tandem_ssl_filetype_pem()) == 1 else {
            throw TLSError("cannot load TLS private key \(privateKeyPath): \(drainOpenSSLErrors())")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw TLSError("TLS private key \(privateKeyPath) does not match certificate \(certificatePath)")
        }
        guard SSL_CTX_load_verify_locations(context, trustedCAPath, nil) == 1 else {
            throw TLSError("cannot load TLS CA \(trustedCAPath): \(drainOpenSSLErrors())")
        }
        tandem_ssl_ctx_require_peer_certificate(context)
    }

    deinit { SSL_CTX_free(context) }

    /// Starts an outbound TLS connection; `host` may be a DNS name, resolved now without blocking the loop.
    /// The delegate hears `connectionDidConnect` once the TLS handshake has completed and the peer certificate
    /// verified, or `connectionDidClose`. Writes made before that are buffered and sent after the handshake.
    public func connect(
        loop: EventLoop, host: String, port: UInt16, priority: EventPriority = .normal, delegate: ConnectionDelegate
    ) -> TLSConnection? {
        guard let ssl = SSL_new(context) else { return nil }
        let bareHost = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        _ = tandem_ssl_set_tlsext_host_name(ssl, bareHost)
        let options = Int32(BEV_OPT_CLOSE_ON_FREE.rawValue)
        // The bufferevent takes one reference to the SSL object and frees it with itself.
        guard let bev = bufferevent_openssl_socket_new(loop.base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, options) else {
            SSL_free(ssl)
            return nil
        }
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1)
        let connection = Connection(bev: bev, peerAddress: host, priority: priority)
        let tls = TLSConnection(connection: connection, ssl: ssl)
        connection.delegate = delegate
        if bufferevent_socket_connect_hostname(bev, loop.dns, AF_UNSPEC, bareHost, Int32(port)) != 0 {
            connection.close()
            return nil
        }
        return tls
    }

    /// Wraps a freshly accepted socket in a server-side TLS bufferevent. Returns nil (closing the socket) when
    /// OpenSSL cannot allocate.
    func accept(loop: EventLoop, fd: Int32, peerAddress: String, priority: EventPriority) -> TLSConnection? {
        guard let ssl = SSL_new(context) else {
            Glibc.close(fd)
            return nil
        }
        let options = Int32(BEV_OPT_CLOSE_ON_FREE.rawValue)
        guard let bev = bufferevent_openssl_socket_new(loop.base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, options) else {
            SSL_free(ssl)
            Glibc.close(fd)
            return nil
        }
        setNoDelay(fd)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1)
        let connection = Connection(bev: bev, peerAddress: peerAddress, priority: priority)
        return TLSConnection(connection: connection, ssl: ssl)
    }
}

/// A `Connection` carried over TLS, with questions about the peer's certificate.
///
/// Ownership: it keeps its own reference to the OpenSSL session, so its answers stay valid after the connection
/// closed (that is when `handshakeFailureDescription` is most useful). The `Connection` is owned as usual (it
/// retains itself while open); this object only keeps it reachable.
public final class TLSConnection {
    /// The plaintext connection: read and write it as any other.
    public let connection: Connection
    // Invariant: one reference to `ssl` is ours (taken in init, dropped in deinit), separate from the bufferevent's.
    private let ssl: OpaquePointer

    init(connection: Connection, ssl: OpaquePointer) {
        self.connection = connection
        self.ssl = ssl
        let referenced = SSL_up_ref(ssl)
        precondition(referenced == 1, "SSL_up_ref cannot fail on a live SSL object")
    }

    deinit { SSL_free(ssl) }

    /// True once the TLS handshake has completed (the peer certificate chain was verified against the CA).
    public var isHandshakeComplete: Bool { SSL_is_init_finished(ssl) == 1 }

    /// True when the verified peer certificate names `name` in a DNS subjectAltName (or, without DNS SANs, its
    /// common name), or, for an IP address literal, in an IP subjectAltName. False before the handshake completed.
    public func peerCertificateNames(_ name: String) -> Bool {
        guard isHandshakeComplete, !name.isEmpty else { return false }
        return name.withCString { tandem_ssl_peer_certificate_matches(ssl, $0, strlen($0)) == 1 }
    }

    /// The peer certificate's subject ("/CN=n2"), for log lines; nil without a certificate.
    public var peerSubject: String? {
        var buffer = [CChar](repeating: 0, count: 512)
        guard tandem_ssl_peer_subject(ssl, &buffer, Int32(buffer.count)) == 1 else { return nil }
        return stringFromCBuffer(buffer)
    }

    /// After a close: why the TLS handshake failed, or nil when it did not fail in TLS (it completed, or the peer
    /// never sent a TLS byte, as with a refused dial or a peer that went away before answering).
    public var handshakeFailureDescription: String? {
        if isHandshakeComplete { return nil }
        let verifyResult = SSL_get_verify_result(ssl)
        if verifyResult != tandem_x509_v_ok() {
            return "peer certificate rejected: \(String(cString: X509_verify_cert_error_string(verifyResult)))"
        }
        if tandem_ssl_peer_sent_bytes(ssl) == 1 {
            return "TLS handshake failed (the peer may have rejected this node's certificate)"
        }
        return nil
    }
}

/// Receives accepted TLS connections, on the loop thread.
public protocol TLSListenerDelegate: AnyObject {
    /// A socket was accepted and its TLS handshake started. Set the connection's delegate and enable reading before
    /// returning; `connectionDidConnect` is not called for accepted connections.
    func tlsListener(_ listener: TLSListener, accepted connection: TLSConnection)
}

/// A TCP listening socket whose accepted connections speak TLS (server side, peer certificate required).
public final class TLSListener {
    private var listener: OpaquePointer?
    private unowned let loop: EventLoop
    private let context: TLSContext
    private let priority: EventPriority
    public weak var delegate: TLSListenerDelegate?
    /// The bound port (the chosen one when 0 was asked for).
    public private(set) var port: UInt16 = 0

    private static let onAccept: evconnlistener_cb = { _, fd, address, _, context in
        guard let context else { return }
        let listener = Unmanaged<TLSListener>.fromOpaque(context).takeUnretainedValue()
        listener.accepted(fd: fd, address: address)
    }

    private static let onError: evconnlistener_errorcb = { _, context in
        // EMFILE and friends: pause briefly so a descriptor shortage does not spin the loop (as Listener does).
        guard let context else { return }
        Unmanaged<TLSListener>.fromOpaque(context).takeUnretainedValue().pauseAfterAcceptError()
    }

    private var resumeTimer: Timer?

    public init(
        loop: EventLoop, host: String, port: UInt16, context: TLSContext, priority: EventPriority = .normal,
        backlog: Int32 = 128
    ) throws(NetError) {
        self.loop = loop
        self.context = context
        self.priority = priority
        (listener, self.port) = try bindListener(
            loop: loop, host: host, port: port, backlog: backlog, onAccept: TLSListener.onAccept,
            onError: TLSListener.onError, context: Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { close() }

    /// Stops accepting and closes the listening socket. Accepted connections are not affected.
    public func close() {
        resumeTimer?.invalidate()
        resumeTimer = nil
        if let listener { evconnlistener_free(listener) }
        listener = nil
    }

    private func pauseAfterAcceptError() {
        guard let listener else { return }
        evconnlistener_disable(listener)
        if resumeTimer == nil {
            resumeTimer = Timer(loop: loop, priority: .control) { [weak self] in
                if let listener = self?.listener { evconnlistener_enable(listener) }
            }
        }
        resumeTimer?.schedule(afterMs: 100)
    }

    private func accepted(fd: Int32, address: UnsafeMutablePointer<sockaddr>?) {
        let peer = address.map { SocketAddress.describe($0) } ?? "unknown"
        guard let connection = context.accept(loop: loop, fd: fd, peerAddress: peer, priority: priority) else { return }
        if let delegate {
            delegate.tlsListener(self, accepted: connection)
        } else {
            connection.connection.close()
        }
    }
}
