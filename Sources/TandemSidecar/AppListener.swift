// Which process the app is: the kernel's identity of the app's listening socket.
//
// An in-memory app that restarts loses its state, and Tandem must then rebuild it (restore a snapshot, replay the
// log). A refused connection proves a restart, but an app back within milliseconds is never refused, and a kept-alive
// connection the app closes looks the same whether the app closed an idle connection or died. The listening socket
// settles it: a new process opens a new one, with a new inode number, visible in /proc/net/tcp of the network
// namespace Tandem shares with the app in a pod. The same inodes mean the same listening sockets, so the same
// process (unless the listener outlives the process, as with systemd socket activation: see the README).

import Foundation
import Glibc

/// The inode numbers of the sockets listening on the app's port, as the kernel lists them.
struct AppListener: Equatable, Sendable {
    var inodes: Set<UInt64>

    /// What a comparison with the listener recorded earlier says about the app process.
    enum Change: Equatable {
        /// Tandem cannot tell (the app is on another host or namespace, or /proc is unreadable).
        case unknown
        /// The same listening sockets: the same process.
        case same
        /// Nothing listens on the port: the app is down.
        case gone
        /// Other listening sockets: a new process.
        case replaced
    }

    /// Compares what listens now with `recorded`; `current` nil means the table could not be read.
    static func change(from recorded: AppListener?, to current: AppListener?) -> Change {
        guard let recorded, !recorded.inodes.isEmpty, let current else { return .unknown }
        if current.inodes.isEmpty { return .gone }
        return current.inodes == recorded.inodes ? .same : .replaced
    }

    /// Whether `host` names this machine's loopback (the only place where the app's listener is surely in this
    /// network namespace's tables; an address of another host could match a local listener on the same port).
    static func isLoopback(host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }

    /// The listeners on `port` in this network namespace, from /proc/net/tcp and /proc/net/tcp6; nil when neither
    /// table can be read. Only sockets in LISTEN state count, on any local address: an app bound to 0.0.0.0 serves
    /// 127.0.0.1 too. The kernel lists listening sockets before all others, so reading stops at the first line of
    /// another state: the cost follows the number of listeners, not of connections.
    static func read(port: UInt16, tables: [String] = ["/proc/net/tcp", "/proc/net/tcp6"]) -> AppListener? {
        var found: Set<UInt64> = []
        var readAny = false
        for path in tables {
            guard let listing = listeningSection(of: path) else { continue }
            readAny = true
            found.formUnion(listeningInodes(in: listing, port: port))
        }
        return readAny ? AppListener(inodes: found) : nil
    }

    /// The lines of a /proc/net/tcp table up to the first one not in LISTEN state (that line included), read with
    /// plain reads (the file's size reads as 0, and a table can be many pages long); at most 16 MiB.
    private static func listeningSection(of path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        var scanned = 0
        var lineStart = 0
        var lines = 0
        while bytes.count < 16 << 20 {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes.append(contentsOf: chunk[0..<count])
            while let newline = bytes[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = bytes[lineStart..<newline]
                scanned = newline + 1
                lineStart = scanned
                lines += 1
                // Line 1 is the header; a data line's state is its fourth field.
                if lines > 1, state(of: line) != "0A" { return String(decoding: bytes[0..<newline], as: UTF8.self) }
            }
            scanned = bytes.count
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func state(of line: ArraySlice<UInt8>) -> Substring? {
        let fields = String(decoding: line, as: UTF8.self).split(separator: " ", omittingEmptySubsequences: true)
        return fields.count > 3 ? fields[3] : nil
    }

    /// The inodes of LISTEN sockets on `port` in the text of a /proc/net/tcp or tcp6 table. A line is
    /// `sl: local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...`, addresses as hex `ADDR:PORT`;
    /// state 0A is LISTEN. Lines that do not parse are skipped (the header among them).
    static func listeningInodes(in table: String, port: UInt16) -> Set<UInt64> {
        var inodes: Set<UInt64> = []
        for line in table.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 10, fields[3] == "0A",
                let colon = fields[1].lastIndex(of: ":"),
                UInt16(fields[1][fields[1].index(after: colon)...], radix: 16) == port,
                let inode = UInt64(fields[9]), inode != 0
            else { continue }
            inodes.insert(inode)
        }
        return inodes
    }
}
