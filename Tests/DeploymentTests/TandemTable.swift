import TandemConfig
import XCTest

/// What the deployment files must agree with: the one table of `TANDEM_*` variables that `tandem --help` prints
/// and `TandemConfiguration.load` parses.
enum TandemTable {
    static let names = Set(TandemConfiguration.variables.map(\.name))

    /// The default port of a listener variable, from the table's default `host:port`.
    static func defaultPort(_ name: String) -> Int {
        let variable = TandemConfiguration.variable(named: name)
        guard let port = variable.defaultValue.split(separator: ":").last.flatMap({ Int($0) }) else {
            preconditionFailure("\(name) has no port in its default \(variable.defaultValue)")
        }
        return port
    }

    /// The configuration `tandem` would run with in `environment`, checked by the real loader; a value Tandem
    /// would refuse at start fails the test with Tandem's own one-line error.
    static func load(
        _ environment: [String: String], context: String, file: StaticString = #filePath, line: UInt = #line
    ) -> TandemConfiguration? {
        do {
            return try TandemConfiguration.load(
                environment: environment, hostName: "test-host", isReadableFile: { _ in true })
        } catch {
            XCTFail("\(context): tandem would refuse to start: \(error)", file: file, line: line)
            return nil
        }
    }

    /// Names in `environment` that look like Tandem's but are not in the table (tandem exits 2 on them).
    static func unknownNames(in names: some Sequence<String>) -> [String] {
        names.filter { $0.hasPrefix("TANDEM_") && !self.names.contains($0) }.sorted()
    }

    /// The port of the first `scheme://host:port/path` URL in `text` (an IPv4 or DNS host), if there is one.
    static func urlPort(in text: String, path: String) -> String? {
        guard let scheme = text.range(of: "://") else { return nil }
        let afterScheme = text[scheme.upperBound...]
        guard let colon = afterScheme.firstIndex(of: ":"),
            let pathStart = afterScheme.range(of: "/\(path.drop { $0 == "/" })", range: colon..<afterScheme.endIndex)
        else { return nil }
        return String(afterScheme[afterScheme.index(after: colon)..<pathStart.lowerBound])
    }
}
