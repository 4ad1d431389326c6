/// The section of `--help` and of the README reference a variable belongs to.
/// The raw value is the section title.
public enum ConfigGroup: String, CaseIterable, Sendable {
    /// Client, upstream, peer and admin addresses, and the protocol.
    case listeners = "Listeners"
    /// Node id, members and data directory.
    case cluster = "Cluster"
    /// Heartbeats, phi-accrual parameters and the election timeout.
    case failureDetection = "Failure detection and elections"
    /// Request classification, timeouts, consistency, idempotency, body size, app state.
    case writesAndReads = "Writes and reads"
    /// App snapshot hooks and their cadence, log retention, state digests and what divergence triggers.
    case snapshots = "Snapshots and divergence"
    /// Bounds on queues, connections and rates.
    case overload = "Overload and rate limiting"
    /// Peer TLS, the cluster secret and the admin token.
    case security = "Security"
    /// Level and format of log lines.
    case logs = "Logs"
}

/// The type of a variable's value, with its bounds. `load` parses by it and `accepts` describes it, so the
/// documentation cannot drift from what the parser does.
public enum ConfigValueKind: Hashable, Sendable {
    /// A duration with a unit, within `minMs...maxMs`.
    case duration(minMs: Int64, maxMs: Int64)
    /// A size with a unit, within `minBytes...maxBytes`.
    case size(minBytes: Int64, maxBytes: Int64)
    /// A plain whole number within `min...max`.
    case count(min: Int64, max: Int64)
    /// A plain decimal number within `min...max`.
    case number(min: Double, max: Double)
    /// `host:port` to listen on; port 0 picks a free port.
    case listenAddress
    /// `host:port` to connect to; port 0 is refused.
    case connectAddress
    /// A node id.
    case nodeID
    /// The `TANDEM_PEERS` list.
    case peers
    /// `TANDEM_JOIN`: a comma list of `host:port`, or one DNS name.
    case joinTargets
    /// A directory path.
    case directory
    /// One of a fixed set of words, matched without regard to case.
    case keyword([String])
    /// A comma list of HTTP methods.
    case methods
    /// A comma list of route rules.
    case routes
    /// `off` or a rate.
    case rateLimit
    /// `ip` or `header:NAME`.
    case rateLimitKey
    /// A path to a readable file.
    case file
    /// A secret of at least `minCharacters` visible ASCII characters; never echoed in errors.
    case secret(minCharacters: Int)
    /// `METHOD /path` with exactly this method, or `exec:COMMAND` (an `AppHook`).
    case appHook(method: String)
    /// A whole number of entries within `minEntries...maxEntries`, or a size within `minBytes...maxBytes`.
    case cadence(minEntries: Int64, maxEntries: Int64, minBytes: Int64, maxBytes: Int64)

    /// What the kind accepts, in words, for errors, `--help` and the README.
    public var accepts: String {
        switch self {
        case .duration(let minMs, let maxMs):
            return "duration \(ConfigFormat.duration(minMs))...\(ConfigFormat.duration(maxMs)) (units ms, s, m, h)"
        case .size(let minBytes, let maxBytes):
            return "size \(ConfigFormat.size(minBytes))...\(ConfigFormat.size(maxBytes)) (B, KiB, MiB, GiB; KB, MB, GB)"
        case .count(let min, let max): return "whole number \(min)...\(max)"
        case .number(let min, let max): return "number \(ConfigFormat.number(min))...\(ConfigFormat.number(max))"
        case .listenAddress: return "host:port, port 0 = pick a free port"
        case .connectAddress: return "host:port, port 1...65535"
        case .nodeID: return NodeID.syntax
        case .peers: return "id=host:port,... with unique ids and addresses, at most \(Peer.countMax)"
        case .joinTargets: return JoinTargets.syntax
        case .directory: return "a directory path"
        case .keyword(let words): return words.joined(separator: " | ")
        case .methods: return "comma list of upper-case methods"
        case .routes: return "comma list of METHOD /path/glob* (METHOD may be *)"
        case .rateLimit: return "off | N/s | N/m | N/h, optional ;burst=N (default burst N)"
        case .rateLimitKey: return "ip | header:NAME"
        case .file: return "path to a readable file"
        case .secret(let minCharacters): return "\(minCharacters)...1024 visible ASCII characters, no spaces"
        case .appHook(let method): return AppHook.syntax(method: method)
        case .cadence(let minEntries, let maxEntries, let minBytes, let maxBytes):
            return "whole number \(minEntries)...\(maxEntries) (entries), or size "
                + "\(ConfigFormat.size(minBytes))...\(ConfigFormat.size(maxBytes)) (bytes of applied entries)"
        }
    }
}

/// One `TANDEM_*` environment variable: the single source of truth for its name, default and meaning.
public struct ConfigVariable: Hashable, Sendable {
    /// The environment variable's name, `TANDEM_...`.
    public let name: String
    /// The section it is listed under.
    public let group: ConfigGroup
    /// The text `load` parses when the variable is unset or empty; "" means "none" (off, no file, no peers).
    public let defaultValue: String
    /// The default as `--help` shows it, when it is not simply `defaultValue` (e.g. "the host name").
    public let shownDefault: String
    /// The value's type and bounds.
    public let kind: ConfigValueKind
    /// One sentence saying what it controls.
    public let summary: String

    /// True for secrets: their values are never echoed in errors.
    public var isSecret: Bool {
        if case .secret = kind { return true }
        return false
    }

    /// What is accepted, in words.
    public var accepts: String { kind.accepts }

    init(
        _ name: String, _ group: ConfigGroup, default defaultValue: String, shown: String? = nil,
        _ kind: ConfigValueKind, _ summary: String
    ) {
        precondition(name.hasPrefix("TANDEM_"), "every variable is in the TANDEM_ namespace")
        self.name = name
        self.group = group
        self.defaultValue = defaultValue
        self.shownDefault = shown ?? (defaultValue.isEmpty ? "none" : defaultValue)
        self.kind = kind
        self.summary = summary
    }
}

/// Turns numbers back into the syntax users type, for bounds shown in errors and help.
enum ConfigFormat {
    static func duration(_ ms: Int64) -> String {
        if ms != 0 && ms % 3_600_000 == 0 { return "\(ms / 3_600_000)h" }
        if ms != 0 && ms % 60_000 == 0 { return "\(ms / 60_000)m" }
        if ms != 0 && ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }

    static func size(_ bytes: Int64) -> String {
        for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] as [(String, Int64)]
        where bytes != 0 && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift)\(unit)"
        }
        return "\(bytes)B"
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}
