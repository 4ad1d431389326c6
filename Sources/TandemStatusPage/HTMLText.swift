/// Text made safe for HTML. Every string that comes from the model goes through `escape` before it reaches the
/// page, whether it lands in an element or in a quoted attribute.
enum HTMLText {
    /// Replaces the five characters that can end a text node or a quoted attribute with their entities.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    /// A phi value as the table shows it: two decimals, or a word for values that are not numbers, so `inf` or
    /// `nan` never reach the page as something that looks like a measurement.
    static func phi(_ value: Double) -> String {
        if value.isNaN { return "n/a" }
        if value == .infinity { return "&#8734;" }
        if value == -.infinity { return "0.00" }
        return fixed(value, decimals: 2)
    }

    /// `value` with exactly `decimals` digits after the point, without Foundation's locale-dependent formatting.
    static func fixed(_ value: Double, decimals: Int) -> String {
        precondition(value.isFinite, "only finite numbers are formatted as decimals")
        precondition((0...6).contains(decimals), "at most six decimals")
        var scale: Int64 = 1
        for _ in 0..<decimals { scale *= 10 }
        // Values this page shows are small; beyond 1e12 the digits are not meaningful anyway.
        let clamped = min(max(value, -1e12), 1e12)
        let scaled = Int64((abs(clamped) * Double(scale)).rounded())
        let sign = clamped < 0 && scaled != 0 ? "-" : ""
        let whole = scaled / scale
        guard decimals > 0 else { return "\(sign)\(whole)" }
        var fraction = String(scaled % scale)
        while fraction.count < decimals { fraction = "0" + fraction }
        return "\(sign)\(whole).\(fraction)"
    }
}
