// A libFuzzer harness for the parsers. It is compiled only when TANDEM_LIBFUZZER is defined, so the XCTest
// target sees an empty file. Build and run it (from the repository root) with:
//
//     swiftc -O -sanitize=fuzzer,address -parse-as-library -D TANDEM_LIBFUZZER -module-name HTTPFuzz \
//         Sources/TandemHTTP/*.swift Tests/TandemHTTPTests/LibFuzzerHarness.swift -o /tmp/fuzz-http
//     mkdir -p /tmp/fuzz-corpus && /tmp/fuzz-http -max_total_time=300 -max_len=600 /tmp/fuzz-corpus
//
// The first input byte chooses request or response parsing (bit 7), default or tiny limits (bit 0) and the
// piece size of the split feeding (bits 1-3); the rest is the message bytes. It traps when the parser crashes,
// consumes more than it was given, buffers past its limits, reports an empty body slice, or reaches a
// different outcome when the same bytes arrive whole and in pieces.

#if TANDEM_LIBFUZZER
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
        guard size > 1 else { return 0 }
        let mode = data[0]
        let input = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
        let pieceBytes = Int(mode >> 1) % 8 + 1
        if mode & 0x80 == 0 {
            let limits =
                mode & 1 == 0
                ? HTTPLimits()
                : HTTPLimits(
                    requestLineMaxBytes: 40, headerBlockMaxBytes: 64, headerCountMax: 4, bodyMaxBytes: 12,
                    chunkLineMaxBytes: 10, trailerBlockMaxBytes: 16)
            let whole = transcript(input, pieceBytes: input.count, parser: RequestFuzzParser(limits: limits))
            let split = transcript(input, pieceBytes: pieceBytes, parser: RequestFuzzParser(limits: limits))
            precondition(whole == split, "request outcome depends on the split: \(whole) vs \(split)")
        } else {
            let whole = transcript(input, pieceBytes: input.count, parser: ResponseFuzzParser())
            let split = transcript(input, pieceBytes: pieceBytes, parser: ResponseFuzzParser())
            precondition(whole == split, "response outcome depends on the split: \(whole) vs \(split)")
        }
        return 0
    }

    /// The two parsers behind one interface, each writing what it reports into a transcript.
    protocol FuzzParser {
        var isTunnel: Bool { get }
        var bufferedLineBytes: Int { get }
        mutating func parse(_ bytes: UnsafeRawBufferPointer, into log: inout String) throws(HTTPParseError) -> Int
        mutating func finish(into log: inout String)
    }

    struct RequestFuzzParser: FuzzParser {
        var parser: HTTPRequestParser
        init(limits: HTTPLimits) { parser = HTTPRequestParser(limits: limits) }
        var isTunnel: Bool { false }
        var bufferedLineBytes: Int { parser.bufferedLineBytes }
        mutating func parse(_ bytes: UnsafeRawBufferPointer, into log: inout String) throws(HTTPParseError) -> Int {
            try parser.parse(bytes) { event in
                switch event {
                case .head(let head): log += "head \(head.method) \(head.target) \(head.headers) \(head.framing);"
                case .body(let body): logBody(body, into: &log)
                case .end(let trailers): log += "end \(String(describing: trailers));"
                }
            }
        }
        mutating func finish(into log: inout String) {
            do throws(HTTPParseError) { try parser.finishAtEOF() } catch { log += "eof \(error.code);" }
        }
    }

    struct ResponseFuzzParser: FuzzParser {
        var parser = HTTPResponseParser()
        init() { for method in ["GET", "HEAD", "CONNECT", "POST"] { parser.expect(requestMethod: method) } }
        var isTunnel: Bool { parser.phase == .tunnel }
        var bufferedLineBytes: Int { parser.bufferedLineBytes }
        mutating func parse(_ bytes: UnsafeRawBufferPointer, into log: inout String) throws(HTTPParseError) -> Int {
            try parser.parse(bytes) { event in
                switch event {
                case .head(let head): log += "head \(head.status) \(head.headers) \(head.framing);"
                case .body(let body): logBody(body, into: &log)
                case .end(let trailers): log += "end \(String(describing: trailers));"
                }
            }
        }
        mutating func finish(into log: inout String) {
            do throws(HTTPParseError) {
                try parser.finishAtEOF { event in if case .end = event { log += "end at EOF;" } }
            } catch {
                log += "eof \(error.code);"
            }
        }
    }

    func logBody(_ body: UnsafeRawBufferPointer, into log: inout String) {
        precondition(!body.isEmpty, "an empty body event")
        log += body.map { String($0) }.joined(separator: ",") + ","
    }

    /// Feeds the input in pieces, re-parsing after every message end as the proxy does, and returns the
    /// transcript of events and the error, if any.
    func transcript<Parser: FuzzParser>(_ input: [UInt8], pieceBytes: Int, parser: Parser) -> String {
        var parser = parser
        var log = ""
        var pending: [UInt8] = []
        var offset = 0
        while offset < input.count || !pending.isEmpty {
            let next = min(input.count, offset + max(pieceBytes, 1))
            pending += input[offset..<next]
            offset = next
            while !pending.isEmpty && !parser.isTunnel {
                let result: Result<Int, HTTPParseError> = pending.withUnsafeBytes { raw in
                    Result { () throws(HTTPParseError) -> Int in try parser.parse(raw, into: &log) }
                }
                guard case .success(let consumed) = result else {
                    if case .failure(let error) = result { log += "error \(error.code)" }
                    return log
                }
                precondition(consumed <= pending.count, "consumed more than given")
                precondition(parser.bufferedLineBytes <= 65536, "buffered past every limit")
                pending.removeFirst(consumed)
                if consumed == 0 { break }
            }
            if offset >= input.count || parser.isTunnel { break }
        }
        parser.finish(into: &log)
        return log
    }
#endif
