import XCTest

@testable import TandemHTTP

/// What a parser reported for one message, copied out of the callbacks so it can be compared.
struct ParsedMessage<Head: Equatable>: Equatable {
    var head: Head?
    var body: [UInt8] = []
    var trailers: HTTPHeaders?
    var ended = false
}

/// The outcome of feeding a whole input: every complete message, then the error if one was thrown.
struct FeedOutcome<Head: Equatable>: Equatable {
    var messages: [ParsedMessage<Head>] = []
    var error: HTTPParseError.Code?
    var bytesConsumed = 0
    /// The message in progress when input ran out (head and body so far).
    var partial = ParsedMessage<Head>()
}

/// Feeds `input` to a request parser in pieces of `pieceBytes` (0 = all at once), calling parse again after
/// every message end, exactly as the proxy does with pipelined requests.
func feedRequests(
    _ input: [UInt8], pieceBytes: Int = 0, limits: HTTPLimits = HTTPLimits()
) -> FeedOutcome<HTTPRequestHead> {
    var parser = HTTPRequestParser(limits: limits)
    return feed(input, pieceBytes: pieceBytes) { (bytes, onEvent) throws(HTTPParseError) -> Int in
        try parser.parse(bytes, onEvent)
    }
}

/// Feeds `input` to a response parser that expects responses to `methods`, in pieces; at the end of input it
/// calls `finishAtEOF` when `closeAtEnd`.
func feedResponses(
    _ input: [UInt8], methods: [String], pieceBytes: Int = 0, closeAtEnd: Bool = false
) -> FeedOutcome<HTTPResponseHead> {
    var parser = HTTPResponseParser()
    for method in methods { parser.expect(requestMethod: method) }
    var outcome = feed(input, pieceBytes: pieceBytes) { (bytes, onEvent) throws(HTTPParseError) -> Int in
        if parser.phase == .tunnel { return 0 }
        return try parser.parse(bytes, onEvent)
    }
    if closeAtEnd, outcome.error == nil {
        var current = outcome.partial
        do {
            try parser.finishAtEOF { event in record(event, into: &current, outcome: &outcome) }
        } catch {
            outcome.error = error.code
        }
    }
    return outcome
}

private func record<Head>(
    _ event: HTTPParserEvent<Head>, into current: inout ParsedMessage<Head>, outcome: inout FeedOutcome<Head>
) {
    switch event {
    case .head(let head):
        current = ParsedMessage(head: head)
    case .body(let bytes):
        current.body.append(contentsOf: bytes)
    case .end(let trailers):
        current.trailers = trailers
        current.ended = true
        outcome.messages.append(current)
        current = ParsedMessage()
    }
}

private func feed<Head: Equatable>(
    _ input: [UInt8], pieceBytes: Int,
    _ parse: (UnsafeRawBufferPointer, (HTTPParserEvent<Head>) -> Void) throws(HTTPParseError) -> Int
) -> FeedOutcome<Head> {
    var outcome = FeedOutcome<Head>()
    var current = ParsedMessage<Head>()
    var pending: [UInt8] = []
    var offset = 0
    let step = pieceBytes == 0 ? max(input.count, 1) : pieceBytes
    while offset < input.count || !pending.isEmpty {
        let next = min(input.count, offset + step)
        pending.append(contentsOf: input[offset..<next])
        offset = next
        // Parse the pending bytes until the parser stops consuming (it needs more, or tunnels).
        while !pending.isEmpty {
            let result: Result<Int, HTTPParseError> = pending.withUnsafeBytes { raw in
                Result { () throws(HTTPParseError) -> Int in
                    try parse(raw) { event in record(event, into: &current, outcome: &outcome) }
                }
            }
            guard case .success(let consumed) = result else {
                if case .failure(let error) = result { outcome.error = error.code }
                return outcome
            }
            precondition(consumed <= pending.count, "the parser consumed more than it was given")
            outcome.bytesConsumed += consumed
            pending.removeFirst(consumed)
            if consumed == 0 { break }
        }
        if offset >= input.count { break }
    }
    outcome.partial = current
    return outcome
}

extension Array where Element == UInt8 {
    init(_ text: String) { self = Array(text.utf8) }
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}
