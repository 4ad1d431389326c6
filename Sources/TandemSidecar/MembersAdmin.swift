// The membership endpoints of the admin listener:
//   GET    /members                        the members as this node sees them (match index and lag: leader only)
//   POST   /admin/members                  {"id","address"}: add a learner
//   POST   /admin/members/{id}/promote     make a learner a voter
//   DELETE /admin/members/{id}             remove a voter or a learner
// A change is answered once its configuration entry is committed (200 with the members), or with why not: 400 a
// bad request, 404 an unknown member, 409 a conflict (already a member or voter, another change in progress, below
// the minimum), 503 no leader or no commit in time (retryable: the change may still happen). Any member accepts a
// change: one that does not lead relays it to the leader.

import Foundation
import TandemConsensus
import TandemNode

struct MembersAdmin {
    let runtime: ReplicaRuntime

    /// The answer for `request` when it is a membership endpoint; nil otherwise.
    func answer(_ request: AdminRequest) -> AdminAnswer? {
        let path = request.path
        switch (request.method, path) {
        case ("GET", "/members"), ("HEAD", "/members"):
            return .now(.json(200, Self.membersJSON(runtime.membershipView)))
        case ("POST", "/admin/members"):
            guard let (id, address) = Self.parseAddition(request.body) else {
                return .now(
                    .json(
                        400,
                        errorJSON(
                            "invalid_request",
                            "the body must be a JSON object {\"id\":\"n4\",\"address\":\"host:7400\"}",
                            false)))
            }
            return change(.addLearner(NodeID(id)), address: address)
        default:
            break
        }
        let prefix = "/admin/members/"
        guard path.hasPrefix(prefix) else { return nil }
        let rest = path.dropFirst(prefix.count)
        if request.method == "POST", rest.hasSuffix("/promote") {
            let id = String(rest.dropLast("/promote".count))
            return change(.promote(NodeID(id)), address: nil)
        }
        if request.method == "DELETE", !rest.contains("/") {
            return change(.remove(NodeID(String(rest))), address: nil)
        }
        return .now(.json(404, errorJSON("not_found", "no endpoint \(request.method) \(path)", false)))
    }

    private func change(_ change: MembershipChange, address: String?) -> AdminAnswer {
        let runtime = self.runtime
        return .later { reply in
            runtime.changeMembership(change, address: address) { outcome in
                switch outcome {
                case .success:
                    reply(.json(200, Self.membersJSON(runtime.membershipView)))
                case .failure(let refusal):
                    reply(.json(Self.status(for: refusal), Self.refusalJSON(refusal)))
                }
            }
        }
    }

    static func status(for refusal: MembershipRefusal) -> Int {
        switch refusal.code {
        case "invalid_member", "invalid_address": 400
        case "unknown_member": 404
        case "already_member", "already_voter", "change_in_progress", "below_minimum": 409
        default: 503
        }
    }

    static func refusalJSON(_ refusal: MembershipRefusal) -> String {
        let body = errorJSON(refusal.code, refusal.message, refusal.retryable)
        guard let leader = refusal.leader else { return body }
        return String(body.dropLast()) + ",\"leader\":\(jsonString(leader.rawValue))}"
    }

    /// `{"id","address"}` with both strings, nothing else required.
    static func parseAddition(_ body: [UInt8]) -> (String, String)? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let id = object["id"] as? String, let address = object["address"] as? String
        else { return nil }
        return (id, address)
    }

    static func membersJSON(_ view: MembershipView) -> String {
        func number(_ value: UInt64?) -> String { value.map(String.init) ?? "null" }
        let members = view.members.map { member in
            "{\"id\":\(jsonString(member.id.rawValue)),\"address\":\(member.address.map(jsonString) ?? "null"),"
                + "\"role\":\(member.isVoter ? "\"voter\"" : "\"learner\""),"
                + "\"matchIndex\":\(number(member.matchIndex)),\"lagEntries\":\(number(member.lagEntries))}"
        }.joined(separator: ",")
        return "{\"leader\":\(view.leader.map { jsonString($0.rawValue) } ?? "null"),"
            + "\"configurationIndex\":\(view.configurationIndex),\"committed\":\(view.committed),"
            + "\"self\":{\"member\":\(view.isMember),\"joining\":\(view.isJoining)},\"members\":[\(members)]}"
    }
}
