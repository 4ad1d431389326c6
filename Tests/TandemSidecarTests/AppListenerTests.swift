import Foundation
import Glibc
import XCTest

@testable import TandemSidecar

final class AppListenerTests: XCTestCase {
    // Port 3000 is 0BB8; 8080 is 1F90. State 0A is LISTEN, 01 ESTABLISHED.
    private let table = """
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41001 1 0 100 0 0 10 0
           1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41002 1 0 100 0 0 10 0
           2: 0100007F:0BB8 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 41003 1 0 20 4 30 10 -1
           3: 0100007F:9C40 0100007F:0BB8 01 00000000:00000000 00:00000000 00000000     0        0 41004 1 0 20 4 30 10 -1
           4: 0100007F:0BB9 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41005 1 0 100 0 0 10 0
        garbage line
        """

    func testOnlySocketsListeningOnThePortCount() {
        XCTAssertEqual(AppListener.listeningInodes(in: table, port: 3000), [41001])
        XCTAssertEqual(AppListener.listeningInodes(in: table, port: 8080), [41002])
        XCTAssertEqual(AppListener.listeningInodes(in: table, port: 40000), [], "an established socket is no listener")
        XCTAssertEqual(AppListener.listeningInodes(in: "", port: 3000), [])
    }

    func testTheComparisonTellsSameGoneReplacedAndUnknown() {
        let first = AppListener(inodes: [41001])
        XCTAssertEqual(AppListener.change(from: first, to: AppListener(inodes: [41001])), .same)
        XCTAssertEqual(AppListener.change(from: first, to: AppListener(inodes: [])), .gone)
        XCTAssertEqual(AppListener.change(from: first, to: AppListener(inodes: [52000])), .replaced)
        XCTAssertEqual(AppListener.change(from: first, to: nil), .unknown, "the table could not be read")
        XCTAssertEqual(AppListener.change(from: nil, to: first), .unknown, "nothing was recorded")
        XCTAssertEqual(
            AppListener.change(from: AppListener(inodes: []), to: first), .unknown,
            "the app was never seen listening here (another host or namespace)")
    }

    /// The real tables of this machine: a socket this test listens on is found, with a new inode after it is
    /// closed and another opened on the same port, which is what a restarted app looks like.
    func testARealListenerIsFoundAndARestartedOneDiffers() throws {
        func listen(on port: UInt16) throws -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var yes: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = port.bigEndian
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0, Glibc.listen(fd, 4) == 0 else {
                close(fd)
                throw POSIXError(.EADDRINUSE)
            }
            return fd
        }
        var port: UInt16 = 0
        var first: Int32 = -1
        for _ in 0..<50 {
            port = UInt16.random(in: 20_000...32_000)
            if let fd = try? listen(on: port) {
                first = fd
                break
            }
        }
        XCTAssertGreaterThanOrEqual(first, 0, "no free port")
        let before = try XCTUnwrap(AppListener.read(port: port))
        XCTAssertEqual(before.inodes.count, 1)
        close(first)
        XCTAssertEqual(AppListener.change(from: before, to: AppListener.read(port: port)), .gone)
        let second = try listen(on: port)
        defer { close(second) }
        XCTAssertEqual(AppListener.change(from: before, to: AppListener.read(port: port)), .replaced)
        XCTAssertFalse(AppListener.isLoopback(host: "10.0.0.5"))
        XCTAssertTrue(AppListener.isLoopback(host: "127.0.0.1"))
    }
}
