// libFuzzer target: a byte stream through the frame parser, whole and split into pieces. Traps when the parser
// traps, hands out a frame larger than its limit, buffers more than a header plus the limit, or sees different
// frames depending on how the stream was split. The first byte picks the limit and the piece size.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let mode = data[0]
    let limit = [0, 1, 16, 300, 1 << 20][Int(mode & 0x7) % 5]
    let pieceBytes = Int(mode >> 3) + 1
    let stream = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let whole = frames(stream, limit: limit, pieceBytes: max(1, stream.count))
    let split = frames(stream, limit: limit, pieceBytes: pieceBytes)
    precondition(whole.frames == split.frames && whole.failed == split.failed, "the split changed the frames")
    return 0
}

private func frames(_ stream: UnsafeRawBufferPointer, limit: Int, pieceBytes: Int) -> (frames: [[UInt8]], failed: Bool)
{
    var parser = FrameParser(maxPayloadBytes: limit)
    var seen: [[UInt8]] = []
    var offset = 0
    while offset < stream.count {
        let end = min(stream.count, offset + pieceBytes)
        do throws(FrameError) {
            try parser.consume(UnsafeRawBufferPointer(rebasing: stream[offset..<end])) { type, payload in
                precondition(payload.count <= limit, "a frame above the limit was handed out")
                seen.append([type] + Array(payload))
                return .proceed
            }
        } catch {
            return (seen, true)
        }
        precondition(parser.bufferedBytes <= FrameParser.headerBytes + limit, "buffered past the limit")
        offset = end
    }
    return (seen, false)
}
