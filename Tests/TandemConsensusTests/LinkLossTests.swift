import TandemConsensus
import XCTest

/// What a closed peer link tells the core: a follower whose link to the leader was closed from the leader's end
/// (as a killed process's kernel does) and stays closed takes the leader for gone after `leaderGoneAfterMs`,
/// without waiting for its detector or its stickiness; anything else (a timeout, a link that comes back, a leader
/// still heard) changes nothing; and a leader ends its lease whenever a link closes.
final class LinkLossTests: XCTestCase {
    private func linkDown(_ cluster: inout TestCluster, at node: NodeID, to peer: NodeID, closedByPeer: Bool) {
        cluster.nodes[node]!.linkDown(to: peer, closedByPeer: closedByPeer, nowMs: cluster.nowMs)
        cluster.drain(node)
    }

    /// A settled 3-node cluster in which one follower's link to the leader is cut both ways and reported closed
    /// from the leader's end, while the leader lives: (cluster, leader, that follower, the leader's term).
    private func cutOneFollowerFromItsLeader() -> (TestCluster, NodeID, NodeID, UInt64) {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        cluster.run(forMs: 500)
        let term = cluster.nodes[leader]!.currentTerm
        let follower = cluster.followers(of: leader)[0]
        cluster.blocked.formUnion([[leader, follower], [follower, leader]])
        linkDown(&cluster, at: follower, to: leader, closedByPeer: true)
        return (cluster, leader, follower, term)
    }

    /// kill -9 of the leader: both followers see its end close at once. A new leader is elected soon after
    /// `leaderGoneAfterMs`, long before the stickiness (800 ms with the defaults) would have let anyone campaign.
    func testAKilledLeadersClosedLinksElectANewLeaderBeforeTheStickinessRunsOut() {
        var cluster = TestCluster(size: 3)
        let old = cluster.electLeader()
        cluster.run(forMs: 500)
        let config = cluster.nodes[old]!.config
        XCTAssertEqual(config.leaderGoneAfterMs, 200)
        cluster.crash(old)
        for follower in cluster.followers(of: old) { linkDown(&cluster, at: follower, to: old, closedByPeer: true) }
        let elapsed = cluster.run(untilWithinMs: 2000) { $0.leader != nil && $0.leader != old }
        XCTAssertNotNil(elapsed)
        XCTAssertGreaterThanOrEqual(elapsed ?? 0, config.leaderGoneAfterMs, "the links were given time to come back")
        XCTAssertLessThan(elapsed ?? .max, config.leaderGoneAfterMs + 150, "not elected right after the wait")
        XCTAssertLessThan(elapsed ?? .max, config.leaderStickinessMs)
    }

    /// The same crash without the closed links (a partition that drops packets, or a link that timed out): the
    /// followers wait out the stickiness, as before.
    func testWithoutAClosedLinkTheStickinessStillHolds() {
        for closedByPeer in [false, nil] as [Bool?] {
            var cluster = TestCluster(size: 3)
            let old = cluster.electLeader()
            cluster.run(forMs: 500)
            let stickiness = cluster.nodes[old]!.config.leaderStickinessMs
            cluster.crash(old)
            if let closedByPeer {
                for follower in cluster.followers(of: old) {
                    linkDown(&cluster, at: follower, to: old, closedByPeer: closedByPeer)
                }
            }
            let elapsed = cluster.run(untilWithinMs: 5000) { $0.leader != nil && $0.leader != old }
            XCTAssertGreaterThanOrEqual(
                elapsed ?? 0, stickiness - 100, "closedByPeer \(String(describing: closedByPeer))")
        }
    }

    /// A live leader closed one link on purpose and the follower dialled again at once: nothing happens.
    func testALinkThatComesBackInTimeChangesNothing() {
        var (cluster, leader, follower, term) = cutOneFollowerFromItsLeader()
        cluster.run(forMs: 40)
        cluster.heal()
        cluster.nodes[follower]!.linkUp(to: leader, nowMs: cluster.nowMs)
        cluster.drain(follower)
        cluster.run(forMs: 2000)
        XCTAssertEqual(cluster.leader, leader)
        XCTAssertEqual(cluster.nodes[leader]!.currentTerm, term, "no election")
    }

    /// One follower's link closed and stays closed while the other follower still hears the leader: that follower
    /// stays loyal and refuses the pre-vote, so the leader is not deposed.
    func testOneFollowerLosingItsLinkCannotDeposeALeaderTheOtherStillHears() {
        var (cluster, leader, _, term) = cutOneFollowerFromItsLeader()
        cluster.run(forMs: 3000)
        XCTAssertEqual(cluster.leader, leader)
        XCTAssertEqual(cluster.nodes[leader]!.currentTerm, term, "the leader's term did not move")
    }

    /// A leader ends its lease when any link closes; a round sent before the loss and acknowledged after it does
    /// not bring it back, a round sent after it does.
    func testALeaderEndsItsLeaseWhenALinkClosesAndRenewsItOnlyFromLaterRounds() {
        var cluster = TestCluster(size: 3)
        let leader = cluster.electLeader()
        cluster.run(forMs: 500)
        XCTAssertTrue(cluster.nodes[leader]!.leaseValid)
        // 60 ms each way: rounds sent before the loss are answered within 120 ms after it, later ones not sooner.
        cluster.latencyMs = 60
        cluster.run(forMs: 300)
        XCTAssertTrue(cluster.nodes[leader]!.leaseValid)
        linkDown(&cluster, at: leader, to: cluster.followers(of: leader)[0], closedByPeer: false)
        XCTAssertFalse(cluster.nodes[leader]!.leaseValid, "the lease ended with the link")
        cluster.run(forMs: 115)  // the answers to the rounds in flight arrive (they were sent before the loss)
        XCTAssertFalse(cluster.nodes[leader]!.leaseValid, "an older round renewed the lease")
        let renewed = cluster.run(untilWithinMs: 500) { $0.nodes[leader]!.leaseValid }
        XCTAssertNotNil(renewed, "a round sent after the loss renews the lease")
    }
}
