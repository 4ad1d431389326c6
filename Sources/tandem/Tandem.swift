// The `tandem` executable: parses the command line, loads the configuration from the environment, and hands
// over to TandemSidecar. It holds no logic of its own beyond mapping configuration to sidecar options.

import ArgumentParser
import Foundation
import Glibc
import Logging
import TandemConfig
import TandemConsensus
import TandemHTTP
import TandemNet
import TandemNode
import TandemSidecar
import TandemTransport

@main
struct Tandem: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "A sidecar that makes an unmodified service highly available.",
        discussion: "Run `tandem` (or `tandem serve`) beside each replica of your app.\n\n"
            + TandemConfiguration.helpText(),
        subcommands: [Serve.self, Status.self, TransferLeadership.self, Members.self, ConfigReference.self],
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
        let options = SidecarOptions(configuration)
        // Validation already refused every setting the consensus core cannot run with; this is the last line of
        // defence, so that a relation missed there exits 2 with a message instead of trapping in RaftNode.init.
        if let problem = options.replica?.raft.problems.first {
            let line = ConfigError(
                .conflict, variable: "TANDEM_ELECTION_TIMEOUT", value: "\(configuration.electionTimeoutMs)ms",
                problem:
                    "with TANDEM_HEARTBEAT_INTERVAL and the TANDEM_PHI_* settings breaks a consensus rule: \(problem)",
                expected: "the defaults of the failure-detection variables, or values closer to them")
            FileHandle.standardError.write(Data("tandem: \(line.description)\n".utf8))
            throw ExitCode(2)
        }
        let format = configuration.logFormat.resolved(standardErrorIsTerminal: isatty(2) != 0)
        bootstrapLogging(level: Logger.Level(configuration.logLevel), format: format == .json ? .json : .text)
        let log = Logger(label: "tandem")
        for warning in configuration.warnings { log.warning("\(warning)") }
        let sidecar: Sidecar
        do {
            sidecar = try Sidecar(options: options, log: log)
        } catch {
            log.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        let code = sidecar.run()
        // Everything is closed and synced by now. Exit here rather than tear the object graph down: libevent
        // objects must not be freed after their event base, and nothing remains that teardown would save.
        withExtendedLifetime(sidecar) { Glibc.exit(code) }
    }
}

/// Prints the configuration reference as Markdown, from the same table the parser uses (the README embeds it).
struct ConfigReference: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config-reference", abstract: "Print the configuration reference as Markdown.")

    func run() throws {
        print(TandemConfiguration.markdownTable(), terminator: "")
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
        proxy.upstreamConnectTimeoutMs = configuration.upstreamConnectTimeoutMs
        proxy.upstreamResponseTimeoutMs = configuration.upstreamTimeoutMs
        proxy.maxConnections = configuration.maxConnections
        proxy.classifier = configuration.classifier
        adminHost = configuration.adminListen.host
        adminPort = configuration.adminListen.port
        adminToken = configuration.adminToken
        replica = Self.replicaConfig(configuration)
        writePath.writeTimeoutMs = configuration.writeTimeoutMs
        writePath.maxPendingWrites = configuration.maxPendingWrites
        writePath.readWaitMaxMs = configuration.readWaitMaxMs
        writePath.defaultReadConsistency = configuration.readConsistency
        writePath.idempotencyTTLMs = configuration.idempotencyTTLMs
        writePath.appState = configuration.appState
        writePath.snapshotSave = configuration.snapshotSave
        writePath.snapshotRestore = configuration.snapshotRestore
        writePath.snapshotCadence = configuration.snapshotEvery
        writePath.logRetainEntries = configuration.logRetainEntries
        writePath.divergenceAction = configuration.divergenceAction
        writePath.stateDigest = configuration.stateDigest
        writePath.snapshotTimeoutMs = configuration.snapshotTimeoutMs
        writePath.idempotencyMaxBytes = Int(configuration.idempotencyMaxBytes)
        applyPipeline = configuration.applyPipeline
        overload.rateLimit = configuration.rateLimit
        overload.globalRateLimit = configuration.rateLimitGlobal
        overload.rateLimitKey = configuration.rateLimitKey
        overload.rateLimitKeys = configuration.rateLimitKeys
        overload.queueTargetMs = configuration.queueTargetMs
    }

    /// The consensus and peer settings. With no TANDEM_PEERS the cluster is this node alone (its own quorum).
    static func replicaConfig(_ configuration: TandemConfiguration) -> ReplicaConfig {
        let selfID = NodeID(configuration.nodeID)
        let joins = configuration.joinsCluster
        // A joining node founds nothing: its log starts with no voters (it never campaigns) until the cluster that
        // admits it answers with the configuration.
        let others = joins ? [] : configuration.otherPeers
        var raft = RaftConfig(id: selfID, peers: [selfID] + others.map { NodeID($0.id) })
        if joins {
            raft.initialConfiguration = ClusterConfiguration(voters: [], learners: [selfID])
        } else if !others.isEmpty {
            // The founding configuration carries the founders' addresses, so that every configuration after it
            // (which a node that joins later receives) does too.
            raft.initialConfiguration = ClusterConfiguration(
                voters: raft.peers,
                addresses: Dictionary(
                    uniqueKeysWithValues: configuration.peers.map { (NodeID($0.id), $0.address.description) }))
        }
        raft.heartbeatIntervalMs = configuration.heartbeatIntervalMs
        raft.electionTimeoutMs = configuration.electionTimeoutMs
        raft.phiThreshold = configuration.phiThreshold
        raft.phiMinStdDevMs = Double(configuration.phiMinStdDevMs)
        raft.phiAcceptablePauseMs = Double(configuration.phiAcceptablePauseMs)
        raft.maxUncommittedBytes = Int(configuration.maxUncommittedBytes)
        // One write is one entry: the largest body plus its request line and fields must fit in a message.
        raft.maxMessageBytes = max(raft.maxMessageBytes, Int(configuration.maxBodyBytes) + 256 * 1024)
        let auth: PeerAuth
        if let tls = configuration.tls {
            auth = .tls(
                certPath: tls.certificatePath, keyPath: tls.privateKeyPath, caPath: tls.certificateAuthorityPath)
        } else if let secret = configuration.clusterSecret, !secret.isEmpty {
            auth = .secret(secret)
        } else {
            auth = .none
        }
        var replica = ReplicaConfig(
            raft: raft,
            peers: others.map { PeerEndpoint(id: NodeID($0.id), host: $0.address.host, port: $0.address.port) },
            peerListenHost: configuration.peerListen.host, peerListenPort: configuration.peerListen.port, auth: auth,
            dataDirectory: configuration.dataDir)
        replica.replayWholeLogOnStart = configuration.appState == .memory
        replica.promotion.removeDeadAfterMs = configuration.removeDeadAfterMs
        replica.promotion.removeDeadMinVoters = configuration.removeDeadMinVoters
        replica.advertisedAddress =
            configuration.peers.first { $0.id == configuration.nodeID }?.address.description
            ?? configuration.advertisedPeerAddress(hostName: ProcessInfo.processInfo.hostName)
        if joins, let targets = configuration.join {
            let advertise = configuration.advertisedPeerAddress(hostName: ProcessInfo.processInfo.hostName)
            var join = JoinSettings(advertiseAddress: advertise) {
                Self.resolveJoinTargets(targets)
            }
            join.retryMs = 1000
            replica.join = join
        }
        replica.transport.maxFramePayloadBytes = max(
            replica.transport.maxFramePayloadBytes, raft.maxMessageBytes + 64 * 1024)
        return replica
    }

    /// The members `TANDEM_JOIN` names right now (a DNS name is resolved again at every round). The ids are
    /// placeholders: a joiner learns a member's id from its handshake.
    static func resolveJoinTargets(_ targets: JoinTargets) -> [PeerEndpoint] {
        func endpoint(_ host: String, _ port: UInt16) -> PeerEndpoint {
            PeerEndpoint(id: NodeID("join-target"), host: host, port: port)
        }
        switch targets {
        case .addresses(let list):
            return list.map { endpoint($0.host, $0.port) }
        case .dnsName(let name):
            return resolveJoinName(name).map { endpoint($0.host, $0.port) }
        }
    }

    /// SRV records of the name (tried as given, then under each `search` domain of /etc/resolv.conf for a name
    /// without dots, as the system resolver would); without any, the name's addresses as the system resolver
    /// gives them (search domains, /etc/hosts) on port 7400. A Kubernetes headless Service answers the second for
    /// its plain name and the first for `_peer._tcp.<service>.<namespace>.svc.cluster.local`.
    static func resolveJoinName(_ name: String) -> [(host: String, port: UInt16)] {
        let resolver = DNSResolver.fromResolvConf()
        var names = [name]
        if !name.contains("."),
            let text = try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)
        {
            for line in text.split(separator: "\n") where line.hasPrefix("search ") || line.hasPrefix("domain ") {
                names += line.split(separator: " ").dropFirst().prefix(6).map { "\(name).\($0)" }
            }
        }
        for candidate in names {
            if let records = try? resolver.srv(candidate), !records.isEmpty {
                return records.map { ($0.host, $0.port) }
            }
        }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, String(JoinTargets.defaultPort), &hints, &result) == 0 else { return [] }
        defer { freeaddrinfo(result) }
        var found: [(host: String, port: UInt16)] = []
        var next = result
        while let info = next {
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(
                info.pointee.ai_addr, info.pointee.ai_addrlen, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST)
                == 0
            {
                let text = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !found.contains(where: { $0.host == text }) { found.append((text, JoinTargets.defaultPort)) }
            }
            next = info.pointee.ai_next
        }
        return found
    }
}
