import XCTest

@testable import TandemConfig

final class HostPortTests: XCTestCase {
    func testIPv4DNSAndBracketedIPv6AddressesParse() throws {
        let v4 = try HostPort(parsing: "0.0.0.0:8080")
        XCTAssertEqual([v4.host, String(v4.port)], ["0.0.0.0", "8080"])
        XCTAssertEqual(v4.kind, .ipv4)
        let v6 = try HostPort(parsing: "[::1]:80")
        XCTAssertEqual(v6.host, "::1")
        XCTAssertEqual(v6.kind, .ipv6)
        XCTAssertEqual(v6.description, "[::1]:80")
        let name = try HostPort(parsing: "tandem-0.tandem.default.svc.cluster.local:7400")
        XCTAssertEqual(name.kind, .dnsName)
        XCTAssertEqual(name.port, 7400)
        XCTAssertEqual(try HostPort(parsing: "compose_app_1:3000").kind, .dnsName)
        XCTAssertEqual(try HostPort(parsing: "localhost:3000").description, "localhost:3000")
    }

    func testPortZeroAndTheHighestPortAreAccepted() throws {
        XCTAssertEqual(try HostPort(parsing: "127.0.0.1:0").port, 0)
        XCTAssertEqual(try HostPort(parsing: "127.0.0.1:65535").port, 65535)
    }

    func testBadPortsAreRefused() {
        for text in ["h:65536", "h:-1", "h:", "h:80a", "h:123456", "h: 80", "h:+80", "h"] {
            XCTAssertThrowsError(try HostPort(parsing: text), text)
        }
        XCTAssertThrowsError(try HostPort(parsing: "h:99999")) { error in
            XCTAssertEqual((error as? ConfigValueError)?.problem, "has an invalid port \"99999\"")
        }
    }

    func testIPv6WithoutBracketsIsRefusedWithAHint() {
        XCTAssertThrowsError(try HostPort(parsing: "::1:80")) { error in
            XCTAssertEqual((error as? ConfigValueError)?.problem, "looks like an IPv6 address without brackets")
        }
    }

    func testBadHostsAreRefused() {
        let bad = [
            ":8080", "[::1:80", "[::1]80", "[zz::1]:80", "[1.2.3.4]:80", "999.1.1.1:80", "1.2.3:80", "-a.b:80",
            "a-.b:80", "a..b:80", "a b:80", "h\u{e9}te:80", String(repeating: "a", count: 64) + ".b:80",
        ]
        for text in bad {
            XCTAssertThrowsError(try HostPort(parsing: text), text)
        }
    }

    func testWildcardHostsAreRecognized() throws {
        XCTAssertTrue(try HostPort(parsing: "0.0.0.0:1").isWildcard)
        XCTAssertTrue(try HostPort(parsing: "[::]:1").isWildcard)
        XCTAssertTrue(try HostPort(parsing: "[0:0::0]:1").isWildcard)
        XCTAssertFalse(try HostPort(parsing: "127.0.0.1:1").isWildcard)
    }
}

final class PeerListTests: XCTestCase {
    func testAPeerListParsesInOrderWithSpacesIgnored() throws {
        let peers = try Peer.parseList("n1=10.0.0.1:7400, n2=tandem-1:7400 ,n3=[fd00::3]:7400")
        XCTAssertEqual(peers.map(\.id), ["n1", "n2", "n3"])
        XCTAssertEqual(peers.map(\.address.description), ["10.0.0.1:7400", "tandem-1:7400", "[fd00::3]:7400"])
    }

    func testDuplicateIdsAndAddressesAreRefused() {
        XCTAssertThrowsError(try Peer.parseList("n1=a:1,n1=b:1")) { error in
            XCTAssertEqual((error as? ConfigValueError)?.problem, "lists node id n1 twice")
        }
        XCTAssertThrowsError(try Peer.parseList("n1=a:1,n2=A:1")) { error in
            XCTAssertEqual((error as? ConfigValueError)?.problem, "lists address A:1 twice")
        }
    }

    func testMalformedEntriesAreRefused() {
        for text in ["n1", "n1=", "=a:1", "n1=a:1,", "n1=a:1,,n2=b:1", "n 1=a:1", "-n=a:1", "n1=a:0", "n1=a"] {
            XCTAssertThrowsError(try Peer.parseList(text), text)
        }
        XCTAssertThrowsError(try Peer.parseList("n1=a")) { error in
            XCTAssertEqual((error as? ConfigValueError)?.problem, "has for n1 an address that has no port")
        }
    }

    func testTheListIsBounded() throws {
        let fifteen = (1...15).map { "n\($0)=h\($0):7400" }.joined(separator: ",")
        XCTAssertEqual(try Peer.parseList(fifteen).count, 15)
        XCTAssertThrowsError(try Peer.parseList(fifteen + ",n16=h16:7400"))
    }

    func testNodeIdsAreSafeTokens() {
        XCTAssertTrue(NodeID.isValid("n1"))
        XCTAssertTrue(NodeID.isValid("tandem-0.tandem_x"))
        XCTAssertTrue(NodeID.isValid(String(repeating: "a", count: 64)))
        for id in ["", "-n", ".n", "n 1", "n\"1", "n/1", "n\u{e9}", String(repeating: "a", count: 65)] {
            XCTAssertFalse(NodeID.isValid(id), id)
        }
    }
}

final class RouteRuleTests: XCTestCase {
    func testARuleIsAMethodAndAGlob() throws {
        let rules = try RouteRule.parseList("GET /ws/*, * /internal/*,POST  /search")
        XCTAssertEqual(rules.map(\.method), ["GET", "*", "POST"])
        XCTAssertEqual(rules.map(\.pathPattern), ["/ws/*", "/internal/*", "/search"])
    }

    func testStarMatchesAnyRunOfCharactersIncludingSlashes() throws {
        let rule = try RouteRule(parsing: "GET /ws/*")
        XCTAssertTrue(rule.matches(method: "GET", path: "/ws/"))
        XCTAssertTrue(rule.matches(method: "GET", path: "/ws/a/b/c"))
        XCTAssertFalse(rule.matches(method: "GET", path: "/ws"))
        XCTAssertFalse(rule.matches(method: "POST", path: "/ws/a"))
        let middle = try RouteRule(parsing: "* /kv/*/append")
        XCTAssertTrue(middle.matches(method: "PUT", path: "/kv/x/append"))
        XCTAssertTrue(middle.matches(method: "PUT", path: "/kv/x/y/append"))
        XCTAssertFalse(middle.matches(method: "PUT", path: "/kv/x/append/more"))
        let exact = try RouteRule(parsing: "POST /search")
        XCTAssertTrue(exact.matches(method: "POST", path: "/search"))
        XCTAssertFalse(exact.matches(method: "POST", path: "/search/x"))
    }

    func testGlobMatchingHandlesManyStarsWithoutBlowingUp() {
        let pattern = Array(String(repeating: "*a", count: 200).utf8)
        let subject = Array(String(repeating: "a", count: 1000).utf8) + [UInt8(ascii: "b")]
        XCTAssertFalse(RouteRule.glob(pattern, matches: subject))
        XCTAssertTrue(RouteRule.glob(Array("**".utf8), matches: []))
    }

    func testMalformedRulesAreRefused() {
        for text in ["GET", "/path", "GET path", "get /p", "GET /p extra", "GET /p?x", "G@T /p", ""] {
            XCTAssertThrowsError(try RouteRule.parseList(text), text)
        }
        XCTAssertThrowsError(try RouteRule.parseList("get /x")) { error in
            XCTAssertEqual(
                error as? ConfigValueError,
                ConfigValueError(
                    problem: "has an invalid method \"get\"",
                    expected: "upper-case HTTP methods such as POST,PUT,PATCH,DELETE or *"))
        }
    }

    func testLowerCaseWriteMethodsAreRefusedBecauseTheyWouldNeverMatch() throws {
        XCTAssertEqual(try HTTPMethod.parseSet("POST, PUT,POST"), ["POST", "PUT"])
        XCTAssertThrowsError(try HTTPMethod.parseSet("post"))
        XCTAssertThrowsError(try HTTPMethod.parseSet("POST,,PUT"))
    }

    func testBypassWinsOverWriteWhichWinsOverReadWhichWinsOverTheMethod() throws {
        let classifier = RequestClassifier(
            writeMethods: ["POST", "PUT"],
            readRoutes: try RouteRule.parseList("POST /search*,GET /both"),
            writeRoutes: try RouteRule.parseList("GET /both,GET /touch"),
            bypassRoutes: try RouteRule.parseList("* /ws/*"))
        XCTAssertEqual(classifier.classify(method: "POST", path: "/ws/chat"), .bypass)
        XCTAssertEqual(classifier.classify(method: "GET", path: "/both"), .write)
        XCTAssertEqual(classifier.classify(method: "GET", path: "/touch"), .write)
        XCTAssertEqual(classifier.classify(method: "POST", path: "/search/x"), .read)
        XCTAssertEqual(classifier.classify(method: "PUT", path: "/kv/a"), .write)
        XCTAssertEqual(classifier.classify(method: "GET", path: "/kv/a"), .read)
        XCTAssertEqual(classifier.classify(method: "DELETE", path: "/kv/a"), .read)
    }
}

final class RateLimitParserTests: XCTestCase {
    func testARateIsCountPerPeriodWithBurstDefaultingToTheCount() throws {
        XCTAssertEqual(try RateLimit(parsing: "200/s"), RateLimit(count: 200, periodMs: 1000, burst: 200))
        XCTAssertEqual(try RateLimit(parsing: "200/s;burst=400"), RateLimit(count: 200, periodMs: 1000, burst: 400))
        XCTAssertEqual(try RateLimit(parsing: "60/m; burst=1"), RateLimit(count: 60, periodMs: 60_000, burst: 1))
        XCTAssertEqual(try RateLimit(parsing: "5/h"), RateLimit(count: 5, periodMs: 3_600_000, burst: 5))
    }

    func testARateRoundTripsThroughItsDescription() throws {
        let rate = try RateLimit(parsing: "7/m;burst=3")
        XCTAssertEqual(try RateLimit(parsing: rate.description), rate)
    }

    func testMalformedRatesAreRefused() {
        let bad = [
            "200", "200/", "/s", "0/s", "-5/s", "200/d", "200/sec", "200/s;burst=0", "200/s;burst=", "200/s;b=4",
            "200/s;burst=4;x", "1.5/s", "2000000000/s",
        ]
        for text in bad {
            XCTAssertThrowsError(try RateLimit(parsing: text), text)
        }
    }

    func testTheKeyIsTheClientIPOrANamedHeader() throws {
        XCTAssertEqual(try RateLimitKey(parsing: "ip"), .ip)
        XCTAssertEqual(try RateLimitKey(parsing: "IP"), .ip)
        XCTAssertEqual(try RateLimitKey(parsing: "header:X-Api-Key"), .header("X-Api-Key"))
        for text in ["", "host", "header:", "header:X Api", "header:X:Y", "cookie:x"] {
            XCTAssertThrowsError(try RateLimitKey(parsing: text), text)
        }
    }
}
