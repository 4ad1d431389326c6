import TandemConfig
import TandemNet
import TandemOverload
import XCTest

@testable import TandemSidecar

/// `Admission.grantNow`, the ticketless path of a request that finds a free slot, decides as `admit` does.
final class AdmissionFastPathTests: XCTestCase {
    private func makeAdmission(_ loop: EventLoop) -> Admission {
        Admission(
            loop: loop, rateLimit: nil, globalRateLimit: nil, rateLimitKey: .ip, queueTargetMs: 5,
            writeQueueCapacity: 64, readQueueCapacity: 16, metrics: Metrics())
    }

    func testGrantNowGivesTheSlotsUpToTheLimitThenNoneWhileATicketWaits() throws {
        let loop = try EventLoop()
        let admission = makeAdmission(loop)
        defer { admission.stop() }
        var slots: [AdmissionSlot] = []
        while slots.count <= 10_000, let slot = admission.grantNow(.read) { slots.append(slot) }
        XCTAssertEqual(slots.count, admission.readLimit, "every slot under the limit is granted, none beyond")
        XCTAssertEqual(slots.last?.inflightAtStart, admission.readLimit)
        XCTAssertEqual(slots.last?.kind, .read)

        var granted = 0
        let ticket = AdmissionTicket()
        ticket.onGranted = { _ in granted += 1 }
        XCTAssertTrue(admission.admit(.read, ticket: ticket), "at the limit a request waits")
        XCTAssertEqual(granted, 0)
        XCTAssertEqual(admission.readQueueLength, 1)
        XCTAssertNil(admission.grantNow(.read), "nothing passes a waiting ticket")

        admission.release(slots.removeLast(), dropped: false)
        XCTAssertEqual(granted, 1, "the released slot goes to the waiting ticket")
        XCTAssertEqual(admission.readQueueLength, 0)
        XCTAssertEqual(admission.grantNow(.write)?.kind, .write, "the write lane is separate")
    }

    /// Reads whose latency jumps (more clients of a healthy app queue in the app itself) shrink the read limit no
    /// lower than where it starts, 256: a jump from 50 to 256 clients must not be shed.
    func testTheReadLimitNeverFallsBelowItsStartWhenLatencyJumps() throws {
        let loop = try EventLoop()
        let admission = makeAdmission(loop)
        defer { admission.stop() }
        XCTAssertEqual(admission.readLimit, 256)
        // A thousand quick reads teach the limiter a normal latency, then a thousand take 50 ms at full concurrency.
        for round in 0..<2000 {
            guard var slot = admission.grantNow(.read) else { return XCTFail("no slot at round \(round)") }
            let latencyMicros: Int64 = round < 1000 ? 1000 : 50_000
            slot = AdmissionSlot(
                kind: .read, startMicros: EventLoop.preciseNowMicros() - latencyMicros, inflightAtStart: 256)
            admission.release(slot, dropped: false)
        }
        XCTAssertGreaterThanOrEqual(admission.readLimit, 256, "the limit stays at or above its floor")
        for _ in 0..<50 {
            guard let slot = admission.grantNow(.read) else { return XCTFail("no slot") }
            admission.release(slot, dropped: true)
        }
        XCTAssertEqual(admission.readLimit, 256, "fifty drops in a row take it down to the floor, not below")
    }

    /// The sweep that sheds a standing queue on time runs only while a request waits: an idle node is not woken
    /// for it. A ticket that waits in a stalled lane is still shed by it, and the sweep stops once nothing waits.
    func testTheSweepRunsOnlyWhileARequestWaitsAndStillShedsAStalledOne() throws {
        let loop = try EventLoop()
        let admission = makeAdmission(loop)
        defer { admission.stop() }
        XCTAssertFalse(admission.isSweeping, "nothing waits: no sweep")
        var slots: [AdmissionSlot] = []
        while let slot = admission.grantNow(.read) { slots.append(slot) }
        XCTAssertFalse(admission.isSweeping, "slots granted at once need no sweep")

        // A waiting ticket that gets a released slot: the sweep starts, then stops at its next round.
        let granted = AdmissionTicket()
        var grants = 0
        granted.onGranted = { _ in grants += 1 }
        XCTAssertTrue(admission.admit(.read, ticket: granted))
        XCTAssertTrue(admission.isSweeping, "a waiting ticket starts the sweep")
        admission.release(slots.removeLast(), dropped: false)
        XCTAssertEqual(grants, 1)
        run(loop, forMs: 5 * Admission.sweepIntervalMs)
        XCTAssertFalse(admission.isSweeping, "the queue is empty again: the sweep stopped")

        // A ticket in a stalled lane (no slot is ever released) is shed by the sweep alone.
        let stalled = AdmissionTicket()
        var shedReasons: [ShedReason] = []
        stalled.onGranted = { _ in XCTFail("no slot was released") }
        stalled.onShed = { shedReasons.append($0) }
        XCTAssertTrue(admission.admit(.read, ticket: stalled))
        XCTAssertTrue(admission.isSweeping)
        let deadline = EventLoop.preciseNowMicros() + 5_000_000
        while shedReasons.isEmpty && EventLoop.preciseNowMicros() < deadline { run(loop, forMs: 20) }
        XCTAssertEqual(
            shedReasons, [.standingQueue], "it waited a whole CoDel interval in a queue that never emptied: shed")
        XCTAssertEqual(admission.readQueueLength, 0)
        run(loop, forMs: 5 * Admission.sweepIntervalMs)
        XCTAssertFalse(admission.isSweeping, "nothing waits after the shed: the sweep stopped")
    }

    private func run(_ loop: EventLoop, forMs ms: Int64) {
        let stopper = TandemNet.Timer(loop: loop) { loop.stop() }
        stopper.schedule(afterMs: ms)
        loop.run()
        stopper.invalidate()
    }
}
