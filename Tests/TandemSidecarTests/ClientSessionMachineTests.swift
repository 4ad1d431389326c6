import TandemHTTP
import XCTest

@testable import TandemSidecar

/// The client session's decisions, without a socket: which request may be read, when a connection stays open,
/// when reading resumes, and what a tunnel does.
final class ClientSessionMachineTests: XCTestCase {
    private typealias Machine = ClientSessionMachine

    /// A machine whose request (head and end) was read whole and went to the app.
    private func respondingMachine(keepAlive: Bool = true) -> Machine {
        var machine = Machine()
        machine.requestHeadParsed(keepAlive: keepAlive)
        XCTAssertEqual(machine.requestEnded(), .forwardEnd(finishExchange: false))
        return machine
    }

    private func relay(
        _ machine: inout Machine, framing: ResponseFraming = .contentLength(2), appKeepAlive: Bool = true,
        version: HTTPVersion = .http1_1, draining: Bool = false
    ) -> Machine.ResponseHeadAction {
        machine.responseHeadReceived(
            switchesProtocols: false, upgradeAllowed: false, framing: framing, appKeepAlive: appKeepAlive,
            requestVersion: version, draining: draining)
    }

    func testPipelinedRequestsAreReadOneExchangeAtATimeSoAnswersLeaveInOrder() {
        var machine = Machine()
        XCTAssertTrue(machine.isReading && machine.isBetweenRequests)
        machine.requestHeadParsed(keepAlive: true)
        XCTAssertTrue(machine.isReading, "the first request's body is still read")
        XCTAssertEqual(machine.requestEnded(), .forwardEnd(finishExchange: false))
        // The second request waits in the buffer: the parse loop asks `isReading` before every step.
        XCTAssertFalse(machine.isReading)
        XCTAssertEqual(
            machine.responseHeadReceived(
                switchesProtocols: false, upgradeAllowed: false, framing: .contentLength(2), appKeepAlive: true,
                requestVersion: .http1_1, draining: false),
            .relay(chunked: false, clientKeepAlive: true))
        XCTAssertFalse(machine.isReading, "still answering the first request")
        XCTAssertFalse(machine.exchangeCanFinish)
        machine.responseEnded()
        XCTAssertTrue(machine.exchangeCanFinish)
        XCTAssertTrue(machine.appKeepAlive, "the app connection goes back to the pool")
        XCTAssertTrue(machine.exchangeFinished(draining: false))
        XCTAssertTrue(machine.isBetweenRequests, "only now is the second request parsed")
        XCTAssertEqual(machine.resumeReading(outputEmpty: false), .whenFlushed)
        machine.requestHeadParsed(keepAlive: true)
        XCTAssertEqual(machine.exchange, .init(route: .app, response: .pending, clientKeepAlive: true))
    }

    func testAClientThatHalfClosedAfterItsRequestStillGetsItsAnswer() {
        var machine = respondingMachine()
        // Nothing is read while the answer is pending, so the client's EOF is not seen yet.
        XCTAssertFalse(machine.isReading)
        XCTAssertEqual(machine.outputDrained(outputEmpty: true).enableClientReading, false)
        _ = machine.responseHeadReceived(
            switchesProtocols: false, upgradeAllowed: false, framing: .contentLength(2), appKeepAlive: true,
            requestVersion: .http1_1, draining: false)
        machine.responseEnded()
        XCTAssertTrue(machine.exchangeFinished(draining: false))
        // The answer is still in the output buffer: the socket is read (and the EOF seen) only once it has left.
        XCTAssertEqual(machine.resumeReading(outputEmpty: false), .whenFlushed)
        XCTAssertEqual(machine.outputDrained(outputEmpty: false), Machine.DrainActions())
        var expected = Machine.DrainActions()
        expected.restoreWriteWatermark = true
        expected.enableClientReading = true
        XCTAssertEqual(machine.outputDrained(outputEmpty: true), expected)
        XCTAssertEqual(machine.outputDrained(outputEmpty: true), Machine.DrainActions(), "the wait is over")
    }

    func testWhileRespondingADrainedOutputResumesTheApp() {
        var machine = respondingMachine()
        let actions = machine.outputDrained(outputEmpty: false)
        XCTAssertTrue(actions.enableAppReading && actions.parseAppInput)
        XCTAssertFalse(actions.close || actions.enableClientReading)
    }

    func testABodyTimeoutClosesTheConnection() {
        var machine = Machine()
        machine.requestHeadParsed(keepAlive: true)
        XCTAssertEqual(machine.state, .reading(.init(route: .app, response: .pending, clientKeepAlive: true)))
        XCTAssertFalse(machine.responseStarted, "so the session answers 408 rather than cutting the connection")
        // A body cut short leaves the connection out of step: 408 and close, even without forceClose.
        XCTAssertFalse(machine.answeredWithError(forceClose: false, requestBodiless: false, draining: false))
        XCTAssertEqual(machine.state, .closingAfterFlush)
        XCTAssertFalse(machine.isReading)
        XCTAssertEqual(machine.outputDrained(outputEmpty: false).close, false)
        XCTAssertEqual(machine.outputDrained(outputEmpty: true).close, true)
        machine.closed()
        XCTAssertEqual(machine.state, .closed)
    }

    func testAHeadThatNeverCompletesIsAnsweredAndClosed() {
        var machine = Machine()
        XCTAssertFalse(machine.answeredWithError(forceClose: true, requestBodiless: false, draining: false))
        XCTAssertTrue(machine.isClosingAfterFlush)
    }

    func testKeepAliveFollowsTheClientTheFramingAndDraining() {
        var closing = respondingMachine(keepAlive: false)
        XCTAssertEqual(relay(&closing), .relay(chunked: false, clientKeepAlive: false))
        closing.responseEnded()
        XCTAssertFalse(closing.exchangeFinished(draining: false))
        XCTAssertTrue(closing.isClosingAfterFlush)

        var draining = respondingMachine()
        XCTAssertEqual(relay(&draining, draining: true), .relay(chunked: false, clientKeepAlive: false))

        var http10 = respondingMachine()
        XCTAssertEqual(
            relay(&http10, framing: .chunked, version: .http1_0), .relay(chunked: false, clientKeepAlive: false),
            "HTTP/1.0 has no chunked coding: the body is delimited by the close")

        var untilClose = respondingMachine()
        XCTAssertEqual(relay(&untilClose, framing: .untilClose), .relay(chunked: true, clientKeepAlive: true))
        XCTAssertFalse(untilClose.appKeepAlive, "a close-delimited body uses up the app connection")
        untilClose.responseEnded()
        XCTAssertTrue(untilClose.exchangeFinished(draining: false))

        var drainedLater = respondingMachine()
        _ = relay(&drainedLater)
        drainedLater.responseEnded()
        XCTAssertFalse(drainedLater.exchangeFinished(draining: true), "a draining process keeps no connection")
    }

    func testAnAnswerBeforeTheBodyEndsClosesTheClientConnection() {
        var machine = Machine()
        machine.requestHeadParsed(keepAlive: true)
        XCTAssertEqual(relay(&machine), .relay(chunked: false, clientKeepAlive: false))
        machine.responseEnded()
        XCTAssertFalse(machine.exchangeCanFinish, "the app keeps its connection: the rest of the body goes to it")
        XCTAssertEqual(machine.requestEnded(), .forwardEnd(finishExchange: true))

        var appCloses = Machine()
        appCloses.requestHeadParsed(keepAlive: true)
        _ = relay(&appCloses, appKeepAlive: false)
        appCloses.responseEnded()
        XCTAssertTrue(appCloses.exchangeCanFinish, "the app closes: the rest of the body is not needed")
        XCTAssertFalse(appCloses.exchangeFinished(draining: false))
    }

    func testAnUpgradeOnABypassRouteBecomesATunnel() {
        var machine = respondingMachine()
        XCTAssertEqual(
            machine.responseHeadReceived(
                switchesProtocols: true, upgradeAllowed: true, framing: .none, appKeepAlive: false,
                requestVersion: .http1_1, draining: false),
            .upgrade)
        XCTAssertTrue(machine.isTunnel)
        XCTAssertTrue(machine.responseStarted && machine.responseComplete && machine.hasExchange)
        XCTAssertFalse(machine.isReading, "bytes are relayed, not parsed")
        XCTAssertFalse(machine.exchangeCanFinish, "a tunnel ends only when a side closes")
        var expected = Machine.DrainActions()
        expected.enableAppReading = true
        XCTAssertEqual(machine.outputDrained(outputEmpty: true), expected)
    }

    func testASwitchOfProtocolsNobodyAskedForIsRefusedAfterTheResponseStarted() {
        var machine = respondingMachine()
        XCTAssertEqual(
            machine.responseHeadReceived(
                switchesProtocols: true, upgradeAllowed: false, framing: .none, appKeepAlive: true,
                requestVersion: .http1_1, draining: false),
            .refuseUpgrade)
        XCTAssertFalse(machine.isTunnel)
        XCTAssertTrue(machine.responseStarted, "so the failure cuts the connection instead of answering")
    }

    func testAReplicatedWriteIsSubmittedWholeAndAnsweredByTheApplier() {
        var machine = Machine()
        machine.requestHeadParsed(keepAlive: true)
        machine.route(.replicatedWrite)
        XCTAssertEqual(machine.requestEnded(), .submitWrite)
        XCTAssertTrue(machine.requestComplete)
        XCTAssertTrue(machine.writeAnswered(draining: false))
        XCTAssertTrue(machine.responseComplete)
        XCTAssertTrue(machine.exchangeFinished(draining: false))

        var draining = Machine()
        draining.requestHeadParsed(keepAlive: true)
        draining.route(.replicatedWrite)
        _ = draining.requestEnded()
        XCTAssertFalse(draining.writeAnswered(draining: true))
    }

    func testAReadWaitsForItsLevelThenGoesToTheApp() {
        var machine = Machine()
        machine.requestHeadParsed(keepAlive: true)
        machine.route(.readLevel)
        XCTAssertEqual(machine.requestEnded(), .awaitReadLevel)
        machine.readLevelReached()
        XCTAssertEqual(machine.exchange?.route, .app)
        XCTAssertFalse(machine.responseStarted)
    }

    func testARefusedBodilessRequestKeepsTheConnectionAndAnEarlyEndIsIgnored() {
        var machine = Machine()
        machine.requestHeadParsed(keepAlive: true)
        XCTAssertTrue(machine.answeredWithError(forceClose: false, requestBodiless: true, draining: false))
        XCTAssertTrue(machine.isBetweenRequests)
        // The refused request's end is parsed after its answer: there is nothing left to end.
        XCTAssertEqual(machine.requestEnded(), .none)
        XCTAssertEqual(machine.resumeReading(outputEmpty: true), .now)
        XCTAssertFalse(machine.answeredWithError(forceClose: false, requestBodiless: true, draining: true))
    }
}
