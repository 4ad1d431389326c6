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

    /// A request class and a status code: the key of the request counter. Built without formatting a string,
    /// since it is counted on every request; the text appears only when the metrics are rendered.
    struct RequestKey: Hashable {
        let requestClass: String
        let status: Int
    }

    /// The requests of one class: counts by status code and the latency histogram.
    struct ClassRecord {
        let requestClass: String
        /// Counts of the status codes 0...999, indexed by the code.
        var statusCounts = [UInt64](repeating: 0, count: 1000)
        /// Counts of any other code (none is expected).
        var otherStatusCounts: [Int: UInt64] = [:]
        var latency = Histogram()

        mutating func count(status: Int) {
            if status >= 0 && status < statusCounts.count {
                statusCounts[status] += 1
            } else {
                otherStatusCounts[status, default: 0] += 1
            }
        }

        /// The codes counted at least once, with their counts, in ascending order of code.
        var countsByStatus: [(status: Int, count: UInt64)] {
            var result = otherStatusCounts.map { (status: $0.key, count: $0.value) }
            for status in statusCounts.indices where statusCounts[status] > 0 {
                result.append((status, statusCounts[status]))
            }
            return result.sorted { $0.status < $1.status }
        }
    }

    /// One record per request class seen (read, write, bypass: a handful), found by a linear search on the name.
    /// Two dictionaries keyed by the class (and the code) hashed a String twice on every request.
    private var classRecords: [ClassRecord] = []

    /// Requests by class and status code.
    var requestCounts: [RequestKey: UInt64] {
        var counts: [RequestKey: UInt64] = [:]
        for record in classRecords {
            for (status, count) in record.countsByStatus {
                counts[RequestKey(requestClass: record.requestClass, status: status)] = count
            }
        }
        return counts
    }

    /// Latency histograms by request class.
    var latencyByClass: [String: Histogram] {
        Dictionary(uniqueKeysWithValues: classRecords.map { ($0.requestClass, $0.latency) })
    }
    private(set) var upstreamErrors: [String: UInt64] = [:]
    private(set) var parseErrors: [String: UInt64] = [:]
    /// Requests answered 503 overloaded, by the limit that was reached.
    private(set) var shedByReason: [String: UInt64] = [:]
    private(set) var commitTimeouts: UInt64 = 0
    private(set) var rateLimited: [String: UInt64] = [:]
    public var openClientConnections = 0
    public var openAdminConnections = 0
    public var acceptedConnectionsTotal: UInt64 = 0
    public var upstreamPoolIdle = 0
    public var upstreamConnectionsOpen = 0
    /// Values that later layers (the write path, the applier) publish: family -> (help, type, label set -> value).
    /// Label sets are bounded by the cluster's membership.
    private var families: [String: (help: String, type: String, samples: [String: Double])] = [:]

    public init() {}

    public func recordRequest(class requestClass: String, status: Int, latencyMicros: Int64) {
        var index = 0
        while index < classRecords.count && classRecords[index].requestClass != requestClass { index += 1 }
        if index == classRecords.count { classRecords.append(ClassRecord(requestClass: requestClass)) }
        classRecords[index].count(status: status)
        classRecords[index].latency.observe(micros: latencyMicros)
    }

    public func recordUpstreamError(_ kind: String) {
        upstreamErrors[kind, default: 0] += 1
    }

    public func recordParseError(_ code: String) {
        parseErrors[code, default: 0] += 1
    }

    public func recordShed(_ reason: String) {
        shedByReason[reason, default: 0] += 1
    }

    public func recordRateLimited(_ scope: String) {
        rateLimited[scope, default: 0] += 1
    }

    public func recordCommitTimeout() {
        commitTimeouts += 1
    }

    public func setGauge(_ name: String, help: String, value: Double, labels: String = "") {
        set(name, help: help, type: "gauge", labels: labels, value: value)
    }

    /// A counter kept elsewhere (the runtime's), published as of now.
    public func setCounter(_ name: String, help: String, value: Double, labels: String = "") {
        set(name, help: help, type: "counter", labels: labels, value: value)
    }

    private func set(_ name: String, help: String, type: String, labels: String, value: Double) {
        if families[name] == nil { families[name] = (help, type, [:]) }
        families[name]!.samples[labels] = value
    }

    /// The Prometheus text exposition format (version 0.0.4).
    public func render() -> String {
        var out = ""
        out.reserveCapacity(4096)
        out += "# HELP tandem_up 1 while the event loop turns.\n# TYPE tandem_up gauge\ntandem_up 1\n"
        out += "# HELP tandem_requests_total Client requests answered, by class (read, write, bypass) and status.\n"
        out += "# TYPE tandem_requests_total counter\n"
        // Ordered by class, then code (codes are three digits, so this is the order of their text too).
        for record in classRecords.sorted(by: { $0.requestClass < $1.requestClass }) {
            for (status, count) in record.countsByStatus {
                out += "tandem_requests_total{class=\"\(record.requestClass)\",code=\"\(status)\"} \(count)\n"
            }
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
        out += "# HELP tandem_shed_total Requests answered 503 overloaded, by the limit reached.\n"
        out += "# TYPE tandem_shed_total counter\n"
        for reason in ["pending_writes", "uncommitted_bytes", "connections", "read_queue", "standing_queue"] {
            out += "tandem_shed_total{reason=\"\(reason)\"} \(shedByReason[reason, default: 0])\n"
        }
        out += "# HELP tandem_rate_limited_total Requests answered 429, by the limit (per key or global).\n"
        out += "# TYPE tandem_rate_limited_total counter\n"
        for scope in ["key", "global"] {
            out += "tandem_rate_limited_total{scope=\"\(scope)\"} \(rateLimited[scope, default: 0])\n"
        }
        out += "# HELP tandem_commit_timeouts_total Writes answered 504 commit_timeout (outcome unknown).\n"
        out += "# TYPE tandem_commit_timeouts_total counter\ntandem_commit_timeouts_total \(commitTimeouts)\n"
        out += "# HELP tandem_open_connections Open connections, by listener.\n# TYPE tandem_open_connections gauge\n"
        out += "tandem_open_connections{listener=\"client\"} \(openClientConnections)\n"
        out += "tandem_open_connections{listener=\"admin\"} \(openAdminConnections)\n"
        out += "# HELP tandem_connections_accepted_total Client connections accepted.\n"
        out +=
            "# TYPE tandem_connections_accepted_total counter\ntandem_connections_accepted_total \(acceptedConnectionsTotal)\n"
        out += "# HELP tandem_upstream_connections Connections to the local app, open and idle in the pool.\n"
        out += "# TYPE tandem_upstream_connections gauge\n"
        out += "tandem_upstream_connections{state=\"open\"} \(upstreamConnectionsOpen)\n"
        out += "tandem_upstream_connections{state=\"idle\"} \(upstreamPoolIdle)\n"
        for name in families.keys.sorted() {
            let family = families[name]!
            out += "# HELP \(name) \(family.help)\n# TYPE \(name) \(family.type)\n"
            for labels in family.samples.keys.sorted() {
                let suffix = labels.isEmpty ? "" : "{\(labels)}"
                out += "\(name)\(suffix) \(formatValue(family.samples[labels]!))\n"
            }
        }
        return out
    }

    private func renderHistograms(into out: inout String) {
        out +=
            "# HELP tandem_request_duration_seconds Time from a complete request head to the end of the response, by class.\n"
        out += "# TYPE tandem_request_duration_seconds histogram\n"
        for record in classRecords.sorted(by: { $0.requestClass < $1.requestClass }) {
            let requestClass = record.requestClass
            let histogram = record.latency
            var cumulative: UInt64 = 0
            for (index, bound) in Metrics.latencyBucketsSeconds.enumerated() {
                cumulative += histogram.bucketCounts[index]
                out +=
                    "tandem_request_duration_seconds_bucket{class=\"\(requestClass)\",le=\"\(formatValue(bound))\"} \(cumulative)\n"
            }
            out += "tandem_request_duration_seconds_bucket{class=\"\(requestClass)\",le=\"+Inf\"} \(histogram.count)\n"
            out += "tandem_request_duration_seconds_sum{class=\"\(requestClass)\"} \(histogram.sumSeconds)\n"
            out += "tandem_request_duration_seconds_count{class=\"\(requestClass)\"} \(histogram.count)\n"
        }
    }

    private func formatValue(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
