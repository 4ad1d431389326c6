/// A way to ask the local app for something outside its normal traffic: its state (a snapshot save), to replace
/// its state (a snapshot restore), or a digest of its state. Either an HTTP request on the app, or a shell command
/// run beside it.
public enum AppHook: Hashable, Sendable, CustomStringConvertible {
    /// An HTTP request on the app: `GET /path` (the response body is the answer) or `PUT /path` (the request body
    /// carries the state). Invariant: `target` starts with `/` and holds only visible ASCII.
    case http(method: String, target: String)
    /// `/bin/sh -c command`: its standard output is the answer, or its standard input carries the state.
    /// Invariant: `command` is not blank.
    case exec(command: String)

    /// The hook as the operator writes it, so that it can be logged and loaded back.
    public var description: String {
        switch self {
        case .http(let method, let target): return "\(method) \(target)"
        case .exec(let command): return AppHook.execPrefix + command
        }
    }

    static let execPrefix = "exec:"
    /// The longest target or command accepted: far beyond any real one, short enough to log whole.
    static let textBytesMax = 4096

    /// What a hook whose HTTP form uses `method` accepts, in words, for errors, `--help` and the README.
    static func syntax(method: String) -> String { "\(method) /path | exec:COMMAND" }

    /// Parses `METHOD /path` (the method must be exactly `method`, since a snapshot read must not change the app
    /// and a restore must replace its state) or `exec:COMMAND`.
    ///
    /// Strict on purpose: a path with a space or a control character would be a different request on the wire, and
    /// a hook that silently did something else than the operator wrote would lose or corrupt state.
    public static func parse(_ text: String, method: String) throws(ConfigValueError) -> AppHook {
        let expected =
            "\(method) /path (an HTTP request on the app) or exec:COMMAND (a shell command run beside the app)"
        if text.hasPrefix(execPrefix) {
            let command = String(text.dropFirst(execPrefix.count))
            guard command.utf8.contains(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0A }) else {
                throw ConfigValueError(problem: "has an empty command", expected: "exec: followed by a shell command")
            }
            guard command.utf8.count <= textBytesMax else {
                throw ConfigValueError(problem: "is too long", expected: "a command of at most \(textBytesMax) bytes")
            }
            // Tabs and newlines are ordinary in a shell script; other control characters are a mistake.
            guard command.utf8.allSatisfy({ $0 == 0x09 || $0 == 0x0A || ($0 >= 0x20 && $0 != 0x7F) }) else {
                throw ConfigValueError(
                    problem: "has control characters in its command", expected: "a command of printable characters")
            }
            return .exec(command: command)
        }
        guard let space = text.utf8.firstIndex(of: 0x20) else {
            throw ConfigValueError(problem: "is neither an HTTP request nor an exec: command", expected: expected)
        }
        let requestMethod = String(text[..<space])
        let target = String(text[text.utf8.index(after: space)...])
        guard requestMethod == method else {
            let problem =
                requestMethod.uppercased() == method
                ? "has the method in lower case" : "uses the method \(ConfigError.show(requestMethod, isSecret: false))"
            throw ConfigValueError(problem: problem, expected: expected)
        }
        guard target.hasPrefix("/") else {
            throw ConfigValueError(problem: "has a path that does not start with /", expected: expected)
        }
        guard target.utf8.count <= textBytesMax else {
            throw ConfigValueError(problem: "is too long", expected: "a path of at most \(textBytesMax) bytes")
        }
        // A request target is visible ASCII (RFC 9112 section 3.2); `#` starts a fragment, never sent.
        guard target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "#") }) else {
            throw ConfigValueError(
                problem: "has spaces, control characters, # or non-ASCII characters in its path",
                expected: "a path of visible ASCII characters, percent-encoded where needed")
        }
        return .http(method: method, target: target)
    }
}

/// When Tandem takes a snapshot of the app (`TANDEM_SNAPSHOT_EVERY`).
public enum SnapshotCadence: Hashable, Sendable, CustomStringConvertible {
    /// After this many applied entries since the last snapshot. Invariant: > 0.
    case entries(UInt64)
    /// After this many bytes of applied entries (their commands) since the last snapshot. Invariant: > 0.
    case bytes(UInt64)

    /// The cadence as the operator writes it: a plain number of entries, or a size.
    public var description: String {
        switch self {
        case .entries(let count): return String(count)
        case .bytes(let bytes): return ConfigFormat.size(Int64(bytes))
        }
    }

    /// Parses a plain whole number (entries) or a size with a unit (bytes of applied entries), each within the
    /// bounds given.
    static func parse(
        _ text: String, entries entryRange: ClosedRange<Int64>, bytes byteRange: ClosedRange<Int64>
    ) throws(ConfigValueError) -> SnapshotCadence {
        let expected =
            "a number of entries from \(entryRange.lowerBound) to \(entryRange.upperBound), or a size from "
            + "\(ConfigFormat.size(byteRange.lowerBound)) to \(ConfigFormat.size(byteRange.upperBound)) such as 64MiB"
        if !text.isEmpty && text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            let count = try ConfigParsers.integer(text)
            guard entryRange.contains(count) else {
                throw ConfigValueError(problem: "is out of range", expected: expected)
            }
            return .entries(UInt64(count))
        }
        let bytes: Int64
        do {
            bytes = try ConfigParsers.sizeBytes(text)
        } catch {
            throw ConfigValueError(problem: "is neither a number of entries nor a size", expected: expected)
        }
        guard byteRange.contains(bytes) else { throw ConfigValueError(problem: "is out of range", expected: expected) }
        return .bytes(UInt64(bytes))
    }
}

/// What a replica does when the divergence monitor finds its applied state differs from the majority's
/// (`TANDEM_DIVERGENCE_ACTION`).
public enum DivergenceAction: String, CaseIterable, Sendable {
    /// Report it (status, metrics, logs, not ready) and keep serving: an operator decides.
    case flag
    /// Save the app's state aside, then replace it with the leader's snapshot when the leader is one of the
    /// members that agree, and replay the log after it.
    case repair
    /// Stop applying and serving, and stay up (not ready) with the app's state kept for an operator.
    case stop
}
