import Logging
import TandemConsensus
import TandemHTTP
import TandemNet
import XCTest

@testable import TandemSidecar

/// A committed write is replayed to the app on every replica: bytes that cannot be a request (a field name that
/// is not a token, a value with CR, LF or NUL, a method or target that would split the request line) must be one
/// deterministic answer everywhere, never a trap at apply.
final class WriteCommandValidationTests: XCTestCase {
    /// The WriteCommand layout written by hand, so that the test can say what `HTTPHeaders` refuses to hold.
    private func raw(
        method: String = "POST", target: String = "/k", fields: [(String, String)] = [], body: [UInt8] = [],
        trailing: [UInt8] = []
    ) -> [UInt8] {
        var out: [UInt8] = [1]
        func integer(_ value: Int, _ width: Int) {
            for shift in 0..<width { out.append(UInt8(truncatingIfNeeded: value >> (8 * shift))) }
        }
        func text(_ value: String, _ width: Int) {
            integer(value.utf8.count, width)
            out.append(contentsOf: value.utf8)
        }
        text(method, 2)
        text(target, 4)
        integer(fields.count, 2)
        for (name, value) in fields {
            text(name, 2)
            text(value, 4)
        }
        integer(body.count, 4)
        out.append(contentsOf: body)
        return out + trailing
    }

    /// Entries no replica can replay as written, each with what is wrong with it.
    private var invalid: [(String, [UInt8])] {
        [
            ("a field name with a space", raw(fields: [("Bad Name", "v")])),
            ("an empty field name", raw(fields: [("", "v")])),
            ("a field name with a colon", raw(fields: [("X:Y", "v")])),
            ("a field value with CR LF", raw(fields: [("X-A", "v\r\nX-Injected: 1")])),
            ("a field value with a bare LF", raw(fields: [("X-A", "v\nw")])),
            ("a field value with NUL", raw(fields: [("X-A", "v\u{0}w")])),
            ("a method with a space", raw(method: "GET /x")),
            ("an empty method", raw(method: "")),
            ("a target with a space", raw(target: "/a b")),
            ("a target with CR LF", raw(target: "/a\r\nX: 1")),
            ("an empty target", raw(target: "")),
            ("a target with non-ASCII", raw(target: "/é")),
            ("trailing bytes", raw(trailing: [0])),
        ]
    }

    func testAValidCommandRoundTrips() throws {
        let command = WriteCommand(
            method: "PATCH", target: "/items/7?x=1",
            headers: HTTPHeaders([("Content-Type", "text/plain"), ("X-Note", "tab\there é")]), body: [1, 2, 3])
        XCTAssertEqual(try WriteCommand.decode(command.encoded()), command)
        XCTAssertEqual(try WriteCommand.decode(raw(method: "OPTIONS", target: "*")).target, "*")
    }

    /// Fields are checked as bytes (no String per name and value): each refusal still names what is wrong, and
    /// bytes that are not UTF-8 are refused as text, as when each was built into a String.
    func testFieldsCheckedAsBytesAreRefusedForWhatIsWrongWithThem() {
        func patched(_ bytes: [UInt8], replacing marker: UInt8, with byte: UInt8) -> [UInt8] {
            bytes.map { $0 == marker ? byte : $0 }
        }
        let cases: [(String, [UInt8], WriteCommand.DecodeError)] = [
            ("a name with a space", raw(fields: [("Bad Name", "v")]), .invalidFieldName),
            (
                "a name that is not UTF-8", patched(raw(fields: [("X~", "v")]), replacing: 0x7E, with: 0xC3),
                .invalidText
            ),
            ("a name that is UTF-8 but not a token", raw(fields: [("X-é", "v")]), .invalidFieldName),
            ("a value with CR LF", raw(fields: [("X-A", "v\r\nX: 1")]), .invalidFieldValue),
            (
                "a value that is not UTF-8", patched(raw(fields: [("X-A", "v~w")]), replacing: 0x7E, with: 0xFF),
                .invalidText
            ),
            ("a value cut short", Array(raw(fields: [("X-A", "value")]).dropLast(6)), .truncated),
        ]
        for (what, bytes, expected) in cases {
            XCTAssertThrowsError(try WriteCommand.decode(bytes), what) { error in
                XCTAssertEqual(error as? WriteCommand.DecodeError, expected, what)
            }
        }
        let accepted = try? WriteCommand.decode(raw(fields: [("X-A", "caf\u{E9} \u{1F600}"), ("B", "")]))
        XCTAssertEqual(accepted?.headers.first(name: "X-A"), "caf\u{E9} \u{1F600}", "valid UTF-8 beyond ASCII is kept")
        XCTAssertEqual(accepted?.headers.first(name: "B"), "", "an empty value is a value")
    }

    func testDecodingRefusesWhatCannotBeSentAsARequest() {
        for (what, bytes) in invalid {
            XCTAssertThrowsError(try WriteCommand.decode(bytes), what)
        }
    }

    /// The applier answers such an entry with Tandem's own `bad_entry` 500 and folds that into the digest, the
    /// same on every replica; it never reaches the app (the port below has nothing listening).
    func testTheApplierAnswersAnInvalidEntryWithADeterministicBadEntry() throws {
        let loop = try EventLoop()
        var digests: [ApplyDigest] = []
        for (what, bytes) in invalid {
            let applier = Applier(
                loop: loop, upstreamHost: "127.0.0.1", upstreamPort: 9, startAfter: 0, idempotencyTTLMs: 1000,
                idempotencyMaxBytes: 1 << 20,
                responseBodyMaxBytes: 1 << 20, log: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
            var answers: [AppliedResponse?] = []
            applier.onApplied = { _, response in answers.append(response) }
            applier.enqueue([
                Entry(
                    term: 1, index: 1, kind: .normal, timeMs: 5,
                    proposal: ProposalID(origin: NodeID("n1"), sequence: 1),
                    data: bytes)
            ])
            XCTAssertEqual(applier.appliedIndex, 1, what)
            XCTAssertEqual(answers.first??.status, 500, what)
            XCTAssertTrue(String(decoding: answers.first??.body ?? [], as: UTF8.self).contains("bad_entry"), what)
            digests.append(applier.digest)
            applier.stop()
        }
        XCTAssertEqual(Set(digests.map(\.value)).count, 1, "one outcome, whatever was wrong")
    }

    /// Log time comes from the leader's clock: a time at the end of the range must not overflow the expiry.
    func testAnIdempotencyExpiryNearTheEndOfTimeSaturates() throws {
        var table = IdempotencyTable(ttlMs: 86_400_000)
        let command = WriteCommand(
            method: "POST", target: "/k", headers: HTTPHeaders([("Idempotency-Key", "abc")]), body: [])
        table.record(command: command, index: 1, response: nil, timeMs: .max - 10)
        XCTAssertEqual(table.count, 1)
        XCTAssertNotNil(table.check(command: command, timeMs: .max - 5), "still remembered")
        // At the very end of time the key expired (its expiry saturated there) and is recorded again.
        table.rebuild(command: command, index: 2, timeMs: .max, responses: [:])
        XCTAssertEqual(table.count, 1)
    }
}
