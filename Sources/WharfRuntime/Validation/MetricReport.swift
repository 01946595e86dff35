import WharfCore

/// The metrics of one model on one validation dataset.
public struct MetricReport: Sendable, Hashable, Codable {
    public var task: ModelTask
    public var rows: Int
    /// Metric name → value.
    public var values: [String: Double] = [:]
    /// Metrics that have no value for this data, with the reason (as scikit-learn refuses them).
    public var undefined: [String: String] = [:]
    /// Classification only: counts[true class][predicted class].
    public var confusionMatrix: [[Int]]?

    public init(task: ModelTask, rows: Int) {
        self.task = task
        self.rows = rows
    }

    mutating func record(_ metric: String, _ result: Result<Double, UndefinedMetric>) {
        switch result {
        case .success(let value): values[metric] = value
        case .failure(let why): undefined[metric] = why.reason
        }
    }

    enum CodingKeys: String, CodingKey {
        case task, rows, values, undefined
        case confusionMatrix = "confusion_matrix"
    }
}
