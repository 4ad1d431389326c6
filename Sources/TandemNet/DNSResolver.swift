// A small blocking DNS client for start-up: it resolves what TANDEM_JOIN names (a Kubernetes headless Service gives
// SRV records for a named port and A records listing the pods). It is not a general resolver: one UDP query per
// nameserver, no cache, no search domains. The response parser is total: every read is bounds-checked and every
// compression pointer must point strictly before the segment that holds it, so no input can trap or loop.

import Glibc

/// One place to connect to: an IP literal (from A/AAAA, without brackets) or a host name (an SRV target, without
/// the trailing dot) with a port.
public struct ResolvedTarget: Hashable, Sendable {
    public let host: String
    public let port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }
}

/// Why a name could not be resolved. `nameError` is an authoritative "no such name"; the others are operating or
/// protocol errors of the nameserver(s) asked.
public enum DNSError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The name cannot be put in a query: an empty label, a label over 63 bytes or a name over 255 bytes.
    case invalidName(String)
    /// No nameserver is configured (resolv.conf missing or without usable `nameserver` lines).
    case noNameserver
    /// A nameserver did not answer within the per-query timeout.
    case timeout
    /// The local socket failed (or the nameserver was unreachable: ICMP port unreachable gives ECONNREFUSED).
    case socketError(nameserver: String, errno: Int32)
    /// The answer had the TC bit: it did not fit in one UDP datagram. TCP fallback is not implemented.
    case truncated
    /// The answer to our query (its id matched) broke the protocol; the string says how.
    case malformedResponse(String)
    /// NXDOMAIN: the name does not exist.
    case nameError(String)
    /// The nameserver answered with an error RCODE other than NXDOMAIN (2 SERVFAIL, 5 REFUSED, ...).
    case serverFailure(rcode: UInt8)
    /// The name exists but has none of the records asked for.
    case noRecords(String)

    public var description: String {
        switch self {
        case .invalidName(let reason): return "invalid DNS name: \(reason)"
        case .noNameserver: return "no nameserver configured (no usable nameserver line in resolv.conf)"
        case .timeout: return "the nameserver did not answer in time"
        case .socketError(let nameserver, let code):
            return "DNS query to \(nameserver) failed: \(String(cString: strerror(code)))"
        case .truncated: return "the DNS answer was truncated (TC bit) and TCP fallback is not supported"
        case .malformedResponse(let reason): return "malformed DNS response: \(reason)"
        case .nameError(let name): return "\(name) does not exist (NXDOMAIN)"
        case .serverFailure(let rcode):
            let names: [UInt8: String] = [1: "FORMERR", 2: "SERVFAIL", 4: "NOTIMP", 5: "REFUSED"]
            return "the nameserver answered with RCODE \(rcode)\(names[rcode].map { " (\($0))" } ?? "")"
        case .noRecords(let name): return "\(name) has no SRV, A or AAAA records"
        }
    }
}

/// Resolves names with blocking UDP queries, one nameserver after the other. Meant for start-up and for the rare
/// re-resolution of the join name, never for the event loop thread.
public struct DNSResolver: Sendable {
    /// IPv4 or IPv6 literals, asked in order until one gives an answer.
    public var nameservers: [String]
    /// The UDP port of every nameserver (53; tests point it at a fake server).
    public var nameserverPort: UInt16 = 53
    /// How long one query waits for one nameserver.
    public var timeoutMs: Int = 2000

    public init(nameservers: [String], nameserverPort: UInt16 = 53, timeoutMs: Int = 2000) {
        self.nameservers = nameservers
        self.nameserverPort = nameserverPort
        self.timeoutMs = timeoutMs
    }

    /// The nameservers of resolv.conf (its first three usable `nameserver` lines, as the C library takes). A missing
    /// or unreadable file gives no nameservers, so that queries fail with `noNameserver` rather than here.
    public static func fromResolvConf(path: String = "/etc/resolv.conf") -> DNSResolver {
        DNSResolver(nameservers: parseResolvConf(readSmallFile(path) ?? ""))
    }

    /// SRV records of `name` (target host without the trailing dot, port), sorted by priority then weight desc; []
    /// when the name has no SRV records (NOERROR/NODATA or NXDOMAIN). A target of "." (service decidedly not
    /// available, RFC 2782) is left out.
    public func srv(_ name: String) throws(DNSError) -> [ResolvedTarget] {
        guard case .answer(let records) = try query(name, type: DNSWire.typeSRV) else { return [] }
        var services: [(priority: UInt16, weight: UInt16, target: ResolvedTarget)] = []
        for record in records {
            if case .service(let priority, let weight, let port, let target) = record, !target.isEmpty {
                services.append((priority, weight, ResolvedTarget(host: target, port: port)))
            }
        }
        // Deterministic order among equals (host, then port), so repeated resolutions compare equal.
        services.sort {
            if $0.priority != $1.priority { return $0.priority < $1.priority }
            if $0.weight != $1.weight { return $0.weight > $1.weight }
            if $0.target.host != $1.target.host { return $0.target.host < $1.target.host }
            return $0.target.port < $1.target.port
        }
        return services.map(\.target)
    }

    /// A (and AAAA) records of `name` as IP literals, each with `port`: the A records first. [] when the name exists
    /// but has neither; NXDOMAIN throws `nameError`. When the A query gave addresses, a failing AAAA query (some
    /// nameservers mishandle it) is ignored rather than losing the IPv4 answer.
    public func addresses(_ name: String, port: UInt16) throws(DNSError) -> [ResolvedTarget] {
        guard case .answer(let v4) = try query(name, type: DNSWire.typeA) else { throw .nameError(name) }
        var result = Self.addressTargets(v4, port: port)
        do {
            if case .answer(let v6) = try query(name, type: DNSWire.typeAAAA) {
                result += Self.addressTargets(v6, port: port)
            }
        } catch {
            if result.isEmpty { throw error }
        }
        return result
    }

    /// What TANDEM_JOIN's name means: SRV records when there are any, else the A/AAAA records with `defaultPort`. A
    /// name that is an IP literal (bracketed IPv6 too; returned without brackets) or `localhost` is returned as is
    /// without a query. Never returns []: a name without records throws `noRecords`, a missing one `nameError`.
    public func resolveJoinName(_ name: String, defaultPort: UInt16) throws(DNSError) -> [ResolvedTarget] {
        let bare = name.hasPrefix("[") && name.hasSuffix("]") ? String(name.dropFirst().dropLast()) : name
        if DNSWire.isIPLiteral(bare) || ["localhost", "localhost."].contains(bare.lowercased()) {
            return [ResolvedTarget(host: bare, port: defaultPort)]
        }
        let services = try srv(name)
        if !services.isEmpty { return services }
        let found = try addresses(name, port: defaultPort)
        if found.isEmpty { throw .noRecords(name) }
        return found
    }

    private static func addressTargets(_ records: [DNSRecord], port: UInt16) -> [ResolvedTarget] {
        records.compactMap {
            if case .address(let literal) = $0 { return ResolvedTarget(host: literal, port: port) }
            return nil
        }
    }

    /// Asks the nameservers in order. An NXDOMAIN or NOERROR answer ends the search; a timeout, socket error, error
    /// RCODE, truncated or malformed answer moves on to the next nameserver. The last failure is thrown.
    func query(_ name: String, type: UInt16) throws(DNSError) -> DNSReply {
        let labels = try DNSWire.labels(of: name)
        guard !nameservers.isEmpty else { throw .noNameserver }
        var lastError = DNSError.noNameserver
        for nameserver in nameservers {
            do {
                return try exchange(labels: labels, type: type, nameserver: nameserver, edns: true)
            } catch .serverFailure(rcode: DNSWire.rcodeFormatError) {
                // A nameserver that does not understand EDNS(0) answers FORMERR: ask it again without the OPT record.
                do {
                    return try exchange(labels: labels, type: type, nameserver: nameserver, edns: false)
                } catch {
                    lastError = error
                }
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// One query to one nameserver over a connected UDP socket (so the kernel drops datagrams from other sources),
    /// waiting at most `timeoutMs` for an answer with our id; answers with another id are ignored.
    private func exchange(labels: [[UInt8]], type: UInt16, nameserver: String, edns: Bool) throws(DNSError)
        -> DNSReply
    {
        guard var address = DNSWire.socketAddress(nameserver, port: nameserverPort) else {
            throw .socketError(nameserver: nameserver, errno: EAFNOSUPPORT)
        }
        let fd = socket(Int32(address.ss_family), Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .socketError(nameserver: nameserver, errno: errno) }
        defer { close(fd) }
        let length = socklen_t(
            Int32(address.ss_family) == AF_INET6
                ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        guard connected == 0 else { throw .socketError(nameserver: nameserver, errno: errno) }

        let query = DNSQuery(id: UInt16.random(in: 0...UInt16.max), labels: labels, type: type, edns: edns)
        let packet = query.encoded()
        let sent = packet.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == packet.count else { throw .socketError(nameserver: nameserver, errno: sent < 0 ? errno : EIO) }

        let deadline = DNSWire.monotonicMs() + Int64(max(0, timeoutMs))
        var buffer = [UInt8](repeating: 0, count: DNSWire.maxResponseBytes)
        while true {
            let remaining = deadline - DNSWire.monotonicMs()
            guard remaining > 0 else { throw .timeout }
            var pollFD = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pollFD, 1, Int32(min(remaining, Int64(Int32.max))))
            if ready < 0 && errno == EINTR { continue }
            guard ready >= 0 else { throw .socketError(nameserver: nameserver, errno: errno) }
            if ready == 0 { continue }
            // MSG_TRUNC makes recv return the datagram's real length, so an oversized one is seen as such.
            let received = buffer.withUnsafeMutableBytes {
                recv(fd, $0.baseAddress, $0.count, Int32(MSG_TRUNC) | Int32(MSG_DONTWAIT))
            }
            if received < 0 {
                if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { continue }
                throw .socketError(nameserver: nameserver, errno: errno)
            }
            let datagram = Array(buffer[0..<min(received, buffer.count)])
            if received > buffer.count {
                // Only an answer to our query may fail it; anything else is noise to ignore.
                if datagram.count >= 2 && UInt16(datagram[0]) << 8 | UInt16(datagram[1]) == query.id {
                    throw .malformedResponse("answer of \(received) bytes exceeds \(buffer.count)")
                }
                continue
            }
            let reply = try DNSWire.parseReply(datagram, to: query)
            if reply != .unrelated { return reply }
        }
    }

    static func parseResolvConf(_ text: String) -> [String] {
        var found: [String] = []
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 2, words[0] == "nameserver" else { continue }
            let address = String(words[1])
            // Scoped IPv6 addresses (fe80::1%eth0) are not usable by this client and are skipped.
            if DNSWire.isIPLiteral(address) { found.append(address) }
            if found.count == 3 { break }
        }
        return found
    }

    /// Reads a small text file whole (resolv.conf), at most 64 KiB; nil when it cannot be opened.
    private static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 16 {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A record of an answer section that the resolver uses. CNAMEs are followed inside the parser and not returned.
enum DNSRecord: Equatable, Sendable {
    /// An A or AAAA record, as an IP literal.
    case address(String)
    /// An SRV record; `target` has no trailing dot and is "" for the root (".": no service).
    case service(priority: UInt16, weight: UInt16, port: UInt16, target: String)
}

/// What one received datagram means for the query it was checked against.
enum DNSReply: Equatable, Sendable {
    /// Not an answer to this query (another id, or not a response): keep waiting.
    case unrelated
    /// NOERROR: the records of the asked type owned by the name (or by its CNAME chain); [] is NODATA.
    case answer([DNSRecord])
    /// NXDOMAIN.
    case nameError
}

/// One outgoing question, class IN, recursion desired.
struct DNSQuery: Sendable {
    var id: UInt16
    var labels: [[UInt8]]
    var type: UInt16
    /// Adds an EDNS(0) OPT record advertising a `maxResponseBytes` UDP payload, so that a StatefulSet's SRV answer
    /// with its additional A records rarely needs truncation.
    var edns: Bool

    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(12 + 256 + 4 + 11)
        DNSWire.append16(id, to: &out)
        DNSWire.append16(0x0100, to: &out)  // standard query, RD
        DNSWire.append16(1, to: &out)  // QDCOUNT
        DNSWire.append16(0, to: &out)  // ANCOUNT
        DNSWire.append16(0, to: &out)  // NSCOUNT
        DNSWire.append16(edns ? 1 : 0, to: &out)  // ARCOUNT
        for label in labels {
            out.append(UInt8(label.count))
            out += label
        }
        out.append(0)
        DNSWire.append16(type, to: &out)
        DNSWire.append16(DNSWire.classIN, to: &out)
        if edns {
            out.append(0)  // root owner
            DNSWire.append16(DNSWire.typeOPT, to: &out)
            DNSWire.append16(UInt16(DNSWire.maxResponseBytes), to: &out)  // the class field carries the UDP size
            out += [0, 0, 0, 0, 0, 0]  // extended RCODE, version 0, flags; RDLENGTH 0
        }
        return out
    }
}

/// Wire-format constants and the total parser.
enum DNSWire {
    static let typeA: UInt16 = 1
    static let typeCNAME: UInt16 = 5
    static let typeAAAA: UInt16 = 28
    static let typeSRV: UInt16 = 33
    static let typeOPT: UInt16 = 41
    static let classIN: UInt16 = 1
    static let rcodeFormatError: UInt8 = 1
    static let rcodeNameError: UInt8 = 3
    static let maxResponseBytes = 4096
    static let maxNameBytes = 255
    static let maxLabelBytes = 63

    /// The labels of a name for a query: one trailing dot (an absolute name) is allowed; empty labels, labels over
    /// 63 bytes and names over 255 bytes in wire form are refused.
    static func labels(of name: String) throws(DNSError) -> [[UInt8]] {
        var text = Array(name.utf8)
        if text.last == UInt8(ascii: ".") { text.removeLast() }
        guard !text.isEmpty else { throw .invalidName("the name is empty") }
        let labels = text.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map { Array($0) }
        var wireLength = 1
        for label in labels {
            guard !label.isEmpty else { throw .invalidName("\(name) has an empty label") }
            guard label.count <= maxLabelBytes else {
                throw .invalidName("\(name) has a label of \(label.count) bytes (at most \(maxLabelBytes))")
            }
            wireLength += 1 + label.count
        }
        guard wireLength <= maxNameBytes else {
            throw .invalidName("\(name) is \(wireLength) bytes in wire form (at most \(maxNameBytes))")
        }
        return labels
    }

    /// Checks a datagram against `query` and extracts its records. Total: any byte string either gives a reply or
    /// throws; nothing is read outside `packet`.
    static func parseReply(_ packet: [UInt8], to query: DNSQuery) throws(DNSError) -> DNSReply {
        var reader = DNSReader(bytes: packet)
        let id = try reader.u16()
        let flags = try reader.u16()
        guard id == query.id, flags & 0x8000 != 0 else { return .unrelated }
        guard (flags >> 11) & 0xF == 0 else { throw .malformedResponse("opcode \((flags >> 11) & 0xF) in the answer") }
        let rcode = UInt8(flags & 0xF)
        let questions = try reader.u16()
        let answers = try reader.u16()
        _ = try reader.u16()  // NSCOUNT: the authority section is not read
        _ = try reader.u16()  // ARCOUNT: nor the additional section
        if flags & 0x0200 != 0 { throw .truncated }
        // Error answers may omit the question; a NOERROR or NXDOMAIN one must echo ours.
        if rcode != 0 && rcode != rcodeNameError { throw .serverFailure(rcode: rcode) }
        guard questions == 1 else { throw .malformedResponse("\(questions) questions in the answer (expected 1)") }
        let echoed = try reader.name()
        let echoedType = try reader.u16()
        let echoedClass = try reader.u16()
        guard lowercased(echoed) == lowercased(query.labels), echoedType == query.type, echoedClass == classIN else {
            throw .malformedResponse("the answer's question is not the one asked")
        }
        if rcode == rcodeNameError { return .nameError }

        var owned: [(owner: [[UInt8]], record: DNSRecord)] = []
        var aliases: [(owner: [[UInt8]], target: [[UInt8]])] = []
        for _ in 0..<answers {
            let owner = lowercased(try reader.name())
            let type = try reader.u16()
            let recordClass = try reader.u16()
            _ = try reader.u32()  // TTL: nothing is cached
            let length = Int(try reader.u16())
            let start = reader.offset
            let end = start + length
            guard end <= packet.count else { throw .malformedResponse("a record's data runs past the end") }
            if recordClass == classIN {
                switch type {
                case typeCNAME:
                    let target = try reader.name()
                    guard reader.offset == end else { throw .malformedResponse("CNAME data length mismatch") }
                    aliases.append((owner, lowercased(target)))
                case typeA where query.type == typeA:
                    guard length == 4 else { throw .malformedResponse("A record of \(length) bytes") }
                    owned.append((owner, .address(ipText(Array(packet[start..<end]), family: AF_INET))))
                case typeAAAA where query.type == typeAAAA:
                    guard length == 16 else { throw .malformedResponse("AAAA record of \(length) bytes") }
                    owned.append((owner, .address(ipText(Array(packet[start..<end]), family: AF_INET6))))
                case typeSRV where query.type == typeSRV:
                    let priority = try reader.u16()
                    let weight = try reader.u16()
                    let port = try reader.u16()
                    let target = try reader.name()
                    guard reader.offset == end else { throw .malformedResponse("SRV data length mismatch") }
                    let host = try hostText(target)
                    owned.append((owner, .service(priority: priority, weight: weight, port: port, target: host)))
                default: break
                }
            }
            reader.offset = end
        }
        // The names that stand for the asked one: itself and its CNAME chain (each round adds a name or stops).
        var names: Set<[[UInt8]]> = [lowercased(query.labels)]
        for _ in 0..<aliases.count {
            let before = names.count
            for alias in aliases where names.contains(alias.owner) { names.insert(alias.target) }
            if names.count == before { break }
        }
        return .answer(owned.filter { names.contains($0.owner) }.map(\.record))
    }

    /// A name as the text of a host to connect to: labels joined by dots, no trailing dot, "" for the root. A
    /// label byte that is not printable ASCII, or is a dot, would make the text ambiguous and is refused.
    static func hostText(_ labels: [[UInt8]]) throws(DNSError) -> String {
        for label in labels {
            for byte in label where byte <= 0x20 || byte >= 0x7F || byte == UInt8(ascii: ".") {
                throw .malformedResponse("a host name label holds byte 0x\(String(byte, radix: 16))")
            }
        }
        return labels.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ".")
    }

    static func lowercased(_ labels: [[UInt8]]) -> [[UInt8]] {
        labels.map { label in label.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 } }
    }

    static func ipText(_ raw: [UInt8], family: Int32) -> String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let ok = raw.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        guard ok != nil else { return "" }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func isIPLiteral(_ text: String) -> Bool {
        var storage = in6_addr()
        return inet_pton(AF_INET, text, &storage) == 1 || inet_pton(AF_INET6, text, &storage) == 1
    }

    static func socketAddress(_ literal: String, port: UInt16) -> sockaddr_storage? {
        var storage = sockaddr_storage()
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, literal, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &storage) { out in withUnsafeBytes(of: v4) { out.copyMemory(from: $0) } }
            return storage
        }
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET6, literal, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &storage) { out in withUnsafeBytes(of: v6) { out.copyMemory(from: $0) } }
            return storage
        }
        return nil
    }

    static func monotonicMs() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    static func append16(_ value: UInt16, to out: inout [UInt8]) {
        out.append(UInt8(value >> 8))
        out.append(UInt8(value & 0xFF))
    }
}

/// A cursor over a received datagram. Every read checks the bounds and throws `malformedResponse` past the end.
struct DNSReader {
    let bytes: [UInt8]
    var offset = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func u16() throws(DNSError) -> UInt16 {
        guard offset + 2 <= bytes.count else { throw .malformedResponse("the message ends inside a field") }
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    mutating func u32() throws(DNSError) -> UInt32 {
        let high = try u16()
        let low = try u16()
        return UInt32(high) << 16 | UInt32(low)
    }

    /// Reads a name at `offset`, following compression pointers, and moves `offset` past its in-place part.
    /// Termination: a pointer must point strictly before the start of the segment it ends (the name's start, or
    /// the previous pointer's target), so the segment starts strictly decrease. The name is at most 255 bytes in
    /// wire form, labels at most 63 (the 0x40 and 0x80 length prefixes, extended label types, are refused).
    mutating func name() throws(DNSError) -> [[UInt8]] {
        var labels: [[UInt8]] = []
        var wireLength = 1
        var position = offset
        var segmentStart = offset
        var resumeAt: Int?
        while true {
            guard position < bytes.count else { throw .malformedResponse("a name runs past the end") }
            let length = Int(bytes[position])
            switch length >> 6 {
            case 0:
                if length == 0 {
                    offset = resumeAt ?? position + 1
                    return labels
                }
                guard position + 1 + length <= bytes.count else {
                    throw .malformedResponse("a label runs past the end")
                }
                wireLength += 1 + length
                guard wireLength <= DNSWire.maxNameBytes else {
                    throw .malformedResponse("a name is longer than \(DNSWire.maxNameBytes) bytes")
                }
                labels.append(Array(bytes[(position + 1)..<(position + 1 + length)]))
                position += 1 + length
            case 3:
                guard position + 1 < bytes.count else { throw .malformedResponse("a pointer runs past the end") }
                let target = (length & 0x3F) << 8 | Int(bytes[position + 1])
                guard target < segmentStart else {
                    throw .malformedResponse("a compression pointer does not point backwards (\(target))")
                }
                if resumeAt == nil { resumeAt = position + 2 }
                position = target
                segmentStart = target
            default:
                throw .malformedResponse("label length byte 0x\(String(length, radix: 16)) (over 63 or extended)")
            }
        }
    }
}
