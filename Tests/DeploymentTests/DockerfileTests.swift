import TandemConfig
import XCTest

/// Docker/Dockerfile agrees with the configuration table, the README's build and the runtime's needs.
final class DockerfileTests: XCTestCase {
    private func dockerfile() throws -> Dockerfile { Dockerfile(try RepositoryFiles.text("Docker/Dockerfile")) }

    private func tandemStage() throws -> (Dockerfile, Dockerfile.Stage) {
        let file = try dockerfile()
        let stage = try XCTUnwrap(file.stages.last, "the Dockerfile has stages")
        XCTAssertEqual(stage.name, "tandem", "the default (last) target is the tandem image")
        return (file, stage)
    }

    func testEveryEnvDefaultIsAVariableTandemKnowsAndTandemAcceptsItsValue() throws {
        let (file, stage) = try tandemStage()
        let environment = file.environment(of: stage)
        XCTAssertEqual(TandemTable.unknownNames(in: environment.keys), [], "tandem exits 2 on unknown TANDEM_* names")
        for name in [
            "TANDEM_LISTEN", "TANDEM_ADMIN_LISTEN", "TANDEM_PEER_LISTEN", "TANDEM_DATA_DIR", "TANDEM_LOG_FORMAT",
        ] {
            XCTAssertNotNil(environment[name], "\(name) is documented with an ENV default")
        }
        XCTAssertEqual(environment["TANDEM_DATA_DIR"], "/var/lib/tandem")
        XCTAssertEqual(environment["TANDEM_LOG_FORMAT"], "json")
        let configuration = TandemTable.load(environment, context: "the image's ENV")
        XCTAssertEqual(configuration?.logFormat, .json)
    }

    func testExposedPortsAreTheListenersDefaultPorts() throws {
        let (file, stage) = try tandemStage()
        let environment = file.environment(of: stage)
        let configuration = try XCTUnwrap(TandemTable.load(environment, context: "the image's ENV"))
        let exposed = Set(stage.all("EXPOSE").flatMap { $0.arguments.split(separator: " ").map { String($0) } })
        let listeners = [configuration.listen, configuration.peerListen, configuration.adminListen].map { "\($0.port)" }
        XCTAssertEqual(exposed, Set(listeners), "EXPOSE lists exactly the client, peer and admin ports")
        XCTAssertEqual(
            Set(listeners),
            Set(
                ["TANDEM_LISTEN", "TANDEM_PEER_LISTEN", "TANDEM_ADMIN_LISTEN"].map { "\(TandemTable.defaultPort($0))" }),
            "the image keeps the ports of tandem --help")
        XCTAssertEqual(Set(listeners), ["8080", "7400", "9400"])
    }

    func testTheHealthcheckAsksHealthzOnTheAdminPort() throws {
        let (file, stage) = try tandemStage()
        let healthcheck = try XCTUnwrap(file.effective("HEALTHCHECK", of: stage), "the tandem image has a HEALTHCHECK")
        XCTAssertTrue(healthcheck.contains("/healthz"), "liveness only: /healthz never depends on peers or the app")
        XCTAssertFalse(healthcheck.contains("/readyz"), "a HEALTHCHECK on readiness would mark a lagging node dead")
        let port = try XCTUnwrap(TandemTable.urlPort(in: healthcheck, path: "/healthz"))
        let adminPort = String(
            try XCTUnwrap(file.environment(of: stage)["TANDEM_ADMIN_LISTEN"]?.split(separator: ":").last))
        if port == "${TANDEM_ADMIN_LISTEN##*:}" {
            // Shell expansion at check time: the port of TANDEM_ADMIN_LISTEN, whatever it is set to.
            XCTAssertEqual(adminPort, "\(TandemTable.defaultPort("TANDEM_ADMIN_LISTEN"))")
        } else {
            XCTAssertEqual(port, adminPort, "the HEALTHCHECK port is the admin listener's")
        }
        // The same expansion, done by the shell the HEALTHCHECK runs in.
        let expanded = try RepositoryFiles.run(
            ["sh", "-c", "TANDEM_ADMIN_LISTEN=0.0.0.0:9400; echo \"${TANDEM_ADMIN_LISTEN##*:}\""])
        XCTAssertEqual(expanded.standardOutput, "9400\n")
    }

    func testTheImageBuildsWithTheSameCommandsAsTheREADME() throws {
        let file = try dockerfile()
        let build = try XCTUnwrap(file.stage(named: "build"), "a build stage compiles the binaries")
        XCTAssertTrue(build.base.hasPrefix("swift:6."), "a Swift 6 toolchain image builds: \(build.base)")
        let runs = build.all("RUN").map(\.arguments)
        let swiftBuilds = runs.filter { $0.contains("swift build") }
        XCTAssertEqual(swiftBuilds, ["swift build -c release"], "one build, exactly the README's command")
        XCTAssertTrue(runs.contains("scripts/ensure-deps.sh"), "the C libraries come from the README's script")
        // The README's demo builds with scripts/demo.sh; both must say the same thing.
        let demo = try RepositoryFiles.text("scripts/demo.sh")
        XCTAssertTrue(demo.contains("scripts/ensure-deps.sh"))
        let demoBuilds = demo.split(separator: "\n").filter { $0.hasPrefix("swift build") }
        XCTAssertEqual(demoBuilds.count, 1, "the demo builds once")
        XCTAssertTrue(demoBuilds.allSatisfy { $0.hasPrefix("swift build -c release") && !$0.contains(" -Xswiftc") })
        if try RepositoryFiles.exists("README.md") {
            let readme = try RepositoryFiles.text("README.md")
            for line in readme.split(separator: "\n") where line.contains("swift build ") && line.contains("-c release")
            {
                XCTAssertTrue(line.contains("swift build -c release"), "README builds differently: \(line)")
            }
        }
    }

    func testEverythingTheBuildCopiesExistsInTheRepository() throws {
        let file = try dockerfile()
        let build = try XCTUnwrap(file.stage(named: "build"))
        for copy in build.all("COPY") {
            let sources = copy.arguments.split(separator: " ").dropLast().filter { !$0.hasPrefix("--") }
            for source in sources where !source.contains("[") {
                XCTAssertTrue(try RepositoryFiles.exists(String(source)), "COPY \(source): not in the repository")
            }
        }
        XCTAssertTrue(try RepositoryFiles.exists("Docker/Dockerfile.dockerignore"), "the build context skips .build")
    }

    func testTheRuntimeRunsTandemAsANonRootUserWithItsDataOnAVolume() throws {
        let (file, stage) = try tandemStage()
        XCTAssertEqual(file.effective("ENTRYPOINT", of: stage), "[\"tandem\"]")
        let user = try XCTUnwrap(file.effective("USER", of: stage))
        let uid = try XCTUnwrap(Int(user.split(separator: ":")[0]), "a numeric USER, so runAsNonRoot can check it")
        XCTAssertNotEqual(uid, 0)
        let volumes = stage.all("VOLUME").map(\.arguments).joined()
        XCTAssertTrue(volumes.contains("\"\(file.environment(of: stage)["TANDEM_DATA_DIR"] ?? "?")\""), volumes)
        XCTAssertEqual(file.effective("STOPSIGNAL", of: stage), "SIGTERM", "SIGTERM starts the handoff and drain")
    }

    func testTheRuntimeIsSlimDebianWithTheLibrariesTheBinariesLoad() throws {
        let file = try dockerfile()
        let (_, stage) = try tandemStage()
        let lineage = file.lineage(of: stage)
        let root = try XCTUnwrap(lineage.last)
        XCTAssertTrue(root.base.hasPrefix("debian:") && root.base.hasSuffix("-slim"), "slim Debian: \(root.base)")
        let installs = lineage.flatMap { $0.all("RUN") }.map(\.arguments).joined(separator: " ")
        let required = [
            "libevent-2.1-7", "libevent-core-2.1-7", "libevent-extra-2.1-7", "libevent-openssl-2.1-7",
            "libevent-pthreads-2.1-7", "libssl3", "libstdc++6", "ca-certificates", "curl",
        ]
        for package in required {
            XCTAssertTrue(
                installs.contains(" \(package) ") || installs.contains(" \(package)\t"), "\(package) is installed")
        }
        XCTAssertTrue(installs.contains("not found"), "the build fails when ldd finds a missing library")
        let copies = lineage.flatMap { $0.all("COPY") }.map(\.arguments)
        XCTAssertTrue(copies.contains { $0.hasPrefix("--from=build ") }, "binaries come from the build stage")
    }

    func testTheExampleAppHasItsOwnTargetWithItsOwnHealthcheck() throws {
        let file = try dockerfile()
        let app = try XCTUnwrap(file.stage(named: "example-kv"))
        XCTAssertEqual(file.effective("ENTRYPOINT", of: app), "[\"example-kv\"]")
        let healthcheck = try XCTUnwrap(file.effective("HEALTHCHECK", of: app))
        let configuration = TandemConfiguration.defaults()
        XCTAssertEqual(
            TandemTable.urlPort(in: healthcheck, path: "/healthz"), "\(configuration.upstream.port)",
            "example-kv listens where TANDEM_UPSTREAM points by default")
    }
}
