import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import WharfCore
import WharfHTTP

/// How `wharf registry` runs.
///
/// | flag | environment | default | meaning |
/// | --- | --- | --- | --- |
/// | `--host`, `--port` | | 127.0.0.1, 8081 | where the API listens |
/// | `--data-dir` | `WHARF_DATA_DIR` | `./.wharf` | SQLite database (`registry.sqlite`) and artifacts (`artifacts/`) |
/// | `--database` | `WHARF_DATABASE` | none | `postgres://…`: keep records in PostgreSQL instead of SQLite |
/// | `--token` / `--token-sha256` | `WHARF_REGISTRY_TOKEN` / `WHARF_REGISTRY_TOKEN_SHA256` | required | bearer token for writes (kept only as its SHA-256) |
/// | `--protect-reads` | | off | reads need the token too |
/// | `--max-artifact-bytes` | | 1 GiB | largest model file accepted |
/// | `--protected-alias` | | production | aliases that need a passing validation |
public struct RegistryConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var dataDirectory: String
    public var databaseURL: String?
    public var tokenSHA256: String
    public var protectReads: Bool
    public var maxArtifactBytes: Int
    public var protectedAliases: Set<String>

    public init(host: String = "127.0.0.1", port: Int = 8081, dataDirectory: String = ".wharf", databaseURL: String? = nil,
                tokenSHA256: String, protectReads: Bool = false, maxArtifactBytes: Int = 1 << 30,
                protectedAliases: Set<String> = ["production"]) {
        self.host = host
        self.port = port
        self.dataDirectory = dataDirectory
        self.databaseURL = databaseURL
        self.tokenSHA256 = tokenSHA256
        self.protectReads = protectReads
        self.maxArtifactBytes = maxArtifactBytes
        self.protectedAliases = protectedAliases
    }
}

/// The registry service: its store, its artifacts and its HTTP API.
public struct RegistryServer: Sendable {
    public let configuration: RegistryConfiguration
    public let store: any RegistryStore
    public let artifacts: ArtifactStore
    /// Services to run beside the HTTP server (PostgreSQL's connection pool).
    let backgroundServices: [any Service]

    /// Opens the configured store (migrating its schema) and the artifact directory.
    public static func open(_ configuration: RegistryConfiguration, logger: Logger) async throws -> RegistryServer {
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        let artifacts = try ArtifactStore(root: configuration.dataDirectory + "/artifacts", sizeLimit: configuration.maxArtifactBytes)
        if let url = configuration.databaseURL {
            let store = try PostgresRegistryStore(url: url, logger: logger)
            let pool = PostgresPoolService(store: store)
            do {
                try await store.migrate()
            } catch {
                store.shutdown()
                throw WharfError(.unavailable, "cannot prepare the PostgreSQL database: \(String(reflecting: error).prefix(300))")
            }
            return RegistryServer(configuration: configuration, store: store, artifacts: artifacts, backgroundServices: [pool])
        }
        let store = try SQLiteRegistryStore(path: configuration.dataDirectory + "/registry.sqlite")
        return RegistryServer(configuration: configuration, store: store, artifacts: artifacts, backgroundServices: [])
    }

    public init(configuration: RegistryConfiguration, store: any RegistryStore, artifacts: ArtifactStore, backgroundServices: [any Service] = []) {
        self.configuration = configuration
        self.store = store
        self.artifacts = artifacts
        self.backgroundServices = backgroundServices
    }

    public func buildApplication(
        logger: Logger,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: try BearerTokenMiddleware(tokenSHA256: configuration.tokenSHA256, protectReads: configuration.protectReads))
        router.get("/v1/health/live") { _, _ in Response.emptyOK }
        router.get("/v1/health/ready") { _, _ in Response.emptyOK }
        router.get("/openapi.yaml") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/yaml"], body: ResponseBody(byteBuffer: ByteBuffer(string: RegistryOpenAPI.document)))
        }
        RegistryController(
            store: store, artifacts: artifacts, policy: PromotionPolicy(protectedAliases: configuration.protectedAliases)
        ).addRoutes(to: router)
        router.refuseOtherMethods()
        return Application(
            router: router,
            server: .wharfHTTP1,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "wharf-registry"),
            services: backgroundServices,
            onServerRunning: onServerRunning,
            logger: logger
        )
    }
}

/// Closes the PostgreSQL connection pool when the service group shuts down.
struct PostgresPoolService: Service {
    let store: PostgresRegistryStore

    func run() async throws {
        try? await gracefulShutdown()
        store.shutdown()
    }
}
