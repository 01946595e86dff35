import Dispatch
import Metrics
import WharfCore

/// The data plane of a model server: resolve the model, assemble the rows, evaluate through the
/// model's batcher, build the outputs. It knows no HTTP, so any front end can call it.
public struct InferenceService: Sendable {
    public let store: ModelStore

    public init(store: ModelStore) {
        self.store = store
    }

    public func infer(_ request: InferenceRequest, model name: String, version: String?) async throws -> InferenceResponse {
        let served = try store.resolve(name, version: version)
        let start = DispatchTime.now().uptimeNanoseconds
        do {
            let (values, rows) = try InputAssembler.matrix(for: request, metadata: served.metadata)
            let predictions = try await served.batcher.predict(values, rows: rows)
            let outputs = try OutputBuilder.outputs(for: request, metadata: served.metadata, values: predictions, rows: rows)
            served.metrics.succeeded.increment()
            served.metrics.rows.increment(by: rows)
            served.metrics.latency.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start))
            return InferenceResponse(modelName: served.name, modelVersion: served.version, id: request.id, outputs: outputs)
        } catch let error as WharfError {
            (error.code == .unavailable ? served.metrics.overloaded : served.metrics.invalid).increment()
            throw error
        }
    }
}
