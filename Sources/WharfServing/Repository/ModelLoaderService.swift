import Logging
import ServiceLifecycle

/// Loads the catalog at start (then the server reports ready), watches it for new versions if
/// asked, and turns readiness off as soon as a graceful shutdown begins, so load balancers stop
/// sending traffic while in-flight requests drain.
///
/// A server whose models did not all load is not ready: it retries (every `pollInterval`, or
/// every 2 seconds) and reports each failure, rather than take traffic for a model it lacks.
public struct ModelLoaderService: Service {
    let manager: ModelManager
    let readiness: Readiness
    /// How often the catalog is checked for new versions; nil: never.
    let pollInterval: Duration?

    public init(manager: ModelManager, readiness: Readiness, pollInterval: Duration?) {
        self.manager = manager
        self.readiness = readiness
        self.pollInterval = pollInterval
    }

    private var allLoaded: Bool {
        // A model unloaded through the API is not waited for.
        let expected = Set(manager.catalog.modelNames).subtracting(manager.unloadedNames)
        return !manager.catalog.modelNames.isEmpty && Set(manager.store.names).isSuperset(of: expected)
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await manager.loadAll()
            while !allLoaded, !Task.isCancelled, !Task.isShuttingDownGracefully {
                try? await Task.sleep(for: pollInterval ?? .seconds(2))
                await manager.refresh()
            }
            if allLoaded { readiness.markLoaded() }
            guard let pollInterval else {
                try? await gracefulShutdown()
                return
            }
            while !Task.isCancelled, !Task.isShuttingDownGracefully {
                try? await Task.sleep(for: pollInterval)
                if Task.isShuttingDownGracefully { break }
                await manager.refresh()
            }
        } onGracefulShutdown: {
            readiness.markShuttingDown()
        }
    }
}
