// libFuzzer target: a committed log entry's data through WriteCommand.decode. Whatever decodes must serialize as
// a request head without trapping (what every replica's applier does with it) and survive an encode round trip.
import TandemHTTP

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let command = try? WriteCommand.decode(bytes) else { return 0 }
    var headers = command.headers
    headers.add(name: "Tandem-Index", value: "1")
    ProxyHeaders.setFraming(.contentLength(Int64(command.body.count)), in: &headers)
    let head = HTTPSerializer.requestHead(
        HTTPRequestHead(method: command.method, target: command.target, headers: headers))
    precondition(!head.isEmpty)
    precondition((try? WriteCommand.decode(command.encoded())) == command, "no round trip")
    return 0
}
