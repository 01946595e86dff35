import ArgumentParser
import Foundation
import WharfCore
import WharfRuntime

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Predict every row of a CSV file with a model file.",
        discussion: """
            The CSV has a header row. Columns are matched to the model's feature names when it has \
            them, else taken in order; empty and NaN cells are missing values. The output has a \
            header row and one row per input row: the positive-class probability for binary \
            models, one probability per class for multiclass, the value for regression.
            """
    )

    @Option(help: "The model file (XGBoost JSON/UBJSON, LightGBM text, Wharf linear JSON).")
    var model: String

    @Option(help: "The input CSV file.")
    var input: String

    @Option(help: "Where to write the predictions (default: standard output).")
    var output: String?

    func run() throws {
        try reportingErrors {
            let model = try loadModel(model)
            let table = try FeatureTable(csv: try readFile(input), metadata: model.metadata)
            let predictions = try model.predict(table.values, rows: table.rows)
            let width = model.metadata.output.width
            var text = model.metadata.output.columns.joined(separator: ",") + "\n"
            text.reserveCapacity(predictions.count * 20)
            for row in 0..<table.rows {
                for column in 0..<width {
                    if column > 0 { text += "," }
                    text += predictions[row * width + column].description
                }
                text += "\n"
            }
            if let output {
                guard FileManager.default.createFile(atPath: output, contents: Data(text.utf8)) else {
                    throw WharfError(.io, "cannot write \(output)")
                }
            } else {
                writeStandardOutput(text)
            }
        }
    }
}
