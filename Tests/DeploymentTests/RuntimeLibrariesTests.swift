import Foundation
import XCTest

/// The runtime image installs every shared library the built binaries load. Checked on a Debian machine (the
/// image's own distribution) against binaries already built in `.build` — `scripts/test.sh` builds them first —
/// or in the directory `TANDEM_BUILD_DIR` names. Skipped, saying so, without binaries or without dpkg.
final class RuntimeLibrariesTests: XCTestCase {
    /// Packages every Debian image has, so the Dockerfile need not name them.
    static let essentialPackages: Set<String> = ["libc6", "libgcc-s1"]

    private func binaries() throws -> [String] {
        let root = try RepositoryFiles.root()
        var directories = [".build/release", ".build/debug"].map { root.appendingPathComponent($0).path }
        if let override = ProcessInfo.processInfo.environment["TANDEM_BUILD_DIR"] {
            directories.insert(override, at: 0)
        }
        for directory in directories {
            let found = ["tandem", "example-kv"].map { "\(directory)/\($0)" }
            if found.allSatisfy({ FileManager.default.isExecutableFile(atPath: $0) }) { return found }
        }
        throw XCTSkip("no built tandem and example-kv in \(directories); run scripts/test.sh or set TANDEM_BUILD_DIR")
    }

    /// The apt packages the runtime stages install.
    private func installedPackages() throws -> Set<String> {
        let dockerfile = Dockerfile(try RepositoryFiles.text("Docker/Dockerfile"))
        let stage = try XCTUnwrap(dockerfile.stage(named: "tandem"))
        let runs = dockerfile.lineage(of: stage).flatMap { $0.all("RUN") }.map(\.arguments)
        let install = try XCTUnwrap(runs.first { $0.contains("apt-get install") }, "the runtime installs packages")
        let words = install.components(separatedBy: "apt-get install").last?.split(separator: " ") ?? []
        return Set(words.prefix { $0 != "&&" }.filter { !$0.hasPrefix("-") }.map(String.init))
    }

    func testEverySharedLibraryTheBinariesLoadComesFromAnInstalledPackageOrTheSwiftCopy() throws {
        let binaries = try binaries()
        guard try RepositoryFiles.run(["sh", "-c", "command -v dpkg"]).status == 0 else {
            throw XCTSkip("dpkg is not available: this is not a Debian machine like the image")
        }
        let packages = try installedPackages().union(Self.essentialPackages)
        let listing = try RepositoryFiles.run(["ldd"] + binaries)
        XCTAssertEqual(listing.status, 0, listing.standardError)
        XCTAssertFalse(listing.standardOutput.contains("not found"), listing.standardOutput)
        var paths: [String] = []
        for line in listing.standardOutput.split(separator: "\n") {
            let fields = line.split(separator: " ")
            // Swift's own libraries are copied from the toolchain by the build stage.
            if fields.count >= 3, fields[1] == "=>", !fields[2].contains("/lib/swift/") {
                paths.append(String(fields[2]))
            }
        }
        // One shell for every lookup (dpkg is slow to start). Debian's merged /usr: dpkg may know a file under
        // /lib or /usr/lib, as the link or as its target. Prints "path<TAB>package, package: file" per library.
        let lookup = """
            for lib in "$@"; do found=""; for p in "$lib" "$(readlink -f "$lib")"; do for q in "$p" "${p#/usr}" "/usr$p"; do
            [ -z "$found" ] && found=$(dpkg -S "$q" 2>/dev/null | head -1); done; done; printf '%s\t%s\n' "$lib" "$found"; done
            """
        let owners = try RepositoryFiles.run(["sh", "-c", lookup, "sh"] + Array(Set(paths)).sorted())
        var checked = 0
        for line in owners.standardOutput.split(separator: "\n") {
            let columns = line.split(separator: "\t", omittingEmptySubsequences: false)
            let owner = columns.count == 2 ? columns[1].split(separator: ":").first ?? "" : ""
            let names = owner.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            XCTAssertTrue(
                names.contains { packages.contains($0) },
                "\(columns[0]) comes from \(names), which the image does not install")
            checked += 1
        }
        XCTAssertGreaterThan(checked, 3, "libevent, OpenSSL and libc at least")
        let stage = Dockerfile(try RepositoryFiles.text("Docker/Dockerfile")).stage(named: "build")
        let copiesSwift = stage?.all("RUN").contains { $0.arguments.contains("/lib\\/swift\\/") } ?? false
        XCTAssertTrue(copiesSwift, "the build stage copies the Swift libraries ldd reports")
    }
}
