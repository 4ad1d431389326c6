// ForwardedHeads: the heads the proxy forwards, serialized straight from the received fields. Rewriting a copy of
// the field list first (remove the hop-by-hop fields, append the forwarding fields, restate the framing) and then
// serializing it built and searched that copy several times on every request and every response.

/// The client a forwarded request comes from, checked once for all the requests of its connection: its numeric IP
/// address (for `X-Forwarded-For`) and its `Forwarded` element (`ProxyHeaders.forwardedElement`).
///
/// A class: a connection hands the same client to every head it forwards, and a reference is one retain where the
/// four Strings and arrays of a struct were four.
public final class ForwardingClient: Sendable {
    /// The numeric IPv4 or IPv6 address, without port.
    public let address: String
    /// `for=<address>;proto=<proto>`, the address quoted and bracketed when it is IPv6.
    public let forwardedElement: String
    /// The UTF-8 of `address` and `forwardedElement`, written into every forwarded head.
    let addressBytes: [UInt8]
    let forwardedElementBytes: [UInt8]

    /// The client at a numeric IP address (anything else is a programmer error, so it traps).
    public convenience init(address: String, proto: String = "http") {
        precondition(ProxyHeaders.isClientAddress(address), "client address must be a numeric IP address")
        precondition(isValidFieldName(proto), "proto must be a token")
        self.init(
            checkedAddress: address,
            forwardedElement: ProxyHeaders.forwardedElement(clientAddress: address, proto: proto))
    }

    /// A client whose address and element the caller has just checked.
    fileprivate init(checkedAddress: String, forwardedElement: String) {
        self.address = checkedAddress
        self.forwardedElement = forwardedElement
        self.addressBytes = Array(checkedAddress.utf8)
        self.forwardedElementBytes = Array(forwardedElement.utf8)
    }
}

extension ProxyHeaders {
    /// Appends the request head as the app receives it: byte for byte what serializing an HTTP/1.1 head with the
    /// fields of `head` after `removeHopByHop(keepUpgrade:)`, `removeTandemFields`, the removal of `Expect`,
    /// `appendForwarding(clientAddress:)` and `setFraming(head.framing)` gives, in one pass over the fields and
    /// without a copy of them. `forwardedElement` is `forwardedElement(clientAddress:)`, which a caller that
    /// forwards many requests from one client computes once.
    ///
    /// `framing`, when given, is declared instead of `head.framing` (a body that arrived whole while the request
    /// waited goes with its length): it saves the caller a copy of the head to change one field.
    public static func appendForwardedRequestHead(
        _ head: HTTPRequestHead, clientAddress: String, forwardedElement: String, keepUpgrade: Bool,
        framing: BodyFraming? = nil, into buffer: inout [UInt8]
    ) {
        precondition(isClientAddress(clientAddress), "client address must be a numeric IP address")
        precondition(isSafeFieldValue(forwardedElement), "the Forwarded element contains CR, LF or NUL")
        appendForwardedRequestHead(
            head, client: ForwardingClient(checkedAddress: clientAddress, forwardedElement: forwardedElement),
            keepUpgrade: keepUpgrade, framing: framing, into: &buffer)
    }

    /// `appendForwardedRequestHead(_:clientAddress:forwardedElement:keepUpgrade:framing:into:)` for a client checked
    /// once for all its requests.
    public static func appendForwardedRequestHead(
        _ head: HTTPRequestHead, client: ForwardingClient, keepUpgrade: Bool, framing: BodyFraming? = nil,
        into buffer: inout [UInt8]
    ) {
        precondition(isValidFieldName(head.method), "invalid method \(head.method.debugDescription)")
        precondition(isValidRequestTarget(head.target), "invalid request target")
        // The fields are read and copied as bytes: none of them becomes a String on the way through.
        head.headers.withFields { raw, spans in
            var sawConnection = false
            var sawUpgrade = false
            var forwardedWellFormed = true
            for span in spans {
                let name = raw.slice(span.nameRange)
                switch span.nameCount {
                case 7 where asciiCaseInsensitiveEquals(name, "Upgrade"): sawUpgrade = true
                case 9 where forwardedWellFormed && asciiCaseInsensitiveEquals(name, "Forwarded"):
                    forwardedWellFormed = isWellFormedForwarded(raw.slice(span.valueRange))
                case 10 where asciiCaseInsensitiveEquals(name, "Connection"): sawConnection = true
                default: break
                }
            }
            // Only a request with a `Connection` field pays for its option list.
            let nominated = sawConnection ? nominatedFieldNames(head.headers) : []
            func isForwarded(_ name: UnsafeRawBufferPointer) -> Bool {
                if keepUpgrade && name.count == 7 && asciiCaseInsensitiveEquals(name, "Upgrade") { return true }
                if isHopByHop(name, nominated: nominated) || isTandemFieldName(name) { return false }
                switch name.count {
                case 6: return !asciiCaseInsensitiveEquals(name, "Expect")
                case 9: return forwardedWellFormed || !asciiCaseInsensitiveEquals(name, "Forwarded")
                case 14: return !asciiCaseInsensitiveEquals(name, "Content-Length")
                default: return true
                }
            }
            // The client's address joins the last forwarded field of each list, or a new field after the others.
            var lastForwardedFor: Int?
            var lastForwarded: Int?
            for index in spans.indices {
                let name = raw.slice(spans[index].nameRange)
                switch name.count {
                case 9 where asciiCaseInsensitiveEquals(name, "Forwarded") && isForwarded(name):
                    lastForwarded = index
                case 15 where asciiCaseInsensitiveEquals(name, "X-Forwarded-For") && isForwarded(name):
                    lastForwardedFor = index
                default: break
                }
            }
            buffer.appendHead { writer in
                writer.writeUTF8(head.method)
                writer.write(ASCII.space)
                writer.writeUTF8(head.target)
                writer.write(" HTTP/1.1\r\n")
                for index in spans.indices {
                    let span = spans[index]
                    let name = raw.slice(span.nameRange)
                    guard isForwarded(name) else { continue }
                    let value = raw.slice(span.valueRange)
                    if index == lastForwardedFor {
                        writeListField(name: name, value: value, element: client.addressBytes, into: &writer)
                    } else if index == lastForwarded {
                        writeListField(
                            name: name, value: value, element: client.forwardedElementBytes, into: &writer)
                    } else {
                        writer.writeField(name: name, value: value)
                    }
                }
                if keepUpgrade && sawUpgrade { writer.write("Connection: upgrade\r\n") }
                // Both values were checked above.
                if lastForwardedFor == nil {
                    writer.write("X-Forwarded-For: ")
                    client.addressBytes.withUnsafeBytes { writer.write($0) }
                    writer.writeCRLF()
                }
                if lastForwarded == nil {
                    writer.write("Forwarded: ")
                    client.forwardedElementBytes.withUnsafeBytes { writer.write($0) }
                    writer.writeCRLF()
                }
                switch framing ?? head.framing {
                case .none: break
                case .contentLength(let length):
                    writer.write("Content-Length: ")
                    writer.writeDecimal(UInt64(length))
                    writer.writeCRLF()
                case .chunked: writer.write("Transfer-Encoding: chunked\r\n")
                }
                writer.writeCRLF()
            }
        }
    }

    /// Appends the status line and the fields of `headers` that `removeHopByHop` keeps, but not the empty line
    /// that ends the head: the caller appends its own fields (`HTTPSerializer.appendField`) and then that line
    /// (`HTTPSerializer.appendEndOfHead`). The version is always HTTP/1.1, what Tandem speaks to clients.
    public static func appendForwardedResponseHeadStart(
        status: Int, reason: String, headers: HTTPHeaders, into buffer: inout [UInt8]
    ) {
        precondition(status >= 100 && status <= 999, "status \(status) is not three digits")
        precondition(isSafeFieldValue(reason), "reason phrase contains CR, LF or NUL")
        buffer.appendHead { writer in
            writer.writeStatusLine(status: status, reason: reason, version: .http1_1)
            writeEndToEndFields(of: headers, into: &writer)
        }
    }

    /// Appends the whole response head Tandem sends its client for an app's response: the status line, the fields
    /// `removeHopByHop` keeps, then Tandem's own: `Transfer-Encoding: chunked` when `chunked`, `Tandem-Position`
    /// when `position` is given, `Connection` when `connectionOption` is (a token), and the empty line. The same
    /// bytes as `appendForwardedResponseHeadStart` followed by those `HTTPSerializer.appendField` calls and
    /// `HTTPSerializer.appendEndOfHead`, written with one copy into `buffer`.
    public static func appendForwardedResponseHead(
        status: Int, reason: String, headers: HTTPHeaders, chunked: Bool, position: UInt64?,
        connectionOption: String?, into buffer: inout [UInt8]
    ) {
        precondition(status >= 100 && status <= 999, "status \(status) is not three digits")
        precondition(isSafeFieldValue(reason), "reason phrase contains CR, LF or NUL")
        if let connectionOption {
            precondition(isSafeFieldValue(connectionOption), "the Connection option contains CR, LF or NUL")
        }
        buffer.appendHead { writer in
            writer.writeStatusLine(status: status, reason: reason, version: .http1_1)
            writeEndToEndFields(of: headers, into: &writer)
            if chunked { writer.write("Transfer-Encoding: chunked\r\n") }
            if let position {
                writer.write("Tandem-Position: ")
                writer.writeDecimal(position)
                writer.writeCRLF()
            }
            if let connectionOption {
                writer.write("Connection: ")
                writer.writeUTF8(connectionOption)
                writer.writeCRLF()
            }
            writer.writeCRLF()
        }
    }

    /// Appends the whole head of the answer to a replicated write: the status line (HTTP/1.1), the fields of the
    /// app's answer that `removeHopByHop` keeps except `Content-Length`, then `Content-Length: bodyCount`,
    /// `Tandem-Position`, `Tandem-Leader`, `Tandem-Replayed: true` when `replayed`, the `Set-Cookie` that carries
    /// the position (`tandem_pos=<position>; Path=/; SameSite=Lax`), `Connection` when `connectionOption` is given,
    /// and the empty line. Byte for byte what `removeHopByHop`, `setFraming(.contentLength(bodyCount))`, adding
    /// those fields and `HTTPSerializer.appendResponseHead` give, in one pass and with one copy.
    public static func appendWriteAnswerHead(
        status: Int, reason: String, headers: HTTPHeaders, bodyCount: Int, position: UInt64, leader: String,
        replayed: Bool, connectionOption: String?, into buffer: inout [UInt8]
    ) {
        precondition(status >= 100 && status <= 999, "status \(status) is not three digits")
        precondition(isSafeFieldValue(reason), "reason phrase contains CR, LF or NUL")
        precondition(isSafeFieldValue(leader), "the leader's name contains CR, LF or NUL")
        precondition(bodyCount >= 0, "a body has a non-negative length")
        if let connectionOption {
            precondition(isSafeFieldValue(connectionOption), "the Connection option contains CR, LF or NUL")
        }
        buffer.appendHead { writer in
            writer.writeStatusLine(status: status, reason: reason, version: .http1_1)
            writeEndToEndFields(of: headers, droppingContentLength: true, into: &writer)
            writer.write("Content-Length: ")
            writer.writeDecimal(UInt64(bodyCount))
            writer.write("\r\nTandem-Position: ")
            writer.writeDecimal(position)
            writer.write("\r\nTandem-Leader: ")
            writer.writeUTF8(leader)
            writer.writeCRLF()
            if replayed { writer.write("Tandem-Replayed: true\r\n") }
            writer.write("Set-Cookie: tandem_pos=")
            writer.writeDecimal(position)
            writer.write("; Path=/; SameSite=Lax\r\n")
            if let connectionOption {
                writer.write("Connection: ")
                writer.writeUTF8(connectionOption)
                writer.writeCRLF()
            }
            writer.writeCRLF()
        }
    }

    /// The fields of `headers` that `removeHopByHop` keeps, in order.
    /// With `droppingContentLength`, `Content-Length` too (a head whose framing the caller restates). Inlined, so
    /// that the proxied read's call, which never drops it, carries no test for it.
    @inline(__always)
    private static func writeEndToEndFields(
        of headers: HTTPHeaders, droppingContentLength: Bool = false, into writer: inout HeadWriter
    ) {
        headers.withFields { raw, spans in
            let sawConnection = spans.contains {
                $0.nameCount == 10 && asciiCaseInsensitiveEquals(raw.slice($0.nameRange), "Connection")
            }
            let nominated = sawConnection ? nominatedFieldNames(headers) : []
            for span in spans {
                let name = raw.slice(span.nameRange)
                if isHopByHop(name, nominated: nominated) { continue }
                if droppingContentLength && span.nameCount == 14 && asciiCaseInsensitiveEquals(name, "Content-Length") {
                    continue
                }
                writer.writeField(name: name, value: raw.slice(span.valueRange))
            }
        }
    }

    /// The options of every `Connection` field: the fields they name are hop-by-hop, except the protected ones.
    static func nominatedFieldNames(_ headers: HTTPHeaders) -> [Substring] {
        headers.tokens(name: "Connection").filter { option in
            !protectedFieldNames.contains { asciiCaseInsensitiveEquals($0, option) }
        }
    }

    /// True for a fixed hop-by-hop name or one a `Connection` field nominated (`nominated`), in any case.
    static func isHopByHop(_ name: UnsafeRawBufferPointer, nominated: [Substring]) -> Bool {
        if isFixedHopByHopName(name) { return true }
        return nominated.contains { option in withUTF8Bytes(option) { asciiCaseInsensitiveEquals($0, name) } }
    }

    /// True for the names of `hopByHopFieldNames` (any case).
    static func isFixedHopByHopName(_ name: String) -> Bool {
        withUTF8Bytes(name) { isFixedHopByHopName($0) }
    }

    /// True for the names of `hopByHopFieldNames` (any case), dispatching on the length first: most fields are
    /// none of them and cost one integer compare instead of nine string compares.
    static func isFixedHopByHopName(_ name: UnsafeRawBufferPointer) -> Bool {
        switch name.count {
        case 2: return asciiCaseInsensitiveEquals(name, "TE")
        case 7: return asciiCaseInsensitiveEquals(name, "Upgrade") || asciiCaseInsensitiveEquals(name, "Trailer")
        case 10:
            return asciiCaseInsensitiveEquals(name, "Connection") || asciiCaseInsensitiveEquals(name, "Keep-Alive")
        case 16: return asciiCaseInsensitiveEquals(name, "Proxy-Connection")
        case 17: return asciiCaseInsensitiveEquals(name, "Transfer-Encoding")
        case 18: return asciiCaseInsensitiveEquals(name, "Proxy-Authenticate")
        case 19: return asciiCaseInsensitiveEquals(name, "Proxy-Authorization")
        default: return false
        }
    }

    /// A list field with one more element, as `appendForwarding` extends it.
    private static func writeListField(
        name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, element: [UInt8], into writer: inout HeadWriter
    ) {
        writer.write(name)
        writer.write(": ")
        if !value.isEmpty {
            writer.write(value)
            writer.write(", ")
        }
        element.withUnsafeBytes { writer.write($0) }
        writer.writeCRLF()
    }

    /// A non-empty numeric IP address (see `isAddressCharacter`).
    static func isClientAddress(_ address: String) -> Bool {
        withUTF8Bytes(address) { bytes in
            guard !bytes.isEmpty else { return false }
            for byte in bytes where !isAddressCharacter(byte) { return false }
            return true
        }
    }
}

/// A request target the serializers may write: non-empty visible ASCII.
func isValidRequestTarget(_ target: String) -> Bool {
    withUTF8Bytes(target) { bytes in
        guard !bytes.isEmpty else { return false }
        for byte in bytes where byte <= 0x20 || byte >= 0x7F { return false }
        return true
    }
}
