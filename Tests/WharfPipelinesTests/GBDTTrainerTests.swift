import Foundation
import Testing
import WharfCore
@testable import WharfPipelines
import WharfRuntime

/// The GBDT trainer: the models xgboost was checked on (scripts/fixtures/make_training_fixtures.py)
/// come out again byte for byte, and the runtime predicts what xgboost predicted with them.
@Suite("GBDT trainer")
struct GBDTTrainerTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/training")
    /// As in make_training_fixtures.py.
    static let parameters = ["num_rounds": "20", "learning_rate": "0.3", "max_depth": "4", "lambda": "1", "min_child_weight": "1", "max_bin": "64"]

    func load(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent(name)))
    }

    @Test(arguments: [ModelTask.binary, .multiclass, .regression])
    func xgboostReadsTheModelAndAgreesWithTheRuntime(_ task: ModelTask) throws {
        let data = try TrainingData(csv: try load("gbdt_\(task.rawValue).csv"), label: "label")
        var parameters = Self.parameters
        parameters["nthread"] = "2"
        let fitted = try GBDTTrainer(task: task, parameters: parameters, seed: 7).fit(data)
        let committed = try load("gbdt_\(task.rawValue).json")
        #expect(fitted.model == committed, "the trainer no longer makes the model xgboost was checked on: rerun make_training_fixtures.py if that is intended")
        // One thread or two: the same model.
        parameters["nthread"] = "1"
        #expect(try GBDTTrainer(task: task, parameters: parameters, seed: 7).fit(data).model == fitted.model)

        let model = try ModelLoader.load(bytes: fitted.model)
        let predicted = try model.predict(data.values, rows: data.rows)
        let expected = String(decoding: try load("gbdt_\(task.rawValue).xgboost.csv"), as: UTF8.self)
            .split(separator: "\n").dropFirst().flatMap { $0.split(separator: ",").map { Double($0)! } }
        #expect(predicted.count == expected.count)
        // xgboost computes in float32: agreement to float32 precision.
        let worst = zip(predicted, expected).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        #expect(worst < 1e-5, "largest difference from xgboost: \(worst)")
    }

    /// Missing values carry signal in the fixtures: the learned default direction uses it.
    @Test func missingValuesGoWhereTheyHelp() throws {
        let data = try TrainingData(csv: try load("gbdt_binary.csv"), label: "label")
        let model = try ModelLoader.load(bytes: try GBDTTrainer(task: .binary, parameters: Self.parameters, seed: 7).fit(data).model)
        var missingRows: [Double] = []
        var presentRows: [Double] = []
        for row in 0..<data.rows {
            let features = Array(data.values[(row * data.featureCount)..<((row + 1) * data.featureCount)])
            var asMissing = features
            asMissing[0] = .nan
            var asZero = features
            asZero[0] = 0
            missingRows += asMissing
            presentRows += asZero
        }
        let withMissing = try model.predict(missingRows, rows: data.rows).reduce(0, +)
        let withZero = try model.predict(presentRows, rows: data.rows).reduce(0, +)
        #expect(withMissing > withZero, "a missing f0 should raise the probability (the data adds 1 to the score when it is missing)")
    }

    @Test func earlyStoppingKeepsTheBestRound() throws {
        let all = try TrainingData(csv: try load("gbdt_regression.csv"), label: "label")
        let split = 1000 * all.featureCount
        let train = try TrainingData(featureNames: all.featureNames, values: Array(all.values[..<split]), labels: Array(all.labels[..<1000]))
        let valid = try TrainingData(featureNames: all.featureNames, values: Array(all.values[split...]), labels: Array(all.labels[1000...]))
        let parameters = ["num_rounds": "500", "learning_rate": "0.5", "max_depth": "6", "min_child_weight": "0.5", "early_stopping_rounds": "10"]
        let fitted = try GBDTTrainer(task: .regression, parameters: parameters, seed: 1).fit(train, validation: valid)
        #expect(fitted.trees == fitted.bestRound + 1 && fitted.trees < 500)
        #expect(fitted.validationHistory.count == fitted.bestRound + 11)
        #expect(fitted.validationHistory[fitted.bestRound] == fitted.validationHistory.min())
        // The model kept is the best round's: its validation RMSE is the best one recorded.
        let model = try ModelLoader.load(bytes: fitted.model)
        let predicted = try model.predict(valid.values, rows: valid.rows)
        let rmse = (zip(predicted, valid.labels).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Double(valid.rows)).squareRoot()
        #expect(abs(rmse - fitted.validationHistory[fitted.bestRound]) < 1e-3 * rmse)
    }

    @Test func subsamplingIsSeededAndParametersAreChecked() throws {
        let data = try TrainingData(csv: try load("gbdt_binary.csv"), label: "label")
        let parameters = ["num_rounds": "5", "subsample": "0.7", "colsample_bytree": "0.5", "grow_policy": "lossguide", "max_leaves": "8"]
        let first = try GBDTTrainer(task: .binary, parameters: parameters, seed: 3).fit(data).model
        #expect(try GBDTTrainer(task: .binary, parameters: parameters, seed: 3).fit(data).model == first)
        #expect(try GBDTTrainer(task: .binary, parameters: parameters, seed: 4).fit(data).model != first)
        let xgboostLayout = try JSONSerialization.jsonObject(with: Data(first)) as? [String: Any]
        let trees = ((((xgboostLayout?["learner"] as? [String: Any])?["gradient_booster"] as? [String: Any])?["model"] as? [String: Any])?["trees"] as? [[String: Any]]) ?? []
        #expect(trees.count == 5)
        #expect(trees.allSatisfy { (($0["left_children"] as? [Int])?.filter { $0 == -1 }.count ?? 99) <= 8 }, "at most max_leaves leaves")

        for (key, value) in [("eta", "2"), ("max_bin", "1"), ("grow_policy", "sideways"), ("depth", "3"), ("subsample", "0")] {
            #expect(throws: WharfError.self) { try GBDTTrainer(task: .binary, parameters: [key: value], seed: 0) }
        }
    }

    /// Enough rows for the histograms to be built on several threads: the same model as on one.
    /// What would make a model no reader loads is refused: an infinite feature (a split
    /// threshold of inf); the extreme parameters stay loadable; early stopping without a
    /// validation set is an error rather than ignored.
    @Test func theModelWrittenIsAlwaysLoadable() throws {
        var csv = "ratio,label\n"
        for row in 0..<60 { csv += row < 30 ? "\(row % 3 + 1),0\n" : "inf,1\n" }
        do {
            _ = try TrainingData(csv: Array(csv.utf8), label: "label")
            Issue.record("an infinite feature was taken")
        } catch {
            #expect(error.message.contains("row 31 (line 32), column ratio: inf is not a finite number"), "\(error.message)")
        }
        let data = try TrainingData(csv: try load("gbdt_binary.csv"), label: "label")
        let sparse = try GBDTTrainer(task: .binary, parameters: ["num_rounds": "5", "lambda": "0", "subsample": "0.001"], seed: 3).fit(data)
        #expect(throws: Never.self) { try ModelLoader.load(bytes: sparse.model) }
        #expect(!String(decoding: sparse.model, as: UTF8.self).contains("nan"))
        #expect(throws: WharfError.self) { try GBDTTrainer(task: .binary, parameters: ["early_stopping_rounds": "5"], seed: 1).fit(data) }
        // With a validation set but no early stopping, the model holds every round, and so does
        // what the fit reports.
        let all = try GBDTTrainer(task: .binary, parameters: ["num_rounds": "12"], seed: 1).fit(data, validation: data)
        #expect(all.trees == 12 && all.bestRound == 11)
    }

    @Test func threadsDoNotChangeTheModel() throws {
        var random = SeededGenerator(seed: 5)
        let rows = 20_000, features = 6
        var values: [Double] = []
        var labels: [Double] = []
        for _ in 0..<rows {
            let x = (0..<features).map { _ in random.nextUnit() * 4 - 2 }
            values += x.enumerated().map { $0.offset == 1 && random.nextUnit() < 0.05 ? .nan : $0.element }
            labels.append(x[0] + x[2] * x[3] + random.nextUnit() > 0.5 ? 1 : 0)
        }
        let data = try TrainingData(featureNames: (0..<features).map { "x\($0)" }, values: values, labels: labels)
        var parameters = ["num_rounds": "10", "max_depth": "5", "subsample": "0.8"]
        parameters["nthread"] = "1"
        let one = try GBDTTrainer(task: .binary, parameters: parameters, seed: 9).fit(data).model
        for threads in ["2", "3"] {
            parameters["nthread"] = threads
            var trainer = try GBDTTrainer(task: .binary, parameters: parameters, seed: 9)
            trainer.parallelWork = 0  // every node on several threads
            #expect(try trainer.fit(data).model == one, "\(threads) threads")
        }
    }
}
