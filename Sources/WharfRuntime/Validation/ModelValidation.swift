import WharfCore

/// A labelled CSV read for validation: features for the model, labels, and the fingerprint.
public struct ValidationData: Sendable {
    public var table: FeatureTable
    public var fingerprint: DatasetFingerprint

    public init(csv bytes: [UInt8], metadata: ModelMetadata, labelColumn: String) throws(WharfError) {
        table = try FeatureTable(csv: bytes, metadata: metadata, labelColumn: labelColumn)
        var reader = CSVReader(bytes: bytes)
        let columns = reader.next()?.fields.count ?? 0
        fingerprint = DatasetFingerprint(sha256: SHA256.hash(bytes).hex, rows: table.rows, columns: columns)
    }
}

public enum ModelValidation {
    /// The model's metrics on `data`, by its task: what it predicts must be probabilities for a
    /// classifier and values for a regressor.
    public static func report(model: Model, data: FeatureTable) throws(WharfError) -> MetricReport {
        let metadata = model.metadata
        guard data.labels.count == data.rows else {
            throw WharfError(.invalidInput, "validation data needs a label for every row")
        }
        let predictions = try model.predict(data.values, rows: data.rows)
        switch (metadata.task, metadata.output.kind) {
        case (.binary, .probability):
            return try Metrics.binary(labels: data.labels, scores: predictions)
        case (.multiclass, .probabilities):
            return try Metrics.multiclass(labels: data.labels, probabilities: predictions, classes: metadata.output.width)
        case (.regression, .value):
            return try Metrics.regression(labels: data.labels, predictions: predictions)
        case (_, let kind):
            throw WharfError(
                .unsupportedModel,
                "this \(metadata.task.rawValue) model (objective \(metadata.objective)) outputs \(kind.rawValue), but validation needs \(metadata.task == .regression ? "values" : "class probabilities")")
        }
    }
}

extension DatasetFingerprint {
    /// The fingerprint of a CSV file with a header row: its bytes' SHA-256, its records and
    /// its header's columns (training data in lineage, say, read without a model).
    public static func of(csv bytes: [UInt8]) -> DatasetFingerprint {
        var reader = CSVReader(bytes: bytes)
        let columns = reader.next()?.fields.count ?? 0
        var rows = 0
        while reader.next() != nil { rows += 1 }
        return DatasetFingerprint(sha256: SHA256.hash(bytes).hex, rows: rows, columns: columns)
    }
}
