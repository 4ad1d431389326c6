/// A configuration value the world gave us that Tandem cannot run with.
///
/// Its `description` is exactly one line that names the variable, shows the bad value and says what is
/// accepted, so that an operator reading a crash-looping pod's log can fix it without opening the docs.
/// The executable prints it and exits with code 2 before binding anything.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What kind of mistake this is, for callers and tests that branch on it.
    public enum Kind: Equatable, Sendable {
        /// The value does not parse as the variable's type (e.g. a duration without a unit).
        case invalidValue
        /// The value parses but lies outside the variable's allowed range.
        case outOfRange
        /// The value is fine on its own but contradicts another variable.
        case conflict
        /// A `TANDEM_*` variable that Tandem does not know, most likely a typo.
        case unknownVariable
        /// A path that names a file Tandem cannot read.
        case unreadableFile
    }

    /// What kind of mistake this is.
    public let kind: Kind
    /// The `TANDEM_*` variable at fault.
    public let variable: String
    /// The value as it appears in the error line: quoted and escaped, or redacted for secrets.
    public let shownValue: String
    /// What is wrong with the value, e.g. `is not a duration`.
    public let problem: String
    /// What would be accepted instead, e.g. `a number with a unit: 150ms, 2s, 1m`.
    public let expected: String

    /// Creates an error about `value` of `variable`; the value is quoted (or redacted when `isSecret`).
    public init(
        _ kind: Kind, variable: String, value: String, isSecret: Bool = false, problem: String, expected: String
    ) {
        self.kind = kind
        self.variable = variable
        self.shownValue = ConfigError.show(value, isSecret: isSecret)
        self.problem = problem
        self.expected = expected
    }

    /// One line: `TANDEM_X="value" problem; expected what`.
    public var description: String {
        "\(variable)=\(shownValue) \(problem); expected \(expected)"
    }

    /// The longest value echoed back; longer ones are cut so that the error stays one readable line.
    static let shownValueMaxCharacters = 80

    /// Quotes a value for an error line, escaping quotes, backslashes and control characters so that the
    /// line can never be split or forged by the value. Secrets are never echoed, only their length.
    static func show(_ value: String, isSecret: Bool) -> String {
        if isSecret { return "<redacted, \(value.count) characters>" }
        var out = "\""
        var count = 0
        for scalar in value.unicodeScalars {
            if count == shownValueMaxCharacters {
                out += "..."
                break
            }
            count += 1
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
                    || scalar == "\u{2028}" || scalar == "\u{2029}"
                {
                    out += "\\u{" + String(scalar.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
