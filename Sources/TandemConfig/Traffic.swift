/// How Tandem treats one HTTP request.
public enum RequestClass: String, Hashable, Sendable {
    /// Served by the local app at the requested consistency level.
    case read
    /// Replicated through the log and applied on every replica.
    case write
    /// Proxied to the local app and never replicated (websockets, health pages of the app, ...).
    case bypass
}

/// One entry of `TANDEM_READ_ROUTES`, `TANDEM_WRITE_ROUTES` or `TANDEM_BYPASS_ROUTES`: `METHOD /path/glob*`.
public struct RouteRule: Hashable, Sendable, CustomStringConvertible {
    /// An upper-case method such as `POST`, or `*` for every method.
    public let method: String
    /// A path starting with `/` in which `*` matches any run of characters, `/` included.
    public let pathPattern: String

    /// The syntax accepted, as shown in errors and `--help`.
    public static let syntax = "a comma list of METHOD /path/glob* such as \"GET /ws/*,* /internal/*\""
    /// The longest path pattern; it bounds the matching loop.
    public static let patternLengthMax = 1024
    /// The most rules in one list; they are tried in order for every request.
    public static let countMax = 64

    /// Creates a rule from parts that are already valid.
    public init(method: String, pathPattern: String) {
        precondition(method == "*" || HTTPMethod.isValid(method), "route methods are validated before use")
        precondition(pathPattern.hasPrefix("/"), "route paths start with /")
        self.method = method
        self.pathPattern = pathPattern
    }

    /// Parses `METHOD /path/glob*`.
    public init(parsing text: Substring) throws(ConfigValueError) {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard words.count == 2 else {
            throw ConfigValueError(
                problem: "has a rule \"\(text)\" that is not METHOD /path", expected: RouteRule.syntax)
        }
        let method = String(words[0])
        let path = String(words[1])
        guard method == "*" || HTTPMethod.isValid(method) else {
            throw ConfigValueError(
                problem: "has an invalid method \"\(method)\"", expected: HTTPMethod.syntax + " or *")
        }
        guard path.hasPrefix("/"), path.utf8.count <= RouteRule.patternLengthMax,
            path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x3F && $0 != 0x23 })
        else {
            throw ConfigValueError(
                problem: "has an invalid path pattern \"\(path)\"",
                expected: "a path starting with / of visible ASCII, without ? or #, at most 1024 characters")
        }
        self.init(method: method, pathPattern: path)
    }

    /// Parses a comma list of rules; spaces around entries are ignored.
    public static func parseList(_ text: String) throws(ConfigValueError) -> [RouteRule] {
        let entries = text.split(separator: ",", omittingEmptySubsequences: false)
        guard entries.count <= countMax else {
            throw ConfigValueError(problem: "lists \(entries.count) rules", expected: "at most \(countMax) rules")
        }
        var rules: [RouteRule] = []
        for entry in entries {
            rules.append(try RouteRule(parsing: entry.trimmingASCIISpaces()))
        }
        return rules
    }

    /// `METHOD /path`, the syntax it was parsed from.
    public var description: String { "\(method) \(pathPattern)" }

    /// True when the rule covers a request with this method and path (the path without its query string).
    public func matches(method requestMethod: String, path: String) -> Bool {
        (method == "*" || method == requestMethod) && RouteRule.glob(Array(pathPattern.utf8), matches: Array(path.utf8))
    }

    /// Wildcard matching where `*` matches any run of bytes. Greedy with one backtrack point, so it runs in
    /// O(pattern x subject) at worst and needs no recursion.
    static func glob(_ pattern: [UInt8], matches subject: [UInt8]) -> Bool {
        let star = UInt8(ascii: "*")
        var p = 0
        var s = 0
        var starAt = -1
        var subjectAtStar = 0
        while s < subject.count {
            if p < pattern.count && pattern[p] == star {
                starAt = p
                subjectAtStar = s
                p += 1
            } else if p < pattern.count && pattern[p] == subject[s] {
                p += 1
                s += 1
            } else if starAt >= 0 {
                subjectAtStar += 1
                s = subjectAtStar
                p = starAt + 1
            } else {
                return false
            }
        }
        while p < pattern.count && pattern[p] == star { p += 1 }
        return p == pattern.count
    }
}

/// Rules for HTTP method tokens in configuration.
public enum HTTPMethod {
    /// The syntax accepted, as shown in errors.
    public static let syntax = "upper-case HTTP methods such as POST,PUT,PATCH,DELETE"

    /// Methods are case-sensitive (RFC 9110 section 9.1), so `post` would never match a `POST` request and writes
    /// would silently be served as reads. Only upper-case letters, digits, `-` and `_` are accepted.
    public static func isValid(_ method: String) -> Bool {
        (1...32).contains(method.utf8.count)
            && method.utf8.allSatisfy {
                ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x5F
            }
    }

    /// Parses a comma list of methods such as `POST,PUT,PATCH,DELETE`.
    public static func parseSet(_ text: String) throws(ConfigValueError) -> Set<String> {
        var methods: Set<String> = []
        for entry in text.split(separator: ",", omittingEmptySubsequences: false) {
            let method = String(entry.trimmingASCIISpaces())
            guard isValid(method) else {
                throw ConfigValueError(problem: "has an invalid method \"\(method)\"", expected: syntax)
            }
            methods.insert(method)
        }
        return methods
    }
}

/// Decides read, write or bypass for a request from the route lists and the write methods, so that every part
/// of Tandem classifies requests the same way.
public struct RequestClassifier: Sendable {
    /// Methods that are writes unless a route says otherwise.
    public let writeMethods: Set<String>
    /// Rules tried in order: bypass first, then write, then read. Write wins over read on overlap because
    /// serving a write as a read would skip replication, while the opposite only costs latency.
    public let bypassRoutes: [RouteRule]
    /// See `bypassRoutes` for the order.
    public let writeRoutes: [RouteRule]
    /// See `bypassRoutes` for the order.
    public let readRoutes: [RouteRule]

    /// Creates a classifier from the configured lists.
    public init(writeMethods: Set<String>, readRoutes: [RouteRule], writeRoutes: [RouteRule], bypassRoutes: [RouteRule])
    {
        self.writeMethods = writeMethods
        self.readRoutes = readRoutes
        self.writeRoutes = writeRoutes
        self.bypassRoutes = bypassRoutes
    }

    /// The class of a request; `path` is the request target's path without the query string.
    public func classify(method: String, path: String) -> RequestClass {
        if bypassRoutes.contains(where: { $0.matches(method: method, path: path) }) { return .bypass }
        if writeRoutes.contains(where: { $0.matches(method: method, path: path) }) { return .write }
        if readRoutes.contains(where: { $0.matches(method: method, path: path) }) { return .read }
        return writeMethods.contains(method) ? .write : .read
    }
}

/// A GCRA rate: `count` requests per `periodMs`, with up to `burst` requests at once after an idle spell.
public struct RateLimit: Hashable, Sendable, CustomStringConvertible {
    /// Requests allowed per period.
    public let count: Int
    /// The period in milliseconds: 1000 for `/s`, 60000 for `/m`, 3600000 for `/h`.
    public let periodMs: Int64
    /// Requests allowed back to back; defaults to `count` (one period's worth).
    public let burst: Int

    /// The syntax accepted, as shown in errors and `--help`.
    public static let syntax = "off, or N/s, N/m or N/h with an optional ;burst=N, such as 200/s or 200/s;burst=400"
    /// The largest count or burst accepted; it keeps the GCRA arithmetic in nanoseconds far from overflow.
    public static let countMax = 1_000_000_000

    /// Creates a rate; all parts must be positive.
    public init(count: Int, periodMs: Int64, burst: Int) {
        precondition(count > 0 && periodMs > 0 && burst > 0, "rate limit parts are positive")
        self.count = count
        self.periodMs = periodMs
        self.burst = burst
    }

    /// Parses `200/s` or `200/s;burst=400`. `off` is handled by the caller, which gets nil instead of a rate.
    public init(parsing text: String) throws(ConfigValueError) {
        let parts = text.split(separator: ";", omittingEmptySubsequences: false).map { $0.trimmingASCIISpaces() }
        guard (1...2).contains(parts.count), let slash = parts[0].firstIndex(of: "/") else {
            throw ConfigValueError(problem: "is not a rate", expected: RateLimit.syntax)
        }
        let count = try RateLimit.parseCount(parts[0][..<slash])
        let periodMs: Int64
        switch parts[0][parts[0].index(after: slash)...] {
        case "s": periodMs = 1000
        case "m": periodMs = 60_000
        case "h": periodMs = 3_600_000
        default: throw ConfigValueError(problem: "has an unknown period", expected: RateLimit.syntax)
        }
        var burst = count
        if parts.count == 2 {
            guard parts[1].hasPrefix("burst=") else {
                throw ConfigValueError(problem: "has an unknown option \"\(parts[1])\"", expected: RateLimit.syntax)
            }
            burst = try RateLimit.parseCount(parts[1].dropFirst("burst=".count))
        }
        self.init(count: count, periodMs: periodMs, burst: burst)
    }

    static func parseCount(_ text: Substring) throws(ConfigValueError) -> Int {
        guard (1...10).contains(text.utf8.count), text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let value = Int(text), value >= 1, value <= countMax
        else {
            throw ConfigValueError(
                problem: "has an invalid count \"\(text)\"",
                expected: "a count from 1 to \(countMax): " + RateLimit.syntax)
        }
        return value
    }

    /// `count/unit;burst=N`, parseable back to the same value.
    public var description: String {
        let unit = periodMs == 1000 ? "s" : periodMs == 60_000 ? "m" : "h"
        return "\(count)/\(unit);burst=\(burst)"
    }
}

/// What a per-client rate limit counts by.
public enum RateLimitKey: Hashable, Sendable, CustomStringConvertible {
    /// The client's IP address (the peer address of the TCP connection).
    case ip
    /// The value of a request header, compared as bytes; the name is matched without regard to case.
    case header(String)

    /// The syntax accepted, as shown in errors and `--help`.
    public static let syntax = "ip or header:NAME such as header:X-Api-Key"

    /// Parses `ip` or `header:NAME`.
    public init(parsing text: String) throws(ConfigValueError) {
        if text.lowercased() == "ip" {
            self = .ip
            return
        }
        guard text.lowercased().hasPrefix("header:") else {
            throw ConfigValueError(problem: "is not a rate limit key", expected: RateLimitKey.syntax)
        }
        let name = String(text.dropFirst("header:".count))
        let tokenPunctuation = Set("!#$%&'*+-.^_`|~".utf8)
        guard (1...128).contains(name.utf8.count),
            name.utf8.allSatisfy({ NodeID.isAlphanumeric($0) || tokenPunctuation.contains($0) })
        else {
            throw ConfigValueError(problem: "has an invalid header name \"\(name)\"", expected: RateLimitKey.syntax)
        }
        self = .header(name)
    }

    /// `ip` or `header:NAME`.
    public var description: String {
        switch self {
        case .ip: return "ip"
        case .header(let name): return "header:\(name)"
        }
    }
}
