/// The small inline SVG line chart of one peer's phi over the last minute. Pure geometry on the model's numbers;
/// it never looks at a clock.
struct PhiChart {
    /// Drawing area in SVG user units.
    static let widthUnits = 300
    static let heightUnits = 80
    /// Samples drawn per chart at most; a minute of heartbeats at 100 ms is 600, so this only bounds a caller
    /// that samples far faster. The newest samples are kept.
    static let samplesMax = 1200

    /// The samples inside the window, oldest first, at most `samplesMax` of them.
    let samples: [(tMs: Int64, phi: Double)]
    let windowStartMs: Int64
    let windowMs: Int64
    let threshold: Double
    /// The phi at the top edge; higher values, infinity and NaN are drawn on the top edge. Invariant: > threshold.
    let ceiling: Double

    init(history: [(tMs: Int64, phi: Double)], nowMs: Int64, windowMs: Int64, threshold: Double) {
        precondition(windowMs > 0, "the chart window is a positive duration")
        let start = nowMs - windowMs
        var kept = history.filter { $0.tMs >= start && $0.tMs <= nowMs }
        if kept.count > Self.samplesMax { kept.removeFirst(kept.count - Self.samplesMax) }
        samples = kept
        windowStartMs = start
        self.windowMs = windowMs
        self.threshold = threshold
        // Leave headroom above the threshold so the line is visible, and grow with the data up to 4x the threshold
        // so that one huge (or infinite) value does not flatten every other sample against the floor.
        let finiteMax = kept.lazy.map(\.phi).filter(\.isFinite).max() ?? 0
        ceiling = min(max(threshold * 1.5, finiteMax * 1.1), threshold * 4)
        assert(ceiling > threshold, "the threshold line is always inside the chart")
    }

    /// The x coordinate of a sample time, 0 at the window's start and `widthUnits` at now.
    func x(_ tMs: Int64) -> Double {
        Double(tMs - windowStartMs) / Double(windowMs) * Double(Self.widthUnits)
    }

    /// The y coordinate of a phi value; SVG's y grows downwards, so 0 phi is the bottom edge.
    func y(_ phi: Double) -> Double {
        let clamped = phi.isNaN ? ceiling : min(max(phi, 0), ceiling)
        return Double(Self.heightUnits) * (1 - clamped / ceiling)
    }

    /// The `points` attribute of the polyline: one `x,y` pair per sample.
    var polylinePoints: String {
        samples.map { "\(HTMLText.fixed(x($0.tMs), decimals: 1)),\(HTMLText.fixed(y($0.phi), decimals: 1))" }
            .joined(separator: " ")
    }

    /// The whole `<svg>` element; `label` is already escaped.
    func svg(label: String) -> String {
        let width = Self.widthUnits
        let height = Self.heightUnits
        let thresholdY = HTMLText.fixed(y(threshold), decimals: 1)
        var parts: [String] = [
            "<svg class=\"phi-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" "
                + "viewBox=\"0 0 \(width) \(height)\" role=\"img\" aria-label=\"\(label)\">",
            "<rect x=\"0\" y=\"0\" width=\"\(width)\" height=\"\(height)\" fill=\"#fafafa\" stroke=\"#ccc\"/>",
            "<line class=\"threshold\" x1=\"0\" y1=\"\(thresholdY)\" x2=\"\(width)\" y2=\"\(thresholdY)\" "
                + "stroke=\"#c62828\" stroke-dasharray=\"4 3\" shape-rendering=\"crispEdges\"/>",
            "<text x=\"\(width - 2)\" y=\"\(thresholdY)\" dy=\"-2\" text-anchor=\"end\" font-size=\"9\" "
                + "fill=\"#c62828\">phi \(HTMLText.fixed(threshold, decimals: 1))</text>",
        ]
        if samples.isEmpty {
            parts.append(
                "<text class=\"no-samples\" x=\"\(width / 2)\" y=\"\(height / 2)\" text-anchor=\"middle\" "
                    + "font-size=\"11\" fill=\"#777\">no samples in the last minute</text>")
        } else {
            parts.append(
                "<polyline class=\"phi-line\" fill=\"none\" stroke=\"#1565c0\" stroke-width=\"1.5\" "
                    + "points=\"\(polylinePoints)\"/>")
        }
        parts.append("</svg>")
        return parts.joined(separator: "\n")
    }
}
