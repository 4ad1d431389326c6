import XCTest

@testable import TandemStatusPage

/// The bounded per-peer phi history that feeds the status page's charts.
final class PhiHistoryTests: XCTestCase {
    func testSamplesCloserThanTheSpacingAreSkipped() {
        var history = PhiHistory(windowMs: 60_000, minimumSpacingMs: 250)
        XCTAssertTrue(history.record(peer: "n2", tMs: 1_000, phi: 0.1))
        XCTAssertFalse(history.record(peer: "n2", tMs: 1_100, phi: 0.2), "100 ms after the last kept sample")
        XCTAssertTrue(history.record(peer: "n2", tMs: 1_250, phi: 0.3))
        XCTAssertEqual(history.samples(for: "n2").map(\.tMs), [1_000, 1_250])
        XCTAssertEqual(history.samples(for: "n2").map(\.phi), [0.1, 0.3])
    }

    func testSamplesOlderThanTheWindowAreDropped() {
        var history = PhiHistory(windowMs: 60_000, minimumSpacingMs: 250)
        history.record(peer: "n2", tMs: 0, phi: 1)
        history.record(peer: "n2", tMs: 30_000, phi: 2)
        history.record(peer: "n2", tMs: 60_000, phi: 3)
        XCTAssertEqual(history.samples(for: "n2").map(\.tMs), [0, 30_000, 60_000], "exactly a minute old is kept")
        XCTAssertFalse(history.record(peer: "n2", tMs: 60_001, phi: 4), "too close to 60000")
        XCTAssertEqual(history.samples(for: "n2").map(\.tMs), [0, 30_000, 60_000], "a skipped sample changes nothing")
        history.record(peer: "n2", tMs: 60_250, phi: 4)
        XCTAssertEqual(history.samples(for: "n2").map(\.tMs), [30_000, 60_000, 60_250], "0 is now older than a minute")
        history.record(peer: "n2", tMs: 200_000, phi: 5)
        XCTAssertEqual(history.samples(for: "n2").map(\.tMs), [200_000], "a long silence leaves only the new sample")
    }

    func testAMinuteOfFastTicksStaysWithinTheBound() {
        var history = PhiHistory(windowMs: 60_000, minimumSpacingMs: 250)
        for tick in 0..<100_000 { history.record(peer: "n2", tMs: Int64(tick) * 10, phi: 0.5) }
        XCTAssertEqual(history.samples(for: "n2").count, history.samplesPerPeerMax)
        XCTAssertEqual(history.samplesPerPeerMax, 241)
        XCTAssertEqual(history.samples(for: "n2").last?.tMs, 999_750, "every 25th tick is kept, the newest last")
        XCTAssertEqual(history.samples(for: "n2").first?.tMs, 999_750 - 60_000)
    }

    func testASampleFromThePastIsRefused() {
        var history = PhiHistory()
        history.record(peer: "n2", tMs: 10_000, phi: 1)
        XCTAssertFalse(history.record(peer: "n2", tMs: 5_000, phi: 9))
        XCTAssertEqual(history.samples(for: "n2").map(\.phi), [1])
    }

    func testPeersAreTrackedSeparatelyAndBounded() {
        var history = PhiHistory()
        for index in 0..<PhiHistory.peersMax { XCTAssertTrue(history.record(peer: "p\(index)", tMs: 0, phi: 0)) }
        XCTAssertFalse(history.record(peer: "one-too-many", tMs: 0, phi: 0))
        XCTAssertTrue(history.record(peer: "p0", tMs: 1_000, phi: 2), "known peers still record")
        history.forget(peer: "p1")
        XCTAssertTrue(history.record(peer: "newcomer", tMs: 0, phi: 0), "forgetting frees a slot")
        XCTAssertEqual(history.samples(for: "p0").count, 2)
        XCTAssertTrue(history.samples(for: "p1").isEmpty)
        XCTAssertEqual(history.peers.count, PhiHistory.peersMax)
    }

    func testTheRecordedHistoryDrawsOnePointPerKeptSample() {
        var history = PhiHistory()
        for second in 0..<120 { history.record(peer: "n2", tMs: Int64(second) * 1_000, phi: Double(second % 10)) }
        let nowMs: Int64 = 119_000
        let model = StatusPageModel(
            nodeID: "n1", role: "leader", term: 1, leader: "n1", commitIndex: 1, appliedIndex: 1, diverged: false,
            peers: [
                StatusPageModel.Peer(
                    id: "n2", address: "n2:7400", role: .voter, connected: true, phi: 0, matchIndex: 1, lagEntries: 0,
                    lastContact: .heard(msAgo: 5), phiHistory: history.samples(for: "n2"))
            ], nowMs: nowMs)
        XCTAssertEqual(history.samples(for: "n2").count, 61, "seconds 59...119")
        XCTAssertTrue(StatusPage.render(model).contains("n2: 61 samples"))
    }
}
