import ArgumentParser
import Foundation
import WharfCore
import WharfRuntime

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure in-process prediction speed on synthetic rows (or a CSV).",
        discussion: """
            Each of --threads threads evaluates --rows rows in calls of --batch rows. Synthetic \
            rows are drawn around the model's own split thresholds with about 2% missing values.
            """
    )

    @Option(help: "The model file.")
    var model: String

    @Option(help: "Rows evaluated by each thread.")
    var rows: Int = 1_000_000

    @Option(help: "Rows per predict call.")
    var batch: Int = 1024

    @Option(help: "Threads predicting at once.")
    var threads: Int = 1

    @Option(help: "Evaluate the rows of this CSV instead of synthetic rows.")
    var input: String?

    @Option(help: "Seed of the synthetic rows.")
    var seed: UInt64 = 42

    @Flag(help: "Print a JSON object with rows_per_second and micros_per_call.")
    var json = false

    func run() throws {
        try reportingErrors {
            // Checked before the synthetic rows are made from them (a negative count traps, a
            // huge batch asks for batch × features doubles).
            guard (1...1_000_000).contains(batch), (1...256).contains(threads), rows >= batch, rows <= 1_000_000_000 else {
                throw WharfError(.invalidInput, "need 1 ≤ --batch ≤ 1000000, 1 ≤ --threads ≤ 256 and --batch ≤ --rows ≤ 1000000000")
            }
            let model = try loadModel(model)
            let data: [Double]
            if let input {
                data = try FeatureTable(csv: try readFile(input), metadata: model.metadata).values
            } else {
                data = PredictionBenchmark.syntheticRows(for: model, count: max(batch, min(rows, 65_536)), seed: seed)
            }
            let benchmark = PredictionBenchmark(rows: rows, batch: batch, threads: threads, seed: seed)
            let result = try benchmark.run(model: model, input: data)
            if json {
                writeStandardOutput(try encodeJSON(result))
            } else {
                let rate = Int(result.rowsPerSecond.rounded())
                writeStandardOutput(
                    """
                    model: \(self.model) (\(model.metadata.format.rawValue), \(model.metadata.treeCount) trees, depth \(model.metadata.maxDepth))
                    rows: \(result.rows)  batch: \(batch)  threads: \(threads)
                    rows per second: \(rate)
                    microseconds per call: \(String(format: "%.3f", result.microsPerCall))

                    """
                )
            }
        }
    }
}
