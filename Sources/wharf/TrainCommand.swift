import ArgumentParser
import Foundation
import WharfCore
import WharfPipelines
import WharfRuntime

/// Native training: a model file the runtime (and `wharf serve`) reads, from a labelled CSV.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a model natively on a labelled CSV and write a model file.",
        discussion: """
            --algorithm gbdt: histogram gradient boosted trees written as XGBoost JSON (xgboost and \
            wharf serve load it). Parameters (XGBoost's names, LightGBM's accepted): num_rounds (100), \
            learning_rate (0.1), max_depth (6; 0 = none), grow_policy depthwise|lossguide, max_leaves \
            (lossguide: 31), lambda (1), alpha (0), min_child_weight (1), gamma (0), subsample (1), \
            colsample_bytree (1), max_bin (255), min_data_in_bin (3), early_stopping_rounds (with \
            --valid), nthread. Deterministic for a --seed, whatever the thread count.
            --algorithm linear: L2-regularized least squares, logistic or softmax regression fitted by \
            L-BFGS on standardized features (the standardization is recorded in the model; a missing \
            value stands for the feature's mean). Parameters: l2 (0.001, on the mean loss), max_iter \
            (500), tol (1e-7).
            Labels: 0/1 for binary, 0…K-1 for multiclass. Every column but the label is a feature. \
            With --valid, the model's metrics on that set are printed (the same metrics as wharf validate).
            """
    )

    @Option(help: "The training CSV (with a header row).") var data: String
    @Option(help: "The label column.") var label: String
    @Option(help: "binary, multiclass or regression.") var task: String
    @Option(help: "gbdt or linear.") var algorithm = "gbdt"
    @Option(help: "A validation CSV with the same columns: its metrics are reported.") var valid: String?
    @Option(parsing: .singleValue, help: "A column that is not a feature (an id, a timestamp); repeatable or comma-separated.")
    var ignore: [String] = []
    @Option(name: .customLong("param"), help: "An algorithm parameter, key=value (repeatable).") var parameters: [String] = []
    @Option(help: "Seed of the row and column sampling (gbdt; linear training is deterministic).") var seed: UInt64 = 0
    @Option(help: "Where to write the model.") var out: String
    @Flag(help: "Print a JSON summary.") var json = false

    struct Summary: Encodable {
        var algorithm: String
        var task: String
        var rows: Int
        var features: Int
        var iterations: Int
        /// The final training loss (linear) or best validation loss (gbdt with --valid).
        var loss: Double?
        var converged: Bool
        /// Reading the CSV files.
        var readSeconds: Double
        /// Fitting (binning included), after the data was read.
        var trainSeconds: Double
        var validation: [String: Double]?
        var model: String
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    func run() throws {
        try reportingErrors {
            guard let task = ModelTask(rawValue: task) else { throw WharfError(.invalidInput, "--task must be binary, multiclass or regression") }
            var settings: [String: String] = [:]
            for parameter in parameters {
                guard let equals = parameter.firstIndex(of: "="), equals != parameter.startIndex else {
                    throw WharfError(.invalidInput, "--param \(parameter): write key=value")
                }
                settings[String(parameter[..<equals])] = String(parameter[parameter.index(after: equals)...])
            }
            guard algorithm == "linear" || algorithm == "gbdt" else {
                throw WharfError(.invalidInput, "--algorithm must be gbdt or linear")
            }
            let start = ContinuousClock.now
            let ignored = ignore.flatMap { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
            let training = try TrainingData(csv: try readFile(data), label: label, ignore: ignored)
            let validationData = algorithm == "gbdt" ? try valid.map { try TrainingData(csv: try readFile($0), label: label, features: training.featureNames) } : nil
            let read = ContinuousClock.now - start
            let modelBytes: [UInt8]
            var iterations = 0
            var loss = Double.nan
            var converged = true
            if algorithm == "gbdt" {
                let fitted = try GBDTTrainer(task: task, parameters: settings, seed: seed).fit(training, validation: validationData)
                modelBytes = fitted.model
                iterations = fitted.bestRound + 1
                // The validation loss of the model written (its last round, or the best one when it stopped early).
                loss = fitted.validationHistory.indices.contains(fitted.bestRound) ? fitted.validationHistory[fitted.bestRound] : .nan
            } else {
                let fitted = try LinearTrainer(task: task, parameters: settings).fit(training)
                modelBytes = fitted.model
                iterations = fitted.iterations
                loss = fitted.loss
                converged = fitted.converged
            }
            let elapsed = ContinuousClock.now - start
            // Read back before it is written: a file that would not load never reaches --out.
            let model: Model
            do {
                model = try ModelLoader.load(bytes: modelBytes)
            } catch {
                throw WharfError(.internalError, "the trained model does not load back, so it was not written: \((error as? WharfError)?.message ?? "\(error)")")
            }
            try writeFileAtomically(out, modelBytes)

            var validation: [String: Double]?
            if let valid {
                let table = try FeatureTable(csv: try readFile(valid), metadata: model.metadata, labelColumn: label)
                validation = try ModelValidation.report(model: model, data: table).values
            }
            let summary = Summary(
                algorithm: algorithm, task: task.rawValue, rows: training.rows, features: training.featureCount, iterations: iterations,
                loss: loss.isFinite ? loss : nil, converged: converged,
                readSeconds: Self.seconds(read), trainSeconds: Self.seconds(elapsed - read), validation: validation, model: out)
            if json {
                writeStandardOutput(try encodeJSON(summary) + "\n")
                return
            }
            var text = "trained \(algorithm) \(task.rawValue) on \(training.rows) rows × \(training.featureCount) features in \(String(format: "%.2f", summary.trainSeconds)) s (+ \(String(format: "%.2f", summary.readSeconds)) s reading): "
            text += algorithm == "gbdt" ? "\(iterations) rounds" : "\(iterations) iterations, loss \(String(format: "%.6g", loss))"
            text += "\(converged ? "" : " (not converged: raise max_iter)") → \(out)\n"
            for (name, value) in (validation ?? [:]).sorted(by: { $0.key < $1.key }) where value.isFinite {
                text += "  validation \(name): \(String(format: "%.6g", value))\n"
            }
            writeStandardOutput(text)
        }
    }
}
