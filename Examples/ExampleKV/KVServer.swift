import CLibevent

#if canImport(Glibc)
    import Glibc
#endif

/// The libevent side of example-kv: one evhttp server on one event loop, feeding requests to `KVStore` in the
/// order they arrive and writing the responses back.
///
/// Ownership: the single `KVServer` lives for the whole process; callbacks reach it through an unretained
/// pointer, which is safe because it is never freed before `exit`. A delayed reply retains itself until its
/// timer fires.
final class KVServer {
    private let base: OpaquePointer
    private let http: OpaquePointer
    private var store = KVStore()
    private let delayMs: Int

    /// Request bodies above this get 413 from evhttp before they reach the store: a whole state for
    /// `PUT /snapshot` (a value above `KVStore.valueMaxBytes` gets 413 from the store).
    static let bodyMaxBytes = KVStore.totalMaxBytes + (64 << 20)
    /// Bound on the request line plus headers of one request.
    static let headersMaxBytes = 64 << 10
    private init(base: OpaquePointer, http: OpaquePointer, delayMs: Int) {
        self.base = base
        self.http = http
        self.delayMs = delayMs
    }

    /// Runs example-kv with `arguments` (without the program name) and returns the exit code.
    static func main(arguments: [String]) -> Int32 {
        switch Options.parse(arguments) {
        case .help:
            writeAll(Options.usage, to: STDOUT_FILENO)
            return 0
        case .invalid(let message):
            writeAll("example-kv: \(message)\n" + Options.usage, to: STDERR_FILENO)
            return 2
        case .run(let options):
            return serve(options)
        }
    }

    private static func serve(_ options: Options) -> Int32 {
        // A client that disconnects mid-response must not kill the process.
        signal(SIGPIPE, SIG_IGN)
        guard let base = makeEventBase(), let http = evhttp_new(base) else {
            writeAll("example-kv: cannot create the event loop\n", to: STDERR_FILENO)
            return 1
        }
        guard let bound = evhttp_bind_socket_with_handle(http, options.host, options.port) else {
            let reason = String(cString: strerror(errno))
            writeAll("example-kv: cannot listen on \(options.host):\(options.port): \(reason)\n", to: STDERR_FILENO)
            return 1
        }
        let port = boundPort(evhttp_bound_socket_get_fd(bound)) ?? options.port
        let server = KVServer(base: base, http: http, delayMs: options.delayMs)
        let context = Unmanaged.passUnretained(server).toOpaque()
        evhttp_set_max_body_size(http, bodyMaxBytes)
        evhttp_set_max_headers_size(http, headersMaxBytes)
        // Connections idle longer than this are closed by evhttp.
        evhttp_set_timeout(http, Int32(options.idleTimeoutSeconds))
        // Let every method through so that the store answers 405 with an Allow header consistently.
        let everyMethod =
            EVHTTP_REQ_GET.rawValue | EVHTTP_REQ_POST.rawValue | EVHTTP_REQ_HEAD.rawValue
            | EVHTTP_REQ_PUT.rawValue | EVHTTP_REQ_DELETE.rawValue | EVHTTP_REQ_OPTIONS.rawValue
            | EVHTTP_REQ_TRACE.rawValue | EVHTTP_REQ_PATCH.rawValue
        evhttp_set_allowed_methods(http, UInt16(everyMethod))
        evhttp_set_gencb(http, KVServer.onRequest, context)
        for signalNumber in [SIGTERM, SIGINT] {
            let event = tandem_evsignal_new(base, signalNumber, KVServer.onStopSignal, context)
            event_add(event, nil)
        }
        let shownHost = options.host.contains(":") ? "[\(options.host)]" : options.host
        writeAll("example-kv listening on \(shownHost):\(port)\n", to: STDOUT_FILENO)
        event_base_dispatch(base)
        // Leaving the loop is only ever asked for by SIGTERM or SIGINT: a clean stop.
        return 0
    }

    /// An event base that batches epoll changes: evhttp flips read and write interest on every request, and the
    /// changelist turns those flips into at most one epoll_ctl per socket per loop turn.
    private static func makeEventBase() -> OpaquePointer? {
        guard let config = event_config_new() else { return event_base_new() }
        defer { event_config_free(config) }
        event_config_set_flag(config, Int32(EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST.rawValue))
        return event_base_new_with_config(config) ?? event_base_new()
    }

    /// The port the kernel chose, for `--port 0`.
    private static func boundPort(_ fd: Int32) -> UInt16? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { return nil }
        let family = Int32(storage.ss_family)
        return withUnsafePointer(to: &storage) { pointer in
            switch family {
            case AF_INET:
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    UInt16(bigEndian: $0.pointee.sin_port)
                }
            case AF_INET6:
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    UInt16(bigEndian: $0.pointee.sin6_port)
                }
            default:
                return nil
            }
        }
    }

    /// Writes all of `text`, retrying short writes, so the first line reaches a reading test unbuffered.
    static func writeAll(_ text: String, to fd: Int32) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            bytes = bytes.dropFirst(written)
        }
    }

    // MARK: Callbacks (non-capturing, reached from C).

    static let onRequest: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void = { request, context in
        guard let request, let context else { return }
        Unmanaged<KVServer>.fromOpaque(context).takeUnretainedValue().handle(request)
    }

    static let onStopSignal: @convention(c) (Int32, Int16, UnsafeMutableRawPointer?) -> Void = { _, _, context in
        guard let context else { return }
        event_base_loopbreak(Unmanaged<KVServer>.fromOpaque(context).takeUnretainedValue().base)
    }

    static let onDelayElapsed: @convention(c) (Int32, Int16, UnsafeMutableRawPointer?) -> Void = { _, _, context in
        guard let context else { return }
        let reply = Unmanaged<DelayedReply>.fromOpaque(context).takeRetainedValue()
        KVServer.send(reply.response, to: reply.request)
    }

    // MARK: Request handling.

    /// Applies the request to the store at once (so the order of state changes is the arrival order, whatever
    /// the delay), then replies now or after `delayMs`.
    private func handle(_ request: OpaquePointer) {
        let response = store.handle(
            method: KVServer.method(of: request), route: KVServer.route(of: request), body: KVServer.body(of: request))
        guard delayMs > 0 else {
            KVServer.send(response, to: request)
            return
        }
        // evhttp keeps the request alive until we reply, even if the client goes away meanwhile.
        let reply = Unmanaged.passRetained(DelayedReply(request: request, response: response))
        var delay = timeval(tv_sec: delayMs / 1000, tv_usec: (delayMs % 1000) * 1000)
        if event_base_once(base, -1, Int16(EV_TIMEOUT), KVServer.onDelayElapsed, reply.toOpaque(), &delay) != 0 {
            reply.release()
            KVServer.send(response, to: request)
        }
    }

    private static func method(of request: OpaquePointer) -> KVMethod {
        switch evhttp_request_get_command(request) {
        case EVHTTP_REQ_GET: return .get
        case EVHTTP_REQ_HEAD: return .head
        case EVHTTP_REQ_PUT: return .put
        case EVHTTP_REQ_POST: return .post
        case EVHTTP_REQ_DELETE: return .delete
        default: return .other
        }
    }

    private static func route(of request: OpaquePointer) -> KVRoute {
        guard let uri = evhttp_request_get_evhttp_uri(request), let path = evhttp_uri_get_path(uri) else {
            return .badPath
        }
        let length = strlen(path)
        return path.withMemoryRebound(to: UInt8.self, capacity: length) {
            KVRoute(path: UnsafeBufferPointer(start: $0, count: length))
        }
    }

    private static func body(of request: OpaquePointer) -> [UInt8] {
        guard let input = evhttp_request_get_input_buffer(request) else { return [] }
        let length = evbuffer_get_length(input)
        guard length > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: length) { buffer, initialized in
            let copied = evbuffer_copyout(input, buffer.baseAddress, length)
            initialized = max(0, copied)
        }
    }

    private static func send(_ response: KVResponse, to request: OpaquePointer) {
        let headers = evhttp_request_get_output_headers(request)
        let contentType = response.contentType == .json ? "application/json" : "application/octet-stream"
        evhttp_add_header(headers, "Content-Type", contentType)
        if let allow = response.allow { evhttp_add_header(headers, "Allow", allow) }
        if let output = evhttp_request_get_output_buffer(request), !response.body.isEmpty {
            response.body.withUnsafeBytes { _ = evbuffer_add(output, $0.baseAddress, $0.count) }
        }
        evhttp_send_reply(request, response.status, response.reason, nil)
    }
}

/// A response waiting for its `--delay-ms` timer; retained by the timer's context pointer until it fires.
private final class DelayedReply {
    let request: OpaquePointer
    let response: KVResponse

    init(request: OpaquePointer, response: KVResponse) {
        self.request = request
        self.response = response
    }
}
