import Foundation
import XCTest

/// The repository stands on its own: no file points its reader at a document that is not in it.
final class SelfContainedRepositoryTests: XCTestCase {
    /// Names of documents that exist only outside this repository (the team's planning notes). Built from parts,
    /// so that this file does not itself name them.
    private let outsideDocuments = ["PRODUCT", "STYLE", "PITFALLS"].map { $0 + ".md" } + [".." + "/shared"]

    func testNoFileCitesADocumentOutsideTheRepository() throws {
        let root = try RepositoryFiles.root()
        let enumerator = try XCTUnwrap(FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil))
        var citations: [String] = []
        var scanned = 0
        for case let url as URL in enumerator {
            let relative = String(url.path.dropFirst(root.path.count + 1))
            if relative.hasPrefix(".") || relative.contains("/.") || relative.hasPrefix("bench-results") {
                enumerator.skipDescendants()
                continue
            }
            let name = url.lastPathComponent
            guard
                ["swift", "md", "sh", "yaml", "yml", "py", "lua", "toml"].contains(url.pathExtension)
                    || name == "Dockerfile"
            else { continue }
            guard let text = try? String(contentsOf: url, encoding: .utf8) else { continue }
            scanned += 1
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                for document in outsideDocuments where line.contains(document) {
                    citations.append("\(relative):\(number + 1): \(document)")
                }
            }
        }
        XCTAssertGreaterThan(scanned, 100, "the walk found the repository's files")
        XCTAssertEqual(citations, [], "files cite documents that are not in the repository")
    }
}
