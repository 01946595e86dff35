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
            --algorithm linear: L2-regularized least squares, logistic or softmax regression fitted by \
            L-BFGS on standardized features (the standardization is recorded in the model; a missing \
            value stands for the feature's mean). Parameters: l2 (default 0.001, on the mean loss), \
            max_iter (500), tol (1e-7). Labels: 0/1 for binary, 0…K-1 for multiclass. Every column \
            but the label is a feature. With --valid, the model's metrics on that set are printed \
            (the same metrics as wharf validate). --algorithm gbdt is not available yet.
            """
    )

    @Option(help: "The training CSV (with a header row).") var data: String
    @Option(help: "The label column.") var label: String
    @Option(help: "binary, multiclass or regression.") var task: String
    @Option(help: "linear (gbdt: not yet).") var algorithm = "linear"
    @Option(help: "A validation CSV with the same columns: its metrics are reported.") var valid: String?
    @Option(name: .customLong("param"), help: "An algorithm parameter, key=value (repeatable).") var parameters: [String] = []
    @Option(help: "Seed for algorithms that draw at random (linear training is deterministic).") var seed: UInt64 = 0
    @Option(help: "Where to write the model.") var out: String
    @Flag(help: "Print a JSON summary.") var json = false

    struct Summary: Encodable {
        var algorithm: String
        var task: String
        var rows: Int
        var features: Int
        var iterations: Int
        var trainingLoss: Double
        var converged: Bool
        var seconds: Double
        var validation: [String: Double]?
        var model: String
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
            guard algorithm == "linear" else {
                throw WharfError(.unsupportedModel, "--algorithm \(algorithm) is not available: only linear is implemented so far")
            }
            let start = ContinuousClock.now
            let training = try TrainingData(csv: try readFile(data), label: label)
            let fitted = try LinearTrainer(task: task, parameters: settings).fit(training)
            let elapsed = ContinuousClock.now - start
            try writeFileAtomically(out, fitted.model)

            var validation: [String: Double]?
            if let valid {
                let model = try ModelLoader.load(bytes: fitted.model)
                let table = try FeatureTable(csv: try readFile(valid), metadata: model.metadata, labelColumn: label)
                validation = try ModelValidation.report(model: model, data: table).values
            }
            let summary = Summary(
                algorithm: algorithm, task: task.rawValue, rows: training.rows, features: training.featureCount, iterations: fitted.iterations,
                trainingLoss: fitted.loss, converged: fitted.converged,
                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, validation: validation, model: out)
            if json {
                writeStandardOutput(try encodeJSON(summary) + "\n")
                return
            }
            var text = "trained \(algorithm) \(task.rawValue) on \(training.rows) rows × \(training.featureCount) features in \(String(format: "%.2f", summary.seconds)) s: "
            text += "\(fitted.iterations) iterations, loss \(String(format: "%.6g", fitted.loss))\(fitted.converged ? "" : " (not converged: raise max_iter)") → \(out)\n"
            for (name, value) in (validation ?? [:]).sorted(by: { $0.key < $1.key }) where value.isFinite {
                text += "  validation \(name): \(String(format: "%.6g", value))\n"
            }
            writeStandardOutput(text)
        }
    }
}
