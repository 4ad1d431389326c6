import Foundation
import XCTest

/// `/status`, the status page and `tandem status` on real processes: a follower shows what it does not track as
/// unknown, and every node shows the cluster as the leader sees it.
final class StatusClusterViewTests: ClusterTestCase {
    func testAFollowerReportsUnknownsAndTheLeadersViewOfEveryMember() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let follower = try XCTUnwrap(replicas.first { $0 !== leader })

        // The leader knows every peer's replication and gives its own view at once.
        let leaderStatus = try XCTUnwrap(status(leader))
        for peer in try XCTUnwrap(leaderStatus["peers"] as? [[String: Any]]) {
            XCTAssertEqual(peer["role"] as? String, "voter", "\(peer)")
            XCTAssertNotNil(peer["matchIndex"] as? Int, "the leader tracks \(peer)")
            XCTAssertNotNil(peer["lagEntries"] as? Int, "the leader tracks \(peer)")
        }
        let leadersOwn = try XCTUnwrap(leaderStatus["cluster"] as? [String: Any], "\(leaderStatus)")
        XCTAssertEqual(leadersOwn["asSeenBy"] as? String, leader.id)
        XCTAssertEqual(leadersOwn["ageMs"] as? Int, 0)

        // A follower tracks no replication: null, not 0. It hears from the leader, so that contact is a number.
        let followerStatus = try XCTUnwrap(status(follower))
        let peers = try XCTUnwrap(followerStatus["peers"] as? [[String: Any]])
        XCTAssertEqual(
            Set(peers.compactMap { $0["id"] as? String }), Set(replicas.map(\.id)).subtracting([follower.id]))
        for peer in peers {
            XCTAssertEqual(peer["role"] as? String, "voter", "\(peer)")
            XCTAssertTrue(peer["matchIndex"] is NSNull, "unknown on a follower: \(peer)")
            XCTAssertTrue(peer["lagEntries"] is NSNull, "unknown on a follower: \(peer)")
        }
        let toLeader = try XCTUnwrap(peers.first { $0["id"] as? String == leader.id })
        XCTAssertNotNil(toLeader["lastContactMs"] as? Int, "the follower hears from its leader: \(toLeader)")

        // Asking for /status makes the follower fetch the leader's view (once a second): it arrives.
        var cluster: [String: Any]?
        XCTAssertTrue(
            waitUntil(seconds: 10) {
                cluster = self.status(follower)?["cluster"] as? [String: Any]
                return cluster != nil
            }, "the follower never showed the leader's view")
        XCTAssertEqual(cluster?["asSeenBy"] as? String, leader.id)
        XCTAssertGreaterThanOrEqual(cluster?["ageMs"] as? Int ?? -1, 0)
        let members = try XCTUnwrap(cluster?["members"] as? [[String: Any]])
        XCTAssertEqual(Set(members.compactMap { $0["id"] as? String }), Set(replicas.map(\.id)), "the leader included")
        for member in members {
            XCTAssertEqual(member["role"] as? String, "voter", "\(member)")
            XCTAssertNotNil(member["matchIndex"] as? Int, "the leader knows every member's: \(member)")
            XCTAssertNotNil(member["lagEntries"] as? Int, "the leader knows every member's: \(member)")
        }

        // The follower's page says the same.
        let html = try httpRequest(port: follower.adminPort, method: "GET", path: "/").bodyText
        XCTAssertTrue(html.contains("<td data-field=\"matchIndex\" class=\"unknown\">unknown</td>"), html)
        XCTAssertTrue(html.contains("Cluster as the leader sees it (\(leader.id), "), html)
        for replica in replicas {
            XCTAssertTrue(html.contains("<tr data-member=\"\(replica.id)\">"), "member \(replica.id) missing")
        }

        // And `tandem status`: a ROLE column, "-" for what the follower does not know, and the leader's view.
        let cli = try ManagedProcess(
            name: "tandem-status", executable: BuiltProducts.path("tandem"),
            arguments: ["status", "--admin", "127.0.0.1:\(follower.adminPort)"])
        track(cli)
        XCTAssertEqual(cli.waitForExit(), 0, cli.output)
        let lines = cli.output.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        XCTAssertTrue(
            lines.contains(["PEER", "ADDRESS", "ROLE", "CONNECTED", "PHI", "MATCH", "LAG", "LAST", "CONTACT", "MS"]),
            cli.output)
        let leaderRow = try XCTUnwrap(lines.first { $0.first == leader.id }, cli.output)
        XCTAssertEqual(leaderRow[2], "voter", cli.output)
        XCTAssertEqual(Array(leaderRow[5...6]), ["-", "-"], "unknown match and lag print as -: \(cli.output)")
        XCTAssertTrue(cli.output.contains("cluster as \(leader.id) sees it ("), cli.output)
        XCTAssertTrue(lines.contains(["MEMBER", "ADDRESS", "ROLE", "MATCH", "LAG"]), cli.output)
    }
}
