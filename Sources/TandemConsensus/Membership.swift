// Cluster membership: which nodes vote and which only follow, carried in the log itself.
//
// A configuration lives in a `.configuration` entry and takes effect on a node as soon as the entry is in its log
// (appended, not committed); a node whose entry is truncated falls back to the configuration before it. Changes are
// single-server: each adds a learner, promotes one, or removes one member, so any majority of the old voters meets
// any majority of the new ones. A leader accepts a change only when no other change is uncommitted and it has
// committed an entry of its own term: without the second rule two leaders of different terms could each append a
// change from the same committed configuration, and the two new configurations would be two steps apart (the bug
// Ongaro reported to raft-dev in 2015).

/// The members of the cluster at one point of the log: voters elect, commit and confirm reads; learners receive the
/// log (appends and snapshots) but never vote, never count towards a quorum and never campaign.
public struct ClusterConfiguration: Hashable, Sendable, CustomStringConvertible {
    /// Sorted and distinct.
    public let voters: [NodeID]
    /// Sorted, distinct, and disjoint from `voters`.
    public let learners: [NodeID]
    /// Where each member's peer listener is (`host:port`), as the runtime dials it; the core only carries it, so
    /// that every node, whoever leads, can reach a member added at run time. A member may have none (its address
    /// comes from the node's own settings then). Invariant: keys are members, values `isWellFormedAddress`.
    public let addresses: [NodeID: String]

    /// A configuration; ids are sorted and deduplicated, an id listed as both is a voter, and addresses of
    /// non-members are dropped.
    public init(voters: [NodeID], learners: [NodeID] = [], addresses: [NodeID: String] = [:]) {
        let voterSet = Set(voters)
        self.voters = voterSet.sorted()
        self.learners = Set(learners).subtracting(voterSet).sorted()
        let members = voterSet.union(learners)
        self.addresses = addresses.filter { members.contains($0.key) }
    }

    /// This configuration with `address` recorded for the member `id`.
    public func settingAddress(_ address: String, of id: NodeID) -> ClusterConfiguration {
        var updated = addresses
        updated[id] = address
        return ClusterConfiguration(voters: voters, learners: learners, addresses: updated)
    }

    /// Whether `address` is one a configuration carries: `host:port` (host a name, an IPv4 literal or a bracketed
    /// IPv6 literal), 1...255 printable ASCII bytes without spaces, commas or quotes, and a port of 1...65535.
    public static func isWellFormedAddress(_ address: String) -> Bool {
        let bytes = Array(address.utf8)
        guard (3...255).contains(bytes.count),
            bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ",") && $0 != UInt8(ascii: "\"") }),
            let colon = bytes.lastIndex(of: UInt8(ascii: ":")), colon > 0,
            let port = UInt16(String(decoding: bytes[(colon + 1)...], as: UTF8.self)), port > 0
        else { return false }
        return true
    }

    /// Every member, voters first.
    public var members: [NodeID] { voters + learners }
    public func isVoter(_ id: NodeID) -> Bool { voters.contains(id) }
    public func isLearner(_ id: NodeID) -> Bool { learners.contains(id) }
    public func contains(_ id: NodeID) -> Bool { isVoter(id) || isLearner(id) }

    /// The number of voters whose agreement decides.
    public var quorum: Int { voters.count / 2 + 1 }

    /// Whether `agreeing` (any set of nodes) holds a quorum of the voters; non-voters in it count for nothing.
    public func isQuorum(_ agreeing: Set<NodeID>) -> Bool {
        isQuorum(where: agreeing.contains)
    }

    /// Whether the voters for which `agrees` is true make a quorum. Counts in place: a leader asks it on every tick.
    public func isQuorum(where agrees: (NodeID) -> Bool) -> Bool {
        var count = 0
        for voter in voters where agrees(voter) { count += 1 }
        return count >= quorum
    }

    /// Whether every majority of these voters shares a voter with every majority of `other`'s. Always true for
    /// two configurations one single-server change apart; the simulator checks it between leaders and commits.
    public func majoritiesIntersect(_ other: ClusterConfiguration) -> Bool {
        let mine = Set(voters), theirs = Set(other.voters)
        let shared = mine.intersection(theirs).count
        // The fewest shared voters a majority of each must take: what its own side's others cannot fill.
        let needMine = max(0, quorum - (mine.count - shared))
        let needTheirs = max(0, other.quorum - (theirs.count - shared))
        return needMine + needTheirs > shared
    }

    /// The configuration after `change`, or why it cannot follow this one.
    public func applying(_ change: MembershipChange, minimumVoters: Int) throws(MembershipError) -> ClusterConfiguration
    {
        switch change {
        case .addLearner(let id):
            guard id.isWellFormed else { throw .invalidMember }
            guard !contains(id) else { throw .alreadyMember }
            return ClusterConfiguration(voters: voters, learners: learners + [id], addresses: addresses)
        case .promote(let id):
            guard contains(id) else { throw .unknownMember }
            guard isLearner(id) else { throw .alreadyVoter }
            return ClusterConfiguration(
                voters: voters + [id], learners: learners.filter { $0 != id }, addresses: addresses)
        case .remove(let id):
            guard contains(id) else { throw .unknownMember }
            if isVoter(id) && voters.count - 1 < max(1, minimumVoters) { throw .wouldGoBelowMinimum }
            return ClusterConfiguration(
                voters: voters.filter { $0 != id }, learners: learners.filter { $0 != id }, addresses: addresses)
        }
    }

    public var description: String {
        "voters [\(voters.map(\.rawValue).joined(separator: ","))]"
            + (learners.isEmpty ? "" : " learners [\(learners.map(\.rawValue).joined(separator: ","))]")
    }

    // MARK: Encoding (the data of a `.configuration` entry; stable on disk and on the wire)
    //
    // version u8 (1 or 2), voter count u16, voters (u16 length + UTF-8 each), learner count u16, learners; version 2
    // then has an address count u16 and that many (id, address) pairs, each a u16 length + UTF-8, sorted by id.
    // Version 1 (no addresses) is written when there are none, so configurations without them encode as before.

    static let encodingVersion: UInt8 = 1
    static let encodingVersionWithAddresses: UInt8 = 2

    /// The bytes of a `.configuration` entry's data.
    public var encoded: [UInt8] {
        var bytes: [UInt8] = [addresses.isEmpty ? Self.encodingVersion : Self.encodingVersionWithAddresses]
        func string(_ text: String) {
            let utf8 = Array(text.utf8)
            bytes.append(contentsOf: [UInt8(utf8.count >> 8), UInt8(utf8.count & 0xFF)])
            bytes.append(contentsOf: utf8)
        }
        for list in [voters, learners] {
            bytes.append(contentsOf: [UInt8(list.count >> 8), UInt8(list.count & 0xFF)])
            for id in list { string(id.rawValue) }
        }
        if !addresses.isEmpty {
            bytes.append(contentsOf: [UInt8(addresses.count >> 8), UInt8(addresses.count & 0xFF)])
            for (id, address) in addresses.sorted(by: { $0.key < $1.key }) {
                string(id.rawValue)
                string(address)
            }
        }
        return bytes
    }

    /// Decodes `encoded`; nil unless the bytes are exactly one well-formed configuration (known version, well
    /// formed ids and addresses, sorted and distinct lists, no id in both, addresses only of members, nothing
    /// left over).
    public init?(decoding bytes: [UInt8]) {
        var offset = 0
        func u16() -> Int? {
            guard offset + 2 <= bytes.count else { return nil }
            defer { offset += 2 }
            return Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
        }
        func list() -> [NodeID]? {
            guard let count = u16() else { return nil }
            var ids: [NodeID] = []
            for _ in 0..<count {
                guard let length = u16(), offset + length <= bytes.count else { return nil }
                let id = NodeID(String(decoding: bytes[offset..<offset + length], as: UTF8.self))
                offset += length
                guard id.isWellFormed, ids.last.map({ $0 < id }) ?? true else { return nil }
                ids.append(id)
            }
            return ids
        }
        guard let version = bytes.first,
            version == Self.encodingVersion || version == Self.encodingVersionWithAddresses
        else { return nil }
        offset = 1
        guard let voters = list(), let learners = list(), Set(voters).isDisjoint(with: learners) else { return nil }
        var addresses: [NodeID: String] = [:]
        if version == Self.encodingVersionWithAddresses {
            let members = Set(voters).union(learners)
            guard let count = u16(), count > 0 else { return nil }
            var previous: NodeID?
            for _ in 0..<count {
                guard let idLength = u16(), offset + idLength <= bytes.count else { return nil }
                let id = NodeID(String(decoding: bytes[offset..<offset + idLength], as: UTF8.self))
                offset += idLength
                guard let length = u16(), offset + length <= bytes.count else { return nil }
                let address = String(decoding: bytes[offset..<offset + length], as: UTF8.self)
                offset += length
                guard members.contains(id), previous.map({ $0 < id }) ?? true,
                    Self.isWellFormedAddress(address)
                else { return nil }
                previous = id
                addresses[id] = address
            }
        }
        guard offset == bytes.count else { return nil }
        self.voters = voters
        self.learners = learners
        self.addresses = addresses
    }
}

extension Entry {
    /// The configuration a `.configuration` entry carries; nil for other kinds and for undecodable data.
    public var configuration: ClusterConfiguration? {
        kind == .configuration ? ClusterConfiguration(decoding: data) : nil
    }
}

/// One single-server change of the configuration.
public enum MembershipChange: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Adds a node that receives the log but does not vote (yet).
    case addLearner(NodeID)
    /// Makes a learner a voter.
    case promote(NodeID)
    /// Removes a voter or a learner.
    case remove(NodeID)

    public var description: String {
        switch self {
        case .addLearner(let id): "add learner \(id)"
        case .promote(let id): "promote \(id)"
        case .remove(let id): "remove \(id)"
        }
    }
}

/// Why a membership change was refused. A refused change was not appended to any log.
public enum MembershipError: Error, Equatable, Sendable {
    /// Only the leader accepts changes (they are not forwarded).
    case notLeader
    /// An earlier change is not committed yet: one change at a time.
    case changeInProgress
    /// This leader has not committed an entry of its own term yet (the fix for the single-server change bug).
    case notYetCommittedInTerm
    /// The leader is handing off leadership.
    case leadershipTransferInProgress
    /// The node named is not a member.
    case unknownMember
    /// The node to add is already a member.
    case alreadyMember
    /// The node to promote is already a voter.
    case alreadyVoter
    /// The id is not one a configuration allows (`NodeID.isWellFormed`).
    case invalidMember
    /// Removing this voter would leave fewer than `RaftConfig.minimumVoters`.
    case wouldGoBelowMinimum
    /// The address given for the member is not `host:port` (`ClusterConfiguration.isWellFormedAddress`).
    case invalidAddress
}

/// How far one member's log is behind the leader's (leader only), for an operator or an autopilot.
public struct MemberProgress: Equatable, Sendable {
    public var id: NodeID
    public var isVoter: Bool
    /// The highest index known to be on the member's log.
    public var matchIndex: UInt64
    /// Entries the member lacks: the leader's last index minus `matchIndex`.
    public var lag: UInt64
    /// When the leader last heard from it, on the leader's clock.
    public var lastHeardMs: Int64

    public init(id: NodeID, isVoter: Bool, matchIndex: UInt64, lag: UInt64, lastHeardMs: Int64) {
        self.id = id
        self.isVoter = isVoter
        self.matchIndex = matchIndex
        self.lag = lag
        self.lastHeardMs = lastHeardMs
    }
}

/// A small autopilot policy: a learner is promoted once its lag has stayed at or below `maxLag` for
/// `stabilizationMs`, one at a time. Pure: feed it the leader's `memberProgress` with the time; it answers which
/// learner to promote now, if any (the caller proposes it and calls again later; a refused proposal is simply
/// retried on a later observation).
public struct LearnerPromotionPolicy: Sendable {
    public var maxLag: UInt64
    public var stabilizationMs: Int64
    /// Since when each learner has been continuously within `maxLag`.
    public private(set) var withinLagSinceMs: [NodeID: Int64] = [:]

    public init(maxLag: UInt64, stabilizationMs: Int64) {
        precondition(stabilizationMs >= 0, "a negative stabilization time")
        self.maxLag = maxLag
        self.stabilizationMs = stabilizationMs
    }

    /// Records an observation; returns the learner to promote (the one stable longest, then the smallest id).
    public mutating func observe(_ members: [MemberProgress], nowMs: Int64) -> NodeID? {
        var since: [NodeID: Int64] = [:]
        for member in members where !member.isVoter && member.lag <= maxLag {
            since[member.id] = withinLagSinceMs[member.id] ?? nowMs
        }
        withinLagSinceMs = since
        return since.filter { nowMs - $0.value >= stabilizationMs }
            .min { ($0.value, $0.key) < ($1.value, $1.key) }?.key
    }
}
