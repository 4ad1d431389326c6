import XCTest

@testable import TandemHTTP

/// How bytes are split into calls must not change what the parser reports: whole buffers, one byte at a time,
/// and every split in between give the same messages.
final class FeedingEquivalenceTests: XCTestCase {
    func testEveryValidRequestParsesTheSameWholeAndOneByteAtATime() {
        for text in validRequestCorpus {
            let whole = feedRequests(text.bytes)
            XCTAssertNil(whole.error, text)
            XCTAssertEqual(whole.messages.count, 1, text)
            XCTAssertEqual(whole.bytesConsumed, text.utf8.count, text)
            XCTAssertEqual(feedRequests(text.bytes, pieceBytes: 1), whole, text)
        }
    }

    func testTheWholeCorpusPipelinedInOneBufferGivesEveryMessageInOrderForEveryPieceSize() {
        let pipelined = validRequestCorpus.joined().bytes
        let whole = feedRequests(pipelined)
        XCTAssertNil(whole.error)
        XCTAssertEqual(whole.messages.count, validRequestCorpus.count)
        XCTAssertEqual(
            whole.messages.map { $0.head }, validRequestCorpus.map { feedRequests($0.bytes).messages[0].head })
        for pieceBytes in [1, 2, 3, 7, 16, 100, 1000] {
            XCTAssertEqual(feedRequests(pipelined, pieceBytes: pieceBytes), whole, "pieces of \(pieceBytes)")
        }
    }

    func testEverySplitPointOfARequestGivesTheSameResult() throws {
        let text = validRequestCorpus[5].bytes
        let expected = feedRequests(text)
        for split in 0...text.count {
            var parser = HTTPRequestParser()
            var message = ParsedMessage<HTTPRequestHead>()
            for part in [text[..<split], text[split...]] {
                _ = try Array(part).withUnsafeBytes { raw in
                    try parser.parse(raw) { event in
                        switch event {
                        case .head(let head): message.head = head
                        case .body(let bytes): message.body += bytes
                        case .end(let trailers):
                            message.trailers = trailers
                            message.ended = true
                        }
                    }
                }
            }
            XCTAssertEqual([message], expected.messages, "split at \(split)")
        }
    }
}
