import ServiceLifecycle

/// Turns readiness off the moment a graceful shutdown begins, before the HTTP server stops
/// accepting: run after the application in one service group (the group stops its services
/// last first), so the server keeps answering, `/v2/health/ready` with 503, for `drainDelay`
/// while load balancers notice; then the server closes and in-flight requests drain.
///
/// Hummingbird stops its HTTP server first of all its own services, so a service inside the
/// application would only see the shutdown once the server had closed.
struct ReadinessOnShutdown: Service {
    let readiness: Readiness
    let drainDelay: Duration

    func run() async throws {
        try? await gracefulShutdown()
        readiness.markShuttingDown()
        if drainDelay > .zero { try? await Task.sleep(for: drainDelay) }
    }
}
