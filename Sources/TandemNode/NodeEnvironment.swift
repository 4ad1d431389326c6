// The runtime's boundaries: time and scheduling, the disk, and the peers. Production wires them to the event
// loop, the WAL on its disk thread and the peer transport (`LoopClock`, `WALNodeDisk`, `TransportMessenger`);
// the node simulator (Tests/TandemNodeTests) wires them to a seeded virtual clock, a simulated disk that loses
// what was not synced and a network that delays, drops and cuts links, and runs the real `ReplicaRuntime`.

import Foundation
import TandemConsensus
import TandemNet
import TandemStorage
import TandemTransport

/// A timer the runtime scheduled; `cancel` is idempotent.
public protocol NodeTimer: AnyObject {
    func cancel()
}

/// Time and scheduling. Every handler runs on the runtime's one thread.
public protocol NodeClock: AnyObject {
    /// The consensus clock in milliseconds: monotonic, and it keeps counting while the machine is suspended.
    func nowMs() -> Int64
    /// The same clock in microseconds, for latency measurements.
    func nowMicros() -> Int64
    /// Unix wall-clock milliseconds (stamps `Tandem-Time`; never used for timeouts).
    func wallClockMs() -> Int64
    /// Traps when called off the runtime's thread.
    func assertOnOwnThread()
    func after(ms: Int64, _ handler: @escaping () -> Void) -> NodeTimer
    func every(ms: Int64, _ handler: @escaping () -> Void) -> NodeTimer
    /// Runs `handler` at the next turn, after whatever input is being handled now.
    func soon(_ handler: @escaping () -> Void)
}

/// The durable side: ordered persistence jobs, and the records a graceful stop and a start write.
public protocol NodeDisk: AnyObject {
    func start()
    /// Queues a job; `completion` runs on the runtime's thread once it is durable (or failed). Jobs complete in
    /// submission order.
    func submit(_ job: PersistJob, completion: @escaping (PersistOutcome) -> Void)
    /// Finishes every queued job, then closes; completions are not called any more.
    func stop()
    /// Writes the graceful-stop checkpoint (after `stop`).
    func finish(_ checkpoint: ApplyCheckpoint) throws
    /// A new incarnation, written durably, for ids of this run.
    func nextIncarnation() throws -> UInt64
}

/// What a node found on its disk at start.
public struct NodeRecovery: Sendable {
    /// Where the log starts: entries through `base.index` are covered by a snapshot (`.empty` for none).
    public var base: LogBase = .empty
    /// The cluster configuration in force at `base` as the log recorded it (`ClusterConfiguration.encoded`); nil
    /// when none was recorded (then the node starts from its settings' configuration).
    public var baseConfiguration: [UInt8]?
    /// Entries after `base`, contiguous.
    public var entries: [Entry]
    public var hardState: TandemConsensus.HardState
    public var appliedIndex: UInt64
    public var previousRun: ApplyCheckpoint.Recovered
    public var incarnation: UInt64
    public var note: String?
    public var walBytes: Int64

    public init(
        entries: [Entry], hardState: TandemConsensus.HardState, appliedIndex: UInt64,
        previousRun: ApplyCheckpoint.Recovered, incarnation: UInt64, note: String? = nil, walBytes: Int64 = 0
    ) {
        self.entries = entries
        self.hardState = hardState
        self.appliedIndex = appliedIndex
        self.previousRun = previousRun
        self.incarnation = incarnation
        self.note = note
        self.walBytes = walBytes
    }
}

/// The peers, as the runtime sees them. Inputs come back through `ReplicaRuntime`'s `receive`, `linkUp`,
/// `linkDown` and `frameDropped`.
public protocol PeerMessenger: AnyObject {
    var listenPort: UInt16 { get }
    var peerStatuses: [LinkStatus] { get }
    func start(for runtime: ReplicaRuntime) throws
    func send(_ message: Message) -> SendOutcome
    func send(type: UInt8, payload: [UInt8], to peer: NodeID) -> SendOutcome
    /// Closes the link to `peer` because of what arrived on it (an undecodable frame, a message from another node,
    /// one the core refused). The peer is told only that the connection ended; both sides then reconnect, and the
    /// new link is authenticated from scratch. The runtime hears `linkDown` (possibly from within this call) and,
    /// once the link is back, `linkUp`. Nothing happens while there is no link.
    func closeLink(to peer: NodeID, reason: String)
    func stop()
    /// The members to keep links to, as the configuration in force says (this node's own id is ignored).
    func setPeers(_ peers: [PeerEndpoint])
    /// Dials a member whose id this node does not know (a node asking to join); the runtime hears
    /// `strangerConnected` or `strangerDialFailed`.
    func dialStranger(host: String, port: UInt16)
}

extension PeerMessenger {
    /// Messengers of a fixed cluster (the simulators) keep their peers.
    public func setPeers(_ peers: [PeerEndpoint]) {}
    public func dialStranger(host: String, port: UInt16) {}
}

// MARK: production wiring

/// `NodeClock` on a libevent loop.
public final class LoopClock: NodeClock {
    private unowned let loop: EventLoop
    private var wakeups: [LoopWakeup] = []
    private var idleWakeups: [LoopWakeup] = []
    private var queued: [() -> Void] = []
    private var wakeup: LoopWakeup?

    public init(loop: EventLoop) { self.loop = loop }

    public func nowMs() -> Int64 { EventLoop.preciseNowMs() }
    public func nowMicros() -> Int64 { EventLoop.preciseNowMicros() }
    public func wallClockMs() -> Int64 { EventLoop.wallClockMs() }
    public func assertOnOwnThread() { loop.assertOnLoopThread() }

    public func after(ms: Int64, _ handler: @escaping () -> Void) -> NodeTimer {
        let timer = LoopTimer(loop: loop, handler: handler)
        timer.timer.schedule(afterMs: ms)
        return timer
    }

    public func every(ms: Int64, _ handler: @escaping () -> Void) -> NodeTimer {
        let timer = LoopTimer(loop: loop, handler: handler)
        timer.timer.scheduleRepeating(everyMs: ms)
        return timer
    }

    public func soon(_ handler: @escaping () -> Void) {
        queued.append(handler)
        if wakeup == nil {
            wakeup = LoopWakeup(loop: loop) { [unowned self] in self.runQueued() }
        }
        if queued.count == 1 { wakeup?.notify() }
    }

    private func runQueued() {
        let handlers = queued
        queued.removeAll()
        for handler in handlers { handler() }
    }

    /// Stops running queued handlers (at shutdown).
    public func invalidate() {
        queued.removeAll()
        wakeup?.invalidate()
        wakeup = nil
    }
}

private final class LoopTimer: NodeTimer {
    let timer: TandemNet.Timer
    init(loop: EventLoop, handler: @escaping () -> Void) {
        timer = TandemNet.Timer(loop: loop, priority: .control, handler: handler)
    }
    func cancel() { timer.invalidate() }
}

/// `NodeDisk` on the WAL, written on its own thread.
public final class WALNodeDisk: NodeDisk {
    private let worker: DiskWorker
    private let directory: String

    /// Opens (and recovers) the WAL in `config.dataDirectory`, reads how the previous run ended, and marks this
    /// run as running.
    public static func open(config: ReplicaConfig, loop: EventLoop) throws -> (WALNodeDisk, NodeRecovery) {
        // Like `mkdir -p`, mode 0700, each created directory synced into its parent: a fresh volume mount or a
        // nested path is normal for a data directory.
        try WriteAheadLog.prepareDirectory(config.dataDirectory)
        // Every entry the core accepts must fit a WAL record, or one large write would be a fatal disk error on
        // every replica at once: the record limit follows the message limit (which follows TANDEM_MAX_BODY).
        let walOptions = WALOptions(
            maxEntryPayloadBytes: min(
                WALOptions.payloadBytesLimit,
                max(WALOptions.defaultMaxEntryPayloadBytes, config.raft.maxMessageBytes + entryEncodingSlackBytes)))
        let (wal, recovered) = try WriteAheadLog.open(directory: config.dataDirectory, options: walOptions)
        var entries: [Entry] = []
        entries.reserveCapacity(recovered.entries.count)
        for record in recovered.entries { entries.append(try EntryPayload.decode(record)) }
        let hard =
            recovered.hardState.map {
                TandemConsensus.HardState(term: $0.term, votedFor: $0.votedFor.map(NodeID.init), commitIndex: $0.commit)
            } ?? TandemConsensus.HardState()
        let previousRun = try ApplyCheckpoint.begin(directory: config.dataDirectory)
        let incarnation = try NodeIncarnation.next(directory: config.dataDirectory)
        let note = recovered.tornTail.map {
            "truncated a torn WAL tail in \($0.file) at offset \($0.offset) (\($0.discardedBytes) bytes): \($0.reason)"
        }
        let disk = WALNodeDisk(worker: DiskWorker(wal: wal, loop: loop), directory: config.dataDirectory)
        var recovery = NodeRecovery(
            entries: entries, hardState: hard, appliedIndex: recovered.appliedIndex, previousRun: previousRun,
            incarnation: incarnation, note: note, walBytes: wal.sizeBytes)
        if let base = recovered.base {
            recovery.base = LogBase(index: base.index, term: base.term)
            recovery.baseConfiguration = base.configuration
        }
        return (disk, recovery)
    }

    /// Room for an entry's own fields (term, index, time, proposal id with its node id) beside its data.
    static let entryEncodingSlackBytes = 64 * 1024

    private init(worker: DiskWorker, directory: String) {
        self.worker = worker
        self.directory = directory
    }

    public func start() { worker.start() }
    public func submit(_ job: PersistJob, completion: @escaping (PersistOutcome) -> Void) {
        worker.submit(job, completion: completion)
    }
    public func stop() { worker.stop() }
    public func finish(_ checkpoint: ApplyCheckpoint) throws {
        try ApplyCheckpoint.finish(checkpoint, directory: directory)
    }
    public func nextIncarnation() throws -> UInt64 { try NodeIncarnation.next(directory: directory) }
}

/// `PeerMessenger` on the peer transport.
public final class TransportMessenger: PeerMessenger, PeerTransportDelegate {
    private unowned let loop: EventLoop
    private let config: ReplicaConfig
    private var transport: PeerTransport?
    private weak var runtime: ReplicaRuntime?

    public init(loop: EventLoop, config: ReplicaConfig) {
        self.loop = loop
        self.config = config
    }

    public var listenPort: UInt16 { transport?.listenPort ?? 0 }
    public var peerStatuses: [LinkStatus] { transport?.peerStatuses ?? [] }

    public func start(for runtime: ReplicaRuntime) throws {
        self.runtime = runtime
        let transport = try PeerTransport(
            loop: loop, selfID: config.raft.id, peers: config.peers, listenHost: config.peerListenHost,
            listenPort: config.peerListenPort, auth: config.auth, options: config.transport)
        transport.delegate = self
        transport.start()
        self.transport = transport
    }

    public func send(_ message: Message) -> SendOutcome { transport?.send(message) ?? .droppedNotConnected }
    public func send(type: UInt8, payload: [UInt8], to peer: NodeID) -> SendOutcome {
        transport?.send(type: type, payload: payload, to: peer) ?? .droppedNotConnected
    }
    public func closeLink(to peer: NodeID, reason: String) { transport?.closeLink(to: peer, reason: reason) }
    public func stop() { transport?.stop() }
    public func setPeers(_ peers: [PeerEndpoint]) { transport?.setPeers(peers) }
    public func dialStranger(host: String, port: UInt16) { transport?.dialStranger(host: host, port: port) }

    public func peerTransport(
        _ transport: PeerTransport, didReceiveFrameFromStranger peer: NodeID, type: UInt8,
        payload: UnsafeRawBufferPointer
    ) {
        runtime?.receiveFromStranger(frameOfType: type, payload: payload, from: peer)
    }

    public func peerTransport(_ transport: PeerTransport, strangerDidConnect peer: NodeID, address: String) {
        runtime?.strangerConnected(peer)
    }

    public func peerTransport(
        _ transport: PeerTransport, strangerDialFailed host: String, port: UInt16, reason: LinkFailure
    ) {
        runtime?.strangerDialFailed(host: host, port: port, reason: "\(reason)")
    }

    public func peerTransport(
        _ transport: PeerTransport, didReceiveFrameFrom peer: NodeID, type: UInt8, payload: UnsafeRawBufferPointer
    ) {
        runtime?.receive(frameOfType: type, payload: payload, from: peer)
    }

    public func peerTransport(_ transport: PeerTransport, peerDidConnect peer: NodeID) {
        runtime?.linkUp(to: peer)
    }

    public func peerTransport(_ transport: PeerTransport, peerDidDisconnect peer: NodeID, reason: LinkFailure) {
        runtime?.linkDown(to: peer, reason: "\(reason)", closedByPeer: reason.isClosedByPeer)
    }

    public func peerTransport(
        _ transport: PeerTransport, droppedFrameTo peer: NodeID, type: UInt8, payloadBytes: Int, outcome: SendOutcome
    ) {
        runtime?.frameDropped(to: peer, type: type, payloadBytes: payloadBytes, tooLarge: outcome == .droppedTooLarge)
    }

    public func peerTransport(
        _ transport: PeerTransport, authenticationFailedFrom remoteAddress: String, reason: LinkFailure
    ) {
        runtime?.peerRefused(remoteAddress: remoteAddress, reason: "\(reason)")
    }
}
