import XCTest

@testable import TandemHTTP

/// The one-pass forwarded heads must be byte for byte what rewriting a copy of the fields with `ProxyHeaders` and
/// serializing it gives.
final class ForwardedHeadsTests: XCTestCase {
    /// The composition `appendForwardedRequestHead` replaces.
    private func referenceRequestHead(_ head: HTTPRequestHead, clientAddress: String, keepUpgrade: Bool) -> [UInt8] {
        var headers = head.headers
        ProxyHeaders.removeHopByHop(from: &headers, keepUpgrade: keepUpgrade)
        ProxyHeaders.removeTandemFields(from: &headers)
        headers.remove(name: "Expect")
        ProxyHeaders.appendForwarding(to: &headers, clientAddress: clientAddress)
        ProxyHeaders.setFraming(head.framing, in: &headers)
        return HTTPSerializer.requestHead(HTTPRequestHead(method: head.method, target: head.target, headers: headers))
    }

    private func forwardedRequestHead(_ head: HTTPRequestHead, clientAddress: String, keepUpgrade: Bool) -> [UInt8] {
        var buffer: [UInt8] = []
        ProxyHeaders.appendForwardedRequestHead(
            head, clientAddress: clientAddress,
            forwardedElement: ProxyHeaders.forwardedElement(clientAddress: clientAddress), keepUpgrade: keepUpgrade,
            into: &buffer)
        return buffer
    }

    private func assertRequestHeadsAgree(
        _ head: HTTPRequestHead, clientAddress: String = "192.0.2.7", keepUpgrade: Bool = false,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let expected = referenceRequestHead(head, clientAddress: clientAddress, keepUpgrade: keepUpgrade)
        let actual = forwardedRequestHead(head, clientAddress: clientAddress, keepUpgrade: keepUpgrade)
        XCTAssertEqual(
            String(decoding: actual, as: UTF8.self), String(decoding: expected, as: UTF8.self),
            "fields \(head.headers), keepUpgrade \(keepUpgrade)", file: file, line: line)
    }

    func testAPlainGETGainsBothForwardingFieldsAtTheEnd() {
        let head = HTTPRequestHead(method: "GET", target: "/kv/a?x=1", headers: ["Host": "h:1", "Accept": "*/*"])
        let bytes = forwardedRequestHead(head, clientAddress: "127.0.0.1", keepUpgrade: false)
        XCTAssertEqual(
            String(decoding: bytes, as: UTF8.self),
            "GET /kv/a?x=1 HTTP/1.1\r\nHost: h:1\r\nAccept: */*\r\nX-Forwarded-For: 127.0.0.1\r\n"
                + "Forwarded: for=127.0.0.1;proto=http\r\n\r\n")
        assertRequestHeadsAgree(head)
    }

    func testExistingListsAreExtendedInPlaceAndAnEmptyOneIsReplaced() {
        assertRequestHeadsAgree(
            HTTPRequestHead(
                method: "GET", target: "/",
                headers: [
                    "X-Forwarded-For": "10.0.0.1", "Host": "h", "Forwarded": "for=10.0.0.1", "x-forwarded-for": "",
                ]))
        assertRequestHeadsAgree(
            HTTPRequestHead(method: "GET", target: "/", headers: ["Forwarded": "", "Host": "h"]), clientAddress: "::1")
    }

    func testAMalformedForwardedDropsEveryForwardedField() {
        let head = HTTPRequestHead(
            method: "GET", target: "/", headers: ["Forwarded": "for=1.2.3.4", "Host": "h", "forwarded": "for=\"x"])
        let text = String(
            decoding: forwardedRequestHead(head, clientAddress: "1.1.1.1", keepUpgrade: false), as: UTF8.self)
        XCTAssertFalse(text.contains("1.2.3.4"), text)
        XCTAssertTrue(text.hasSuffix("Forwarded: for=1.1.1.1;proto=http\r\n\r\n"), text)
        assertRequestHeadsAgree(head)
    }

    func testHopByHopNominatedTandemExpectAndFramingFieldsAreDroppedAndTheFramingRestated() {
        let fields: HTTPHeaders = [
            "Host": "h", "Connection": "keep-alive, X-Hop, host, content-length, x-forwarded-for", "X-Hop": "1",
            "Keep-Alive": "5", "TE": "trailers", "Tandem-Consistency": "linearizable", "Expect": "100-continue",
            "Content-Length": "5", "X-Forwarded-For": "9.9.9.9", "Trailer": "x", "X-End": "e",
        ]
        for framing in [BodyFraming.none, .contentLength(5), .chunked] {
            let head = HTTPRequestHead(method: "POST", target: "/w", headers: fields, framing: framing)
            assertRequestHeadsAgree(head)
            let text = String(
                decoding: forwardedRequestHead(head, clientAddress: "1.1.1.1", keepUpgrade: false), as: UTF8.self)
            XCTAssertFalse(text.contains("9.9.9.9"), "a field the client nominated is not extended: \(text)")
            XCTAssertTrue(text.contains("Host: h\r\n"), "Host is protected from nomination: \(text)")
        }
    }

    func testAnUpgradeIsKeptOnlyWhenTunnelling() {
        let head = HTTPRequestHead(
            method: "GET", target: "/ws",
            headers: ["Host": "h", "Connection": "Upgrade, X-Hop", "Upgrade": "websocket", "X-Hop": "1"])
        assertRequestHeadsAgree(head, keepUpgrade: true)
        assertRequestHeadsAgree(head, keepUpgrade: false)
        let tunnelled = String(
            decoding: forwardedRequestHead(head, clientAddress: "1.1.1.1", keepUpgrade: true), as: UTF8.self)
        XCTAssertTrue(tunnelled.contains("Upgrade: websocket\r\nConnection: upgrade\r\n"), tunnelled)
    }

    func testAnHTTP10RequestIsForwardedAsHTTP11() {
        let head = HTTPRequestHead(method: "GET", target: "/", version: .http1_0, headers: ["Connection": "keep-alive"])
        let text = String(
            decoding: forwardedRequestHead(head, clientAddress: "1.1.1.1", keepUpgrade: false), as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("GET / HTTP/1.1\r\nX-Forwarded-For"), text)
        assertRequestHeadsAgree(head)
    }

    /// Random field lists drawn from names that every rule touches, in random case, against the reference.
    func testRandomFieldListsAgreeWithTheReference() {
        let names = [
            "Host", "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Transfer-Encoding", "Upgrade", "Trailer",
            "Proxy-Authorization", "Proxy-Authenticate", "Expect", "Content-Length", "X-Forwarded-For", "Forwarded",
            "Tandem-After", "Tandem-", "X-Hop", "Accept", "Content-Type",
        ]
        let connectionValues = ["close", "keep-alive", "X-Hop, upgrade", "x-forwarded-for", "forwarded", ", ,", "Host"]
        let forwardedValues = ["for=1.2.3.4", "for=\"[::1]\";proto=https", "for=\"open", "", "a=b, c=d"]
        var random = SplitMix64(seed: 0xF0_4A4D)
        for iteration in 0..<2000 {
            var fields: [(String, String)] = []
            for _ in 0..<Int(random.next() % 9) {
                var name = names[Int(random.next() % UInt64(names.count))]
                if random.next() % 3 == 0 { name = random.next() % 2 == 0 ? name.lowercased() : name.uppercased() }
                let value: String
                switch name.lowercased() {
                case "connection": value = connectionValues[Int(random.next() % UInt64(connectionValues.count))]
                case "forwarded": value = forwardedValues[Int(random.next() % UInt64(forwardedValues.count))]
                case "x-forwarded-for": value = random.next() % 4 == 0 ? "" : "10.0.0.\(iteration % 256)"
                default: value = "v\(iteration)"
                }
                fields.append((name, value))
            }
            let framings: [BodyFraming] = [.none, .contentLength(Int64(iteration)), .chunked]
            let head = HTTPRequestHead(
                method: "GET", target: "/p\(iteration)", headers: HTTPHeaders(fields),
                framing: framings[iteration % 3])
            let address = iteration % 5 == 0 ? "2001:db8::7" : "192.0.2.\(iteration % 256)"
            assertRequestHeadsAgree(head, clientAddress: address, keepUpgrade: iteration % 4 == 0)
        }
    }

    // MARK: responses

    func testAResponseHeadKeepsTheEndToEndFieldsAndTakesTheCallersOwn() {
        let headers: HTTPHeaders = [
            "Content-Type": "text/plain", "Connection": "keep-alive, X-Hop", "X-Hop": "1", "Keep-Alive": "timeout=5",
            "Transfer-Encoding": "chunked", "Date": "Mon, 30 Nov 2026 08:00:00 GMT", "content-length": "3",
        ]
        var expectedHeaders = headers
        ProxyHeaders.removeHopByHop(from: &expectedHeaders)
        expectedHeaders.add(name: "Tandem-Position", value: "42")
        expectedHeaders.add(name: "Connection", value: "close")
        let expected = HTTPSerializer.responseHead(
            HTTPResponseHead(status: 201, reason: "Created", headers: expectedHeaders))
        var actual: [UInt8] = []
        ProxyHeaders.appendForwardedResponseHeadStart(
            status: 201, reason: "Created", headers: headers, into: &actual)
        HTTPSerializer.appendField(name: "Tandem-Position", value: "42", into: &actual)
        HTTPSerializer.appendField(name: "Connection", value: "close", into: &actual)
        HTTPSerializer.appendEndOfHead(into: &actual)
        XCTAssertEqual(String(decoding: actual, as: UTF8.self), String(decoding: expected, as: UTF8.self))
        XCTAssertFalse(String(decoding: actual, as: UTF8.self).contains("X-Hop"))
    }

    func testTheStatusLineMatchesTheSerializerForEveryThreeDigitStatus() {
        for status in [100, 101, 200, 204, 304, 404, 503, 599, 999] {
            var line: [UInt8] = []
            HTTPSerializer.appendStatusLine(status: status, reason: "R", into: &line)
            XCTAssertEqual(String(decoding: line, as: UTF8.self), "HTTP/1.1 \(status) R\r\n")
        }
    }

    func testTheFixedHopByHopNamesAreExactlyTheListedOnes() {
        for name in ProxyHeaders.hopByHopFieldNames {
            XCTAssertTrue(ProxyHeaders.isFixedHopByHopName(name), name)
            XCTAssertTrue(ProxyHeaders.isFixedHopByHopName(name.uppercased()), name)
        }
        for name in ["Host", "Upgrades", "T", "Trailers", "Connections", "Forwarded", "Content-Length", ""] {
            XCTAssertFalse(ProxyHeaders.isFixedHopByHopName(name), name)
        }
    }

    func testTheOriginFormPathIsCutAtTheQueryAndPlainPathsAreNotRewritten() {
        XCTAssertEqual(requestPath(ofTarget: "/kv/bench"), "/kv/bench")
        XCTAssertEqual(requestPath(ofTarget: "/kv/a?b=/c?d"), "/kv/a")
        XCTAssertEqual(requestPath(ofTarget: "/?"), "/")
        XCTAssertEqual(normalizedRoutePath("/kv/bench"), "/kv/bench")
        XCTAssertEqual(normalizedRoutePath("/kv/%61"), "/kv/a")
        XCTAssertEqual(normalizedRoutePath("/kv/./a"), "/kv/a")
    }
}
