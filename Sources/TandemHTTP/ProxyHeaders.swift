// ProxyHeaders: what a proxy must change in the fields it forwards (RFC 9110 section 7.6.1 hop-by-hop fields,
// RFC 7239 Forwarded, the de-facto X-Forwarded-For), and the framing fields of a re-framed body.

/// Pure functions over `HTTPHeaders` for the forwarding path, for requests and responses alike.
public enum ProxyHeaders {
    /// Fields that describe one connection, never the message, and are always removed before forwarding.
    /// Transfer-Encoding is among them because the proxy re-frames every body (see `setFraming`); Trailer
    /// because a body re-framed with Content-Length carries no trailers.
    public static let hopByHopFieldNames: [String] = [
        "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Transfer-Encoding", "Upgrade",
        "Proxy-Authenticate", "Proxy-Authorization", "Trailer",
    ]

    /// Fields a client cannot make hop-by-hop by naming them in `Connection`: removing Host would change which
    /// site the app serves, and the framing fields are rewritten by `setFraming` anyway. The Tandem fields the
    /// proxy adds itself are appended after the removal, so they cannot be stripped by a client either.
    public static let protectedFieldNames: [String] = ["Host", "Content-Length"]

    /// Removes the hop-by-hop fields: every field named in `Connection`, then the fixed list above, keeping the
    /// end-to-end fields in their order. When `keepUpgrade` (a tunnelled Upgrade request on a bypass route, or
    /// the app's 101 answer), `Upgrade` is kept and `Connection: upgrade` re-added so the next hop upgrades too.
    /// Compares names as bytes: building two `String`s per field to compare was about a tenth of the sidecar's
    /// instructions per replicated write, which runs this on the client's request and on the app's answer.
    public static func removeHopByHop(from headers: inout HTTPHeaders, keepUpgrade: Bool = false) {
        let nominated = headers.contains(name: "Connection") ? nominatedFieldNames(headers) : []
        headers.removeAll(whereName: { name in
            if keepUpgrade && asciiCaseInsensitiveEquals(name, "Upgrade") { return false }
            return isHopByHop(name, nominated: nominated)
        })
        if keepUpgrade && headers.contains(name: "Upgrade") {
            headers.add(name: "Connection", value: "upgrade")
        }
    }

    /// Fields that must not appear as trailers (RFC 9110 section 6.5.1): framing, routing, authentication,
    /// request modifiers and content-processing fields. A recipient that merged them into the header section
    /// would be smuggled a second, unchecked head.
    public static let forbiddenTrailerFieldNames: [String] = [
        "Content-Length", "Transfer-Encoding", "Host", "Trailer", "TE", "Connection", "Keep-Alive", "Upgrade",
        "Proxy-Connection", "Authorization", "Proxy-Authorization", "Proxy-Authenticate", "WWW-Authenticate",
        "Set-Cookie", "Cookie", "Content-Encoding", "Content-Type", "Content-Range", "Cache-Control", "Expect",
        "Max-Forwards", "Pragma", "Range", "Age", "Expires", "Date", "Location", "Retry-After", "Vary",
        "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range",
    ]

    /// Removes the fields that are not allowed as trailers before trailers are forwarded; returns how many.
    @discardableResult
    public static func removeForbiddenTrailers(from trailers: inout HTTPHeaders) -> Int {
        let before = trailers.count
        trailers.removeAll { field in
            forbiddenTrailerFieldNames.contains { asciiCaseInsensitiveEquals($0, field.name) }
        }
        return before - trailers.count
    }

    /// Appends the client's address to `X-Forwarded-For` (to the last existing field, so the list stays one
    /// comma-separated list) and to `Forwarded` as `for=<ip>;proto=<proto>`, quoting IPv6 as `for="[::1]"`
    /// (RFC 7239 section 6). `clientAddress` is a numeric IPv4 or IPv6 address without port.
    ///
    /// Incoming `Forwarded` fields are kept only when every one of them parses (`isWellFormedForwarded`): an
    /// unbalanced quote in a client's field would otherwise swallow the element appended here, and the app would
    /// see the client's claim instead of the address Tandem saw. When one does not parse, all are dropped.
    public static func appendForwarding(
        to headers: inout HTTPHeaders, clientAddress: String, proto: String = "http"
    ) {
        precondition(isClientAddress(clientAddress), "client address must be a numeric IP address")
        precondition(isValidFieldName(proto), "proto must be a token")
        if !headers.values(name: "Forwarded").allSatisfy(isWellFormedForwarded) {
            headers.remove(name: "Forwarded")
        }
        appendListElement(clientAddress, toField: "X-Forwarded-For", in: &headers)
        appendListElement(
            forwardedElement(clientAddress: clientAddress, proto: proto), toField: "Forwarded", in: &headers)
    }

    /// True when `value` is a `Forwarded` field value of RFC 7239 section 4: a comma list of elements, each a
    /// semicolon list of `token=token` or `token="quoted string"` pairs (optional whitespace around `,` and `;`,
    /// empty list elements tolerated).
    public static func isWellFormedForwarded(_ value: String) -> Bool {
        withUTF8Bytes(value) { isWellFormedForwarded($0) }
    }

    /// `isWellFormedForwarded` over the bytes of the value.
    static func isWellFormedForwarded(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        func skipWhitespace() {
            while index < bytes.count && (bytes[index] == ASCII.space || bytes[index] == ASCII.tab) { index += 1 }
        }
        func token() -> Bool {
            let start = index
            while index < bytes.count && isTokenCharacter(bytes[index]) { index += 1 }
            return index > start
        }
        func quotedString() -> Bool {
            index += 1  // the opening quote
            while index < bytes.count {
                let byte = bytes[index]
                if byte == ASCII.quote {
                    index += 1
                    return true
                }
                if byte == ASCII.backslash {
                    index += 1
                    guard index < bytes.count, bytes[index] == ASCII.tab || bytes[index] >= ASCII.space,
                        bytes[index] != ASCII.delete
                    else { return false }
                } else if byte != ASCII.tab && (byte < ASCII.space || byte == ASCII.delete) {
                    return false
                }
                index += 1
            }
            return false  // no closing quote
        }
        var sawPair = false
        while true {
            skipWhitespace()
            if index < bytes.count && bytes[index] != UInt8(ascii: ",") && bytes[index] != ASCII.semicolon {
                guard token(), index < bytes.count, bytes[index] == ASCII.equals else { return false }
                index += 1
                if index < bytes.count && bytes[index] == ASCII.quote {
                    guard quotedString() else { return false }
                } else {
                    guard token() else { return false }
                }
                sawPair = true
                skipWhitespace()
            }
            guard index < bytes.count else { return sawPair }
            guard bytes[index] == UInt8(ascii: ",") || bytes[index] == ASCII.semicolon else { return false }
            index += 1
        }
    }

    /// Removes every field whose name starts with `Tandem-`. Those fields are Tandem's own: the ones it adds
    /// towards the app (`Tandem-Index`, `Tandem-Time`, `Tandem-Term`, `Tandem-Request-Id`, `Tandem-Redelivery`)
    /// must never come from a client, and the ones it reads from clients (`Tandem-Consistency`, `Tandem-After`)
    /// are meant for Tandem, not the app.
    public static func removeTandemFields(from headers: inout HTTPHeaders) {
        headers.removeAll(whereName: { isTandemFieldName($0) })
    }

    /// True for a field name that starts with `Tandem-`, in any case.
    public static func isTandemFieldName(_ name: String) -> Bool {
        withUTF8Bytes(name) { isTandemFieldName($0) }
    }

    /// `isTandemFieldName` over the bytes of the name.
    static func isTandemFieldName(_ name: UnsafeRawBufferPointer) -> Bool {
        let prefix: StaticString = "tandem-"
        guard name.count > prefix.utf8CodeUnitCount else { return false }
        for index in 0..<prefix.utf8CodeUnitCount where asciiLowercased(name[index]) != prefix.utf8Start[index] {
            return false
        }
        return true
    }

    /// The `Forwarded` element for one hop: `for=192.0.2.1;proto=http` or `for="[2001:db8::1]";proto=http`.
    public static func forwardedElement(clientAddress: String, proto: String = "http") -> String {
        let node = clientAddress.contains(":") ? "\"[\(clientAddress)]\"" : clientAddress
        return "for=\(node);proto=\(proto)"
    }

    /// Removes `Content-Length` and `Transfer-Encoding` and declares `framing` instead: the proxy decides how it
    /// frames what it sends, independently of how the bytes arrived.
    public static func setFraming(_ framing: BodyFraming, in headers: inout HTTPHeaders) {
        headers.remove(name: "Content-Length")
        headers.remove(name: "Transfer-Encoding")
        switch framing {
        case .none: break
        case .contentLength(let length): headers.add(name: "Content-Length", value: String(length))
        case .chunked: headers.add(name: "Transfer-Encoding", value: "chunked")
        }
    }

    private static func appendListElement(_ element: String, toField name: String, in headers: inout HTTPHeaders) {
        guard let index = headers.lastIndex(name: name) else {
            headers.add(name: name, value: element)
            return
        }
        let existing = headers.value(at: index)
        headers.setValue(existing.isEmpty ? element : "\(existing), \(element)", at: index)
    }

    /// Digits, hex letters, dots, colons and the `%` of an IPv6 zone; nothing that could break a field.
    static func isAddressCharacter(_ byte: UInt8) -> Bool {
        ASCII.isDigit(byte) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
            || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) || byte == UInt8(ascii: ".")
            || byte == UInt8(ascii: ":") || byte == UInt8(ascii: "%")
    }
}
