import Foundation
import XCTest

@testable import TandemStatusPage

/// What a browser actually draws: the page rendered by headless Chromium (Debian's `chromium` package) and the
/// screenshot's pixels examined. Skipped, saying so, where Chromium is not installed.
final class ChromiumRenderingTests: XCTestCase {
    /// Colours of the chart, from PhiChart: the phi line and the threshold line.
    private static let phiLineRGB = (0x15, 0x65, 0xc0)
    private static let thresholdRGB = (0xc6, 0x28, 0x28)

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
            (r, g, b), (x0, x1) = query['rgb'], query['columns']
            box = {'count': 0, 'minX': 1 << 30, 'minY': 1 << 30, 'maxX': -1, 'maxY': -1}
            for y in range(height):
                row = rows[y]
                for x in range(max(0, x0), min(width, x1)):
                    i = x * bpp
                    if abs(row[i] - r) < 40 and abs(row[i + 1] - g) < 40 and abs(row[i + 2] - b) < 40:
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
                id: "n2", address: "n2:7400", connected: true, phi: 1, matchIndex: 5, lagEntries: 0,
                lastContactMs: 10, phiHistory: calm),
            StatusPageModel.Peer(
                id: "n3", address: "n3:7400", connected: true, phi: 7, matchIndex: 5, lagEntries: 0,
                lastContactMs: 10, phiHistory: suspect),
        ]
        let model = StatusPageModel(
            nodeID: "n1", role: "leader", term: 2, leader: "n1", commitIndex: 5, appliedIndex: 5, diverged: false,
            peers: peers, nowMs: nowMs)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-status-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer {
            if ProcessInfo.processInfo.environment["TANDEM_KEEP_SCREENSHOT"] == nil {
                try? FileManager.default.removeItem(at: directory)
            }
        }
        let page = directory.appendingPathComponent("status.html")
        let screenshot = directory.appendingPathComponent("status.png")
        try Data(StatusPage.render(model).utf8).write(to: page)
        let result = try Self.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--user-data-dir=\(directory.path)/profile", "--window-size=900,700", "--screenshot=\(screenshot.path)",
                page.absoluteString,
            ])
        XCTAssertTrue(FileManager.default.fileExists(atPath: screenshot.path), "no screenshot: \(result)")

        // The charts sit side by side: n2's first, n3's second. Column 332 separates them (body margin 24 px,
        // chart 300 px, gap 16 px), which the threshold line's extent in each half confirms below.
        let halves = [(0, 332), (332, 900)]
        var queries: [[String: Any]] = []
        for rgb in [Self.thresholdRGB, Self.phiLineRGB] {
            for half in halves { queries.append(["rgb": [rgb.0, rgb.1, rgb.2], "columns": [half.0, half.1]]) }
        }
        let queryJSON = String(decoding: try JSONSerialization.data(withJSONObject: queries), as: UTF8.self)
        let decoded = try Self.run(["python3", "-c", Self.pngScript, screenshot.path, queryJSON])
        XCTAssertEqual(decoded.status, 0, decoded.standardError)
        let boxes = try JSONDecoder().decode([Box].self, from: Data(decoded.standardOutput.utf8))
        let (thresholdN2, thresholdN3, lineN2, lineN3) = (boxes[0], boxes[1], boxes[2], boxes[3])
        for threshold in [thresholdN2, thresholdN3] {
            XCTAssertGreaterThan(threshold.maxX - threshold.minX, 250, "the dashed threshold spans the chart")
        }
        XCTAssertGreaterThan(lineN2.maxX - lineN2.minX, 250, "a minute of samples spans the chart's width")
        XCTAssertGreaterThan(lineN3.maxX - lineN3.minX, 250)
        XCTAssertGreaterThan(lineN2.minY, thresholdN2.maxY, "n2's calm phi is drawn below the threshold")
        XCTAssertLessThan(lineN3.maxY, thresholdN3.minY, "n3's phi of 20 is drawn above the threshold")
    }
}
