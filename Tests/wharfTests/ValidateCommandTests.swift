import Foundation
import Testing

/// `wharf validate` on a model file: metrics, gates and the exit status scripts rely on.
@Suite("wharf validate")
struct ValidateCommandTests {
    private let metrics = WharfCLI.fixtures.appendingPathComponent("metrics")

    private func validate(_ model: String, _ extra: [String]) throws -> WharfCLI.Result {
        try WharfCLI.run(["validate", "--model", metrics.appendingPathComponent(model).path,
                          "--data", metrics.appendingPathComponent("champion.validation.csv").path, "--label", "label"] + extra)
    }

    @Test func passingGatesExitZeroWithEveryMetricInTheJSON() throws {
        let result = try validate("champion_strong.json", ["--gate", "roc_auc>=0.9", "--gate", "log_loss<0.5", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        for key in ["roc_auc", "pr_auc", "log_loss", "accuracy", "precision", "recall", "f1", "confusion_matrix", "gates", "passed", "data"] {
            #expect(object[key] != nil, "\(key)")
        }
        // scikit-learn's figure for this model and data (Tests/Fixtures/metrics/champion.expected.json).
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: metrics.appendingPathComponent("champion.expected.json"))) as? [String: Any]
        let strong = try #require(expected?["strong"] as? [String: Any])
        let rocAUC = try #require(object["roc_auc"] as? Double)
        #expect(abs(rocAUC - (strong["roc_auc"] as! Double)) < 1e-9)
        #expect(object["passed"] as? Bool == true)
        #expect((object["data"] as? [String: Any])?["rows"] as? Int == 400)
    }

    @Test func aFailingGateExitsOneAndSaysByHowMuch() throws {
        let result = try validate("champion_weak.json", ["--gate", "roc_auc>=0.9"])
        #expect(result.status == 1)
        #expect(result.stdout.contains("FAIL roc_auc>=0.9"))
        #expect(result.stdout.contains("off by 0.17"))
    }

    @Test("errors exit two and name the problem", arguments: [
        (["--gate", "rmse<=1"], "binary models have no metric \"rmse\""),
        (["--gate", "roc_auc"], "has no comparison"),
        (["--label", "nope"], "no label column \"nope\""),
        (["--against", "production"], "--against needs the registered model's name"),
    ])
    func errors(extra: [String], message: String) throws {
        let result = try validate("champion_strong.json", extra)
        #expect(result.status == 2)
        #expect(result.stderr.contains(message), "\(result.stderr)")
    }
}
