import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import UnixSignals
import WharfClient
import WharfCore
import WharfServing

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve models over the Open Inference Protocol v2 (KServe v2 / Triton REST API).",
        discussion: """
            Models come from files (--model NAME=FILE, repeatable), a repository directory laid out \
            DIR/<name>/<version>/<model file> with an optional DIR/<name>/settings.json of batching \
            settings, or the registry (--registry URL --model NAME@ALIAS or NAME@VERSION: the model is \
            served under NAME, and alias moves are followed within --poll-seconds, 1 by default). The server is live at once and ready once every model is loaded and warmed. \
            SIGTERM or Ctrl-C: readiness goes false, in-flight requests finish, then it exits.
            """
    )

    @Option(name: .customLong("model"), help: "A model to serve: NAME=FILE, or NAME@ALIAS / NAME@VERSION with --registry. Repeatable.")
    var models: [String] = []

    @Option(help: "Serve --model NAME@ALIAS references from this registry URL (token: WHARF_REGISTRY_TOKEN, when reads are protected).")
    var registry: String?

    @Option(help: "Where models downloaded from the registry are kept.")
    var cacheDir = ".wharf/serve-cache"

    @Option(help: "Send sampled prediction records to this hub's `predictions` stream (token: WHARF_HUB_TOKEN).")
    var hub: String?

    @Option(help: "Share of predictions recorded, 0…1.")
    var predictionSample = 1.0

    @Option(help: "With --hub: fill a request's missing inputs from this feature view for parameters.entity_id(s).")
    var featureView: String?

    @Option(help: "Serve every model in this repository directory.")
    var modelRepository: String?

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 8080

    @Option(help: "Rows one batch evaluation takes at most.")
    var maxBatchRows = BatchingSettings().maxBatchRows

    @Option(help: "Extra wait, in milliseconds, for more rows before evaluating a batch.")
    var maxQueueDelayMs = BatchingSettings().maxQueueDelayMilliseconds

    @Option(help: "Rows waiting per model at most; beyond, requests get 503.")
    var maxQueuedRows = BatchingSettings().maxQueuedRows

    @Option(help: "Largest request body in bytes; beyond, 413.")
    var maxBodyBytes = 64 << 20

    @Option(help: "Seconds between checks of the repository for new versions (0: never).")
    var pollSeconds: Double?

    @Option(help: "Close a connection silent this many seconds: idle, or stalled in the middle of a body (0: never).")
    var idleTimeoutSeconds = 60.0

    @Option(help: "On SIGTERM, milliseconds to keep serving with readiness false (for load balancers to notice) before in-flight requests drain.")
    var drainDelayMs = 0

    @Option(help: "Log format: text or json.")
    var logFormat: LogFormat = .text

    @Option(help: "Log level.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        try checkListenPort(port)
        try checkServiceURL(registry, option: "--registry")
        try checkServiceURL(hub, option: "--hub")
    }

    func run() async throws {
        bootstrapLogging(format: logFormat, level: logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "wharf.serve")
        do {
            let configuration = try makeConfiguration()
            let server = ModelServer(configuration: configuration, logger: logger)
            let application = server.buildApplication(logger: logger, metrics: registry) { channel in
                let address = channel.localAddress.map { "\($0)" } ?? "?"
                logger.info("wharf serve listening", metadata: ["address": "\(address)"])
            }
            guard (0...3_600_000).contains(drainDelayMs) else { throw WharfError(.invalidInput, "--drain-delay-ms must be 0 … 3600000") }
            try await server.serviceGroup(application, drainDelay: .milliseconds(drainDelayMs), signals: [.sigterm, .sigint], logger: logger).run()
        } catch let error as WharfError {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
    }

    private func makeConfiguration() throws(WharfError) -> ServingConfiguration {
        let catalog: ModelCatalog
        switch (models.isEmpty, modelRepository) {
        case (false, nil) where registry != nil:
            var references: [ModelReference] = []
            for entry in models {
                guard let reference = try ModelReference(parsing: entry) else {
                    throw WharfError(.invalidInput, "--model \(entry): with --registry, give NAME@ALIAS or NAME@VERSION")
                }
                guard !references.contains(where: { $0.name == reference.name }) else {
                    throw WharfError(.invalidInput, "--model \(reference.name) is given twice")
                }
                references.append(reference)
            }
            let environment = ProcessInfo.processInfo.environment
            let client = RegistryClient(baseURL: registry!, token: environment["WHARF_REGISTRY_TOKEN"], http: RegistryClient.forServices,
                                        timeout: .seconds(30))
            catalog = .registry(RegistrySource(client: client, references: references, cacheDirectory: cacheDir))
        case (false, nil):
            var files: [String: String] = [:]
            for entry in models {
                guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex, entry.index(after: equals) != entry.endIndex else {
                    throw WharfError(.invalidInput, "--model \(entry): expected NAME=FILE")
                }
                let name = String(entry[..<equals])
                guard name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                    throw WharfError(.invalidInput, "--model \(entry): a model name may hold letters, digits, '-', '_' and '.' only")
                }
                let path = String(entry[entry.index(after: equals)...])
                guard FileManager.default.isReadableFile(atPath: path) else {
                    throw WharfError(.notFound, "--model \(name)=\(path): no such file, or it cannot be read")
                }
                guard files.updateValue(path, forKey: name) == nil else {
                    throw WharfError(.invalidInput, "--model \(name) is given twice")
                }
            }
            catalog = .files(files)
        case (true, let directory?):
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw WharfError(.notFound, "--model-repository \(directory) is not a directory")
            }
            catalog = .repository(directory)
        default:
            throw WharfError(.invalidInput, "give either --model NAME=FILE (one or more) or --model-repository DIR")
        }
        let batching = try BatchingSettings(
            maxBatchRows: maxBatchRows, maxQueueDelayMilliseconds: maxQueueDelayMs, maxQueuedRows: maxQueuedRows
        ).validated()
        let defaultPoll: Double = switch catalog {
        case .repository: 5
        case .registry: 1
        case .files: 0
        }
        let poll = pollSeconds ?? defaultPoll
        guard idleTimeoutSeconds == 0 || (0.01...86_400).contains(idleTimeoutSeconds) else {
                throw WharfError(.invalidInput, "--idle-timeout-seconds must be 0 (never) or 0.01 … 86400")
            }
        var configuration = ServingConfiguration(
            host: host, port: port, catalog: catalog, batching: batching, maxBodyBytes: maxBodyBytes,
            pollInterval: poll > 0 ? .milliseconds(Int(poll * 1000)) : nil,
            idleTimeout: idleTimeoutSeconds > 0 ? .milliseconds(Int64(idleTimeoutSeconds * 1000)) : nil
        )
        if let hub {
            guard (0...1).contains(predictionSample) else { throw WharfError(.invalidInput, "--prediction-sample must be between 0 and 1") }
            configuration.predictionLog = PredictionLog(hub: hub, token: ProcessInfo.processInfo.environment["WHARF_HUB_TOKEN"], sampleRate: predictionSample)
            if let featureView {
                try RegistryName.check(featureView, kind: "view")
                configuration.featureFiller = FeatureFiller(hub: hub, view: featureView)
            }
        } else if featureView != nil {
            throw WharfError(.invalidInput, "--feature-view needs --hub")
        }
        return configuration
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
