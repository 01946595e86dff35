import Logging
import WharfCore

/// Everything `wharf serve` needs; each field has a default and a flag.
///
/// | field | flag | default |
/// | --- | --- | --- |
/// | `host` | `--host` | `127.0.0.1` |
/// | `port` | `--port` | `8080` (0 picks a free port, for tests) |
/// | `catalog` | `--model NAME=FILE …` or `--model-repository DIR` | — |
/// | `batching` | `--max-batch-rows`, `--max-queue-delay-ms`, `--max-queued-rows` | see ``BatchingSettings`` |
/// | `maxBodyBytes` | `--max-body-bytes` | 64 MiB (413 beyond) |
/// | `pollInterval` | `--poll-seconds` | 5 s with a repository, off with files |
/// | `idleTimeout` | `--idle-timeout-seconds` | 60 s: a connection silent that long (idle, or stalled mid-body) is closed |
public struct ServingConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var catalog: ModelCatalog
    public var batching: BatchingSettings
    public var maxBodyBytes: Int
    public var pollInterval: Duration?
    /// A connection silent this long is closed: idle between requests, or a body that stopped
    /// arriving. nil: never.
    public var idleTimeout: Duration?
    /// Where sampled prediction records go (`--hub`), or nil.
    public var predictionLog: PredictionLog?
    /// Fills missing inputs from the hub's feature store (`--feature-view`), or nil.
    public var featureFiller: FeatureFiller?

    public init(
        host: String = "127.0.0.1",
        port: Int = 8080,
        catalog: ModelCatalog,
        batching: BatchingSettings = BatchingSettings(),
        maxBodyBytes: Int = 64 << 20,
        pollInterval: Duration? = nil,
        idleTimeout: Duration? = .seconds(60)
    ) {
        self.host = host
        self.port = port
        self.catalog = catalog
        self.batching = batching
        self.maxBodyBytes = maxBodyBytes
        self.pollInterval = pollInterval
        self.idleTimeout = idleTimeout
    }
}
