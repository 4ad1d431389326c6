import Foundation
import XCTest

/// What scripts/docker-test.sh assumes about the files it builds and runs. The script itself needs root and a
/// Docker engine, so it is not run here; these tests fail when an edit to the Dockerfile, its ignore file or the
/// compose file would break it, before anyone runs it.
final class DockerTestScriptTests: XCTestCase {
    private static let stagingCopy = "COPY --from=build /staging/ /"

    private func dockerfileText() throws -> String { try RepositoryFiles.text("Docker/Dockerfile") }

    /// The fast path (`--prebuilt`) takes the Dockerfile from `FROM ... AS runtime-base` to the end and points the
    /// one copy out of the build stage at binaries built on the host. A second copy from `build`, or a runtime
    /// stage built on `build`, would leave the derived Dockerfile naming a stage it does not have.
    func testThePrebuiltPathReplacesTheOnlyThingTheRuntimeTakesFromTheBuildStage() throws {
        let lines = try dockerfileText().split(separator: "\n").map(String.init)
        let start = try XCTUnwrap(
            lines.firstIndex { $0.hasPrefix("FROM ") && $0.hasSuffix(" AS runtime-base") },
            "a line `FROM <image> AS runtime-base` starts the runtime stages")
        let runtimeLines = lines[start...]
        XCTAssertEqual(runtimeLines.filter { $0 == Self.stagingCopy }.count, 1, "one `\(Self.stagingCopy)` line")
        XCTAssertEqual(
            runtimeLines.filter { $0.contains("--from=build") }, [Self.stagingCopy],
            "nothing else in the runtime stages copies from the build stage")

        let dockerfile = Dockerfile(try dockerfileText())
        let runtimeBase = try XCTUnwrap(dockerfile.stage(named: "runtime-base"))
        let stagesFromRuntimeBase = try XCTUnwrap(dockerfile.stages.firstIndex { $0.name == "runtime-base" })
        for stage in dockerfile.stages[stagesFromRuntimeBase...] {
            let lineage = dockerfile.lineage(of: stage).compactMap(\.name)
            XCTAssertFalse(lineage.contains("build"), "\(stage.name ?? "?") does not build on the build stage")
            XCTAssertEqual(dockerfile.lineage(of: stage).last?.name, runtimeBase.name)
        }
    }

    /// The script makes exactly two images locally, named by reading the FROM lines of the stages `build` and
    /// `runtime-base` with the ARG defaults filled in. Any other external base would have to be pulled.
    func testTheOnlyExternalBaseImagesAreTheTwoTheScriptMakes() throws {
        let dockerfile = Dockerfile(try dockerfileText())
        let stageNames = Set(dockerfile.stages.compactMap(\.name))
        let external = dockerfile.stages.filter { !stageNames.contains($0.base) }
        XCTAssertEqual(external.compactMap(\.name).sorted(), ["build", "runtime-base"])
        for stage in external {
            XCTAssertFalse(stage.base.contains("$"), "\(stage.base): every ARG in FROM has a default")
        }
        let arguments = dockerfile.globalArguments
        let build = try XCTUnwrap(dockerfile.stage(named: "build"))
        let runtime = try XCTUnwrap(dockerfile.stage(named: "runtime-base"))
        let swift = try XCTUnwrap(arguments["SWIFT_VERSION"]), debian = try XCTUnwrap(arguments["DEBIAN_RELEASE"])
        XCTAssertEqual(build.base, "swift:\(swift)-\(debian)")
        XCTAssertEqual(runtime.base, "debian:\(debian)-slim", "the script debootstraps DEBIAN_RELEASE for it")
    }

    /// The classic builder (the only one in Debian 12's docker.io) reads no Dockerfile-specific ignore file, so the
    /// script turns Dockerfile.dockerignore into `tar --exclude` patterns. Negations and character classes have no
    /// such translation; `**/` is understood only as a leading "at any depth".
    func testTheIgnorePatternsAreOnesTheScriptTranslatesToTar() throws {
        let patterns = try RepositoryFiles.text("Docker/Dockerfile.dockerignore").split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        XCTAssertTrue(patterns.contains("**/.build"), "the build products stay out of the context")
        for pattern in patterns {
            XCTAssertFalse(pattern.hasPrefix("!"), "\(pattern): no negation")
            XCTAssertFalse(pattern.contains("[") || pattern.contains("?"), "\(pattern): no character classes")
            XCTAssertFalse(pattern.dropFirst(3).contains("**"), "\(pattern): ** only as a leading **/")
        }
    }

    /// The walk-through addresses the pairs as app1..app3 / tandem1..tandem3, reaches Tandem's client port 8080 and
    /// admin port 9400 at the app container's address, and reads each app's /dump on 127.0.0.1:3000.
    func testTheComposeServicesAndPortsAreTheOnesTheWalkThroughUses() throws {
        let compose = try XCTUnwrap(try RepositoryFiles.yamlFile("Docker/docker-compose.yml").first)
        let services = compose["services"].map
        XCTAssertEqual(Set(services.keys), ["app1", "app2", "app3", "tandem1", "tandem2", "tandem3"])
        for n in 1...3 {
            let tandem = try XCTUnwrap(services["tandem\(n)"]), app = try XCTUnwrap(services["app\(n)"])
            XCTAssertEqual(tandem["network_mode"].string, "service:app\(n)")
            XCTAssertEqual(tandem["environment"]["TANDEM_LISTEN"].string, "0.0.0.0:8080")
            XCTAssertEqual(tandem["environment"]["TANDEM_ADMIN_LISTEN"].string, "0.0.0.0:9400")
            XCTAssertEqual(tandem["environment"]["TANDEM_UPSTREAM"].string, "127.0.0.1:3000")
            XCTAssertEqual(app["command"].list.compactMap(\.string), ["--port", "3000"])
            XCTAssertEqual(app["image"].string, "tandem-example-kv:dev")
            XCTAssertEqual(tandem["image"].string, "tandem:dev")
        }
    }
}
