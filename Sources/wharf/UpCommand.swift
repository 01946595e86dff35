import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import WharfClient
import WharfCore
import WharfDeploy
import WharfPipelines
import WharfRuntime

struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Run the whole platform on this machine: registry, gateway and model servers, supervised.",
        discussion: """
            Each service is a separate process, restarted with backoff when it crashes. Every model \
            with a production alias in the registry gets --replicas model servers behind the gateway. \
            --demo first registers, validates and promotes the bundled breast-cancer model as `demo`, \
            then rolls a second version out as a canary, and keeps the loop going by itself: the hub \
            collects new patients and, later, their diagnoses; every --demo-retrain-every diagnoses a \
            pipeline builds a point-in-time training set from the hub, trains, registers, validates \
            against production and rolls the new version out through the gateway's canary. Ctrl-C or \
            SIGTERM stops the demo's feeder and pipeline, the gateway, the model servers, the hub, then \
            the registry.
            """
    )

    @Flag(help: "Show the whole loop on the bundled breast-cancer data.") var demo = false
    @Option(help: "Directory of the registry's data, the gateway's and the keys.") var dataDir = ".wharf"
    @Option(help: "postgres://… for the registry's records (default: SQLite in --data-dir).") var database: String?
    @Option(help: "Model-server processes per model.") var replicas = 1
    @Option(help: "The gateway's port.") var port = 8080
    @Option(help: "The registry's port.") var registryPort = 8081
    @Option(help: "The first model server's port; the others follow.") var serverPort = 9001
    @Option(help: "The hub's port (with --demo).") var hubPort = 8082
    @Option(help: "With --demo: new diagnoses that start a retraining run.") var demoRetrainEvery = 300
    @Option(help: "With --demo: time per canary step.") var demoCanaryInterval = "10s"
    @Option(help: "Where the demo's files are (model.json, model-v2.json, validation.csv).") var examples = "examples/breast-cancer"
    @Option(help: "Log format: text (lines prefixed with the service) or json.") var logFormat: LogFormat = .text

    func run() async throws {
        bootstrapLogging(format: logFormat, level: .info)
        let logger = Logger(label: "wharf.up")
        guard (1...8).contains(replicas) else { throw ValidationError("--replicas must be 1…8") }
        try checkPorts()
        let executable = try Self.ownExecutable()
        let supervisor = Supervisor(executable: executable, logFormat: logFormat == .json ? .json : .text, logger: logger)
        let platform = LocalPlatform(command: self, supervisor: supervisor, logger: logger)
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: platform)], gracefulShutdownSignals: [.sigterm, .sigint, .sighup, .sigquit], logger: logger))
        try await group.run()
    }
}

extension UpCommand {
    /// Every service gets a port of its own, in range: a server started on the gateway's port
    /// would fail to bind while the gateway answered its readiness check.
    func checkPorts() throws {
        var ports: [(String, Int)] = [("--port", port), ("--registry-port", registryPort), ("--server-port", serverPort)]
        if demo { ports.append(("--hub-port", hubPort)) }
        for (option, value) in ports where !(1...65535).contains(value) {
            throw ValidationError("\(option) is \(value): ports are 1…65535")
        }
        var seen: [Int: String] = [:]
        for (option, value) in ports {
            if let other = seen[value] { throw ValidationError("\(option) and \(other) are both \(value): every service needs a port of its own") }
            seen[value] = option
        }
    }

    /// This binary's own path, for starting the services: argv[0] is only `wharf` when the
    /// shell found it on PATH (and would resolve against the working directory).
    static func ownExecutable() throws -> String {
        #if os(Linux)
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        #endif
        if let path = Bundle.main.executablePath { return path }
        let argument = CommandLine.arguments[0]
        guard argument.contains("/") else { throw ValidationError("cannot find the wharf executable to start the services: run it by its path") }
        return URL(fileURLWithPath: argument).standardizedFileURL.path
    }
}

/// The platform as one service: it starts everything, then waits for the signal to stop it,
/// in order.
struct LocalPlatform: Service {
    let command: UpCommand
    let supervisor: Supervisor
    let logger: Logger

    func run() async throws {
        let background: Task<Void, Never>?
        do {
            background = try await start()
        } catch {
            logger.error("wharf up could not start", metadata: ["error": "\(error)"])
            await stop()
            throw error
        }
        try? await gracefulShutdown()
        background?.cancel()
        await stop()
    }

    private func stop() async {
        let names = supervisor.names
        let demo = names.filter { $0 == "demo-feed" || $0 == "pipeline" }
        let gateway = names.filter { $0 == "gateway" }
        let servers = names.filter { $0.hasPrefix("serve") }.sorted()
        await supervisor.stop(demo + gateway + servers + names.filter { $0 == "hub" } + names.filter { $0 == "registry" })
    }

    private var registryURL: String { "http://127.0.0.1:\(command.registryPort)" }
    private var gatewayURL: String { "http://127.0.0.1:\(command.port)" }
    private var hubURL: String { "http://127.0.0.1:\(command.hubPort)" }

    /// Starts every service; returns the demo's first rollout, which goes on in the background.
    private func start() async throws -> Task<Void, Never>? {
        let directory = command.dataDir
        try FileManager.default.createDirectory(atPath: directory + "/up", withIntermediateDirectories: true)
        let token = try Self.secret(directory + "/up/registry-token")
        let adminKey = try Self.secret(directory + "/up/gateway-admin-key")
        let hubToken = try Self.secret(directory + "/up/hub-token")

        var registryArguments = ["registry", "--port", String(command.registryPort), "--data-dir", directory + "/registry",
                                 "--token-sha256", SHA256.hash(Array(token.utf8)).hex, "--log-format", command.logFormat.rawValue]
        if let database = command.database { registryArguments += ["--database", database] }
        let registry = ServiceProcess(name: "registry", arguments: registryArguments, readyURL: registryURL + "/v1/health/ready")
        try supervisor.start(registry)
        try await supervisor.waitReady(registry)
        let registryClient = RegistryClient(baseURL: registryURL, token: token, actor: "wharf-up")
        if command.demo {
            try await DemoSeed(examples: command.examples, client: registryClient).registerFirstVersion()
            let hub = ServiceProcess(
                name: "hub",
                arguments: ["hub", "--port", String(command.hubPort), "--data-dir", directory, "--definitions", command.examples + "/hub.yaml",
                            "--log-format", command.logFormat.rawValue],
                readyURL: hubURL + "/v1/health/ready", environment: ["WHARF_HUB_TOKEN": hubToken])
            try supervisor.start(hub)
            try await supervisor.waitReady(hub)
        }

        let gateway = ServiceProcess(
            name: "gateway",
            arguments: ["gateway", "--port", String(command.port), "--data-dir", directory, "--admin-key-sha256", SHA256.hash(Array(adminKey.utf8)).hex,
                        "--open-inference", "--health-interval-ms", "250", "--log-format", command.logFormat.rawValue,
                        // Within the supervisor's 10 s between SIGTERM and SIGKILL.
                        "--shutdown-timeout-seconds", "8"],
            readyURL: gatewayURL + "/v2/health/ready")
        try supervisor.start(gateway)
        try await supervisor.waitReady(gateway)
        let gatewayClient = GatewayClient(baseURL: gatewayURL, key: adminKey)

        var port = command.serverPort
        var deployed: [String] = []
        var servers: [String] = []
        for model in try await registryClient.models() where model.aliases["production"] != nil {
            let urls = try await startServers(model: model.name, reference: "\(model.name)@production", label: "production", port: &port, token: token)
            _ = try await gatewayClient.set(DeploymentSpec(model: model.name, targets: [.init(version: "production", weight: 100, replicas: urls)]))
            deployed.append(model.name)
            servers += urls.map { "\(model.name)@production \($0)" }
        }
        guard command.demo else {
            printSummary(deployed: deployed, servers: servers, demo: nil)
            return nil
        }

        // The demo: candidate servers follow demo@candidate; rollouts move it, then production.
        let seed = DemoSeed(examples: command.examples, client: registryClient)
        if (try? await registryClient.alias("demo", "candidate")) == nil {
            let production = try await registryClient.alias("demo", "production").version
            _ = try await registryClient.setAlias("demo", "candidate", version: production, reason: "demo: candidate servers start on production")
        }
        let candidates = try await startServers(model: "demo", reference: "demo@candidate", label: "candidate", port: &port, token: token)
        servers += candidates.map { "demo@candidate \($0)" }
        let interval = try parseSeconds(command.demoCanaryInterval)
        var firstRollout: Task<Void, Never>?
        let second = try await seed.registerSecondVersionOnFirstRun()
        if let second {
            var rollout = Rollout(model: "demo", version: second, replicas: candidates)
            rollout.steps = [10, 50, 100]
            rollout.intervalSeconds = interval
            rollout.minRequests = 5
            let gatewayClient = gatewayClient
            firstRollout = Task {
                do {
                    let outcome = try await rollout.run(registry: registryClient, gateway: gatewayClient) { line in
                        FileHandle.standardOutput.write(Data("[rollout] \(line)\n".utf8))
                    }
                    FileHandle.standardOutput.write(Data("[rollout] demo@\(outcome.version): \(outcome.state)\(outcome.reason.map { " (\($0))" } ?? "")\n".utf8))
                } catch {
                    FileHandle.standardOutput.write(Data("[rollout] demo@\(second) stopped: \(error)\n".utf8))
                }
            }
        }

        let pipelineFile = directory + "/up/demo-retrain.yaml"
        try writeFileAtomically(pipelineFile, Array(demoPipeline(candidates: candidates).utf8))
        try supervisor.start(ServiceProcess(
            name: "demo-feed",
            arguments: ["demo-feed", "--hub", hubURL, "--gateway", gatewayURL, "--rows", command.examples + "/train.csv"],
            readyURL: nil, environment: ["WHARF_HUB_TOKEN": hubToken]))
        try supervisor.start(ServiceProcess(
            name: "pipeline",
            arguments: ["pipeline", "watch", pipelineFile, "--state-dir", directory + "/pipelines", "--registry", registryURL, "--gateway", gatewayURL,
                        "--hub", hubURL, "--stream", "cancer-labels", "--min-new-events", String(command.demoRetrainEvery), "--poll", "2s"],
            readyURL: nil, environment: ["WHARF_REGISTRY_TOKEN": token, "WHARF_API_KEY": adminKey]))
        printSummary(deployed: deployed, servers: servers, demo: (second, pipelineFile))
        return firstRollout
    }

    /// The retraining pipeline of the demo, with this run's addresses.
    private func demoPipeline(candidates: [String]) -> String {
        let validation = URL(fileURLWithPath: command.examples + "/validation.csv").standardizedFileURL.path
        return """
            # Written by `wharf up --demo` (its addresses change with its ports); `wharf pipeline watch` runs it
            # whenever \(command.demoRetrainEvery) new diagnoses have arrived on the hub's cancer-labels stream.
            name: demo-retrain
            steps:
              - name: data
                dataset: {hub: "\(hubURL)", view: cancer, labels_stream: cancer-labels, label: diagnosis, entity_column: patient, time_column: ts}
              - name: train
                train: {data: steps.data.csv, label: diagnosis, task: binary, ignore: [patient, ts], params: {max_depth: 2, num_rounds: 200, learning_rate: 0.1}}
              - name: register
                register: {model: steps.train.model, name: demo, training_data: steps.data.csv, validation_data: "\(validation)", code_revision: wharf-up-demo}
              - name: check
                validate: {model: steps.register.version, data: "\(validation)", label: diagnosis, gates: ["roc_auc>=0.95"], against: production}
              - name: ship
                deploy: {version: steps.register.version, replicas: [\(candidates.map { "\"\($0)\"" }.joined(separator: ", "))], steps: [10, 50, 100], interval: \(command.demoCanaryInterval), max_error_rate: 1%, min_requests: 5}

            """
    }

    private func startServers(model: String, reference: String, label: String, port: inout Int, token: String) async throws -> [String] {
        var urls: [String] = []
        let taken = [command.port, command.registryPort] + (command.demo ? [command.hubPort] : [])
        for replica in 1...command.replicas {
            // Servers take ports from --server-port up, one a replica of each model.
            guard port <= 65535, !taken.contains(port) else {
                throw ValidationError("model server \(model) \(label)#\(replica) would get port \(port), \(port > 65535 ? "past 65535" : "another service's"): choose another --server-port")
            }
            let service = ServiceProcess(
                name: "serve \(model) \(label)#\(replica)",
                arguments: ["serve", "--registry", registryURL, "--model", reference, "--port", String(port),
                            "--cache-dir", command.dataDir + "/serve-cache", "--log-format", command.logFormat.rawValue],
                readyURL: "http://127.0.0.1:\(port)/v2/health/ready")
            try supervisor.start(service)
            try await supervisor.waitReady(service)
            urls.append("http://127.0.0.1:\(port)")
            port += 1
        }
        return urls
    }

    private func printSummary(deployed: [String], servers: [String], demo: (second: Int?, pipeline: String)?) {
        var text = """

            wharf up: the platform is running
              gateway   \(gatewayURL)   (OIP v2; deployments: \(deployed.isEmpty ? "none yet" : deployed.joined(separator: ", ")); admin key in \(command.dataDir)/up/gateway-admin-key)
              registry  \(registryURL)   (token in \(command.dataDir)/up/registry-token)

            """
        for server in servers { text += "  server    \(server)\n" }
        if let demo {
            text += """
                  hub       \(hubURL)   (streams cancer-features, cancer-labels; view cancer)

                The demo: the breast-cancer model was validated (roc_auc >= 0.95 on examples/breast-cancer/validation.csv),
                registered and promoted to production as demo@1, and is served behind the gateway.
                \(demo.second.map { "demo@\($0) is rolling out as a canary: 10% → 50% → 100%, \(command.demoCanaryInterval) a step." } ?? "")
                From now on it runs by itself: new patients arrive on the hub and are scored through the gateway; their
                diagnoses follow. Every \(command.demoRetrainEvery) diagnoses, \(demo.pipeline) builds a point-in-time
                training set from the hub, trains, registers, validates (roc_auc >= 0.95 and no worse than production) and
                rolls the new version out through the gateway's canary; lines marked [pipeline] and [rollout] show it.

                  curl -s \(gatewayURL)/v2/models/demo/infer -H 'content-type: application/json' -d @examples/breast-cancer/request.json
                  WHARF_API_KEY=$(cat \(command.dataDir)/up/gateway-admin-key) wharf deploy status demo --gateway \(gatewayURL)
                  WHARF_REGISTRY_TOKEN=$(cat \(command.dataDir)/up/registry-token) wharf models show demo --registry \(registryURL) --audit
                  wharf pipeline runs --registry \(registryURL)

                """
        }
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    /// A random secret kept in `path` (0600), made on the first run.
    static func secret(_ path: String) throws -> String {
        if let existing = FileManager.default.contents(atPath: path), !existing.isEmpty {
            return String(decoding: existing, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        var random = SystemRandomNumberGenerator()
        let secret = (0..<4).map { _ in String(random.next() as UInt64, radix: 16) }.joined()
        guard FileManager.default.createFile(atPath: path, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw WharfError(.io, "cannot write \(path)")
        }
        return secret
    }
}

/// The demo's registry content: the bundled model, validated with a gate on the bundled
/// validation set, promoted; then a second version validated against production.
struct DemoSeed {
    let examples: String
    let client: RegistryClient

    func registerFirstVersion() async throws {
        if let production = try? await client.alias("demo", "production") {
            _ = production
            return
        }
        let version = try await register(file: examples + "/model.json", parent: nil)
        try await validate(version, against: nil)
        _ = try await client.setAlias("demo", "production", version: version.version, reason: "demo: validated on the held-out set")
    }

    /// On the demo's first run (only version 1 registered), registers and validates the second
    /// version and returns its number; later runs go on from where the loop left the registry.
    func registerSecondVersionOnFirstRun() async throws -> Int? {
        let (_, versions) = try await client.model("demo")
        guard versions.count == 1 else { return nil }
        let production = try await client.alias("demo", "production").version
        let version = try await register(file: examples + "/model-v2.json", parent: production)
        try await validate(version, against: production)
        return version.version
    }

    private func register(file: String, parent: Int?) async throws -> ModelVersion {
        let model = try loadModel(file)
        let meta = model.metadata
        let validation = try readFile(examples + "/validation.csv")
        _ = try await client.setValidationData("demo", DatasetFingerprint.of(csv: validation))
        let training = DatasetFingerprint.of(csv: try readFile(examples + "/train.csv"))
        return try await client.register("demo", file: file) { artifact in
            VersionDraft(format: meta.format.rawValue, task: meta.task.rawValue,
                         signature: ModelSignature(features: meta.featureNames ?? [], featureTypes: Array(repeating: "numeric", count: meta.featureCount), outputs: meta.output.columns),
                         artifact: artifact, params: ["source": "scripts/make_example.py"], tags: ["demo": "breast-cancer"],
                         lineage: Lineage(trainingData: training, codeRevision: nil, parentVersion: parent))
        }
    }

    private func validate(_ version: ModelVersion, against champion: Int?) async throws {
        let csv = try readFile(examples + "/validation.csv")
        let model = try ModelLoader.load(bytes: try await client.downloadArtifact(of: version))
        let data = try ValidationData(csv: csv, metadata: model.metadata, labelColumn: "diagnosis")
        let report = try ModelValidation.report(model: model, data: data.table)
        var outcomes = [try Gate(parsing: "roc_auc>=0.95").evaluate(report)]
        if let champion {
            let previous = try await client.version("demo", champion)
            let championModel = try ModelLoader.load(bytes: try await client.downloadArtifact(of: previous))
            let championReport = try ModelValidation.report(model: championModel, data: try ValidationData(csv: csv, metadata: championModel.metadata, labelColumn: "diagnosis").table)
            outcomes.append(Gate.noWorse("roc_auc", candidate: report, champion: championReport, championName: "production"))
        }
        let record = ValidationRecord(data: data.fingerprint, metrics: report.values, gates: outcomes, passed: outcomes.allSatisfy(\.passed),
                                      against: champion.map { "demo@\($0)" })
        _ = try await client.addValidation("demo", version.version, record)
        guard record.passed else { throw WharfError(.invalidInput, "demo: \(version.name)@\(version.version) did not pass its gates") }
    }
}
