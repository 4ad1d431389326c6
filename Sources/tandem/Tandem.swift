// The `tandem` executable: parses the command line, loads the configuration from the environment, and hands
// over to TandemSidecar. It holds no logic of its own beyond mapping configuration to sidecar options.

import ArgumentParser
import Foundation
import Logging
import TandemConfig
import TandemHTTP
import TandemSidecar

@main
struct Tandem: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "A sidecar that makes an unmodified service highly available.",
        discussion: "Run `tandem` (or `tandem serve`) beside each replica of your app.\n\n"
            + TandemConfiguration.helpText(),
        subcommands: [Serve.self, Status.self, TransferLeadership.self],
        defaultSubcommand: Serve.self)
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve: proxy clients to the local app, with the admin listener (configured by TANDEM_* variables).")

    func run() throws {
        let configuration: TandemConfiguration
        do {
            configuration = try TandemConfiguration.load(environment: ProcessInfo.processInfo.environment)
        } catch {
            FileHandle.standardError.write(Data("tandem: \(error.description)\n".utf8))
            throw ExitCode(2)
        }
        let format = configuration.logFormat.resolved(standardErrorIsTerminal: isatty(2) != 0)
        bootstrapLogging(level: Logger.Level(configuration.logLevel), format: format == .json ? .json : .text)
        let log = Logger(label: "tandem")
        for warning in configuration.warnings { log.warning("\(warning)") }
        let sidecar: Sidecar
        do {
            sidecar = try Sidecar(options: SidecarOptions(configuration), log: log)
        } catch {
            log.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        let code = sidecar.run()
        if code != 0 { throw ExitCode(code) }
    }
}

extension Logger.Level {
    init(_ level: LogLevel) {
        self = Logger.Level(rawValue: level.rawValue) ?? .info
    }
}

extension SidecarOptions {
    /// Maps the validated configuration onto what the sidecar runs with.
    init(_ configuration: TandemConfiguration) {
        self.init()
        nodeID = configuration.nodeID
        proxy.listenHost = configuration.listen.host
        proxy.listenPort = configuration.listen.port
        proxy.upstreamHost = configuration.upstream.host
        proxy.upstreamPort = configuration.upstream.port
        proxy.limits = HTTPLimits(bodyMaxBytes: configuration.maxBodyBytes)
        proxy.headerTimeoutMs = configuration.headerTimeoutMs
        proxy.idleTimeoutMs = configuration.idleTimeoutMs
        proxy.maxConnections = configuration.maxConnections
        proxy.classifier = configuration.classifier
        adminHost = configuration.adminListen.host
        adminPort = configuration.adminListen.port
        adminToken = configuration.adminToken
        peers = configuration.peers.map { (id: $0.id, address: $0.address.description) }
    }
}
