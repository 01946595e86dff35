import ArgumentParser
import Foundation
import WharfClient
import WharfCore
import WharfDeploy
import WharfPipelines

/// Where the gateway is and the key to use: shared by the deploy subcommands.
struct GatewayOptions: ParsableArguments {
    @Option(help: "Gateway URL (WHARF_GATEWAY_URL; default http://127.0.0.1:8080).")
    var gateway: String?

    @Option(help: "API key with the deploy scope (WHARF_API_KEY).")
    var key: String?

    var client: GatewayClient {
        let environment = ProcessInfo.processInfo.environment
        return GatewayClient(baseURL: gateway ?? environment["WHARF_GATEWAY_URL"] ?? "http://127.0.0.1:8080",
                             key: key ?? environment["WHARF_API_KEY"])
    }
}

func printJSONObject(_ object: [String: Any]) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    writeStandardOutput(String(decoding: data, as: UTF8.self) + "\n")
}

/// `VERSION=WEIGHT@URL,URL` → a target.
func parseTarget(_ text: String) throws(WharfError) -> DeploymentSpec.Target {
    guard let equals = text.firstIndex(of: "="), let at = text.firstIndex(of: "@"), equals < at else {
        throw WharfError(.invalidInput, "--target \(text): expected VERSION=WEIGHT@URL[,URL…], like 3=100@http://127.0.0.1:9001")
    }
    guard let weight = Double(text[text.index(after: equals)..<at]) else {
        throw WharfError(.invalidInput, "--target \(text): the weight must be a number")
    }
    let replicas = text[text.index(after: at)...].split(separator: ",").map(String.init)
    return DeploymentSpec.Target(version: String(text[..<equals]), weight: weight, replicas: replicas)
}

struct DeployCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deploy",
        abstract: "Steer the gateway's deployments: set, status, canary, promote, rollback, shadow.",
        subcommands: [Set.self, Status.self, Canary.self, Rollout.self, Promote.self, Rollback.self, Shadow.self, Kubernetes.self]
    )

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create or replace a deployment, from --spec FILE (JSON) or --target flags.")
        @OptionGroup var options: GatewayOptions
        @Argument(help: "The model name clients use.") var model: String
        @Option(help: "A JSON deployment spec (docs/gateway-openapi.yaml).") var spec: String?
        @Option(help: "VERSION=WEIGHT@URL[,URL…]. Repeatable.") var target: [String] = []
        @Option(help: "Route by this header with consistent hashing.") var stickyHeader: String?
        @Option(help: "Per-attempt timeout, milliseconds (default: 10000).") var timeoutMs: Int?
        @Option(help: "Other replicas tried when one fails (default: 2).") var retries: Int?
        @Option(help: "Requests in flight at most; beyond, 503 (default: 256).") var maxConcurrency: Int?

        func run() async throws {
            try await reportingErrors {
                let deployment: DeploymentSpec
                if let spec {
                    // The file is the whole spec: a flag beside it would be silently ignored.
                    guard target.isEmpty, stickyHeader == nil, timeoutMs == nil, retries == nil, maxConcurrency == nil else {
                        throw WharfError(.invalidInput, "--spec holds the whole deployment: leave out --target, --sticky-header, --timeout-ms, --retries and --max-concurrency, or put them in the file")
                    }
                    let data = Data(try readFile(spec))
                    do {
                        let decoder = JSONDecoder()
                        decoder.userInfo[.refusesUnknownKeys] = true
                        deployment = try decoder.decode(DeploymentSpec.self, from: data)
                    } catch let error as DecodingError {
                        throw WharfError(.invalidInput, "\(spec) is not a deployment spec: \(JSONErrors.describe(error, in: data))")
                    }
                    guard deployment.model == model else {
                        throw WharfError(.invalidInput, "\(spec) is the spec of model \(deployment.model.prefix(80)), not \(model)")
                    }
                } else {
                    let defaults = DeploymentSpec(model: model, targets: [])
                    deployment = DeploymentSpec(model: model, targets: try target.map(parseTarget), stickyHeader: stickyHeader,
                                                timeoutMilliseconds: timeoutMs ?? defaults.timeoutMilliseconds, retries: retries ?? defaults.retries,
                                                maxConcurrency: maxConcurrency ?? defaults.maxConcurrency)
                }
                try printJSONObject(try await options.client.set(try deployment.validated()))
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Spec, live figures, canary and change history of a deployment.")
        @OptionGroup var options: GatewayOptions
        @Argument(help: "The model.") var model: String

        func run() async throws {
            try await reportingErrors { try printJSONObject(try await options.client.status(model)) }
        }
    }

    struct Canary: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Roll a new version out step by step; it rolls back by itself when a limit is crossed.")
        @OptionGroup var options: GatewayOptions
        @Argument(help: "The model.") var model: String
        @Option(help: "The new version's label.") var version: String
        @Option(help: "Its replicas' URLs, comma-separated.") var replicas: String
        @Option(help: "Traffic percentages, comma-separated.") var steps = "5,25,50,100"
        @Option(help: "Time per step: 30s, 2m, 500ms.") var interval = "30s"
        @Option(help: "Highest error rate: 1% or 0.01.") var maxErrorRate = "1%"
        @Option(help: "Highest p99 latency, milliseconds.") var maxP99Ms: Double?
        @Option(help: "Requests a step needs before it is judged.") var minRequests = 20

        func run() async throws {
            try await reportingErrors {
                let plan = CanaryPlan(version: version, replicas: replicas.split(separator: ",").map(String.init), steps: try parseSteps(steps),
                                      intervalSeconds: try parseSeconds(interval), maxErrorRate: try parseRate(maxErrorRate),
                                      maxP99Milliseconds: maxP99Ms, minRequests: minRequests)
                try printJSONObject(try await options.client.canary(model, try plan.validated()))
            }
        }
    }

    struct Rollout: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Roll a registered version out end to end: candidate alias, canary, production alias, back on the production replicas.",
            discussion: """
                The candidate replicas follow NAME@<candidate alias> (wharf serve --registry … --model \
                NAME@candidate); the production replicas follow NAME@production. The rollout points the \
                candidate alias at --version, waits for the candidate replicas to serve it, runs the \
                gateway's canary towards them, and when every step passed moves the production alias (the \
                registry's promotion policy applies), waits for the production replicas to swap, and gives \
                them all the traffic again. A canary the gateway rolls back ends the rollout: exit status 1, \
                production untouched. A canary of the model that is already running is waited for.
                """)
        @OptionGroup var options: GatewayOptions
        @Argument(help: "The model.") var model: String
        @Option(help: "The registered version to roll out.") var version: Int
        @Option(help: "The candidate replicas' URLs, comma-separated.") var replicas: String
        @Option(help: "The production replicas' URLs (default: the deployment's current replicas).") var productionReplicas: String?
        @Option(help: "The alias the candidate replicas follow.") var candidateAlias = "candidate"
        @Option(help: "The alias moved when the canary passes.") var alias = "production"
        @Option(help: "Registry URL (WHARF_REGISTRY_URL; default http://127.0.0.1:8081).") var registry: String?
        @Option(help: "Traffic percentages, comma-separated.") var steps = "5,25,50,100"
        @Option(help: "Time per step: 30s, 2m, 500ms.") var interval = "30s"
        @Option(help: "Highest error rate: 1% or 0.01.") var maxErrorRate = "1%"
        @Option(help: "Highest p99 latency, milliseconds.") var maxP99Ms: Double?
        @Option(help: "Requests a step needs before it is judged.") var minRequests = 20
        @Option(help: "How long replicas get to load the version (and a running canary to end).") var wait = "5m"
        @Flag(help: "Print the outcome as JSON.") var json = false

        func run() async throws {
            var outcome: WharfPipelines.Rollout.Outcome?
            try await reportingErrors {
                let environment = ProcessInfo.processInfo.environment
                var rollout = WharfPipelines.Rollout(model: model, version: version, replicas: try urlList(replicas, flag: "--replicas"))
                rollout.productionReplicas = try productionReplicas.map { try urlList($0, flag: "--production-replicas") }
                rollout.candidateAlias = candidateAlias
                rollout.alias = alias
                rollout.steps = try parseSteps(steps)
                rollout.intervalSeconds = try parseSeconds(interval)
                rollout.maxErrorRate = try parseRate(maxErrorRate)
                rollout.maxP99Milliseconds = maxP99Ms
                rollout.minRequests = minRequests
                rollout.waitSeconds = try parseSeconds(wait)
                let registryClient = RegistryClient(baseURL: registry ?? environment["WHARF_REGISTRY_URL"] ?? "http://127.0.0.1:8081",
                                                    token: environment["WHARF_REGISTRY_TOKEN"], actor: environment["WHARF_ACTOR"] ?? "wharf-rollout")
                let quiet = json
                outcome = try await rollout.run(registry: registryClient, gateway: options.client) { line in
                    if !quiet { writeStandardOutput("rollout: \(line)\n") }
                }
            }
            guard let outcome else { return }
            if json {
                writeStandardOutput(try encodeJSON(outcome) + "\n")
            } else {
                writeStandardOutput("\(outcome.model)@\(outcome.version): \(outcome.state)\(outcome.reason.map { " (\($0))" } ?? "") in \(String(format: "%.1f", outcome.seconds)) s\n")
            }
            if outcome.state != "promoted" { throw ExitCode(1) }
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Give one version all the traffic.")
        @OptionGroup var options: GatewayOptions
        @Argument(help: "The model.") var model: String
        @Option(help: "The version's label.") var version: String

        func run() async throws {
            try await reportingErrors { try printJSONObject(try await options.client.promote(model, version: version)) }
        }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a running canary, or go back to the spec before the last change. Instant.")
        @OptionGroup var options: GatewayOptions
        @Argument(help: "The model.") var model: String

        func run() async throws {
            try await reportingErrors { try printJSONObject(try await options.client.rollback(model)) }
        }
    }

    struct Shadow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Copy a share of the traffic to a version, compare, never return (--share 0: off).")
        @OptionGroup var options: GatewayOptions
        @Argument(help: "The model.") var model: String
        @Option(help: "The shadow version's label.") var version: String?
        @Option(help: "Share of requests copied: 10% or 0.1.") var share = "0"
        @Option(help: "Its replicas' URLs, comma-separated.") var replicas = ""

        func run() async throws {
            try await reportingErrors {
                try printJSONObject(try await options.client.shadow(
                    model, version: version, share: try parseRate(share), replicas: replicas.split(separator: ",").map(String.init)))
            }
        }
    }
}

/// "5,25,50,100" → traffic percentages.
func parseSteps(_ text: String) throws(WharfError) -> [Double] {
    try text.split(separator: ",").map { part throws(WharfError) -> Double in
        guard let value = Double(part.trimmingCharacters(in: .whitespaces)) else { throw WharfError(.invalidInput, "--steps: \"\(part)\" is not a number") }
        return value
    }
}

/// "http://a:1,http://b:2" → URLs, each checked.
func urlList(_ text: String, flag: String) throws(WharfError) -> [String] {
    let urls = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    guard !urls.isEmpty else { throw WharfError(.invalidInput, "\(flag): name at least one URL") }
    for url in urls where !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
        throw WharfError(.invalidInput, "\(flag): \"\(url.prefix(80))\" is not an http(s) URL")
    }
    return urls
}

/// "1%" → 0.01, "0.02" → 0.02.
func parseRate(_ text: String) throws(WharfError) -> Double {
    let percent = text.hasSuffix("%")
    guard let value = Double(percent ? String(text.dropLast()) : text), value >= 0 else {
        throw WharfError(.invalidInput, "\"\(text)\" is not a rate (write 1% or 0.01)")
    }
    return percent ? value / 100 : value
}

/// "30s", "2m", "500ms", "1.5" (seconds): finite, above 0 and at most `maxSeconds` (a week by
/// default: most callers turn it into whole milliseconds, where `inf` or `1e16s` would trap).
func parseSeconds(_ text: String, maxSeconds: Double = maxDurationSeconds) throws(WharfError) -> Double {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    var seconds: Double?
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        if let value = Double(text.dropLast(suffix.count)) { seconds = value * scale; break }
    }
    if seconds == nil { seconds = Double(text) }
    guard let seconds, seconds.isFinite, seconds > 0 else {
        throw WharfError(.invalidInput, "\"\(text.prefix(40))\" is not a duration (write 30s, 2m or 500ms)")
    }
    guard seconds <= maxSeconds else {
        throw WharfError(.invalidInput, "\"\(text.prefix(40))\" is longer than \(maxSeconds == maxDurationSeconds ? "a week" : "\(Int(maxSeconds / 86_400)) days")")
    }
    return seconds
}

let maxDurationSeconds: Double = 7 * 86_400

extension DeployCommand {
    struct Kubernetes: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Render Kubernetes manifests for the platform (registry, gateway, one server Deployment per model).",
            discussion: """
                Writes plain YAML into --out: Namespace, ServiceAccount, ConfigMap, the registry \
                (Deployment, Service, PersistentVolumeClaim), the gateway and each model server \
                (Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget), with probes on the \
                health endpoints, resources and non-root, read-only security contexts. Secrets are \
                referenced: create wharf-secrets with registry-token, gateway-admin-key and, with \
                --postgres, database-url.
                """
        )
        @Option(help: "Directory to write the manifests into.") var out: String
        @Option(help: "Kubernetes namespace.") var namespace = "wharf"
        @Option(help: "Container image (built from the repository's Dockerfile).") var image = "wharf:latest"
        @Option(help: "A model to serve, NAME@ALIAS or NAME@VERSION. Repeatable.") var model: [String] = []
        @Option(help: "Model-server replicas at least (the autoscaler's minimum).") var minReplicas = 2
        @Option(help: "Model-server replicas at most.") var maxReplicas = 10
        @Flag(help: "The registry keeps its records in PostgreSQL (URL from the secret).") var postgres = false

        func run() throws {
            try reportingErrors {
                let models = try model.map { text throws(WharfError) -> KubernetesManifests.Model in
                    KubernetesManifests.Model(reference: try parseReference(text), minReplicas: minReplicas, maxReplicas: maxReplicas)
                }
                let manifests = try KubernetesManifests(namespace: namespace, image: image, models: models, usePostgres: postgres).validated()
                do {
                    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                } catch {
                    throw WharfError(.io, "cannot create \(out)")
                }
                for (file, yaml) in manifests.render() {
                    try writeFileAtomically(out + "/" + file, Array(yaml.utf8))
                    writeStandardOutput(out + "/" + file + "\n")
                }
            }
        }
    }
}
