import Testing
import WharfCore
@testable import WharfServing

@Suite("Entity ids for feature filling")
struct FeatureFillerTests {
    private func entities(_ parameters: [String: InferenceParameter]) throws -> [String]? {
        try FeatureFiller.entities(InferenceRequest(parameters: parameters, inputs: []))
    }

    /// Numbers that are whole and fit an Int64 are ids; any other number is a 400, never a trap.
    @Test func numericIdsAreCheckedNotTrapped() throws {
        #expect(try entities(["entity_id": .number(42)]) == ["42"])
        #expect(try entities(["entity_id": .string("user-7")]) == ["user-7"])
        #expect(try entities(["entity_ids": .string("a, b")]) == ["a", "b"])
        #expect(try entities([:]) == nil)
        for hostile in [1e19, -1e19, 9.3e18, .infinity, -.infinity, .nan, 0.5] {
            #expect(throws: WharfError.self, "\(hostile)") { try entities(["entity_id": .number(hostile)]) }
        }
    }
}
