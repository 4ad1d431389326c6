// The peer frames of membership requests: a member (or a node asking to join) asks the leader for a change, and
// hears back once the change is committed, or why not.
//
// Wire format (little-endian; strings are a u16 length and UTF-8):
//   0x38 request  = requestID u64, op u8 (1 add learner, 2 promote, 3 remove, 4 join), id string, address string
//                   (empty: none)
//   0x39 response = requestID u64, outcome u8 (0 done, 1 refused), then
//                   done:    configurationIndex u64, configuration (u32 length + `ClusterConfiguration.encoded`)
//                   refused: code string, message string, retryable u8, leader id string (empty: unknown),
//                            leader address string (empty: unknown)
//   0x3A view request = requestID u64 (a member asks the leader how it sees the members)
//   0x3B view         = requestID u64, leader id string (empty: none), configurationIndex u64, committed u8,
//                       member count u16, then per member: id string, address string (empty: unknown), voter u8,
//                       matchIndex (u8 known + u64), lagEntries (u8 known + u64)
// Every string is bounded (`MembershipFrames.stringMax`), the configuration by `configurationMax`; a frame that
// breaks any rule, or has bytes left over, does not decode.

import TandemConsensus

/// What a membership request asks for.
public enum MembershipOperation: UInt8, Sendable {
    case addLearner = 1
    case promote = 2
    case remove = 3
    /// A node with no state asks to be added as a learner. Unlike `addLearner`, asking again (a joiner that
    /// restarted before it heard the answer) is answered with the configuration that already holds it, as long
    /// as the address is the same.
    case join = 4
}

/// Why a membership change did not happen, in the terms the admin API answers with.
public struct MembershipRefusal: Error, Equatable, Sendable {
    /// A stable code: `not_leader`, `no_leader`, `change_in_progress`, `already_member`, `already_voter`,
    /// `unknown_member`, `invalid_member`, `invalid_address`, `below_minimum`, `timeout`, `lost`, `not_replicated`.
    public var code: String
    public var message: String
    /// Whether the same request may succeed later unchanged.
    public var retryable: Bool
    /// The leader, when this node knows it (a node that is not the leader says who is).
    public var leader: NodeID?
    public var leaderAddress: String?

    public init(
        code: String, message: String, retryable: Bool, leader: NodeID? = nil, leaderAddress: String? = nil
    ) {
        self.code = code
        self.message = message
        self.retryable = retryable
        self.leader = leader
        self.leaderAddress = leaderAddress
    }

    /// The refusal for a change the core would not append.
    public init(_ error: MembershipError) {
        switch error {
        case .notLeader:
            self.init(code: "not_leader", message: "this node is not the leader", retryable: true)
        case .changeInProgress:
            self.init(
                code: "change_in_progress", message: "another membership change is not committed yet",
                retryable: true)
        case .notYetCommittedInTerm:
            self.init(
                code: "change_in_progress",
                message: "the new leader has not committed an entry of its term yet; try again shortly",
                retryable: true)
        case .leadershipTransferInProgress:
            self.init(code: "change_in_progress", message: "leadership is being handed off", retryable: true)
        case .unknownMember:
            self.init(code: "unknown_member", message: "no such member", retryable: false)
        case .alreadyMember:
            self.init(code: "already_member", message: "the node is already a member", retryable: false)
        case .alreadyVoter:
            self.init(code: "already_voter", message: "the node is already a voter", retryable: false)
        case .invalidMember:
            self.init(
                code: "invalid_member",
                message: "a node id is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
                retryable: false)
        case .wouldGoBelowMinimum:
            self.init(
                code: "below_minimum", message: "removing this voter would leave fewer voters than the minimum",
                retryable: false)
        case .invalidAddress:
            self.init(
                code: "invalid_address",
                message:
                    "an address is host:port: a DNS name, an IPv4 address or a bracketed IPv6 one, and a port 1-65535",
                retryable: false)
        }
    }
}

/// One membership frame.
public enum MembershipFrame: Equatable, Sendable {
    case request(id: UInt64, operation: MembershipOperation, member: NodeID, address: String?)
    case done(id: UInt64, configurationIndex: UInt64, configuration: ClusterConfiguration)
    case refused(id: UInt64, MembershipRefusal)
    case viewRequest(id: UInt64)
    case view(id: UInt64, MembershipView)
}

public enum MembershipFrames {
    public static let requestType: UInt8 = 0x38
    public static let responseType: UInt8 = 0x39
    public static let viewRequestType: UInt8 = 0x3A
    public static let viewType: UInt8 = 0x3B
    static let viewMembersMax = 256
    static let stringMax = 1024
    static let configurationMax = 64 * 1024

    public static func handles(frameType: UInt8) -> Bool { (requestType...viewType).contains(frameType) }

    public static func encode(_ frame: MembershipFrame) -> (type: UInt8, payload: [UInt8]) {
        var bytes: [UInt8] = []
        func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
        func string(_ text: String) {
            let utf8 = Array(text.utf8.prefix(stringMax))
            withUnsafeBytes(of: UInt16(utf8.count).littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: utf8)
        }
        switch frame {
        case .request(let id, let operation, let member, let address):
            u64(id)
            bytes.append(operation.rawValue)
            string(member.rawValue)
            string(address ?? "")
            return (requestType, bytes)
        case .done(let id, let index, let configuration):
            u64(id)
            bytes.append(0)
            u64(index)
            let encoded = configuration.encoded
            withUnsafeBytes(of: UInt32(encoded.count).littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: encoded)
            return (responseType, bytes)
        case .refused(let id, let refusal):
            u64(id)
            bytes.append(1)
            string(refusal.code)
            string(refusal.message)
            bytes.append(refusal.retryable ? 1 : 0)
            string(refusal.leader?.rawValue ?? "")
            string(refusal.leaderAddress ?? "")
            return (responseType, bytes)
        case .viewRequest(let id):
            u64(id)
            return (viewRequestType, bytes)
        case .view(let id, let view):
            u64(id)
            string(view.leader?.rawValue ?? "")
            u64(view.configurationIndex)
            bytes.append(view.committed ? 1 : 0)
            let members = view.members.prefix(viewMembersMax)
            withUnsafeBytes(of: UInt16(members.count).littleEndian) { bytes.append(contentsOf: $0) }
            for member in members {
                string(member.id.rawValue)
                string(member.address ?? "")
                bytes.append(member.isVoter ? 1 : 0)
                for value in [member.matchIndex, member.lagEntries] {
                    bytes.append(value == nil ? 0 : 1)
                    u64(value ?? 0)
                }
            }
            return (viewType, bytes)
        }
    }

    /// Decodes a payload of frame `type`; nil for anything malformed. Never traps.
    public static func decode(type: UInt8, payload: UnsafeRawBufferPointer) -> MembershipFrame? {
        var offset = 0
        func take(_ count: Int) -> UnsafeRawBufferPointer? {
            guard count >= 0, count <= payload.count - offset else { return nil }
            defer { offset += count }
            return UnsafeRawBufferPointer(rebasing: payload[offset..<offset + count])
        }
        func u8() -> UInt8? { take(1)?[0] }
        func u64() -> UInt64? { take(8).map { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) } }
        func string() -> String? {
            guard let length = take(2).map({ Int(UInt16(littleEndian: $0.loadUnaligned(as: UInt16.self))) }),
                length <= stringMax, let bytes = take(length)
            else { return nil }
            return String(decoding: bytes, as: UTF8.self)
        }
        let frame: MembershipFrame
        switch type {
        case requestType:
            guard let id = u64(), let operation = u8().flatMap(MembershipOperation.init(rawValue:)),
                let member = string(), let address = string()
            else { return nil }
            frame = .request(
                id: id, operation: operation, member: NodeID(member), address: address.isEmpty ? nil : address)
        case responseType:
            guard let id = u64(), let outcome = u8() else { return nil }
            switch outcome {
            case 0:
                guard let index = u64(),
                    let length = take(4).map({ Int(UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))) }),
                    length <= configurationMax, let bytes = take(length),
                    let configuration = ClusterConfiguration(decoding: [UInt8](bytes))
                else { return nil }
                frame = .done(id: id, configurationIndex: index, configuration: configuration)
            case 1:
                guard let code = string(), let message = string(), let retryable = u8(), retryable <= 1,
                    let leader = string(), let leaderAddress = string()
                else { return nil }
                frame = .refused(
                    id: id,
                    MembershipRefusal(
                        code: code, message: message, retryable: retryable == 1,
                        leader: leader.isEmpty ? nil : NodeID(leader),
                        leaderAddress: leaderAddress.isEmpty ? nil : leaderAddress))
            default:
                return nil
            }
        case viewRequestType:
            guard let id = u64() else { return nil }
            frame = .viewRequest(id: id)
        case viewType:
            guard let id = u64(), let leader = string(), let index = u64(), let committed = u8(), committed <= 1,
                let count = take(2).map({ Int(UInt16(littleEndian: $0.loadUnaligned(as: UInt16.self))) }),
                count <= viewMembersMax
            else { return nil }
            var members: [MemberView] = []
            for _ in 0..<count {
                guard let member = string(), NodeID(member).isWellFormed, let address = string(),
                    let voter = u8(), voter <= 1
                else { return nil }
                var known: [UInt64?] = []
                for _ in 0..<2 {
                    guard let flag = u8(), flag <= 1, let value = u64() else { return nil }
                    known.append(flag == 1 ? value : nil)
                }
                members.append(
                    MemberView(
                        id: NodeID(member), address: address.isEmpty ? nil : address, isVoter: voter == 1,
                        matchIndex: known[0], lagEntries: known[1]))
            }
            frame = .view(
                id: id,
                MembershipView(
                    members: members, leader: leader.isEmpty ? nil : NodeID(leader), configurationIndex: index,
                    committed: committed == 1, isMember: false, isJoining: false))
        default:
            return nil
        }
        return offset == payload.count ? frame : nil
    }
}
