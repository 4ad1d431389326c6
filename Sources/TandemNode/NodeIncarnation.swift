import Foundation
import Glibc

/// A durable counter of this node's runs, so that proposal and read ids never repeat across restarts whatever
/// the wall clock does (a clock stepped back by NTP or an operator once made ids repeat, and a leader answered
/// a new write with the outcome of an old one).
///
/// Ids are `incarnation << sequenceBits | sequence`. The file `incarnation` holds the last incarnation handed
/// out; a new one is written (temporary file, fsync, rename, fsync of the directory) before any id of it is used.
struct NodeIncarnation {
    static let fileName = "incarnation"
    static let sequenceBits: UInt64 = 40
    /// A node upgraded from ids seeded by the wall clock (about 1.7e15) starts above them.
    static let firstIncarnation: UInt64 = 1 << 14

    enum IncarnationError: Error {
        case io(String)
    }

    /// Reads the last incarnation, writes the next one durably and returns it.
    static func next(directory: String) throws(IncarnationError) -> UInt64 {
        let path = directory + "/" + fileName
        let previous = FileManager.default.contents(atPath: path)
            .flatMap { String(decoding: $0, as: UTF8.self).split(separator: "\n").first.flatMap { UInt64($0) } }
        let next = max((previous ?? 0) + 1, firstIncarnation)
        guard next < (1 << (64 - sequenceBits)) else { throw .io("\(path): incarnation counter exhausted") }
        let temporary = path + ".tmp"
        let text = Array("\(next)\n".utf8)
        let fd = open(temporary, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let written = text.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        let synced = written == text.count && fsync(fd) == 0
        close(fd)
        guard synced, rename(temporary, path) == 0 else { throw .io("cannot write \(path)") }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw .io("cannot open \(directory)") }
        defer { close(dir) }
        guard fsync(dir) == 0 else { throw .io("cannot sync \(directory)") }
        return next
    }
}
