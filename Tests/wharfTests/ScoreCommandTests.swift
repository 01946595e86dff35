import Foundation
import Testing

/// `wharf score` from the command line: a model file, a CSV in, scores out with the kept id.
@Suite("wharf score")
struct ScoreCommandTests {
    @Test func scoresAFileAndKeepsTheId() async throws {
        try await ProcessTestGate.shared.run { try self.scoresAFileAndKeepsTheIdBody() }
    }

    private func scoresAFileAndKeepsTheIdBody() throws {
        let model = WharfCLI.fixtures.appendingPathComponent("models/xgb3_binary_logistic.json").path
        let rows = (0..<500).map { index in "id\(index)," + (0..<8).map { String(Double(($0 + index) % 7) / 3) }.joined(separator: ",") }
        let input = try WharfCLI.temporaryFile("score-\(UUID().uuidString).csv",
                                               contents: "id," + (0..<8).map { "f\($0)" }.joined(separator: ",") + "\n" + rows.joined(separator: "\n") + "\n")
        let output = input + ".scores.csv"
        let result = try WharfCLI.run(["score", "--model", model, "--input", input, "--output", output, "--keep", "id", "--threads", "2", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect(summary?["rows"] as? Int == 500)
        let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 501 && lines[0] == "id,probability" && lines[1].hasPrefix("id0,") && lines[500].hasPrefix("id499,"))

        let bad = try WharfCLI.run(["score", "--model", model, "--input", input, "--output", output, "--keep", "nope"])
        #expect(bad.status == 2 && bad.stderr.contains("--keep nope"))
    }
}
