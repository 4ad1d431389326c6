import TandemConfig
import TandemNet
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
}
