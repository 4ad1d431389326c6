import XCTest

@testable import TandemHTTP

/// Serialized heads and chunks parse back to what was serialized.
final class SerializerTests: XCTestCase {
    func testARequestHeadSerializesToTheExactWireFormAndParsesBackEqual() {
        var headers: HTTPHeaders = ["Host": "example", "X-Mixed-Case": "v a l"]
        ProxyHeaders.setFraming(.contentLength(3), in: &headers)
        let head = HTTPRequestHead(method: "PUT", target: "/kv/a?x=1", headers: headers, framing: .contentLength(3))
        let bytes = HTTPSerializer.requestHead(head)
        XCTAssertEqual(
            String(decoding: bytes, as: UTF8.self),
            "PUT /kv/a?x=1 HTTP/1.1\r\nHost: example\r\nX-Mixed-Case: v a l\r\nContent-Length: 3\r\n\r\n")
        let parsed = feedRequests(bytes + "abc".bytes).messages.first
        XCTAssertEqual(parsed?.head, head)
        XCTAssertEqual(parsed?.body, "abc".bytes)
    }

    func testAResponseHeadRoundTripsThroughTheParser() {
        let head = HTTPResponseHead(
            status: 201, headers: ["Content-Length": "0", "Tandem-Position": "7"], framing: .contentLength(0))
        XCTAssertEqual(head.reason, "Created")
        let parsed = feedResponses(HTTPSerializer.responseHead(head), methods: ["POST"]).messages.first?.head
        XCTAssertEqual(parsed, head)
    }

    func testAnHTTP10HeadIsWrittenWithItsVersion() {
        let head = HTTPRequestHead(method: "GET", target: "/", version: .http1_0, keepAlive: false)
        XCTAssertEqual(String(decoding: HTTPSerializer.requestHead(head), as: UTF8.self), "GET / HTTP/1.0\r\n\r\n")
    }

    func testChunkFramingRoundTripsWithTrailers() {
        var body: [UInt8] = []
        let pieces = ["a", String(repeating: "b", count: 300), "c"]
        for piece in pieces { piece.bytes.withUnsafeBytes { HTTPSerializer.appendChunk($0, into: &body) } }
        [UInt8]().withUnsafeBytes { HTTPSerializer.appendChunk($0, into: &body) }
        HTTPSerializer.appendLastChunk(trailers: ["X-Sum": "302"], into: &body)
        let head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".bytes
        let parsed = feedRequests(head + body, pieceBytes: 3).messages.first
        XCTAssertEqual(parsed?.body, pieces.joined().bytes)
        XCTAssertEqual(parsed?.trailers, ["X-Sum": "302"])
    }

    func testChunkHeaderIsLowerCaseHexWithCRLF() {
        XCTAssertEqual(HTTPSerializer.chunkHeader(sizeBytes: 0x1A2B), "1a2b\r\n".bytes)
        XCTAssertEqual(HTTPSerializer.chunkHeader(sizeBytes: 1), "1\r\n".bytes)
        XCTAssertEqual(HTTPSerializer.lastChunk(), "0\r\n\r\n".bytes)
        XCTAssertEqual(HTTPSerializer.chunkTerminator, "\r\n".bytes)
    }

    func testTheContinueResponseIsAnInterimResponseTheParserRecognizes() {
        XCTAssertEqual(HTTPSerializer.continueResponse, "HTTP/1.1 100 Continue\r\n\r\n".bytes)
        let parsed = feedResponses(HTTPSerializer.continueResponse, methods: ["PUT"]).messages.first?.head
        XCTAssertEqual(parsed?.isInterim, true)
    }

    func testParsedHeadsReserializeToTheBytesTheyCameFrom() {
        for text in validRequestCorpus where !text.contains("\r\n\r\n\r\n") && !text.hasPrefix("\r\n") {
            let outcome = feedRequests(text.bytes)
            guard let head = outcome.messages.first?.head else { continue }
            let headText = String(text[..<text.range(of: "\r\n\r\n")!.upperBound])
            let reserialized = String(decoding: HTTPSerializer.requestHead(head), as: UTF8.self)
            // Optional whitespace around values is not kept; compare with it normalized away.
            XCTAssertEqual(reserialized, normalizingFieldWhitespace(headText), text)
        }
    }

    private func normalizingFieldWhitespace(_ head: String) -> String {
        var lines = head.components(separatedBy: "\r\n")
        for index in 1..<lines.count {
            guard let colon = lines[index].firstIndex(of: ":") else { continue }
            let name = lines[index][..<colon]
            let value = lines[index][lines[index].index(after: colon)...].trimmingCharacters(in: .whitespaces)
            lines[index] = "\(name): \(value)"
        }
        return lines.joined(separator: "\r\n")
    }

    func testHeadersRefuseFieldsThatCouldSplitAMessageAndLookUpIgnoringCase() {
        var headers = HTTPHeaders()
        headers.add(name: "X-A", value: "1")
        headers.add(name: "x-a", value: "2")
        headers.add(name: "Other", value: "3")
        XCTAssertEqual(headers.values(name: "X-A"), ["1", "2"])
        headers.replace(name: "X-a", value: "9")
        XCTAssertEqual(headers.map { $0.name }, ["X-a", "Other"])
        XCTAssertEqual(headers.first(name: "x-A"), "9")
        XCTAssertEqual(headers.remove(name: "OTHER"), 1)
        XCTAssertFalse(headers.contains(name: "other"))
        XCTAssertFalse(isSafeFieldValue("a\r\nInjected: 1"))
        XCTAssertFalse(isValidFieldName("Bad Name"))
    }

    func testTokenListsSplitOnCommasAcrossFieldLines() {
        let headers: HTTPHeaders = ["Connection": " keep-alive ,, X-A", "connection": "Upgrade"]
        XCTAssertEqual(headers.tokens(name: "Connection"), ["keep-alive", "X-A", "Upgrade"])
        XCTAssertTrue(headers.containsToken("upgrade", name: "CONNECTION"))
    }
}
