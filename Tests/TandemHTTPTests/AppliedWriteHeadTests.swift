import XCTest

@testable import TandemHTTP

/// The applier's one-pass head against the sequence of header operations it replaces: the bytes must be the same.
final class AppliedWriteHeadTests: XCTestCase {
    /// What the applier sent before: copy the fields, remove `Expect`, add Tandem's fields, restate the framing,
    /// serialize.
    private func reference(
        method: String, target: String, headers: HTTPHeaders, fields: AppliedWriteFields, bodyCount: Int
    ) -> [UInt8] {
        var headers = headers
        headers.remove(name: "Expect")
        headers.add(name: "Tandem-Index", value: String(fields.index))
        headers.add(name: "Tandem-Term", value: String(fields.term))
        headers.add(name: "Tandem-Time", value: String(fields.timeMs))
        headers.add(name: "Tandem-Request-Id", value: "\(fields.term)-\(fields.index)")
        if fields.redelivery { headers.add(name: "Tandem-Redelivery", value: "true") }
        ProxyHeaders.setFraming(.contentLength(Int64(bodyCount)), in: &headers)
        return HTTPSerializer.requestHead(HTTPRequestHead(method: method, target: target, headers: headers))
    }

    private func onePass(
        method: String, target: String, headers: HTTPHeaders, fields: AppliedWriteFields, bodyCount: Int
    ) -> [UInt8] {
        var buffer: [UInt8] = []
        HTTPSerializer.appendAppliedWriteHead(
            method: method, target: target, headers: headers, fields: fields, bodyCount: bodyCount, into: &buffer)
        return buffer
    }

    private func assertSame(
        method: String = "PUT", target: String = "/kv/a", headers: HTTPHeaders,
        fields: AppliedWriteFields = AppliedWriteFields(
            index: 42, term: 7, timeMs: 1_790_000_000_123, redelivery: false),
        bodyCount: Int = 256, file: StaticString = #filePath, line: UInt = #line
    ) {
        let expected = reference(method: method, target: target, headers: headers, fields: fields, bodyCount: bodyCount)
        let actual = onePass(method: method, target: target, headers: headers, fields: fields, bodyCount: bodyCount)
        XCTAssertEqual(
            String(decoding: actual, as: UTF8.self), String(decoding: expected, as: UTF8.self), file: file, line: line)
    }

    func testAPlainWriteGetsTandemFieldsAndItsLength() {
        let headers: HTTPHeaders = ["Host": "app", "Content-Type": "application/octet-stream"]
        assertSame(headers: headers)
        let text = String(
            decoding: onePass(
                method: "PUT", target: "/kv/a", headers: headers,
                fields: AppliedWriteFields(index: 42, term: 7, timeMs: 5, redelivery: true), bodyCount: 3),
            as: UTF8.self)
        XCTAssertEqual(
            text,
            "PUT /kv/a HTTP/1.1\r\nHost: app\r\nContent-Type: application/octet-stream\r\nTandem-Index: 42\r\n"
                + "Tandem-Term: 7\r\nTandem-Time: 5\r\nTandem-Request-Id: 7-42\r\nTandem-Redelivery: true\r\n"
                + "Content-Length: 3\r\n\r\n")
    }

    func testExpectAndTheFramingFieldsAreDroppedInAnyCaseAndEveryCopy() {
        let headers = HTTPHeaders([
            ("expect", "100-continue"), ("Host", "app"), ("CONTENT-LENGTH", "9"), ("X-A", "1"),
            ("Transfer-Encoding", "chunked"), ("Expect", "x"), ("content-length", "9"), ("X-A", "2"),
        ])
        assertSame(headers: headers)
        let text = String(
            decoding: onePass(
                method: "POST", target: "/c", headers: headers,
                fields: AppliedWriteFields(index: 1, term: 1, timeMs: 0, redelivery: false), bodyCount: 0),
            as: UTF8.self)
        XCTAssertFalse(text.lowercased().contains("expect"))
        XCTAssertFalse(text.lowercased().contains("transfer-encoding"))
        XCTAssertEqual(text.lowercased().components(separatedBy: "content-length").count - 1, 1)
    }

    func testNoFieldsARedeliveryANegativeTimeAndTheLargestIndex() {
        assertSame(headers: HTTPHeaders())
        assertSame(
            headers: ["Host": "h"],
            fields: AppliedWriteFields(index: .max, term: .max, timeMs: -1, redelivery: true), bodyCount: 0)
        assertSame(
            headers: ["Host": "h"], fields: AppliedWriteFields(index: 0, term: 0, timeMs: .min, redelivery: false))
    }

    func testAHeadLargerThanTheScratchBufferIsWrittenWhole() {
        var fields: [(String, String)] = []
        for number in 0..<60 { fields.append(("X-Field-\(number)", String(repeating: "v", count: 40))) }
        fields.insert(("Content-Length", "1"), at: 30)
        assertSame(headers: HTTPHeaders(fields), bodyCount: 1)
    }

    func testSeededRandomFieldListsMatchTheReference() {
        let names = [
            "Host", "Expect", "expect", "Content-Length", "CONTENT-length", "Transfer-Encoding", "X-Forwarded-For",
            "Forwarded", "Idempotency-Key", "Content-Type", "Exp", "Expects", "Content-Lengths", "TE",
        ]
        var generator = SplitMix64(seed: 0xA991_1ED)
        for _ in 0..<300 {
            var fields: [(String, String)] = []
            for _ in 0..<Int(generator.next() % 12) {
                let name = names[Int(generator.next() % UInt64(names.count))]
                fields.append((name, String(repeating: "a", count: Int(generator.next() % 30))))
            }
            let applied = AppliedWriteFields(
                index: generator.next(), term: generator.next() % 1000, timeMs: Int64(bitPattern: generator.next()),
                redelivery: generator.next() % 2 == 0)
            assertSame(headers: HTTPHeaders(fields), fields: applied, bodyCount: Int(generator.next() % 100_000))
        }
    }
}

/// The answer to a replicated write, written in one pass, against the header operations it replaces.
final class WriteAnswerHeadTests: XCTestCase {
    private struct Answer {
        var status = 201
        var reason = "Created"
        var headers: HTTPHeaders = ["Content-Type": "text/plain"]
        var bodyCount = 2
        var position: UInt64 = 17
        var leader = "n1"
        var replayed = false
        var connectionOption: String?
    }

    /// What the session sent before: drop the hop-by-hop fields, restate the framing, add Tandem's fields.
    private func reference(_ answer: Answer) -> String {
        var headers = answer.headers
        ProxyHeaders.removeHopByHop(from: &headers)
        ProxyHeaders.setFraming(.contentLength(Int64(answer.bodyCount)), in: &headers)
        headers.add(name: "Tandem-Position", value: String(answer.position))
        headers.add(name: "Tandem-Leader", value: answer.leader)
        if answer.replayed { headers.add(name: "Tandem-Replayed", value: "true") }
        headers.add(name: "Set-Cookie", value: "tandem_pos=\(answer.position); Path=/; SameSite=Lax")
        if let option = answer.connectionOption { headers.add(name: "Connection", value: option) }
        let bytes = HTTPSerializer.responseHead(
            HTTPResponseHead(status: answer.status, reason: answer.reason, headers: headers))
        return String(decoding: bytes, as: UTF8.self)
    }

    private func onePass(_ answer: Answer) -> String {
        var buffer: [UInt8] = []
        ProxyHeaders.appendWriteAnswerHead(
            status: answer.status, reason: answer.reason, headers: answer.headers, bodyCount: answer.bodyCount,
            position: answer.position, leader: answer.leader, replayed: answer.replayed,
            connectionOption: answer.connectionOption, into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    func testAPlainAnswer() {
        let answer = Answer()
        XCTAssertEqual(onePass(answer), reference(answer))
        XCTAssertEqual(
            onePass(answer),
            "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nTandem-Position: 17\r\n"
                + "Tandem-Leader: n1\r\nSet-Cookie: tandem_pos=17; Path=/; SameSite=Lax\r\n\r\n")
    }

    func testHopByHopAndFramingFieldsOfTheAppAreDropped() {
        var answer = Answer()
        answer.headers = HTTPHeaders([
            ("Connection", "keep-alive, X-Private"), ("content-length", "2"), ("X-Private", "secret"),
            ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"), ("X-Kept", "1"), ("CONTENT-LENGTH", "2"),
            ("Host", "app"),
        ])
        answer.replayed = true
        answer.connectionOption = "close"
        XCTAssertEqual(onePass(answer), reference(answer))
        XCTAssertFalse(onePass(answer).contains("secret"))
    }

    func testEveryConnectionOptionAnEmptyBodyAndAReasonOfItsOwn() {
        for option in [nil, "close", "keep-alive"] as [String?] {
            var answer = Answer()
            answer.status = 409
            answer.reason = "Conflict of a kind"
            answer.headers = HTTPHeaders()
            answer.bodyCount = 0
            answer.position = .max
            answer.leader = "node-with-a-long-name"
            answer.connectionOption = option
            XCTAssertEqual(onePass(answer), reference(answer))
        }
    }

    func testAnAnswerLargerThanTheScratchBuffer() {
        var answer = Answer()
        var fields: [(String, String)] = []
        for number in 0..<80 { fields.append(("X-Answer-\(number)", String(repeating: "w", count: 30))) }
        answer.headers = HTTPHeaders(fields)
        XCTAssertEqual(onePass(answer), reference(answer))
    }
}
