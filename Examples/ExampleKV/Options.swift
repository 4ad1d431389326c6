/// example-kv's command line: `example-kv [--host H] [--port N] [--delay-ms N] [--idle-timeout S]`.
struct Options: Equatable {
    /// Address to listen on; a DNS name is resolved once at start.
    var host = "127.0.0.1"
    /// TCP port; 0 picks a free one, printed on the first line of standard output.
    var port: UInt16 = 3000
    /// Every response is held back this long (with a timer, never a sleep) to play a slow app in tests.
    var delayMs = 0
    /// Connections idle this long are closed (as many HTTP servers do); tests shorten it.
    var idleTimeoutSeconds = 60

    static let usage = """
        usage: example-kv [--host HOST] [--port PORT] [--delay-ms N] [--idle-timeout S]
          --host HOST     address to listen on (default 127.0.0.1)
          --port PORT     TCP port, 0 = pick a free one (default 3000)
          --delay-ms N    hold every response back N milliseconds, 0...60000 (default 0)
          --idle-timeout S  close connections idle S seconds, 1...3600 (default 60)
        The first line of standard output is "example-kv listening on HOST:PORT".
        Endpoints: PUT/GET/DELETE /kv/{key}, POST /kv/{key}/append, POST /counters/{name}/incr,
        GET /counters/{name}, GET /dump, GET /healthz.

        """

    enum ParseResult: Equatable {
        case run(Options)
        case help
        case invalid(String)
    }

    /// Parses arguments without the program name; both `--port 80` and `--port=80` are accepted.
    static func parse(_ arguments: [String]) -> ParseResult {
        var options = Options()
        var remaining = arguments[...]
        while let argument = remaining.popFirst() {
            if argument == "--help" || argument == "-h" { return .help }
            var name = argument
            var value: String?
            if let equals = argument.firstIndex(of: "="), argument.hasPrefix("--") {
                name = String(argument[..<equals])
                value = String(argument[argument.index(after: equals)...])
            }
            guard ["--host", "--port", "--delay-ms", "--idle-timeout"].contains(name) else {
                return .invalid("unknown argument \"\(argument)\"")
            }
            guard let text = value ?? remaining.popFirst() else { return .invalid("\(name) needs a value") }
            switch name {
            case "--host":
                guard !text.isEmpty else { return .invalid("--host needs a non-empty value") }
                options.host = text
            case "--port":
                guard let port = UInt16(text) else { return .invalid("--port \"\(text)\" is not a port 0...65535") }
                options.port = port
            case "--idle-timeout":
                guard let seconds = Int(text), (1...3600).contains(seconds) else {
                    return .invalid("--idle-timeout \"\(text)\" is not a number of seconds 1...3600")
                }
                options.idleTimeoutSeconds = seconds
            default:
                guard let delay = Int(text), (0...60_000).contains(delay) else {
                    return .invalid("--delay-ms \"\(text)\" is not a number of milliseconds 0...60000")
                }
                options.delayMs = delay
            }
        }
        return .run(options)
    }
}
