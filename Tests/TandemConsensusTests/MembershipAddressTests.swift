import TandemConsensus
import XCTest

/// Peer addresses carried by configurations (so a node added at run time is reachable by every member), and the
/// configuration an admitted node takes as the start of its empty log.
final class MembershipAddressTests: XCTestCase {
    let n1 = NodeID("n1"), n2 = NodeID("n2"), n3 = NodeID("n3"), n4 = NodeID("n4")

    func testAddressesRoundTripAndAConfigurationWithoutThemEncodesAsBefore() {
        let plain = ClusterConfiguration(voters: [n1, n2, n3])
        XCTAssertEqual(plain.encoded.first, 1, "no addresses: the version 1 encoding")
        let addressed = ClusterConfiguration(
            voters: [n1, n2], learners: [n3],
            addresses: [n1: "10.0.0.1:7400", n3: "[::1]:7402", n4: "not-a-member:1"])
        XCTAssertEqual(addressed.addresses, [n1: "10.0.0.1:7400", n3: "[::1]:7402"], "non-members are dropped")
        XCTAssertEqual(addressed.encoded.first, 2)
        XCTAssertEqual(ClusterConfiguration(decoding: addressed.encoded), addressed)
        XCTAssertNotEqual(addressed, ClusterConfiguration(voters: [n1, n2], learners: [n3]), "addresses count")
        // Every truncation fails, and so does a trailing byte.
        let bytes = addressed.encoded
        for length in 0..<bytes.count {
            XCTAssertNil(ClusterConfiguration(decoding: Array(bytes[..<length])), "truncated at \(length)")
        }
        XCTAssertNil(ClusterConfiguration(decoding: bytes + [0]))
    }

    func testDecodingRefusesAddressesOfNonMembersBadAddressesAndUnsortedOnes() {
        func encode(_ pairs: [(String, String)]) -> [UInt8] {
            var bytes: [UInt8] = [2, 0, 2]
            for id in ["n1", "n2"] { bytes += [0, UInt8(id.utf8.count)] + Array(id.utf8) }
            bytes += [0, 0, 0, UInt8(pairs.count)]
            for (id, address) in pairs {
                bytes += [0, UInt8(id.utf8.count)] + Array(id.utf8)
                bytes += [0, UInt8(address.utf8.count)] + Array(address.utf8)
            }
            return bytes
        }
        XCTAssertNotNil(ClusterConfiguration(decoding: encode([("n1", "a:1"), ("n2", "b:2")])))
        XCTAssertNil(ClusterConfiguration(decoding: encode([("n2", "b:2"), ("n1", "a:1")])), "unsorted")
        XCTAssertNil(ClusterConfiguration(decoding: encode([("n9", "a:1")])), "not a member")
        XCTAssertNil(ClusterConfiguration(decoding: encode([("n1", "no port")])), "not host:port")
        XCTAssertNil(ClusterConfiguration(decoding: encode([("n1", "a:0")])), "port 0")
        XCTAssertNil(ClusterConfiguration(decoding: encode([("n1", "a,b:1")])), "a comma")
        XCTAssertNil(ClusterConfiguration(decoding: encode([])), "version 2 with no address")
    }

    func testChangesKeepTheAddressesOfMembersAndDropThoseOfRemovedOnes() throws {
        let start = ClusterConfiguration(
            voters: [n1, n2, n3], addresses: [n1: "h1:7400", n2: "h2:7400", n3: "h3:7400"])
        let added = try start.applying(.addLearner(n4), minimumVoters: 1).settingAddress("h4:7400", of: n4)
        XCTAssertEqual(added.addresses[n4], "h4:7400")
        let promoted = try added.applying(.promote(n4), minimumVoters: 1)
        XCTAssertEqual(promoted.addresses, added.addresses)
        let removed = try promoted.applying(.remove(n2), minimumVoters: 1)
        XCTAssertNil(removed.addresses[n2])
        XCTAssertEqual(removed.addresses.count, 3)
    }

    func testTheLeaderRecordsTheAddressOfTheLearnerItAddsAndRefusesABadOne() throws {
        var cluster = TestCluster(size: 4) {
            $0.initialConfiguration = ClusterConfiguration(voters: [NodeID("n1"), NodeID("n2"), NodeID("n3")])
        }
        let leader = cluster.electLeader()
        let now = cluster.nowMs
        XCTAssertThrowsError(
            try cluster.nodes[leader]!.proposeMembershipChange(.addLearner(n4), address: "nonsense", nowMs: now)
        ) { XCTAssertEqual($0 as? MembershipError, .invalidAddress) }
        let index = try cluster.nodes[leader]!.proposeMembershipChange(
            .addLearner(n4), address: "10.1.2.3:7400", nowMs: now)
        cluster.drain(leader)
        let committed = cluster.run(untilWithinMs: 2000) { cluster in
            [self.n1, self.n2, self.n3, self.n4].allSatisfy { cluster.nodes[$0]!.commitIndex >= index }
        }
        XCTAssertNotNil(committed)
        for id in [n1, n2, n3, n4] {
            let node = cluster.nodes[id]!
            XCTAssertEqual(node.committedConfiguration.addresses[n4], "10.1.2.3:7400", "\(id)")
            XCTAssertTrue(node.committedConfiguration.isLearner(n4), "\(id)")
        }
    }

    func testOnlyAnEmptyLogTakesAnAdmittedConfigurationAndANodeInItAsLearnerNeverCampaigns() {
        var config = RaftConfig(id: n4, peers: [n4])
        config.initialConfiguration = ClusterConfiguration(voters: [], learners: [n4])
        var joiner = RaftNode(config: config, recovered: RecoveredState(), seed: 7)
        XCTAssertTrue(joiner.hasEmptyLog)
        XCTAssertFalse(joiner.isVoter)
        let admitted = ClusterConfiguration(
            voters: [n1, n2, n3], learners: [n4], addresses: [n1: "h1:1", n2: "h2:1", n3: "h3:1", n4: "h4:1"])
        XCTAssertTrue(joiner.adoptAdmittedConfiguration(admitted))
        XCTAssertEqual(joiner.configuration, admitted)
        XCTAssertEqual(joiner.baseConfiguration, admitted)
        // Long past every election timeout: a learner stays a follower.
        for step in 1...500 { joiner.tick(nowMs: Int64(step) * 100) }
        XCTAssertEqual(joiner.currentRole, .follower)
        XCTAssertEqual(joiner.currentTerm, 0)

        let withLog = RecoveredState(
            hardState: HardState(term: 1, votedFor: nil, commitIndex: 1),
            entries: [Entry(term: 1, index: 1, kind: .normal, timeMs: 0, proposal: nil, data: [1])])
        var member = RaftNode(config: RaftConfig(id: n1, peers: [n1, n2, n3]), recovered: withLog, seed: 1)
        XCTAssertFalse(member.adoptAdmittedConfiguration(admitted), "a node with a log keeps its own")
        XCTAssertEqual(member.configuration, ClusterConfiguration(voters: [n1, n2, n3]))
    }
}

/// A learner serves reads at every level and forwards writes, like any follower, before it is promoted.
final class LearnerServiceTests: XCTestCase {
    func testALearnerForwardsWritesAndServesReadIndexReads() throws {
        var cluster = TestCluster(size: 4) {
            $0.initialConfiguration = ClusterConfiguration(voters: [NodeID("n1"), NodeID("n2"), NodeID("n3")])
        }
        let learner = NodeID("n4")
        let leader = cluster.electLeader()
        _ = try cluster.nodes[leader]!.proposeMembershipChange(.addLearner(learner), nowMs: cluster.nowMs)
        cluster.drain(leader)
        XCTAssertNotNil(cluster.run(untilWithinMs: 2000) { $0.nodes[learner]!.configuration.isLearner(learner) })
        try cluster.propose("through-the-learner", at: learner, sequence: 1)
        XCTAssertNotNil(
            cluster.run(untilWithinMs: 2000) {
                $0.appliedPayloads(leader).contains("through-the-learner")
                    && $0.appliedPayloads(learner).contains("through-the-learner")
            }, "the learner's write was forwarded, committed and applied everywhere")
        let read = cluster.read(9, at: learner, mode: .readIndex)
        cluster.run(forMs: 50)
        XCTAssertEqual(cluster.readyReads[learner]?.map(\.id), [read], "a linearizable read at the learner")
        let committed = cluster.nodes[leader]!.commitIndex
        XCTAssertGreaterThanOrEqual(cluster.readyReads[learner]?.first?.index ?? 0, committed - 1)
        XCTAssertFalse(cluster.nodes[learner]!.isVoter, "still a learner throughout")
    }
}
