import XCTest

@testable import TandemHTTP

/// A deterministic random-mutation fuzzer: a few thousand mutations of valid messages, each fed whole, one byte
/// at a time, and in random pieces. It checks that the parser never crashes, never consumes more than it was
/// given, reaches the same outcome however the input is split, and never exceeds its limits. A failure prints
/// the seed and the input, which reproduce it.
final class FuzzTests: XCTestCase {
    /// Small limits so that mutated inputs cross them often.
    private let tightLimits = HTTPLimits(
        requestLineMaxBytes: 40, headerBlockMaxBytes: 64, headerCountMax: 4, bodyMaxBytes: 12,
        chunkLineMaxBytes: 10, trailerBlockMaxBytes: 16)

    private static let fragments: [[UInt8]] =
        [
            "\r\n", "\r", "\n", " ", "\t", ":", ",", ";", "=", "\"", "0", "f", "ffffffffffffffffff", "\u{0}", "\u{7F}",
            "Content-Length: 5\r\n", "Content-Length: 0\r\n", "Transfer-Encoding: chunked\r\n", "Host: b\r\n",
            "Connection: close\r\n", "Expect: 100-continue\r\n", " chunked", "\r\n\r\n", "0\r\n\r\n", "HTTP/1.0",
            "\u{e9}", "%2e", "*",
        ].map { Array($0.utf8) } + [[0xFF], [0xC3]]

    func testMutatedRequestsNeverCrashOverConsumeDisagreeOrExceedTightLimits() {
        fuzzRequests(seed: 0x7A4D_E11A, limits: tightLimits, iterations: 2000, acceptedMin: 50)
    }

    func testMutatedRequestsNeverCrashOverConsumeDisagreeOrExceedDefaultLimits() {
        fuzzRequests(seed: 0xD3FA_0017, limits: HTTPLimits(), iterations: 2000, acceptedMin: 200)
    }

    private func fuzzRequests(seed: UInt64, limits: HTTPLimits, iterations: Int, acceptedMin: Int) {
        var random = SplitMix64(seed: seed)
        let corpus = validRequestCorpus.map { $0.bytes } + [validRequestCorpus.prefix(4).joined().bytes]
        var outcomesByError: [String: Int] = [:]
        for iteration in 0..<iterations {
            let input = mutate(corpus[Int(random.next() % UInt64(corpus.count))], &random)
            let whole = checkedFeed(input, limits: limits, pieceSizes: { _ in input.count })
            let byteWise = checkedFeed(input, limits: limits, pieceSizes: { _ in 1 })
            var pieceRandom = SplitMix64(seed: UInt64(iteration))
            let pieces = checkedFeed(input, limits: limits, pieceSizes: { _ in 1 + Int(pieceRandom.next() % 9) })
            let context = "iteration \(iteration), input \(String(decoding: input, as: UTF8.self).debugDescription)"
            XCTAssertEqual(whole.comparable, byteWise.comparable, context)
            XCTAssertEqual(whole.comparable, pieces.comparable, context)
            outcomesByError[whole.error.map { $0.rawValue } ?? "ok", default: 0] += 1
        }
        // The mutations must exercise both acceptance and many kinds of rejection, or the test proves little.
        XCTAssertGreaterThan(outcomesByError["ok"] ?? 0, acceptedMin, "\(outcomesByError)")
        XCTAssertGreaterThanOrEqual(outcomesByError.count, 12, "\(outcomesByError)")
    }

    func testMutatedResponsesNeverCrashOverConsumeOrDisagree() {
        var random = SplitMix64(seed: 0x5EED_0002)
        let corpus = [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.0 200 OK\r\nX: y\r\n\r\nclose delimited",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\n\r\n\u{1}\u{2}",
        ].map { $0.bytes }
        for iteration in 0..<1500 {
            let input = mutate(corpus[Int(random.next() % UInt64(corpus.count))], &random)
            let methods = ["GET", "HEAD", "PUT", "CONNECT"].shuffled(using: &random)
            let whole = feedResponses(input, methods: methods, closeAtEnd: true)
            let byteWise = feedResponses(input, methods: methods, pieceBytes: 1, closeAtEnd: true)
            XCTAssertLessThanOrEqual(whole.bytesConsumed, input.count)
            XCTAssertEqual(whole.messages, byteWise.messages, "iteration \(iteration)")
            XCTAssertEqual(whole.error, byteWise.error, "iteration \(iteration)")
            for message in whole.messages {
                XCTAssertLessThanOrEqual(message.head?.headers.count ?? 0, HTTPLimits().headerCountMax)
            }
        }
    }

    // MARK: - Mutation

    private func mutate(_ original: [UInt8], _ random: inout SplitMix64) -> [UInt8] {
        var bytes = original
        let mutationCount = 1 + Int(random.next() % 3)
        for _ in 0..<mutationCount {
            let position = Int(random.next() % UInt64(bytes.count + 1))
            switch random.next() % 6 {
            case 0 where position < bytes.count:
                bytes[position] = UInt8(truncatingIfNeeded: random.next())
            case 1 where position < bytes.count:
                bytes.remove(at: position)
            case 2:
                let fragment = Self.fragments[Int(random.next() % UInt64(Self.fragments.count))]
                bytes.insert(contentsOf: fragment, at: position)
            case 3 where position < bytes.count:
                let length = min(bytes.count - position, 1 + Int(random.next() % 40))
                bytes.insert(contentsOf: bytes[position..<(position + length)], at: position)
            case 4:
                bytes.insert(
                    contentsOf: [UInt8](repeating: UInt8(ascii: "a"), count: Int(random.next() % 80)), at: position)
            default:
                bytes = Array(bytes.prefix(position))
            }
        }
        return bytes
    }

    // MARK: - Checked feeding

    private struct CheckedOutcome {
        var messages: [ParsedMessage<HTTPRequestHead>] = []
        var partial = ParsedMessage<HTTPRequestHead>()
        var error: HTTPParseError.Code?
        /// What must not depend on how the input was split: the complete messages, the message in progress
        /// (head and body bytes delivered so far) and the error.
        var comparable: String { "\(messages) | \(partial) | \(String(describing: error))" }
    }

    /// Feeds the input in pieces (re-parsing after each message end, as the proxy does) and asserts the
    /// invariants after every call.
    private func checkedFeed(_ input: [UInt8], limits: HTTPLimits, pieceSizes: (Int) -> Int) -> CheckedOutcome {
        var parser = HTTPRequestParser(limits: limits)
        var outcome = CheckedOutcome()
        var pending: [UInt8] = []
        var offset = 0
        var bodyBytes = 0
        let lineBudgetMax = max(
            limits.requestLineMaxBytes, limits.headerBlockMaxBytes, limits.chunkLineMaxBytes,
            limits.trailerBlockMaxBytes)
        while offset < input.count || !pending.isEmpty {
            let next = min(input.count, offset + max(1, pieceSizes(offset)))
            pending += input[offset..<next]
            offset = next
            while !pending.isEmpty {
                var consumed = 0
                do {
                    consumed = try pending.withUnsafeBytes { raw in
                        try parser.parse(raw) { event in
                            switch event {
                            case .head(let head):
                                XCTAssertLessThanOrEqual(head.headers.count, limits.headerCountMax)
                                outcome.partial = ParsedMessage(head: head)
                                bodyBytes = 0
                            case .body(let bytes):
                                XCTAssertFalse(bytes.isEmpty, "empty body events are noise")
                                bodyBytes += bytes.count
                                outcome.partial.body += bytes
                            case .end(let trailers):
                                XCTAssertLessThanOrEqual(trailers?.count ?? 0, limits.headerCountMax)
                                outcome.partial.trailers = trailers
                                outcome.partial.ended = true
                                outcome.messages.append(outcome.partial)
                                outcome.partial = ParsedMessage()
                            }
                            XCTAssertLessThanOrEqual(Int64(bodyBytes), limits.bodyMaxBytes)
                        }
                    }
                } catch {
                    outcome.error = (error as? HTTPParseError)?.code
                    XCTAssertEqual(parser.phase, .failed)
                    return outcome
                }
                XCTAssertLessThanOrEqual(consumed, pending.count, "consumed more than given")
                XCTAssertLessThanOrEqual(parser.bufferedLineBytes, lineBudgetMax, "buffered past every limit")
                if consumed < pending.count {
                    XCTAssertTrue(parser.isIdle, "stopping early is only allowed at the end of a message")
                }
                pending.removeFirst(consumed)
                if consumed == 0 { break }
            }
        }
        return outcome
    }
}

/// A small, fast, seedable generator (SplitMix64), so every fuzz run is reproducible from its seed.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}
