// ForwardedHeads: the heads the proxy forwards, serialized straight from the received fields. Rewriting a copy of
// the field list first (remove the hop-by-hop fields, append the forwarding fields, restate the framing) and then
// serializing it built and searched that copy several times on every request and every response.

extension ProxyHeaders {
    /// Appends the request head as the app receives it: byte for byte what serializing an HTTP/1.1 head with the
    /// fields of `head` after `removeHopByHop(keepUpgrade:)`, `removeTandemFields`, the removal of `Expect`,
    /// `appendForwarding(clientAddress:)` and `setFraming(head.framing)` gives, in one pass over the fields and
    /// without a copy of them. `forwardedElement` is `forwardedElement(clientAddress:)`, which a caller that
    /// forwards many requests from one client computes once.
    public static func appendForwardedRequestHead(
        _ head: HTTPRequestHead, clientAddress: String, forwardedElement: String, keepUpgrade: Bool,
        into buffer: inout [UInt8]
    ) {
        precondition(
            !clientAddress.isEmpty && clientAddress.utf8.allSatisfy(isAddressCharacter),
            "client address must be a numeric IP address")
        precondition(isSafeFieldValue(forwardedElement), "the Forwarded element contains CR, LF or NUL")
        precondition(isValidFieldName(head.method), "invalid method \(head.method.debugDescription)")
        precondition(
            !head.target.isEmpty && head.target.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }, "invalid request target")
        let fields = head.headers.fields
        var sawConnection = false
        var sawUpgrade = false
        var forwardedWellFormed = true
        for field in fields {
            switch field.name.utf8.count {
            case 7 where asciiCaseInsensitiveEquals(field.name, "Upgrade"): sawUpgrade = true
            case 9 where forwardedWellFormed && asciiCaseInsensitiveEquals(field.name, "Forwarded"):
                forwardedWellFormed = isWellFormedForwarded(field.value)
            case 10 where asciiCaseInsensitiveEquals(field.name, "Connection"): sawConnection = true
            default: break
            }
        }
        // Only a request with a `Connection` field pays for its option list.
        let nominated = sawConnection ? nominatedFieldNames(head.headers) : []
        func isForwarded(_ name: String) -> Bool {
            if keepUpgrade && asciiCaseInsensitiveEquals(name, "Upgrade") { return true }
            if isHopByHop(name, nominated: nominated) || isTandemFieldName(name) { return false }
            switch name.utf8.count {
            case 6: return !asciiCaseInsensitiveEquals(name, "Expect")
            case 9: return forwardedWellFormed || !asciiCaseInsensitiveEquals(name, "Forwarded")
            case 14: return !asciiCaseInsensitiveEquals(name, "Content-Length")
            default: return true
            }
        }
        // The client's address joins the last forwarded field of each list, or a new field after all the others.
        var lastForwardedFor: Int?
        var lastForwarded: Int?
        for index in fields.indices where isForwarded(fields[index].name) {
            if asciiCaseInsensitiveEquals(fields[index].name, "X-Forwarded-For") { lastForwardedFor = index }
            if asciiCaseInsensitiveEquals(fields[index].name, "Forwarded") { lastForwarded = index }
        }
        buffer.append(contentsOf: head.method.utf8)
        buffer.append(ASCII.space)
        buffer.append(contentsOf: head.target.utf8)
        buffer.append(contentsOf: " HTTP/1.1\r\n".utf8)
        for index in fields.indices where isForwarded(fields[index].name) {
            let field = fields[index]
            if index == lastForwardedFor {
                appendListField(field, element: clientAddress, into: &buffer)
            } else if index == lastForwarded {
                appendListField(field, element: forwardedElement, into: &buffer)
            } else {
                HTTPSerializer.appendValidatedField(name: field.name, value: field.value, into: &buffer)
            }
        }
        if keepUpgrade && sawUpgrade { HTTPSerializer.appendField(name: "Connection", value: "upgrade", into: &buffer) }
        // Both values were checked above.
        if lastForwardedFor == nil {
            HTTPSerializer.appendValidatedField(name: "X-Forwarded-For", value: clientAddress, into: &buffer)
        }
        if lastForwarded == nil {
            HTTPSerializer.appendValidatedField(name: "Forwarded", value: forwardedElement, into: &buffer)
        }
        switch head.framing {
        case .none: break
        case .contentLength(let length):
            HTTPSerializer.appendField(name: "Content-Length", value: String(length), into: &buffer)
        case .chunked: HTTPSerializer.appendField(name: "Transfer-Encoding", value: "chunked", into: &buffer)
        }
        buffer.append(contentsOf: HTTPSerializer.crlf)
    }

    /// Appends the status line and the fields of `headers` that `removeHopByHop` keeps, but not the empty line
    /// that ends the head: the caller appends its own fields (`HTTPSerializer.appendField`) and then that line
    /// (`HTTPSerializer.appendEndOfHead`). The version is always HTTP/1.1, what Tandem speaks to clients.
    public static func appendForwardedResponseHeadStart(
        status: Int, reason: String, headers: HTTPHeaders, into buffer: inout [UInt8]
    ) {
        HTTPSerializer.appendStatusLine(status: status, reason: reason, into: &buffer)
        let fields = headers.fields
        let sawConnection = fields.contains { asciiCaseInsensitiveEquals($0.name, "Connection") }
        let nominated = sawConnection ? nominatedFieldNames(headers) : []
        for field in fields where !isHopByHop(field.name, nominated: nominated) {
            HTTPSerializer.appendValidatedField(name: field.name, value: field.value, into: &buffer)
        }
    }

    /// The options of every `Connection` field: the fields they name are hop-by-hop, except the protected ones.
    static func nominatedFieldNames(_ headers: HTTPHeaders) -> [Substring] {
        headers.tokens(name: "Connection").filter { option in
            !protectedFieldNames.contains { asciiCaseInsensitiveEquals($0, option) }
        }
    }

    private static func isHopByHop(_ name: String, nominated: [Substring]) -> Bool {
        isFixedHopByHopName(name) || nominated.contains { asciiCaseInsensitiveEquals($0, name) }
    }

    /// True for the names of `hopByHopFieldNames` (any case), dispatching on the length first: most fields are
    /// none of them and cost one integer compare instead of nine string compares.
    static func isFixedHopByHopName(_ name: String) -> Bool {
        switch name.utf8.count {
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
    private static func appendListField(_ field: HTTPHeaders.Element, element: String, into buffer: inout [UInt8]) {
        buffer.append(contentsOf: field.name.utf8)
        buffer.append(contentsOf: ": ".utf8)
        if !field.value.isEmpty {
            buffer.append(contentsOf: field.value.utf8)
            buffer.append(contentsOf: ", ".utf8)
        }
        buffer.append(contentsOf: element.utf8)
        buffer.append(contentsOf: HTTPSerializer.crlf)
    }
}
