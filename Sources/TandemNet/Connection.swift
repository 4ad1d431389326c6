import CLibevent
import Glibc

/// Why a connection ended.
public enum CloseReason: Sendable, Equatable, CustomStringConvertible {
    /// The peer closed its side (EOF).
    case peerClosed
    /// A socket error (errno), including a refused or failed connect.
    case socketError(Int32)
    /// The name of an outbound connection could not be resolved.
    case resolutionFailed(String)
    /// This side closed it.
    case closedLocally

    public var description: String {
        switch self {
        case .peerClosed: return "peer closed"
        case .socketError(let code): return String(cString: strerror(code))
        case .resolutionFailed(let reason): return "cannot resolve: \(reason)"
        case .closedLocally: return "closed locally"
        }
    }
}

/// Callbacks of a connection, all on the loop thread. A connection holds its delegate strongly until it closes,
/// then drops it, so a session object may be owned by its connection alone.
public protocol ConnectionDelegate: AnyObject {
    /// An outbound connection is established.
    func connectionDidConnect(_ connection: Connection)
    /// New input is available (see `consumeInput`).
    func connectionHasInput(_ connection: Connection)
    /// The output buffer drained to the write low-water mark (0 unless set): room to write more.
    func connectionDidDrainOutput(_ connection: Connection)
    /// The connection is gone. Called at most once, never after `close()` was called by this side.
    func connectionDidClose(_ connection: Connection, reason: CloseReason)
}

extension ConnectionDelegate {
    public func connectionDidConnect(_ connection: Connection) {}
    public func connectionDidDrainOutput(_ connection: Connection) {}
}

/// A TCP connection over a libevent bufferevent: buffered, non-blocking, with watermarks for backpressure.
///
/// Ownership rule: a connection retains itself while its bufferevent lives, and releases itself when it closes,
/// so nothing else needs to keep it alive while it is open.
///
/// Writes on a plain TCP connection are staged and sent at the end of the loop turn's callbacks (see
/// `EventLoop.scheduleFlush`): everything one turn wrote leaves in one `send`, and when the socket takes it all,
/// straight from the staging buffer without arming a write event. A proxy that let the bufferevent write each
/// response paid two `epoll_ctl` calls per response (arm the write event, then disarm it once the buffer drained)
/// and a loop turn between them. Only what the socket does not take is handed to the bufferevent, which writes
/// it when the socket is writable, as before. TLS connections write through their bufferevent directly.
///
/// A plain TCP connection also reads its socket itself, with one `recv` from its own read event: libevent's read
/// asks the kernel how much is waiting (`ioctl(FIONREAD)`) before every `readv`, one system call more per read,
/// and walks its bufferevent machinery around it. The bufferevent then only writes, connects and reports write
/// errors. TLS connections read through their bufferevent.
///
/// What a plain TCP connection receives and stages lives in two `ByteQueue`s of its own rather than in evbuffers:
/// an evbuffer allocates a chain for each message and frees it once drained, four allocations and four frees per
/// proxied request and response; a queue keeps its storage between messages.
public final class Connection {
    private var bev: OpaquePointer?
    /// The socket of a plain TCP connection (set once it is connected), which it reads with `readEvent`.
    private var fd: Int32 = -1
    /// The read event of a plain TCP connection (`EV_READ | EV_PERSIST` on `fd`), made once `fd` is known; nil for
    /// TLS connections, which read through their bufferevent. `isReadArmed` mirrors whether it is added.
    private var readEvent: OpaquePointer?
    private var isReadArmed = false
    /// What the delegate asked for: reading on (`enableReading`) or off (`disableReading`, `closeAfterFlush`).
    private var wantsReading = false
    /// Reads stop at this many buffered input bytes and resume below it (0: no bound).
    private var readHighWatermark = 0
    /// The peer's EOF or a read error was met: the socket is not read again.
    private var readSideEnded = false
    /// Set by `enableReading()` for the read event's callback, which it activates: input buffered while reading
    /// was paused, or a peer event held then, still to be reported.
    private var pendingInputReport = false
    private var pendingPeerEvent: (events: Int16, errno: Int32)?
    /// The loop that flushes staged writes; nil for connections that write through the bufferevent directly.
    /// Unowned without a reference count: a bufferevent cannot outlive the event base of its loop anyway.
    private unowned(unsafe) let flushLoop: EventLoop?
    /// A plain TCP connection: it reads its socket into `input` and stages its writes in `staging` itself (see
    /// the type's comment); false for TLS connections, whose bufferevent does both.
    private let isPlain: Bool
    /// Bytes written during this loop turn, not yet offered to the socket. Invariant: empty unless a flush is
    /// scheduled or the connection is closed; always ahead of nothing (the bufferevent's output is sent first).
    private var staging = ByteQueue()
    /// What a plain TCP connection received and the delegate has not consumed yet.
    private var input = ByteQueue()
    /// The last `recv` filled all the room it was given: more was probably waiting, so the next one asks for
    /// `readChunkBytes` of room. A connection of small requests and answers keeps a small input; a stream grows it.
    private var lastReceiveFilledItsRoom = false
    private var isFlushScheduled = false
    /// True once the socket is connected (accepted sockets at once, outbound ones at `BEV_EVENT_CONNECTED`): only
    /// then may staged bytes go to the socket without the bufferevent.
    private var isEstablished = false
    /// The write low-water mark as last set, so a direct write reports a drain as libevent's write callback would.
    private var writeLowWatermark = 0
    private(set) var priority = EventPriority.normal
    private var retainedSelf: Unmanaged<Connection>?
    public var delegate: ConnectionDelegate?
    /// The peer's IP address as text ("127.0.0.1", "::1"), or the target host of an outbound connection.
    public let peerAddress: String
    /// True while `consumeInput` runs: closing then must wait, because the chunks point into the input buffer.
    private var isConsumingInput = false
    private var closeRequested = false
    private var closeWhenFlushed = false
    /// Set by `pauseReading()`: the read event stays armed (no `epoll_ctl`) and nothing is reported until
    /// `enableReading()`. Bytes that arrive meanwhile are read into the input buffer and reading is then really
    /// disabled; an EOF or a read error that arrives meanwhile is held in `heldPeerEvent` and reported after
    /// reading resumes, so the delegate sees what it would have seen had reading been disabled.
    private var isReadingPaused = false
    private var heldPeerEvent: (events: Int16, errno: Int32)?
    private var inputArrivedWhilePaused = false
    /// The errno of a held read error, for the report of it that `enableReading()` triggered.
    private var heldReportErrno: Int32?

    private static let onRead: bufferevent_data_cb = { _, context in
        guard let context else { return }
        Unmanaged<Connection>.fromOpaque(context).takeUnretainedValue().readable()
    }

    private static let onWrite: bufferevent_data_cb = { _, context in
        guard let context else { return }
        Unmanaged<Connection>.fromOpaque(context).takeUnretainedValue().bufferEventDrained()
    }

    private static let onEvent: bufferevent_event_cb = { _, events, context in
        guard let context else { return }
        Unmanaged<Connection>.fromOpaque(context).takeUnretainedValue().event(events)
    }

    private static let onSocketReadable: event_callback_fn = { _, _, context in
        guard let context else { return }
        Unmanaged<Connection>.fromOpaque(context).takeUnretainedValue().socketReadable()
    }

    /// The most one read callback takes from the socket (libevent took at most 4096).
    private static let readChunkBytes = 16 * 1024
    /// A read asks for at least this much room in the input (moving what waits to the front, or growing it).
    private static let readMinimumRoom = 2048

    /// Wraps an accepted socket. Reading starts disabled; call `enableReading()` once a delegate is set.
    init?(loop: EventLoop, acceptedFD fd: Int32, peerAddress: String, priority: EventPriority) {
        self.peerAddress = peerAddress
        self.flushLoop = loop
        self.isPlain = true
        guard let bev = bufferevent_socket_new(loop.base, fd, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue))
        else {
            return nil
        }
        setNoDelay(fd)
        isEstablished = true
        adopt(bev, priority: priority)
        makeReadEvent(fd: fd, base: loop.base)
    }

    /// Adopts a bufferevent made elsewhere in TandemNet (TLS connections): writes go through it directly.
    init(bev: OpaquePointer, peerAddress: String, priority: EventPriority) {
        self.peerAddress = peerAddress
        self.flushLoop = nil
        self.isPlain = false
        adopt(bev, priority: priority)
    }

    /// An outbound plain TCP connection, not yet connected: writes are staged (see the type's comment).
    private init(loop: EventLoop, connectingBev bev: OpaquePointer, peerAddress: String, priority: EventPriority) {
        self.peerAddress = peerAddress
        self.flushLoop = loop
        self.isPlain = true
        adopt(bev, priority: priority)
    }

    /// Creates the read event of a plain TCP connection on its connected socket, armed if reading is wanted.
    private func makeReadEvent(fd: Int32, base: OpaquePointer) {
        precondition(isPlain && readEvent == nil && fd >= 0, "a read event is made once, for plain TCP")
        self.fd = fd
        readEvent = event_new(
            base, fd, Int16(EV_READ | EV_PERSIST), Connection.onSocketReadable,
            Unmanaged.passUnretained(self).toOpaque())
        precondition(readEvent != nil, "event_new failed: out of memory")
        event_priority_set(readEvent, priority.rawValue)
        updateReadInterest()
    }

    /// Adds or removes the read event so that it is armed exactly when the socket should be read: reading is
    /// wanted, the input is under its high-water mark, the read side has not ended, and no input or peer event
    /// waits in a pause.
    private func updateReadInterest() {
        guard let readEvent else { return }
        let full = readHighWatermark > 0 && inputCount >= readHighWatermark
        let heldInPause = isReadingPaused && (inputArrivedWhilePaused || heldPeerEvent != nil)
        let wanted = wantsReading && !full && !readSideEnded && !heldInPause && !closeRequested
        guard wanted != isReadArmed else { return }
        isReadArmed = wanted
        if wanted { event_add(readEvent, nil) } else { event_del(readEvent) }
    }
    private func adopt(_ bev: OpaquePointer, priority: EventPriority) {
        self.bev = bev
        self.priority = priority
        retainedSelf = Unmanaged.passRetained(self)
        bufferevent_setcb(bev, Connection.onRead, Connection.onWrite, Connection.onEvent, retainedSelf!.toOpaque())
        bufferevent_priority_set(bev, priority.rawValue)
        bufferevent_disable(bev, Int16(EV_READ))
        bufferevent_enable(bev, Int16(EV_WRITE))
    }

    /// Starts an outbound connection; `host` may be a DNS name, resolved now (asynchronously, never blocking the
    /// loop). The delegate hears `connectionDidConnect` or `connectionDidClose`. Writes made before the connection
    /// is established are buffered and sent once it is.
    public static func connect(
        loop: EventLoop, host: String, port: UInt16, priority: EventPriority = .normal, delegate: ConnectionDelegate
    ) -> Connection? {
        guard let bev = bufferevent_socket_new(loop.base, -1, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue)) else {
            return nil
        }
        let connection = Connection(loop: loop, connectingBev: bev, peerAddress: host, priority: priority)
        connection.delegate = delegate
        let bareHost = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let result = bufferevent_socket_connect_hostname(bev, loop.dns, AF_UNSPEC, bareHost, Int32(port))
        if result != 0 {
            // libevent reports refused connects through the event callback later; a synchronous failure here
            // means the socket could not even be created, which the caller treats like a refused connect.
            connection.close()
            return nil
        }
        return connection
    }

    public var isOpen: Bool { bev != nil && !closeRequested }

    // MARK: reading

    public func enableReading() {
        guard let bev else { return }
        if isPlain {
            enableOwnReading()
            return
        }
        isReadingPaused = false
        if let held = heldPeerEvent {
            // Reported from the loop, not from inside this call: the caller is in the middle of its own work.
            heldPeerEvent = nil
            heldReportErrno = held.errno
            bufferevent_trigger_event(bev, held.events, Int32(BEV_OPT_DEFER_CALLBACKS.rawValue))
            return
        }
        bufferevent_enable(bev, Int16(EV_READ))
        if inputArrivedWhilePaused {
            // The bytes are already buffered: the socket will not report them again.
            inputArrivedWhilePaused = false
            bufferevent_trigger(bev, Int16(EV_READ), Int32(BEV_OPT_DEFER_CALLBACKS.rawValue))
        }
    }

    /// `enableReading()` of a plain TCP connection: what a pause held is reported from the read event's callback
    /// (activated, so from the loop, not from inside this call), like the deferred triggers of the bufferevent.
    private func enableOwnReading() {
        wantsReading = true
        isReadingPaused = false
        if let held = heldPeerEvent {
            heldPeerEvent = nil
            pendingPeerEvent = held
        } else if inputArrivedWhilePaused {
            inputArrivedWhilePaused = false
            pendingInputReport = true
        }
        updateReadInterest()
        if let readEvent, pendingPeerEvent != nil || pendingInputReport {
            event_active(readEvent, Int32(EV_READ), 0)
        }
    }

    /// Like `disableReading()` for the delegate (no input, EOF or read error is reported until
    /// `enableReading()`), but cheaper when the peer sends nothing meanwhile, as a client waiting for its answer
    /// does: the read event is left armed instead of being removed from epoll and added again.
    public func pauseReading() {
        guard bev != nil else { return }
        isReadingPaused = true
    }

    /// Stops reading the socket: the kernel buffers fill and TCP pushes back on the sender.
    public func disableReading() {
        guard let bev else { return }
        if isPlain {
            wantsReading = false
            updateReadInterest()
        } else {
            bufferevent_disable(bev, Int16(EV_READ))
        }
    }

    /// Above this many buffered input bytes the socket is not read (TCP backpressure). 0 = no limit.
    public func setReadHighWatermark(bytes: Int) {
        guard let bev else { return }
        if isPlain {
            readHighWatermark = bytes
            updateReadInterest()
        } else {
            bufferevent_setwatermark(bev, Int16(EV_READ), 0, bytes)
        }
    }

    /// `connectionDidDrainOutput` fires when the output buffer falls to this many bytes.
    public func setWriteLowWatermark(bytes: Int) {
        writeLowWatermark = bytes
        if let bev { bufferevent_setwatermark(bev, Int16(EV_WRITE), bytes, 0) }
    }

    /// How many chunks of the input one `evbuffer_peek` reports.
    private static let peekVectorCount = 16

    public var inputCount: Int {
        guard let bev else { return 0 }
        return isPlain ? input.count : evbuffer_get_length(bufferevent_get_input(bev))
    }

    /// Offers the buffered input to `body` chunk by chunk, in order, without copying. `body` returns how many bytes
    /// of the chunk it consumed; returning less than the chunk's size stops the walk. The consumed bytes are then
    /// drained. Returns the total consumed. The chunks are valid only during the call.
    @discardableResult
    public func consumeInput(_ body: (UnsafeRawBufferPointer) -> Int) -> Int {
        guard let bev, !isConsumingInput else { return 0 }
        isConsumingInput = true
        var total = 0
        if isPlain {
            // One contiguous chunk: the delegate sees everything received in one call.
            if !input.isEmpty {
                let chunk = input.readable
                total = body(chunk)
                precondition(total >= 0 && total <= chunk.count, "consumeInput body consumed outside its chunk")
                if !closeRequested { input.consume(total) }
            }
        } else {
            total = consumeBufferedInput(bufferevent_get_input(bev), body)
        }
        isConsumingInput = false
        if closeRequested {
            finishClose()
        } else if total > 0 && readHighWatermark > 0 {
            updateReadInterest()
        }
        return total
    }

    /// `consumeInput` over a bufferevent's input (TLS connections): chunk by chunk as `evbuffer_peek` finds them.
    private func consumeBufferedInput(_ input: OpaquePointer?, _ body: (UnsafeRawBufferPointer) -> Int) -> Int {
        var total = 0
        // On the stack: an array here cost a heap allocation (and a generic metadata lookup) on every read.
        withUnsafeTemporaryAllocation(of: iovec.self, capacity: Self.peekVectorCount) { vectors in
            guard let base = vectors.baseAddress else { return }
            walk: while !closeRequested {
                let count = Int(evbuffer_peek(input, -1, nil, base, Int32(Self.peekVectorCount)))
                if count == 0 { break }
                var consumedNow = 0
                var stopped = false
                for index in 0..<min(count, Self.peekVectorCount) {
                    let chunk = UnsafeRawBufferPointer(start: base[index].iov_base, count: base[index].iov_len)
                    let used = body(chunk)
                    precondition(used >= 0 && used <= chunk.count, "consumeInput body consumed outside its chunk")
                    consumedNow += used
                    if used < chunk.count || closeRequested {
                        stopped = true
                        break
                    }
                }
                evbuffer_drain(input, consumedNow)
                total += consumedNow
                // More chunks than vectors means another round; otherwise everything buffered was offered.
                if stopped || count <= Self.peekVectorCount { break walk }
            }
        }
        return total
    }

    // MARK: writing

    /// Bytes written and not yet taken by the socket (staged ones included).
    public var outputCount: Int {
        guard let bev else { return 0 }
        return evbuffer_get_length(bufferevent_get_output(bev)) + staging.count
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard let bev, !closeRequested, let base = bytes.baseAddress, bytes.count > 0 else { return }
        guard isPlain else {
            evbuffer_add(bufferevent_get_output(bev), base, bytes.count)
            return
        }
        staging.append(bytes)
        scheduleFlush()
    }

    private func scheduleFlush() {
        guard !isFlushScheduled, let flushLoop else { return }
        isFlushScheduled = true
        flushLoop.scheduleFlush(self)
    }

    /// Offers the staged bytes to the socket (called by the loop after the turn's callbacks). When the
    /// bufferevent still holds earlier output, or the socket does not take everything, the rest goes to the
    /// bufferevent, which arms its write event and reports the drain as usual. A write error is left for the
    /// bufferevent to meet again and report through the delegate, so errors have one path.
    func flushStaged() {
        isFlushScheduled = false
        guard let bev, isPlain, !closeRequested, !staging.isEmpty else { return }
        let output = bufferevent_get_output(bev)
        if isEstablished && evbuffer_get_length(output) == 0 {
            let pending = staging.readable
            // `send` skips the file layer `write` goes through.
            let sent = Glibc.send(fd, pending.baseAddress, pending.count, Int32(Glibc.MSG_NOSIGNAL))
            if sent > 0 { staging.consume(sent) }
            if staging.isEmpty {
                // Everything left: what libevent's write callback would report (the output is at 0, which is at
                // or below any low-water mark).
                drained()
                return
            }
        }
        let rest = staging.readable
        evbuffer_add(output, rest.baseAddress, rest.count)
        staging.removeAll()
    }

    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    public func write(_ text: String) {
        var text = text
        text.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    /// Moves up to `maxBytes` of this connection's input to `other`'s output (between two TLS connections
    /// without copying: libevent relinks its buffer chains; otherwise a copy). Used by tunnels. Moves nothing and
    /// returns 0 while this connection's input is being handed to a consumer (`consumeInput`), whose view of the
    /// bytes must not change under it, or when `other` is closing.
    @discardableResult
    public func moveInput(to other: Connection, maxBytes: Int = Int.max) -> Int {
        guard let bev, let otherBev = other.bev, !other.closeRequested, !isConsumingInput else { return 0 }
        let moved: Int
        if isPlain {
            moved = min(input.count, maxBytes)
            guard moved > 0 else { return 0 }
            other.write(UnsafeRawBufferPointer(rebasing: input.readable.prefix(moved)))
            input.consume(moved)
        } else {
            let bufferedInput = bufferevent_get_input(bev)
            let amount = min(evbuffer_get_length(bufferedInput), maxBytes)
            guard amount > 0 else { return 0 }
            if other.isPlain {
                let space = other.staging.reserve(atLeast: amount)
                moved = Int(evbuffer_remove(bufferedInput, space.baseAddress, amount))
                if moved > 0 {
                    other.staging.commit(moved)
                    other.scheduleFlush()
                }
            } else {
                moved = Int(evbuffer_remove_buffer(bufferedInput, bufferevent_get_output(otherBev), amount))
            }
        }
        if moved > 0 && readHighWatermark > 0 { updateReadInterest() }
        return moved
    }

    // MARK: closing

    /// Closes now; buffered output is discarded. The delegate is not called back.
    public func close() {
        guard bev != nil, !closeRequested else { return }
        closeRequested = true
        if !isConsumingInput { finishClose() }
    }

    /// Stops reading and closes once the buffered output has been written.
    public func closeAfterFlush() {
        guard let bev, !closeRequested else { return }
        bufferevent_disable(bev, Int16(EV_READ))
        wantsReading = false
        updateReadInterest()
        if outputCount == 0 {
            close()
        } else {
            closeWhenFlushed = true
            bufferevent_setwatermark(bev, Int16(EV_WRITE), 0, 0)
        }
    }

    private func finishClose() {
        guard let bev else { return }
        if let readEvent {
            // Before the bufferevent closes the socket: an event must not outlive its descriptor in epoll.
            event_free(readEvent)
            self.readEvent = nil
            isReadArmed = false
        }
        staging.removeAll()
        input.removeAll()
        bufferevent_free(bev)
        self.bev = nil
        delegate = nil
        let retained = retainedSelf
        retainedSelf = nil
        retained?.release()
    }

    private func fail(_ reason: CloseReason) {
        guard bev != nil, !closeRequested else { return }
        let delegate = self.delegate
        closeRequested = true
        if !isConsumingInput { finishClose() }
        delegate?.connectionDidClose(self, reason: reason)
    }

    // MARK: libevent callbacks

    /// The read event of a plain TCP connection: the socket is readable, or `enableOwnReading()` activated it to
    /// report what a pause held. Reads once (at most `readChunkBytes`, less near the high-water mark) straight
    /// into the input buffer, then reports as the bufferevent would: input, or the peer's EOF or error as a
    /// read-side event (held while reading is paused).
    private func socketReadable() {
        guard let bev, !closeRequested else { return }
        if let peerEvent = pendingPeerEvent {
            pendingPeerEvent = nil
            heldReportErrno = peerEvent.errno
            event(peerEvent.events)
            return
        }
        var received = 0
        var ended: (events: Int16, errno: Int32)?
        if isReadArmed { (received, ended) = receive() }
        if ended != nil { readSideEnded = true }
        let reportInput = received > 0 || pendingInputReport
        pendingInputReport = false
        if isReadingPaused {
            if received > 0 { inputArrivedWhilePaused = true }
            if let ended { heldPeerEvent = ended }
            updateReadInterest()
            return
        }
        updateReadInterest()
        if let ended {
            // `event` lets the delegate see the unread input before the close.
            heldReportErrno = ended.errno
            event(ended.events)
        } else if reportInput {
            delegate?.connectionHasInput(self)
        }
    }

    /// One `recv` into `input`, at most `readChunkBytes` and never past the high-water mark: the bytes taken, or
    /// the read-side event the socket ended with (EOF, or an error other than "nothing to read").
    private func receive() -> (received: Int, ended: (events: Int16, errno: Int32)?) {
        var room = Self.readChunkBytes
        if readHighWatermark > 0 { room = min(room, readHighWatermark - input.count) }
        guard room > 0 else { return (0, nil) }
        let space = input.reserve(
            atLeast: min(room, lastReceiveFilledItsRoom ? Self.readChunkBytes : Self.readMinimumRoom))
        let wanted = min(room, space.count)
        let count = recv(fd, space.baseAddress, wanted, 0)
        if count > 0 {
            input.commit(count)
            lastReceiveFilledItsRoom = count == wanted
            return (count, nil)
        }
        if count == 0 { return (0, (tandem_bev_event_eof() | tandem_bev_event_reading(), 0)) }
        let code = errno
        if code == EAGAIN || code == EWOULDBLOCK || code == EINTR { return (0, nil) }
        return (0, (tandem_bev_event_error() | tandem_bev_event_reading(), code))
    }

    private func readable() {
        guard !closeRequested else { return }
        if isReadingPaused {
            inputArrivedWhilePaused = true
            if let bev { bufferevent_disable(bev, Int16(EV_READ)) }
            return
        }
        delegate?.connectionHasInput(self)
    }

    /// libevent's write callback: the bufferevent's output is at or below the low-water mark. It also runs when
    /// that output was empty all along (on connecting, or on a stale write event), while staged bytes wait for
    /// the turn's flush: the connection has not drained then, and reporting it would close a connection that
    /// `closeAfterFlush()` marked before its bytes left. The flush reports the drain itself (see
    /// `flushStaged()`), or hands the bytes to the bufferevent, whose callback then reports it.
    private func bufferEventDrained() {
        if isPlain && !staging.isEmpty { return }
        drained()
    }

    private func drained() {
        guard !closeRequested else { return }
        if closeWhenFlushed {
            close()
            return
        }
        delegate?.connectionDidDrainOutput(self)
    }

    private func event(_ events: Int16) {
        guard let bev, !closeRequested else { return }
        let readSide = events & (tandem_bev_event_eof() | tandem_bev_event_error()) != 0
        if isReadingPaused && readSide && events & tandem_bev_event_reading() != 0 {
            // libevent stopped reading on its own; hold the event until reading resumes.
            heldPeerEvent = (events, errno)
            return
        }
        let heldErrno = heldReportErrno
        heldReportErrno = nil
        if events & tandem_bev_event_connected() != 0 {
            let fd = bufferevent_getfd(bev)
            if fd >= 0 {
                setNoDelay(fd)
                if isPlain, readEvent == nil { makeReadEvent(fd: fd, base: bufferevent_get_base(bev)) }
            }
            isEstablished = true
            delegate?.connectionDidConnect(self)
            return
        }
        if events & tandem_bev_event_error() != 0 {
            let dnsError = bufferevent_socket_get_dns_error(bev)
            if dnsError != 0 {
                fail(.resolutionFailed(String(cString: evutil_gai_strerror(dnsError))))
            } else {
                let code = heldErrno ?? errno
                fail(.socketError(code == 0 ? ECONNRESET : code))
            }
            return
        }
        if events & tandem_bev_event_eof() != 0 {
            // Unread input may still hold a complete message: let the delegate see it first.
            if inputCount > 0 { delegate?.connectionHasInput(self) }
            fail(.peerClosed)
        }
    }
}

/// Disables Nagle's algorithm: Tandem writes whole messages and wants them sent at once.
func setNoDelay(_ fd: Int32) {
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
}
