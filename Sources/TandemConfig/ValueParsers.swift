#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why a single value failed to parse, before we know which variable it came from.
///
/// `TandemConfiguration.load` turns it into a `ConfigError` naming the variable; the parsers stay reusable for
/// anything else that reads the same syntax (the command line's `--admin host:port`, tests, tools).
public struct ConfigValueError: Error, Equatable, Sendable {
    /// What is wrong, phrased to follow the quoted value: `is not a duration`.
    public let problem: String
    /// What is accepted, phrased to follow `expected`: `a number with a unit: 150ms, 2s, 1m`.
    public let expected: String

    /// Creates a value error from its two halves.
    public init(problem: String, expected: String) {
        self.problem = problem
        self.expected = expected
    }
}

/// Pure parsers for the syntaxes used by `TANDEM_*` variables. They never read the environment or the clock.
public enum ConfigParsers {
    /// The accepted duration syntax, as shown in errors and `--help`.
    public static let durationSyntax = "a number with a unit: 150ms, 2s, 1m"
    /// The accepted size syntax, as shown in errors and `--help`.
    public static let sizeSyntax = "a number with a unit: 512B, 64KiB, 16MiB, 1GiB (KB, MB, GB are powers of 1000)"
    /// The longest duration any parser accepts (a year); each variable narrows this further.
    public static let durationMaxMs: Int64 = 365 * 24 * 3_600_000
    /// The largest size any parser accepts (1 PiB); each variable narrows this further.
    public static let sizeMaxBytes: Int64 = 1 << 50
    /// The most characters a number may have, so that digit loops are bounded and cannot overflow silently.
    static let numberMaxCharacters = 24

    /// Parses a duration such as `150ms`, `2s`, `1.5s`, `1m`, `24h` into whole milliseconds.
    ///
    /// Units are required (`ms`, `s`, `m`, `h`, lower case: `M` would be ambiguous), negatives are refused, and a
    /// fraction must land on a whole millisecond (`1.5s` is fine, `0.5ms` is not).
    public static func durationMs(_ text: String) throws(ConfigValueError) -> Int64 {
        let (number, unit) = try splitNumberAndUnit(text, syntax: durationSyntax, noun: "duration")
        let unitMs: Int64
        switch unit {
        case "ms": unitMs = 1
        case "s": unitMs = 1000
        case "m": unitMs = 60_000
        case "h": unitMs = 3_600_000
        case "":
            throw ConfigValueError(problem: "is a duration without a unit", expected: durationSyntax)
        default:
            throw ConfigValueError(
                problem: "has an unknown duration unit \"\(unit)\"", expected: durationSyntax + " (units: ms, s, m, h)")
        }
        guard let ms = number.scaled(by: unitMs, max: durationMaxMs) else {
            throw ConfigValueError(problem: "is too long", expected: "a duration of at most 8760h")
        }
        guard ms.exact else {
            throw ConfigValueError(problem: "is finer than a millisecond", expected: "a whole number of milliseconds")
        }
        return ms.value
    }

    /// Parses a size such as `512B`, `64KiB`, `16MiB`, `1GiB`, `1.5MiB`, `10MB` into bytes.
    ///
    /// `KiB`/`MiB`/`GiB`/`TiB` are powers of 1024 and `KB`/`MB`/`GB`/`TB` powers of 1000, as in IEC 80000-13.
    /// Units are required and matched without regard to case (there are no bit units to confuse them with).
    public static func sizeBytes(_ text: String) throws(ConfigValueError) -> Int64 {
        let (number, unit) = try splitNumberAndUnit(text, syntax: sizeSyntax, noun: "size")
        let multiplier: Int64
        switch unit.lowercased() {
        case "b": multiplier = 1
        case "kib": multiplier = 1 << 10
        case "mib": multiplier = 1 << 20
        case "gib": multiplier = 1 << 30
        case "tib": multiplier = 1 << 40
        case "kb": multiplier = 1000
        case "mb": multiplier = 1_000_000
        case "gb": multiplier = 1_000_000_000
        case "tb": multiplier = 1_000_000_000_000
        case "":
            throw ConfigValueError(problem: "is a size without a unit", expected: sizeSyntax)
        default:
            throw ConfigValueError(problem: "has an unknown size unit \"\(unit)\"", expected: sizeSyntax)
        }
        guard let bytes = number.scaled(by: multiplier, max: sizeMaxBytes) else {
            throw ConfigValueError(problem: "is too large", expected: "a size of at most 1024TiB")
        }
        guard bytes.exact else {
            throw ConfigValueError(problem: "is not a whole number of bytes", expected: sizeSyntax)
        }
        return bytes.value
    }

    /// Parses a plain non-negative decimal integer (no sign, no unit, no separators).
    public static func integer(_ text: String) throws(ConfigValueError) -> Int64 {
        let expected = "a whole number such as 1024"
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw ConfigValueError(problem: "is not a whole number", expected: expected)
        }
        guard text.utf8.count <= 18, let value = Int64(text) else {
            throw ConfigValueError(problem: "is too large", expected: expected)
        }
        return value
    }

    /// Parses a plain non-negative decimal number such as `8` or `12.5` (no exponent, no sign).
    public static func decimal(_ text: String) throws(ConfigValueError) -> Double {
        let expected = "a number such as 8 or 12.5"
        guard text.utf8.count <= numberMaxCharacters, DecimalNumber(Substring(text)) != nil,
            let value = Double(text), value.isFinite
        else {
            throw ConfigValueError(problem: "is not a number", expected: expected)
        }
        return value
    }

    /// Splits `12.5ms` into its number and unit, refusing signs, spaces and missing digits up front.
    static func splitNumberAndUnit(
        _ text: String, syntax: String, noun: String
    ) throws(ConfigValueError) -> (DecimalNumber, Substring) {
        if text.hasPrefix("-") {
            throw ConfigValueError(
                problem: "is negative", expected: "a \(noun) of zero or more: " + syntax.dropFirst(2))
        }
        let unitStart = text.firstIndex(where: { !($0.isASCII && ($0.isNumber || $0 == ".")) }) ?? text.endIndex
        let numberText = text[text.startIndex..<unitStart]
        guard numberText.count <= numberMaxCharacters, let number = DecimalNumber(numberText) else {
            throw ConfigValueError(problem: "is not a \(noun)", expected: syntax)
        }
        return (number, text[unitStart...])
    }
}

/// A non-negative decimal number kept exact as digits, so that `1.5s` becomes exactly 1500ms with no
/// binary floating point rounding on the way.
struct DecimalNumber: Equatable {
    /// Digits before the point, with no sign.
    let integerDigits: Substring
    /// Digits after the point; empty when there is no point.
    let fractionDigits: Substring

    /// The most digits after the point. Six keeps every product with a unit (at most 10^12) inside Int64.
    static let fractionDigitsMax = 6

    /// Accepts `12`, `12.5`, `0.25`; refuses `.5`, `5.`, `1e3`, signs, more than six decimals and anything else.
    init?<S: StringProtocol>(_ text: S) where S.SubSequence == Substring {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let isDigits: (Substring) -> Bool = { !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
        guard let first = parts.first, isDigits(first) else { return nil }
        if parts.count == 2 {
            guard isDigits(parts[1]), parts[1].count <= DecimalNumber.fractionDigitsMax else { return nil }
            fractionDigits = parts[1]
        } else {
            fractionDigits = ""
        }
        integerDigits = first
    }

    /// The number times `multiplier`, or nil when it would exceed `max`; `exact` is false when a fraction of
    /// the unit remains (for example 0.5 of a millisecond).
    func scaled(by multiplier: Int64, max: Int64) -> (value: Int64, exact: Bool)? {
        precondition(multiplier > 0 && max > 0, "scaling needs a positive multiplier and bound")
        var whole: Int64 = 0
        for digit in integerDigits.utf8 {
            let (times10, o1) = whole.multipliedReportingOverflow(by: 10)
            let (next, o2) = times10.addingReportingOverflow(Int64(digit - 0x30))
            if o1 || o2 || next > max { return nil }
            whole = next
        }
        let (scaled, overflow) = whole.multipliedReportingOverflow(by: multiplier)
        if overflow || scaled > max { return nil }
        // The fraction has at most six digits (checked in init), so numerator * multiplier stays below 10^18;
        // the remainder tells whether the result is exact.
        assert(fractionDigits.count <= DecimalNumber.fractionDigitsMax, "fraction digits are bounded by init")
        var numerator: Int64 = 0
        var denominator: Int64 = 1
        for digit in fractionDigits.utf8 {
            numerator = numerator * 10 + Int64(digit - 0x30)
            denominator *= 10
        }
        let (fractionProduct, o3) = numerator.multipliedReportingOverflow(by: multiplier)
        if o3 { return nil }
        let (total, o4) = scaled.addingReportingOverflow(fractionProduct / denominator)
        if o4 || total > max { return nil }
        return (total, fractionProduct % denominator == 0)
    }
}
