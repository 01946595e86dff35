import Synchronization

/// Whether the server should receive traffic: its models are loaded and warmed, and it is not
/// shutting down.
public final class Readiness: Sendable {
    private let loaded = Atomic(false)
    private let shuttingDown = Atomic(false)

    public init() {}

    public func markLoaded() { loaded.store(true, ordering: .releasing) }
    public func markShuttingDown() { shuttingDown.store(true, ordering: .releasing) }

    public var isShuttingDown: Bool { shuttingDown.load(ordering: .acquiring) }

    public var isReady: Bool {
        loaded.load(ordering: .acquiring) && !shuttingDown.load(ordering: .acquiring)
    }
}
