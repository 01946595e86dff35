import Hummingbird
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import UnixSignals
import WharfCore
import WharfHTTP

/// The parts of a model server, made once so tests can reach the store and the manager.
public struct ModelServer: Sendable {
    public let configuration: ServingConfiguration
    public let store: ModelStore
    public let manager: ModelManager
    public let readiness: Readiness

    public init(configuration: ServingConfiguration, logger: Logger) {
        self.configuration = configuration
        store = ModelStore()
        manager = ModelManager(store: store, catalog: configuration.catalog, defaults: configuration.batching, logger: logger)
        readiness = Readiness()
    }

    /// The model server as a Hummingbird application: the OIP v2 API, `/metrics` when a
    /// registry is given, and the loader service that makes it ready.
    ///
    /// ```swift
    /// let server = ModelServer(configuration: configuration, logger: logger)
    /// let application = server.buildApplication(logger: logger)
    /// try await server.serviceGroup(application, signals: [.sigterm, .sigint], logger: logger).run()
    /// ```
    public func buildApplication(
        logger: Logger,
        metrics: PrometheusCollectorRegistry? = nil,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        let requestID = RequestIDMiddleware<BasicRequestContext>()
        let httpMetrics = HTTPMetricsMiddleware<BasicRequestContext>()
        let errors = ErrorMiddleware<BasicRequestContext>()
        router.add(middleware: requestID)
        router.add(middleware: httpMetrics)
        router.add(middleware: errors)
        let controller = InferenceController<BasicRequestContext>(
            service: InferenceService(store: store),
            manager: manager,
            readiness: readiness,
            maxBodyBytes: configuration.maxBodyBytes,
            predictionLog: configuration.predictionLog,
            featureFiller: configuration.featureFiller
        )
        controller.addRoutes(to: router)
        if let metrics {
            MetricsEndpoint<BasicRequestContext>(registry: metrics).addRoutes(to: router)
        }
        router.refuseOtherMethods()
        let responder = ServingResponder(router: router.buildResponder(), requestID: requestID, metrics: httpMetrics, errors: errors,
                                         controller: controller)
        return Application(
            responder: responder,
            server: .wharfHTTP1(idleTimeout: configuration.idleTimeout.map { .nanoseconds(Int64($0 / .nanoseconds(1))) }),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "wharf"),
            services: [ModelLoaderService(manager: manager, readiness: readiness, pollInterval: configuration.pollInterval)]
                + (configuration.predictionLog.map { [PredictionLogShipper(log: $0, logger: logger)] } ?? []),
            onServerRunning: onServerRunning,
            logger: logger
        )
    }

    /// The application in a service group that stops it in the right order: on a graceful
    /// shutdown (`signals`, or the group's trigger) readiness goes false at once, the server
    /// keeps answering for `drainDelay`, then stops accepting and lets in-flight requests finish
    /// (for 30 s at most; then they are cancelled).
    public func serviceGroup(
        _ application: some ApplicationProtocol, drainDelay: Duration = .zero, signals: [UnixSignal] = [], logger: Logger
    ) -> ServiceGroup {
        var configuration = ServiceGroupConfiguration(
            services: [application, ReadinessOnShutdown(readiness: readiness, drainDelay: drainDelay)],
            gracefulShutdownSignals: signals, logger: logger)
        // A shutdown does not wait for ever: on a client that stopped reading its answer, or a
        // registry that stalls mid-body, the group cancels what is left.
        configuration.maximumGracefulShutdownDuration = drainDelay + .seconds(30)
        return ServiceGroup(configuration: configuration)
    }
}
