import Foundation
import XCTest

/// The files against the published schemas: the Compose specification and the Kubernetes API (strict: an unknown
/// or misspelt field fails). The validators are Python tools, used when they are on PATH:
/// `pip install check-jsonschema kubernetes-validate`. Without them these tests skip, saying so.
final class SchemaValidationTests: XCTestCase {
    /// The oldest Kubernetes with native sidecars on by default, and a current one.
    static let kubernetesVersions = ["1.29.0", "1.32.0"]

    private func requireTool(_ name: String) throws {
        let found = try RepositoryFiles.run(["sh", "-c", "command -v \(name)"])
        if found.status != 0 {
            throw XCTSkip("\(name) is not on PATH (pip install \(name)); this schema check is skipped")
        }
    }

    func testTheComposeFileFollowsTheComposeSpecification() throws {
        try requireTool("check-jsonschema")
        let root = try RepositoryFiles.root()
        let result = try RepositoryFiles.run(
            ["check-jsonschema", "--builtin-schema", "vendor.compose-spec", "Docker/docker-compose.yml"],
            currentDirectory: root)
        XCTAssertEqual(result.status, 0, result.standardOutput + result.standardError)
    }

    func testTheRenderedManifestsFollowTheKubernetesAPIStrictly() throws {
        try requireTool("kubernetes-validate")
        try requireTool("kubectl")
        let root = try RepositoryFiles.root()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-k8s-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var files: [String] = []
        for variant in ["Docker/k8s", "Docker/k8s/tls"] {
            let rendered = try RepositoryFiles.run(["kubectl", "kustomize", variant], currentDirectory: root)
            XCTAssertEqual(rendered.status, 0, rendered.standardError)
            let file = directory.appendingPathComponent(variant.replacingOccurrences(of: "/", with: "-") + ".yaml")
            try Data(rendered.standardOutput.utf8).write(to: file)
            files.append(file.path)
        }
        for version in Self.kubernetesVersions {
            let result = try RepositoryFiles.run(["kubernetes-validate", "--strict", "--quiet", "-k", version] + files)
            XCTAssertEqual(result.status, 0, "Kubernetes \(version): \(result.standardOutput)\(result.standardError)")
        }
    }
}
