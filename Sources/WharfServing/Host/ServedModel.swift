import Foundation
import Metrics
import WharfCore
import WharfRuntime

/// One loaded, warmed version of a model, ready to answer. Immutable: a request that resolved
/// it finishes on it even if a newer version is swapped in meanwhile.
public final class ServedModel: Sendable {
    public let name: String
    public let version: String
    public let model: Model
    public let source: String
    public let loadSeconds: Double
    let batcher: Batcher
    let metrics: ModelMetrics

    init(name: String, version: String, model: Model, source: String, settings: BatchingSettings, loadSeconds: Double) {
        self.name = name
        self.version = version
        self.model = model
        self.source = source
        self.loadSeconds = loadSeconds
        batcher = Batcher(model: model, settings: settings, dimensions: [("model", name), ("version", version)])
        metrics = ModelMetrics(name: name, version: version)
        Recorder(label: "wharf_model_load_seconds", dimensions: [("model", name)]).record(loadSeconds)
    }

    public var metadata: ModelMetadata { model.metadata }

    /// Called once this version no longer answers (replaced, or unloaded): its metric series
    /// go. Requests still finishing on it record into metrics no longer exported.
    func retireMetrics() {
        metrics.destroy()
        batcher.destroyMetrics()
    }

    /// Loads `path`, then evaluates a few synthetic rows so the first real request does not pay
    /// for page faults and cold caches: readiness is reported only after this.
    static func load(name: String, version: String, path: String, settings: BatchingSettings) throws(WharfError) -> ServedModel {
        let start = Date()
        let model = try ModelLoader.load(path: path)
        let warmup = PredictionBenchmark.syntheticRows(for: model, count: 64, seed: 7)
        _ = try model.predict(warmup, rows: 64)
        return ServedModel(
            name: name, version: version, model: model, source: path, settings: settings,
            loadSeconds: Date().timeIntervalSince(start))
    }
}
