import Foundation
import XCTest

@testable import TandemStorage

/// A fresh directory under the system temp dir, removed when the test ends.
func makeTemporaryDirectory(_ test: XCTestCase) -> String {
    let path = NSTemporaryDirectory() + "tandem-wal-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

/// `count` entries starting at `firstIndex`, each with a payload that names it.
func makeEntries(from firstIndex: UInt64, count: Int, term: UInt64 = 1, payloadBytes: Int = 0) -> [WALEntry] {
    (0..<count).map { offset in
        let index = firstIndex + UInt64(offset)
        var payload = Array("entry-\(index)-term-\(term)".utf8)
        if payloadBytes > payload.count {
            payload += Array(repeating: UInt8(index % 251), count: payloadBytes - payload.count)
        }
        return WALEntry(index: index, term: term, payload: payload)
    }
}

/// The segment files of `directory`, in sequence order.
func segmentFiles(_ directory: String) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return names.compactMap(SegmentName.init(fileName:)).sorted().map(\.fileName)
}

/// The offsets at which the records of a segment start, and the file's size.
func recordOffsets(_ path: String) -> (offsets: [Int], size: Int) {
    let bytes = [UInt8](FileManager.default.contents(atPath: path)!)
    let decoder = RecordDecoder(maxEntryPayloadBytes: WALOptions().maxEntryPayloadBytes)
    var offsets: [Int] = []
    var offset = 0
    bytes.withUnsafeBytes { buffer in
        while offset < buffer.count, case .record(_, let next) = decoder.read(buffer, at: offset) {
            offsets.append(offset)
            offset = next
        }
    }
    return (offsets, bytes.count)
}

func fileSize(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? -1
}

/// Replaces the file's bytes from `length` on (cuts it when `tail` is empty).
func rewriteTail(_ path: String, keeping length: Int, tail: [UInt8] = []) {
    var bytes = [UInt8](FileManager.default.contents(atPath: path)!)
    bytes = Array(bytes.prefix(length)) + tail
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

/// Flips one bit of the byte at `offset`.
func flipBit(_ path: String, at offset: Int) {
    var bytes = [UInt8](FileManager.default.contents(atPath: path)!)
    bytes[offset] ^= 0x10
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

/// Opens, and fails the test rather than crash on an error.
func openLog(
    _ directory: String, options: WALOptions = WALOptions(), file: StaticString = #filePath,
    line: UInt = #line
) -> (WriteAheadLog, RecoveredLog)? {
    do {
        return try WriteAheadLog.open(directory: directory, options: options)
    } catch {
        XCTFail("open failed: \(error)", file: file, line: line)
        return nil
    }
}
