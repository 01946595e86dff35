import WharfCore

/// Plain Kubernetes manifests for the platform: the registry and the gateway (one replica each,
/// on volumes of their own: their state is files) and one model-server Deployment per served
/// model, with probes on the health endpoints, resources, locked-down security contexts,
/// Services, and for the model servers HorizontalPodAutoscalers and PodDisruptionBudgets.
///
/// Secrets are referenced, never rendered: create `wharf-secrets` with the keys
/// `registry-token`, `gateway-admin-key` and (with PostgreSQL) `database-url`.
public struct KubernetesManifests: Sendable {
    public struct Model: Sendable, Hashable {
        /// `NAME@ALIAS` or `NAME@VERSION` in the registry.
        public var reference: ModelReference
        public var minReplicas: Int
        public var maxReplicas: Int

        public init(reference: ModelReference, minReplicas: Int = 2, maxReplicas: Int = 10) {
            self.reference = reference
            self.minReplicas = minReplicas
            self.maxReplicas = maxReplicas
        }
    }

    public var namespace: String
    public var image: String
    public var models: [Model]
    /// PostgreSQL for the registry's records (its URL in the secret); else SQLite on the volume.
    public var usePostgres: Bool

    public init(namespace: String = "wharf", image: String = "wharf:latest", models: [Model], usePostgres: Bool = false) {
        self.namespace = namespace
        self.image = image
        self.models = models
        self.usePostgres = usePostgres
    }

    public func validated() throws(WharfError) -> KubernetesManifests {
        try RegistryName.check(namespace, kind: "namespace")
        try Self.checkLabel(namespace, maxLength: 63, "namespace \(namespace)")
        guard !image.isEmpty, !image.contains(" ") else { throw WharfError(.invalidInput, "--image must be an image reference") }
        var seen: Set<String> = []
        for model in models {
            // Its objects are named wharf-model-<name>: a DNS label of at most 63 characters.
            try Self.checkLabel(model.reference.name, maxLength: 63 - "wharf-model-".count, "model \(model.reference.name)")
            guard seen.insert(model.reference.name).inserted else {
                throw WharfError(.invalidInput, "model \(model.reference.name) is given twice: one Deployment a model (serve another alias under another name)")
            }
            guard model.minReplicas >= 1, model.maxReplicas >= model.minReplicas, model.maxReplicas <= 1000 else {
                throw WharfError(.invalidInput, "model \(model.reference.name): replicas must satisfy 1 ≤ min ≤ max ≤ 1000")
            }
        }
        return self
    }

    /// A DNS-1123 label: lower-case letters, digits and '-', a letter or digit at both ends.
    private static func checkLabel(_ name: String, maxLength: Int, _ label: String) throws(WharfError) {
        let bytes = Array(name.utf8)
        func alphanumeric(_ byte: UInt8) -> Bool { (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) }
        guard !bytes.isEmpty, bytes.count <= maxLength, bytes.allSatisfy({ alphanumeric($0) || $0 == UInt8(ascii: "-") }),
              alphanumeric(bytes.first!), alphanumeric(bytes.last!)
        else {
            throw WharfError(.invalidInput, "\(label): Kubernetes names are lower-case letters, digits and '-', start and end with a letter or digit, and here have at most \(maxLength) characters")
        }
    }

    /// File name → YAML text.
    public func render() -> [(file: String, yaml: String)] {
        objects().map { ($0.file, YAML.documents($0.objects)) }
    }

    /// File name → the objects it holds, as trees (what tests inspect).
    public func objects() -> [(file: String, objects: [YAML])] {
        var files: [(String, [YAML])] = [
            ("00-namespace.yaml", [namespaceObject]),
            ("01-serviceaccount.yaml", [serviceAccount]),
            ("02-config.yaml", [configMap]),
            ("10-registry.yaml", registry),
            ("20-gateway.yaml", gateway),
        ]
        for model in models {
            files.append(("30-model-\(model.reference.name).yaml", server(model)))
        }
        return files
    }

    // MARK: - Objects

    private func metadata(_ name: String, component: String) -> YAML {
        .map([
            ("name", .string(name)),
            ("namespace", .string(namespace)),
            ("labels", labels(component)),
        ])
    }

    private func labels(_ component: String, model: String? = nil) -> YAML {
        var pairs: [(String, YAML)] = [
            ("app.kubernetes.io/name", .string("wharf")),
            ("app.kubernetes.io/component", .string(component)),
        ]
        if let model { pairs.append(("wharf.dev/model", .string(model))) }
        return .map(pairs)
    }

    private var namespaceObject: YAML {
        .map([("apiVersion", "v1"), ("kind", "Namespace"), ("metadata", .map([("name", .string(namespace)), ("labels", labels("namespace"))]))])
    }

    private var serviceAccount: YAML {
        .map([("apiVersion", "v1"), ("kind", "ServiceAccount"), ("metadata", metadata("wharf", component: "platform")),
              ("automountServiceAccountToken", .bool(false))])
    }

    private var configMap: YAML {
        .map([("apiVersion", "v1"), ("kind", "ConfigMap"), ("metadata", metadata("wharf-config", component: "platform")),
              ("data", .map([
                  ("WHARF_REGISTRY_URL", .string("http://wharf-registry:8081")),
                  ("WHARF_DATA_DIR", .string("/data")),
              ]))])
    }

    private func secretEnvironment(_ name: String, key: String) -> YAML {
        .map([("name", .string(name)), ("valueFrom", .map([("secretKeyRef", .map([("name", "wharf-secrets"), ("key", .string(key))]))]))])
    }

    private var registry: [YAML] {
        let labels = labels("registry")
        var arguments: [YAML] = ["registry", "--host", "0.0.0.0", "--port", "8081", "--data-dir", "/data", "--log-format", "json"]
        var environment = [secretEnvironment("WHARF_REGISTRY_TOKEN", key: "registry-token")]
        if usePostgres { environment.append(secretEnvironment("WHARF_DATABASE", key: "database-url")) }
        arguments += []
        let container = self.container(name: "registry", arguments: arguments, port: 8081, health: "/v1/health",
                                       environment: environment, requests: ("100m", "128Mi"), limits: ("1", "512Mi"))
        // Artifacts (and, without PostgreSQL, the SQLite database) live on one volume: one replica.
        let pod = podTemplate(labels: labels, container: container, dataVolume: .map([("persistentVolumeClaim", .map([("claimName", "wharf-registry-data")]))]))
        return [
            .map([("apiVersion", "v1"), ("kind", "PersistentVolumeClaim"), ("metadata", metadata("wharf-registry-data", component: "registry")),
                  ("spec", .map([("accessModes", .list(["ReadWriteOnce"])), ("resources", .map([("requests", .map([("storage", "10Gi")]))]))]))]),
            deployment(name: "wharf-registry", labels: labels, replicas: 1, pod: pod, strategy: "Recreate"),
            service(name: "wharf-registry", labels: labels, port: 8081),
        ]
    }

    private var gateway: [YAML] {
        let labels = labels("gateway")
        let container = self.container(
            name: "gateway", arguments: ["gateway", "--host", "0.0.0.0", "--port", "8080", "--data-dir", "/data", "--log-format", "json"],
            port: 8080, health: "/v2/health", environment: [secretEnvironment("WHARF_GATEWAY_ADMIN_KEY", key: "gateway-admin-key")],
            requests: ("250m", "128Mi"), limits: ("2", "512Mi"))
        // Deployments, their history and the keys are the gateway's files, read when it starts:
        // one replica on a volume of its own, so that every request sees the same deployments
        // and they survive a restart (replicas on volumes of their own would each keep their
        // own, and disagree).
        let pod = podTemplate(labels: labels, container: container,
                              dataVolume: .map([("persistentVolumeClaim", .map([("claimName", "wharf-gateway-data")]))]))
        return [
            .map([("apiVersion", "v1"), ("kind", "PersistentVolumeClaim"), ("metadata", metadata("wharf-gateway-data", component: "gateway")),
                  ("spec", .map([("accessModes", .list(["ReadWriteOnce"])), ("resources", .map([("requests", .map([("storage", "1Gi")]))]))]))]),
            deployment(name: "wharf-gateway", labels: labels, replicas: 1, pod: pod, strategy: "Recreate"),
            service(name: "wharf-gateway", labels: labels, port: 8080),
        ]
    }

    private func server(_ model: Model) -> [YAML] {
        let name = "wharf-model-\(model.reference.name)"
        let labels = labels("model-server", model: model.reference.name)
        let container = self.container(
            name: "server",
            // On SIGTERM the pod leaves its Service's endpoints while the proxies catch up: the
            // server keeps answering, readiness false, for 5 s of the 30 s grace period first.
            arguments: ["serve", "--registry", "http://wharf-registry:8081", "--model", .string(model.reference.description),
                        "--host", "0.0.0.0", "--port", "8080", "--cache-dir", "/data/cache", "--log-format", "json",
                        "--drain-delay-ms", "5000"],
            port: 8080, health: "/v2/health", environment: [secretEnvironment("WHARF_REGISTRY_TOKEN", key: "registry-token")],
            requests: ("500m", "128Mi"), limits: ("2", "1Gi"))
        // The grace period covers the drain delay (5 s) and the 30 s the server gives requests
        // in flight, with a margin: a shorter one SIGKILLs requests still draining.
        let pod = podTemplate(labels: labels, container: container, dataVolume: .map([("emptyDir", .map([]))]), gracePeriodSeconds: 45)
        return [
            deployment(name: name, labels: labels, replicas: model.minReplicas, pod: pod, strategy: "RollingUpdate"),
            service(name: name, labels: labels, port: 8080),
            autoscaler(name: name, minReplicas: model.minReplicas, maxReplicas: model.maxReplicas),
            disruptionBudget(name: name, labels: labels),
        ]
    }

    private func container(name: String, arguments: [YAML], port: Int, health: String, environment: [YAML],
                           requests: (cpu: String, memory: String), limits: (cpu: String, memory: String)) -> YAML {
        func probe(_ path: String, period: Int, failures: Int) -> YAML {
            .map([("httpGet", .map([("path", .string(path)), ("port", .int(port))])), ("periodSeconds", .int(period)),
                  ("timeoutSeconds", 2), ("failureThreshold", .int(failures))])
        }
        return .map([
            ("name", .string(name)),
            ("image", .string(image)),
            ("imagePullPolicy", "IfNotPresent"),
            ("args", .list(arguments)),
            ("ports", .list([.map([("name", "http"), ("containerPort", .int(port))])])),
            ("envFrom", .list([.map([("configMapRef", .map([("name", "wharf-config")]))])])),
            ("env", .list(environment)),
            ("readinessProbe", probe(health + "/ready", period: 5, failures: 2)),
            ("livenessProbe", probe(health + "/live", period: 10, failures: 3)),
            ("startupProbe", probe(health + "/live", period: 2, failures: 30)),
            ("resources", .map([
                ("requests", .map([("cpu", .string(requests.cpu)), ("memory", .string(requests.memory))])),
                ("limits", .map([("cpu", .string(limits.cpu)), ("memory", .string(limits.memory))])),
            ])),
            ("securityContext", .map([
                ("allowPrivilegeEscalation", .bool(false)),
                ("readOnlyRootFilesystem", .bool(true)),
                ("runAsNonRoot", .bool(true)),
                ("runAsUser", 10001),
                ("capabilities", .map([("drop", .list(["ALL"]))])),
            ])),
            ("volumeMounts", .list([.map([("name", "data"), ("mountPath", "/data")]), .map([("name", "tmp"), ("mountPath", "/tmp")])])),
        ])
    }

    private func podTemplate(labels: YAML, container: YAML, dataVolume: YAML, gracePeriodSeconds: Int = 30) -> YAML {
        guard case .map(var volume) = dataVolume else { return .null }
        volume.insert(("name", "data"), at: 0)
        return .map([
            ("metadata", .map([("labels", labels)])),
            ("spec", .map([
                ("serviceAccountName", "wharf"),
                ("automountServiceAccountToken", .bool(false)),
                ("securityContext", .map([("runAsNonRoot", .bool(true)), ("fsGroup", 10001), ("seccompProfile", .map([("type", "RuntimeDefault")]))])),
                ("terminationGracePeriodSeconds", .int(gracePeriodSeconds)),
                ("containers", .list([container])),
                ("volumes", .list([.map(volume), .map([("name", "tmp"), ("emptyDir", .map([]))])])),
            ])),
        ])
    }

    private func deployment(name: String, labels: YAML, replicas: Int, pod: YAML, strategy: String) -> YAML {
        .map([
            ("apiVersion", "apps/v1"), ("kind", "Deployment"),
            ("metadata", .map([("name", .string(name)), ("namespace", .string(namespace)), ("labels", labels)])),
            ("spec", .map([
                ("replicas", .int(replicas)),
                ("selector", .map([("matchLabels", labels)])),
                ("strategy", .map([("type", .string(strategy))])),
                ("template", pod),
            ])),
        ])
    }

    private func service(name: String, labels: YAML, port: Int) -> YAML {
        .map([
            ("apiVersion", "v1"), ("kind", "Service"),
            ("metadata", .map([("name", .string(name)), ("namespace", .string(namespace)), ("labels", labels)])),
            ("spec", .map([("selector", labels), ("ports", .list([.map([("name", "http"), ("port", .int(port)), ("targetPort", "http")])]))])),
        ])
    }

    private func autoscaler(name: String, minReplicas: Int, maxReplicas: Int) -> YAML {
        .map([
            ("apiVersion", "autoscaling/v2"), ("kind", "HorizontalPodAutoscaler"),
            ("metadata", .map([("name", .string(name)), ("namespace", .string(namespace))])),
            ("spec", .map([
                ("scaleTargetRef", .map([("apiVersion", "apps/v1"), ("kind", "Deployment"), ("name", .string(name))])),
                ("minReplicas", .int(minReplicas)), ("maxReplicas", .int(maxReplicas)),
                ("metrics", .list([.map([("type", "Resource"), ("resource", .map([("name", "cpu"), ("target", .map([("type", "Utilization"), ("averageUtilization", 70)]))]))])])),
            ])),
        ])
    }

    /// One pod may go at a time (`maxUnavailable: 1`): `minAvailable: 1` would let a drain take
    /// all but one at once, and over a single replica would block every drain.
    private func disruptionBudget(name: String, labels: YAML) -> YAML {
        .map([
            ("apiVersion", "policy/v1"), ("kind", "PodDisruptionBudget"),
            ("metadata", .map([("name", .string(name)), ("namespace", .string(namespace))])),
            ("spec", .map([("maxUnavailable", 1), ("selector", .map([("matchLabels", labels)]))])),
        ])
    }
}

/// Just enough YAML to write manifests: ordered maps, lists, scalars; strings always quoted
/// (JSON style, which YAML reads), so no value is ever reinterpreted ("on", "1.10", "null").
public indirect enum YAML: Sendable, Equatable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    public static func == (lhs: YAML, rhs: YAML) -> Bool { lhs.render(indent: 0) == rhs.render(indent: 0) }

    case map([(String, YAML)])
    case list([YAML])
    case string(String)
    case int(Int)
    case bool(Bool)
    case null

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }

    /// The value at a path of map keys (and list indices as strings); nil when absent.
    public subscript(_ path: String...) -> YAML? {
        var current: YAML? = self
        for key in path {
            switch current {
            case .map(let pairs)?: current = pairs.first { $0.0 == key }?.1
            case .list(let items)?: current = Int(key).flatMap { items.indices.contains($0) ? items[$0] : nil }
            default: return nil
            }
        }
        return current
    }

    public var text: String? { if case .string(let value) = self { value } else { nil } }
    public var number: Int? { if case .int(let value) = self { value } else { nil } }
    public var items: [YAML] { if case .list(let items) = self { items } else { [] } }

    static func documents(_ values: [YAML]) -> String {
        values.map { "---\n" + $0.render(indent: 0) }.joined()
    }

    func render(indent: Int) -> String {
        let pad = String(repeating: " ", count: indent)
        switch self {
        case .map(let pairs) where pairs.isEmpty: return "{}\n"
        case .list(let items) where items.isEmpty: return "[]\n"
        case .map(let pairs):
            return pairs.map { key, value in
                switch value {
                case .map(let inner) where !inner.isEmpty: return "\(pad)\(key):\n" + value.render(indent: indent + 2)
                case .list(let inner) where !inner.isEmpty: return "\(pad)\(key):\n" + value.render(indent: indent)
                default: return "\(pad)\(key): " + value.render(indent: 0)
                }
            }.joined()
        case .list(let items):
            return items.map { item in
                switch item {
                case .map(let inner) where !inner.isEmpty:
                    let body = item.render(indent: indent + 2)
                    return "\(pad)- " + body.dropFirst(indent + 2)
                case .list(let inner) where !inner.isEmpty:
                    return "\(pad)-\n" + item.render(indent: indent + 2)
                default:
                    return "\(pad)- " + item.render(indent: 0)
                }
            }.joined()
        case .string(let text): return Self.quote(text) + "\n"
        case .int(let value): return "\(value)\n"
        case .bool(let value): return value ? "true\n" : "false\n"
        case .null: return "null\n"
        }
    }

    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
