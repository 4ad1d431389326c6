extension TandemConfiguration {
    /// The variables section of `tandem --help`: every variable by group, with its default, what it accepts and
    /// what it does. Generated from `variables`, so it always matches the parser.
    public static func helpText() -> String {
        var lines: [String] = [
            "Configuration (environment variables only; an empty value means the default).",
            "Durations take units (150ms, 2s, 1m, 1h); sizes take units (512B, 64KiB, 16MiB; KB/MB are decimal).",
            "A bad value, or any unknown TANDEM_* variable (likely a typo), stops tandem with exit code 2.",
        ]
        for group in ConfigGroup.allCases {
            lines.append("")
            lines.append("\(group.rawValue):")
            for variable in variables where variable.group == group {
                lines.append("  \(variable.name)  (default: \(variable.shownDefault))")
                lines.append("      \(variable.summary) Accepts: \(variable.accepts).")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The README's configuration reference: one Markdown table per group, generated from `variables`.
    public static func markdownTable() -> String {
        var lines: [String] = [
            "All settings are environment variables, read once at start. An empty value means the default. A bad "
                + "value, or an unknown `TANDEM_*` variable (most likely a typo), stops `tandem` before it binds "
                + "anything, with exit code 2 and one line naming the variable, the value and what is accepted."
        ]
        for group in ConfigGroup.allCases {
            lines.append("")
            lines.append("### \(group.rawValue)")
            lines.append("")
            lines.append("| Variable | Default | Accepts | Meaning |")
            lines.append("| --- | --- | --- | --- |")
            for variable in variables where variable.group == group {
                let cells = [
                    "`\(variable.name)`",
                    markdownCode(
                        variable.shownDefault,
                        isLiteral: !variable.defaultValue.isEmpty
                            && variable.shownDefault == variable.defaultValue),
                    markdownEscape(variable.accepts), markdownEscape(variable.summary),
                ]
                lines.append("| " + cells.joined(separator: " | ") + " |")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func markdownCode(_ text: String, isLiteral: Bool) -> String {
        isLiteral ? "`\(text)`" : markdownEscape(text)
    }

    /// Escapes the characters that would break a table cell or start emphasis.
    static func markdownEscape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "|": out += "\\|"
            case "*": out += "\\*"
            case "_": out += "\\_"
            default: out.append(character)
            }
        }
        return out
    }
}
