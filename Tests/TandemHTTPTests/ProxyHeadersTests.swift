import XCTest

@testable import TandemHTTP

/// RFC 9110 section 7.6.1 hop-by-hop handling and the forwarding fields.
final class ProxyHeadersTests: XCTestCase {
    func testEveryHopByHopFieldAndEveryFieldNamedInConnectionIsRemovedAndTheRestKeepTheirOrder() {
        var headers: HTTPHeaders = [
            "Host": "a", "Connection": "keep-alive, X-Private", "Keep-Alive": "timeout=5", "X-First": "1",
            "Proxy-Connection": "keep-alive", "TE": "trailers", "Transfer-Encoding": "chunked",
            "Upgrade": "websocket", "Proxy-Authenticate": "Basic", "Proxy-Authorization": "Basic eA==",
            "Trailer": "X-Sum", "x-private": "secret", "X-Last": "2", "connection": "x-other", "X-Other": "o",
        ]
        ProxyHeaders.removeHopByHop(from: &headers)
        XCTAssertEqual(headers.map { $0.name }, ["Host", "X-First", "X-Last"])
    }

    func testWhenTunnellingUpgradeIsKeptAndConnectionUpgradeIsSentAgain() {
        var headers: HTTPHeaders = [
            "Host": "a", "Connection": "Upgrade, X-Hop", "Upgrade": "websocket", "X-Hop": "1", "Sec-WebSocket-Key": "k",
        ]
        ProxyHeaders.removeHopByHop(from: &headers, keepUpgrade: true)
        XCTAssertEqual(headers.map { $0.name }, ["Host", "Upgrade", "Sec-WebSocket-Key", "Connection"])
        XCTAssertEqual(headers.first(name: "connection"), "upgrade")
    }

    func testForwardingFieldsAreAddedForIPv4() {
        var headers: HTTPHeaders = ["Host": "a"]
        ProxyHeaders.appendForwarding(to: &headers, clientAddress: "192.0.2.7")
        XCTAssertEqual(headers.first(name: "X-Forwarded-For"), "192.0.2.7")
        XCTAssertEqual(headers.first(name: "Forwarded"), "for=192.0.2.7;proto=http")
    }

    func testIPv6IsBracketedAndQuotedInForwardedButBareInXForwardedFor() {
        var headers = HTTPHeaders()
        ProxyHeaders.appendForwarding(to: &headers, clientAddress: "::1")
        XCTAssertEqual(headers.first(name: "x-forwarded-for"), "::1")
        XCTAssertEqual(headers.first(name: "forwarded"), "for=\"[::1]\";proto=http")
        XCTAssertEqual(
            ProxyHeaders.forwardedElement(clientAddress: "2001:db8::1", proto: "https"),
            "for=\"[2001:db8::1]\";proto=https")
    }

    func testTheClientAddressIsAppendedToExistingListsWithoutAddingFields() {
        var headers: HTTPHeaders = [
            "X-Forwarded-For": "203.0.113.1", "x-forwarded-for": "198.51.100.2", "Forwarded": "for=203.0.113.1",
        ]
        ProxyHeaders.appendForwarding(to: &headers, clientAddress: "10.0.0.1")
        XCTAssertEqual(headers.values(name: "X-Forwarded-For"), ["203.0.113.1", "198.51.100.2, 10.0.0.1"])
        XCTAssertEqual(headers.values(name: "Forwarded"), ["for=203.0.113.1, for=10.0.0.1;proto=http"])
        XCTAssertEqual(headers.count, 3)
    }

    func testAForwardingFieldNamedInConnectionCannotRemoveWhatTheProxyAppendsAfterwards() {
        var headers: HTTPHeaders = ["Connection": "X-Forwarded-For", "X-Forwarded-For": "spoofed"]
        ProxyHeaders.removeHopByHop(from: &headers)
        ProxyHeaders.appendForwarding(to: &headers, clientAddress: "10.0.0.9")
        XCTAssertEqual(headers.values(name: "X-Forwarded-For"), ["10.0.0.9"])
    }

    func testSetFramingReplacesWhateverFramingFieldsWereThere() {
        var headers: HTTPHeaders = ["Content-Length": "5", "Transfer-Encoding": "chunked", "X": "1"]
        ProxyHeaders.setFraming(.chunked, in: &headers)
        XCTAssertEqual(headers, ["X": "1", "Transfer-Encoding": "chunked"])
        ProxyHeaders.setFraming(.contentLength(12), in: &headers)
        XCTAssertEqual(headers, ["X": "1", "Content-Length": "12"])
        ProxyHeaders.setFraming(.none, in: &headers)
        XCTAssertEqual(headers, ["X": "1"])
    }

    func testAnUnparseableIncomingForwardedIsDroppedNotMergedWithTheAppendedElement() {
        var headers: HTTPHeaders = ["Host": "a", "Forwarded": "for=\"1.2.3.4"]
        ProxyHeaders.appendForwarding(to: &headers, clientAddress: "192.0.2.7")
        XCTAssertEqual(headers.values(name: "Forwarded"), ["for=192.0.2.7;proto=http"])
        var two: HTTPHeaders = ["Forwarded": "for=192.0.2.1", "Forwarded": "for=\"[::1]"]
        ProxyHeaders.appendForwarding(to: &two, clientAddress: "192.0.2.7")
        XCTAssertEqual(two.values(name: "Forwarded"), ["for=192.0.2.7;proto=http"], "one bad field drops them all")
        var good: HTTPHeaders = ["Forwarded": "for=\"[2001:db8::1]:80\";by=x, for=unknown"]
        ProxyHeaders.appendForwarding(to: &good, clientAddress: "192.0.2.7")
        XCTAssertEqual(
            good.values(name: "Forwarded"), ["for=\"[2001:db8::1]:80\";by=x, for=unknown, for=192.0.2.7;proto=http"])
    }

    func testForwardedSyntax() {
        for valid in ["for=1.2.3.4", "for=\"a\\\"b\"", "for=a;proto=http, for=b", "for=a ;by=b", "for=a,,for=b"] {
            XCTAssertTrue(ProxyHeaders.isWellFormedForwarded(valid), valid)
        }
        for invalid in ["for=\"1.2.3.4", "", "for", "for=", "=a", "for=a b", "for=\"a\\", "for=a\"", "for=[::1]"] {
            XCTAssertFalse(ProxyHeaders.isWellFormedForwarded(invalid), invalid)
        }
    }

    func testEveryTandemFieldIsRemovedWhateverItsCase() {
        var headers: HTTPHeaders = [
            "Host": "a", "Tandem-Index": "9", "tandem-consistency": "local", "TANDEM-AFTER": "1", "Tandem": "x",
            "X-Tandem-Index": "y", "Tandem-": "z",
        ]
        ProxyHeaders.removeTandemFields(from: &headers)
        XCTAssertEqual(headers.map { $0.name }, ["Host", "Tandem", "X-Tandem-Index", "Tandem-"])
    }
}

/// Trailers are forwarded only with fields a recipient may accept in a trailer section.
final class TrailerRulesTests: XCTestCase {
    func testFramingRoutingAndAuthenticationFieldsAreDroppedFromTrailersAndTheRestKept() {
        var trailers: HTTPHeaders = [
            "X-Checksum": "42", "content-length": "10", "Transfer-Encoding": "chunked", "Host": "evil",
            "Authorization": "Bearer x", "Server-Timing": "app;dur=3", "Set-Cookie": "a=b",
        ]
        XCTAssertEqual(ProxyHeaders.removeForbiddenTrailers(from: &trailers), 5)
        XCTAssertEqual(trailers, ["X-Checksum": "42", "Server-Timing": "app;dur=3"])
    }
}
