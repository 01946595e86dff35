import Foundation
import Testing
@testable import WharfFeatures

@Suite("Ingest answers")
struct BatchResultTests {
    /// The hand-written answer is byte for byte what a JSONEncoder with sorted keys writes.
    @Test func theWrittenAnswerMatchesTheEncoder() throws {
        let result = HubController.BatchResult(accepted: 2, rejected: 1, results: [
            .init(index: 0, offset: 41, error: nil),
            .init(index: 1, offset: nil, error: #"seq must be a number, not "x\" \u{1}""#),
            .init(index: 2, offset: 42, error: nil),
        ])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let expected = try JSONSerialization.jsonObject(with: encoder.encode(result)) as? NSDictionary
        let written = try JSONSerialization.jsonObject(with: Data(result.json)) as? NSDictionary
        #expect(written == expected)
        #expect(String(decoding: result.json, as: UTF8.self).hasPrefix(#"{"accepted":2,"rejected":1,"results":[{"index":0,"offset":41},{"error":"#))
    }
}
