import Foundation
import XCTest

@testable import TandemStorage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The permission bits of the file or directory at `path`, or -1 when it does not exist.
private func mode(_ path: String) -> Int {
    var status = stat()
    guard stat(path, &status) == 0 else { return -1 }
    return Int(status.st_mode) & 0o7777
}

/// Runs `body` with the process umask set to `mask` (the usual 022, so that the modes the log asks for are
/// what decides), restoring the previous one afterwards.
private func withUmask<T>(_ mask: mode_t, _ body: () throws -> T) rethrows -> T {
    let previous = umask(mask)
    defer { umask(previous) }
    return try body()
}

/// The data directory and every file in it are private to the node's user: a write's body and its
/// Authorization and Cookie headers are in the log.
final class FilePermissionTests: XCTestCase {
    func testOpenCreatesTheDirectoryAndMissingParentsWithMode0700() throws {
        let root = makeTemporaryDirectory(self)
        let directory = root + "/volume/node-1/data"
        try withUmask(0o022) {
            let (log, _) = try XCTUnwrap(openLog(directory))
            try log.close()
        }
        XCTAssertEqual(mode(directory), 0o700)
        XCTAssertEqual(mode(root + "/volume/node-1"), 0o700)
        XCTAssertEqual(mode(root + "/volume"), 0o700)
    }

    func testPrepareDirectoryIsLikeMkdirPAndLeavesAnExistingDirectoryAlone() throws {
        let root = makeTemporaryDirectory(self)
        try withUmask(0o022) {
            try WriteAheadLog.prepareDirectory(root + "/a/b/")
            XCTAssertEqual(mode(root + "/a/b"), 0o700)
            XCTAssertEqual(mode(root + "/a"), 0o700)
            // A second call finds it in place.
            try WriteAheadLog.prepareDirectory(root + "/a/b")
            // A directory the operator made (a mount point, say) keeps its mode.
            XCTAssertEqual(mkdir(root + "/mine", 0o750), 0)
            try WriteAheadLog.prepareDirectory(root + "/mine")
            XCTAssertEqual(mode(root + "/mine"), 0o750)
        }
        // A regular file in the way is an error, not a directory.
        XCTAssertTrue(FileManager.default.createFile(atPath: root + "/file", contents: Data()))
        XCTAssertThrowsError(try WriteAheadLog.prepareDirectory(root + "/file/data")) { error in
            guard case .io(_, _, let code)? = error as? WALError else { return XCTFail("\(error)") }
            XCTAssertEqual(code, ENOTDIR)
        }
        // A relative path works too.
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(root))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        try WriteAheadLog.prepareDirectory("relative/data")
        XCTAssertEqual(mode(root + "/relative/data"), 0o700)
    }

    func testEveryFileTheLogCreatesIsMode0600() throws {
        let directory = makeTemporaryDirectory(self) + "/data"
        try withUmask(0o022) {
            let (log, _) = try XCTUnwrap(openLog(directory, options: WALOptions(segmentSizeBytes: 1_024)))
            try log.append(makeEntries(from: 1, count: 40, payloadBytes: 100))
            try log.close()
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        XCTAssertGreaterThan(segmentFiles(directory).count, 2, "rolled segments are covered too")
        XCTAssertTrue(names.contains("LOCK"))
        for name in names { XCTAssertEqual(mode(directory + "/" + name), 0o600, name) }
    }

    func testFilesLeftWorldReadableByAnEarlierVersionAreRestrictedOnOpen() throws {
        let directory = makeTemporaryDirectory(self)
        do {
            let (log, _) = try XCTUnwrap(openLog(directory, options: WALOptions(segmentSizeBytes: 1_024)))
            try log.append(makeEntries(from: 1, count: 20, payloadBytes: 100))
            try log.close()
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        for name in names { XCTAssertEqual(chmod(directory + "/" + name, 0o644), 0) }
        let (log, _) = try XCTUnwrap(openLog(directory))
        for name in names { XCTAssertEqual(mode(directory + "/" + name), 0o600, name) }
        try log.close()
    }
}
