import TandemConsensus
import XCTest

@testable import TandemSidecar

final class DivergenceRepairTests: XCTestCase {
    private let follower = DivergenceRepair.Situation(isLeader: false, leaderIsAuthoritative: true)
    private let leader = DivergenceRepair.Situation(isLeader: true, leaderIsAuthoritative: false)
    private let followerOfAnOddLeader = DivergenceRepair.Situation(isLeader: false, leaderIsAuthoritative: false)

    func testAFollowerSavesItsStateAsideThenFetchesRestoresReplaysAndIsRepaired() {
        var repair = DivergenceRepair()
        XCTAssertEqual(repair.diverged(follower, nowMs: 0), [.saveCopy])
        XCTAssertTrue(repair.isRepairing)
        XCTAssertEqual(repair.tick(follower, nowMs: 500), [], "nothing happens while the copy is written")
        XCTAssertEqual(repair.copySaved(ok: true, follower, nowMs: 1_000), [.requestSnapshot])
        XCTAssertEqual(repair.restored(replaying: true), [])
        XCTAssertEqual(repair.phase, .replaying)
        XCTAssertTrue(repair.isRepairing, "not serving until the replay is over")
        XCTAssertEqual(repair.replayFinished(), [.markRepaired])
        XCTAssertEqual(repair.phase, .idle)
        XCTAssertFalse(repair.isRepairing)
        XCTAssertEqual([repair.started, repair.completed, repair.gaveUp], [1, 1, 0])
    }

    func testASnapshotThatCoversEverythingAppliedEndsTheRepairAtOnce() {
        var repair = DivergenceRepair()
        _ = repair.diverged(follower, nowMs: 0)
        _ = repair.copySaved(ok: true, follower, nowMs: 0)
        XCTAssertEqual(repair.restored(replaying: false), [.markRepaired])
        XCTAssertEqual(repair.completed, 1)
    }

    func testADivergedLeaderHandsOffFirstAndAsksAgainUntilItIsAFollower() {
        var repair = DivergenceRepair()
        XCTAssertEqual(repair.diverged(leader, nowMs: 0), [.transferLeadership])
        XCTAssertEqual(repair.tick(leader, nowMs: 1_000), [], "the hand-off is given time")
        XCTAssertEqual(repair.tick(leader, nowMs: DivergenceRepair.handOffRetryMs), [.transferLeadership])
        XCTAssertEqual(repair.tick(follower, nowMs: 2_500), [.saveCopy])
        // Leadership came back while the copy was written: hand it over again before fetching from anyone.
        XCTAssertEqual(repair.copySaved(ok: true, leader, nowMs: 3_000), [.transferLeadership])
        XCTAssertEqual(repair.tick(follower, nowMs: 3_100), [.saveCopy])
    }

    func testNothingIsFetchedFromALeaderThatIsNotOneOfTheMajority() {
        var repair = DivergenceRepair()
        _ = repair.diverged(followerOfAnOddLeader, nowMs: 0)
        XCTAssertEqual(repair.copySaved(ok: true, followerOfAnOddLeader, nowMs: 0), [])
        XCTAssertEqual(repair.phase, .awaitingAuthority)
        XCTAssertEqual(repair.tick(followerOfAnOddLeader, nowMs: 5_000), [])
        XCTAssertEqual(repair.tick(follower, nowMs: 6_000), [.requestSnapshot], "a leader of the majority took over")
    }

    func testAStateThatCannotBeSavedAsideIsNotReplaced() {
        var repair = DivergenceRepair()
        _ = repair.diverged(follower, nowMs: 0)
        let actions = repair.copySaved(ok: false, follower, nowMs: 0)
        XCTAssertEqual(actions.count, 1)
        guard case .stop(let reason) = actions.first else { return XCTFail("\(actions)") }
        XCTAssertTrue(reason.contains("could not be saved aside"), reason)
        XCTAssertFalse(repair.isRepairing)
        XCTAssertEqual(repair.diverged(follower, nowMs: 1), [], "a replica that gave up does not start again")
    }

    func testAnAppThatKeepsDivergingIsStoppedInsteadOfRepairedForever() {
        var repair = DivergenceRepair()
        var now: Int64 = 0
        for _ in 0..<DivergenceRepair.maxRepairsPerWindow {
            XCTAssertEqual(repair.diverged(follower, nowMs: now), [.saveCopy])
            _ = repair.copySaved(ok: true, follower, nowMs: now)
            XCTAssertEqual(repair.restored(replaying: false), [.markRepaired])
            now += 60_000
        }
        let actions = repair.diverged(follower, nowMs: now)
        guard case .stop(let reason) = actions.first else { return XCTFail("\(actions)") }
        XCTAssertTrue(reason.contains("not deterministic"), reason)
        XCTAssertEqual([repair.started, repair.completed, repair.gaveUp], [3, 3, 1])

        // Repairs spread wider than the window are each allowed.
        var spread = DivergenceRepair()
        for round in 0..<(DivergenceRepair.maxRepairsPerWindow + 2) {
            let at = Int64(round) * DivergenceRepair.windowMs / 2
            XCTAssertEqual(spread.diverged(follower, nowMs: at), [.saveCopy], "round \(round)")
            _ = spread.copySaved(ok: true, follower, nowMs: at)
            _ = spread.restored(replaying: false)
        }
        XCTAssertEqual(spread.gaveUp, 0)
    }

    func testEventsOutOfTurnChangeNothing() {
        var repair = DivergenceRepair()
        XCTAssertEqual(repair.copySaved(ok: true, follower, nowMs: 0), [])
        XCTAssertEqual(repair.restored(replaying: true), [], "a restore that is not the repair's (a wiped node's)")
        XCTAssertEqual(repair.replayFinished(), [], "a replay after an app restart")
        XCTAssertEqual(repair.phase, .idle)
        _ = repair.diverged(follower, nowMs: 0)
        XCTAssertEqual(repair.diverged(follower, nowMs: 1), [], "one repair at a time")
        XCTAssertEqual(repair.started, 1)
    }

    /// The monitor names the members of the majority (the leader must be one of them to be copied from), and a
    /// reset after a repair forgets the verdict and the digests of the state that was replaced.
    func testTheMonitorNamesTheMajorityAndForgetsEverythingOnReset() {
        let ids = (1...5).map { NodeID("n\($0)") }
        let me = DivergenceMonitor(peers: Array(ids.dropFirst()), resumedAfter: 0)
        me.recordApplied(index: 9, digest: 0xBAD)
        for (peer, digest) in zip(ids.dropFirst(), [0x600D, 0x600D, 0x600D, 0xBAD] as [UInt64]) {
            DivergenceMonitor.reportPayload(index: 9, digest: digest).withUnsafeBytes {
                me.onReport(from: peer, payload: $0)
            }
        }
        XCTAssertTrue(me.isDiverged)
        XCTAssertEqual(me.majorityMembers, [ids[1], ids[2], ids[3]], "n5 agrees with this node, not the majority")
        let comparisons = me.comparisons

        me.reset()
        XCTAssertFalse(me.isDiverged)
        XCTAssertNil(me.divergedAtIndex)
        XCTAssertEqual(me.majorityMembers, [])
        XCTAssertEqual(me.storedReports(from: ids[1]), 0)
        XCTAssertEqual(me.comparisons, comparisons, "counters are kept")
        // Judged afresh: the same index can be judged again, and now agrees.
        me.recordApplied(index: 9, digest: 0x600D)
        for peer in ids.dropFirst() {
            DivergenceMonitor.reportPayload(index: 9, digest: 0x600D).withUnsafeBytes {
                me.onReport(from: peer, payload: $0)
            }
        }
        XCTAssertFalse(me.isDiverged)
        XCTAssertEqual(me.comparisons, comparisons + 1)
    }
}
