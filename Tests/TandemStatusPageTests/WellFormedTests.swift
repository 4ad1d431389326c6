import Foundation
import XCTest

@testable import TandemStatusPage

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// The page parses as XML, whatever the model holds: an escaping mistake would break the parse, not just a cell.
final class WellFormedTests: XCTestCase {
    /// Elements by name with their attributes, in document order, and the character data, from a full XML parse.
    private final class Collector: NSObject, XMLParserDelegate {
        var elements: [(name: String, attributes: [String: String])] = []
        var text = ""

        func parser(
            _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
            attributes: [String: String]
        ) {
            elements.append((elementName, attributes))
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            text += string
        }
    }

    private func parse(_ html: String) throws -> Collector {
        let parser = XMLParser(data: Data(html.utf8))
        let collector = Collector()
        parser.delegate = collector
        guard parser.parse() else {
            let line = parser.lineNumber
            let context = html.split(separator: "\n", omittingEmptySubsequences: false)[safe: line - 1] ?? ""
            let reason = parser.parserError.map { "\($0)" } ?? "unknown"
            throw ParseFailure(description: "not well-formed at line \(line) (\(reason)): \(context)")
        }
        return collector
    }

    private struct ParseFailure: Error, CustomStringConvertible {
        let description: String
    }

    private func hostileModel() -> StatusPageModel {
        let names = ["<script>alert(1)</script>", "a&b", "\"quoted\" 'single'", "]]>", "<!--", "n2"]
        let peers = names.enumerated().map { index, name in
            StatusPageModel.Peer(
                id: name, address: "\(name):7400", role: index == 1 ? nil : .voter, connected: index % 2 == 0,
                phi: [Double.nan, .infinity, -.infinity, 0, 7.99, 8][index],
                matchIndex: index == 2 ? nil : UInt64(index),
                lagEntries: index == 2 ? nil : UInt64(index * 3),
                lastContact: index == 0 ? .never : index == 3 ? .unknown : .heard(msAgo: Int64(index)),
                phiHistory: (0..<10).map { (Int64(1_000_000 - 5_000 * $0), Double($0) * 1.5) }.reversed())
        }
        let members = (["&lt;"] + names).enumerated().map { index, name in
            StatusPageModel.Cluster.Member(
                id: name, address: index == 3 ? nil : "\(name):7400", role: index % 2 == 0 ? .voter : .learner,
                matchIndex: index == 4 ? nil : UInt64(index), lagEntries: index == 4 ? nil : 0)
        }
        return StatusPageModel(
            nodeID: "</title><b>", role: "<i>follower", term: 3, leader: "&lt;", commitIndex: 9, appliedIndex: 9,
            diverged: true, peers: peers,
            cluster: StatusPageModel.Cluster(asSeenBy: "&lt;", ageMs: 420, members: members),
            nowMs: 1_000_000)
    }

    func testThePageIsWellFormedEvenWithHostileStrings() throws {
        let html = StatusPage.render(hostileModel())
        let document = try parse(html)
        let names = document.elements.map(\.name)
        XCTAssertEqual(names.first, "html")
        XCTAssertFalse(names.contains("script") || names.contains("b") || names.contains("i"), "no injected element")
        XCTAssertEqual(
            names.filter { $0 == "tr" }.count, (1 + 6) + (1 + 7), "a header row and one row per peer, then per member")
        XCTAssertEqual(names.filter { $0 == "table" }.count, 2, "the peers and the cluster as the leader sees it")
        XCTAssertEqual(names.filter { $0 == "svg" }.count, 6, "one chart per peer")
        XCTAssertEqual(names.filter { $0 == "polyline" }.count, 6)
        // The parser decodes the entities back: the operator reads exactly the configured strings.
        XCTAssertTrue(document.text.contains("<script>alert(1)</script>:7400"))
        XCTAssertTrue(document.text.contains("Tandem </title><b> (<i>follower)"))
        XCTAssertTrue(document.text.contains("Cluster as the leader sees it (&lt;, 0.4 s ago)"))
    }

    func testEveryPolylineHasOnePointPerSampleAndOnlyCoordinatesInsideTheChart() throws {
        let document = try parse(StatusPage.render(hostileModel()))
        for polyline in document.elements where polyline.name == "polyline" {
            let points = (polyline.attributes["points"] ?? "").split(separator: " ")
            XCTAssertEqual(points.count, 10)
            for point in points {
                let xy = point.split(separator: ",").compactMap { Double($0) }
                XCTAssertEqual(xy.count, 2, "\(point)")
                XCTAssertTrue((0...300).contains(xy[0]) && (0...80).contains(xy[1]), "\(point) is inside the chart")
            }
        }
        let meta = document.elements.first { $0.name == "meta" && $0.attributes["http-equiv"] == "refresh" }
        XCTAssertEqual(meta?.attributes["content"], "2")
    }
}

extension Array {
    fileprivate subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
