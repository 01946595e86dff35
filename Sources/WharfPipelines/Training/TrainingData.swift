import Foundation
import WharfCore
import WharfRuntime

/// A labelled CSV read for training: every column but the label is a feature (named by the
/// header), empty and NaN cells are missing values.
public struct TrainingData: Sendable {
    public var featureNames: [String]
    public var rows: Int
    /// Row-major `rows × featureNames.count`.
    public var values: [Double]
    public var labels: [Double]

    public var featureCount: Int { featureNames.count }

    public init(featureNames: [String], values: [Double], labels: [Double]) throws(WharfError) {
        guard !featureNames.isEmpty else { throw WharfError(.invalidInput, "training data needs at least one feature") }
        guard values.count == labels.count * featureNames.count else {
            throw WharfError(.invalidInput, "\(values.count) values do not make \(labels.count) rows of \(featureNames.count) features")
        }
        // Infinity would become a split threshold or a weight that no model file can hold.
        if let bad = values.firstIndex(where: \.isInfinite) {
            let row = bad / featureNames.count, column = featureNames[bad % featureNames.count]
            throw WharfError(.invalidInput, "row \(row + 1) (line \(row + 2)), column \(column): \(values[bad]) is not a finite number (leave the cell empty for a missing value)")
        }
        self.featureNames = featureNames
        self.values = values
        self.labels = labels
        rows = labels.count
    }

    /// Reads `bytes` (a CSV with a header row) with `label` as the label column.
    /// `features`, when given, fixes the feature columns and their order (a validation set
    /// must have the training set's features).
    /// `ignore`: columns that are neither the label nor features (an id, a timestamp).
    public init(csv bytes: [UInt8], label: String, features: [String]? = nil, ignore: [String] = []) throws(WharfError) {
        let header = try CSVRecords.read(Array(bytes.prefix { $0 != 0x0A })).first ?? []
        let names = header.map { $0.trimmingCharacters(in: [" ", "\t", "\r", "\u{FEFF}"]) }
        guard names.contains(label) else {
            throw WharfError(.invalidInput, "the CSV has no label column \"\(label)\" (its columns: \(names.prefix(8).joined(separator: ", "))\(names.count > 8 ? ", …" : ""))")
        }
        for column in ignore where !names.contains(column) {
            throw WharfError(.invalidInput, "the CSV has no column \"\(column)\" to ignore")
        }
        let featureNames = features ?? names.filter { $0 != label && !ignore.contains($0) }
        let metadata = ModelMetadata(format: .wharfLinear, task: .regression, objective: "training", featureCount: featureNames.count,
                                     featureNames: featureNames, classes: [], output: .standard(kind: .value, classCount: 0),
                                     treeCount: 0, maxDepth: 0)
        let table = try FeatureTable(csv: bytes, metadata: metadata, labelColumn: label)
        guard table.rows > 0 else { throw WharfError(.invalidInput, "the training data has no rows") }
        try self.init(featureNames: featureNames, values: table.values, labels: table.labels)
    }

    /// The classes of a classification task: labels must be whole numbers 0…K-1 (binary: 0
    /// and 1); returns K.
    func classCount(for task: ModelTask) throws(WharfError) -> Int {
        switch task {
        case .regression: return 0
        case .binary:
            guard let bad = labels.firstIndex(where: { $0 != 0 && $0 != 1 }) else { return 2 }
            throw WharfError(.invalidInput, "row \(bad + 1): a binary label must be 0 or 1, not \(labels[bad])")
        case .multiclass:
            if let bad = labels.firstIndex(where: { $0 < 0 || $0 != $0.rounded() || $0 > 10_000 }) {
                throw WharfError(.invalidInput, "row \(bad + 1): a multiclass label must be a class index 0, 1, 2…, not \(labels[bad])")
            }
            let count = Int(labels.max() ?? 0) + 1
            guard count >= 2 else { throw WharfError(.invalidInput, "multiclass training needs at least two classes") }
            return count
        }
    }
}
