import XCTest

@testable import TandemSidecar

/// Requests are counted per class in records found by name; the exposition must list them as it always did:
/// ordered by class, then code, one line per code seen, and a histogram per class.
final class MetricsRequestCountTests: XCTestCase {
    func testCountsAreListedByClassThenCodeWhateverTheOrderTheyArrived() {
        let metrics = Metrics()
        let recorded: [(String, Int)] = [
            ("write", 503), ("read", 200), ("read", 404), ("bypass", 101), ("read", 200), ("write", 200),
            ("read", 1000), ("read", 0),
        ]
        for (requestClass, status) in recorded {
            metrics.recordRequest(class: requestClass, status: status, latencyMicros: 700)
        }
        let lines = metrics.render().split(separator: "\n").filter { $0.hasPrefix("tandem_requests_total{") }
        XCTAssertEqual(
            lines,
            [
                #"tandem_requests_total{class="bypass",code="101"} 1"#,
                #"tandem_requests_total{class="read",code="0"} 1"#,
                #"tandem_requests_total{class="read",code="200"} 2"#,
                #"tandem_requests_total{class="read",code="404"} 1"#,
                #"tandem_requests_total{class="read",code="1000"} 1"#,
                #"tandem_requests_total{class="write",code="200"} 1"#,
                #"tandem_requests_total{class="write",code="503"} 1"#,
            ])
        XCTAssertEqual(metrics.requestCounts[Metrics.RequestKey(requestClass: "read", status: 200)], 2)
        XCTAssertEqual(metrics.latencyByClass["read"]?.count, 5)
        let text = metrics.render()
        XCTAssertTrue(text.contains(#"tandem_request_duration_seconds_bucket{class="read",le="0.001"} 5"#), text)
        XCTAssertTrue(text.contains(#"tandem_request_duration_seconds_count{class="write"} 2"#), text)
        XCTAssertTrue(text.contains(#"tandem_request_duration_seconds_bucket{class="bypass",le="0.0005"} 0"#), text)
    }
}
