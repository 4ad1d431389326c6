import TandemConfig
import XCTest

/// Docker/k8s: the StatefulSet with Tandem as a native sidecar, its Services, PodDisruptionBudget and RBAC, checked
/// against the configuration table without a cluster, and the sidecar's preStop script run against stand-ins.
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

    /// The namespace the downward API gives the pods in these tests.
    private static let namespace = "tandem-test"

    /// The container's own env in pod `podName`, as the kubelet sets it: the pod name and namespace from the downward
    /// API, a stand-in for each required Secret key (an optional one that is absent is unset), and `$(NAME)`
    /// references expanded from the variables listed BEFORE them (a later or unknown one stays as written).
    private func containerEnvironment(of container: YAMLNode, podName: String) throws -> [String: String] {
        var environment: [String: String] = [:]
        for variable in container["env"].list {
            let name = try XCTUnwrap(variable["name"].string)
            let fieldPath = variable["valueFrom"]["fieldRef"]["fieldPath"].string
            if let value = variable["value"].text {
                environment[name] = Self.expandingReferences(in: value, from: environment)
            } else if fieldPath == "metadata.name" {
                environment[name] = podName
            } else if fieldPath == "metadata.namespace" {
                environment[name] = Self.namespace
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

    /// Kubernetes' dependent variables: `$(NAME)` becomes the value of an already defined NAME, `$$` a literal `$`.
    private static func expandingReferences(in value: String, from defined: [String: String]) -> String {
        var result = ""
        var rest = Substring(value)
        while let dollar = rest.firstIndex(of: "$") {
            result += rest[..<dollar]
            let afterDollar = rest[rest.index(after: dollar)...]
            if afterDollar.first == "$" {
                result += "$"
                rest = afterDollar.dropFirst()
            } else if afterDollar.first == "(", let close = afterDollar.firstIndex(of: ")"),
                let replacement = defined[String(afterDollar[afterDollar.index(after: afterDollar.startIndex)..<close])]
            {
                result += replacement
                rest = afterDollar[afterDollar.index(after: close)...]
            } else {
                result += "$"
                rest = afterDollar
            }
        }
        return result + rest
    }

    /// The environment tandem sees in pod `podName`: the image's ENV, then the container's env (above), without
    /// the variables the table does not list yet (the loader would refuse them).
    private func environment(of container: YAMLNode, podName: String) throws -> [String: String] {
        let dockerfile = Dockerfile(try RepositoryFiles.text("Docker/Dockerfile"))
        var environment = dockerfile.environment(of: try XCTUnwrap(dockerfile.stage(named: "tandem")))
        environment.merge(try containerEnvironment(of: container, podName: podName)) { _, container in container }
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
        XCTAssertTrue(names.contains("TANDEM_JOIN"))
        XCTAssertEqual(
            TandemTable.unknownNames(in: names), [],
            "tandem exits 2 on unknown TANDEM_* names")
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

    func testTheDisruptionBudgetKeepsAMajorityAtThreeAndAtFiveReplicas() throws {
        let replicas = try XCTUnwrap(try statefulSet()["spec"]["replicas"].int)
        let budget = try document(kind: "PodDisruptionBudget", in: "Docker/k8s/base/pdb.yaml")
        let maxUnavailable = try XCTUnwrap(budget["spec"]["maxUnavailable"].int)
        XCTAssertTrue(
            budget["spec"]["minAvailable"].isMissing, "a fixed minimum is wrong once the StatefulSet is scaled")
        XCTAssertEqual(maxUnavailable, 1, "one pod at a time can be drained")
        for voters in [replicas, 5] {
            XCTAssertGreaterThanOrEqual(
                voters - maxUnavailable, voters / 2 + 1,
                "\(voters) voters: a quorum stays up during voluntary disruptions")
        }
        let podLabels = try statefulSet()["spec"]["template"]["metadata"]["labels"].map.compactMapValues(\.string)
        let selector = budget["spec"]["selector"]["matchLabels"].map.compactMapValues(\.string)
        XCTAssertTrue(!selector.isEmpty && selector.allSatisfy { podLabels[$0.key] == $0.value })
    }

    func testTheGracePeriodLeavesTimeForPreStopRemovalHandoffAndDrain() throws {
        let spec = try podSpec()
        let grace = try XCTUnwrap(spec["terminationGracePeriodSeconds"].int)
        let preStop = try app(spec)["lifecycle"]["preStop"]
        let command = preStop["exec"]["command"].list.compactMap(\.text)
        XCTAssertEqual(command.first, "sleep", "the app waits for the pod to leave the Service")
        let preStopSeconds = try XCTUnwrap(Int(command.last ?? ""))
        let script = try RepositoryFiles.text("Docker/k8s/base/pre-stop.sh")
        let apiSeconds = try XCTUnwrap(Self.number(after: "--max-time ", in: script), "the API read is bounded")
        let removalSeconds = try XCTUnwrap(Self.number(after: "deadline=$(($(date +%s) + ", in: script))
        XCTAssertLessThanOrEqual(removalSeconds, 10, "a removal waits for one commit, retries included")
        // Counted one after the other: the app's preStop, Tandem's (the API read, then the removal and its commit),
        // then Tandem's handoff (at most 2 s) and drain (at most 10 s) after the app exits.
        XCTAssertGreaterThan(grace, preStopSeconds + apiSeconds + removalSeconds + 2 + 10)
        XCTAssertGreaterThan(grace, 10, "more than the drain alone")
    }

    /// The whole number written right after the first `prefix` in `text`.
    private static func number(after prefix: String, in text: String) -> Int? {
        guard let start = text.range(of: prefix)?.upperBound else { return nil }
        return Int(text[start...].prefix { $0.isNumber })
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
                + kustomization["configMapGenerator"].list.flatMap { $0["files"].list.compactMap(\.string) }
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
                Set(documents.compactMap { $0["kind"].string }),
                ["Service", "StatefulSet", "PodDisruptionBudget", "ServiceAccount", "Role", "RoleBinding", "ConfigMap"])
            let set = try XCTUnwrap(documents.first { $0["kind"].string == "StatefulSet" })
            let tandem = try sidecar(set["spec"]["template"]["spec"])
            XCTAssertEqual(tandem["restartPolicy"].string, "Always")
            let names = tandem["env"].list.compactMap { $0["name"].string }
            XCTAssertEqual(names.contains("TANDEM_TLS_CERT"), expectsTLS, directory)
            XCTAssertTrue(
                names.contains("TANDEM_PEERS") && names.contains("TANDEM_NODE_ID"), "the patch keeps the base env")
            let podName = try XCTUnwrap(names.firstIndex(of: "POD_NAME"))
            let advertise = try XCTUnwrap(names.firstIndex(of: "TANDEM_JOIN_ADVERTISE"))
            XCTAssertLessThan(podName, advertise, "\(directory): $(POD_NAME) is expanded only from an earlier variable")
            // The generated ConfigMap's name carries a hash; the StatefulSet must name it with that hash.
            let configMaps = Set(
                documents.filter { $0["kind"].string == "ConfigMap" }.compactMap { $0["metadata"]["name"].string })
            let hooks = set["spec"]["template"]["spec"]["volumes"].list.compactMap { $0["configMap"]["name"].string }
            XCTAssertEqual(hooks.count, 1, directory)
            XCTAssertTrue(hooks.allSatisfy(configMaps.contains), "\(directory): \(hooks) among \(configMaps)")
            let volumes = set["spec"]["template"]["spec"]["volumes"].list.compactMap { $0["name"].string }
            XCTAssertEqual(volumes.contains("tls"), expectsTLS, "\(directory): the patch merges into the base volumes")
        }
    }

    func testPodsBeyondTheFoundersJoinThroughTheHeadlessServiceUnderTheirOwnNames() throws {
        let set = try statefulSet()
        let setName = try XCTUnwrap(set["metadata"]["name"].string)
        let serviceName = try XCTUnwrap(set["spec"]["serviceName"].string)
        let tandem = try sidecar(try podSpec())
        let founders = try podNames()
        let founder = try XCTUnwrap(
            TandemTable.load(try environment(of: tandem, podName: founders[0]), context: founders[0]))
        // kubectl scale statefulset tandem --replicas=5 adds ordinals 3 and 4 to the same template.
        for ordinal in founders.count..<5 {
            let pod = "\(setName)-\(ordinal)"
            XCTAssertFalse(founder.peers.map(\.id).contains(pod), "\(pod) is not a founder, so it joins")
            let variables = try containerEnvironment(of: tandem, podName: pod)
            XCTAssertEqual(variables["TANDEM_NODE_ID"], pod)
            XCTAssertEqual(variables["TANDEM_JOIN"], serviceName, "the members are found through the headless Service")
            XCTAssertEqual(
                variables["TANDEM_JOIN_ADVERTISE"], "\(pod).\(serviceName):\(founder.peerListen.port)",
                "a joining pod gives its own stable name and peer port")
            XCTAssertEqual(variables["POD_NAMESPACE"], Self.namespace)
            // A joining pod's whole environment is accepted like a founder's.
            let configuration = TandemTable.load(try environment(of: tandem, podName: pod), context: pod)
            XCTAssertEqual(configuration?.nodeID, pod)
        }
    }

    func testAScaledAwayOrdinalComesBackWithAnEmptyVolume() throws {
        // A removed node refuses its old data directory, so a re-added ordinal must get a fresh claim; deleting the
        // StatefulSet itself must keep the members' data.
        let policy = try statefulSet()["spec"]["persistentVolumeClaimRetentionPolicy"]
        XCTAssertEqual(policy["whenScaled"].string, "Delete")
        XCTAssertEqual(policy["whenDeleted"].string, "Retain")
    }

    func testThePodsServiceAccountMayOnlyReadTheTandemStatefulSet() throws {
        let path = "Docker/k8s/base/rbac.yaml"
        let set = try statefulSet()
        let setName = try XCTUnwrap(set["metadata"]["name"].string)
        let account = try XCTUnwrap(set["spec"]["template"]["spec"]["serviceAccountName"].string)
        _ = try document(kind: "ServiceAccount", name: account, in: path)
        let binding = try document(kind: "RoleBinding", in: path)
        XCTAssertTrue(
            binding["subjects"].list.contains {
                // No namespace in a RoleBinding means the binding's own, wherever the manifests are applied.
                $0["kind"].string == "ServiceAccount" && $0["name"].string == account && $0["namespace"].isMissing
            }, "the binding names the pods' service account: \(binding["subjects"])")
        XCTAssertEqual(binding["roleRef"]["kind"].string, "Role", "a namespaced Role, not a ClusterRole")
        let role = try document(kind: "Role", name: try XCTUnwrap(binding["roleRef"]["name"].string), in: path)
        let rules = role["rules"].list
        XCTAssertFalse(rules.isEmpty)
        var resources: Set<String> = []
        for rule in rules {
            XCTAssertEqual(rule["apiGroups"].list.compactMap(\.string), ["apps"])
            XCTAssertEqual(rule["resourceNames"].list.compactMap(\.string), [setName], "only this StatefulSet")
            let verbs = Set(rule["verbs"].list.compactMap(\.string))
            XCTAssertFalse(verbs.isEmpty)
            XCTAssertTrue(verbs.isSubset(of: ["get", "list", "watch"]), "read-only: \(verbs)")
            resources.formUnion(rule["resources"].list.compactMap(\.string))
        }
        XCTAssertEqual(resources, ["statefulsets", "statefulsets/scale"])
        let script = try RepositoryFiles.text("Docker/k8s/base/pre-stop.sh")
        XCTAssertTrue(script.contains("/statefulsets/$set_name/scale\""), "the hook reads what the Role grants")
    }

    func testTheSidecarsPreStopRunsTheScriptFromTheGeneratedConfigMap() throws {
        let kustomization = try XCTUnwrap(try RepositoryFiles.yamlFile("Docker/k8s/base/kustomization.yaml").first)
        let generator = try XCTUnwrap(
            kustomization["configMapGenerator"].list.first {
                $0["files"].list.compactMap(\.string).contains("pre-stop.sh")
            }, "a ConfigMap is generated from pre-stop.sh")
        let spec = try podSpec()
        let volume = try XCTUnwrap(
            spec["volumes"].list.first { $0["configMap"]["name"].string == generator["name"].string },
            "the pods mount the generated ConfigMap")
        let tandem = try sidecar(spec)
        let mount = try XCTUnwrap(tandem["volumeMounts"].list.first { $0["name"].string == volume["name"].string })
        let mountPath = try XCTUnwrap(mount["mountPath"].string)
        XCTAssertEqual(mount["readOnly"].bool, true)
        XCTAssertEqual(
            tandem["lifecycle"]["preStop"]["exec"]["command"].list.compactMap(\.text),
            ["sh", "\(mountPath)/pre-stop.sh"])
        XCTAssertTrue(
            try app(spec)["volumeMounts"].list.allSatisfy { $0["name"].string != volume["name"].string },
            "the app has no use for the hook")
    }

    // MARK: pre-stop.sh against a fake API server and a fake tandem CLI

    func testPreStopRemovesAPodTheStatefulSetWasScaledBelow() throws {
        let run = try runPreStop(pod: "tandem-4", scaleAnswer: Self.scaleAnswer(replicas: 3))
        XCTAssertEqual(run.status, 0, run.log)
        XCTAssertEqual(run.tandemCalls, [["members", "remove", "tandem-4", "--if-absent-ok"]], run.log)
        let curl = try XCTUnwrap(run.curlArguments, "the API server was asked")
        XCTAssertEqual(
            curl.last,
            "https://kubernetes.default.svc/apis/apps/v1/namespaces/\(Self.namespace)/statefulsets/tandem/scale")
        XCTAssertTrue(
            zip(curl, curl.dropFirst()).contains { $0 == ("--cacert", "\(run.serviceAccountDirectory)/ca.crt") },
            "the server is checked against the service account's CA: \(curl)")
        XCTAssertFalse(curl.contains { $0.contains(Self.fakeToken) }, "the token is not on the command line")
        XCTAssertEqual(run.curlInput, "Authorization: Bearer \(Self.fakeToken)\n", "it is sent as a header on stdin")
    }

    func testPreStopKeepsAPodWithinTheReplicasBecauseItIsARestart() throws {
        for (pod, replicas) in [("tandem-1", 3), ("tandem-4", 5), ("tandem-3", 5)] {
            let run = try runPreStop(pod: pod, scaleAnswer: Self.scaleAnswer(replicas: replicas))
            XCTAssertEqual(run.status, 0, run.log)
            XCTAssertNotNil(run.curlArguments, "\(pod): the decision is made on the API's answer")
            XCTAssertEqual(run.tandemCalls, [], "\(pod) with \(replicas) replicas stays a member: \(run.log)")
            XCTAssertTrue(run.log.contains("keeping the member"), run.log)
        }
    }

    func testPreStopKeepsTheMemberWhenTheAPICannotBeRead() throws {
        let unreachable = try runPreStop(pod: "tandem-4", scaleAnswer: nil)
        XCTAssertEqual(unreachable.status, 0, unreachable.log)
        XCTAssertNotNil(unreachable.curlArguments)
        XCTAssertEqual(unreachable.tandemCalls, [], "a wrong removal is worse than a stale member")
        XCTAssertTrue(unreachable.log.contains("cannot read"), unreachable.log)

        let noToken = try runPreStop(pod: "tandem-4", scaleAnswer: Self.scaleAnswer(replicas: 3), token: nil)
        XCTAssertEqual(noToken.status, 0, noToken.log)
        XCTAssertNil(noToken.curlArguments, "no token, no request")
        XCTAssertEqual(noToken.tandemCalls, [])

        let notAScale = try runPreStop(pod: "tandem-4", scaleAnswer: #"{"kind":"Status","status":"Failure"}"#)
        XCTAssertEqual(notAScale.status, 0, notAScale.log)
        XCTAssertEqual(notAScale.tandemCalls, [], notAScale.log)
    }

    func testPreStopNeverRemovesAFounderNorAnyMemberAtZeroReplicas() throws {
        // Below the founders: tandem-2 would come back as a founder the cluster no longer counts.
        let founder = try runPreStop(pod: "tandem-2", scaleAnswer: Self.scaleAnswer(replicas: 2))
        XCTAssertEqual(founder.status, 0, founder.log)
        XCTAssertEqual(founder.tandemCalls, [], founder.log)
        XCTAssertTrue(founder.log.contains("founding member"), founder.log)
        // Zero replicas: the API server omits spec.replicas altogether.
        let zero = try runPreStop(pod: "tandem-4", scaleAnswer: Self.scaleAnswer(replicas: 0))
        XCTAssertEqual(zero.status, 0, zero.log)
        XCTAssertEqual(zero.tandemCalls, [], zero.log)
    }

    private static let fakeToken = "fake-service-account-token"

    /// The scale subresource as the API server writes it: compact JSON, spec.replicas omitted when it is 0.
    private static func scaleAnswer(replicas: Int) -> String {
        let spec = replicas == 0 ? "{}" : #"{"replicas":\#(replicas)}"#
        return #"{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":"tandem","namespace":"tandem-test"},"#
            + #""spec":\#(spec),"status":{"replicas":5,"selector":"app.kubernetes.io/name=tandem"}}"#
    }

    /// What one run of pre-stop.sh did.
    private struct PreStopRun {
        let status: Int32
        /// curl's arguments, or nil when it was not run.
        let curlArguments: [String]?
        /// What curl read on stdin.
        let curlInput: String
        /// Each run of `tandem`, by its arguments.
        let tandemCalls: [[String]]
        /// The script's log (its reasons, and the CLI's output).
        let log: String
        let serviceAccountDirectory: String
    }

    /// Runs pre-stop.sh with `sh` as the sidecar would in pod `pod`, with the sidecar's TANDEM_PEERS, against
    /// stand-ins first on PATH: `curl` answers `scaleAnswer` (nil: it fails as with an unreachable API server) and
    /// `tandem` succeeds; both record how they were called. SA_DIR holds a fake token (unless `token` is nil) and CA.
    private func runPreStop(pod: String, scaleAnswer: String?, token: String? = fakeToken) throws -> PreStopRun {
        let files = FileManager.default
        let directory = files.temporaryDirectory.appendingPathComponent("tandem-pre-stop-\(getpid())-\(UUID())")
        defer { try? files.removeItem(at: directory) }
        let bin = directory.appendingPathComponent("bin")
        let serviceAccount = directory.appendingPathComponent("serviceaccount")
        for created in [bin, serviceAccount] {
            try files.createDirectory(at: created, withIntermediateDirectories: true)
        }
        func write(_ text: String, to name: String, in folder: URL = directory, mode: Int = 0o644) throws {
            let path = folder.appendingPathComponent(name).path
            XCTAssertTrue(
                files.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: mode]))
        }
        let record = directory.path
        try write(
            """
            #!/bin/sh
            printf '%s\\n' "$@" > '\(record)/curl.args'
            cat > '\(record)/curl.input'
            [ -f '\(record)/scale.json' ] || { echo 'curl: (7) Failed to connect to kubernetes.default.svc' >&2; exit 7; }
            cat '\(record)/scale.json'

            """, to: "curl", in: bin, mode: 0o755)
        try write(
            """
            #!/bin/sh
            echo "$*" >> '\(record)/tandem.calls'

            """, to: "tandem", in: bin, mode: 0o755)
        if let scaleAnswer { try write(scaleAnswer, to: "scale.json") }
        if let token { try write(token, to: "token", in: serviceAccount) }
        try write("fake CA\n", to: "ca.crt", in: serviceAccount)
        try write("", to: "pre-stop.log")

        let peers = try XCTUnwrap(
            try containerEnvironment(of: try sidecar(try podSpec()), podName: pod)["TANDEM_PEERS"])
        let script = try RepositoryFiles.root().appendingPathComponent("Docker/k8s/base/pre-stop.sh").path
        let result = try RepositoryFiles.run([
            "-i", "PATH=\(bin.path):/usr/bin:/bin", "SA_DIR=\(serviceAccount.path)",
            "PRE_STOP_LOG=\(record)/pre-stop.log", "POD_NAME=\(pod)", "POD_NAMESPACE=\(Self.namespace)",
            "TANDEM_PEERS=\(peers)", "sh", script,
        ])
        func read(_ name: String) -> String? {
            files.contents(atPath: directory.appendingPathComponent(name).path).map {
                String(decoding: $0, as: UTF8.self)
            }
        }
        let lines = { (text: String) in text.split(separator: "\n").map(String.init) }
        return PreStopRun(
            status: result.status, curlArguments: read("curl.args").map(lines), curlInput: read("curl.input") ?? "",
            tandemCalls: lines(read("tandem.calls") ?? "").map { $0.split(separator: " ").map(String.init) },
            log: (read("pre-stop.log") ?? "") + result.standardError, serviceAccountDirectory: serviceAccount.path)
    }
}
