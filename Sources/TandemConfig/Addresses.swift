#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A `host:port` address as written in configuration. The host is kept as text: DNS names are resolved at
/// connect time (and again on reconnect) by the networking layer, never here.
public struct HostPort: Hashable, Sendable, CustomStringConvertible {
    /// What the host part is, so the networking layer knows whether it must resolve it.
    public enum HostKind: Hashable, Sendable {
        /// A dotted-quad IPv4 literal such as `10.0.0.7`.
        case ipv4
        /// An IPv6 literal, written in brackets in configuration (`[::1]:80`) and stored without them.
        case ipv6
        /// A DNS name such as `tandem-0.tandem.default.svc` or `localhost`.
        case dnsName
    }

    /// The host without brackets: `127.0.0.1`, `::1` or `example.internal`.
    public let host: String
    /// The TCP port; 0 means "pick a free port" for listeners and is refused where Tandem must connect.
    public let port: UInt16
    /// Whether `host` is an IPv4 literal, an IPv6 literal or a DNS name.
    public let kind: HostKind

    /// The syntax accepted, as shown in errors and `--help`.
    public static let syntax = "host:port such as 0.0.0.0:8080, [::1]:8080 or tandem-0.tandem:7400, port 0...65535"

    /// Parses `host:port`, `[ipv6]:port` or `dns.name:port`.
    public init(parsing text: String) throws(ConfigValueError) {
        let (hostText, portText, bracketed) = try HostPort.split(text)
        guard let port = HostPort.parsePort(portText) else {
            throw ConfigValueError(problem: "has an invalid port \"\(portText)\"", expected: HostPort.syntax)
        }
        if bracketed {
            guard HostPort.isIPLiteral(hostText, family: AF_INET6) else {
                throw ConfigValueError(problem: "has an invalid IPv6 address", expected: HostPort.syntax)
            }
            self.init(host: hostText, port: port, kind: .ipv6)
        } else if hostText.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }) {
            // All digits and dots can only be meant as IPv4; "999.1.1.1" must not pass as a DNS name.
            guard HostPort.isIPLiteral(hostText, family: AF_INET) else {
                throw ConfigValueError(problem: "has an invalid IPv4 address", expected: HostPort.syntax)
            }
            self.init(host: hostText, port: port, kind: .ipv4)
        } else {
            guard HostPort.isDNSName(hostText) else {
                throw ConfigValueError(problem: "has an invalid host name", expected: HostPort.syntax)
            }
            self.init(host: hostText, port: port, kind: .dnsName)
        }
    }

    /// Creates an address from parts that are already known to be valid.
    public init(host: String, port: UInt16, kind: HostKind) {
        precondition(!host.isEmpty, "a HostPort needs a host")
        self.host = host
        self.port = port
        self.kind = kind
    }

    /// `host:port`, with brackets around IPv6 literals, so that it parses back to the same value.
    public var description: String {
        kind == .ipv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// True for `0.0.0.0` and `::`, which listen on every interface and so overlap with any other host.
    public var isWildcard: Bool {
        (kind == .ipv4 && host == "0.0.0.0") || (kind == .ipv6 && HostPort.isIPv6Unspecified(host))
    }

    /// Splits off the port, handling brackets; says plainly when an IPv6 literal lacks them.
    static func split(_ text: String) throws(ConfigValueError) -> (host: String, port: Substring, bracketed: Bool) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw ConfigValueError(problem: "has an unclosed \"[\"", expected: HostPort.syntax)
            }
            let afterClose = text.index(after: close)
            guard afterClose < text.endIndex, text[afterClose] == ":" else {
                throw ConfigValueError(problem: "has no port", expected: HostPort.syntax)
            }
            let host = String(text[text.index(after: text.startIndex)..<close])
            return (host, text[text.index(after: afterClose)...], true)
        }
        guard let colon = text.lastIndex(of: ":") else {
            throw ConfigValueError(problem: "has no port", expected: HostPort.syntax)
        }
        let host = text[..<colon]
        if host.contains(":") {
            throw ConfigValueError(
                problem: "looks like an IPv6 address without brackets", expected: "[address]:port such as [::1]:8080")
        }
        if host.isEmpty {
            throw ConfigValueError(problem: "has no host", expected: HostPort.syntax)
        }
        return (String(host), text[text.index(after: colon)...], false)
    }

    /// Parses 1 to 5 decimal digits up to 65535.
    static func parsePort(_ text: Substring) -> UInt16? {
        guard (1...5).contains(text.utf8.count), text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let value = UInt32(text), value <= UInt32(UInt16.max)
        else { return nil }
        return UInt16(value)
    }

    /// Asks the C library whether `text` is an address literal of `family`, so we accept exactly what the
    /// networking layer will accept.
    static func isIPLiteral(_ text: String, family: Int32) -> Bool {
        var storage = in6_addr()
        return text.withCString { inet_pton(family, $0, &storage) } == 1
    }

    static func isIPv6Unspecified(_ text: String) -> Bool {
        var address = in6_addr()
        guard text.withCString({ inet_pton(AF_INET6, $0, &address) }) == 1 else { return false }
        return withUnsafeBytes(of: &address) { bytes in bytes.allSatisfy { $0 == 0 } }
    }

    /// RFC 1123 host names: dot-separated labels of 1...63 letters, digits and hyphens, not starting or ending
    /// with a hyphen, 253 characters at most. Underscores are also allowed because Docker Compose names use them
    /// and the resolver accepts them.
    static func isDNSName(_ text: String) -> Bool {
        guard (1...253).contains(text.utf8.count) else { return false }
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        return labels.allSatisfy { label in
            guard (1...63).contains(label.utf8.count), label.first != "-", label.last != "-" else { return false }
            return label.utf8.allSatisfy { byte in
                (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                    || byte == 0x2D || byte == 0x5F
            }
        }
    }
}

/// One member of the cluster as listed in `TANDEM_PEERS`.
public struct Peer: Hashable, Sendable, CustomStringConvertible {
    /// The member's node id, as in its own `TANDEM_NODE_ID`.
    public let id: String
    /// Where its peer listener can be reached (port never 0).
    public let address: HostPort

    /// Creates a peer; `id` must be a valid node id.
    public init(id: String, address: HostPort) {
        precondition(NodeID.isValid(id), "peer ids are validated before a Peer is built")
        self.id = id
        self.address = address
    }

    /// `id=host:port`, the syntax of one `TANDEM_PEERS` entry.
    public var description: String { "\(id)=\(address)" }

    /// The syntax accepted for `TANDEM_PEERS`, as shown in errors.
    public static let listSyntax = "a comma list of id=host:port such as n1=tandem-0:7400,n2=tandem-1:7400"
    /// The most members a cluster may list. Raft quorums beyond 9 only add latency; 15 leaves room to grow.
    public static let countMax = 15

    /// Parses `n1=host:7400,n2=host:7400`. Ids and addresses must be unique; spaces around entries are ignored.
    public static func parseList(_ text: String) throws(ConfigValueError) -> [Peer] {
        let entries = text.split(separator: ",", omittingEmptySubsequences: false)
        guard entries.count <= countMax else {
            throw ConfigValueError(problem: "lists \(entries.count) peers", expected: "at most \(countMax) peers")
        }
        var peers: [Peer] = []
        for rawEntry in entries {
            let entry = rawEntry.trimmingASCIISpaces()
            guard let equals = entry.firstIndex(of: "=") else {
                throw ConfigValueError(problem: "has an entry \"\(entry)\" without \"=\"", expected: listSyntax)
            }
            let id = String(entry[..<equals])
            guard NodeID.isValid(id) else {
                throw ConfigValueError(problem: "has an invalid node id \"\(id)\"", expected: NodeID.syntax)
            }
            let address: HostPort
            do {
                address = try HostPort(parsing: String(entry[entry.index(after: equals)...]))
            } catch {
                throw ConfigValueError(problem: "has for \(id) an address that \(error.problem)", expected: listSyntax)
            }
            guard address.port != 0 else {
                throw ConfigValueError(
                    problem: "has port 0 for \(id)", expected: "a port peers can connect to, 1...65535")
            }
            if peers.contains(where: { $0.id == id }) {
                throw ConfigValueError(problem: "lists node id \(id) twice", expected: "unique node ids")
            }
            if peers.contains(where: { $0.address.description.lowercased() == address.description.lowercased() }) {
                throw ConfigValueError(problem: "lists address \(address) twice", expected: "one address per node")
            }
            peers.append(Peer(id: id, address: address))
        }
        assert(peers.count == entries.count && Set(peers.map(\.id)).count == peers.count, "peer ids are unique")
        return peers
    }
}

/// Rules for node ids: they appear in headers (`Tandem-Leader`), JSON, metrics labels and log lines, so they are
/// kept to characters that need no escaping anywhere.
public enum NodeID {
    /// The longest node id: Linux host names (the default) are at most 64 bytes.
    public static let lengthMax = 64
    /// The syntax accepted, as shown in errors and `--help`.
    public static let syntax = "1...64 letters, digits, \".\", \"_\" or \"-\", starting with a letter or digit"

    /// True when `id` may name a node.
    public static func isValid(_ id: String) -> Bool {
        guard (1...lengthMax).contains(id.utf8.count), let first = id.utf8.first, isAlphanumeric(first) else {
            return false
        }
        return id.utf8.allSatisfy { isAlphanumeric($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }
    }

    static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
    }
}

extension Substring {
    /// The substring without leading and trailing spaces and tabs.
    func trimmingASCIISpaces() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}

/// `TANDEM_JOIN`: where a node with no state asks to be admitted to a running cluster.
public enum JoinTargets: Hashable, Sendable, CustomStringConvertible {
    /// Peer listeners of members, tried in turn.
    case addresses([HostPort])
    /// A DNS name: its SRV records name the members and their ports; without any, its A/AAAA records on port 7400
    /// (a Kubernetes headless Service gives both).
    case dnsName(String)

    public static let syntax = "host:port,... of members' peer listeners, or a DNS name (SRV, else A on port 7400)"
    public static let defaultPort: UInt16 = 7400

    public init(parsing text: String) throws(ConfigValueError) {
        if text.contains(":") || text.contains(",") {
            var addresses: [HostPort] = []
            for part in text.split(separator: ",", omittingEmptySubsequences: false) {
                let address = try HostPort(parsing: String(part).trimmingWhitespace())
                guard address.port != 0 else {
                    throw ConfigValueError(problem: "lists \(address) with port 0", expected: Self.syntax)
                }
                addresses.append(address)
            }
            guard addresses.count <= Peer.countMax else {
                throw ConfigValueError(problem: "lists more than \(Peer.countMax) addresses", expected: Self.syntax)
            }
            self = .addresses(addresses)
        } else {
            guard HostPort.isDNSName(text) || HostPort.isIPLiteral(text, family: AF_INET) else {
                throw ConfigValueError(problem: "is neither host:port,... nor a DNS name", expected: Self.syntax)
            }
            self = .dnsName(text)
        }
    }

    public var description: String {
        switch self {
        case .addresses(let list): list.map(\.description).joined(separator: ",")
        case .dnsName(let name): name
        }
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
