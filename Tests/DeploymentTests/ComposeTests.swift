import TandemConfig
import XCTest

/// Docker/docker-compose.yml: three app + sidecar pairs that agree with the configuration table and the image.
final class ComposeTests: XCTestCase {
    private struct Pair {
        let tandemService: String
        let appService: String
        let tandem: YAMLNode
        let app: YAMLNode
        /// The environment tandem runs with: the image's ENV overlaid with the service's.
        let environment: [String: String]
    }

    private func compose() throws -> YAMLNode {
        let documents = try RepositoryFiles.yamlFile("Docker/docker-compose.yml")
        XCTAssertEqual(documents.count, 1)
        return try XCTUnwrap(documents.first)
    }

    /// `${NAME:-default}` and `${NAME-default}` become the default, as compose does when NAME is unset.
    static func interpolate(_ text: String) -> String {
        var result = ""
        var rest = Substring(text)
        // Bounded by the text's length: every round consumes at least one `${`.
        while let open = rest.range(of: "${"), let close = rest[open.upperBound...].firstIndex(of: "}") {
            result += rest[..<open.lowerBound]
            let inner = rest[open.upperBound..<close]
            if let dash = inner.range(of: ":-") ?? inner.range(of: "-") {
                result += inner[dash.upperBound...]
            }
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }

    private func imageEnvironment() throws -> [String: String] {
        let dockerfile = Dockerfile(try RepositoryFiles.text("Docker/Dockerfile"))
        return dockerfile.environment(of: try XCTUnwrap(dockerfile.stage(named: "tandem")))
    }

    private func pairs() throws -> [Pair] {
        let services = try compose()["services"].map
        let image = try imageEnvironment()
        var pairs: [Pair] = []
        for (name, service) in services.sorted(by: { $0.key < $1.key }) where service["image"].string == "tandem:dev" {
            let mode = try XCTUnwrap(service["network_mode"].string, "\(name) shares its app's network namespace")
            XCTAssertTrue(mode.hasPrefix("service:"), "\(name): network_mode is service:<app>, not \(mode)")
            let appName = String(mode.dropFirst("service:".count))
            let app = try XCTUnwrap(services[appName], "\(name) shares the namespace of \(appName), which exists")
            var environment = image
            for (key, value) in service["environment"].map { environment[key] = Self.interpolate(value.text ?? "") }
            pairs.append(
                Pair(tandemService: name, appService: appName, tandem: service, app: app, environment: environment))
        }
        return pairs
    }

    func testThereAreThreePairsOfExampleKVAndItsSidecar() throws {
        let pairs = try pairs()
        XCTAssertEqual(pairs.count, 3)
        XCTAssertEqual(Set(pairs.map(\.appService)).count, 3, "each sidecar has its own app")
        for pair in pairs {
            XCTAssertEqual(pair.app["image"].string, "tandem-example-kv:dev", "\(pair.appService) runs example-kv")
            XCTAssertEqual(pair.app["build"]["target"].string, "example-kv")
            XCTAssertEqual(pair.tandem["build"]["target"].string, "tandem")
            XCTAssertEqual(
                pair.tandem["depends_on"][pair.appService]["restart"].bool, true,
                "the sidecar is restarted with its app, or it would be left in a dead network namespace")
        }
    }

    func testEveryTandemVariableInComposeIsInTheTable() throws {
        let services = try compose()["services"].map
        var names: [String] = []
        for service in services.values { names += service["environment"].map.keys }
        // The extension fields (x-...) hold the shared environment; check them too.
        for (key, value) in try compose().map where key.hasPrefix("x-") { names += value.map.keys }
        XCTAssertFalse(names.isEmpty)
        XCTAssertEqual(TandemTable.unknownNames(in: names), [], "tandem exits 2 on unknown TANDEM_* names")
    }

    func testEachSidecarsConfigurationIsAcceptedByTandemAndListsEveryReplica() throws {
        let pairs = try pairs()
        let nodeIDs = Set(pairs.compactMap { $0.environment["TANDEM_NODE_ID"] })
        XCTAssertEqual(nodeIDs.count, pairs.count, "node ids are set and unique")
        for pair in pairs {
            let configuration = try XCTUnwrap(TandemTable.load(pair.environment, context: pair.tandemService))
            XCTAssertEqual(Set(configuration.peers.map(\.id)), nodeIDs, "\(pair.tandemService) lists every replica")
            XCTAssertEqual(configuration.appState, .memory, "example-kv keeps its state in memory")
            XCTAssertNotNil(configuration.clusterSecret, "peers authenticate")
            XCTAssertEqual(configuration.dataDir, "/var/lib/tandem")
            XCTAssertEqual(configuration.upstream.host, "127.0.0.1", "the app is in the same network namespace")
        }
        // Each peer address is the DNS name of that node's pair (its app service owns the namespace) and its port.
        for pair in pairs {
            let configuration = try XCTUnwrap(TandemTable.load(pair.environment, context: pair.tandemService))
            let me = try XCTUnwrap(configuration.peers.first { $0.id == configuration.nodeID })
            XCTAssertEqual(
                me.address.host, pair.appService, "\(pair.tandemService) is reached through \(pair.appService)")
            XCTAssertEqual(Int(me.address.port), Int(configuration.peerListen.port))
        }
    }

    func testPublishedPortsAreTheSidecarsClientAndAdminListenersAndNeverTheAppsOwn() throws {
        var hostPorts: [String] = []
        for pair in try pairs() {
            let configuration = try XCTUnwrap(TandemTable.load(pair.environment, context: pair.tandemService))
            XCTAssertTrue(pair.tandem["ports"].isMissing, "a container in another's namespace cannot publish ports")
            let published = pair.app["ports"].list.compactMap(\.string)
            let containerPorts = Set(published.compactMap { $0.split(separator: ":").last.map(String.init) })
            XCTAssertEqual(
                containerPorts, ["\(configuration.listen.port)", "\(configuration.adminListen.port)"],
                "\(pair.appService) publishes \(pair.tandemService)'s client and admin ports")
            XCTAssertFalse(containerPorts.contains("\(configuration.upstream.port)"), "clients must not bypass Tandem")
            hostPorts += published.compactMap { $0.split(separator: ":").first.map(String.init) }
        }
        XCTAssertEqual(Set(hostPorts).count, hostPorts.count, "host ports do not collide")
    }

    func testHealthchecksAskTheSidecarsHealthzAndTheAppsHealthz() throws {
        for pair in try pairs() {
            let configuration = try XCTUnwrap(TandemTable.load(pair.environment, context: pair.tandemService))
            let tandemCheck = pair.tandem["healthcheck"]["test"].list.compactMap(\.string).joined(separator: " ")
            XCTAssertEqual(TandemTable.urlPort(in: tandemCheck, path: "/healthz"), "\(configuration.adminListen.port)")
            let appCheck = pair.app["healthcheck"]["test"].list.compactMap(\.string).joined(separator: " ")
            XCTAssertEqual(TandemTable.urlPort(in: appCheck, path: "/healthz"), "\(configuration.upstream.port)")
            XCTAssertEqual(pair.tandem["depends_on"][pair.appService]["condition"].string, "service_healthy")
            let command = pair.app["command"].list.compactMap(\.text)
            XCTAssertEqual(
                command, ["--port", "\(configuration.upstream.port)"], "example-kv listens on the upstream port")
        }
    }

    func testEachDataDirIsItsOwnNamedVolume() throws {
        let declared = Set(try compose()["volumes"].map.keys)
        var used: [String] = []
        for pair in try pairs() {
            let mounts = pair.tandem["volumes"].list.compactMap(\.string)
            let dataDir = try XCTUnwrap(pair.environment["TANDEM_DATA_DIR"])
            let mount = try XCTUnwrap(
                mounts.first { $0.hasSuffix(":\(dataDir)") }, "\(pair.tandemService) mounts \(dataDir)")
            let volume = String(mount.split(separator: ":")[0])
            XCTAssertTrue(declared.contains(volume), "\(volume) is a named volume")
            used.append(volume)
        }
        XCTAssertEqual(Set(used).count, 3, "no two nodes share a write-ahead log")
    }

    func testStoppingWaitsForTheHandoffAndTheDrain() throws {
        for pair in try pairs() {
            let grace = try XCTUnwrap(pair.tandem["stop_grace_period"].string)
            XCTAssertTrue(grace.hasSuffix("s"))
            let seconds = try XCTUnwrap(Int(grace.dropLast()))
            XCTAssertGreaterThan(seconds, 2 + 10, "handoff (2 s) and drain (10 s) fit before SIGKILL")
        }
    }

    func testTheWalkThroughUsesOnlyPortsAndServicesTheComposeFileHas() throws {
        let readme = try RepositoryFiles.text("Docker/README.md")
        let services = Set(try compose()["services"].map.keys)
        var published: Set<String> = []
        for pair in try pairs() {
            published.formUnion(
                pair.app["ports"].list.compactMap { $0.string?.split(separator: ":").first.map(String.init) })
        }
        var mentioned: Set<String> = []
        var rest = Substring(readme)
        // Bounded by the README's length: each round consumes the match.
        while let match = rest.range(of: "localhost:") {
            mentioned.insert(String(rest[match.upperBound...].prefix { $0.isNumber }))
            rest = rest[match.upperBound...]
        }
        XCTAssertFalse(mentioned.isEmpty)
        XCTAssertTrue(
            mentioned.isSubset(of: published), "README ports \(mentioned.subtracting(published)) are not published")
        for service in ["app1", "tandem1", "app2", "tandem2"] {
            XCTAssertTrue(services.contains(service) && readme.contains(service), "\(service) in the walk-through")
        }
    }

    func testInterpolationTakesTheDefaultLikeCompose() {
        XCTAssertEqual(Self.interpolate("a-${X:-b-c}-d"), "a-b-c-d")
        XCTAssertEqual(Self.interpolate("${X-y}"), "y")
        XCTAssertEqual(Self.interpolate("plain"), "plain")
    }
}
