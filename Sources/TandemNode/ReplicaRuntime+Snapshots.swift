// Snapshots in the runtime: compaction after the sidecar took a snapshot, and installation between nodes — the
// leader streams its latest snapshot file to a follower whose next entry it no longer has (SnapshotTransfer.swift
// holds the protocol's state machines; this file carries out their actions), and the follower verifies it, has
// the sidecar restore the app from it, then tells the core, which moves its log's start and answers the leader.

import Logging
import TandemConsensus
import TandemStorage

/// The sidecar's side of snapshots, on the runtime's thread.
public protocol ReplicaSnapshotDelegate: AnyObject {
    /// A snapshot received from the leader is complete and verified on disk: restore the app (and Tandem's own
    /// state) from it, then call `completion(true)`, or `completion(false)` when the restore failed.
    func replica(_ replica: ReplicaRuntime, restore snapshot: SnapshotInfo, completion: @escaping (Bool) -> Void)
    /// Whether `snapshot` carries the app's state, so that it can rebuild another replica.
    func replica(_ replica: ReplicaRuntime, canInstall snapshot: SnapshotInfo) -> Bool
}

/// Snapshot figures for /metrics and /status.
public struct SnapshotCounters: Sendable {
    public var taken: UInt64 = 0
    public var compactions: UInt64 = 0
    public var sendsStarted: UInt64 = 0
    public var sendsSucceeded: UInt64 = 0
    public var sendsFailed: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var receivesStarted: UInt64 = 0
    public var installs: UInt64 = 0
    public var receiveFailures: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    /// Times a follower needed a snapshot this node did not have (no hooks): it cannot be rebuilt.
    public var unrebuildable: UInt64 = 0
}

extension ReplicaRuntime {
    /// The sidecar wrote a snapshot: it becomes the one sent to followers, and the log is compacted through
    /// `compactThrough` (the core clamps it to what is applied and durable, and to the snapshot itself).
    public func snapshotTaken(_ info: SnapshotInfo, compactThrough: UInt64) {
        clock.assertOnOwnThread()
        latestSnapshot = info
        snapshotCounters.taken += 1
        cannotRebuildReason = nil
        if let base = raft.compactLog(through: min(compactThrough, info.id.index)) {
            var job = PersistJob()
            job.logBase = .compact(
                StoredLogBase(index: base.index, term: base.term, configuration: raft.baseConfiguration.encoded))
            snapshotCounters.compactions += 1
            disk.submit(job) { [unowned self] outcome in self.recordDisk(outcome) }
            log.info("log compacted", metadata: ["through": "\(base.index)", "snapshot": "\(info.id.index)"])
        }
        // Two snapshots are kept: the newest, and the one before in case the newest is found damaged.
        snapshots?.prune(keep: 2, exceptReceiving: incomingTransfer?.id)
    }

    /// The sidecar threw this replica's app state away (a divergence repair): until an app state is restored from
    /// the leader's latest snapshot, this replica asks the leader for it every `refetchIntervalMs`, like a replica
    /// whose own snapshot is gone, and says `reason` where it says why it cannot serve. The sidecar must not take a
    /// snapshot of its own meanwhile (that would end the request with the very state being replaced).
    public func requestAppRebuild(reason: String) {
        clock.assertOnOwnThread()
        cannotRebuildReason = reason
        lastRefetchRequestMs = .min / 2
        log.warning("asking the leader for its snapshot to rebuild the app from", metadata: ["reason": "\(reason)"])
    }

    /// The app's state was replaced by a snapshot at `index` (at start, before anything was applied).
    public func appStateReplaced(at index: UInt64) {
        clock.assertOnOwnThread()
        appliedIndex = max(appliedIndex, index)
    }
}

/// A transfer of this node's snapshot to one follower.
struct OutgoingTransfer {
    var state: SnapshotSendState
    let reader: SnapshotReader
    let info: SnapshotInfo
    /// Asked for by the follower (it cannot rebuild its app), not listed by the core.
    let requested: Bool
}

/// A follower that cannot rebuild its app (its snapshot is damaged or gone and its log compacted) asks the leader
/// for the leader's latest snapshot with this frame (no payload), every `refetchIntervalMs` until one arrives.
let snapshotRequestFrameType: UInt8 = 0x36
let refetchIntervalMs: Int64 = 2000

/// The staging file of the snapshot this node is receiving, and from whom.
struct IncomingTransfer {
    let transferID: UInt64
    let id: SnapshotID
    let from: NodeID
    let receiver: UncheckedBox<SnapshotReceiver>
    /// The verified file, once `finishAndVerify` moved it into place.
    var installed: SnapshotInfo?
}

/// Hands a non-Sendable reference to the snapshot worker thread. Safe here because the runtime never touches the
/// object while a job on it runs (the transfer state machine asks for one sync or verification at a time).
final class UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

extension ReplicaRuntime {
    var transferOptions: SnapshotTransferOptions { SnapshotTransferOptions() }

    // MARK: leader side

    /// The core listed `peer` as needing a snapshot: stream the latest one to it, if this node has one that
    /// carries the app's state. Otherwise the follower cannot be rebuilt: said loudly, and retried by the core.
    func startSnapshotTransfer(to peer: NodeID, requested: Bool = false) {
        guard outgoingTransfers[peer] == nil else { return }
        guard let info = latestSnapshot, snapshotDelegate?.replica(self, canInstall: info) ?? false,
            let reader = try? SnapshotReader(info)
        else {
            snapshotCounters.unrebuildable += 1
            if unrebuildablePeers.insert(peer).inserted {
                log.error(
                    "a follower needs compacted entries and no snapshot with the app's state exists to rebuild it",
                    metadata: ["peer": "\(peer)", "logStart": "\(raft.logBase.index + 1)"])
            }
            clock.soon { [weak self] in
                guard let self, !self.stopped else { return }
                self.raft.reportSnapshot(to: peer, succeeded: false, nowMs: self.clock.nowMs())
                self.scheduleReady()
            }
            return
        }
        unrebuildablePeers.remove(peer)
        snapshotCounters.sendsStarted += 1
        let descriptor = SnapshotDescriptor(
            index: info.id.index, term: info.id.term, fileBytes: info.fileBytes, payloadCRC: info.payloadCRC)
        let (state, actions) = SnapshotSendState.begin(
            transferID: takeSequence(), to: peer, snapshot: descriptor, leaderTerm: raft.currentTerm,
            configuration: raft.configuration(at: info.id.index)?.encoded, options: transferOptions,
            nowMs: clock.nowMs())
        outgoingTransfers[peer] = OutgoingTransfer(state: state, reader: reader, info: info, requested: requested)
        log.info(
            "sending a snapshot to a follower",
            metadata: ["peer": "\(peer)", "index": "\(info.id.index)", "bytes": "\(info.fileBytes)"])
        carryOutSend(actions, peer: peer)
    }

    func carryOutSend(_ actions: [SnapshotSendState.Action], peer: NodeID) {
        var pending = actions[...]
        while let action = pending.popFirst() {
            switch action {
            case .send(let type, let payload, let to):
                if type == SnapshotTransferCodec.FrameType.chunk.rawValue {
                    snapshotCounters.bytesSent += UInt64(payload.count)
                }
                _ = messenger.send(type: type, payload: payload, to: to)
            case .readChunk(let transferID, let offset, let maxBytes):
                guard var transfer = outgoingTransfers[peer] else { return }
                // A page-cache read of one chunk; the window bounds how many are outstanding.
                let more: [SnapshotSendState.Action]
                do {
                    let bytes = try transfer.reader.read(at: offset, maxBytes: maxBytes)
                    more = transfer.state.chunkRead(transferID: transferID, offset: offset, bytes: bytes)
                } catch {
                    log.error("cannot read the snapshot being sent", metadata: ["error": "\(error)"])
                    more = transfer.state.readFailed(transferID: transferID, offset: offset)
                }
                outgoingTransfers[peer] = transfer
                pending.append(contentsOf: more)
            case .finished(let succeeded, let reason):
                guard let transfer = outgoingTransfers.removeValue(forKey: peer) else { return }
                transfer.reader.close()
                if succeeded {
                    snapshotCounters.sendsSucceeded += 1
                    log.info("snapshot sent", metadata: ["peer": "\(peer)", "index": "\(transfer.info.id.index)"])
                } else {
                    snapshotCounters.sendsFailed += 1
                    log.warning("snapshot transfer failed", metadata: ["peer": "\(peer)", "reason": "\(reason)"])
                }
                raft.reportSnapshot(to: peer, succeeded: succeeded, nowMs: clock.nowMs())
                scheduleReady()
            }
        }
    }

    // MARK: follower side

    func receiveSnapshotFrame(type: UInt8, payload: UnsafeRawBufferPointer, from peer: NodeID) {
        let frame: SnapshotTransferFrame
        do {
            frame = try SnapshotTransferCodec.decode(type: type, payload: payload)
        } catch {
            noteUndecodableFrame()
            log.warning("undecodable snapshot frame from peer", metadata: ["peer": "\(peer)", "error": "\(error)"])
            return
        }
        let now = clock.nowMs()
        switch frame {
        case .accept, .decline, .ack, .done:
            guard var transfer = outgoingTransfers[peer] else { return }
            let actions = transfer.state.onFrame(frame, nowMs: now)
            outgoingTransfers[peer] = transfer
            carryOutSend(actions, peer: peer)
        case .abort:
            if var transfer = outgoingTransfers[peer] {
                let actions = transfer.state.onFrame(frame, nowMs: now)
                outgoingTransfers[peer] = transfer
                carryOutSend(actions, peer: peer)
            }
            carryOutReceive(receiveState.onFrame(frame, from: peer, commitIndex: raft.commitIndex, nowMs: now))
        case .offer(let offer):
            // Only the leader of our term (or a later one) installs a snapshot here.
            guard offer.leaderTerm >= raft.currentTerm, snapshots != nil else { return }
            offerFrom = peer
            offeredConfiguration = (offer.transferID, offer.configuration.flatMap(ClusterConfiguration.init(decoding:)))
            // A node refetching a snapshot to rebuild its app takes one its log reaches (it restores the app from
            // it and replays its own log after it); otherwise only one beyond its commit index is of use.
            let reach = cannotRebuildReason != nil ? raft.logBase.index : raft.commitIndex
            carryOutReceive(receiveState.onFrame(frame, from: peer, commitIndex: reach, nowMs: now))
        case .chunk:
            carryOutReceive(receiveState.onFrame(frame, from: peer, commitIndex: raft.commitIndex, nowMs: now))
        }
    }

    func carryOutReceive(_ actions: [SnapshotReceiveState.Action]) {
        var pending = actions[...]
        while let action = pending.popFirst() {
            switch action {
            case .send(let type, let payload, let to):
                _ = messenger.send(type: type, payload: payload, to: to)
            case .openStaging(let transferID, let snapshot):
                pending.append(contentsOf: openStaging(transferID: transferID, snapshot: snapshot))
            case .write(let transferID, let offset, let bytes):
                // On the snapshot worker, like the sync and the verification after it (jobs run in order): a disk
                // that throttles writers never stalls the loop. The state machine bounds what is queued.
                guard let incoming = incomingTransfer, incoming.transferID == transferID else { continue }
                onStaging(incoming, { (receiver) throws(WALError) in try receiver.write(bytes, at: offset) }) {
                    [unowned self] in
                    snapshotCounters.bytesReceived += UInt64(bytes.count)
                    return receiveState.written(transferID: transferID, through: offset + UInt64(bytes.count))
                }
            case .sync(let transferID):
                guard let incoming = incomingTransfer, incoming.transferID == transferID else { continue }
                onStaging(incoming, { (receiver) throws(WALError) in try receiver.sync() }) { [unowned self] in
                    receiveState.synced(transferID: transferID)
                }
            case .finishAndVerify(let transferID, _):
                guard let incoming = incomingTransfer, incoming.transferID == transferID else { continue }
                let box = incoming.receiver
                runInBackground({ () -> Result<SnapshotInfo, WALError> in
                    do throws(WALError) { return .success(try box.value.finish()) } catch { return .failure(error) }
                }) { [weak self] result in
                    guard let self, !self.stopped else { return }
                    switch result {
                    case .success(let info):
                        self.incomingTransfer?.installed = info
                        self.carryOutReceive(self.receiveState.verified(transferID: transferID, ok: true))
                    case .failure(let error):
                        self.log.error("a received snapshot failed verification", metadata: ["error": "\(error)"])
                        self.carryOutReceive(self.receiveState.verified(transferID: transferID, ok: false))
                    }
                }
            case .restore(let transferID, let snapshot):
                restoreReceived(transferID: transferID, snapshot: snapshot)
            case .discardStaging(let transferID):
                if let incoming = incomingTransfer, incoming.transferID == transferID {
                    abortStaging(incoming, deleteStaging: true)
                }
            case .finished(let installed, let reason):
                if installed {
                    snapshotCounters.installs += 1
                } else {
                    snapshotCounters.receiveFailures += 1
                    log.warning("snapshot reception ended without installing", metadata: ["reason": "\(reason)"])
                    if let incoming = incomingTransfer, incoming.installed == nil {
                        abortStaging(incoming, deleteStaging: false)  // Kept: a later attempt resumes.
                    }
                }
                incomingTransfer = nil
            }
        }
    }

    /// Runs `operation` on the staging file on the snapshot worker (after what is queued before it); back on the
    /// runtime's thread, a failure ends the transfer as a storage failure, and success carries out `then`'s actions.
    private func onStaging(
        _ incoming: IncomingTransfer, _ operation: @escaping @Sendable (SnapshotReceiver) throws(WALError) -> Void,
        then succeeded: @escaping () -> [SnapshotReceiveState.Action]
    ) {
        let box = incoming.receiver
        let transferID = incoming.transferID
        runInBackground({ () -> String? in
            do throws(WALError) {
                try operation(box.value)
                return nil
            } catch { return "\(error)" }
        }) { [weak self] failure in
            guard let self, !self.stopped else { return }
            if let failure {
                self.carryOutReceive(self.receiveState.storageFailed(transferID: transferID, reason: failure))
            } else {
                self.carryOutReceive(succeeded())
            }
        }
    }

    /// Closes a staging file after the writes queued for it (on the same worker, so never under a running write).
    private func abortStaging(_ incoming: IncomingTransfer, deleteStaging: Bool) {
        let box = incoming.receiver
        runInBackground({ box.value.abort(deleteStaging: deleteStaging) }) { _ in }
    }

    /// Opens the staging file on the snapshot worker, after whatever is still queued for the previous one (which
    /// may be the same file, resumed).
    private func openStaging(transferID: UInt64, snapshot: SnapshotDescriptor) -> [SnapshotReceiveState.Action] {
        guard let snapshots, let from = offerFrom else {
            return receiveState.stagingFailed(transferID: transferID, reason: "this node keeps no snapshots")
        }
        if let previous = incomingTransfer, previous.installed == nil {
            abortStaging(previous, deleteStaging: false)
        }
        incomingTransfer = nil
        let id = SnapshotID(index: snapshot.index, term: snapshot.term)
        runInBackground({ () -> Result<UncheckedBox<SnapshotReceiver>, WALError> in
            do throws(WALError) {
                let receiver = try snapshots.beginReceive(
                    id: id, fileBytes: snapshot.fileBytes, payloadCRC: snapshot.payloadCRC)
                return .success(UncheckedBox(receiver))
            } catch { return .failure(error) }
        }) { [weak self] result in
            guard let self, !self.stopped else { return }
            switch result {
            case .failure(let error):
                self.carryOutReceive(self.receiveState.stagingFailed(transferID: transferID, reason: "\(error)"))
            case .success(let box):
                guard self.receiveState.transferID == transferID else {
                    self.abortStaging(
                        IncomingTransfer(transferID: transferID, id: id, from: from, receiver: box, installed: nil),
                        deleteStaging: false)
                    return
                }
                self.incomingTransfer = IncomingTransfer(
                    transferID: transferID, id: id, from: from, receiver: box, installed: nil)
                self.snapshotCounters.receivesStarted += 1
                self.log.info(
                    "receiving a snapshot",
                    metadata: [
                        "from": "\(from)", "index": "\(snapshot.index)", "bytes": "\(snapshot.fileBytes)",
                        "resumeAt": "\(box.value.offset)",
                    ])
                self.carryOutReceive(
                    self.receiveState.stagingOpened(
                        transferID: transferID, resumeOffset: box.value.offset, nowMs: self.clock.nowMs()))
            }
        }
        return []
    }

    /// The received snapshot is verified: the sidecar restores the app from it, then the core moves its log's
    /// start to it (and answers the leader once that is durable).
    private func restoreReceived(transferID: UInt64, snapshot: SnapshotDescriptor) {
        guard let incoming = incomingTransfer, incoming.transferID == transferID, let info = incoming.installed,
            let delegate = snapshotDelegate
        else {
            carryOutReceive(receiveState.restored(transferID: transferID, ok: false))
            return
        }
        if cannotRebuildReason != nil, snapshot.index <= raft.commitIndex, snapshot.index >= raft.logBase.index {
            // A refetch: the app is rebuilt from it; the log after it is this node's own.
            delegate.replica(self, restore: info) { [weak self] ok in
                guard let self, !self.stopped else { return }
                if ok {
                    self.latestSnapshot = info
                    self.cannotRebuildReason = nil
                    self.log.info("app rebuilt from a refetched snapshot", metadata: ["index": "\(info.id.index)"])
                }
                self.carryOutReceive(self.receiveState.restored(transferID: transferID, ok: ok))
            }
            return
        }
        guard snapshot.index > raft.commitIndex else {
            // The log caught up meanwhile: nothing to restore (the state machine declines such offers; a late
            // one is harmless).
            carryOutReceive(receiveState.restored(transferID: transferID, ok: true))
            return
        }
        delegate.replica(self, restore: info) { [weak self] ok in
            guard let self, !self.stopped else { return }
            if ok {
                self.appliedIndex = max(self.appliedIndex, info.id.index)
                let base = LogBase(index: info.id.index, term: info.id.term)
                let configuration =
                    self.offeredConfiguration?.transferID == transferID ? self.offeredConfiguration?.configuration : nil
                if self.raft.installSnapshot(base, configuration: configuration, from: incoming.from) {
                    self.latestSnapshot = info
                    self.snapshots?.prune(keep: 2, exceptReceiving: nil)
                    self.log.info("snapshot installed", metadata: ["index": "\(info.id.index)"])
                }
                self.scheduleReady()
            }
            self.carryOutReceive(self.receiveState.restored(transferID: transferID, ok: ok))
        }
    }

    // MARK: both sides

    func snapshotLinkDown(to peer: NodeID) {
        if var transfer = outgoingTransfers[peer] {
            let actions = transfer.state.linkDown()
            outgoingTransfers[peer] = transfer
            carryOutSend(actions, peer: peer)
        }
        carryOutReceive(receiveState.linkDown(peer: peer))
    }

    /// A request from a follower that cannot rebuild its app: the leader sends it its latest snapshot.
    func receiveSnapshotRequest(from peer: NodeID) {
        guard raft.currentRole == .leader else { return }
        log.info("a follower asks for a snapshot to rebuild its app", metadata: ["peer": "\(peer)"])
        startSnapshotTransfer(to: peer, requested: true)
    }

    func tickSnapshotTransfers() {
        let now = clock.nowMs()
        if cannotRebuildReason != nil, incomingTransfer == nil, snapshots != nil,
            now - lastRefetchRequestMs >= refetchIntervalMs, let leader = raft.knownLeader, leader != config.raft.id
        {
            lastRefetchRequestMs = now
            _ = messenger.send(type: snapshotRequestFrameType, payload: [], to: leader)
        }
        for peer in Array(outgoingTransfers.keys) {
            guard var transfer = outgoingTransfers[peer] else { continue }
            let actions = transfer.state.tick(nowMs: now)
            outgoingTransfers[peer] = transfer
            carryOutSend(actions, peer: peer)
        }
        carryOutReceive(receiveState.tick(nowMs: now))
    }
}
