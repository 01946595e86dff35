import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import WharfCore
import WharfGateway

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run the gateway: OIP v2 in front of the model servers, with deployments, canaries, shadows and keys.",
        discussion: """
            Clients call /v2/models/{m}/infer on the gateway; it routes each request to a replica of \
            a version of m's deployment (wharf deploy set). Deployments and keys (hashed) are kept in \
            --data-dir/gateway/. The admin key (--admin-key, or its SHA-256 with --admin-key-sha256; \
            or WHARF_GATEWAY_ADMIN_KEY) can create other keys through /v1/keys.
            """
    )

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0 picks a free one).") var port = 8080
    @Option(help: "Directory of the deployments and keys files.") var dataDir = ".wharf"
    @Option(help: "The bootstrap admin key (WHARF_GATEWAY_ADMIN_KEY).") var adminKey: String?
    @Option(help: "SHA-256 (hex) of the bootstrap admin key.") var adminKeySha256: String?
    @Flag(help: "Allow inference without a key.") var openInference = false
    @Option(help: "Milliseconds between readiness checks of every replica.") var healthIntervalMs = 500
    @Option(help: "Largest request body in bytes; beyond, 413.") var maxBodyBytes = 64 << 20
    @Option(help: "Connections kept to each replica, for each model, per event loop; requests beyond wait for a free one.")
    var connectionsPerReplica = 64
    @Option(help: "Close an inference connection silent this many seconds: idle, or stalled in the middle of a request (0: never).")
    var idleTimeoutSeconds = 60.0
    @Option(help: "Threads of the forwarding plane, which forwards plain inference requests on Linux (default: one per core).")
    var forwardingThreads: Int?
    @Option(help: "On SIGTERM, seconds the answers owed may take to be written and read; connections still open then are closed.")
    var shutdownTimeoutSeconds = 25.0
    @Option(help: "Log format: text or json.") var logFormat: LogFormat = .text
    @Option(help: "Log level.") var logLevel: Logger.Level = .info

    static let minimumAdminKeyLength = 16

    func validate() throws {
        try checkListenPort(port)
    }

    func run() async throws {
        // The gateway only moves bytes: run Swift Concurrency's jobs on NIO's event loops, so a
        // forwarded request does not hop between the cooperative pool and the loops (each hop a
        // thread wake-up, about 100 µs on a small VM). No evaluation happens here to block them.
        let onEventLoops = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        bootstrapLogging(format: logFormat, level: logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "wharf.gateway")
        logger.debug("executor", metadata: ["concurrency_on_event_loops": "\(onEventLoops)"])
        do {
            let key = adminKey ?? ProcessInfo.processInfo.environment["WHARF_GATEWAY_ADMIN_KEY"]
            // An empty key (an unset variable in `--admin-key "$ADMIN"`) would be matched by an
            // empty header; a short one is guessed.
            if adminKeySha256 == nil, let key, key.utf8.count < Self.minimumAdminKeyLength {
                throw WharfError(.invalidInput, "the admin key (--admin-key or WHARF_GATEWAY_ADMIN_KEY) is \(key.isEmpty ? "empty" : "\(key.utf8.count) bytes long"): give one of at least \(Self.minimumAdminKeyLength)")
            }
            let digest = adminKeySha256?.lowercased() ?? key.map { SHA256.hash(Array($0.utf8)).hex }
            guard healthIntervalMs >= 50 else { throw WharfError(.invalidInput, "--health-interval-ms must be at least 50") }
            guard (1...4096).contains(connectionsPerReplica) else { throw WharfError(.invalidInput, "--connections-per-replica must be 1…4096") }
            if let forwardingThreads, !(1...256).contains(forwardingThreads) {
                throw WharfError(.invalidInput, "--forwarding-threads must be 1…256")
            }
            guard idleTimeoutSeconds == 0 || (0.01...86_400).contains(idleTimeoutSeconds) else {
                throw WharfError(.invalidInput, "--idle-timeout-seconds must be 0 (never) or 0.01 … 86400")
            }
            guard (0.01...3600).contains(shutdownTimeoutSeconds) else {
                throw WharfError(.invalidInput, "--shutdown-timeout-seconds must be 0.01 … 3600")
            }
            let configuration = GatewayConfiguration(
                host: host, port: port, dataDirectory: dataDir, adminKeySHA256: digest, openInference: openInference,
                healthInterval: .milliseconds(healthIntervalMs), maxBodyBytes: maxBodyBytes, connectionsPerReplica: connectionsPerReplica,
                idleTimeout: idleTimeoutSeconds > 0 ? .milliseconds(Int64(idleTimeoutSeconds * 1000)) : nil,
                forwardingThreads: forwardingThreads, shutdownTimeout: .milliseconds(Int64(shutdownTimeoutSeconds * 1000)))
            let gateway = try GatewayServer(configuration: configuration, logger: logger)
            let application = gateway.buildApplication(metrics: registry)
            try await application.runService()
        } catch let error as WharfError {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
    }
}
