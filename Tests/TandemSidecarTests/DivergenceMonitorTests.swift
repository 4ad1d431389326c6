import TandemConsensus
import XCTest

@testable import TandemSidecar

/// A cluster of monitors wired through an in-memory network: what one broadcasts, every other receives.
private final class MonitorCluster {
    let ids: [NodeID]
    var monitors: [NodeID: DivergenceMonitor] = [:]
    private var inFlight: [(from: NodeID, payload: [UInt8])] = []
    private(set) var framesSent = 0

    init(size: Int, resumedAfter: [Int: UInt64] = [:]) {
        ids = (1...size).map { NodeID("n\($0)") }
        for (position, id) in ids.enumerated() {
            let monitor = DivergenceMonitor(
                peers: ids.filter { $0 != id }, resumedAfter: resumedAfter[position] ?? 0)
            monitor.broadcast = { [unowned self] payload in
                self.inFlight.append((id, payload))
                self.framesSent += 1
            }
            monitors[id] = monitor
        }
    }

    subscript(position: Int) -> DivergenceMonitor { monitors[ids[position]]! }

    /// Delivers every frame, and the frames they cause, until the network is quiet.
    func deliverAll() {
        while !inFlight.isEmpty {
            let (from, payload) = inFlight.removeFirst()
            for id in ids where id != from {
                payload.withUnsafeBytes { monitors[id]!.onReport(from: from, payload: $0) }
            }
        }
    }

    /// Every node applies `index` with its digest and reports its current digest, as the timer does.
    func applyAndReport(index: UInt64, digests: [UInt64]) {
        for (position, digest) in digests.enumerated() { self[position].recordApplied(index: index, digest: digest) }
        for (position, digest) in digests.enumerated() { self[position].reportCurrent(index: index, digest: digest) }
        deliverAll()
    }

    var divergedPositions: [Int] { ids.indices.filter { self[$0].isDiverged } }
}

final class DivergenceMonitorTests: XCTestCase {
    func testThreeNodesTheOddOneOutIsFlaggedAndTheOthersAreNot() {
        for odd in 0..<3 {  // the leader's replica or a follower's: judgement does not depend on roles
            let cluster = MonitorCluster(size: 3)
            cluster.applyAndReport(index: 7, digests: (0..<3).map { $0 == odd ? 0xBAD : 0x600D })
            XCTAssertEqual(cluster.divergedPositions, [odd])
            XCTAssertEqual(cluster[odd].divergedAtIndex, 7)
            for position in 0..<3 { XCTAssertEqual(cluster[position].comparisons, 1, "n\(position + 1) judged") }
        }
    }

    func testFiveNodesAMajorityOfThreeFlagsEachOfTheOthersWhetherTheyAgreeOrNot() {
        let splitThreeTwo = MonitorCluster(size: 5)
        splitThreeTwo.applyAndReport(index: 3, digests: [1, 2, 2, 1, 2])
        XCTAssertEqual(splitThreeTwo.divergedPositions, [0, 3], "two that agree with each other are still a minority")

        let oneOdd = MonitorCluster(size: 5)
        oneOdd.applyAndReport(index: 3, digests: [5, 5, 5, 5, 9])
        XCTAssertEqual(oneOdd.divergedPositions, [4])

        let twoDifferentOdd = MonitorCluster(size: 5)
        twoDifferentOdd.applyAndReport(index: 3, digests: [8, 5, 5, 9, 5])
        XCTAssertEqual(twoDifferentOdd.divergedPositions, [0, 3])
    }

    func testATieWaitsAndAllDifferentIsNoMajorityButFlagsNobody() {
        let tie = MonitorCluster(size: 5)
        tie.applyAndReport(index: 2, digests: [1, 1, 2, 2])  // n5 has not got there yet
        XCTAssertEqual(tie.divergedPositions, [])
        for position in 0..<4 { XCTAssertNil(tie[position].verdict(at: 2), "2 against 2 of 5: wait") }
        tie[4].recordApplied(index: 2, digest: 2)
        tie[4].reportCurrent(index: 2, digest: 2)
        tie.deliverAll()
        XCTAssertEqual(tie.divergedPositions, [0, 1], "the fifth report made a majority")

        let evenSplit = MonitorCluster(size: 4)
        evenSplit.applyAndReport(index: 2, digests: [1, 1, 2, 2])
        XCTAssertEqual(evenSplit.divergedPositions, [])
        for position in 0..<4 { XCTAssertEqual(evenSplit[position].verdict(at: 2), .noMajority) }

        let allDifferent = MonitorCluster(size: 3)
        allDifferent.applyAndReport(index: 2, digests: [1, 2, 3])
        XCTAssertEqual(allDifferent.divergedPositions, [])
        for position in 0..<3 {
            XCTAssertEqual(allDifferent[position].verdict(at: 2), .noMajority)
            XCTAssertEqual(allDifferent[position].noMajorityCount, 1)
        }
    }

    func testTooFewReportsWaitUntilAMajorityOfTheWholeClusterAgrees() {
        let me = DivergenceMonitor(peers: ["n2", "n3", "n4", "n5"].map(NodeID.init), resumedAfter: 0)
        me.recordApplied(index: 10, digest: 1)
        deliver(to: me, from: "n2", index: 10, digest: 2)
        deliver(to: me, from: "n3", index: 10, digest: 2)
        XCTAssertFalse(me.isDiverged, "two of five are not a majority")
        XCTAssertNil(me.verdict(at: 10))
        deliver(to: me, from: "n4", index: 10, digest: 2)
        XCTAssertTrue(me.isDiverged)
        XCTAssertEqual(me.divergedAtIndex, 10)
    }

    func testReportsAheadOfThisReplicaAreJudgedAndAnsweredWhenItGetsThere() {
        let me = DivergenceMonitor(peers: [NodeID("n2"), NodeID("n3")], resumedAfter: 0)
        var sent: [[UInt8]] = []
        me.broadcast = { sent.append($0) }
        deliver(to: me, from: "n2", index: 50, digest: 4)
        deliver(to: me, from: "n3", index: 50, digest: 4)
        XCTAssertTrue(sent.isEmpty, "nothing to answer before applying index 50")
        me.recordApplied(index: 49, digest: 3)
        XCTAssertFalse(me.isDiverged)
        me.recordApplied(index: 50, digest: 9)
        XCTAssertTrue(me.isDiverged)
        XCTAssertEqual(sent, [DivergenceMonitor.reportPayload(index: 50, digest: 9)], "answered once, with its own")
        deliver(to: me, from: "n2", index: 50, digest: 4)
        XCTAssertEqual(sent.count, 1, "an index is answered once")
    }

    func testHostileOrShortPayloadsAreIgnoredAndCounted() {
        let me = DivergenceMonitor(peers: [NodeID("n2"), NodeID("n3")], resumedAfter: 0)
        me.recordApplied(index: 1, digest: 1)
        let valid = DivergenceMonitor.reportPayload(index: 1, digest: 2)
        for payload in [[], [0x01], Array(valid.prefix(15)), valid + [0], [UInt8](repeating: 0xFF, count: 4096)] {
            payload.withUnsafeBytes { me.onReport(from: NodeID("n2"), payload: $0) }
        }
        DivergenceMonitor.reportPayload(index: 0, digest: 2).withUnsafeBytes {
            me.onReport(from: NodeID("n2"), payload: $0)
        }
        // Not a member: cannot vote, however many of them there are.
        for stranger in ["n4", "n5", "n1"] { deliver(to: me, from: stranger, index: 1, digest: 2) }
        XCTAssertEqual(me.ignoredReports, 9)
        XCTAssertFalse(me.isDiverged)
        XCTAssertNil(me.verdict(at: 1))
    }

    func testAPeersReportsAreBoundedPerPeer() {
        let me = DivergenceMonitor(peers: [NodeID("n2"), NodeID("n3")], resumedAfter: 0)
        for index in UInt64(1)...100_000 { deliver(to: me, from: "n2", index: index, digest: index) }
        XCTAssertLessThanOrEqual(me.storedReports(from: NodeID("n2")), 256)
        XCTAssertEqual(me.storedReports(from: NodeID("n3")), 0)
    }

    func testAReplicaThatResumedMidBlockNeitherReportsNorJudgesThatBlock() {
        let block = ApplyDigest.blockSize
        let cluster = MonitorCluster(size: 3, resumedAfter: [0: block + 10])
        cluster.applyAndReport(index: block + 20, digests: [0xAAA, 0xBBB, 0xBBB])
        XCTAssertEqual(cluster.divergedPositions, [], "its partial digest of the block says nothing")
        XCTAssertEqual(cluster[0].comparisons, 0)
        XCTAssertEqual(cluster[1].comparisons, 1, "the other two still judge themselves with each other")
        cluster.applyAndReport(index: 2 * block + 1, digests: [0xCCC, 0xDDD, 0xDDD])
        XCTAssertEqual(cluster.divergedPositions, [0], "the next block is whole again")
    }

    func testEveryNodeSendsEachIndexAtMostOnceBesidesItsCurrentReports() {
        let cluster = MonitorCluster(size: 5)
        cluster.applyAndReport(index: 4, digests: [1, 1, 1, 1, 1])
        XCTAssertEqual(cluster.framesSent, 5, "current reports only: everyone had already sent index 4")
        for position in 0..<5 { cluster[position].recordApplied(index: 5, digest: 2) }
        cluster[0].reportCurrent(index: 5, digest: 2)
        cluster.deliverAll()
        XCTAssertEqual(cluster.framesSent, 10, "one report and four answers, no more")
        for position in 0..<5 { XCTAssertEqual(cluster[position].verdict(at: 5), .sound) }
    }

    private func deliver(to monitor: DivergenceMonitor, from peer: String, index: UInt64, digest: UInt64) {
        DivergenceMonitor.reportPayload(index: index, digest: digest).withUnsafeBytes {
            monitor.onReport(from: NodeID(peer), payload: $0)
        }
    }
}
