import ArgumentParser
import Foundation
import TandemConfig

/// `tandem status`: the cluster as this node's admin listener sees it, as a table.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the cluster as a table (from /status).")

    @Option(name: .long, help: "The admin listener to ask, host:port.")
    var admin = "127.0.0.1:9400"

    @Flag(name: .long, help: "Print the raw JSON instead of a table.")
    var json = false

    func run() throws {
        let (status, body) = try AdminClient.request(method: "GET", address: admin, path: "/status")
        guard status == 200 else { throw ValidationError("\(admin) answered \(status): \(body)") }
        if json {
            print(body)
            return
        }
        guard let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
            throw ValidationError("\(admin) did not answer with a JSON object")
        }
        print(StatusTable.render(object))
    }
}

/// `tandem transfer-leadership <id>`: a planned handoff.
struct TransferLeadership: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Hand leadership to another node.")

    @Argument(help: "The id of the node that should lead.")
    var to: String

    @Option(name: .long, help: "The admin listener to ask, host:port.")
    var admin = "127.0.0.1:9400"

    func run() throws {
        let token = ProcessInfo.processInfo.environment["TANDEM_ADMIN_TOKEN"]
        let (status, body) = try AdminClient.request(
            method: "POST", address: admin, path: "/admin/transfer-leadership?to=\(to)", bearerToken: token)
        print(body)
        if status != 200 { throw ExitCode(1) }
    }
}

/// The `tandem status` text: this node's numbers, its peers as it sees them, and the cluster as the leader sees it.
/// Anything null in `/status` (unknown on this node, such as a follower's match index for its peers) prints "-".
enum StatusTable {
    static func render(_ status: [String: Any]) -> String {
        func text(_ value: Any?) -> String {
            guard let value, !(value is NSNull) else { return "-" }
            return "\(value)"
        }
        func yesNo(_ value: Any?) -> String { (value as? Bool).map { $0 ? "yes" : "no" } ?? "-" }
        func decimal(_ value: Any?) -> String {
            guard let number = value as? Double else { return "-" }
            return String(format: "%.2f", abs(number) < 0.005 ? 0 : number)
        }
        var lines = [
            "node \(text(status["id"]))  role \(text(status["role"]))  term \(text(status["term"]))  leader \(text(status["leader"]))",
            "commit \(text(status["commitIndex"]))  applied \(text(status["appliedIndex"]))  diverged \(yesNo(status["diverged"]))",
        ]
        func table(_ rows: [[String]]) {
            let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
            for row in rows {
                lines.append(
                    row.enumerated().map {
                        $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0)
                    }.joined(separator: "  "))
            }
        }
        let peers = status["peers"] as? [[String: Any]] ?? []
        if !peers.isEmpty {
            lines.append("")
            var rows = [["PEER", "ADDRESS", "ROLE", "CONNECTED", "PHI", "MATCH", "LAG", "LAST CONTACT MS"]]
            for peer in peers {
                rows.append([
                    text(peer["id"]), text(peer["address"]), text(peer["role"]), yesNo(peer["connected"]),
                    decimal(peer["phi"]), text(peer["matchIndex"]), text(peer["lagEntries"]),
                    text(peer["lastContactMs"]),
                ])
            }
            table(rows)
        }
        lines.append("")
        if let cluster = status["cluster"] as? [String: Any] {
            let age =
                (cluster["ageMs"] as? NSNumber).map(\.doubleValue).map { String(format: "%.1f s ago", $0 / 1000) }
                ?? "-"
            lines.append("cluster as \(text(cluster["asSeenBy"])) sees it (\(age))")
            var rows = [["MEMBER", "ADDRESS", "ROLE", "MATCH", "LAG"]]
            for member in cluster["members"] as? [[String: Any]] ?? [] {
                rows.append([
                    text(member["id"]), text(member["address"]), text(member["role"]), text(member["matchIndex"]),
                    text(member["lagEntries"]),
                ])
            }
            table(rows)
        } else {
            lines.append("cluster as the leader sees it: not available (no leader known, or its view not received yet)")
        }
        return lines.joined(separator: "\n")
    }
}

/// A tiny blocking HTTP/1.1 client for the admin commands (one request, Connection: close).
enum AdminClient {
    static func request(
        method: String, address: String, path: String, bearerToken: String? = nil, body: [UInt8]? = nil,
        timeoutSeconds: Int = 5
    ) throws -> (Int, String) {
        guard let parsed = try? HostPort(parsing: address), parsed.port > 0 else {
            throw ValidationError("--admin must be \(HostPort.syntax) (not port 0), not \(address)")
        }
        let (host, port) = (parsed.host, parsed.port)
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else {
            throw ValidationError("cannot resolve \(host)")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, 0)
        guard fd >= 0 else { throw ValidationError("cannot create a socket") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            throw ValidationError("cannot connect to \(address): \(String(cString: strerror(errno)))")
        }
        var request = "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n"
        request += "Content-Length: \(body?.count ?? 0)\r\n"
        if body != nil { request += "Content-Type: application/json\r\n" }
        if let bearerToken { request += "Authorization: Bearer \(bearerToken)\r\n" }
        request += "\r\n"
        let bytes = Array(request.utf8) + (body ?? [])
        _ = send(fd, bytes, bytes.count, 0)
        var response = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while response.count < 16 * 1024 * 1024 {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            response.append(contentsOf: buffer[0..<count])
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw ValidationError("no HTTP response from \(address)") }
        let statusLine = text[..<split.lowerBound].split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ")
        let status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        return (status, String(text[split.upperBound...]))
    }
}
