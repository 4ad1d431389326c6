/// Prometheus-style metrics, owned by the loop thread (no locks: only the loop thread touches them).
///
/// Every label set is bounded by construction: request classes, status codes (at most 600 values), reasons
/// from fixed enums. Nothing labels by path, client or key, so the series count cannot grow without bound.
public final class Metrics {
    /// Upper bounds of the latency buckets, in seconds.
    static let latencyBucketsSeconds: [Double] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]

    struct Histogram {
        var bucketCounts = [UInt64](repeating: 0, count: Metrics.latencyBucketsSeconds.count)
        var count: UInt64 = 0
        var sumSeconds: Double = 0

        mutating func observe(micros: Int64) {
            let seconds = Double(max(0, micros)) / 1_000_000
            count += 1
            sumSeconds += seconds
            for (index, bound) in Metrics.latencyBucketsSeconds.enumerated() where seconds <= bound {
                bucketCounts[index] += 1
                break
            }
        }
    }

    /// Requests by class and status code: key "class|code".
    private(set) var requestCounts: [String: UInt64] = [:]
    private(set) var latencyByClass: [String: Histogram] = [:]
    private(set) var upstreamErrors: [String: UInt64] = [:]
    private(set) var parseErrors: [String: UInt64] = [:]
    public var openClientConnections = 0
    public var openAdminConnections = 0
    public var acceptedConnectionsTotal: UInt64 = 0
    public var upstreamPoolIdle = 0
    public var upstreamConnectionsOpen = 0
    /// Gauges that later layers (replication, apply) publish: name -> (help, value).
    private var gauges: [String: (help: String, value: Double)] = [:]

    public init() {}

    public func recordRequest(class requestClass: String, status: Int, latencyMicros: Int64) {
        requestCounts["\(requestClass)|\(status)", default: 0] += 1
        latencyByClass[requestClass, default: Histogram()].observe(micros: latencyMicros)
    }

    public func recordUpstreamError(_ kind: String) {
        upstreamErrors[kind, default: 0] += 1
    }

    public func recordParseError(_ code: String) {
        parseErrors[code, default: 0] += 1
    }

    public func setGauge(_ name: String, help: String, value: Double) {
        gauges[name] = (help, value)
    }

    /// The Prometheus text exposition format (version 0.0.4).
    public func render() -> String {
        var out = ""
        out.reserveCapacity(4096)
        out += "# HELP tandem_up 1 while the event loop turns.\n# TYPE tandem_up gauge\ntandem_up 1\n"
        out += "# HELP tandem_requests_total Client requests answered, by class (read, write, bypass) and status.\n"
        out += "# TYPE tandem_requests_total counter\n"
        for key in requestCounts.keys.sorted() {
            let parts = key.split(separator: "|")
            out += "tandem_requests_total{class=\"\(parts[0])\",code=\"\(parts[1])\"} \(requestCounts[key]!)\n"
        }
        renderHistograms(into: &out)
        out += "# HELP tandem_upstream_errors_total Failures talking to the local app, by kind.\n"
        out += "# TYPE tandem_upstream_errors_total counter\n"
        for kind in ["connect", "timeout", "reset", "bad_response"] {
            out += "tandem_upstream_errors_total{kind=\"\(kind)\"} \(upstreamErrors[kind, default: 0])\n"
        }
        out += "# HELP tandem_bad_requests_total Client requests rejected by the HTTP parser, by reason.\n"
        out += "# TYPE tandem_bad_requests_total counter\n"
        for code in parseErrors.keys.sorted() {
            out += "tandem_bad_requests_total{reason=\"\(code)\"} \(parseErrors[code]!)\n"
        }
        out += "# HELP tandem_open_connections Open connections, by listener.\n# TYPE tandem_open_connections gauge\n"
        out += "tandem_open_connections{listener=\"client\"} \(openClientConnections)\n"
        out += "tandem_open_connections{listener=\"admin\"} \(openAdminConnections)\n"
        out += "# HELP tandem_connections_accepted_total Client connections accepted.\n"
        out += "# TYPE tandem_connections_accepted_total counter\ntandem_connections_accepted_total \(acceptedConnectionsTotal)\n"
        out += "# HELP tandem_upstream_connections Connections to the local app, open and idle in the pool.\n"
        out += "# TYPE tandem_upstream_connections gauge\n"
        out += "tandem_upstream_connections{state=\"open\"} \(upstreamConnectionsOpen)\n"
        out += "tandem_upstream_connections{state=\"idle\"} \(upstreamPoolIdle)\n"
        for name in gauges.keys.sorted() {
            let gauge = gauges[name]!
            out += "# HELP \(name) \(gauge.help)\n# TYPE \(name) gauge\n\(name) \(formatValue(gauge.value))\n"
        }
        return out
    }

    private func renderHistograms(into out: inout String) {
        out += "# HELP tandem_request_duration_seconds Time from a complete request head to the end of the response, by class.\n"
        out += "# TYPE tandem_request_duration_seconds histogram\n"
        for requestClass in latencyByClass.keys.sorted() {
            let histogram = latencyByClass[requestClass]!
            var cumulative: UInt64 = 0
            for (index, bound) in Metrics.latencyBucketsSeconds.enumerated() {
                cumulative += histogram.bucketCounts[index]
                out += "tandem_request_duration_seconds_bucket{class=\"\(requestClass)\",le=\"\(formatValue(bound))\"} \(cumulative)\n"
            }
            out += "tandem_request_duration_seconds_bucket{class=\"\(requestClass)\",le=\"+Inf\"} \(histogram.count)\n"
            out += "tandem_request_duration_seconds_sum{class=\"\(requestClass)\"} \(histogram.sumSeconds)\n"
            out += "tandem_request_duration_seconds_count{class=\"\(requestClass)\"} \(histogram.count)\n"
        }
    }

    private func formatValue(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
