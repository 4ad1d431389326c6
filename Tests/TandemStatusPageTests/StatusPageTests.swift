import XCTest

@testable import TandemStatusPage

/// The admin status page: what an operator sees at `GET /` on the admin port.
final class StatusPageTests: XCTestCase {
    private let nowMs: Int64 = 1_000_000

    private func peer(
        _ id: String, role: StatusPageModel.MemberRole? = .voter, phi: Double = 0.4, matchIndex: UInt64? = 10,
        lagEntries: UInt64? = 0, lastContact: StatusPageModel.LastContact = .heard(msAgo: 12),
        history: [(tMs: Int64, phi: Double)] = []
    ) -> StatusPageModel.Peer {
        StatusPageModel.Peer(
            id: id, address: "\(id).tandem-peers:7400", role: role, connected: true, phi: phi, matchIndex: matchIndex,
            lagEntries: lagEntries, lastContact: lastContact, phiHistory: history)
    }

    private func model(nodeID: String = "n1", peers: [StatusPageModel.Peer]) -> StatusPageModel {
        StatusPageModel(
            nodeID: nodeID, role: "leader", term: 7, leader: nodeID, commitIndex: 42, appliedIndex: 41,
            diverged: false, peers: peers, nowMs: nowMs)
    }

    /// The text between `open` and the next `close` after it, for the first `open`.
    private func text(in html: String, after open: String, until close: String) -> String? {
        guard let start = html.range(of: open) else { return nil }
        guard let end = html.range(of: close, range: start.upperBound..<html.endIndex) else { return nil }
        return String(html[start.upperBound..<end.lowerBound])
    }

    private func polylinePoints(in html: String) -> [String] {
        var points: [String] = []
        var rest = html[...]
        while let start = rest.range(of: "points=\"") {
            let tail = rest[start.upperBound...]
            let end = tail.firstIndex(of: "\"")!
            points.append(String(tail[..<end]))
            rest = tail[end...]
        }
        return points
    }

    func testEveryStringFromTheModelIsEscapedSoANodeIDCannotInjectMarkup() {
        let hostile = "<script>alert('x')</script>&\""
        var page = model(nodeID: hostile, peers: [peer(hostile)])
        page.peers[0].address = "<img src=x onerror=alert(1)>:7400"
        page.role = "<b>leader</b>"
        let html = StatusPage.render(page)
        XCTAssertFalse(html.contains("<script"), "no script element may come from the model")
        XCTAssertFalse(html.contains("<img"), "no element may come from a peer address")
        XCTAssertFalse(html.contains("<b>leader"), "the role is text, not markup")
        XCTAssertTrue(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"))
        XCTAssertTrue(html.contains("&lt;img src=x onerror=alert(1)&gt;:7400"))
        XCTAssertEqual(
            text(in: html, after: "<dd id=\"node\">", until: "</dd>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;")
    }

    func testThePageIsSelfContainedAndRefreshesItselfWithoutJavaScript() {
        let html = StatusPage.render(model(peers: [peer("n2")]), refreshSeconds: 5)
        XCTAssertTrue(html.hasPrefix("<!DOCTYPE html>"))
        XCTAssertTrue(html.contains("<meta http-equiv=\"refresh\" content=\"5\"/>"))
        XCTAssertFalse(html.lowercased().contains("<script"), "no JavaScript")
        XCTAssertFalse(html.contains("src="), "no external images or scripts")
        XCTAssertFalse(html.contains("<link"), "no external stylesheets")
        let withoutSVGNamespace = html.replacingOccurrences(of: "xmlns=\"http://www.w3.org/2000/svg\"", with: "")
        XCTAssertFalse(withoutSVGNamespace.contains("http://"), "no absolute URLs besides the SVG namespace name")
        XCTAssertFalse(html.contains("https://"))
        XCTAssertTrue(html.contains("<svg"), "the chart is inline SVG")
    }

    func testTheDefaultRefreshIsTwoSeconds() {
        XCTAssertTrue(StatusPage.render(model(peers: [])).contains("content=\"2\""))
    }

    func testTheSummaryShowsExactlyTheModelsNumbers() {
        var page = model(peers: [])
        page.term = 123_456_789_012
        page.commitIndex = 987_654_321
        page.appliedIndex = 987_654_000
        page.leader = "n3"
        let html = StatusPage.render(page)
        XCTAssertEqual(text(in: html, after: "<dd id=\"term\">", until: "</dd>"), "123456789012")
        XCTAssertEqual(text(in: html, after: "<dd id=\"commitIndex\">", until: "</dd>"), "987654321")
        XCTAssertEqual(text(in: html, after: "<dd id=\"appliedIndex\">", until: "</dd>"), "987654000")
        XCTAssertEqual(text(in: html, after: "<dd id=\"leader\">", until: "</dd>"), "n3")
        XCTAssertEqual(text(in: html, after: "<dd id=\"role\">", until: "</dd>"), "leader")
        XCTAssertEqual(text(in: html, after: "<dd id=\"diverged\">", until: "</dd>"), "no")
    }

    func testAnUnknownLeaderIsShownAsNoneRatherThanAnEmptyCell() {
        var page = model(peers: [])
        page.leader = nil
        let html = StatusPage.render(page)
        XCTAssertEqual(text(in: html, after: "<dd id=\"leader\">", until: "</dd>"), "<em>none known</em>")
    }

    func testThePeerTableShowsExactlyEachPeersNumbers() {
        let peers = [
            peer("n2", phi: 0.437, matchIndex: 40, lagEntries: 2, lastContact: .heard(msAgo: 15)),
            peer("n3", role: .learner, phi: 9.5, matchIndex: 31, lagEntries: 11, lastContact: .never),
        ]
        let html = StatusPage.render(model(peers: peers))
        for (expected, row) in zip(peers, ["n2", "n3"]) {
            guard let rowHTML = text(in: html, after: "<tr data-peer=\"\(row)\">", until: "</tr>") else {
                return XCTFail("no row for \(row)")
            }
            XCTAssertEqual(
                text(in: rowHTML, after: "data-field=\"matchIndex\">", until: "<"), "\(expected.matchIndex!)")
            XCTAssertEqual(
                text(in: rowHTML, after: "data-field=\"lagEntries\">", until: "<"), "\(expected.lagEntries!)")
            XCTAssertEqual(text(in: rowHTML, after: "data-field=\"role\">", until: "<"), expected.role?.rawValue)
            XCTAssertEqual(text(in: rowHTML, after: "data-field=\"address\">", until: "<"), expected.address)
        }
        let n2 = text(in: html, after: "<tr data-peer=\"n2\">", until: "</tr>")!
        XCTAssertEqual(text(in: n2, after: "data-field=\"phi\">", until: "<"), "0.44")
        XCTAssertEqual(text(in: n2, after: "data-field=\"lastContactMs\">", until: "<"), "15 ms ago")
        let n3 = text(in: html, after: "<tr data-peer=\"n3\">", until: "</tr>")!
        XCTAssertTrue(n3.contains("data-field=\"phi\" class=\"suspected\">9.50<"), "above the threshold is flagged")
        XCTAssertEqual(text(in: n3, after: "data-field=\"lastContactMs\">", until: "<"), "never")
    }

    /// A follower of n1: it tracks no replication for its peers and hears from n1 only.
    private func followerModel(cluster: StatusPageModel.Cluster?) -> StatusPageModel {
        StatusPageModel(
            nodeID: "n2", role: "follower", term: 7, leader: "n1", commitIndex: 42, appliedIndex: 42,
            diverged: false,
            peers: [
                peer("n1", matchIndex: nil, lagEntries: nil, lastContact: .heard(msAgo: 30)),
                peer("n3", matchIndex: nil, lagEntries: nil, lastContact: .unknown),
                peer("n4", role: .learner, matchIndex: nil, lagEntries: nil, lastContact: .unknown),
            ],
            cluster: cluster, nowMs: nowMs)
    }

    private let leadersView = StatusPageModel.Cluster(
        asSeenBy: "n1", ageMs: 400,
        members: [
            .init(id: "n1", address: "n1.tandem-peers:7400", role: .voter, matchIndex: 51, lagEntries: 0),
            .init(id: "n2", address: "n2.tandem-peers:7400", role: .voter, matchIndex: 50, lagEntries: 1),
            .init(id: "n3", address: "n3.tandem-peers:7400", role: .voter, matchIndex: 51, lagEntries: 0),
            .init(id: "n4", address: nil, role: .learner, matchIndex: nil, lagEntries: nil),
        ])

    func testAFollowerShowsWhatItDoesNotTrackAsUnknownNeverAsZeroOrNever() throws {
        let html = StatusPage.render(followerModel(cluster: nil))
        let table = try XCTUnwrap(text(in: html, after: "<table class=\"peers\">", until: "</table>"))
        for id in ["n1", "n3", "n4"] {
            let row = try XCTUnwrap(text(in: table, after: "<tr data-peer=\"\(id)\">", until: "</tr>"))
            for field in ["matchIndex", "lagEntries"] {
                XCTAssertEqual(
                    text(in: row, after: "data-field=\"\(field)\" class=\"unknown\">", until: "<"), "unknown",
                    "\(id) \(field)")
            }
        }
        let n1 = try XCTUnwrap(text(in: table, after: "<tr data-peer=\"n1\">", until: "</tr>"))
        XCTAssertEqual(text(in: n1, after: "data-field=\"lastContactMs\">", until: "<"), "30 ms ago", "it hears n1")
        let n3 = try XCTUnwrap(text(in: table, after: "<tr data-peer=\"n3\">", until: "</tr>"))
        XCTAssertEqual(text(in: n3, after: "data-field=\"lastContactMs\" class=\"unknown\">", until: "<"), "unknown")
        XCTAssertFalse(table.contains(">never<"), "a peer this node does not track is not 'never' heard from")
        XCTAssertFalse(table.contains(">0<"), "nothing unknown is shown as 0")
        XCTAssertTrue(html.contains(".unknown{color:#78909c}"), "unknowns are muted")
    }

    func testThePeerTableHasARoleColumnAndAnUnknownRoleSaysSo() throws {
        let html = StatusPage.render(model(peers: [peer("n2"), peer("n3", role: .learner), peer("n4", role: nil)]))
        XCTAssertTrue(html.contains("<th>Address</th><th>Role</th><th>Link</th>"))
        let roles = try ["n2", "n3", "n4"].map { id in
            let row = try XCTUnwrap(text(in: html, after: "<tr data-peer=\"\(id)\">", until: "</tr>"))
            return try XCTUnwrap(text(in: row, after: "data-field=\"role\"", until: "</td>"))
        }
        XCTAssertEqual(roles, [">voter", ">learner", " class=\"unknown\">unknown"])
    }

    func testTheLeaderShowsNeverForAMemberItNeverHeardFrom() throws {
        let html = StatusPage.render(model(peers: [peer("n2", lastContact: .never)]))
        let row = try XCTUnwrap(text(in: html, after: "<tr data-peer=\"n2\">", until: "</tr>"))
        XCTAssertEqual(text(in: row, after: "data-field=\"lastContactMs\">", until: "<"), "never")
        XCTAssertFalse(row.contains("unknown"))
    }

    func testTheClusterSectionListsEveryMemberAsTheLeaderSeesIt() throws {
        let html = StatusPage.render(followerModel(cluster: leadersView))
        XCTAssertEqual(
            text(in: html, after: "<h2 id=\"cluster-heading\">", until: "</h2>"),
            "Cluster as the leader sees it (n1, 0.4 s ago)")
        let table = try XCTUnwrap(text(in: html, after: "<table class=\"peers\" id=\"cluster\">", until: "</table>"))
        XCTAssertEqual(table.components(separatedBy: "<tr data-member=").count - 1, 4, "the leader itself included")
        func field(_ member: String, _ name: String) throws -> String? {
            let row = try XCTUnwrap(text(in: table, after: "<tr data-member=\"\(member)\">", until: "</tr>"))
            return text(in: row, after: "data-field=\"\(name)\"", until: "</td>")
        }
        XCTAssertEqual(try field("n1", "id"), ">n1 <span class=\"note\">(leader)</span>")
        XCTAssertEqual(try field("n2", "id"), ">n2 <span class=\"note\">(this node)</span>")
        XCTAssertEqual(try field("n2", "matchIndex"), ">50")
        XCTAssertEqual(try field("n2", "lagEntries"), ">1")
        XCTAssertEqual(try field("n3", "role"), ">voter")
        XCTAssertEqual(try field("n4", "role"), ">learner")
        XCTAssertEqual(try field("n4", "address"), " class=\"unknown\">unknown")
        XCTAssertEqual(try field("n4", "matchIndex"), " class=\"unknown\">unknown")
        XCTAssertEqual(try field("n4", "lagEntries"), " class=\"unknown\">unknown")
        XCTAssertFalse(html.contains("cluster-unavailable"))
    }

    func testOnTheLeaderTheClusterSectionIsItsOwnView() {
        var page = model(peers: [peer("n2")])
        page.cluster = StatusPageModel.Cluster(
            asSeenBy: "n1", ageMs: 0,
            members: [.init(id: "n1", address: "a:1", role: .voter, matchIndex: 42, lagEntries: 0)])
        let html = StatusPage.render(page)
        XCTAssertEqual(
            text(in: html, after: "<h2 id=\"cluster-heading\">", until: "</h2>"),
            "Cluster as the leader sees it (n1, this node)")
        XCTAssertTrue(html.contains(">n1 <span class=\"note\">(leader, this node)</span>"))
    }

    func testWithoutTheLeadersViewTheClusterSectionSaysSoPlainly() {
        let waiting = StatusPage.render(followerModel(cluster: nil))
        XCTAssertEqual(
            text(in: waiting, after: "<p class=\"unavailable\" id=\"cluster-unavailable\">", until: "</p>"),
            "Not available yet: the leader (n1) has not sent its view. This node asks for it once a second while "
                + "this page is open.")
        XCTAssertFalse(waiting.contains("id=\"cluster\""), "no empty table")
        var leaderless = followerModel(cluster: nil)
        leaderless.leader = nil
        XCTAssertEqual(
            text(
                in: StatusPage.render(leaderless), after: "<p class=\"unavailable\" id=\"cluster-unavailable\">",
                until: "</p>"),
            "Not available: no leader is known.")
        XCTAssertEqual(
            text(in: waiting, after: "<h2 id=\"cluster-heading\">", until: "</h2>"), "Cluster as the leader sees it")
    }

    func testTheClusterSectionEscapesEveryString() {
        let hostile = "<b onclick='x'>&"
        var page = followerModel(
            cluster: StatusPageModel.Cluster(
                asSeenBy: hostile, ageMs: 1_250,
                members: [.init(id: hostile, address: "<i>:1", role: .voter, matchIndex: 1, lagEntries: 0)]))
        page.leader = "<u>"
        let html = StatusPage.render(page)
        XCTAssertFalse(html.contains("<b "), "no element from a member id")
        XCTAssertFalse(html.contains("<i>"), "no element from an address")
        XCTAssertTrue(html.contains("(&lt;b onclick=&#39;x&#39;&gt;&amp;, 1.3 s ago)"))
        XCTAssertTrue(html.contains("<tr data-member=\"&lt;b onclick=&#39;x&#39;&gt;&amp;\">"))
        XCTAssertTrue(html.contains(">&lt;i&gt;:1</td>"))
        page.cluster = nil
        XCTAssertTrue(StatusPage.render(page).contains("the leader (&lt;u&gt;) has not sent its view"))
    }

    func testInfiniteAndNaNPhiAreRenderedAsWordsAndNeverAsBrokenNumbers() {
        let history: [(tMs: Int64, phi: Double)] = [
            (nowMs - 3000, .infinity), (nowMs - 2000, .nan), (nowMs - 1000, -.infinity), (nowMs, 1.0),
        ]
        let html = StatusPage.render(
            model(peers: [peer("n2", phi: .infinity, history: history), peer("n3", phi: .nan)]))
        let n2 = text(in: html, after: "<tr data-peer=\"n2\">", until: "</tr>")!
        let n3 = text(in: html, after: "<tr data-peer=\"n3\">", until: "</tr>")!
        XCTAssertEqual(text(in: n2, after: "class=\"suspected\">", until: "<"), "&#8734;")
        XCTAssertEqual(text(in: n3, after: "class=\"suspected\">", until: "<"), "n/a")
        for word in ["inf", "nan", "NaN"] {
            XCTAssertFalse(html.contains(">\(word)"), "\(word) must not appear as a value")
            XCTAssertFalse(polylinePoints(in: html).joined().contains(word), "\(word) must not reach SVG coordinates")
        }
        let points = polylinePoints(in: html)[0].split(separator: " ")
        XCTAssertEqual(points.count, 4, "every sample is drawn, the non-finite ones too")
        XCTAssertEqual(points[0].split(separator: ",")[1], "0.0", "infinite phi is drawn on the top edge")
        XCTAssertEqual(points[1].split(separator: ",")[1], "0.0", "NaN phi is drawn on the top edge (suspect)")
        XCTAssertEqual(points[2].split(separator: ",")[1], "80.0", "negative infinity is clamped to zero phi")
    }

    func testTheChartHasOnePolylinePointPerSampleInTheLastMinute() {
        let history: [(tMs: Int64, phi: Double)] = (0..<600).map { (nowMs - 59_900 + Int64($0) * 100, 0.5) }
        let html = StatusPage.render(model(peers: [peer("n2", history: history)]))
        let lines = polylinePoints(in: html)
        XCTAssertEqual(lines.count, 1, "one chart for one peer")
        XCTAssertEqual(lines[0].split(separator: " ").count, 600)
        XCTAssertTrue(html.contains("n2: 600 samples"))
    }

    func testSamplesOlderThanAMinuteOrFromTheFutureAreNotDrawn() {
        let history: [(tMs: Int64, phi: Double)] = [
            (nowMs - 120_000, 1), (nowMs - 60_001, 1), (nowMs - 60_000, 1), (nowMs - 30_000, 1), (nowMs, 1),
            (nowMs + 1, 1),
        ]
        let html = StatusPage.render(model(peers: [peer("n2", history: history)]))
        let points = polylinePoints(in: html)[0].split(separator: " ")
        XCTAssertEqual(
            points.map { String($0.split(separator: ",")[0]) }, ["0.0", "150.0", "300.0"],
            "the window is [now - 60 s, now], left edge to right edge")
    }

    func testTheThresholdLineSitsAtThePhiThreshold() {
        let html = StatusPage.render(model(peers: [peer("n2", history: [(nowMs, 0)])]))
        // With no sample above the threshold the top of the chart is 1.5 x 8 = 12, so phi 8 is a third down.
        let y = text(in: html, after: "<line class=\"threshold\" x1=\"0\" y1=\"", until: "\"")
        XCTAssertEqual(y, "26.7")
        XCTAssertTrue(html.contains(">phi 8.0</text>"))
        let sample = polylinePoints(in: html)[0]
        XCTAssertEqual(sample, "300.0,80.0", "phi 0 now is the bottom right corner")
    }

    func testAPeerWithoutSamplesGetsAnEmptyChartThatSaysSo() {
        let html = StatusPage.render(model(peers: [peer("n2")]))
        XCTAssertTrue(html.contains("no samples in the last minute"))
        XCTAssertTrue(polylinePoints(in: html).isEmpty)
    }

    func testAOneNodeClusterSaysItHasNoPeers() {
        let html = StatusPage.render(model(peers: []))
        XCTAssertTrue(html.contains("No peers"))
        XCTAssertFalse(html.contains("<svg"))
    }

    func testADivergedReplicaIsAnnouncedAtTheTop() {
        var page = model(peers: [])
        page.diverged = true
        let html = StatusPage.render(page)
        XCTAssertTrue(html.contains("id=\"diverged-banner\""))
        XCTAssertEqual(text(in: html, after: "<dd id=\"diverged\">", until: "</dd>"), "yes")
        XCTAssertFalse(StatusPage.render(model(peers: [])).contains("diverged-banner"))
    }

    func testChartsAreBoundedToTheNewestSamples() {
        let count = PhiChart.samplesMax + 500
        let history: [(tMs: Int64, phi: Double)] = (0..<count).map { (nowMs - Int64(count - 1 - $0) * 10, 1) }
        let chart = PhiChart(history: history, nowMs: nowMs, windowMs: StatusPage.chartWindowMs, threshold: 8)
        XCTAssertEqual(chart.samples.count, PhiChart.samplesMax)
        XCTAssertEqual(chart.samples.last?.tMs, nowMs, "the newest sample is kept")
    }

    func testFixedPointFormattingIsExactAndLocaleFree() {
        XCTAssertEqual(HTMLText.fixed(0.437, decimals: 2), "0.44")
        XCTAssertEqual(HTMLText.fixed(-1.25, decimals: 1), "-1.3")
        XCTAssertEqual(HTMLText.fixed(-0.001, decimals: 2), "0.00", "no negative zero")
        XCTAssertEqual(HTMLText.fixed(7, decimals: 0), "7")
        XCTAssertEqual(HTMLText.fixed(26.666, decimals: 1), "26.7")
    }
}
