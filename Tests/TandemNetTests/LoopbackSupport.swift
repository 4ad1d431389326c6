import Foundation
import Glibc

@testable import TandemNet

/// A blocking client socket connected to 127.0.0.1:`port`.
func connectLoopbackClient(port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EMFILE) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard result == 0 else {
        close(fd)
        throw POSIXError(.ECONNREFUSED)
    }
    return fd
}

/// Turns `loop` until `condition` holds or `seconds` pass; returns whether it held.
func runLoop(_ loop: EventLoop, seconds: Double = 10, until condition: @escaping () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    let check = TandemNet.Timer(loop: loop) {
        if condition() || Date() > deadline { loop.stop() }
    }
    check.scheduleRepeating(everyMs: 5)
    loop.run()
    check.invalidate()
    return condition()
}
