#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension TandemConfiguration {
    /// Reads and validates every `TANDEM_*` variable of `environment`.
    ///
    /// An unset or empty variable takes its default from `variables`. Any other `TANDEM_*` name is refused as a
    /// probable typo. The first problem found is thrown; its description is the one line to print before
    /// exiting with code 2.
    /// - Parameters:
    ///   - environment: usually `ProcessInfo.processInfo.environment`.
    ///   - hostName: the default node id; `TandemConfiguration.systemHostName()` in production.
    ///   - isReadableFile: whether a TLS path can be opened; the real file system in production.
    public static func load(
        environment: [String: String],
        hostName: String = TandemConfiguration.systemHostName(),
        isReadableFile: (String) -> Bool = TandemConfiguration.fileIsReadable
    ) throws(ConfigError) -> TandemConfiguration {
        try rejectUnknownVariables(in: environment)
        let reader = EnvironmentReader(environment: environment)
        let configuration = try TandemConfiguration(reading: reader, hostName: hostName)
        try configuration.checkCombinations(reader: reader, hostName: hostName)
        try configuration.checkTLSFilesReadable(isReadableFile)
        configuration.checkInvariants()
        return configuration
    }

    /// The configuration with every variable unset, for tests and tools; the node id is `hostName`.
    public static func defaults(hostName: String = "localhost") -> TandemConfiguration {
        do {
            return try load(environment: [:], hostName: hostName, isReadableFile: { _ in true })
        } catch {
            preconditionFailure("the defaults in the table must be valid: \(error)")
        }
    }

    /// This machine's host name, as `gethostname(2)` reports it ("" if it cannot).
    public static func systemHostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether the process can read the file at `path`.
    public static func fileIsReadable(_ path: String) -> Bool {
        access(path, R_OK) == 0
    }

    static func rejectUnknownVariables(in environment: [String: String]) throws(ConfigError) {
        for name in environment.keys.sorted() where name.hasPrefix("TANDEM_") && variablesByName[name] == nil {
            var expected = "only the variables listed by tandem --help"
            if let suggestion = closestVariableName(to: name) { expected += " (did you mean \(suggestion)?)" }
            throw ConfigError(
                .unknownVariable, variable: name, value: environment[name] ?? "", isSecret: true,
                problem: "is not a Tandem variable", expected: expected)
        }
    }

    /// The known name that `name` most likely misspells: one that extends it or that it extends
    /// (`TANDEM_HEARTBEAT`, `TANDEM_MAX_BODY_SIZE`), else the one with the smallest edit distance when that is
    /// small enough to be a typo.
    static func closestVariableName(to name: String) -> String? {
        let prefixMatches = variables.map(\.name).filter { known in
            min(known.utf8.count, name.utf8.count) >= "TANDEM_".utf8.count + 4
                && (known.hasPrefix(name) || name.hasPrefix(known))
        }
        if let best = prefixMatches.min(by: {
            abs($0.utf8.count - name.utf8.count) < abs($1.utf8.count - name.utf8.count)
        }) {
            return best
        }
        let scored = variables.map { ($0.name, editDistance(Array(name.utf8), Array($0.name.utf8))) }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(3, name.utf8.count / 3) else { return nil }
        return best.0
    }

    /// Levenshtein distance with two rows; names are short (under 64 bytes), so this is cheap.
    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}

/// Reads one variable at a time, falling back to the table's default, and turns parser failures into errors
/// that name the variable. The kind recorded in the table decides the bounds, so help and parser agree.
struct EnvironmentReader {
    let environment: [String: String]

    /// The raw text: the environment's value, or the table default when unset or empty.
    func text(_ name: String) -> String {
        let variable = TandemConfiguration.variable(named: name)
        if let value = environment[name], !value.isEmpty { return value }
        return variable.defaultValue
    }

    /// True when the operator set the variable (to something non-empty).
    func isSet(_ name: String) -> Bool {
        !(environment[name] ?? "").isEmpty
    }

    /// Runs `parse` on the variable's text, attributing a failure to the variable.
    func parse<T>(_ name: String, _ parse: (String) throws(ConfigValueError) -> T) throws(ConfigError) -> T {
        let value = text(name)
        do {
            return try parse(value)
        } catch {
            throw failure(.invalidValue, name, value, error.problem, error.expected)
        }
    }

    func failure(
        _ kind: ConfigError.Kind, _ name: String, _ value: String, _ problem: String, _ expected: String
    ) -> ConfigError {
        let variable = TandemConfiguration.variable(named: name)
        return ConfigError(
            kind, variable: name, value: value, isSecret: variable.isSecret, problem: problem, expected: expected)
    }

    func durationMs(_ name: String) throws(ConfigError) -> Int64 {
        guard case .duration(let minMs, let maxMs) = TandemConfiguration.variable(named: name).kind else {
            preconditionFailure("\(name) is not a duration in the table")
        }
        let ms = try parse(name, ConfigParsers.durationMs)
        guard (minMs...maxMs).contains(ms) else {
            let range = "\(ConfigFormat.duration(minMs)) to \(ConfigFormat.duration(maxMs))"
            throw failure(.outOfRange, name, text(name), "is out of range", "a duration from \(range)")
        }
        return ms
    }

    func sizeBytes(_ name: String) throws(ConfigError) -> Int64 {
        guard case .size(let minBytes, let maxBytes) = TandemConfiguration.variable(named: name).kind else {
            preconditionFailure("\(name) is not a size in the table")
        }
        let bytes = try parse(name, ConfigParsers.sizeBytes)
        guard (minBytes...maxBytes).contains(bytes) else {
            let range = "\(ConfigFormat.size(minBytes)) to \(ConfigFormat.size(maxBytes))"
            throw failure(.outOfRange, name, text(name), "is out of range", "a size from \(range)")
        }
        return bytes
    }

    func count(_ name: String) throws(ConfigError) -> Int {
        guard case .count(let min, let max) = TandemConfiguration.variable(named: name).kind else {
            preconditionFailure("\(name) is not a count in the table")
        }
        let value = try parse(name, ConfigParsers.integer)
        guard (min...max).contains(value) else {
            throw failure(.outOfRange, name, text(name), "is out of range", "a whole number from \(min) to \(max)")
        }
        return Int(value)
    }

    func number(_ name: String) throws(ConfigError) -> Double {
        guard case .number(let min, let max) = TandemConfiguration.variable(named: name).kind else {
            preconditionFailure("\(name) is not a number in the table")
        }
        let value = try parse(name, ConfigParsers.decimal)
        guard (min...max).contains(value) else {
            let range = "\(ConfigFormat.number(min)) to \(ConfigFormat.number(max))"
            throw failure(.outOfRange, name, text(name), "is out of range", "a number from \(range)")
        }
        return value
    }

    /// One of the words the table lists for `name` (matched without regard to case), as a `K`.
    func keyword<K: RawRepresentable>(_ name: String, as type: K.Type) throws(ConfigError) -> K
    where K.RawValue == String {
        let value = text(name)
        guard case .keyword(let words) = TandemConfiguration.variable(named: name).kind else {
            preconditionFailure("\(name) is not a keyword in the table")
        }
        guard words.contains(value.lowercased()), let keyword = K(rawValue: value.lowercased()) else {
            throw failure(
                .invalidValue, name, value, "is not one of the accepted words",
                TandemConfiguration.variable(named: name).accepts)
        }
        return keyword
    }

    func address(_ name: String) throws(ConfigError) -> HostPort {
        let address = try parse(name, HostPort.init(parsing:))
        if TandemConfiguration.variable(named: name).kind == .connectAddress && address.port == 0 {
            throw failure(.outOfRange, name, text(name), "has port 0", "a port Tandem can connect to, 1...65535")
        }
        return address
    }

    func rateLimit(_ name: String) throws(ConfigError) -> RateLimit? {
        if text(name).lowercased() == "off" { return nil }
        return try parse(name, RateLimit.init(parsing:))
    }

    /// A hook in the form the table names (`GET /path`, `PUT /path`, or `exec:COMMAND`); nil when unset.
    func appHook(_ name: String) throws(ConfigError) -> AppHook? {
        guard isSet(name) else { return nil }
        guard case .appHook(let method) = TandemConfiguration.variable(named: name).kind else {
            preconditionFailure("\(name) is not a hook in the table")
        }
        return try parse(name) { text throws(ConfigValueError) in try AppHook.parse(text, method: method) }
    }

    /// A number of entries or a size, within the table's bounds.
    func cadence(_ name: String) throws(ConfigError) -> SnapshotCadence {
        guard
            case .cadence(let minEntries, let maxEntries, let minBytes, let maxBytes) = TandemConfiguration.variable(
                named: name
            ).kind
        else {
            preconditionFailure("\(name) is not a cadence in the table")
        }
        return try parse(name) { text throws(ConfigValueError) in
            try SnapshotCadence.parse(text, entries: minEntries...maxEntries, bytes: minBytes...maxBytes)
        }
    }

    /// A secret: visible ASCII (it goes into headers and HMAC input unchanged), at least the table's minimum.
    func secret(_ name: String) throws(ConfigError) -> String? {
        guard isSet(name) else { return nil }
        guard case .secret(let minCharacters) = TandemConfiguration.variable(named: name).kind else {
            preconditionFailure("\(name) is not a secret in the table")
        }
        let value = text(name)
        guard value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw failure(.invalidValue, name, value, "has spaces or non-ASCII characters", "visible ASCII characters")
        }
        guard value.utf8.count >= minCharacters, value.utf8.count <= 1024 else {
            throw failure(.outOfRange, name, value, "has the wrong length", "\(minCharacters) to 1024 characters")
        }
        return value
    }
}
