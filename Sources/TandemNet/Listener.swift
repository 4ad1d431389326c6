import CLibevent
import Glibc

/// Receives accepted connections. Called on the loop thread.
public protocol ListenerDelegate: AnyObject {
    /// A new connection was accepted. Set its delegate and enable reading before returning.
    func listener(_ listener: Listener, accepted connection: Connection)
}

/// A TCP listening socket. Port 0 picks a free port; `port` tells which one was chosen.
public final class Listener {
    private var listener: OpaquePointer?
    private unowned let loop: EventLoop
    private let priority: EventPriority
    public weak var delegate: ListenerDelegate?
    /// The address as it was asked for, for log lines.
    public let host: String
    /// The bound port (the chosen one when 0 was asked for).
    public private(set) var port: UInt16 = 0

    private static let onAccept: evconnlistener_cb = { _, fd, address, length, context in
        guard let context else { return }
        let listener = Unmanaged<Listener>.fromOpaque(context).takeUnretainedValue()
        listener.accepted(fd: fd, address: address, length: length)
    }

    private static let onError: evconnlistener_errorcb = { _, context in
        // EMFILE and friends: the listener keeps running; the failed accept is dropped. Back off briefly so a
        // descriptor shortage does not spin the loop.
        guard let context else { return }
        let listener = Unmanaged<Listener>.fromOpaque(context).takeUnretainedValue()
        listener.pauseAfterAcceptError()
    }

    private var resumeTimer: Timer?

    public init(
        loop: EventLoop, host: String, port: UInt16, priority: EventPriority = .normal, backlog: Int32 = 1024
    ) throws(NetError) {
        self.loop = loop
        self.host = host
        self.priority = priority
        (listener, self.port) = try bindListener(
            loop: loop, host: host, port: port, backlog: backlog, onAccept: Listener.onAccept,
            onError: Listener.onError, context: Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { close() }

    /// Stops accepting and closes the listening socket. Accepted connections are not affected.
    public func close() {
        resumeTimer?.invalidate()
        resumeTimer = nil
        if let listener { evconnlistener_free(listener) }
        listener = nil
    }

    /// Stops accepting for a while (at the connection limit); the kernel's backlog holds new arrivals.
    public func pause() {
        if let listener { evconnlistener_disable(listener) }
    }

    public func resume() {
        if let listener { evconnlistener_enable(listener) }
    }

    private func accepted(fd: Int32, address: UnsafeMutablePointer<sockaddr>?, length: Int32) {
        let peer = address.map { SocketAddress.describe($0) } ?? "unknown"
        guard let connection = Connection(loop: loop, acceptedFD: fd, peerAddress: peer, priority: priority) else {
            Glibc.close(fd)
            return
        }
        if let delegate {
            delegate.listener(self, accepted: connection)
        } else {
            connection.close()
        }
    }

    private func pauseAfterAcceptError() {
        pause()
        if resumeTimer == nil {
            resumeTimer = Timer(loop: loop, priority: .control) { [weak self] in self?.resume() }
        }
        resumeTimer?.schedule(afterMs: 100)
    }
}

/// Binds a libevent listener on `host:port` (port 0: a free one) and returns it with the bound port. Shared by
/// `Listener` and `TLSListener`, which differ only in what they do with an accepted socket.
func bindListener(
    loop: EventLoop, host: String, port: UInt16, backlog: Int32, onAccept: evconnlistener_cb,
    onError: evconnlistener_errorcb, context: UnsafeMutableRawPointer
) throws(NetError) -> (OpaquePointer, UInt16) {
    let address = try SocketAddress.resolve(host: host, port: port, passive: true)
    let flags = UInt32(LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC)
    let created = address.withSockAddr { pointer, length in
        evconnlistener_new_bind(loop.base, onAccept, context, flags, backlog, pointer, length)
    }
    guard let created else { throw .bindFailed(address: "\(host):\(port)", errno: errno) }
    evconnlistener_set_error_cb(created, onError)
    return (created, SocketAddress.localPort(of: evconnlistener_get_fd(created)))
}

/// A resolved socket address (IPv4 or IPv6).
struct SocketAddress {
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, Int32) -> R) -> R {
        withUnsafePointer(to: storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, Int32(length)) }
        }
    }

    /// Resolves with getaddrinfo. Used only at bind time (start-up), where blocking is acceptable.
    static func resolve(host: String, port: UInt16, passive: Bool) throws(NetError) -> SocketAddress {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = passive ? AI_PASSIVE : 0
        var result: UnsafeMutablePointer<addrinfo>?
        let bareHost = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let code = getaddrinfo(bareHost.isEmpty ? nil : bareHost, String(port), &hints, &result)
        guard code == 0, let first = result else {
            throw .resolutionFailed(host: host, reason: String(cString: gai_strerror(code)))
        }
        defer { freeaddrinfo(result) }
        var address = SocketAddress()
        address.length = first.pointee.ai_addrlen
        withUnsafeMutableBytes(of: &address.storage) { raw in
            raw.copyMemory(
                from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
        }
        return address
    }

    static func localPort(of fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { return 0 }
        return port(of: storage)
    }

    private static func port(of storage: sockaddr_storage) -> UInt16 {
        var copy = storage
        return withUnsafePointer(to: &copy) { pointer in
            if Int32(storage.ss_family) == AF_INET6 {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    UInt16(bigEndian: $0.pointee.sin6_port)
                }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                UInt16(bigEndian: $0.pointee.sin_port)
            }
        }
    }

    /// The IP address part of a socket address as text (no port): what X-Forwarded-For carries.
    static func describe(_ address: UnsafePointer<sockaddr>) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        if Int32(address.pointee.sa_family) == AF_INET6 {
            return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { in6 in
                var raw = in6.pointee.sin6_addr
                inet_ntop(AF_INET6, &raw, &buffer, socklen_t(buffer.count))
                return String(cString: buffer)
            }
        }
        return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { in4 in
            var raw = in4.pointee.sin_addr
            inet_ntop(AF_INET, &raw, &buffer, socklen_t(buffer.count))
            return String(cString: buffer)
        }
    }
}
