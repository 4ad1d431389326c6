import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The repository's files as the deployment tests see them: found from this file's own path, so the tests work
/// from /work/main and from a dev package that symlinks the test directory.
enum RepositoryFiles {
    /// Why a deployment file could not be read or parsed (world errors: a missing file, a tool that failed).
    struct ReadError: Error, CustomStringConvertible {
        let description: String
    }

    /// The repository root: the first directory above this file (symlinks resolved) that holds Package.swift and
    /// Docker/Dockerfile. Not finding it is a broken checkout, so it fails the test rather than skipping it.
    static func root(filePath: String = #filePath) throws -> URL {
        var directory = URL(fileURLWithPath: realPath(filePath)).deletingLastPathComponent()
        // A bounded walk up: the file is a few levels below the root.
        for _ in 0..<8 {
            let hasPackage = FileManager.default.fileExists(
                atPath: directory.appendingPathComponent("Package.swift").path)
            let hasDockerfile = FileManager.default.fileExists(
                atPath: directory.appendingPathComponent("Docker/Dockerfile").path)
            if hasPackage && hasDockerfile { return directory }
            directory.deleteLastPathComponent()
        }
        throw ReadError(description: "no directory above \(filePath) holds Package.swift and Docker/Dockerfile")
    }

    static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The text of `relativePath` under the repository root.
    static func text(_ relativePath: String) throws -> String {
        let url = try root().appendingPathComponent(relativePath)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ReadError(description: "cannot read \(url.path)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func exists(_ relativePath: String) throws -> Bool {
        FileManager.default.fileExists(atPath: try root().appendingPathComponent(relativePath).path)
    }

    /// Every YAML document of `yamlText`, parsed by PyYAML's safe loader (anchors and merge keys resolved) and
    /// returned as JSON values. Skips the test, saying why, when python3 or PyYAML is not installed: the YAML
    /// files cannot be checked without a parser, and this package takes no Swift dependencies.
    static func yamlDocuments(_ yamlText: String, name: String) throws -> [YAMLNode] {
        let script = "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))"
        let result = try run(["python3", "-c", script], input: yamlText)
        if result.status != 0 && (result.standardError.contains("No module named") || result.status == 127) {
            throw XCTSkip("python3 with PyYAML is needed to parse \(name) (apt-get install python3-yaml)")
        }
        guard result.status == 0 else {
            throw ReadError(description: "PyYAML could not parse \(name): \(result.standardError)")
        }
        let json = try JSONSerialization.jsonObject(
            with: Data(result.standardOutput.utf8), options: [.fragmentsAllowed])
        return YAMLNode(json).list
    }

    /// The YAML documents of a file under the repository root, parsed once per test run (python3 starts slowly
    /// on a busy machine, and every test reads the same few files).
    static func yamlFile(_ relativePath: String) throws -> [YAMLNode] {
        if let cached = parsedFiles.value(for: relativePath) { return cached }
        let documents = try yamlDocuments(try text(relativePath), name: relativePath)
        parsedFiles.store(documents, for: relativePath)
        return documents
    }

    private static let parsedFiles = ParsedFiles()

    /// Parsed files by path. Bounded by the number of deployment files the tests name (a handful).
    private final class ParsedFiles: @unchecked Sendable {
        private let lock = NSLock()
        // Guarded by lock.
        private var documentsByPath: [String: [YAMLNode]] = [:]

        func value(for path: String) -> [YAMLNode]? {
            lock.lock()
            defer { lock.unlock() }
            return documentsByPath[path]
        }

        func store(_ documents: [YAMLNode], for path: String) {
            lock.lock()
            defer { lock.unlock() }
            documentsByPath[path] = documents
        }
    }

    /// The output of a command found on PATH; status 127 when it is not installed.
    struct CommandResult {
        let status: Int32
        let standardOutput: String
        let standardError: String
    }

    static func run(_ arguments: [String], input: String = "", currentDirectory: URL? = nil) throws -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // Read both pipes on their own threads so that neither can fill up and block the child.
        let outputBox = DataBox()
        let errorBox = DataBox()
        let group = DispatchGroup()
        for (pipe, box) in [(stdout, outputBox), (stderr, errorBox)] {
            group.enter()
            DispatchQueue.global().async {
                box.data = pipe.fileHandleForReading.readDataToEndOfFile()
                group.leave()
            }
        }
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        process.waitUntilExit()
        group.wait()
        return CommandResult(
            status: process.terminationStatus, standardOutput: String(decoding: outputBox.data, as: UTF8.self),
            standardError: String(decoding: errorBox.data, as: UTF8.self))
    }

    private final class DataBox: @unchecked Sendable {
        var data = Data()
    }
}

/// A parsed YAML (JSON) value with forgiving navigation: a missing key or index gives `.missing` instead of
/// trapping, and the typed accessors return nil, so a test asserts on what it expected to find.
struct YAMLNode: CustomStringConvertible {
    let value: Any?

    init(_ value: Any?) {
        self.value = value is NSNull ? nil : value
    }

    subscript(key: String) -> YAMLNode { YAMLNode((value as? [String: Any])?[key]) }
    subscript(index: Int) -> YAMLNode {
        guard let array = value as? [Any], array.indices.contains(index) else { return YAMLNode(nil) }
        return YAMLNode(array[index])
    }

    var isMissing: Bool { value == nil }
    var string: String? { value as? String }
    var int: Int? {
        if let number = value as? NSNumber, !(value is Bool) { return number.intValue }
        return value as? Int
    }
    var bool: Bool? { value as? Bool }
    var list: [YAMLNode] { (value as? [Any])?.map { YAMLNode($0) } ?? [] }
    var map: [String: YAMLNode] { (value as? [String: Any])?.mapValues { YAMLNode($0) } ?? [:] }
    /// A scalar as text, whatever its YAML type (ports and durations are written both ways).
    var text: String? {
        if let string { return string }
        if let int { return String(int) }
        return nil
    }

    var description: String {
        guard let value else { return "(missing)" }
        return "\(value)"
    }
}
