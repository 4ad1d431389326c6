import XCTest

@testable import TandemHTTP

/// `METHOD /path/glob*` rules, as TANDEM_*_ROUTES use them.
final class RouteMatcherTests: XCTestCase {
    private func rule(_ text: String) -> HTTPRouteRule { try! HTTPRouteRule(parsing: text) }

    func testASuffixWildcardMatchesEverythingBelowThePrefixAndTheQueryIsIgnored() {
        let ws = rule("GET /ws*")
        XCTAssertTrue(ws.matches(method: "GET", target: "/ws"))
        XCTAssertTrue(ws.matches(method: "GET", target: "/ws/chat?room=1"))
        XCTAssertTrue(ws.matches(method: "GET", target: "/wsx"))
        XCTAssertFalse(ws.matches(method: "GET", target: "/w"))
        XCTAssertFalse(ws.matches(method: "POST", target: "/ws"))
    }

    func testAnExactPatternMatchesOnlyThatPath() {
        let search = rule("POST /search")
        XCTAssertTrue(search.matches(method: "POST", target: "/search?q=1"))
        XCTAssertFalse(search.matches(method: "POST", target: "/search/"))
        XCTAssertFalse(search.matches(method: "POST", target: "/Search"))
    }

    func testAStarMethodMatchesAnyMethodAndARuleMethodIsUpperCased() {
        XCTAssertTrue(rule("* /x").matches(method: "PATCH", target: "/x"))
        XCTAssertTrue(rule("get /x").matches(method: "GET", target: "/x"))
        XCTAssertFalse(rule("GET /x").matches(method: "get", target: "/x"), "request methods are case-sensitive")
    }

    func testAWildcardInTheMiddleMatchesAnyRunIncludingSlashes() {
        let append = rule("POST /kv/*/append")
        XCTAssertTrue(append.matches(method: "POST", target: "/kv/a/append"))
        XCTAssertTrue(append.matches(method: "POST", target: "/kv/a/b/append"))
        XCTAssertTrue(append.matches(method: "POST", target: "/kv//append"))
        XCTAssertFalse(append.matches(method: "POST", target: "/kv/a/append/x"))
        XCTAssertTrue(rule("GET /*.json").matches(method: "GET", target: "/a/b.json"))
        XCTAssertTrue(rule("GET /a*b*c").matches(method: "GET", target: "/axxbyybzc"))
        XCTAssertFalse(rule("GET /a*b*c").matches(method: "GET", target: "/axxbyy"))
    }

    func testDotSegmentsAndEncodedUnreservedCharactersCannotSidestepARule() {
        let query = rule("POST /query*")
        XCTAssertFalse(query.matches(method: "POST", target: "/query/../kv/x"), "the app serves /kv/x")
        XCTAssertFalse(query.matches(method: "POST", target: "/query/%2e%2E/kv/x"))
        let admin = rule("POST /admin*")
        XCTAssertTrue(admin.matches(method: "POST", target: "/%61dmin/x"))
        XCTAssertTrue(admin.matches(method: "POST", target: "/kv/../admin"))
        XCTAssertTrue(admin.matches(method: "POST", target: "/./admin"))
        XCTAssertEqual(normalizedRoutePath("/a/b/../c/./d/.."), "/a/c/")
        XCTAssertEqual(normalizedRoutePath("/../.."), "/")
        XCTAssertEqual(normalizedRoutePath("/a%2Fb"), "/a%2Fb", "an encoded slash is not a separator")
    }

    func testAbsoluteFormTargetsAreMatchedOnTheirPath() {
        XCTAssertTrue(rule("GET /ws*").matches(method: "GET", target: "http://host:80/ws/x?y"))
    }

    func testAListIsParsedInOrderAndTheFirstMatchWins() throws {
        let table = try HTTPRouteTable(parsingList: " GET /kv/special , * /kv/* ,POST /other ")
        XCTAssertEqual(table.rules.count, 3)
        XCTAssertEqual(table.firstMatch(method: "GET", target: "/kv/special")?.description, "GET /kv/special")
        XCTAssertEqual(table.firstMatch(method: "DELETE", target: "/kv/special")?.description, "* /kv/*")
        XCTAssertNil(table.firstMatch(method: "GET", target: "/else"))
        XCTAssertTrue(try HTTPRouteTable(parsingList: "").rules.isEmpty)
        XCTAssertFalse(try HTTPRouteTable(parsingList: " , ").matches(method: "GET", target: "/"))
    }

    func testMalformedRulesAreRejectedWithAReason() {
        for text in ["/no-method", "GET", "GET no-slash", "GET /a /b", "G(T /a", "GET /caf\u{e9}"] {
            XCTAssertThrowsError(try HTTPRouteRule(parsing: text), text) { error in
                XCTAssertFalse((error as? HTTPRouteRuleError)?.reason.isEmpty ?? true)
            }
        }
    }

    func testGlobMatchingStaysFastOnAdversarialPatterns() {
        let pattern = "/" + String(repeating: "*a", count: 30) + "b"
        let path = "/" + String(repeating: "a", count: 8000)
        let started = Date()
        XCTAssertFalse(rule("GET \(pattern)").matches(method: "GET", target: path))
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.0)
    }
}
