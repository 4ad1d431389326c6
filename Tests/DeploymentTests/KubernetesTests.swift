import TandemConfig
import XCTest

/// Docker/k8s: the StatefulSet with Tandem as a native sidecar, its Services and PodDisruptionBudget, checked
/// against the configuration table without a cluster.
final class KubernetesTests: XCTestCase {
    private func document(kind: String, name: String? = nil, in path: String) throws -> YAMLNode {
        let documents = try RepositoryFiles.yamlFile(path)
        return try XCTUnwrap(
            documents.first { $0["kind"].string == kind && (name == nil || $0["metadata"]["name"].string == name) },
            "\(path) has a \(kind)\(name.map { " named \($0)" } ?? "")")
    }

    private func statefulSet() throws -> YAMLNode {
        try document(kind: "StatefulSet", in: "Docker/k8s/base/statefulset.yaml")
    }

    private func podSpec() throws -> YAMLNode { try statefulSet()["spec"]["template"]["spec"] }

    private func sidecar(_ podSpec: YAMLNode) throws -> YAMLNode {
        try XCTUnwrap(
            podSpec["initContainers"].list.first { $0["name"].string == "tandem" }, "tandem is an init container")
    }

    private func app(_ podSpec: YAMLNode) throws -> YAMLNode {
        try XCTUnwrap(podSpec["containers"].list.first { $0["name"].string == "app" }, "the app is a regular container")
    }

    private func podNames() throws -> [String] {
        let set = try statefulSet()
        let name = try XCTUnwrap(set["metadata"]["name"].string)
        let replicas = try XCTUnwrap(set["spec"]["replicas"].int)
        return (0..<replicas).map { "\(name)-\($0)" }
    }

    /// The environment tandem sees in pod `podName`: the image's ENV, then the container's env, with the pod name
    /// from the downward API and a stand-in for each required Secret key (an optional one that is absent is unset).
    private func environment(of container: YAMLNode, podName: String) throws -> [String: String] {
        let dockerfile = Dockerfile(try RepositoryFiles.text("Docker/Dockerfile"))
        var environment = dockerfile.environment(of: try XCTUnwrap(dockerfile.stage(named: "tandem")))
        for variable in container["env"].list {
            let name = try XCTUnwrap(variable["name"].string)
            if let value = variable["value"].text {
                environment[name] = value
            } else if variable["valueFrom"]["fieldRef"]["fieldPath"].string == "metadata.name" {
                environment[name] = podName
            } else if !variable["valueFrom"]["secretKeyRef"].isMissing {
                if variable["valueFrom"]["secretKeyRef"]["optional"].bool != true {
                    environment[name] = "stand-in-secret-0123456789abcdef"
                }
            } else {
                XCTFail("\(name): a value source these tests do not model: \(variable)")
            }
        }
        return environment
    }

    /// A probe's or Service's port as a number: numbers as they are, names looked up in the container's ports.
    private func port(_ node: YAMLNode, in container: YAMLNode) -> Int? {
        if let number = node.int { return number }
        guard let name = node.string else { return nil }
        return container["ports"].list.first { $0["name"].string == name }?["containerPort"].int
    }

    func testTandemIsANativeSidecarThatStartsBeforeTheAppAndStopsAfterIt() throws {
        let spec = try podSpec()
        let tandem = try sidecar(spec)
        XCTAssertEqual(
            tandem["restartPolicy"].string, "Always", "restartPolicy Always makes an init container a sidecar")
        XCTAssertEqual(tandem["image"].string, "tandem:dev")
        XCTAssertEqual(try app(spec)["image"].string, "tandem-example-kv:dev")
        XCTAssertFalse(spec["containers"].list.contains { $0["name"].string == "tandem" }, "not also a plain container")
    }

    func testEveryTandemVariableInTheManifestsIsInTheTable() throws {
        let spec = try podSpec()
        var names = try sidecar(spec)["env"].list.compactMap { $0["name"].string }
        names += try app(spec)["env"].list.compactMap { $0["name"].string }
        let tlsPatch = try RepositoryFiles.yamlFile("Docker/k8s/tls/statefulset-tls.yaml")
        for document in tlsPatch {
            for container in document["spec"]["template"]["spec"]["initContainers"].list {
                names += container["env"].list.compactMap { $0["name"].string }
            }
        }
        XCTAssertTrue(names.contains("TANDEM_TLS_CERT"))
        XCTAssertEqual(TandemTable.unknownNames(in: names), [], "tandem exits 2 on unknown TANDEM_* names")
    }

    func testEveryPodsConfigurationIsAcceptedAndListsEveryReplicaByItsHeadlessName() throws {
        let set = try statefulSet()
        let serviceName = try XCTUnwrap(set["spec"]["serviceName"].string)
        let tandem = try sidecar(try podSpec())
        let pods = try podNames()
        XCTAssertEqual(pods.count, 3)
        for pod in pods {
            let configuration = try XCTUnwrap(TandemTable.load(try environment(of: tandem, podName: pod), context: pod))
            XCTAssertEqual(configuration.nodeID, pod, "the node id is the pod name")
            XCTAssertEqual(configuration.peers.map(\.id), pods, "TANDEM_PEERS lists every replica")
            for peer in configuration.peers {
                XCTAssertEqual(
                    peer.address.host, "\(peer.id).\(serviceName)", "peers are found through the headless Service")
                XCTAssertEqual(Int(peer.address.port), Int(configuration.peerListen.port))
            }
            XCTAssertNotNil(configuration.clusterSecret)
            XCTAssertNil(configuration.adminToken, "the admin token is optional")
            XCTAssertEqual(configuration.appState, .memory)
        }
        let secretSource = tandem["env"].list.first { $0["name"].string == "TANDEM_CLUSTER_SECRET" }
        XCTAssertTrue(secretSource?["value"].isMissing ?? false, "the cluster secret is never written in the manifest")
        XCTAssertNotNil(secretSource?["valueFrom"]["secretKeyRef"]["name"].string)
        let nodeID = tandem["env"].list.first { $0["name"].string == "TANDEM_NODE_ID" }
        XCTAssertEqual(nodeID?["valueFrom"]["fieldRef"]["fieldPath"].string, "metadata.name")
    }

    func testContainerPortsAreTheListenersOfTheConfiguration() throws {
        let tandem = try sidecar(try podSpec())
        let configuration = try XCTUnwrap(
            TandemTable.load(try environment(of: tandem, podName: try podNames()[0]), context: "pod 0"))
        XCTAssertEqual(port(YAMLNode("client"), in: tandem), Int(configuration.listen.port))
        XCTAssertEqual(port(YAMLNode("peer"), in: tandem), Int(configuration.peerListen.port))
        XCTAssertEqual(port(YAMLNode("admin"), in: tandem), Int(configuration.adminListen.port))
        XCTAssertEqual(
            [configuration.listen.port, configuration.peerListen.port, configuration.adminListen.port].map(Int.init),
            ["TANDEM_LISTEN", "TANDEM_PEER_LISTEN", "TANDEM_ADMIN_LISTEN"].map(TandemTable.defaultPort))
    }

    func testProbesAskReadyzForReadinessAndHealthzForLivenessOnTheAdminPort() throws {
        let tandem = try sidecar(try podSpec())
        let configuration = try XCTUnwrap(
            TandemTable.load(try environment(of: tandem, podName: try podNames()[0]), context: "pod 0"))
        let adminPort = Int(configuration.adminListen.port)
        let expected = ["readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"]
        for (probe, path) in expected {
            let httpGet = tandem[probe]["httpGet"]
            XCTAssertEqual(httpGet["path"].string, path, probe)
            XCTAssertEqual(port(httpGet["port"], in: tandem), adminPort, "\(probe) asks the admin listener")
        }
    }

    func testTheSidecarsStartupProbeCannotWaitForTheAppItGates() throws {
        // A native sidecar's startup probe must pass before the app container starts, and /readyz fails until the
        // app answers: a startup probe on /readyz would keep every pod waiting forever.
        let tandem = try sidecar(try podSpec())
        XCTAssertNotEqual(tandem["startupProbe"]["httpGet"]["path"].string, "/readyz")
        let budgetSeconds =
            (tandem["startupProbe"]["periodSeconds"].int ?? 10) * (tandem["startupProbe"]["failureThreshold"].int ?? 3)
        XCTAssertGreaterThanOrEqual(
            budgetSeconds, 10, "Tandem gets time to open its write-ahead log before it is restarted")
    }

    func testThePeersServiceIsHeadlessAndPublishesPodsBeforeTheyAreReady() throws {
        let set = try statefulSet()
        let serviceName = try XCTUnwrap(set["spec"]["serviceName"].string)
        let peers = try document(kind: "Service", name: serviceName, in: "Docker/k8s/base/services.yaml")
        XCTAssertEqual(peers["spec"]["clusterIP"].string, "None")
        XCTAssertEqual(
            peers["spec"]["publishNotReadyAddresses"].bool, true, "no pod is ready before a quorum finds itself")
        let podLabels = set["spec"]["template"]["metadata"]["labels"].map.compactMapValues(\.string)
        let selector = peers["spec"]["selector"].map.compactMapValues(\.string)
        XCTAssertFalse(selector.isEmpty)
        XCTAssertTrue(selector.allSatisfy { podLabels[$0.key] == $0.value }, "the Service selects the pods")
        let tandem = try sidecar(set["spec"]["template"]["spec"])
        let configuration = try XCTUnwrap(
            TandemTable.load(try environment(of: tandem, podName: try podNames()[0]), context: "pod 0"))
        let targets = peers["spec"]["ports"].list.map { port($0["targetPort"], in: tandem) }
        XCTAssertTrue(
            targets.contains(Int(configuration.peerListen.port)), "the headless Service carries the peer port")
        XCTAssertEqual(
            set["spec"]["podManagementPolicy"].string, "Parallel",
            "OrderedReady would wait for pod 0 to be ready, which needs a quorum, before starting pod 1")
    }

    func testTheClientServiceSendsClientsToTandemNeverToTheApp() throws {
        let set = try statefulSet()
        let tandem = try sidecar(set["spec"]["template"]["spec"])
        let configuration = try XCTUnwrap(
            TandemTable.load(try environment(of: tandem, podName: try podNames()[0]), context: "pod 0"))
        let client = try document(kind: "Service", name: "tandem", in: "Docker/k8s/base/services.yaml")
        XCTAssertNotEqual(client["spec"]["clusterIP"].string, "None")
        XCTAssertNotEqual(client["spec"]["publishNotReadyAddresses"].bool, true, "only ready pods get clients")
        let targets = client["spec"]["ports"].list.map { port($0["targetPort"], in: tandem) }
        XCTAssertEqual(targets, [Int(configuration.listen.port)])
        let appArguments = try app(set["spec"]["template"]["spec"])["args"].list.compactMap(\.text)
        XCTAssertEqual(
            appArguments, ["--port", "\(configuration.upstream.port)"], "the app listens where Tandem looks")
        XCTAssertFalse(appArguments.contains("--host"), "the app stays on loopback, out of reach of other pods")
    }

    func testTheDisruptionBudgetKeepsAMajority() throws {
        let replicas = try XCTUnwrap(try statefulSet()["spec"]["replicas"].int)
        let budget = try document(kind: "PodDisruptionBudget", in: "Docker/k8s/base/pdb.yaml")
        let minAvailable = try XCTUnwrap(budget["spec"]["minAvailable"].int)
        XCTAssertEqual(minAvailable, replicas / 2 + 1, "a quorum stays up during voluntary disruptions")
        XCTAssertLessThan(minAvailable, replicas, "one pod at a time can still be drained")
        let podLabels = try statefulSet()["spec"]["template"]["metadata"]["labels"].map.compactMapValues(\.string)
        let selector = budget["spec"]["selector"]["matchLabels"].map.compactMapValues(\.string)
        XCTAssertTrue(!selector.isEmpty && selector.allSatisfy { podLabels[$0.key] == $0.value })
    }

    func testTheGracePeriodLeavesTimeForPreStopHandoffAndDrain() throws {
        let spec = try podSpec()
        let grace = try XCTUnwrap(spec["terminationGracePeriodSeconds"].int)
        let preStop = try app(spec)["lifecycle"]["preStop"]
        let command = preStop["exec"]["command"].list.compactMap(\.text)
        XCTAssertEqual(command.first, "sleep", "the app waits for the pod to leave the Service")
        let preStopSeconds = try XCTUnwrap(Int(command.last ?? ""))
        // The app's preStop, then Tandem's handoff (at most 2 s) and drain (at most 10 s) after the app exits.
        XCTAssertGreaterThan(grace, preStopSeconds + 2 + 10)
        XCTAssertGreaterThan(grace, 10, "more than the drain alone")
    }

    func testTheDataDirIsAPersistentVolumeClaimMountedWhereTandemWrites() throws {
        let set = try statefulSet()
        let tandem = try sidecar(set["spec"]["template"]["spec"])
        let configuration = try XCTUnwrap(
            TandemTable.load(try environment(of: tandem, podName: try podNames()[0]), context: "pod 0"))
        let claims = set["spec"]["volumeClaimTemplates"].list.compactMap { $0["metadata"]["name"].string }
        let mount = tandem["volumeMounts"].list.first { $0["mountPath"].string == configuration.dataDir }
        let volume = try XCTUnwrap(mount?["name"].string, "\(configuration.dataDir) is mounted")
        XCTAssertTrue(claims.contains(volume), "the data dir is on a claim, so it outlives the pod")
        let securityContext = set["spec"]["template"]["spec"]["securityContext"]
        let dockerfile = Dockerfile(try RepositoryFiles.text("Docker/Dockerfile"))
        let user = dockerfile.effective("USER", of: try XCTUnwrap(dockerfile.stage(named: "tandem")))
        XCTAssertEqual(
            securityContext["runAsUser"].int.map(String.init), user?.split(separator: ":").first.map(String.init))
        XCTAssertEqual(securityContext["fsGroup"].int, securityContext["runAsGroup"].int, "the volume is writable")
        XCTAssertEqual(securityContext["runAsNonRoot"].bool, true)
    }

    func testTheTLSOverlayPointsTandemAtTheMountedSecret() throws {
        let patch = try XCTUnwrap(try RepositoryFiles.yamlFile("Docker/k8s/tls/statefulset-tls.yaml").first)
        let spec = patch["spec"]["template"]["spec"]
        let tandem = try XCTUnwrap(spec["initContainers"].list.first { $0["name"].string == "tandem" })
        let mount = try XCTUnwrap(tandem["volumeMounts"].list.first)
        let mountPath = try XCTUnwrap(mount["mountPath"].string)
        let volume = try XCTUnwrap(spec["volumes"].list.first { $0["name"].string == mount["name"].string })
        XCTAssertNotNil(volume["secret"]["secretName"].string, "the files come from a Secret")
        var environment = try environment(of: try sidecar(try podSpec()), podName: try podNames()[0])
        for variable in tandem["env"].list {
            let name = try XCTUnwrap(variable["name"].string)
            let path = try XCTUnwrap(variable["value"].string)
            XCTAssertTrue(path.hasPrefix(mountPath + "/"), "\(name) is a file of the mounted Secret")
            environment[name] = path
        }
        let configuration = try XCTUnwrap(TandemTable.load(environment, context: "TLS overlay"))
        XCTAssertNotNil(configuration.tls, "all three of TANDEM_TLS_CERT, _KEY and _CA are set")
    }

    func testKustomizationsNameOnlyFilesThatExistAndBuild() throws {
        for directory in ["Docker/k8s", "Docker/k8s/base", "Docker/k8s/tls"] {
            let kustomization = try XCTUnwrap(try RepositoryFiles.yamlFile("\(directory)/kustomization.yaml").first)
            let referenced =
                kustomization["resources"].list.compactMap(\.string)
                + kustomization["patches"].list.compactMap { $0["path"].string }
            XCTAssertFalse(referenced.isEmpty, directory)
            for path in referenced {
                let full = URL(fileURLWithPath: directory).appendingPathComponent(path).standardized.relativePath
                XCTAssertTrue(try RepositoryFiles.exists(full), "\(directory) names \(path), which does not exist")
            }
        }
    }

    func testKubectlRendersBothVariantsWithTheSidecarIntact() throws {
        let root = try RepositoryFiles.root()
        for (directory, expectsTLS) in [("Docker/k8s", false), ("Docker/k8s/tls", true)] {
            let rendered = try RepositoryFiles.run(["kubectl", "kustomize", directory], currentDirectory: root)
            if rendered.status == 127 { throw XCTSkip("kubectl is not installed; the kustomize build is not checked") }
            XCTAssertEqual(rendered.status, 0, "kubectl kustomize \(directory): \(rendered.standardError)")
            let documents = try RepositoryFiles.yamlDocuments(rendered.standardOutput, name: directory)
            XCTAssertEqual(
                Set(documents.compactMap { $0["kind"].string }), ["Service", "StatefulSet", "PodDisruptionBudget"])
            let set = try XCTUnwrap(documents.first { $0["kind"].string == "StatefulSet" })
            let tandem = try sidecar(set["spec"]["template"]["spec"])
            XCTAssertEqual(tandem["restartPolicy"].string, "Always")
            let names = tandem["env"].list.compactMap { $0["name"].string }
            XCTAssertEqual(names.contains("TANDEM_TLS_CERT"), expectsTLS, directory)
            XCTAssertTrue(
                names.contains("TANDEM_PEERS") && names.contains("TANDEM_NODE_ID"), "the patch keeps the base env")
        }
    }
}
