import ArgumentParser
import Foundation
import WharfClient
import WharfCore
import WharfRuntime

/// Batch scoring: every row of a CSV of any size, in constant memory, on all cores.
struct ScoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Score every row of a CSV file of any size with a model file or a registry version.",
        discussion: """
            --model is a model file, or NAME@VERSION / NAME@ALIAS from the registry (--registry; the \
            artifact is checked against its sha256). Columns are matched to the model's feature names \
            when it has them, else taken in order; empty and NaN cells are missing values. The output \
            has the --keep columns (an id, say) and then the model's output columns; it appears only \
            when every row was scored. Memory stays bounded (about threads × 2 chunks) whatever the \
            input size.
            """
    )

    @Option(help: "A model file, or NAME@VERSION / NAME@ALIAS in the registry.") var model: String
    @Option(help: "The input CSV file (with a header row).") var input: String
    @Option(help: "Where to write the scores (CSV).") var output: String
    @Option(help: "Threads (default: the machine's cores).") var threads: Int?
    @Option(parsing: .singleValue, help: "A column to copy to the output, e.g. an id (repeatable, or comma-separated).")
    var keep: [String] = []
    @Option(help: "Input bytes a thread takes at a time.") var chunkBytes = 256 << 10
    @OptionGroup var registry: RegistryOptions
    @Flag(help: "Print a JSON summary (rows, seconds, rows_per_second).") var json = false

    struct Summary: Encodable {
        var rows: Int
        var seconds: Double
        var rowsPerSecond: Double
        var inputBytes: Int
        var model: String
    }

    func run() async throws {
        try await reportingErrors {
            guard threads.map({ $0 >= 1 && $0 <= 256 }) ?? true else { throw WharfError(.invalidInput, "--threads must be between 1 and 256") }
            let start = ContinuousClock.now
            let (loaded, described) = try await loadScoringModel()
            let scorer = BatchScorer(threads: threads ?? ProcessInfo.processInfo.activeProcessorCount, chunkBytes: chunkBytes,
                                     keep: keep.flatMap { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } })
            let result = try scorer.score(model: loaded, input: input, output: output)
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let summary = Summary(rows: result.rows, seconds: seconds, rowsPerSecond: Double(result.rows) / max(seconds, 1e-9),
                                  inputBytes: result.inputBytes, model: described)
            if json {
                writeStandardOutput(try encodeJSON(summary) + "\n")
            } else {
                FileHandle.standardError.write(Data(String(format: "scored %d rows with %@ in %.2f s (%.0f rows/s) → %@\n",
                                                           summary.rows, described, seconds, summary.rowsPerSecond, output).utf8))
            }
        }
    }

    /// The model: a file when one is there, else a registry reference.
    private func loadScoringModel() async throws -> (Model, String) {
        if FileManager.default.fileExists(atPath: model) || !model.contains("@") {
            return (try loadModel(model), model)
        }
        let client = registry.client
        let version = try await client.resolve(try parseReference(model))
        let bytes = try await client.downloadArtifact(of: version)
        return (try ModelLoader.load(bytes: bytes), "\(version.name)@\(version.version)")
    }
}
