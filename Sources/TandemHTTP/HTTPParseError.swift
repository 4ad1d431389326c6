// HTTPParseError: everything malformed input can do to a parser, and the status the proxy answers for it.

/// A parse failure caused by the peer's bytes. After one, the parser is `.failed` and the connection must be
/// closed: nothing after a framing error can be trusted to be where a message starts.
public struct HTTPParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What was wrong.
    public enum Code: String, Sendable, Hashable, CaseIterable {
        // Limits.
        case requestLineTooLong
        case headerBlockTooLarge
        case tooManyHeaders
        case bodyTooLarge
        case chunkLineTooLong
        case trailerBlockTooLarge
        // Start line.
        case invalidMethod
        case invalidTarget
        case invalidVersion
        case unsupportedVersion
        case invalidStatusLine
        // Field syntax.
        case invalidHeaderName
        case whitespaceBeforeColon
        case invalidHeaderValue
        case obsFold
        case bareCR
        case bareLF
        // Framing and semantics.
        case conflictingFraming
        case duplicateContentLength
        case invalidContentLength
        case invalidTransferEncoding
        case unsupportedTransferEncoding
        case transferEncodingInHTTP10
        case invalidChunkSize
        case invalidChunkExtension
        case missingChunkTerminator
        case missingHost
        case multipleHost
        case invalidHost
        case unsupportedExpectation
        // Stream-level.
        case unexpectedEOF
        case unexpectedResponse
    }

    /// What was wrong, as a stable code (for metrics and logs).
    public let code: Code
    /// A human sentence saying what was wrong, never echoing more than a few bytes of the input.
    public let message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The status the proxy answers to a client whose request failed this way (then closes the connection):
    /// 414 for an over-long request line, 431 for over-large headers, 413 for an over-large body, 501 for a
    /// well-formed transfer coding Tandem does not implement (`gzip, chunked`), 505 for an HTTP version it
    /// does not speak, 417 for an unknown expectation, and 400 for everything else, including every framing
    /// ambiguity (RFC 9112 section 6.3: a Transfer-Encoding that does not end in chunked is a 400 and close).
    /// Errors parsing an upstream response become 502 instead; that is the proxy's decision, not this one.
    public var statusCode: Int {
        switch code {
        case .requestLineTooLong: return 414
        case .headerBlockTooLarge, .tooManyHeaders: return 431
        case .bodyTooLarge: return 413
        case .unsupportedTransferEncoding: return 501
        case .unsupportedVersion: return 505
        case .unsupportedExpectation: return 417
        default: return 400
        }
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
