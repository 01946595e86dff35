import WharfCore

/// A loaded model: immutable, thread-safe, and able to predict a batch of rows.
///
/// Load one with ``ModelLoader``. Inputs are a contiguous row-major matrix of
/// `rows × metadata.featureCount` doubles, NaN meaning missing; outputs are
/// `rows × metadata.output.width` doubles, the values the originating library's `predict`
/// returns. Evaluation allocates nothing per row.
///
/// ```swift
/// let model = try ModelLoader.load(path: "model.json")
/// let probabilities = try model.predict([0.1, 2.5, .nan], rows: 1)
/// ```
public final class Model: Sendable {
    public let metadata: ModelMetadata
    let evaluator: Evaluator

    enum Evaluator: Sendable {
        case xgboost(XGBoostEvaluator)
        case lightgbm(LightGBMEvaluator)
        case linear(LinearModel)
    }

    init(metadata: ModelMetadata, evaluator: Evaluator) {
        self.metadata = metadata
        self.evaluator = evaluator
    }

    /// Predicts `rows` rows from `input` into `output`, which must hold exactly
    /// `rows × metadata.output.width` values.
    public func predict(
        _ input: UnsafeBufferPointer<Double>,
        rows: Int,
        into output: UnsafeMutableBufferPointer<Double>
    ) throws(WharfError) {
        let width = metadata.output.width
        guard rows >= 0, input.count == rows * metadata.featureCount else {
            throw WharfError(.invalidInput, "expected \(rows) rows of \(metadata.featureCount) features (\(rows * metadata.featureCount) values), got \(input.count) values")
        }
        guard output.count == rows * width else {
            throw WharfError(.invalidInput, "the output buffer holds \(output.count) values, expected \(rows * width)")
        }
        guard rows > 0, let inputBase = input.baseAddress, let outputBase = output.baseAddress else { return }
        switch evaluator {
        case .xgboost(let evaluator): evaluator.predict(input: inputBase, rows: rows, output: outputBase, outputWidth: width)
        case .lightgbm(let evaluator): evaluator.predict(input: inputBase, rows: rows, output: outputBase, outputWidth: width)
        case .linear(let model): model.predict(input: inputBase, rows: rows, output: outputBase, outputWidth: width)
        }
    }

    /// Predicts `rows` rows of a row-major matrix and returns `rows × metadata.output.width` values.
    public func predict(_ input: [Double], rows: Int) throws(WharfError) -> [Double] {
        var output = [Double](repeating: 0, count: max(rows, 0) * metadata.output.width)
        try input.withUnsafeBufferPointer { input throws(WharfError) in
            try output.withUnsafeMutableBufferPointer { output throws(WharfError) in
                try predict(input, rows: rows, into: output)
            }
        }
        return output
    }

    /// Every numeric split threshold per feature (empty for linear models); benchmarks draw
    /// synthetic rows from these so that every branch is exercised.
    public func splitThresholds() -> [[Double]] {
        switch evaluator {
        case .xgboost(let evaluator): evaluator.forest.thresholds()
        case .lightgbm(let evaluator): evaluator.forest.thresholds()
        case .linear(let model): Array(repeating: [], count: model.featureCount)
        }
    }
}
