import AsyncHTTPClient
import Foundation
import HummingbirdCore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import WharfCore
import WharfHTTP

/// How `wharf gateway` runs.
///
/// | flag | default | meaning |
/// | --- | --- | --- |
/// | `--host`, `--port` | 127.0.0.1, 8080 | where clients connect |
/// | `--data-dir` | `.wharf` | `gateway/deployments.json` and `gateway/keys.json` (hashed keys) |
/// | `--admin-key-sha256` / `WHARF_GATEWAY_ADMIN_KEY` | none | a bootstrap key with the `admin` scope |
/// | `--open-inference` | off | inference without a key (keys still limit those who send one) |
/// | `--health-interval-ms` | 500 | how often every replica's readiness is checked |
/// | `--max-body-bytes` | 64 MiB | larger requests get 413 |
/// | `--connections-per-replica` | 64 | connections to each replica, for each model, per event loop |
/// | `--idle-timeout-seconds` | 60 | an inference connection silent that long (idle, or stalled mid-body) is closed |
/// | `--forwarding-threads` | cores | threads of the forwarding plane (Linux) |
public struct GatewayConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var dataDirectory: String?
    public var adminKeySHA256: String?
    public var openInference: Bool
    public var healthInterval: Duration
    public var maxBodyBytes: Int
    /// Connections the forwarding client keeps to each replica, for each model, per event loop.
    public var connectionsPerReplica: Int
    /// A client connection silent this long (idle, or stalled in the middle of a request) is
    /// closed; nil: never.
    public var idleTimeout: Duration?
    /// Threads (epoll loops) of the forwarding plane on Linux; nil: one per core.
    public var forwardingThreads: Int?
    /// On SIGTERM, how long the answers owed may take to be written and read; the connections
    /// still open then are closed. Below Kubernetes' grace period (30 s), so the gateway still
    /// exits on its own: a client that stopped reading would otherwise hold it until its idle
    /// timeout, or for ever with none.
    public var shutdownTimeout: Duration

    public init(host: String = "127.0.0.1", port: Int = 8080, dataDirectory: String? = ".wharf", adminKeySHA256: String? = nil,
                openInference: Bool = false, healthInterval: Duration = .milliseconds(500), maxBodyBytes: Int = 64 << 20,
                connectionsPerReplica: Int = 64, idleTimeout: Duration? = .seconds(60), forwardingThreads: Int? = nil,
                shutdownTimeout: Duration = .seconds(25)) {
        self.host = host
        self.port = port
        self.dataDirectory = dataDirectory
        self.adminKeySHA256 = adminKeySHA256
        self.openInference = openInference
        self.healthInterval = healthInterval
        self.maxBodyBytes = maxBodyBytes
        self.connectionsPerReplica = connectionsPerReplica
        self.idleTimeout = idleTimeout
        self.forwardingThreads = forwardingThreads
        self.shutdownTimeout = shutdownTimeout
    }
}

/// The gateway: deployments, routing, access control and the HTTP API in front of them.
public struct GatewayServer: Sendable {
    public let configuration: GatewayConfiguration
    let store: DeploymentStore
    let access: AccessControl
    let router: InferenceRouter
    let canaries: CanaryController
    let upstream: UpstreamClient
    let http: HTTPClient
    let logger: Logger

    public init(configuration: GatewayConfiguration, logger: Logger) throws {
        self.configuration = configuration
        var files: (deployments: String, keys: String)?
        if let directory = configuration.dataDirectory {
            try FileManager.default.createDirectory(atPath: directory + "/gateway", withIntermediateDirectories: true)
            files = (directory + "/gateway/deployments.json", directory + "/gateway/keys.json")
        }
        store = try DeploymentStore(file: files?.deployments)
        access = try AccessControl.load(file: files?.keys, adminKeySHA256: configuration.adminKeySHA256, openInference: configuration.openInference)
        var client = HTTPClient.Configuration()
        // Idle connections closed before Wharf services close them (60 s), as the raw client's.
        client.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.connectionsPerReplica)
        client.timeout = .init(connect: .seconds(1), read: .seconds(600))
        // A refused connection is the router's to handle (another replica, the breaker), at
        // once: async-http-client would otherwise keep reconnecting until the deadline.
        client.connectionPool.retryConnectionEstablishment = false
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: client)
        upstream = UpstreamClient(connectionsPerEndpoint: configuration.connectionsPerReplica)
        router = InferenceRouter(store: store, upstream: upstream, http: http, logger: logger)
        canaries = CanaryController(store: store, logger: logger)
        self.logger = logger
    }

    /// The gateway as a Hummingbird application; it logs where it listens. On Linux the
    /// router's channel given to `onServerRunning` listens on an internal loopback port: clients
    /// use the configured address, where the forwarding plane listens.
    public func buildApplication(
        metrics: PrometheusCollectorRegistry? = nil,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let routes = Router(context: BasicRequestContext.self)
        routes.add(middleware: RequestIDMiddleware())
        routes.add(middleware: ErrorMiddleware())
        GatewayInferenceController<BasicRequestContext>(router: router, access: access).addRoutes(to: routes)
        DeploymentController<BasicRequestContext>(store: store, canaries: canaries, access: access).addRoutes(to: routes)
        routes.get("/openapi.yaml") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/yaml"], body: ResponseBody(byteBuffer: ByteBuffer(string: GatewayOpenAPI.document)))
        }
        if let metrics {
            MetricsEndpoint<BasicRequestContext>(registry: metrics).addRoutes(to: routes)
        }
        routes.refuseOtherMethods(answeredElsewhere: GatewayInferenceController<BasicRequestContext>.forwardedRoutes)
        let serverName = "wharf-gateway"
        let forwarding = InferenceForwarder.Settings(
            router: router, access: access, maxBodyBytes: configuration.maxBodyBytes, serverName: serverName, logger: logger,
            idleTimeout: configuration.idleTimeout.map { .nanoseconds(Int64($0 / .nanoseconds(1))) })
        var services: [any Service] = [
            HealthChecker(directory: store.directory, http: http, interval: configuration.healthInterval, logger: logger),
            ClientShutdown(http: http, upstream: upstream),
        ]
        #if os(Linux)
        // The forwarding plane listens on the gateway's address and hands the router what is
        // not plain inference; the router listens on a loopback port of its own.
        let plane = ForwardingPlane(
            settings: forwarding, host: configuration.host, port: configuration.port, threads: configuration.forwardingThreads ?? System.coreCount,
            connectionsPerReplica: configuration.connectionsPerReplica,
            shutdownTimeout: .nanoseconds(Int64(configuration.shutdownTimeout / .nanoseconds(1))), logger: logger)
        services.append(plane)
        let server = HTTPServerBuilder.forwardingHTTP1(forwarding, adoption: plane.adoption)
        let address = BindAddress.hostname("127.0.0.1", port: 0)
        let onRunning = onServerRunning
        // Hummingbird's own lines at info are where its internal listener started and that it
        // stops: an address no client should use, next to the gateway's. The gateway logs both
        // events itself.
        var applicationLogger = logger
        if applicationLogger.logLevel == .info { applicationLogger.logLevel = .notice }
        #else
        let server = HTTPServerBuilder.forwardingHTTP1(forwarding)
        let address = BindAddress.hostname(configuration.host, port: configuration.port)
        let logger = self.logger
        let onRunning: @Sendable (any Channel) async -> Void = { channel in
            logger.info("wharf gateway listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
            await onServerRunning(channel)
        }
        let applicationLogger = logger
        #endif
        return Application(
            router: routes,
            server: server,
            configuration: .init(address: address, serverName: serverName),
            services: services,
            onServerRunning: onRunning,
            logger: applicationLogger
        )
    }
}

/// Closes the forwarding clients' connections when the service group stops.
struct ClientShutdown: Service {
    let http: HTTPClient
    let upstream: UpstreamClient

    func run() async throws {
        try? await gracefulShutdown()
        await upstream.shutdown()
        try await http.shutdown()
    }
}
