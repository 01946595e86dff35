import ArgumentParser
import Foundation
import WharfCore
import WharfPipelines

/// Declarative pipelines run locally: `wharf pipeline run|runs|show`.
struct PipelineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Run declarative pipelines (dataset → train → validate → register → promote, any command) with caching, retries and history.",
        subcommands: [Run.self, Watch.self, Serve.self, Runs.self, Show.self]
    )

    struct StateOptions: ParsableArguments {
        @Option(help: "Where runs, logs and the step cache are kept.") var stateDir = ".wharf/pipelines"
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a pipeline file (YAML).",
            discussion: """
                Steps run in dependency order, each as a process with its retries and timeout. A step \
                whose definition and inputs (by content) are unchanged since it last succeeded is taken \
                from the cache. A failed step (a gate that does not hold included) ends the run. Exit \
                status: 0 succeeded, 1 a step failed, 2 the file is wrong.
                """
        )
        @Argument(help: "The pipeline file.") var file: String
        @OptionGroup var state: StateOptions
        @Option(help: "Registry URL for register, validate and promote steps (WHARF_REGISTRY_URL).") var registry: String?
        @Option(help: "Registry token for those steps (WHARF_REGISTRY_TOKEN).") var token: String?
        @Option(help: "Why it runs, kept in the history: manual, drift (a monitor's hook), …") var trigger = "manual"
        @Flag(help: "Print the run as JSON.") var json = false

        func run() throws {
            var outcome: PipelineRunner.Run?
            try reportingErrors {
                let definition = try PipelineDefinition.load(file: file)
                outcome = try Self.runner(file: file, state: state.stateDir, registry: registry, token: token).run(definition, trigger: trigger)
            }
            guard let outcome else { return }
            if json {
                writeStandardOutput(try encodeJSON(outcome) + "\n")
            } else {
                writeStandardOutput(describe(outcome))
            }
            if outcome.outcome != "succeeded" { throw ExitCode(1) }
        }

        static func runner(file: String, state: String, registry: String?, token: String?) throws -> PipelineRunner {
            var environment: [String: String] = [:]
            if let registry { environment["WHARF_REGISTRY_URL"] = registry }
            if let token { environment["WHARF_REGISTRY_TOKEN"] = token }
            return PipelineRunner(stateDirectory: state, executable: try wharfExecutable(),
                                  baseDirectory: URL(fileURLWithPath: file).deletingLastPathComponent().path, environment: environment)
        }

        static func wharfExecutable() throws -> String {
            let path = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
            guard FileManager.default.isExecutableFile(atPath: path) else { throw WharfError(.io, "cannot find the wharf executable") }
            return path
        }
    }

    struct Runs: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the recorded runs.")
        @OptionGroup var state: StateOptions

        func run() throws {
            try reportingErrors {
                let runs = try PipelineRunner(stateDirectory: state.stateDir, executable: "", baseDirectory: ".").runs()
                var text = ""
                for run in runs {
                    let counts = Dictionary(grouping: run.steps, by: \.outcome).mapValues(\.count).sorted { $0.key < $1.key }
                        .map { "\($0.value) \($0.key)" }.joined(separator: ", ")
                    text += "\(run.id)  \(run.pipeline)  \(run.outcome)  (\(counts))\n"
                }
                writeStandardOutput(text.isEmpty ? "no runs in \(state.stateDir)\n" : text)
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one run: its steps, outputs, metrics and logs.")
        @Argument(help: "The run id.") var id: String
        @OptionGroup var state: StateOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            try reportingErrors {
                guard let found = try PipelineRunner(stateDirectory: state.stateDir, executable: "", baseDirectory: ".").runs().first(where: { $0.id == id }) else {
                    throw WharfError(.notFound, "no run \(id) in \(state.stateDir)")
                }
                writeStandardOutput(json ? try encodeJSON(found) + "\n" : describe(found))
            }
        }
    }
}

private func describe(_ run: PipelineRunner.Run) -> String {
    var text = "run \(run.id) of \(run.pipeline): \(run.outcome)\n"
    for step in run.steps {
        text += "  \(step.name): \(step.outcome)"
        if step.attempts > 1 { text += " after \(step.attempts) attempts" }
        if step.outcome != "skipped" { text += String(format: " (%.2f s)", step.seconds) }
        if let error = step.error { text += " — \(error)" }
        text += "\n"
        for (name, artifact) in step.outputs.sorted(by: { $0.key < $1.key }) {
            text += "      \(name): \(artifact.path) (sha256 \(artifact.sha256.prefix(12))…)\n"
        }
        for (name, value) in (step.metrics ?? [:]).sorted(by: { $0.key < $1.key }) where value.isFinite {
            text += "      \(name) = \(String(format: "%.6g", value))\n"
        }
        if let log = step.log, step.outcome == "failed" { text += "      log: \(log)\n" }
    }
    return text
}
