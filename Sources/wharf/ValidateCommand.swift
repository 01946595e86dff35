import ArgumentParser
import Foundation
import WharfClient
import WharfCore
import WharfRuntime

struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Validate a model offline on a labelled CSV, against metric gates and the production model.",
        discussion: """
            Metrics (as scikit-learn computes them): binary and multiclass roc_auc, pr_auc (average \
            precision), log_loss, accuracy, precision, recall, f1 (binary at p > 0.5; multiclass \
            macro-averaged) and the confusion matrix; regression rmse, mae, r2, mape. \
            Exit status: 0 when every gate holds, 1 when one fails (the output says which and by how \
            much), 2 on an error. A registered model's result is stored on its version, with the \
            data's fingerprint.
            """
    )

    @Option(help: "A model file, NAME@VERSION or NAME@ALIAS (from the registry).")
    var model: String

    @Option(help: "The validation CSV (header row; the label column and the model's features).")
    var data: String

    @Option(help: "The label column.")
    var label: String

    @Option(help: "A gate, METRIC>=NUMBER (or <=, >, <, ==). Repeatable; all must hold.")
    var gate: [String] = []

    @Option(help: "Also require no worse metrics than the version this alias points at (champion/challenger).")
    var against: String?

    @Option(help: "The registered model a FILE candidate is compared with (for --against).")
    var name: String?

    @Flag(help: "Do not store the result on the registered version.")
    var noRecord = false

    @Flag(help: "Print a JSON object.")
    var json = false

    @OptionGroup var options: RegistryOptions

    struct Output: Encodable {
        var model: String
        var task: String
        var rows: Int
        var data: DatasetFingerprint
        var metrics: [String: Double]
        var undefined: [String: String]
        var confusionMatrix: [[Int]]?
        var gates: [GateOutcome]
        var passed: Bool
        var against: Champion?
        var recorded: Bool

        struct Champion: Encodable {
            var reference: String
            var metrics: [String: Double]
        }

        enum CodingKeys: String, CodingKey {
            case model, task, rows, data, metrics, undefined, gates, passed, against, recorded
            case confusionMatrix = "confusion_matrix"
        }

        /// The metrics at the top level too (`{"roc_auc": …, "gates": …}`), as scripts read them.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(model, forKey: .model)
            try container.encode(task, forKey: .task)
            try container.encode(rows, forKey: .rows)
            try container.encode(data, forKey: .data)
            try container.encode(metrics, forKey: .metrics)
            try container.encode(undefined, forKey: .undefined)
            try container.encodeIfPresent(confusionMatrix, forKey: .confusionMatrix)
            try container.encode(gates, forKey: .gates)
            try container.encode(passed, forKey: .passed)
            try container.encodeIfPresent(against, forKey: .against)
            try container.encode(recorded, forKey: .recorded)
            var top = encoder.container(keyedBy: MetricKey.self)
            for (name, value) in metrics { try top.encode(value, forKey: MetricKey(stringValue: name)) }
        }
    }

    struct MetricKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func run() async throws {
        var failed = false
        try await reportingErrors {
            let client = options.client
            let reference = try ModelReference(parsing: model)
            let candidate: Model
            var registered: ModelVersion?
            if let reference {
                let version = try await client.resolve(reference)
                candidate = try ModelLoader.load(bytes: try await client.downloadArtifact(of: version))
                registered = version
            } else {
                candidate = try loadModel(model)
            }
            let csv = try readFile(data)
            let dataset = try ValidationData(csv: csv, metadata: candidate.metadata, labelColumn: label)
            let task = candidate.metadata.task
            let gates = try gate.map { text throws(WharfError) -> Gate in
                let parsed = try Gate(parsing: text)
                try parsed.check(for: task)
                return parsed
            }
            let report = try ModelValidation.report(model: candidate, data: dataset.table)
            var outcomes = gates.map { $0.evaluate(report) }
            var champion: Output.Champion?
            if let against {
                guard let name = reference?.name ?? name else {
                    throw WharfError(.invalidInput, "--against needs the registered model's name: validate NAME@VERSION, or give --name for a file")
                }
                let championVersion = try await client.resolve(ModelReference(name: name, selector: .alias(against)))
                let championModel = try ModelLoader.load(bytes: try await client.downloadArtifact(of: championVersion))
                let championData = try ValidationData(csv: csv, metadata: championModel.metadata, labelColumn: label)
                let championReport = try ModelValidation.report(model: championModel, data: championData.table)
                let label = "\(against) (\(name)@\(championVersion.version))"
                let compared = gates.isEmpty ? [task == .regression ? "rmse" : "roc_auc"] : Array(Set(gates.map(\.metric))).sorted()
                outcomes += compared.map { Gate.noWorse($0, candidate: report, champion: championReport, championName: label) }
                champion = Output.Champion(reference: "\(name)@\(championVersion.version)", metrics: championReport.values)
            }
            let passed = outcomes.allSatisfy(\.passed)
            var recorded = false
            if let registered, !noRecord {
                let record = ValidationRecord(
                    data: dataset.fingerprint,
                    metrics: report.values,
                    gates: outcomes,
                    passed: passed, against: champion?.reference)
                _ = try await client.addValidation(registered.name, registered.version, record)
                recorded = true
            }
            let output = Output(
                model: registered.map { "\($0.name)@\($0.version)" } ?? model, task: task.rawValue, rows: report.rows,
                data: dataset.fingerprint, metrics: report.values, undefined: report.undefined, confusionMatrix: report.confusionMatrix,
                gates: outcomes, passed: passed, against: champion, recorded: recorded)
            writeStandardOutput(json ? try encodeJSON(output) : Self.text(output))
            failed = !passed
        }
        if failed { throw ExitCode(1) }
    }

    static func text(_ output: Output) -> String {
        var text = "\(output.model): \(output.task), \(output.rows) rows (data sha256 \(output.data.sha256.prefix(12))…)\n"
        for (name, value) in output.metrics.sorted(by: { $0.key < $1.key }) { text += "  \(name) = \(value)\n" }
        for (name, why) in output.undefined.sorted(by: { $0.key < $1.key }) { text += "  \(name): undefined (\(why))\n" }
        if let matrix = output.confusionMatrix {
            text += "  confusion matrix (rows: true class, columns: predicted):\n"
            for row in matrix { text += "    " + row.map(String.init).joined(separator: "\t") + "\n" }
        }
        for outcome in output.gates { text += "  \(outcome.passed ? "PASS" : "FAIL") \(outcome.gate): \(outcome.detail)\n" }
        text += output.passed ? "all gates hold" : "a gate failed"
        text += output.recorded ? " (recorded in the registry)\n" : "\n"
        return text
    }
}
