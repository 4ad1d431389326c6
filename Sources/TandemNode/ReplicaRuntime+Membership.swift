// Membership at run time: changes asked through any member and carried out by the leader, the peer address book
// kept equal to the configuration in force, learners promoted once caught up, and a new node joining through the
// address of any member.
//
// A change is a configuration entry (TandemConsensus/Membership.swift): the leader appends it and it is in force
// at once; the answer waits for its commit. A member that is not the leader sends the request to the leader over
// the peer link and relays the answer. A node that joins is not a peer of anyone yet: it dials a member as a
// "stranger" (an authenticated link outside the address book), asks to be added, and once the add is committed
// takes the configuration it is answered with as the start of its empty log (persisted), so that it accepts the
// leader's appends and snapshot from then on. Nothing here bypasses the core's rules: one change at a time, only
// after the leader committed an entry of its term, learners never vote.

import Foundation
import Logging
import TandemConsensus
import TandemStorage
import TandemTransport

import struct TandemConfig.HostPort

/// How a node with no state joins a running cluster (`TANDEM_JOIN`).
public struct JoinSettings: Sendable {
    /// The members to ask, resolved again before each round (DNS answers change as pods come and go). Called off
    /// the loop thread: it may block (a DNS query).
    public var resolveTargets: @Sendable () -> [PeerEndpoint]
    /// This node's peer address as the members should dial it (recorded in the configuration).
    public var advertiseAddress: String
    /// Pause between rounds that found no member to admit this node.
    public var retryMs: Int64 = 1000
    /// How long one member is given to answer before the next is asked.
    public var answerTimeoutMs: Int64 = 15_000

    public init(advertiseAddress: String, resolveTargets: @escaping @Sendable () -> [PeerEndpoint]) {
        self.advertiseAddress = advertiseAddress
        self.resolveTargets = resolveTargets
    }
}

/// When the leader promotes a learner on its own: its lag stayed at or under `maxLagEntries` for `stableForMs`,
/// and it was heard from within `heardWithinMs` (a learner that caught up and then died is not promoted).
public struct PromotionSettings: Sendable {
    public var enabled = true
    public var maxLagEntries: UInt64 = 64
    public var stableForMs: Int64 = 3000
    public var heardWithinMs: Int64 = 2000
    public var checkEveryMs: Int64 = 250
    /// A member the leader has not heard from for this long is removed (0: never; opt-in), one at a time, and
    /// never a voter when fewer than `removeDeadMinVoters` would remain.
    public var removeDeadAfterMs: Int64 = 0
    public var removeDeadMinVoters = 3
    public init() {}
}

/// A member as `GET /members` shows it. `matchIndex` and `lagEntries` are known on the leader only.
public struct MemberView: Equatable, Sendable {
    public var id: NodeID
    public var address: String?
    public var isVoter: Bool
    public var matchIndex: UInt64?
    public var lagEntries: UInt64?
}

/// The membership as this node sees it.
public struct MembershipView: Equatable, Sendable {
    public var members: [MemberView]
    public var leader: NodeID?
    /// The configuration in force and the index of the entry that holds it (0: the founding configuration).
    public var configurationIndex: UInt64
    /// Whether that configuration is committed (a change in progress is not).
    public var committed: Bool
    /// Whether this node belongs to it; false for a removed node (and a joining one).
    public var isMember: Bool
    public var isJoining: Bool
}

/// What the runtime keeps about membership (see ReplicaRuntime+Membership.swift).
struct MembershipState {
    struct Waiter {
        enum Kind {
            /// A change this leader appended at `index`: done once committed with `expected` still in force there.
            case commit(index: UInt64, expected: ClusterConfiguration)
            /// A request relayed to the leader under this id.
            case relayed
        }
        var kind: Kind
        var deadlineMs: Int64
        var completion: (Result<(UInt64, ClusterConfiguration), MembershipRefusal>) -> Void
    }

    enum JoinPhase: Equatable {
        case notJoining
        /// Waiting `untilMs` before the next round.
        case waiting(untilMs: Int64)
        case resolving
        /// Dialled `targets[next - 1]`; waiting for the link (or its failure).
        case dialing(sinceMs: Int64)
        /// Asked `member` under `requestID`.
        case asking(member: NodeID, requestID: UInt64, sinceMs: Int64)
        case admitted
    }

    var waiters: [UInt64: Waiter] = [:]
    var nextRequestID: UInt64 = 1
    /// The transport's address book.
    var book: [PeerEndpoint]?
    /// What the book was computed from: it is computed again only when one of them changed.
    var bookSources: (configuration: ClusterConfiguration, committed: ClusterConfiguration, leader: NodeID?)?
    /// The configuration the address book was last computed from.
    var bookConfiguration: ClusterConfiguration? { bookSources?.configuration }
    var promotion: LearnerPromotionPolicy?
    /// Since when this node leads (for the dead-member rule: a new leader first gives everyone the full time).
    var leaderSinceMs: Int64?
    var lastPromotionCheckMs: Int64 = .min / 2
    var join = JoinPhase.notJoining
    var joinTargets: [PeerEndpoint] = []
    var nextJoinTarget = 0
    /// A leader learned from a refusal, asked before the next listed target.
    var joinRedirect: PeerEndpoint?
    var lastJoinComplaintMs: Int64 = .min / 2
    /// The leader's view of the members, as last fetched (followers), with the local time it arrived.
    var leaderView: (view: MembershipView, receivedAtMs: Int64)?
    /// Until when someone wants the leader's view (a status page, GET /members): fetched every second till then.
    var leaderViewWantedUntilMs: Int64 = .min / 2
    var lastLeaderViewRequestMs: Int64 = .min / 2
    /// Set once a member told this node it was removed (and persisted in `<data>/removed`): it takes no part
    /// any more, whatever its own log says, until its data directory is wiped.
    var removal: (index: UInt64, configuration: ClusterConfiguration)?
    /// When each stranger was last told it is not a member (bounded: strangers are).
    var noticesSentMs: [NodeID: Int64] = [:]
    /// Bound on waiting changes (admin requests and relayed ones).
    static let maxWaiters = 64
    static let answerTimeoutMs: Int64 = 10_000
}

extension ReplicaRuntime {
    // MARK: Reading

    /// The membership as this node sees it: the configuration in force, and each member's replication when this
    /// node leads.
    public var membershipView: MembershipView {
        let configuration = raft.configuration
        let progress = Dictionary(uniqueKeysWithValues: raft.memberProgress.map { ($0.id, $0) })
        let isLeader = raft.currentRole == .leader
        let members = configuration.members.map { id -> MemberView in
            let mine = id == config.raft.id
            return MemberView(
                id: id, address: address(of: id), isVoter: configuration.isVoter(id),
                matchIndex: isLeader ? (mine ? raft.lastIndex : progress[id]?.matchIndex) : nil,
                lagEntries: isLeader ? (mine ? 0 : progress[id]?.lag) : nil)
        }
        let index = configurationIndex
        return MembershipView(
            members: members, leader: raft.knownLeader, configurationIndex: index,
            committed: index <= raft.commitIndex, isMember: configuration.contains(config.raft.id),
            isJoining: isJoining)
    }

    /// The members as the leader sees them (with every member's match index and lag), and how old that is: this
    /// node's own view when it leads, else the last one fetched from the leader (nil until one arrives). Asking keeps
    /// it fetched, once a second, for the next 10 s.
    public var leaderMembershipView: (view: MembershipView, ageMs: Int64)? {
        let now = clock.nowMs()
        if raft.currentRole == .leader { return (membershipView, 0) }
        membership.leaderViewWantedUntilMs = now + 10_000
        guard let fetched = membership.leaderView, fetched.view.leader == raft.knownLeader else { return nil }
        return (fetched.view, max(0, now - fetched.receivedAtMs))
    }

    private func fetchLeaderView(nowMs: Int64) {
        guard raft.currentRole != .leader, nowMs < membership.leaderViewWantedUntilMs,
            nowMs - membership.lastLeaderViewRequestMs >= 1000, let leader = raft.knownLeader
        else { return }
        membership.lastLeaderViewRequestMs = nowMs
        reply(.viewRequest(id: 0), to: leader)
    }

    /// The index of the entry holding the configuration in force (the log base's index when none after it).
    var configurationIndex: UInt64 { raft.configurationIndex }

    /// Whether this node waits to be admitted to a cluster (`TANDEM_JOIN`).
    public var isJoining: Bool {
        switch membership.join {
        case .notJoining, .admitted: false
        default: true
        }
    }

    /// Whether this node was removed from the cluster: a member said so, or the configuration in force names
    /// others but not it.
    public var isRemoved: Bool {
        membership.removal != nil
            || (!isJoining && !raft.configuration.contains(config.raft.id) && !raft.configuration.members.isEmpty)
    }

    static func removalMarkerPath(_ dataDirectory: String) -> String { dataDirectory + "/removed" }

    /// The removal recorded by an earlier run, if any (read once at start).
    static func recordedRemoval(_ dataDirectory: String) -> (index: UInt64, configuration: ClusterConfiguration)? {
        guard let data = FileManager.default.contents(atPath: removalMarkerPath(dataDirectory)), data.count > 8
        else { return nil }
        let bytes = [UInt8](data)
        let index = bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard let configuration = ClusterConfiguration(decoding: Array(bytes[8...])) else { return nil }
        return (index, configuration)
    }

    /// A member told this node that a committed configuration leaves it out: it stops taking part (no ticks, no
    /// consensus messages), records that on disk so that a restart on the same data stays out, and says so.
    private func noteRemoval(at index: UInt64, configuration: ClusterConfiguration, from peer: NodeID) {
        // Only a voter of a later committed configuration that leaves this node out speaks for the cluster (a
        // joining node, whose own configuration has no voters, never does).
        guard membership.removal == nil, !isJoining, !configuration.contains(config.raft.id),
            configuration.isVoter(peer), index > configurationIndex
        else { return }
        membership.removal = (index, configuration)
        raft.stepDownAsRemoved(nowMs: clock.nowMs())
        scheduleReady()
        var bytes = withUnsafeBytes(of: index.littleEndian) { [UInt8]($0) }
        bytes += configuration.encoded
        let path = Self.removalMarkerPath(config.dataDirectory)
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
            let fd = open(path, O_RDONLY)
            if fd >= 0 {
                fsync(fd)
                close(fd)
            }
        } catch {
            log.error("cannot record the removal on disk", metadata: ["error": "\(error)"])
        }
        log.warning(
            "removed from the cluster: this node takes no part any more; wipe its data directory to join again",
            metadata: ["configuration": "\(configuration)", "index": "\(index)", "toldBy": "\(peer)"])
    }

    /// A stranger sent consensus traffic: a member removed while it was away (or that never heard its removal
    /// commit). Told once a second at most, with the committed configuration that leaves it out.
    func noticeStranger(_ peer: NodeID) {
        guard membership.removal == nil, !isJoining, raft.committedConfiguration.isVoter(config.raft.id),
            !raft.committedConfiguration.contains(peer), !raft.configuration.contains(peer)
        else { return }
        let now = clock.nowMs()
        if let last = membership.noticesSentMs[peer], now - last < 1000 { return }
        if membership.noticesSentMs.count >= 64 { membership.noticesSentMs.removeAll() }
        membership.noticesSentMs[peer] = now
        reply(.done(id: 0, configurationIndex: raft.commitIndex, configuration: raft.committedConfiguration), to: peer)
    }

    /// The peer address of `id`: the configuration's, else this node's settings'.
    func address(of id: NodeID) -> String? {
        if id == config.raft.id { return config.advertisedAddress }
        return raft.configuration.addresses[id] ?? config.peers.first { $0.id == id }?.address
    }

    // MARK: Asking for a change

    /// Asks for `change` (with the peer `address` of a member added): carried out here when this node leads, else
    /// relayed to the leader. `completion` runs once on the loop thread with the configuration and the index of its
    /// entry once committed, or why not. A timeout (`timeout`, retryable) does not mean the change will not happen.
    public func changeMembership(
        _ change: MembershipChange, address: String? = nil,
        completion: @escaping (Result<(UInt64, ClusterConfiguration), MembershipRefusal>) -> Void
    ) {
        clock.assertOnOwnThread()
        let operation: MembershipOperation
        let member: NodeID
        switch change {
        case .addLearner(let id): (operation, member) = (.addLearner, id)
        case .promote(let id): (operation, member) = (.promote, id)
        case .remove(let id): (operation, member) = (.remove, id)
        }
        perform(operation, member: member, address: address, completion: completion)
    }

    private func perform(
        _ operation: MembershipOperation, member: NodeID, address: String?,
        completion: @escaping (Result<(UInt64, ClusterConfiguration), MembershipRefusal>) -> Void
    ) {
        guard membership.waiters.count < MembershipState.maxWaiters else {
            completion(.failure(MembershipRefusal(code: "change_in_progress", message: "too many", retryable: true)))
            return
        }
        if raft.currentRole == .leader {
            performAsLeader(operation, member: member, address: address, completion: completion)
            return
        }
        let request = MembershipFrames.encode(
            .request(id: membership.nextRequestID, operation: operation, member: member, address: address))
        guard let leader = raft.knownLeader,
            [.queued, .queuedAboveHighWaterMark].contains(
                messenger.send(type: request.type, payload: request.payload, to: leader))
        else {
            completion(.failure(refusalNoLeader()))
            return
        }
        let id = membership.nextRequestID
        membership.nextRequestID += 1
        assert(id > 0, "request id 0 is the removal notice")
        membership.waiters[id] = MembershipState.Waiter(
            kind: .relayed, deadlineMs: clock.nowMs() + MembershipState.answerTimeoutMs, completion: completion)
    }

    private func performAsLeader(
        _ operation: MembershipOperation, member: NodeID, address: String?,
        completion: @escaping (Result<(UInt64, ClusterConfiguration), MembershipRefusal>) -> Void
    ) {
        let change: MembershipChange
        switch operation {
        case .addLearner: change = .addLearner(member)
        case .promote: change = .promote(member)
        case .remove: change = .remove(member)
        case .join:
            // A joiner that asks again (it restarted before it heard the answer) is answered with what holds it.
            let committed = raft.committedConfiguration
            if committed.contains(member) {
                guard committed.addresses[member] == address else {
                    completion(
                        .failure(
                            MembershipRefusal(
                                code: "already_member",
                                message: "\(member) is already a member at another address; remove it first",
                                retryable: false)))
                    return
                }
                completion(.success((raft.commitIndex, committed)))
                return
            }
            change = .addLearner(member)
        }
        // The core bounds what a configuration entry may carry; an address is parsed here as every dial will
        // parse it, so no member is added with an address nobody can reach.
        guard address != nil || operation != .join,
            address.map({ PeerEndpoint(id: member, address: $0) != nil }) ?? true
        else {
            completion(.failure(MembershipRefusal(.invalidAddress)))
            return
        }
        do throws(MembershipError) {
            let index = try raft.proposeMembershipChange(change, address: address, nowMs: clock.nowMs())
            let id = membership.nextRequestID
            membership.nextRequestID += 1
            membership.waiters[id] = MembershipState.Waiter(
                kind: .commit(index: index, expected: raft.configuration),
                deadlineMs: clock.nowMs() + MembershipState.answerTimeoutMs, completion: completion)
            log.info("membership change appended", metadata: ["change": "\(change)", "index": "\(index)"])
            scheduleReady()
        } catch {
            completion(.failure(MembershipRefusal(error)))
        }
    }

    private func refusalNoLeader() -> MembershipRefusal {
        MembershipRefusal(code: "no_leader", message: "no leader is known right now", retryable: true)
    }

    // MARK: After each Ready and tick

    /// Answers the changes whose entries committed (or were replaced), times out the old ones, keeps the address
    /// book equal to the configuration, and (leader) promotes a caught-up learner.
    func tickMembership() {
        let now = clock.nowMs()
        for (id, waiter) in membership.waiters {
            switch waiter.kind {
            case .commit(let index, let expected):
                if raft.commitIndex >= index {
                    membership.waiters.removeValue(forKey: id)
                    let atIndex = raft.configuration(at: index)
                    if atIndex == nil || atIndex == expected {
                        waiter.completion(.success((index, atIndex ?? raft.committedConfiguration)))
                    } else {
                        waiter.completion(
                            .failure(
                                MembershipRefusal(
                                    code: "lost", message: "the change was overwritten by a new leader's log",
                                    retryable: true)))
                    }
                    continue
                }
            case .relayed:
                break
            }
            if now >= waiter.deadlineMs {
                membership.waiters.removeValue(forKey: id)
                waiter.completion(
                    .failure(
                        MembershipRefusal(
                            code: "timeout",
                            message: "no commit within \(MembershipState.answerTimeoutMs / 1000) s; it may still "
                                + "happen: check GET /members", retryable: true)))
            }
        }
        syncAddressBook()
        promoteCaughtUpLearner(nowMs: now)
        tickJoin(nowMs: now)
        fetchLeaderView(nowMs: now)
    }

    /// Points the transport at the members of the configuration in force, those of the committed one, and the
    /// leader. A member being removed stays reachable until its removal commits, and a leader until it is no longer
    /// the leader: a removed leader must still reach the others to commit its own removal and hand off.
    func syncAddressBook() {
        // Read in place: each getter called on `raft` directly would copy the whole core first (this runs on
        // every tick).
        let (configuration, committed, leader) = withRaftInPlace {
            ($0.configuration, $0.committedConfiguration, $0.knownLeader)
        }
        if let sources = membership.bookSources, sources.configuration == configuration,
            sources.committed == committed, sources.leader == leader
        {
            return
        }
        let previous = membership.bookConfiguration
        membership.bookSources = (configuration, committed, leader)
        var ids = Set(configuration.members).union(committed.members)
        if let leader { ids.insert(leader) }
        ids.remove(config.raft.id)
        var endpoints: [PeerEndpoint] = []
        for id in ids.sorted() {
            let text = configuration.addresses[id] ?? committed.addresses[id]
            if let text, let endpoint = PeerEndpoint(id: id, address: text) {
                endpoints.append(endpoint)
            } else if let configured = config.peers.first(where: { $0.id == id }) {
                endpoints.append(configured)
            } else if let known = membership.book?.first(where: { $0.id == id }) {
                endpoints.append(known)
            } else {
                log.error("a member has no known address; it cannot be reached", metadata: ["member": "\(id)"])
            }
        }
        if endpoints != membership.book {
            membership.book = endpoints
            messenger.setPeers(endpoints)
        }
        guard configuration != previous else { return }
        if previous != nil {
            log.info(
                "membership changed", metadata: ["configuration": "\(configuration)", "self": "\(config.raft.id)"])
        }
        if isRemoved {
            log.warning(
                "this node is no longer a member of the cluster: it takes no part and reports not ready; to join again, wipe its data directory and start it with TANDEM_JOIN"
            )
        }
    }

    private func promoteCaughtUpLearner(nowMs: Int64) {
        guard config.promotion.enabled, raft.currentRole == .leader else {
            membership.promotion = nil
            membership.leaderSinceMs = nil
            return
        }
        if membership.leaderSinceMs == nil { membership.leaderSinceMs = nowMs }
        guard nowMs - membership.lastPromotionCheckMs >= config.promotion.checkEveryMs else { return }
        membership.lastPromotionCheckMs = nowMs
        if membership.promotion == nil {
            membership.promotion = LearnerPromotionPolicy(
                maxLag: config.promotion.maxLagEntries, stabilizationMs: config.promotion.stableForMs)
        }
        // A learner not heard from lately counts as lagging, whatever its last match index said.
        let heard = raft.memberProgress.map { member -> MemberProgress in
            var member = member
            if nowMs - member.lastHeardMs > config.promotion.heardWithinMs { member.lag = .max }
            return member
        }
        if removeDeadMember(nowMs: nowMs) { return }
        guard let learner = membership.promotion?.observe(heard, nowMs: nowMs) else { return }
        do throws(MembershipError) {
            let index = try raft.proposeMembershipChange(.promote(learner), nowMs: nowMs)
            log.info("promoting a caught-up learner", metadata: ["member": "\(learner)", "index": "\(index)"])
            scheduleReady()
        } catch {
            // Another change is in progress, or the leader is new: the next observation tries again.
        }
    }

    /// Removes one member the leader has not heard from for `removeDeadAfterMs` (opt-in), learners first, a
    /// voter only while at least `removeDeadMinVoters` remain. True when a removal was appended.
    private func removeDeadMember(nowMs: Int64) -> Bool {
        let after = config.promotion.removeDeadAfterMs
        guard after > 0, let since = membership.leaderSinceMs, nowMs - since >= after else { return false }
        let configuration = raft.configuration
        let dead = raft.memberProgress.filter { nowMs - $0.lastHeardMs >= after }
            .sorted { ($0.isVoter ? 1 : 0, $0.id) < ($1.isVoter ? 1 : 0, $1.id) }
        for member in dead {
            if member.isVoter && configuration.voters.count - 1 < config.promotion.removeDeadMinVoters { continue }
            do throws(MembershipError) {
                let index = try raft.proposeMembershipChange(.remove(member.id), nowMs: nowMs)
                log.warning(
                    "removing a member not heard from for TANDEM_REMOVE_DEAD_AFTER",
                    metadata: [
                        "member": "\(member.id)", "silentMs": "\(nowMs - member.lastHeardMs)", "index": "\(index)",
                    ])
                scheduleReady()
                return true
            } catch {
                return false
            }
        }
        return false
    }

    // MARK: Frames

    /// A membership frame from a peer, or from a stranger (a node asking to join).
    func receiveMembershipFrame(type: UInt8, payload: UnsafeRawBufferPointer, from peer: NodeID, isStranger: Bool) {
        guard let frame = MembershipFrames.decode(type: type, payload: payload) else {
            noteUndecodableFrame()
            log.warning("an undecodable membership frame", metadata: ["peer": "\(peer)"])
            return
        }
        switch frame {
        case .request(let id, let operation, let member, let address):
            // A stranger may only ask to join, and only as itself.
            if isStranger && (operation != .join || member != peer) { return }
            guard raft.currentRole == .leader else {
                let leader = raft.knownLeader
                var refusal = leader == nil ? refusalNoLeader() : MembershipRefusal(.notLeader)
                refusal.leader = leader
                refusal.leaderAddress = leader.flatMap { self.address(of: $0) }
                reply(.refused(id: id, refusal), to: peer)
                return
            }
            perform(operation, member: member, address: address) { [weak self] outcome in
                switch outcome {
                case .success(let (index, configuration)):
                    self?.reply(.done(id: id, configurationIndex: index, configuration: configuration), to: peer)
                case .failure(let refusal):
                    self?.reply(.refused(id: id, refusal), to: peer)
                }
            }
        case .done(let id, let index, let configuration):
            if case .asking(_, let asked, _) = membership.join, asked == id {
                admitted(configuration, at: index)
            } else if id == 0 {
                noteRemoval(at: index, configuration: configuration, from: peer)
            } else if let waiter = membership.waiters.removeValue(forKey: id) {
                waiter.completion(.success((index, configuration)))
            }
        case .refused(let id, let refusal):
            if case .asking(_, let asked, _) = membership.join, asked == id {
                joinRefused(refusal)
            } else if let waiter = membership.waiters.removeValue(forKey: id) {
                waiter.completion(.failure(refusal))
            }
        case .viewRequest(let id):
            guard !isStranger, raft.currentRole == .leader else { return }
            reply(.view(id: id, membershipView), to: peer)
        case .view(_, let view):
            guard !isStranger, view.leader == peer else { return }
            membership.leaderView = (view, clock.nowMs())
        }
    }

    private func reply(_ frame: MembershipFrame, to peer: NodeID) {
        let (type, payload) = MembershipFrames.encode(frame)
        _ = messenger.send(type: type, payload: payload, to: peer)
    }

    // MARK: Joining

    /// At start: a founder with no state records the founding configuration (so that a later `TANDEM_PEERS` can
    /// never silently replace it), a node whose persisted membership differs from its settings says so, and a node
    /// with no state and a way to join starts asking to be admitted.
    func startMembership() {
        if config.join == nil, raft.hasEmptyLog, !hasRecordedConfiguration, membership.removal == nil {
            recordEmptyLogBase(raft.configuration)
        } else if !config.peers.isEmpty, hasRecordedConfiguration || configurationIndex > 0 {
            let settings = Set(config.peers.map(\.id) + [config.raft.id])
            if settings != Set(raft.configuration.members) {
                log.warning(
                    "TANDEM_PEERS differs from the membership this node persisted; the persisted one is in force (change members with tandem members, not TANDEM_PEERS)",
                    metadata: [
                        "persisted": "\(raft.configuration)",
                        "TANDEM_PEERS": "\(settings.sorted().map(\.rawValue).joined(separator: ","))",
                    ])
            }
        }
        startJoiningIfNeeded()
    }

    /// Persists `configuration` as the base of this node's empty log (index 0, term 0), the way a compaction
    /// records the configuration at its base: a founder's first membership and a joiner's admission survive a
    /// restart, and the node never falls back to `TANDEM_PEERS` afterwards.
    private func recordEmptyLogBase(_ configuration: ClusterConfiguration) {
        precondition(raft.hasEmptyLog, "only an empty log's base is replaced")
        var job = PersistJob()
        job.logBase = .reset(StoredLogBase(index: 0, term: 0, configuration: configuration.encoded))
        disk.submit(job) { [unowned self] outcome in self.recordDisk(outcome) }
    }

    /// Starts asking to be admitted when this node has no state and a way to join.
    private func startJoiningIfNeeded() {
        guard let join = config.join else { return }
        guard raft.hasEmptyLog, !hasRecordedConfiguration else {
            log.info("TANDEM_JOIN is set but this node already has a log: it starts from its persisted membership")
            return
        }
        log.info("joining a cluster", metadata: ["advertise": "\(join.advertiseAddress)"])
        membership.join = .waiting(untilMs: clock.nowMs())
    }

    private func tickJoin(nowMs: Int64) {
        guard let join = config.join else { return }
        switch membership.join {
        case .notJoining, .admitted, .resolving:
            return
        case .waiting(let untilMs):
            guard nowMs >= untilMs else { return }
            if let redirect = membership.joinRedirect {
                membership.joinRedirect = nil
                dialJoinTarget(redirect, nowMs: nowMs)
                return
            }
            if membership.nextJoinTarget < membership.joinTargets.count {
                let target = membership.joinTargets[membership.nextJoinTarget]
                membership.nextJoinTarget += 1
                dialJoinTarget(target, nowMs: nowMs)
                return
            }
            membership.join = .resolving
            let resolve = join.resolveTargets
            runInBackground(resolve) { [weak self] targets in
                guard let self, !self.stopped, self.membership.join == .resolving else { return }
                self.membership.joinTargets = targets.filter { $0.address != join.advertiseAddress }
                self.membership.nextJoinTarget = 0
                if self.membership.joinTargets.isEmpty {
                    self.complainAboutJoin("TANDEM_JOIN names no member to ask (nothing resolved)")
                    self.membership.join = .waiting(untilMs: self.clock.nowMs() + join.retryMs)
                } else {
                    self.membership.join = .waiting(untilMs: self.clock.nowMs())
                }
            }
        case .dialing(let sinceMs):
            if nowMs - sinceMs > join.answerTimeoutMs { membership.join = .waiting(untilMs: nowMs + join.retryMs) }
        case .asking(_, _, let sinceMs):
            if nowMs - sinceMs > join.answerTimeoutMs {
                complainAboutJoin("a member did not answer the request to join in time")
                membership.join = .waiting(untilMs: nowMs + join.retryMs)
            }
        }
    }

    private func dialJoinTarget(_ target: PeerEndpoint, nowMs: Int64) {
        membership.join = .dialing(sinceMs: nowMs)
        messenger.dialStranger(host: target.host, port: target.port)
    }

    /// An authenticated link to a member this node dialled without knowing its id (or a link from a stranger).
    func strangerConnected(_ peer: NodeID) {
        guard case .dialing = membership.join, let join = config.join else { return }
        let id = membership.nextRequestID
        membership.nextRequestID += 1
        membership.join = .asking(member: peer, requestID: id, sinceMs: clock.nowMs())
        reply(
            .request(id: id, operation: .join, member: config.raft.id, address: join.advertiseAddress), to: peer)
    }

    func strangerDialFailed(host: String, port: UInt16, reason: String) {
        guard case .dialing = membership.join, let join = config.join else { return }
        complainAboutJoin("cannot reach \(host):\(port) to join: \(reason)")
        membership.join = .waiting(untilMs: clock.nowMs() + min(join.retryMs, 200))
    }

    private func joinRefused(_ refusal: MembershipRefusal) {
        guard let join = config.join else { return }
        if let leader = refusal.leader, let text = refusal.leaderAddress,
            let endpoint = PeerEndpoint(id: leader, address: text)
        {
            membership.joinRedirect = endpoint
            membership.join = .waiting(untilMs: clock.nowMs())
            return
        }
        complainAboutJoin("the cluster refused to admit this node: \(refusal.message) (\(refusal.code))")
        membership.join = .waiting(untilMs: clock.nowMs() + join.retryMs)
    }

    private func complainAboutJoin(_ what: String) {
        let now = clock.nowMs()
        guard now - membership.lastJoinComplaintMs >= 5000 else { return }
        membership.lastJoinComplaintMs = now
        log.warning("\(what); retrying", metadata: [:])
    }

    private func admitted(_ configuration: ClusterConfiguration, at index: UInt64) {
        guard configuration.contains(config.raft.id) else {
            joinRefused(MembershipRefusal(code: "lost", message: "admitted without this node", retryable: true))
            return
        }
        guard raft.adoptAdmittedConfiguration(configuration) else {
            // The leader's appends got here first (they carry the configuration): nothing to adopt.
            membership.join = .admitted
            return
        }
        membership.join = .admitted
        recordEmptyLogBase(configuration)
        log.info(
            "admitted to the cluster as a learner",
            metadata: ["configuration": "\(configuration)", "index": "\(index)"])
        syncAddressBook()
        scheduleReady()
    }
}

extension PeerEndpoint {
    /// An endpoint from `host:port` as the configuration's addresses accept it (`HostPort`: a DNS name, an IPv4
    /// literal or a bracketed IPv6 one, unbracketed here) with a port other than 0; nil when the text is not that.
    public init?(id: NodeID, address: String) {
        guard let parsed = try? HostPort(parsing: address), parsed.port > 0 else { return nil }
        self.init(id: id, host: parsed.host, port: parsed.port)
    }
}
