// RouteMatcher: the `METHOD /path/glob*` rules of TANDEM_READ_ROUTES, TANDEM_WRITE_ROUTES and
// TANDEM_BYPASS_ROUTES, and the path normalization that keeps a rule from being sidestepped by spelling.
// The names carry an HTTP prefix because TandemConfig has its own `RouteRule` for validating configuration;
// whichever matcher classifies requests, it should be given `normalizedRoutePath(requestPath(ofTarget:))`.

/// A rule could not be parsed; the message says what is accepted (configuration validation quotes it).
public struct HTTPRouteRuleError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The rule text as given.
    public let rule: String
    /// What is wrong and what is accepted.
    public let reason: String

    public var description: String { "invalid route rule \(rule.debugDescription): \(reason)" }
}

/// One rule, `METHOD PATTERN`.
///
/// - `METHOD` is a method token, compared case-sensitively after the rule's own method is upper-cased (so
///   `get /x` in a configuration means `GET`), or `*` for any method.
/// - `PATTERN` starts with `/` (or is `*` alone). `*` matches any run of characters, including `/` and the
///   empty run, anywhere in the pattern: `/kv/*` matches `/kv/a/b`, `/kv/*/append` matches `/kv/a/append`.
///   Every other character matches itself, case-sensitively.
/// - The request path is matched without its query, after decoding percent-encoded unreserved characters and
///   removing dot segments (RFC 3986 sections 2.3 and 5.2.4), so `/kv/%2E%2E/admin` is matched as `/admin`.
///   Encoded slashes (`%2F`) stay encoded: they are not path separators.
public struct HTTPRouteRule: Sendable, Hashable, CustomStringConvertible {
    /// The method, or nil for any.
    public let method: String?
    /// The path pattern.
    public let pathPattern: String

    /// Parses `METHOD PATTERN` (one or more spaces or tabs between them, none inside).
    public init(parsing text: String) throws(HTTPRouteRuleError) {
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard parts.count == 2 else {
            throw HTTPRouteRuleError(rule: text, reason: "expected \"METHOD /path\", e.g. \"GET /kv/*\" or \"* /ws*\"")
        }
        let methodText = String(parts[0]).uppercased()
        if methodText == "*" {
            method = nil
        } else {
            guard isValidFieldName(methodText) else {
                throw HTTPRouteRuleError(rule: text, reason: "the method must be a token such as GET, or *")
            }
            method = methodText
        }
        let pattern = String(parts[1])
        guard pattern == "*" || pattern.hasPrefix("/") else {
            throw HTTPRouteRuleError(rule: text, reason: "the path pattern must start with / (or be *)")
        }
        guard pattern.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw HTTPRouteRuleError(rule: text, reason: "the path pattern must be visible ASCII")
        }
        pathPattern = pattern
    }

    /// True when the rule matches this method and request target (any form; the query is ignored).
    public func matches(method requestMethod: String, target: String) -> Bool {
        if let method, method != requestMethod { return false }
        return globMatches(pattern: pathPattern.utf8, text: normalizedRoutePath(requestPath(ofTarget: target)).utf8)
    }

    public var description: String { "\(method ?? "*") \(pathPattern)" }
}

/// An ordered list of rules; the first that matches wins.
public struct HTTPRouteTable: Sendable, Hashable {
    /// Bound on the rules of one table, so that matching cost per request is bounded.
    public static let rulesMax = 256
    /// The rules, in configuration order.
    public let rules: [HTTPRouteRule]

    /// A table of these rules.
    public init(rules: [HTTPRouteRule]) {
        precondition(rules.count <= Self.rulesMax, "at most \(Self.rulesMax) route rules")
        self.rules = rules
    }

    /// Parses a comma-separated list (`GET /a*, POST /b`); an empty or blank list is an empty table.
    public init(parsingList list: String) throws(HTTPRouteRuleError) {
        var rules: [HTTPRouteRule] = []
        for element in list.split(separator: ",") {
            let text = String(trimmingOptionalWhitespace(element))
            if text.isEmpty { continue }
            rules.append(try HTTPRouteRule(parsing: text))
            guard rules.count <= Self.rulesMax else {
                throw HTTPRouteRuleError(rule: text, reason: "at most \(Self.rulesMax) rules are accepted")
            }
        }
        self.rules = rules
    }

    /// The first rule that matches, or nil.
    public func firstMatch(method: String, target: String) -> HTTPRouteRule? {
        guard !rules.isEmpty else { return nil }
        let path = normalizedRoutePath(requestPath(ofTarget: target))
        return rules.first { rule in
            if let ruleMethod = rule.method, ruleMethod != method { return false }
            return globMatches(pattern: rule.pathPattern.utf8, text: path.utf8)
        }
    }

    /// True when some rule matches.
    public func matches(method: String, target: String) -> Bool {
        firstMatch(method: method, target: target) != nil
    }
}

/// Matches `text` against a pattern where `*` stands for any run of bytes. Linear backtracking to the last
/// star only, so the cost is at most pattern length times text length, both bounded by the request line limit.
func globMatches(pattern: String.UTF8View, text: String.UTF8View) -> Bool {
    let pattern = Array(pattern)
    let text = Array(text)
    let star = UInt8(ascii: "*")
    var patternIndex = 0
    var textIndex = 0
    var lastStar: Int?
    var textAtLastStar = 0
    while textIndex < text.count {
        if patternIndex < pattern.count, pattern[patternIndex] == star {
            lastStar = patternIndex
            textAtLastStar = textIndex
            patternIndex += 1
        } else if patternIndex < pattern.count, pattern[patternIndex] == text[textIndex] {
            patternIndex += 1
            textIndex += 1
        } else if let lastStar {
            patternIndex = lastStar + 1
            textAtLastStar += 1
            textIndex = textAtLastStar
        } else {
            return false
        }
    }
    while patternIndex < pattern.count, pattern[patternIndex] == star { patternIndex += 1 }
    return patternIndex == pattern.count
}

/// Decodes percent-encoded unreserved characters and removes dot segments from a path, the way most servers
/// interpret it, so that the path a rule sees is the path the app serves. A path not starting with `/`
/// (asterisk or authority form) is returned unchanged.
public func normalizedRoutePath(_ path: Substring) -> String {
    // Most paths have no `%` and no `.`: nothing to decode or remove, so one byte scan and no intermediate array.
    let utf8 = path.utf8
    guard utf8.first == UInt8(ascii: "/") else { return String(path) }
    let plain =
        utf8.withContiguousStorageIfAvailable { bytes in
            !bytes.contains { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: ".") }
        } ?? false
    if plain { return String(path) }
    let decoded = decodingUnreservedPercentEncodings(path)
    guard decoded.contains(".") else { return decoded }
    let segments = decoded.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
    var output: [Substring] = []
    for (offset, segment) in segments.enumerated() {
        let isLast = offset == segments.count - 1
        if segment == "." || segment == ".." {
            if segment == "..", !output.isEmpty { output.removeLast() }
            if isLast { output.append("") }
            continue
        }
        output.append(segment)
    }
    return "/" + output.joined(separator: "/")
}

private func decodingUnreservedPercentEncodings(_ path: Substring) -> String {
    let bytes = Array(path.utf8)
    guard bytes.contains(UInt8(ascii: "%")) else { return String(path) }
    var output: [UInt8] = []
    output.reserveCapacity(bytes.count)
    var index = 0
    while index < bytes.count {
        if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
            let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
        {
            let decoded = high << 4 | low
            if isUnreserved(decoded) {
                output.append(decoded)
                index += 3
                continue
            }
        }
        output.append(bytes[index])
        index += 1
    }
    return String(decoding: output, as: UTF8.self)
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
    default: return nil
    }
}

private func isUnreserved(_ byte: UInt8) -> Bool {
    ASCII.isDigit(byte) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
        || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) || "-._~".utf8.contains(byte)
}
