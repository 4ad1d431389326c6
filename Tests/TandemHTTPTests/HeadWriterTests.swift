import XCTest

@testable import TandemHTTP

/// Heads written through `HeadWriter` (a stack scratch buffer appended with one copy) must be the bytes the
/// piecewise serializers give, whatever their size, and must land after what the buffer already held.
final class HeadWriterTests: XCTestCase {
    /// The composition `appendForwardedResponseHead` replaces.
    private func referenceResponseHead(
        status: Int, reason: String, headers: HTTPHeaders, chunked: Bool, position: UInt64?, connection: String?
    ) -> [UInt8] {
        var buffer: [UInt8] = []
        ProxyHeaders.appendForwardedResponseHeadStart(status: status, reason: reason, headers: headers, into: &buffer)
        if chunked { HTTPSerializer.appendField(name: "Transfer-Encoding", value: "chunked", into: &buffer) }
        if let position { HTTPSerializer.appendField(name: "Tandem-Position", value: String(position), into: &buffer) }
        if let connection { HTTPSerializer.appendField(name: "Connection", value: connection, into: &buffer) }
        HTTPSerializer.appendEndOfHead(into: &buffer)
        return buffer
    }

    func testTheWholeResponseHeadIsTheStartThenTandemsFieldsThenTheEmptyLine() {
        let headers: HTTPHeaders = [
            "Content-Type": "text/plain", "Connection": "keep-alive, X-Hop", "X-Hop": "1", "Date": "today",
            "Content-Length": "3",
        ]
        for chunked in [false, true] {
            for position: UInt64? in [nil, 0, 42, .max] {
                for connection: String? in [nil, "close", "keep-alive"] {
                    var actual: [UInt8] = [0x7A]
                    ProxyHeaders.appendForwardedResponseHead(
                        status: 200, reason: "OK", headers: headers, chunked: chunked, position: position,
                        connectionOption: connection, into: &actual)
                    let expected =
                        [0x7A]
                        + referenceResponseHead(
                            status: 200, reason: "OK", headers: headers, chunked: chunked, position: position,
                            connection: connection)
                    XCTAssertEqual(
                        String(decoding: actual, as: UTF8.self), String(decoding: expected, as: UTF8.self),
                        "chunked \(chunked), position \(String(describing: position)), \(String(describing: connection))"
                    )
                }
            }
        }
    }

    func testHeadsLargerThanTheScratchBufferAreWrittenWholeAndInOrder() {
        // Fields around the scratch size, and one larger than it on its own.
        for sizes in [[10, 1000], [1010], [1013], [500, 500, 500], [3000], [1, 2000, 1, 5000]] {
            var headers = HTTPHeaders()
            for (index, size) in sizes.enumerated() {
                headers.add(
                    name: "X-F\(index)", value: String(repeating: Character(UnicodeScalar(97 + index)!), count: size))
            }
            var actual: [UInt8] = Array("prefix".utf8)
            ProxyHeaders.appendForwardedResponseHead(
                status: 200, reason: "OK", headers: headers, chunked: false, position: 7, connectionOption: nil,
                into: &actual)
            let expected =
                Array("prefix".utf8)
                + referenceResponseHead(
                    status: 200, reason: "OK", headers: headers, chunked: false, position: 7, connection: nil)
            XCTAssertEqual(actual, expected, "field sizes \(sizes)")
        }
    }

    func testAGivenFramingIsDeclaredInsteadOfTheHeads() {
        let head = HTTPRequestHead(method: "POST", target: "/kv/a", headers: ["Host": "h"], framing: .chunked)
        var buffer: [UInt8] = []
        ProxyHeaders.appendForwardedRequestHead(
            head, clientAddress: "192.0.2.1", forwardedElement: "for=192.0.2.1;proto=http", keepUpgrade: false,
            framing: .contentLength(12), into: &buffer)
        XCTAssertEqual(
            String(decoding: buffer, as: UTF8.self),
            "POST /kv/a HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\nForwarded: for=192.0.2.1;proto=http\r\n"
                + "Content-Length: 12\r\n\r\n")
        buffer.removeAll()
        ProxyHeaders.appendForwardedRequestHead(
            head, clientAddress: "192.0.2.1", forwardedElement: "for=192.0.2.1;proto=http", keepUpgrade: false,
            into: &buffer)
        XCTAssertTrue(String(decoding: buffer, as: UTF8.self).hasSuffix("Transfer-Encoding: chunked\r\n\r\n"))
    }

    func testAParsedFieldKeepsItsNameAndValueWithoutTheWhitespaceAroundTheValue() throws {
        var parser = HTTPRequestParser()
        let bytes = Array("GET / HTTP/1.1\r\nHost:  h \t\r\nX-Empty: \t \r\nX-A:b\r\n\r\n".utf8)
        var headers: HTTPHeaders?
        _ = try bytes.withUnsafeBytes { raw in
            try parser.parse(raw) { event in if case .head(let head) = event { headers = head.headers } }
        }
        XCTAssertEqual(headers, ["Host": "h", "X-Empty": "", "X-A": "b"])
    }
}

/// A client checked once gives the same forwarded head as its address and element passed with every request.
final class ForwardingClientTests: XCTestCase {
    func testAForwardingClientWritesWhatTheAddressAndElementWrite() {
        let heads = [
            HTTPRequestHead(method: "GET", target: "/a", headers: ["Host": "h"]),
            HTTPRequestHead(
                method: "GET", target: "/a",
                headers: ["Host": "h", "X-Forwarded-For": "10.0.0.1", "Forwarded": "for=10.0.0.1", "Via": "x"]),
            HTTPRequestHead(method: "GET", target: "/a", headers: ["X-Forwarded-For": "", "Forwarded": ""]),
        ]
        for address in ["192.0.2.1", "2001:db8::1"] {
            let client = ForwardingClient(address: address)
            XCTAssertEqual(client.forwardedElement, ProxyHeaders.forwardedElement(clientAddress: address))
            for head in heads {
                var viaClient: [UInt8] = []
                ProxyHeaders.appendForwardedRequestHead(head, client: client, keepUpgrade: false, into: &viaClient)
                var viaStrings: [UInt8] = []
                ProxyHeaders.appendForwardedRequestHead(
                    head, clientAddress: address, forwardedElement: client.forwardedElement, keepUpgrade: false,
                    into: &viaStrings)
                XCTAssertEqual(viaClient, viaStrings)
                XCTAssertTrue(String(decoding: viaClient, as: UTF8.self).contains(address))
            }
        }
    }

    func testTheStatusLineCarriesTheVersionTheCodeAndTheReason() {
        for (version, status, reason) in [
            (HTTPVersion.http1_1, 200, "OK"), (.http1_0, 404, ""), (.http1_1, 999, "x y"),
        ] {
            var buffer: [UInt8] = []
            buffer.appendHead { $0.writeStatusLine(status: status, reason: reason, version: version) }
            XCTAssertEqual(String(decoding: buffer, as: UTF8.self), "\(version) \(status) \(reason)\r\n")
        }
    }
}
