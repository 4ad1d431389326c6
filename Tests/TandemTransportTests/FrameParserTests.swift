import XCTest

@testable import TandemTransport

/// Feeds one chunk; returns the error instead of throwing it.
func feed(
    _ parser: inout FrameParser, _ chunk: [UInt8], _ onFrame: (UInt8, UnsafeRawBufferPointer) -> FrameVerdict
) -> FrameError? {
    chunk.withUnsafeBytes { bytes in
        do throws(FrameError) {
            try parser.consume(bytes, onFrame: onFrame)
            return nil
        } catch {
            return error
        }
    }
}

final class FrameParserTests: XCTestCase {
    private func frame(_ type: UInt8, _ payload: [UInt8]) -> [UInt8] {
        FrameParser.header(type: type, payloadBytes: payload.count) + payload
    }

    /// Feeds `stream` in the given chunk sizes; returns the frames and the error, if any.
    private func parse(
        _ stream: [UInt8], chunkSizes: [Int], maxPayloadBytes: Int = 1 << 20
    ) -> (frames: [(UInt8, [UInt8])], error: FrameError?, parser: FrameParser) {
        var parser = FrameParser(maxPayloadBytes: maxPayloadBytes)
        var frames: [(UInt8, [UInt8])] = []
        var offset = 0
        var sizeIndex = 0
        while offset < stream.count {
            let size = min(max(1, chunkSizes[sizeIndex % chunkSizes.count]), stream.count - offset)
            sizeIndex += 1
            let chunk = Array(stream[offset..<(offset + size)])
            offset += size
            if let error = feed(
                &parser, chunk,
                { type, payload in
                    frames.append((type, [UInt8](payload)))
                    return .proceed
                })
            {
                return (frames, error, parser)
            }
        }
        return (frames, nil, parser)
    }

    func testFramesAreDeliveredInOrderWhateverTheChunkBoundaries() {
        let payloads: [[UInt8]] = [[], [1], Array(repeating: 7, count: 300), [9, 8, 7, 6, 5]]
        let stream = payloads.enumerated().flatMap { frame(UInt8(0x10 + $0.offset), $0.element) }
        for chunk in 1...stream.count {
            let result = parse(stream, chunkSizes: [chunk])
            XCTAssertNil(result.error, "chunk size \(chunk)")
            XCTAssertEqual(result.frames.map { $0.0 }, [0x10, 0x11, 0x12, 0x13], "chunk size \(chunk)")
            XCTAssertEqual(result.frames.map { $0.1 }, payloads, "chunk size \(chunk)")
            XCTAssertEqual(result.parser.bufferedBytes, 0, "a complete stream leaves nothing buffered")
        }
    }

    func testAFrameInsideOneChunkIsHandedOutInPlaceWithoutCopying() {
        let stream = frame(0x20, [1, 2, 3, 4])
        var parser = FrameParser(maxPayloadBytes: 16)
        stream.withUnsafeBytes { bytes in
            try? parser.consume(bytes) { _, payload in
                XCTAssertEqual(payload.baseAddress, bytes.baseAddress! + FrameParser.headerBytes)
                return .proceed
            }
        }
    }

    func testAnOversizedHeaderFailsBeforeAnyPayloadIsBuffered() {
        let stream = FrameParser.header(type: 0x10, payloadBytes: 1001) + [1, 2, 3]
        let result = parse(stream, chunkSizes: [2], maxPayloadBytes: 1000)
        XCTAssertEqual(result.error, .frameTooLarge(payloadBytes: 1001, maxPayloadBytes: 1000))
        XCTAssertEqual(result.parser.bufferedBytes, 0)
        XCTAssertNotNil(result.parser.failure, "a failed parser stays failed")
    }

    func testAFrameAtExactlyTheLimitIsAccepted() {
        let result = parse(frame(0x10, Array(repeating: 1, count: 1000)), chunkSizes: [333], maxPayloadBytes: 1000)
        XCTAssertNil(result.error)
        XCTAssertEqual(result.frames.count, 1)
    }

    func testStopLeavesTheRestOfTheChunkUnparsed() {
        let stream = frame(0x10, [1]) + frame(0x11, [2])
        var parser = FrameParser(maxPayloadBytes: 16)
        var seen: [UInt8] = []
        stream.withUnsafeBytes { bytes in
            try? parser.consume(bytes) { type, _ in
                seen.append(type)
                return .stop
            }
        }
        XCTAssertEqual(seen, [0x10])
    }

    func testTheConsumerCanRaiseTheLimitBetweenFramesOfOneChunk() {
        let stream = frame(0x01, [1]) + frame(0x10, Array(repeating: 3, count: 500))
        var parser = FrameParser(maxPayloadBytes: 10)
        var sizes: [Int] = []
        let error: FrameError? = stream.withUnsafeBytes { bytes in
            do throws(FrameError) {
                try parser.consume(bytes) { _, payload in
                    sizes.append(payload.count)
                    return .proceedWithLimit(maxPayloadBytes: 1000)
                }
                return nil
            } catch { return error }
        }
        XCTAssertNil(error)
        XCTAssertEqual(sizes, [1, 500])
    }

    /// Seeded mutation fuzzing: valid streams with bytes flipped, inserted and removed, fed in random chunk sizes.
    /// The parser must never trap, never deliver a payload above the limit, and never buffer more than one frame.
    func testMutatedStreamsNeverCrashOverReadOrBufferMoreThanOneFrame() {
        var random = SeededGenerator(seed: 0x7A4D)
        let limit = 4096
        for round in 0..<3000 {
            var stream: [UInt8] = []
            for _ in 0..<Int.random(in: 1...6, using: &random) {
                stream += frame(
                    UInt8.random(in: 0...255, using: &random), random.bytes(Int.random(in: 0...600, using: &random)))
            }
            for _ in 0..<Int.random(in: 0...4, using: &random) where !stream.isEmpty {
                let at = Int.random(in: 0..<stream.count, using: &random)
                switch Int.random(in: 0...2, using: &random) {
                case 0: stream[at] ^= UInt8.random(in: 1...255, using: &random)
                case 1: stream.insert(UInt8.random(in: 0...255, using: &random), at: at)
                default: stream.remove(at: at)
                }
            }
            let sizes = (0..<4).map { _ in Int.random(in: 1...700, using: &random) }
            var parser = FrameParser(maxPayloadBytes: limit)
            var offset = 0
            var delivered = 0
            var failed = false
            while offset < stream.count && !failed {
                let size = min(sizes[offset % 4], stream.count - offset)
                let chunk = Array(stream[offset..<(offset + size)])
                offset += size
                let error = feed(&parser, chunk) { _, payload in
                    XCTAssertLessThanOrEqual(payload.count, limit, "round \(round)")
                    delivered += FrameParser.headerBytes + payload.count
                    return .proceed
                }
                if error != nil { failed = true }
                XCTAssertLessThan(parser.bufferedBytes, FrameParser.headerBytes + limit, "round \(round)")
            }
            if !failed {
                XCTAssertEqual(delivered + parser.bufferedBytes, stream.count, "every byte is delivered or buffered")
            }
        }
    }
}
