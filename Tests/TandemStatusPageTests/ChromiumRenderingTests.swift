import Foundation
import XCTest

@testable import TandemStatusPage

/// What a browser actually draws: the page rendered by headless Chromium (Debian's `chromium` package) and the
/// screenshot's pixels examined. Skipped, saying so, where Chromium is not installed.
final class ChromiumRenderingTests: XCTestCase {
    /// Colours of the chart, from PhiChart: the phi line and the threshold line.
    private static let phiLineRGB = (0x15, 0x65, 0xc0)
    private static let thresholdRGB = (0xc6, 0x28, 0x28)
    /// The muted colour of an "unknown" value, from StatusPage's stylesheet. No other colour on the page is near it
    /// (the text is grey, with equal channels), so its pixels are the unknowns.
    private static let unknownRGB = (0x78, 0x90, 0x9c)

    private static func chromiumPath() -> String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }

    /// Bounding box (minX, minY, maxX, maxY) of the pixels close to a colour, inside a column range.
    private struct Box: Decodable {
        let count: Int
        let minX: Int
        let minY: Int
        let maxX: Int
        let maxY: Int
    }

    /// Decodes an 8-bit RGB or RGBA PNG with Python's standard library (zlib) and returns, per requested
    /// (colour, column range), the bounding box of matching pixels. No imaging package is needed.
    private static let pngScript = #"""
        import sys, zlib, struct, json
        data = open(sys.argv[1], 'rb').read()
        pos, idat, width, height, ctype = 8, b'', 0, 0, 0
        while pos < len(data):
            length, kind = struct.unpack('>I4s', data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if kind == b'IHDR':
                width, height, depth, ctype = struct.unpack('>IIBB', body[:10])
                assert depth == 8 and ctype in (2, 6), (depth, ctype)
            elif kind == b'IDAT':
                idat += body
            pos += 12 + length
        raw, bpp = zlib.decompress(idat), (3 if ctype == 2 else 4)
        stride, rows, prev = width * bpp, [], bytearray(width * bpp)
        for y in range(height):
            f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                if f == 1: line[i] = (line[i] + a) & 255
                elif f == 2: line[i] = (line[i] + b) & 255
                elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
                elif f == 4:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            rows.append(line)
            prev = line
        out = []
        for query in json.loads(sys.argv[2]):
            (r, g, b), (x0, x1), tol = query['rgb'], query['columns'], query.get('tolerance', 40)
            box = {'count': 0, 'minX': 1 << 30, 'minY': 1 << 30, 'maxX': -1, 'maxY': -1}
            for y in range(height):
                row = rows[y]
                for x in range(max(0, x0), min(width, x1)):
                    i = x * bpp
                    if abs(row[i] - r) < tol and abs(row[i + 1] - g) < tol and abs(row[i + 2] - b) < tol:
                        box['count'] += 1
                        box['minX'], box['maxX'] = min(box['minX'], x), max(box['maxX'], x)
                        box['minY'], box['maxY'] = min(box['minY'], y), max(box['maxY'], y)
            out.append(box)
        print(json.dumps(out))
        """#

    private struct ToolResult: CustomStringConvertible {
        let status: Int32
        let standardOutput: String
        let standardError: String
        var description: String { "exit \(status): \(standardError.suffix(2000))" }
    }

    /// Runs a tool to completion, reading its output on other threads so that a full pipe cannot block it.
    private static func run(_ arguments: [String]) throws -> ToolResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let output = Captured()
        let errors = Captured()
        let group = DispatchGroup()
        for (pipe, box) in [(stdout, output), (stderr, errors)] {
            group.enter()
            DispatchQueue.global().async {
                box.data = pipe.fileHandleForReading.readDataToEndOfFile()
                group.leave()
            }
        }
        process.waitUntilExit()
        group.wait()
        return ToolResult(
            status: process.terminationStatus, standardOutput: String(decoding: output.data, as: UTF8.self),
            standardError: String(decoding: errors.data, as: UTF8.self))
    }

    private final class Captured: @unchecked Sendable {
        var data = Data()
    }

    func testChromiumDrawsEachPhiLineOnTheCorrectSideOfTheThreshold() throws {
        guard let chromium = Self.chromiumPath() else {
            throw XCTSkip("headless Chromium is not installed (apt-get install chromium); the page is not rendered")
        }
        let nowMs: Int64 = 1_000_000
        // n2 is healthy (phi around 1, below the threshold of 8); n3 has been suspected all minute (phi 20).
        var calm: [(tMs: Int64, phi: Double)] = []
        var suspect: [(tMs: Int64, phi: Double)] = []
        for second in 0..<60 {
            let tMs = nowMs - 59_000 + Int64(second) * 1_000
            calm.append((tMs: tMs, phi: 1 + Double(second % 3) * 0.2))
            suspect.append((tMs: tMs, phi: 20))
        }
        let peers = [
            StatusPageModel.Peer(
                id: "n2", address: "n2:7400", role: .voter, connected: true, phi: 1, matchIndex: 5, lagEntries: 0,
                lastContact: .heard(msAgo: 10), phiHistory: calm),
            StatusPageModel.Peer(
                id: "n3", address: "n3:7400", role: .voter, connected: true, phi: 7, matchIndex: 5, lagEntries: 0,
                lastContact: .heard(msAgo: 10), phiHistory: suspect),
        ]
        let model = StatusPageModel(
            nodeID: "n1", role: "leader", term: 2, leader: "n1", commitIndex: 5, appliedIndex: 5, diverged: false,
            peers: peers, nowMs: nowMs)
        let screenshot = try screenshot(of: model, named: "status", chromium: chromium)

        // The charts sit side by side: n2's first, n3's second. Column 332 separates them (body margin 24 px,
        // chart 300 px, gap 16 px), which the threshold line's extent in each half confirms below.
        let halves = [(0, 332), (332, 900)]
        var queries: [[String: Any]] = []
        for rgb in [Self.thresholdRGB, Self.phiLineRGB] {
            for half in halves { queries.append(["rgb": [rgb.0, rgb.1, rgb.2], "columns": [half.0, half.1]]) }
        }
        let queryJSON = String(decoding: try JSONSerialization.data(withJSONObject: queries), as: UTF8.self)
        let boxes = try Self.boxes(in: screenshot, queryJSON: queryJSON)
        let (thresholdN2, thresholdN3, lineN2, lineN3) = (boxes[0], boxes[1], boxes[2], boxes[3])
        for threshold in [thresholdN2, thresholdN3] {
            XCTAssertGreaterThan(threshold.maxX - threshold.minX, 250, "the dashed threshold spans the chart")
        }
        XCTAssertGreaterThan(lineN2.maxX - lineN2.minX, 250, "a minute of samples spans the chart's width")
        XCTAssertGreaterThan(lineN3.maxX - lineN3.minX, 250)
        XCTAssertGreaterThan(lineN2.minY, thresholdN2.maxY, "n2's calm phi is drawn below the threshold")
        XCTAssertLessThan(lineN3.maxY, thresholdN3.minY, "n3's phi of 20 is drawn above the threshold")
    }

    func testChromiumShowsAFollowersUnknownsMutedAndTheClusterAsTheLeaderSeesIt() throws {
        guard let chromium = Self.chromiumPath() else {
            throw XCTSkip("headless Chromium is not installed (apt-get install chromium); the page is not rendered")
        }
        // n2 follows n1: it tracks no replication for anyone and hears from n1 alone. The leader's view lists all.
        let peers = [
            StatusPageModel.Peer(
                id: "n1", address: "n1:7400", role: .voter, connected: true, phi: 0.3, matchIndex: nil,
                lagEntries: nil, lastContact: .heard(msAgo: 40)),
            StatusPageModel.Peer(
                id: "n3", address: "n3:7400", role: .voter, connected: true, phi: 0.5, matchIndex: nil,
                lagEntries: nil, lastContact: .unknown),
            StatusPageModel.Peer(
                id: "n4", address: "n4:7400", role: .learner, connected: true, phi: 0.5, matchIndex: nil,
                lagEntries: nil, lastContact: .unknown),
        ]
        let cluster = StatusPageModel.Cluster(
            asSeenBy: "n1", ageMs: 400,
            members: [
                .init(id: "n1", address: "n1:7400", role: .voter, matchIndex: 51, lagEntries: 0),
                .init(id: "n2", address: "n2:7400", role: .voter, matchIndex: 51, lagEntries: 0),
                .init(id: "n3", address: "n3:7400", role: .voter, matchIndex: 49, lagEntries: 2),
                .init(id: "n4", address: "n4:7400", role: .learner, matchIndex: 30, lagEntries: 21),
            ])
        let follower = StatusPageModel(
            nodeID: "n2", role: "follower", term: 2, leader: "n1", commitIndex: 51, appliedIndex: 51, diverged: false,
            peers: peers, cluster: cluster, nowMs: 1_000_000)
        // The same cluster seen from the leader: every value is known there.
        var leader = follower
        leader.nodeID = "n1"
        leader.role = "leader"
        leader.peers = [
            StatusPageModel.Peer(
                id: "n2", address: "n2:7400", role: .voter, connected: true, phi: 0.3, matchIndex: 51,
                lagEntries: 0, lastContact: .heard(msAgo: 40)),
            StatusPageModel.Peer(
                id: "n3", address: "n3:7400", role: .voter, connected: true, phi: 0.5, matchIndex: 49,
                lagEntries: 2, lastContact: .heard(msAgo: 45)),
            StatusPageModel.Peer(
                id: "n4", address: "n4:7400", role: .learner, connected: true, phi: 0.5, matchIndex: 30,
                lagEntries: 21, lastContact: .heard(msAgo: 50)),
        ]
        leader.cluster?.ageMs = 0

        // What the browser parsed: the DOM it built, serialised back.
        let dom = try dumpDOM(of: follower, named: "follower-dom", chromium: chromium)
        for (id, fields) in [
            ("n1", ["matchIndex", "lagEntries"]), ("n3", ["matchIndex", "lagEntries", "lastContactMs"]),
        ] {
            let row = try XCTUnwrap(Self.text(in: dom, after: "<tr data-peer=\"\(id)\">", until: "</tr>"), dom)
            for field in fields {
                XCTAssertTrue(
                    row.contains("<td data-field=\"\(field)\" class=\"unknown\">unknown</td>"), "\(id): \(row)")
            }
        }
        XCTAssertTrue(
            dom.contains("<h2 id=\"cluster-heading\">Cluster as the leader sees it (n1, 0.4 s ago)</h2>"), dom)
        let table = try XCTUnwrap(
            Self.text(in: dom, after: "<table class=\"peers\" id=\"cluster\">", until: "</table>"))
        XCTAssertEqual(table.components(separatedBy: "<tr data-member=").count - 1, 4, "every member, in the table")
        let n4 = try XCTUnwrap(Self.text(in: table, after: "<tr data-member=\"n4\">", until: "</tr>"))
        XCTAssertTrue(n4.contains("<td data-field=\"role\">learner</td><td data-field=\"matchIndex\">30</td>"), n4)

        // What the browser drew: the muted colour of "unknown" on the follower's page, none on the leader's.
        let tight: [[String: Any]] = [
            ["rgb": [Self.unknownRGB.0, Self.unknownRGB.1, Self.unknownRGB.2], "columns": [0, 1200], "tolerance": 12]
        ]
        let queryJSON = String(decoding: try JSONSerialization.data(withJSONObject: tight), as: UTF8.self)
        let followerShot = try screenshot(of: follower, named: "follower", chromium: chromium)
        let leaderShot = try screenshot(of: leader, named: "leader", chromium: chromium)
        let mutedOnFollower = try Self.boxes(in: followerShot, queryJSON: queryJSON)[0]
        let mutedOnLeader = try Self.boxes(in: leaderShot, queryJSON: queryJSON)[0]
        XCTAssertGreaterThan(mutedOnFollower.count, 100, "the follower's unknowns are drawn in the muted colour")
        XCTAssertEqual(mutedOnLeader.count, 0, "the leader knows every value: nothing is drawn muted")
    }

    // MARK: support

    /// A scratch directory for this test run, removed afterwards unless TANDEM_KEEP_SCREENSHOT is set.
    private func scratchDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tandem-status-\(getpid())-\(name.filter { $0.isLetter || $0.isNumber })")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock {
            if ProcessInfo.processInfo.environment["TANDEM_KEEP_SCREENSHOT"] == nil {
                try? FileManager.default.removeItem(at: directory)
            }
        }
        return directory
    }

    /// Writes the page for `model` and returns its file URL and the Chromium profile directory to use with it.
    private func writePage(_ model: StatusPageModel, named fileName: String) throws -> (URL, URL) {
        let directory = try scratchDirectory()
        let page = directory.appendingPathComponent("\(fileName).html")
        try Data(StatusPage.render(model).utf8).write(to: page)
        return (page, directory.appendingPathComponent("profile-\(fileName)"))
    }

    /// A 900 x 1000 screenshot of the page for `model`, taken by headless Chromium.
    private func screenshot(of model: StatusPageModel, named fileName: String, chromium: String) throws -> URL {
        let (page, profile) = try writePage(model, named: fileName)
        let screenshot = page.deletingPathExtension().appendingPathExtension("png")
        let result = try Self.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--force-device-scale-factor=1", "--user-data-dir=\(profile.path)", "--window-size=900,1000",
                "--screenshot=\(screenshot.path)", page.absoluteString,
            ])
        XCTAssertTrue(FileManager.default.fileExists(atPath: screenshot.path), "no screenshot: \(result)")
        return screenshot
    }

    /// The DOM headless Chromium built from the page for `model`, serialised.
    private func dumpDOM(of model: StatusPageModel, named fileName: String, chromium: String) throws -> String {
        let (page, profile) = try writePage(model, named: fileName)
        let result = try Self.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(profile.path)",
                "--dump-dom", page.absoluteString,
            ])
        XCTAssertEqual(result.status, 0, "\(result)")
        return result.standardOutput
    }

    /// The bounding boxes the PNG script answers for `queryJSON`.
    private static func boxes(in screenshot: URL, queryJSON: String) throws -> [Box] {
        let decoded = try run(["python3", "-c", pngScript, screenshot.path, queryJSON])
        XCTAssertEqual(decoded.status, 0, decoded.standardError)
        return try JSONDecoder().decode([Box].self, from: Data(decoded.standardOutput.utf8))
    }

    /// The text between `open` and the next `close` after it, for the first `open`.
    private static func text(in html: String, after open: String, until close: String) -> String? {
        guard let start = html.range(of: open) else { return nil }
        guard let end = html.range(of: close, range: start.upperBound..<html.endIndex) else { return nil }
        return String(html[start.upperBound..<end.lowerBound])
    }
}
