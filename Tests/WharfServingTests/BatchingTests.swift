import Testing
import WharfCore
import WharfRuntime
import WharfServing

/// The data plane without HTTP: thousands of concurrent callers through one batcher, with every
/// combination of leaders, hand-offs and batch splits, each getting exactly its own rows.
@Suite("Batching")
struct BatchingTests {
    @Test(arguments: [
        BatchingSettings(maxBatchRows: 16, maxConcurrentBatches: 1),
        BatchingSettings(maxBatchRows: 64, maxConcurrentBatches: 2),
        BatchingSettings(maxBatchRows: 2048, maxQueueDelayMilliseconds: 0.5, maxConcurrentBatches: 2),
    ])
    func everyCallerGetsItsOwnRows(settings: BatchingSettings) async throws {
        let path = ServingFixtures.model("lgb_multiclass_3.txt")
        let model = try ModelLoader.load(path: path)
        let (base, baseRows) = try ServingFixtures.rows("lgb_multiclass_3", model: model)
        // Ten copies of the fixture rows: room for the large requests.
        let values = Array(repeating: base, count: 10).flatMap { $0 }
        let rows = baseRows * 10
        let features = model.metadata.featureCount
        let expected = try model.predict(values, rows: rows)
        let server = await ServingFixtures.server(["stress": path], batching: settings)
        let service = InferenceService(store: server.store)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for caller in 0..<2000 {
                let first = (caller * 13) % (rows - 600)
                // Mostly small requests, now and then one big enough to be split across cores.
                let count = caller % 97 == 0 ? 600 : 1 + caller % 5
                group.addTask {
                    let slice = Array(values[(first * features)..<((first + count) * features)])
                    let request = InferenceRequest(
                        id: "c\(caller)",
                        inputs: [RequestInput(name: "x", shape: [count, features], datatype: .fp64, data: slice)])
                    let response = try await service.infer(request, model: "stress", version: nil)
                    #expect(response.id == "c\(caller)")
                    let probabilities = response.outputs.first { $0.name == "probabilities" }?.data ?? []
                    #expect(probabilities == Array(expected[(first * 3)..<((first + count) * 3)]), "caller \(caller)")
                }
            }
            try await group.waitForAll()
        }
    }
}
