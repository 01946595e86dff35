import Foundation
import Testing

/// `wharf train` on the bundled example: models the runtime serves and `wharf validate` passes.
@Suite("wharf train")
struct TrainCommandTests {
    @Test func aLinearModelTrainsAndValidates() async throws {
        try await ProcessTestGate.shared.run { try self.aLinearModelTrainsAndValidatesBody() }
    }

    private func aLinearModelTrainsAndValidatesBody() throws {
        let example = WharfCLI.packageRoot.appendingPathComponent("examples/breast-cancer").path
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-train-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let trained = try WharfCLI.run(["train", "--data", example + "/train.csv", "--label", "diagnosis", "--task", "binary",
                                        "--algorithm", "linear", "--param", "l2=0.001", "--valid", example + "/validation.csv", "--out", out, "--json"])
        #expect(trained.status == 0, "\(trained.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(trained.stdout.utf8)) as? [String: Any]
        #expect(summary?["converged"] as? Bool == true && summary?["rows"] as? Int == 455)
        #expect(((summary?["validation"] as? [String: Any])?["roc_auc"] as? Double ?? 0) > 0.97)

        let validated = try WharfCLI.run(["validate", "--model", out, "--data", example + "/validation.csv", "--label", "diagnosis", "--gate", "roc_auc>=0.95"])
        #expect(validated.status == 0, "\(validated.stdout)\(validated.stderr)")

        let gbdt = try WharfCLI.run(["train", "--data", example + "/train.csv", "--label", "diagnosis", "--task", "binary", "--algorithm", "gbdt",
                                     "--param", "max_depth=3", "--param", "early_stopping_rounds=10", "--valid", example + "/validation.csv", "--out", out, "--json"])
        #expect(gbdt.status == 0, "\(gbdt.stderr)")
        let boosted = try JSONSerialization.jsonObject(with: Data(gbdt.stdout.utf8)) as? [String: Any]
        #expect(((boosted?["validation"] as? [String: Any])?["roc_auc"] as? Double ?? 0) > 0.97)
        #expect(try WharfCLI.run(["inspect", "--model", out]).stdout.contains("xgboost_json"))
        let forest = try WharfCLI.run(["train", "--data", example + "/train.csv", "--label", "diagnosis", "--task", "binary", "--algorithm", "forest", "--out", out])
        #expect(forest.status == 2 && forest.stderr.contains("gbdt or linear"))
        let badParam = try WharfCLI.run(["train", "--data", example + "/train.csv", "--label", "diagnosis", "--task", "binary", "--param", "depth=3", "--out", out])
        #expect(badParam.status == 2 && badParam.stderr.contains("depth"))
    }
}
