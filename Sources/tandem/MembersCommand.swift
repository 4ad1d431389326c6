import ArgumentParser
import Foundation

/// `tandem members [list|add|promote|remove]`: the cluster's configuration as the admin listener reports it, and
/// the three changes an operator makes to it. A new node joins as a learner (it copies the log without counting for
/// a quorum) and is promoted to voter once it has caught up, so that adding a node never stalls commits.
struct Members: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the cluster's members, or add, promote or remove one.",
        discussion: """
            A new node joins as a learner and is promoted to voter once it has caught up (its LAG in \
            `tandem members list` is 0). Each change answers once it is committed. Changes send \
            `Authorization: Bearer $TANDEM_ADMIN_TOKEN` when that variable is set.
            """,
        subcommands: [List.self, Add.self, Promote.self, Remove.self],
        defaultSubcommand: List.self)
}

/// The admin listener a `members` subcommand talks to.
struct AdminAddressOptions: ParsableArguments {
    @Option(name: .long, help: "The admin listener to ask, host:port.")
    var admin = "127.0.0.1:9400"

    /// Refused here, as a usage error, rather than as a failed request: nothing was sent.
    func validate() throws {
        guard let colon = admin.lastIndex(of: ":"), colon != admin.startIndex,
            UInt16(admin[admin.index(after: colon)...]) != nil
        else {
            throw ValidationError("--admin must be host:port, not \(admin)")
        }
    }
}

extension Members {
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the members as a table (from /members); '-' is a value this node does not know.")

        @OptionGroup var connection: AdminAddressOptions

        @Flag(name: .long, help: "Print the raw JSON instead of a table.")
        var json = false

        func run() throws {
            let body = try MembersRequest.send(method: "GET", path: "/members", admin: connection.admin)
            if json {
                print(body)
            } else {
                print(try MembersRequest.table(body, admin: connection.admin))
            }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a node as a learner; promote it once it has caught up.")

        @Argument(help: "The new node's id (its TANDEM_NODE_ID).")
        var id: String

        @Argument(help: "The new node's peer address, host:port (its TANDEM_PEER_LISTEN as the others reach it).")
        var address: String

        @OptionGroup var connection: AdminAddressOptions

        func run() throws {
            let body = "{\"id\":\(MembersRequest.jsonString(id)),\"address\":\(MembersRequest.jsonString(address))}"
            let answer = try MembersRequest.send(
                method: "POST", path: "/admin/members", admin: connection.admin, body: Array(body.utf8))
            print(try MembersRequest.table(answer, admin: connection.admin))
        }
    }

    struct Promote: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a learner a voter.")

        @Argument(help: "The id of the learner to promote.")
        var id: String

        @OptionGroup var connection: AdminAddressOptions

        func run() throws {
            let answer = try MembersRequest.send(
                method: "POST", path: "/admin/members/\(MembersRequest.pathSegment(id))/promote",
                admin: connection.admin)
            print(try MembersRequest.table(answer, admin: connection.admin))
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a member (voter or learner) from the cluster.",
            discussion: """
                With --if-absent-ok, a node that is not a member (the listener answers 404 unknown_member) counts \
                as removed and the command exits 0, so that a Kubernetes preStop hook that runs twice, or after \
                the node was removed by hand, does not fail. Any other answer, a 404 of another kind included, \
                still exits 1.
                """)

        @Argument(help: "The id of the member to remove.")
        var id: String

        @OptionGroup var connection: AdminAddressOptions

        @Flag(name: .long, help: "Exit 0 when the node is not a member (404 unknown_member): removal is idempotent.")
        var ifAbsentOk = false

        func run() throws {
            let answer: String
            do {
                answer = try MembersRequest.send(
                    method: "DELETE", path: "/admin/members/\(MembersRequest.pathSegment(id))",
                    admin: connection.admin, absentIsSuccess: ifAbsentOk)
            } catch MembersRequest.Absent.member {
                print("\(id) is not a member: nothing to remove")
                return
            }
            print(try MembersRequest.table(answer, admin: connection.admin))
        }
    }
}

/// One request of a `members` subcommand and what its answer means for the exit status.
enum MembersRequest {
    /// Thrown instead of failing when the caller asked that an unknown member count as success.
    enum Absent: Error { case member }

    /// The body of a 200 answer. Anything else prints `tandem: <message> (<code>)` (or, for an answer that is not
    /// the listener's error JSON, its status and body) to stderr and exits 1; so does a listener that cannot be
    /// reached, since a script must be able to tell that nothing changed.
    static func send(
        method: String, path: String, admin: String, body: [UInt8]? = nil, absentIsSuccess: Bool = false
    ) throws -> String {
        let token = ProcessInfo.processInfo.environment["TANDEM_ADMIN_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        let status: Int
        let answer: String
        do {
            (status, answer) = try AdminClient.request(
                method: method, address: admin, path: path, bearerToken: token, body: body,
                // A change is answered once committed, or after the node's own 10 s limit: wait past it.
                timeoutSeconds: 20)
        } catch let error as ValidationError {
            fail(error.message)
        }
        if status == 200 { return answer }
        guard let error = try? JSONDecoder().decode(AdminError.self, from: Data(answer.utf8)) else {
            fail("\(admin) answered \(status): \(answer.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        // Only the listener's own verdict counts: a 404 from a node without this endpoint is no proof of absence.
        if absentIsSuccess && status == 404 && error.error == "unknown_member" { throw Absent.member }
        fail("\(error.message) (\(error.error))")
    }

    /// The table of a 200 answer, or exit 1 when the answer is not the members JSON.
    static func table(_ body: String, admin: String) throws -> String {
        guard let view = try? JSONDecoder().decode(MembersView.self, from: Data(body.utf8)) else {
            fail("\(admin) did not answer with the members JSON: \(body)")
        }
        return MembersTable.render(view)
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("tandem: \(message)\n".utf8))
        Members.exit(withError: ExitCode(1))
    }

    /// `value` as a JSON string literal, quotes and escapes included.
    static func jsonString(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// `id` as one path segment: a slash or a space in an id must not change which endpoint is asked.
    static func pathSegment(_ id: String) -> String {
        let unreserved = CharacterSet(
            charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
        return id.addingPercentEncoding(withAllowedCharacters: unreserved) ?? id
    }
}

/// The listener's error JSON.
struct AdminError: Decodable {
    var error: String
    var message: String
    var retryable: Bool?
}

/// The body of `GET /members` and of every successful change. A null is a value this node does not know (a
/// follower does not track other nodes' match indexes; the leader may be unknown during an election).
struct MembersView: Decodable {
    struct Member: Decodable {
        var id: String
        var address: String
        var role: String
        var matchIndex: UInt64?
        var lagEntries: UInt64?
    }

    var leader: String?
    var configurationIndex: UInt64
    var committed: Bool
    var members: [Member]
}

enum MembersTable {
    static func render(_ view: MembersView) -> String {
        func text(_ value: (some CustomStringConvertible)?) -> String { value.map(\.description) ?? "-" }
        let committed = view.committed ? "yes" : "no"
        var lines = [
            "leader \(text(view.leader))  configuration \(view.configurationIndex)  committed \(committed)", "",
        ]
        let header = ["ID", "ADDRESS", "ROLE", "MATCH", "LAG"]
        let rows =
            [header]
            + view.members.map { [$0.id, $0.address, $0.role, text($0.matchIndex), text($0.lagEntries)] }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            let padded = row.indices.map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
            var line = padded.joined(separator: "  ")
            while line.last == " " { line.removeLast() }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}
