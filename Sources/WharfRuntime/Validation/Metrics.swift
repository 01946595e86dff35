#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import WharfCore

/// Offline validation metrics, computed the way scikit-learn computes them, so that a gate set
/// in a notebook (`roc_auc_score(...) >= 0.9`) means the same thing here.
///
/// | task | metrics |
/// | --- | --- |
/// | binary | `roc_auc`, `pr_auc` (average precision), `log_loss`, `accuracy`, `precision`, `recall`, `f1` (class 1 when p > 0.5), confusion matrix |
/// | multiclass | the same, macro-averaged over the classes (ROC AUC one-vs-rest; the predicted class is the most probable) |
/// | regression | `rmse`, `mae`, `r2`, `mape` |
///
/// A metric that scikit-learn refuses for the data (ROC AUC with one class in the labels, say)
/// is left out of the report with the reason in `undefined`; NaN scores are refused outright.
public enum Metrics {
    /// Every metric name, by task; gates may name only these.
    public static func names(for task: ModelTask) -> [String] {
        switch task {
        case .binary, .multiclass: ["roc_auc", "pr_auc", "log_loss", "accuracy", "precision", "recall", "f1"]
        case .regression: ["rmse", "mae", "r2", "mape"]
        }
    }

    /// Whether a smaller value of `metric` is better (losses and errors).
    public static func lowerIsBetter(_ metric: String) -> Bool {
        ["log_loss", "rmse", "mae", "mape"].contains(metric)
    }

    /// Binary classification: `scores` is the probability of class 1, `labels` are 0 or 1.
    public static func binary(labels: [Double], scores: [Double]) throws(WharfError) -> MetricReport {
        try checkInputs(labels: labels, predictions: scores, width: 1)
        let truth = try classLabels(labels, classes: 2)
        var report = MetricReport(task: .binary, rows: labels.count)
        report.record("roc_auc", rocAUC(truth.map { $0 == 1 }, scores))
        report.record("pr_auc", averagePrecision(truth.map { $0 == 1 }, scores))
        report.values["log_loss"] = logLoss(truth, classes: 2) { row, label in
            label == 1 ? scores[row] : 1 - scores[row]
        }
        let predicted = scores.map { $0 > 0.5 ? 1 : 0 }
        let matrix = confusionMatrix(truth, predicted, classes: 2)
        report.confusionMatrix = matrix
        report.values["accuracy"] = Double(matrix[0][0] + matrix[1][1]) / Double(labels.count)
        let (precision, recall, f1) = classScores(matrix, label: 1)
        report.values["precision"] = precision
        report.values["recall"] = recall
        report.values["f1"] = f1
        return report
    }

    /// Multiclass classification: `probabilities` holds `classes` numbers a row, row-major;
    /// `labels` are class indices.
    public static func multiclass(labels: [Double], probabilities: [Double], classes: Int) throws(WharfError) -> MetricReport {
        guard classes >= 2 else { throw WharfError(.invalidInput, "a multiclass model needs at least 2 classes, not \(classes)") }
        try checkInputs(labels: labels, predictions: probabilities, width: classes)
        let truth = try classLabels(labels, classes: classes)
        let rows = labels.count
        var report = MetricReport(task: .multiclass, rows: rows)
        // One-vs-rest, then the unweighted mean over classes.
        var aucs: [Double] = []
        var precisions: [Double] = []
        for label in 0..<classes {
            let column = (0..<rows).map { probabilities[$0 * classes + label] }
            let isLabel = truth.map { $0 == label }
            switch rocAUC(isLabel, column) {
            case .success(let value): aucs.append(value)
            case .failure(let why): report.undefined["roc_auc"] = "class \(label): \(why)"
            }
            if case .success(let value) = averagePrecision(isLabel, column) { precisions.append(value) }
        }
        if report.undefined["roc_auc"] == nil { report.values["roc_auc"] = mean(aucs) }
        report.values["pr_auc"] = mean(precisions)
        report.values["log_loss"] = logLoss(truth, classes: classes) { row, label in probabilities[row * classes + label] }
        let predicted = (0..<rows).map { row in
            var best = 0
            for label in 1..<classes where probabilities[row * classes + label] > probabilities[row * classes + best] { best = label }
            return best
        }
        let matrix = confusionMatrix(truth, predicted, classes: classes)
        report.confusionMatrix = matrix
        report.values["accuracy"] = Double((0..<classes).reduce(0) { $0 + matrix[$1][$1] }) / Double(rows)
        let perClass = (0..<classes).map { classScores(matrix, label: $0) }
        report.values["precision"] = mean(perClass.map(\.precision))
        report.values["recall"] = mean(perClass.map(\.recall))
        report.values["f1"] = mean(perClass.map(\.f1))
        return report
    }

    public static func regression(labels: [Double], predictions: [Double]) throws(WharfError) -> MetricReport {
        try checkInputs(labels: labels, predictions: predictions, width: 1)
        var report = MetricReport(task: .regression, rows: labels.count)
        let count = Double(labels.count)
        var squared = 0.0
        var absolute = 0.0
        var relative = 0.0
        for (label, prediction) in zip(labels, predictions) {
            let error = label - prediction
            squared += error * error
            absolute += abs(error)
            // scikit-learn divides by max(|y|, machine epsilon), so a zero label gives a huge term.
            relative += abs(error) / max(abs(label), Double.ulpOfOne)
        }
        report.values["rmse"] = (squared / count).squareRoot()
        report.values["mae"] = absolute / count
        report.values["mape"] = relative / count
        let average = labels.reduce(0, +) / count
        let total = labels.reduce(0) { $0 + ($1 - average) * ($1 - average) }
        // Constant labels: 1 for a perfect fit, else 0, as scikit-learn's force_finite does.
        report.values["r2"] = total == 0 ? (squared == 0 ? 1 : 0) : 1 - squared / total
        return report
    }

    // MARK: - Pieces

    private static func checkInputs(labels: [Double], predictions: [Double], width: Int) throws(WharfError) {
        guard !labels.isEmpty else { throw WharfError(.invalidInput, "the validation data has no rows") }
        guard predictions.count == labels.count * width else {
            throw WharfError(.internalError, "\(predictions.count) predictions for \(labels.count) rows of width \(width)")
        }
        if let row = predictions.firstIndex(where: { !$0.isFinite }) {
            throw WharfError(.invalidInput, "the model predicted \(predictions[row]) for row \(row / width + 1): metrics need finite predictions")
        }
    }

    private static func classLabels(_ labels: [Double], classes: Int) throws(WharfError) -> [Int] {
        var result: [Int] = []
        result.reserveCapacity(labels.count)
        for (row, label) in labels.enumerated() {
            guard label == label.rounded(), label >= 0, label < Double(classes) else {
                throw WharfError(.invalidInput, "row \(row + 1): label \(label) is not a class of this model (0…\(classes - 1))")
            }
            result.append(Int(label))
        }
        return result
    }

    /// Scores sorted from highest to lowest, with the running counts of positives and
    /// negatives at the last row of each run of equal scores (scikit-learn's _binary_clf_curve).
    private static func thresholdCounts(_ positive: [Bool], _ scores: [Double]) -> (truePositives: [Double], falsePositives: [Double]) {
        let order = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        var truePositives: [Double] = []
        var falsePositives: [Double] = []
        var positives = 0.0
        for (rank, index) in order.enumerated() {
            if positive[index] { positives += 1 }
            let isLastOfRun = rank == order.count - 1 || scores[order[rank + 1]] != scores[index]
            if isLastOfRun {
                truePositives.append(positives)
                falsePositives.append(Double(rank + 1) - positives)
            }
        }
        return (truePositives, falsePositives)
    }

    /// The area under the ROC curve by the trapezoidal rule (ties in scores make a diagonal step).
    static func rocAUC(_ positive: [Bool], _ scores: [Double]) -> Result<Double, UndefinedMetric> {
        let (truePositives, falsePositives) = thresholdCounts(positive, scores)
        let positives = truePositives.last ?? 0
        let negatives = falsePositives.last ?? 0
        guard positives > 0, negatives > 0 else {
            return .failure(UndefinedMetric("only one class is present in the labels; ROC AUC is not defined then"))
        }
        var area = 0.0
        var previousX = 0.0
        var previousY = 0.0
        for (tp, fp) in zip(truePositives, falsePositives) {
            let x = fp / negatives
            let y = tp / positives
            area += (x - previousX) * (y + previousY) / 2
            previousX = x
            previousY = y
        }
        return .success(area)
    }

    /// Average precision: the sum over thresholds of precision times the recall gained.
    /// Without positive labels scikit-learn takes recall to be 1 everywhere, which gives 0.
    static func averagePrecision(_ positive: [Bool], _ scores: [Double]) -> Result<Double, UndefinedMetric> {
        let (truePositives, falsePositives) = thresholdCounts(positive, scores)
        let positives = truePositives.last ?? 0
        guard positives > 0 else { return .success(0) }
        var sum = 0.0
        var previousRecall = 0.0
        for (tp, fp) in zip(truePositives, falsePositives) {
            let recall = tp / positives
            let precision = tp + fp > 0 ? tp / (tp + fp) : 0
            sum += (recall - previousRecall) * precision
            previousRecall = recall
        }
        return .success(sum)
    }

    /// Mean negative log-likelihood of the true class, probabilities clipped to
    /// [ε, 1 − ε] with ε the double's machine epsilon, as scikit-learn does.
    private static func logLoss(_ truth: [Int], classes: Int, probability: (Int, Int) -> Double) -> Double {
        let epsilon = Double.ulpOfOne
        var total = 0.0
        for (row, label) in truth.enumerated() {
            total -= log(min(max(probability(row, label), epsilon), 1 - epsilon))
        }
        return total / Double(truth.count)
    }

    /// matrix[truth][predicted].
    private static func confusionMatrix(_ truth: [Int], _ predicted: [Int], classes: Int) -> [[Int]] {
        var matrix = Array(repeating: Array(repeating: 0, count: classes), count: classes)
        for (actual, guess) in zip(truth, predicted) { matrix[actual][guess] += 1 }
        return matrix
    }

    /// Precision, recall and F1 of one class; 0 where a denominator is 0 (zero_division=0).
    private static func classScores(_ matrix: [[Int]], label: Int) -> (precision: Double, recall: Double, f1: Double) {
        let truePositives = Double(matrix[label][label])
        let predictedAs = Double(matrix.reduce(0) { $0 + $1[label] })
        let actually = Double(matrix[label].reduce(0, +))
        let precision = predictedAs > 0 ? truePositives / predictedAs : 0
        let recall = actually > 0 ? truePositives / actually : 0
        let denominator = predictedAs + actually
        let f1 = denominator > 0 ? 2 * truePositives / denominator : 0
        return (precision, recall, f1)
    }

    private static func mean(_ values: [Double]) -> Double {
        values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
    }
}

/// Why a metric has no value for some data.
public struct UndefinedMetric: Error, Sendable, Hashable {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
}
