import Foundation
import Testing
import WharfCore
import WharfRuntime

/// Validation metrics against scikit-learn 1.9.1 (Tests/Fixtures/metrics, made by
/// scripts/fixtures/make_metric_fixtures.py): every value to 1e-9.
@Suite("Validation metrics match scikit-learn")
struct MetricsTests {
    struct MetricCase: Decodable, Sendable, CustomTestStringConvertible {
        var name: String
        var task: String
        var classes: Int?
        var labels: [Double]
        var scores: [Score]
        var expected: [String: Expected]
        var refused: [String: String]?

        var testDescription: String { name }
    }

    /// A score is a number, null (NaN) or a row of class probabilities.
    enum Score: Decodable, Sendable {
        case value(Double)
        case row([Double])

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                self = .value(.nan)
            } else if let value = try? container.decode(Double.self) {
                self = .value(value)
            } else {
                self = .row(try container.decode([Double].self))
            }
        }

        var flat: [Double] {
            switch self {
            case .value(let value): [value]
            case .row(let row): row
            }
        }
    }

    /// A metric value, null (undefined) or the confusion matrix.
    enum Expected: Decodable, Sendable {
        case value(Double?)
        case matrix([[Int]])

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                self = .value(nil)
            } else if let value = try? container.decode(Double.self) {
                self = .value(value)
            } else {
                self = .matrix(try container.decode([[Int]].self))
            }
        }
    }

    static let directory = Fixtures.directory.appendingPathComponent("metrics")

    static let cases: [MetricCase] = {
        struct File: Decodable { var cases: [MetricCase] }
        guard let data = try? Data(contentsOf: directory.appendingPathComponent("cases.json")),
              let file = try? JSONDecoder().decode(File.self, from: data)
        else { return [] }
        return file.cases
    }()

    @Test func fixturesArePresent() {
        #expect(Self.cases.count >= 20)
    }

    private func evaluate(_ metricCase: MetricCase) throws(WharfError) -> MetricReport {
        let scores = metricCase.scores.flatMap(\.flat)
        switch metricCase.task {
        case "binary": return try Metrics.binary(labels: metricCase.labels, scores: scores)
        case "multiclass": return try Metrics.multiclass(labels: metricCase.labels, probabilities: scores, classes: metricCase.classes ?? 0)
        default: return try Metrics.regression(labels: metricCase.labels, predictions: scores)
        }
    }

    @Test(arguments: cases)
    func matchesScikitLearn(_ metricCase: MetricCase) throws {
        if let refused = metricCase.refused, !refused.isEmpty {
            // scikit-learn refuses NaN scores ("Input contains NaN."); so does Wharf, for every metric.
            #expect(throws: WharfError.self) { try evaluate(metricCase) }
            return
        }
        let report = try evaluate(metricCase)
        for (metric, expected) in metricCase.expected {
            switch expected {
            case .matrix(let matrix):
                #expect(report.confusionMatrix == matrix, "\(metric)")
            case .value(nil):
                #expect(report.values[metric] == nil && report.undefined[metric] != nil, "\(metric) should be undefined, got \(String(describing: report.values[metric]))")
            case .value(let value?):
                let actual = try #require(report.values[metric], "\(metric) missing: \(report.undefined[metric] ?? "")")
                #expect(abs(actual - value) <= 1e-9 * max(1, abs(value)), "\(metric): \(actual) vs scikit-learn \(value)")
            }
        }
    }

    struct EndToEnd: Decodable, Sendable, CustomTestStringConvertible {
        var name: String
        var model: String
        var label: String
        var expected: [String: Expected]
        var testDescription: String { name }
    }

    static let endToEnd: [EndToEnd] = ["xgb3_binary_logistic", "xgb3_multi_softprob_3class", "lgb_regression", "lgb_binary"].compactMap { name in
        struct File: Decodable {
            var model: String
            var label: String
            var expected: [String: Expected]
        }
        guard let data = try? Data(contentsOf: directory.appendingPathComponent("\(name).validation.json")),
              let file = try? JSONDecoder().decode(File.self, from: data)
        else { return nil }
        return EndToEnd(name: name, model: file.model, label: file.label, expected: file.expected)
    }

    /// The model file evaluated natively on the validation CSV gives scikit-learn's metrics on
    /// the library's own predictions.
    @Test(arguments: endToEnd)
    func validatesFixtureModels(_ fixture: EndToEnd) throws {
        let model = try ModelLoader.load(path: Fixtures.directory.appendingPathComponent(fixture.model).path)
        let csv = try [UInt8](Data(contentsOf: Self.directory.appendingPathComponent("\(fixture.name).validation.csv")))
        let data = try ValidationData(csv: csv, metadata: model.metadata, labelColumn: fixture.label)
        #expect(data.fingerprint.rows == 200)
        let report = try ModelValidation.report(model: model, data: data.table)
        for (metric, expected) in fixture.expected {
            switch expected {
            case .matrix(let matrix): #expect(report.confusionMatrix == matrix)
            case .value(let value?):
                let actual = try #require(report.values[metric])
                #expect(abs(actual - value) <= 1e-9 * max(1, abs(value)), "\(metric): \(actual) vs \(value)")
            case .value(nil): #expect(report.values[metric] == nil)
            }
        }
    }

    @Test func endToEndFixturesArePresent() {
        #expect(Self.endToEnd.count == 4)
    }

    @Test func gatesParseAndSayByHowMuchTheyMiss() throws {
        var report = MetricReport(task: .binary, rows: 10)
        report.values["roc_auc"] = 0.85
        report.undefined["pr_auc"] = "only one class"
        let gate = try Gate(parsing: " roc_auc >= 0.9 ")
        #expect(gate == Gate(metric: "roc_auc", comparison: .atLeast, threshold: 0.9))
        let outcome = gate.evaluate(report)
        #expect(!outcome.passed)
        #expect(outcome.detail.contains("off by 0.05"))
        #expect(try Gate(parsing: "roc_auc>0.8").evaluate(report).passed)
        #expect(!(try Gate(parsing: "pr_auc>=0.1").evaluate(report).passed))
        for bad in ["roc_auc", "roc_auc>=", ">=0.9", "roc_auc=>0.9", "roc_auc>=nan", "roc_auc>=abc"] {
            #expect(throws: WharfError.self, "\(bad)") { try Gate(parsing: bad) }
        }
        #expect(throws: WharfError.self) { try Gate(parsing: "rmse<=3").check(for: .binary) }
        try Gate(parsing: "rmse<=3").check(for: .regression)
    }

    @Test func championComparisonKnowsWhichWayIsBetter() {
        var candidate = MetricReport(task: .regression, rows: 5)
        var champion = MetricReport(task: .regression, rows: 5)
        candidate.values = ["rmse": 2.0, "r2": 0.7]
        champion.values = ["rmse": 2.5, "r2": 0.8]
        #expect(Gate.noWorse("rmse", candidate: candidate, champion: champion, championName: "production").passed)
        let worse = Gate.noWorse("r2", candidate: candidate, champion: champion, championName: "production")
        #expect(!worse.passed)
        #expect(worse.detail.contains("worse than production"))
    }

    @Test func badLabelsAreNamedByRow() {
        #expect(throws: WharfError.self) { try Metrics.binary(labels: [0, 1, 2], scores: [0.1, 0.2, 0.3]) }
        #expect(throws: WharfError.self) { try Metrics.multiclass(labels: [0, 1.5], probabilities: [0.5, 0.5, 0.5, 0.5], classes: 2) }
        #expect(throws: WharfError.self) { try Metrics.regression(labels: [], predictions: []) }
        do {
            _ = try Metrics.binary(labels: [0, 1, 2], scores: [0.1, 0.2, 0.3])
        } catch {
            #expect(error.message.contains("row 3"))
        }
    }
}
