// Running the app's hooks (TANDEM_SNAPSHOT_SAVE, TANDEM_SNAPSHOT_RESTORE, TANDEM_STATE_DIGEST) without ever blocking
// the loop thread.
//
// HTTP hooks use a connection of their own to the app, streamed both ways: a saved state goes to the sink chunk by
// chunk as it arrives, a restored one is read from its file by a worker thread and written only as fast as the app
// takes it. Command hooks are `/bin/sh -c COMMAND` children; a worker thread per child moves the bytes of its pipes
// (the loop never reads or writes a pipe, and TandemNet offers no pipe events) and hands them over with a
// `LoopWakeup`, through a bounded queue that makes the worker wait when the loop falls behind.
//
// Children. Each is the leader of a process group of its own, so that a timeout or a cancel kills whatever the shell
// started (`kill(-pid, SIGKILL)`), and so does its end (stragglers in the group go with it). A child is killed only
// before it is reaped: the worker waits for its exit with `WNOWAIT`, which leaves it a zombie holding its pid, and
// only the loop reaps it, after which nothing signals that pid again. So a kill can never hit a recycled pid.
// Children get the default disposition of every signal (Tandem ignores SIGPIPE; a child must not inherit that),
// an empty signal mask, no descriptor of Tandem's but their three pipes, and Tandem's environment without its
// secrets.
//
// Parent death. Linux's parent-death signal (prctl PR_SET_PDEATHSIG) must be set by the child itself between fork
// and exec, which posix_spawn does not allow, and wrapping every hook in a helper binary is not worth its cost. What
// bounds an orphan instead: a save child whose stdout pipe lost its reader dies of SIGPIPE on its next write (it has
// the default disposition); a restore child reading from a pipe sees end of input; a graceful stop calls
// `cancelAll()`, which kills every child; and in a container the runtime kills every process of the container when
// Tandem, its main process, dies. A restore child orphaned by a crash may still finish replacing the app's state,
// which is harmless: the next start restores again before serving.

import Foundation
import Glibc
import Logging
import TandemConfig
import TandemHTTP
import TandemNet

/// Why a hook failed, in a sentence an operator can act on.
public struct AppHookError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The command could not be started.
        case spawnFailed
        /// The command exited with a non-zero code.
        case exitedWithError
        /// The command was killed by a signal it did not get from Tandem.
        case killedBySignal
        /// The hook ran longer than TANDEM_SNAPSHOT_TIMEOUT and was stopped.
        case timedOut
        /// `cancelAll()` stopped it.
        case cancelled
        /// The app answered with a status the hook does not accept.
        case unexpectedStatus
        /// The app could not be reached, or closed the connection early.
        case connectionFailed
        /// The app's answer is not valid HTTP.
        case malformedResponse
        /// The sink refused the bytes.
        case sinkFailed
        /// The state to restore could not be read from its descriptor.
        case sourceFailed
        /// The app or command did not take the whole state.
        case incompleteInput
    }

    public let kind: Kind
    public let description: String

    init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}

/// Runs snapshot and digest hooks against the local app. Loop thread only; every completion runs on the loop
/// thread, exactly once, never from inside the call that started the hook.
final class AppHookRunner {
    private unowned let loop: EventLoop
    private let upstreamHost: String
    private let upstreamPort: UInt16
    private let timeoutMs: Int64
    private let log: Logger
    /// Hooks started and not yet completed. Each removes itself when it completes.
    private var running: [ObjectIdentifier: HookOperation] = [:]

    init(loop: EventLoop, upstreamHost: String, upstreamPort: UInt16, timeoutMs: Int64, log: Logger) {
        precondition(timeoutMs > 0, "a hook timeout is positive")
        self.loop = loop
        self.upstreamHost = upstreamHost
        self.upstreamPort = upstreamPort
        self.timeoutMs = timeoutMs
        self.log = log
    }

    /// A runner that goes away stops its hooks: their children are killed and reaped all the same.
    deinit {
        if !running.isEmpty { cancelAll() }
    }

    /// How many hooks are running (tests, status).
    var runningCount: Int { running.count }

    /// Runs a save hook (or the state-digest hook): the app's state is streamed into `sink` chunk by chunk on the
    /// loop thread (the sink may throw to abort); `completion` gets the byte count or an error. HTTP: a request on
    /// its own connection whose answer must be 200, its body streamed (Content-Length, chunked or until close),
    /// never held whole. exec: `/bin/sh -c COMMAND` whose standard output is the state; a non-zero exit is an error.
    func save(
        _ hook: AppHook, into sink: @escaping (UnsafeRawBufferPointer) throws -> Void,
        completion: @escaping (Result<UInt64, AppHookError>) -> Void
    ) {
        loop.assertOnLoopThread()
        switch hook {
        case .http(let method, let target):
            start(
                HTTPHookExchange(
                    loop: loop, host: upstreamHost, port: upstreamPort, method: method, target: target, body: nil,
                    sink: sink, log: log), timeoutMs: timeoutMs, completion: completion)
        case .exec(let command):
            start(
                CommandHook(loop: loop, command: command, mode: .save(sink), log: log), timeoutMs: timeoutMs,
                completion: completion)
        }
    }

    /// Runs a restore hook with the state read from `descriptor`, positioned at the state's first byte, `length`
    /// bytes long. The runner owns the descriptor from now on and closes it. HTTP: a request with
    /// `Content-Length: length`, its body streamed from the descriptor as fast as the app reads it (never the whole
    /// state in memory); the answer must be 2xx. exec: the command reads exactly `length` bytes on standard input
    /// (through a pipe, so that whatever follows the state in the file never reaches it) and must exit 0 having
    /// read them all.
    func restore(
        _ hook: AppHook, from descriptor: Int32, length: UInt64,
        completion: @escaping (Result<Void, AppHookError>) -> Void
    ) {
        loop.assertOnLoopThread()
        precondition(descriptor >= 0, "a restore reads from an open descriptor")
        let done: (Result<UInt64, AppHookError>) -> Void = { result in completion(result.map { _ in () }) }
        switch hook {
        case .http(let method, let target):
            start(
                HTTPHookExchange(
                    loop: loop, host: upstreamHost, port: upstreamPort, method: method, target: target,
                    body: (descriptor, length), sink: nil, log: log), timeoutMs: timeoutMs, completion: done)
        case .exec(let command):
            start(
                CommandHook(loop: loop, command: command, mode: .restore(descriptor, length), log: log),
                timeoutMs: timeoutMs, completion: done)
        }
    }

    /// Stops every running hook: children are killed, connections closed. Each completion runs with a
    /// `.cancelled` error once its hook has wound down (children reaped).
    func cancelAll() {
        loop.assertOnLoopThread()
        for operation in Array(running.values) {
            operation.stop(AppHookError(.cancelled, "\(operation.label) was cancelled"))
        }
    }

    private func start(
        _ operation: HookOperation, timeoutMs: Int64, completion: @escaping (Result<UInt64, AppHookError>) -> Void
    ) {
        let id = ObjectIdentifier(operation)
        running[id] = operation
        operation.begin(timeoutMs: timeoutMs) { [weak self] result in
            self?.running[id] = nil
            completion(result)
        }
    }
}

// MARK: - the common life of a hook

/// One hook from start to completion. Subclasses move the bytes; this owns the timeout and makes the completion
/// run exactly once, on a later turn of the loop than `begin`.
class HookOperation {
    unowned let loop: EventLoop
    let log: Logger
    private var completion: ((Result<UInt64, AppHookError>) -> Void)?
    private var timer: TandemNet.Timer?
    private var deliveryTimer: TandemNet.Timer?
    private(set) var timeoutMs: Int64 = 0
    /// The first reason the hook was stopped early (timeout, cancel, a refused sink); it wins over what follows.
    private(set) var stopReason: AppHookError?
    /// Held from `begin` to completion: a hook winds down (its child reaped) even when nothing else holds it.
    private var retainedSelf: HookOperation?
    var isCompleted: Bool { completion == nil }

    init(loop: EventLoop, log: Logger) {
        self.loop = loop
        self.log = log
    }

    final func begin(timeoutMs: Int64, completion: @escaping (Result<UInt64, AppHookError>) -> Void) {
        self.timeoutMs = timeoutMs
        self.completion = completion
        retainedSelf = self
        timer = TandemNet.Timer(loop: loop) { [unowned self] in
            self.stop(
                AppHookError(
                    .timedOut, "\(self.label) ran longer than \(Self.describe(ms: self.timeoutMs)) and was stopped"))
        }
        timer?.schedule(afterMs: timeoutMs)
        // Started on a later turn, so that a hook failing at once still completes after its caller returned.
        deliveryTimer = TandemNet.Timer(loop: loop) { [unowned self] in self.run() }
        deliveryTimer?.schedule(afterMs: 0)
    }

    /// Stops the hook early; the completion follows once it has wound down, with `reason` unless it completed.
    final func stop(_ reason: AppHookError) {
        guard !isCompleted, stopReason == nil else { return }
        stopReason = reason
        abort()
    }

    /// Completes with `result`, or with the stop reason when the hook was stopped first.
    final func complete(_ result: Result<UInt64, AppHookError>) {
        guard let completion else { return }
        self.completion = nil
        timer?.invalidate()
        deliveryTimer?.invalidate()
        let final = stopReason.map { Result<UInt64, AppHookError>.failure($0) } ?? result
        if case .failure(let error) = final {
            log.warning("app hook failed", metadata: ["hook": "\(label)", "error": "\(error)"])
        }
        let keep = retainedSelf
        retainedSelf = nil
        withExtendedLifetime(keep) { completion(final) }
    }

    // Overridden by each kind of hook.
    var label: String { preconditionFailure("overridden") }
    func run() { preconditionFailure("overridden") }
    func abort() { preconditionFailure("overridden") }

    static func describe(ms: Int64) -> String {
        if ms % 60_000 == 0 { return "\(ms / 60_000)m" }
        return ms % 1000 == 0 ? "\(ms / 1000)s" : "\(ms)ms"
    }
}

// MARK: - HTTP hooks

/// One request on its own connection to the app: a GET whose 200 body streams to a sink, or a PUT whose body
/// streams from a descriptor.
final class HTTPHookExchange: HookOperation, ConnectionDelegate {
    private let host: String
    private let port: UInt16
    private let method: String
    private let target: String
    private let body: (descriptor: Int32, length: UInt64)?
    private let sink: ((UnsafeRawBufferPointer) throws -> Void)?
    private var connection: Connection?
    private var parser = HTTPResponseParser(limits: .upstreamResponse)
    private var head: HTTPResponseHead?
    private var received: UInt64 = 0
    private var sent: UInt64 = 0
    private var reader: WorkerLink?
    /// Set once the reader thread owns the descriptor (it closes it), or once it was closed here.
    private var readerStarted = false
    /// Above this many bytes waiting in the connection's output, no more of the state is read from the file.
    static let outputHighWaterBytes = 1 << 20
    static let outputLowWaterBytes = 256 << 10

    init(
        loop: EventLoop, host: String, port: UInt16, method: String, target: String,
        body: (descriptor: Int32, length: UInt64)?, sink: ((UnsafeRawBufferPointer) throws -> Void)?, log: Logger
    ) {
        precondition((body == nil) != (sink == nil), "a hook either sends the state or receives it")
        self.host = host
        self.port = port
        self.method = method
        self.target = target
        self.body = body
        self.sink = sink
        super.init(loop: loop, log: log)
    }

    override var label: String { "\(method) \(target)" }

    override func run() {
        guard let connection = Connection.connect(loop: loop, host: host, port: port, delegate: self) else {
            closeDescriptorIfUnread()
            complete(.failure(AppHookError(.connectionFailed, "\(label): cannot create a socket to the app")))
            return
        }
        self.connection = connection
        connection.setReadHighWatermark(bytes: 1 << 20)
        connection.enableReading()
        var headers = HTTPHeaders()
        let bracketed = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host  // An IPv6 literal.
        headers.add(name: "Host", value: port == 80 ? bracketed : "\(bracketed):\(port)")
        headers.add(name: "Connection", value: "close")
        headers.add(name: "User-Agent", value: "tandem")
        if let body {
            headers.add(name: "Content-Type", value: "application/octet-stream")
            headers.add(name: "Content-Length", value: String(body.length))
        }
        parser.expect(requestMethod: method)
        connection.write(HTTPSerializer.requestHead(HTTPRequestHead(method: method, target: target, headers: headers)))
        guard let body else { return }
        connection.setWriteLowWatermark(bytes: Self.outputLowWaterBytes)
        let link = WorkerLink(loop: loop, capacityBytes: Self.outputHighWaterBytes) { [weak self] in self?.pump() }
        reader = link
        readerStarted = true
        link.startWorker(name: "tandem-hook-read") { link in
            WorkerLink.readFile(descriptor: body.descriptor, length: body.length, into: link)
        }
    }

    override func abort() {
        connection?.close()
        connection = nil
        finishReader()
        complete(.failure(AppHookError(.cancelled, "\(label) was stopped")))
    }

    /// The descriptor is ours from `restore` on: closed by the reader thread, or here when it never started.
    /// Never both: once the reader closed it, the number may already belong to another socket or file, which a
    /// second close would take from under its owner (libevent then never hears of that socket again).
    private func closeDescriptorIfUnread() {
        guard let body, !readerStarted else { return }
        readerStarted = true  // Closed once, here.
        close(body.descriptor)
    }

    /// Stops the reader thread, which closes the descriptor; its link closes itself once the thread is done.
    private func finishReader() {
        if reader == nil { closeDescriptorIfUnread() }
        reader?.abandon()
        reader = nil
    }

    /// Moves state bytes from the reader thread to the connection while the connection's output is short.
    private func pump() {
        guard let connection, let reader, !isCompleted else { return }
        while connection.outputCount < Self.outputHighWaterBytes {
            let (chunks, outcome) = reader.take(maxBytes: Self.outputHighWaterBytes - connection.outputCount)
            for chunk in chunks {
                connection.write(chunk)
                sent += UInt64(chunk.count)
            }
            if let outcome {
                reader.close()
                self.reader = nil
                if let error = outcome.error {
                    fail(AppHookError(error.kind, "\(label): \(error.description)"))
                    return
                }
                precondition(sent == body?.length, "the reader thread delivers exactly the state's length")
                return
            }
            if chunks.isEmpty { return }
        }
    }

    private func fail(_ error: AppHookError) {
        connection?.close()
        connection = nil
        finishReader()
        complete(.failure(error))
    }

    private func succeed() {
        connection?.close()
        connection = nil
        finishReader()
        complete(.success(sink == nil ? sent : received))
    }

    // MARK: connection events

    func connectionHasInput(_ connection: Connection) {
        var failure: AppHookError?
        var ended = false
        connection.consumeInput { chunk in
            guard failure == nil, !ended else { return 0 }
            do throws(HTTPParseError) {
                return try parser.parse(chunk) { event in
                    guard failure == nil else { return }
                    switch event {
                    case .head(let responseHead):
                        if responseHead.isInterim { return }
                        head = responseHead
                        failure = check(status: responseHead.status, reason: responseHead.reason)
                    case .body(let bytes):
                        guard let sink else { return }  // A restore's answer body carries nothing we need.
                        do {
                            try sink(bytes)
                            received += UInt64(bytes.count)
                        } catch {
                            failure = AppHookError(.sinkFailed, "\(label): the state could not be stored: \(error)")
                        }
                    case .end:
                        if head != nil { ended = true }
                    }
                }
            } catch {
                failure = AppHookError(.malformedResponse, "\(label): the app's answer is not valid HTTP: \(error)")
                return 0
            }
        }
        if let failure {
            fail(failure)
        } else if ended {
            answered()
        }
    }

    private func check(status: Int, reason: String) -> AppHookError? {
        let accepted = sink != nil ? status == 200 : (200..<300).contains(status)
        guard !accepted else { return nil }
        let wanted = sink != nil ? "200" : "2xx"
        return AppHookError(.unexpectedStatus, "\(label): the app answered \(status) \(reason), not \(wanted)")
    }

    /// The whole answer arrived: a restore also needs the app to have read the whole state first.
    private func answered() {
        if let body, sent < body.length {
            fail(
                AppHookError(
                    .incompleteInput,
                    "\(label): the app answered before receiving the whole state (\(sent) of \(body.length) bytes)"))
            return
        }
        succeed()
    }

    func connectionDidDrainOutput(_ connection: Connection) {
        pump()
    }

    func connectionDidClose(_ connection: Connection, reason: CloseReason) {
        self.connection = nil
        if head != nil, parser.phase == .body {
            var ended = false
            try? parser.finishAtEOF { event in if case .end = event { ended = true } }
            if ended {
                answered()
                return
            }
        }
        let what = head == nil ? "before answering" : "after \(received) bytes of its answer"
        fail(
            AppHookError(
                .connectionFailed, "\(label): the connection to the app at \(host):\(port) ended \(what): \(reason)"))
    }
}

// MARK: - command hooks

/// `/bin/sh -c COMMAND` as a child of its own process group, its pipes served by a worker thread.
final class CommandHook: HookOperation {
    enum Mode {
        /// Standard output is the state, handed to the sink.
        case save((UnsafeRawBufferPointer) throws -> Void)
        /// Standard input receives `length` bytes from the descriptor.
        case restore(Int32, UInt64)
    }

    private let command: String
    private let mode: Mode
    private var pid: pid_t?
    /// True once the child was reaped: its pid may belong to someone else from then on, so it is never signalled.
    private var isReaped = false
    private var link: WorkerLink?
    private var received: UInt64 = 0
    /// Bytes of standard output queued for the loop before the worker waits (the sink runs on the loop).
    static let queueBytes = 1 << 20
    /// What is kept of the command's diagnostics (stderr; for a restore, stdout too) for the log and errors.
    static let outputCaptureBytes = 4096

    init(loop: EventLoop, command: String, mode: Mode, log: Logger) {
        self.command = command
        self.mode = mode
        super.init(loop: loop, log: log)
    }

    override var label: String { "exec:\(command)" }

    override func run() {
        switch mode {
        case .save: runSave()
        case .restore(let source, let length): runRestore(source: source, length: length)
        }
    }

    private func runSave() {
        guard let output = Pipe.make(), let diagnostics = Pipe.make() else {
            complete(.failure(AppHookError(.spawnFailed, "\(label): cannot create pipes: \(Self.errnoText())")))
            return
        }
        let spawned = ChildProcess.spawn(
            command: command, stdin: nil, stdout: output.write, stderr: diagnostics.write)
        close(output.write)
        close(diagnostics.write)
        guard case .success(let pid) = spawned else {
            close(output.read)
            close(diagnostics.read)
            complete(.failure(spawnError(spawned)))
            return
        }
        self.pid = pid
        let link = WorkerLink(loop: loop, capacityBytes: Self.queueBytes) { [weak self] in self?.drain() }
        self.link = link
        link.startWorker(name: "tandem-hook-exec") { link in
            WorkerLink.serveSave(pid: pid, stdout: output.read, stderr: diagnostics.read, link: link)
        }
    }

    private func runRestore(source: Int32, length: UInt64) {
        guard let input = Pipe.make(), let diagnostics = Pipe.make() else {
            close(source)
            complete(.failure(AppHookError(.spawnFailed, "\(label): cannot create pipes: \(Self.errnoText())")))
            return
        }
        let spawned = ChildProcess.spawn(
            command: command, stdin: input.read, stdout: diagnostics.write, stderr: diagnostics.write)
        close(input.read)
        close(diagnostics.write)
        guard case .success(let pid) = spawned else {
            close(input.write)
            close(diagnostics.read)
            close(source)
            complete(.failure(spawnError(spawned)))
            return
        }
        self.pid = pid
        let link = WorkerLink(loop: loop, capacityBytes: Self.queueBytes) { [weak self] in self?.drain() }
        self.link = link
        link.startWorker(name: "tandem-hook-exec") { link in
            WorkerLink.serveRestore(
                pid: pid, source: source, length: length, stdin: input.write, output: diagnostics.read, link: link)
        }
    }

    private func spawnError(_ spawned: Result<pid_t, ChildProcess.SpawnError>) -> AppHookError {
        guard case .failure(let error) = spawned else { preconditionFailure("a spawn failure") }
        return AppHookError(.spawnFailed, "\(label): cannot start /bin/sh: \(String(cString: strerror(error.code)))")
    }

    override func abort() {
        killGroup()
        link?.cancel()
        guard link == nil else { return }  // The worker's end reaps the child and completes.
        if pid == nil, case .restore(let source, _) = mode { close(source) }  // Stopped before it started.
        complete(.failure(AppHookError(.cancelled, "\(label) was stopped")))
    }

    /// SIGKILL to the child's whole process group; only while the child is not reaped (see the file's header).
    private func killGroup() {
        guard let pid, !isReaped else { return }
        kill(-pid, SIGKILL)
    }

    /// Hands standard output to the sink; once the worker is done, reaps the child and completes.
    private func drain() {
        guard let link else { return }
        let (chunks, outcome) = link.take(maxBytes: .max)
        if case .save(let sink) = mode {
            for chunk in chunks where stopReason == nil {
                do {
                    try chunk.withUnsafeBytes { try sink($0) }
                    received += UInt64(chunk.count)
                } catch {
                    stop(AppHookError(.sinkFailed, "\(label): the state could not be stored: \(error)"))
                }
            }
        }
        guard let outcome else { return }
        link.close()
        self.link = nil
        // The child has exited (a zombie until reaped): whatever it left running in its group goes with it.
        killGroup()
        let status = reap()
        complete(result(status: status, outcome: outcome))
    }

    private func reap() -> Int32? {
        guard let pid, !isReaped else { return nil }
        var status: Int32 = 0
        var result: pid_t
        repeat { result = waitpid(pid, &status, 0) } while result < 0 && errno == EINTR
        isReaped = true
        return result == pid ? status : nil
    }

    private func result(status: Int32?, outcome: WorkerOutcome) -> Result<UInt64, AppHookError> {
        let output = outcome.output.isEmpty ? "" : "; its output: \(outcome.output)"
        if let error = outcome.error {
            return .failure(AppHookError(error.kind, "\(label): \(error.description)\(output)"))
        }
        guard let status else {
            return .failure(AppHookError(.exitedWithError, "\(label): its exit status is unknown\(output)"))
        }
        let signal = status & 0x7f
        if signal != 0 {
            return .failure(AppHookError(.killedBySignal, "\(label) was killed by signal \(signal)\(output)"))
        }
        let code = (status >> 8) & 0xff
        if code != 0 {
            return .failure(AppHookError(.exitedWithError, "\(label) exited with code \(code)\(output)"))
        }
        if !outcome.output.isEmpty {
            log.info("app hook output", metadata: ["hook": "\(label)", "output": "\(outcome.output)"])
        }
        switch mode {
        case .save: return .success(received)
        case .restore: return .success(outcome.bytesWritten)
        }
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}

/// A pipe whose two ends are closed on exec (the spawn duplicates the child's end onto 0, 1 or 2, which clears it).
struct Pipe {
    let read: Int32
    let write: Int32

    static func make() -> Pipe? {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return nil }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return Pipe(read: fds[0], write: fds[1])
    }
}

/// posix_spawn of `/bin/sh -c COMMAND` as described in the file's header.
enum ChildProcess {
    struct SpawnError: Error {
        let code: Int32
    }

    /// The environment variables a hook never sees: Tandem's secrets.
    static let withheldVariables: Set<String> = ["TANDEM_CLUSTER_SECRET", "TANDEM_ADMIN_TOKEN"]

    /// Starts the command with the given descriptors as its standard streams (stdin nil: /dev/null).
    static func spawn(command: String, stdin: Int32?, stdout: Int32, stderr: Int32) -> Result<pid_t, SpawnError> {
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawnattr_init(&attributes)
        defer {
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attributes)
        }
        if let stdin {
            posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        closeInheritedDescriptors(&actions)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var everySignal = sigset_t()
        sigfillset(&everySignal)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &everySignal)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var environment: [UnsafeMutablePointer<CChar>?] = []
        var position: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = environ
        while let entry = position.pointee {
            let name = String(cString: entry).split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            if !withheldVariables.contains(name) { environment.append(strdup(entry)) }
            position += 1
        }
        environment.append(nil)
        let arguments: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sh"), strdup("-c"), strdup(command), nil]
        defer {
            for pointer in arguments { free(pointer) }
            for pointer in environment { free(pointer) }
        }
        var pid: pid_t = 0
        let code = posix_spawn(&pid, "/bin/sh", &actions, &attributes, arguments, environment)
        return code == 0 ? .success(pid) : .failure(SpawnError(code: code))
    }

    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc 2.34 has `posix_spawn_file_actions_addclosefrom_np`, which Swift does not import (it is a GNU
    /// extension): found at run time. Without it, every descriptor from 3 up that is open and not close-on-exec
    /// is closed one by one.
    private static let closeFrom: CloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
        else { return nil }
        return unsafeBitCast(symbol, to: CloseFrom.self)
    }()

    private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        if let closeFrom, closeFrom(&actions, 3) == 0 { return }
        guard let directory = opendir("/proc/self/fd") else { return }
        defer { closedir(directory) }
        let own = dirfd(directory)
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let fd = Int32(name), fd >= 3, fd != own, fcntl(fd, F_GETFD) & FD_CLOEXEC == 0 else { continue }
            posix_spawn_file_actions_addclose(&actions, fd)
        }
    }
}

// MARK: - worker threads

/// What a worker thread reports when it is done.
struct WorkerOutcome: Sendable {
    /// Why the bytes did not all move (the child's exit status is judged separately).
    var error: AppHookError?
    /// The start of the command's diagnostics, printable.
    var output: String = ""
    /// Bytes written to the child's standard input.
    var bytesWritten: UInt64 = 0
}

/// Bytes and an end handed from one worker thread to the loop thread, through a queue bounded in bytes: the worker
/// waits while it is full. Created, drained and closed on the loop thread.
final class WorkerLink: @unchecked Sendable {
    // Safety: `chunks`, `queuedBytes`, `cancelled` and `outcome` are shared and guarded by `condition`. `wakeup`
    // and `retainedSelf` are touched on the loop thread only; `cancelRead`/`cancelWrite` are fixed after init (the
    // worker polls the read end, the loop writes the write end), and closed by the loop after the worker is done.
    private let condition = NSCondition()
    private var chunks: [[UInt8]] = []
    private var queuedBytes = 0
    private var cancelled = false
    private var outcome: WorkerOutcome?
    private var outcomeTaken = false
    private let capacityBytes: Int
    private var wakeup: LoopWakeup?
    /// Held from init to `close()`: the link outlives whoever abandons it until the worker is done.
    private var retainedSelf: WorkerLink?
    private var onAbandonedOutcome = false
    let cancelRead: Int32
    private let cancelWrite: Int32

    init(loop: EventLoop, capacityBytes: Int, onReady: @escaping () -> Void) {
        precondition(capacityBytes > 0, "a link queues at least one byte")
        self.capacityBytes = capacityBytes
        let cancelPipe = Pipe.make()
        precondition(cancelPipe != nil, "cannot create a pipe: out of descriptors")
        cancelRead = cancelPipe!.read
        cancelWrite = cancelPipe!.write
        wakeup = LoopWakeup(loop: loop) { [unowned self] in
            if self.onAbandonedOutcome {
                _ = self.take(maxBytes: .max)
                if self.outcomeTaken { self.close() }
            } else {
                onReady()
            }
        }
        retainedSelf = self
    }

    func startWorker(name: String, _ body: @escaping @Sendable (WorkerLink) -> Void) {
        let thread = Thread { [self] in
            // A write to a pipe whose reader is gone must fail with EPIPE here, not kill the process: the signal
            // stays pending on this thread and is discarded when it ends.
            var brokenPipe = sigset_t()
            sigemptyset(&brokenPipe)
            sigaddset(&brokenPipe, SIGPIPE)
            pthread_sigmask(SIG_BLOCK, &brokenPipe, nil)
            body(self)
        }
        thread.name = name
        thread.start()
    }

    // MARK: worker side

    var isCancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelled
    }

    /// Queues a chunk, waiting while the queue is full; false once the loop cancelled (drop everything and end).
    func send(_ chunk: [UInt8]) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while queuedBytes >= capacityBytes && !cancelled { condition.wait() }
        guard !cancelled else { return false }
        chunks.append(chunk)
        queuedBytes += chunk.count
        wakeup?.notify()
        return true
    }

    /// The worker's last act. The wakeup is notified under the lock, so once the loop sees the outcome the worker
    /// is past its last touch of the wakeup and the loop may free it.
    func finish(_ result: WorkerOutcome) {
        condition.lock()
        defer { condition.unlock() }
        outcome = result
        wakeup?.notify()
    }

    // MARK: loop side

    /// Takes queued chunks (at least one when any is queued, then more while under `maxBytes`), and the outcome
    /// once every chunk before it was taken.
    func take(maxBytes: Int) -> (chunks: [[UInt8]], outcome: WorkerOutcome?) {
        condition.lock()
        defer { condition.unlock() }
        var taken: [[UInt8]] = []
        var takenBytes = 0
        while !chunks.isEmpty && (taken.isEmpty || takenBytes + chunks[0].count <= maxBytes) {
            let chunk = chunks.removeFirst()
            takenBytes += chunk.count
            taken.append(chunk)
        }
        queuedBytes -= takenBytes
        if takenBytes > 0 { condition.broadcast() }
        guard chunks.isEmpty, let outcome, !outcomeTaken else { return (taken, nil) }
        outcomeTaken = true
        return (taken, outcome)
    }

    /// Tells the worker to stop: a waiting `send` returns false, and a `poll` on `cancelRead` wakes.
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
        var byte: UInt8 = 1
        _ = write(cancelWrite, &byte, 1)
    }

    /// Cancels and leaves the rest to the link: it drops what the worker still sends and closes itself once the
    /// worker is done.
    func abandon() {
        onAbandonedOutcome = true
        cancel()
        _ = take(maxBytes: .max)
        if outcomeTaken { close() }
    }

    /// Loop thread, after the outcome was taken: frees the wakeup and the cancel pipe.
    func close() {
        precondition(outcomeTaken, "a link is closed only after its worker is done")
        guard retainedSelf != nil else { return }
        wakeup?.invalidate()
        wakeup = nil
        Glibc.close(cancelRead)
        Glibc.close(cancelWrite)
        retainedSelf = nil
    }

    // MARK: the workers

    /// Reads `length` bytes of the descriptor into the link, then closes it.
    static func readFile(descriptor: Int32, length: UInt64, into link: WorkerLink) {
        var remaining = length
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        var error: AppHookError?
        while remaining > 0 && error == nil {
            let count = buffer.withUnsafeMutableBytes {
                read(descriptor, $0.baseAddress, Int(min(UInt64($0.count), remaining)))
            }
            if count > 0 {
                remaining -= UInt64(count)
                if !link.send(Array(buffer[0..<count])) {
                    error = AppHookError(.cancelled, "reading the state was cancelled")
                }
            } else if count == 0 {
                error = AppHookError(
                    .sourceFailed, "the state ends after \(length - remaining) of its \(length) bytes")
            } else if errno != EINTR {
                error = AppHookError(.sourceFailed, "the state cannot be read: \(CommandHook.errnoText())")
            }
        }
        Glibc.close(descriptor)
        link.finish(WorkerOutcome(error: error))
    }

    /// Moves a save child's standard output into the link and keeps the start of its standard error, until both
    /// end (or the loop cancels), then waits for the child's exit without reaping it.
    static func serveSave(pid: pid_t, stdout: Int32, stderr: Int32, link: WorkerLink) {
        var capture = OutputCapture(limit: CommandHook.outputCaptureBytes)
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        var stdoutOpen = true
        var stderrOpen = true
        var error: AppHookError?
        serving: while stdoutOpen || stderrOpen {
            var fds = [
                pollfd(fd: stdoutOpen ? stdout : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: stderrOpen ? stderr : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: link.cancelRead, events: Int16(POLLIN), revents: 0),
            ]
            if poll(&fds, 3, -1) < 0 {
                if errno == EINTR { continue }
                error = AppHookError(.spawnFailed, "waiting on the command's output failed: \(CommandHook.errnoText())")
                break
            }
            if fds[2].revents != 0 { break }
            if fds[0].revents != 0 {
                let count = buffer.withUnsafeMutableBytes { read(stdout, $0.baseAddress, $0.count) }
                if count > 0 {
                    if !link.send(Array(buffer[0..<count])) { break serving }
                } else if count == 0 || errno != EINTR {
                    stdoutOpen = false
                }
            }
            if fds[1].revents != 0 {
                let count = buffer.withUnsafeMutableBytes { read(stderr, $0.baseAddress, $0.count) }
                if count > 0 {
                    capture.append(buffer[0..<count])
                } else if count == 0 || errno != EINTR {
                    stderrOpen = false
                }
            }
        }
        Glibc.close(stdout)
        Glibc.close(stderr)
        waitForExit(pid)
        link.finish(WorkerOutcome(error: error, output: capture.text))
    }

    /// Copies `length` bytes of `source` into a restore child's standard input and keeps the start of its output,
    /// until input is complete and output ends (or the loop cancels), then waits for the child's exit without
    /// reaping it.
    static func serveRestore(pid: pid_t, source: Int32, length: UInt64, stdin: Int32, output: Int32, link: WorkerLink) {
        _ = fcntl(stdin, F_SETFL, fcntl(stdin, F_GETFL) | O_NONBLOCK)
        var capture = OutputCapture(limit: CommandHook.outputCaptureBytes)
        var pending = [UInt8](repeating: 0, count: 64 << 10)
        var outputBuffer = [UInt8](repeating: 0, count: 4096)
        var pendingStart = 0
        var pendingEnd = 0
        var remaining = length
        var written: UInt64 = 0
        var stdinOpen = true
        var outputOpen = true
        var error: AppHookError?
        let closeInput = {
            if stdinOpen {
                Glibc.close(stdin)
                stdinOpen = false
            }
        }
        serving: while stdinOpen || outputOpen {
            if stdinOpen && pendingStart == pendingEnd {
                if remaining == 0 {
                    closeInput()  // All of the state went in: the child sees the end of its input.
                } else {
                    let count = pending.withUnsafeMutableBytes {
                        read(source, $0.baseAddress, Int(min(UInt64($0.count), remaining)))
                    }
                    if count > 0 {
                        (pendingStart, pendingEnd) = (0, count)
                        remaining -= UInt64(count)
                    } else if count == 0 || errno != EINTR {
                        error = AppHookError(
                            .sourceFailed,
                            count == 0
                                ? "the state ends after \(length - remaining) of its \(length) bytes"
                                : "the state cannot be read: \(CommandHook.errnoText())")
                        // The child must not take a truncated state for a whole one.
                        kill(-pid, SIGKILL)
                        closeInput()
                    }
                    continue
                }
            }
            var fds = [
                pollfd(fd: stdinOpen ? stdin : -1, events: Int16(POLLOUT), revents: 0),
                pollfd(fd: outputOpen ? output : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: link.cancelRead, events: Int16(POLLIN), revents: 0),
            ]
            if poll(&fds, 3, -1) < 0 {
                if errno == EINTR { continue }
                error = AppHookError(.spawnFailed, "waiting on the command failed: \(CommandHook.errnoText())")
                break
            }
            if fds[2].revents != 0 { break }
            if fds[0].revents != 0 {
                let count = pending.withUnsafeBytes {
                    write(stdin, $0.baseAddress! + pendingStart, pendingEnd - pendingStart)
                }
                if count > 0 {
                    pendingStart += count
                    written += UInt64(count)
                } else if count < 0 && errno != EINTR && errno != EAGAIN {
                    // EPIPE: the command stopped reading (SIGPIPE is blocked on this thread, see `startWorker`).
                    error = AppHookError(
                        .incompleteInput,
                        "the command stopped reading its standard input after \(written) of \(length) bytes")
                    closeInput()
                }
            }
            if fds[1].revents != 0 {
                let count = outputBuffer.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
                if count > 0 {
                    capture.append(outputBuffer[0..<count])
                } else if count == 0 || errno != EINTR {
                    outputOpen = false
                }
            }
        }
        closeInput()
        Glibc.close(output)
        Glibc.close(source)
        waitForExit(pid)
        link.finish(WorkerOutcome(error: error, output: capture.text, bytesWritten: written))
    }

    /// Waits until the child has exited, leaving it a zombie for the loop to reap.
    static func waitForExit(_ pid: pid_t) {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
    }
}

/// The first bytes of a command's diagnostics, made printable for a log line.
struct OutputCapture {
    let limit: Int
    private var bytes: [UInt8] = []
    private var dropped = 0

    init(limit: Int) { self.limit = limit }

    mutating func append(_ chunk: ArraySlice<UInt8>) {
        let room = max(0, limit - bytes.count)
        bytes.append(contentsOf: chunk.prefix(room))
        dropped += max(0, chunk.count - room)
    }

    var text: String {
        var out = ""
        for scalar in String(decoding: bytes, as: UTF8.self).unicodeScalars {
            if scalar == "\n" || scalar == "\t" {
                out.unicodeScalars.append(" ")
            } else if scalar.value < 0x20 || scalar.value == 0x7F {
                out += "?"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        out = out.trimmingCharacters(in: .whitespaces)
        return dropped > 0 ? out + " ... (\(dropped) more bytes)" : out
    }
}
