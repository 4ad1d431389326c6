import XCTest

@testable import TandemConfig

/// Walks the edges of every numeric variable in the table: the minimum and maximum accepted, one unit beyond
/// each, zero, and huge values. Each either loads (and everything derived from the configuration can be built),
/// or is refused with the one-line error the executable prints before exiting 2.
final class EdgeValueTests: XCTestCase {
    /// One edge value of one variable, with whether the table's range admits it.
    struct Edge {
        let text: String
        let inRange: Bool
    }

    /// The edges of a numeric kind, in the syntax an operator types.
    static func edges(of kind: ConfigValueKind) -> [Edge]? {
        // 2^63 - 1, 2^63, and more digits than any parser reads.
        let huge = ["9223372036854775807", "9223372036854775808", "99999999999999999999999"]
        switch kind {
        case .duration(let minMs, let maxMs):
            var result = [
                Edge(text: ConfigFormat.duration(minMs), inRange: true),
                Edge(text: ConfigFormat.duration(maxMs), inRange: true),
                Edge(text: "\(maxMs + 1)ms", inRange: false), Edge(text: "0ms", inRange: minMs == 0),
                Edge(text: "0s", inRange: minMs == 0), Edge(text: "1000000h", inRange: false),
            ]
            if minMs > 0 { result.append(Edge(text: "\(minMs - 1)ms", inRange: false)) }
            result += huge.map { Edge(text: $0 + "ms", inRange: false) }
            return result
        case .size(let minBytes, let maxBytes):
            var result = [
                Edge(text: ConfigFormat.size(minBytes), inRange: true),
                Edge(text: ConfigFormat.size(maxBytes), inRange: true),
                Edge(text: "\(maxBytes + 1)B", inRange: false), Edge(text: "0B", inRange: minBytes == 0),
                Edge(text: "1000000TiB", inRange: false),
            ]
            if minBytes > 0 { result.append(Edge(text: "\(minBytes - 1)B", inRange: false)) }
            result += huge.map { Edge(text: $0 + "B", inRange: false) }
            return result
        case .count(let min, let max):
            var result = [
                Edge(text: "\(min)", inRange: true), Edge(text: "\(max)", inRange: true),
                Edge(text: "\(max + 1)", inRange: false), Edge(text: "0", inRange: min == 0),
            ]
            if min > 0 { result.append(Edge(text: "\(min - 1)", inRange: false)) }
            result += huge.map { Edge(text: $0, inRange: false) }
            return result
        case .number(let min, let max):
            var result = [
                Edge(text: ConfigFormat.number(min), inRange: true),
                Edge(text: ConfigFormat.number(max), inRange: true),
                Edge(text: ConfigFormat.number(max) + ".000001", inRange: false), Edge(text: "0", inRange: min == 0),
            ]
            if min == 0.1 { result.append(Edge(text: "0.099999", inRange: false)) }
            result += huge.map { Edge(text: $0, inRange: false) }
            return result
        case .cadence(let minEntries, let maxEntries, let minBytes, let maxBytes):
            // Both halves: the entry count's edges and the size's, each one beyond.
            let counts = edges(of: .count(min: minEntries, max: maxEntries)) ?? []
            let sizes = edges(of: .size(minBytes: minBytes, maxBytes: maxBytes)) ?? []
            return counts + sizes
        default:
            return nil
        }
    }

    /// Other variables set beside `name` so that an in-range value is not refused for a relation with a default
    /// (a 10 s heartbeat needs a longer election timeout, a 1 GiB body a larger uncommitted cap, ...).
    static func companions(of name: String) -> [String: String] {
        switch name {
        case "TANDEM_HEARTBEAT_INTERVAL": return ["TANDEM_ELECTION_TIMEOUT": "1m"]
        case "TANDEM_ELECTION_TIMEOUT": return ["TANDEM_HEARTBEAT_INTERVAL": "1ms"]
        case "TANDEM_QUEUE_TARGET": return ["TANDEM_WRITE_TIMEOUT": "10m"]
        case "TANDEM_WRITE_TIMEOUT": return ["TANDEM_QUEUE_TARGET": "1ms"]
        case "TANDEM_MAX_BODY": return ["TANDEM_MAX_UNCOMMITTED": "64GiB"]
        case "TANDEM_MAX_UNCOMMITTED": return ["TANDEM_MAX_BODY": "1B"]
        default: return [:]
        }
    }

    /// Values the range admits but a relation with another variable refuses whatever that variable is set to:
    /// the queue target is at least 1 ms and must be below the write timeout.
    static let refusedByEveryCombination: Set<String> = ["TANDEM_WRITE_TIMEOUT=1ms"]

    func testEveryNumericVariableLoadsOrIsRefusedWithOneLineAtEachEdge() throws {
        var walked = 0
        for variable in TandemConfiguration.variables {
            guard let edges = Self.edges(of: variable.kind) else { continue }
            for edge in edges {
                walked += 1
                let label = "\(variable.name)=\(edge.text)"
                var environment = Self.companions(of: variable.name)
                environment[variable.name] = edge.text
                let expectLoad = edge.inRange && !Self.refusedByEveryCombination.contains(label)
                let configuration: TandemConfiguration
                do {
                    configuration = try TandemConfiguration.load(
                        environment: environment, hostName: "n1", isReadableFile: { _ in true })
                } catch {
                    XCTAssertFalse(expectLoad, "\(label) is inside \(variable.accepts) but was refused: \(error)")
                    checkOneLineError(error, naming: variable.name, value: edge.text, label: label)
                    continue
                }
                XCTAssertTrue(expectLoad, "\(label) is outside \(variable.accepts) but loaded")
                try checkDerivedValues(of: configuration, label: label)
            }
        }
        XCTAssertGreaterThan(walked, 150, "every numeric variable was walked")
    }

    /// Values in range for each variable on its own, refused only for a relation with a default, name both.
    func testAnInRangeValueRefusedForARelationNamesItself() {
        let cases: [String: String] = [
            "TANDEM_ELECTION_TIMEOUT": "10ms", "TANDEM_HEARTBEAT_INTERVAL": "10s", "TANDEM_MAX_BODY": "1GiB",
            "TANDEM_MAX_UNCOMMITTED": "1KiB", "TANDEM_WRITE_TIMEOUT": "1ms",
        ]
        for (name, value) in cases.sorted(by: { $0.key < $1.key }) {
            do {
                let configuration = try TandemConfiguration.load(
                    environment: [name: value], hostName: "n1", isReadableFile: { _ in true })
                XCTFail("\(name)=\(value) loaded: \(configuration)")
            } catch {
                XCTAssertEqual(error.kind, .conflict, "\(name)=\(value)")
                XCTAssertTrue(error.description.contains("\(name)=\"\(value)\""), error.description)
                XCTAssertFalse(error.description.contains("\n"), error.description)
            }
        }
    }

    /// The bounds of the failure-detection variables are the ones the consensus core's tests walk
    /// (`LeaseSafetyTests.testEveryAcceptedTimingDerivesAStickinessAndLeaseThatSatisfyTheRelations`): widening
    /// one here must widen it there.
    func testFailureDetectionBoundsMatchTheOnesTheConsensusTestsWalk() {
        let expected: [String: ConfigValueKind] = [
            "TANDEM_HEARTBEAT_INTERVAL": .duration(minMs: 1, maxMs: 10_000),
            "TANDEM_ELECTION_TIMEOUT": .duration(minMs: 10, maxMs: 60_000),
            "TANDEM_PHI_THRESHOLD": .number(min: 0.1, max: 100),
            "TANDEM_PHI_MIN_STDDEV": .duration(minMs: 1, maxMs: 60_000),
            "TANDEM_PHI_ACCEPTABLE_PAUSE": .duration(minMs: 0, maxMs: 60_000),
        ]
        for (name, kind) in expected {
            XCTAssertEqual(TandemConfiguration.variable(named: name).kind, kind, name)
        }
    }

    /// Everything the executable derives from a configuration through this module must build.
    func checkDerivedValues(of configuration: TandemConfiguration, label: String) throws {
        configuration.checkInvariants()
        _ = configuration.warnings
        _ = configuration.classifier
        XCTAssertFalse(configuration.description.isEmpty, label)
        // The effective values are written in the syntax `load` accepts: feeding them back gives the same values.
        var environment: [String: String] = [:]
        for (name, value) in configuration.effectiveValues where !value.isEmpty { environment[name] = value }
        let reloaded = try TandemConfiguration.load(
            environment: environment, hostName: "n1", isReadableFile: { _ in true })
        XCTAssertEqual(reloaded, configuration, label)
    }

    func checkOneLineError(_ error: ConfigError, naming name: String, value: String, label: String) {
        XCTAssertNotEqual(error.kind, .unknownVariable, label)
        let line = error.description
        XCTAssertFalse(line.contains("\n"), "\(label): one line: \(line)")
        XCTAssertTrue(line.contains("; expected "), "\(label): says what is accepted: \(line)")
        if error.kind == .conflict {
            XCTAssertTrue(line.contains("\(name)=\"\(value)\""), "\(label): names the variable and value: \(line)")
        } else {
            XCTAssertEqual(error.variable, name, label)
            XCTAssertTrue(line.hasPrefix("\(name)=\"\(value.prefix(ConfigError.shownValueMaxCharacters))"), line)
        }
    }
}
