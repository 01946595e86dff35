import ArgumentParser
import Foundation
import WharfClient
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
        @Option(help: "Where logs and the step cache are kept (and the runs, without a registry).") var stateDir = ".wharf/pipelines"
        @Option(help: "Registry URL (WHARF_REGISTRY_URL): register, validate and promote steps use it, and runs are recorded in its database.")
        var registry: String?

        var registryURL: String? { registry ?? ProcessInfo.processInfo.environment["WHARF_REGISTRY_URL"] }

        /// The registry's database when there is a registry, else `<state-dir>/runs`.
        func history(token: String?) -> any RunHistory {
            guard let url = registryURL else { return DirectoryRunHistory(stateDirectory: stateDir) }
            return RegistryRunHistory(client: RegistryClient(baseURL: url, token: token ?? ProcessInfo.processInfo.environment["WHARF_REGISTRY_TOKEN"],
                                                             actor: "wharf-pipeline"))
        }

        var place: String { registryURL.map { "the registry at \($0)" } ?? stateDir }
    }

    struct Run: AsyncParsableCommand {
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
        @Option(help: "Registry token (WHARF_REGISTRY_TOKEN).") var token: String?
        @Option(help: "Gateway URL for deploy steps (WHARF_GATEWAY_URL).") var gateway: String?
        @Option(help: "Gateway API key with the deploy scope, for deploy steps (WHARF_API_KEY).") var gatewayKey: String?
        @Option(help: "Why it runs, kept in the history: manual, drift (a monitor's hook), …") var trigger = "manual"
        @Flag(help: "Print the run as JSON.") var json = false

        func run() async throws {
            var outcome: PipelineRunner.Run?
            try await reportingErrors {
                let definition = try PipelineDefinition.load(file: file)
                outcome = try await Self.runner(file: file, state: state, token: token, gateway: gateway, gatewayKey: gatewayKey)
                    .run(definition, trigger: trigger)
            }
            guard let outcome else { return }
            if json {
                writeStandardOutput(try encodeJSON(outcome) + "\n")
            } else {
                writeStandardOutput(describe(outcome))
            }
            if outcome.outcome != "succeeded" { throw ExitCode(1) }
        }

        static func runner(file: String, state: StateOptions, token: String?, gateway: String?, gatewayKey: String?) throws -> PipelineRunner {
            var environment: [String: String] = [:]
            if let registry = state.registry { environment["WHARF_REGISTRY_URL"] = registry }
            if let token { environment["WHARF_REGISTRY_TOKEN"] = token }
            if let gateway { environment["WHARF_GATEWAY_URL"] = gateway }
            if let gatewayKey { environment["WHARF_API_KEY"] = gatewayKey }
            return PipelineRunner(stateDirectory: state.stateDir, executable: try wharfExecutable(),
                                  baseDirectory: URL(fileURLWithPath: file).deletingLastPathComponent().path, environment: environment,
                                  history: state.history(token: token))
        }

        static func wharfExecutable() throws -> String {
            let path = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
            guard FileManager.default.isExecutableFile(atPath: path) else { throw WharfError(.io, "cannot find the wharf executable") }
            return path
        }
    }

    struct Runs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the recorded runs, oldest first.")
        @OptionGroup var state: StateOptions
        @Option(help: "Registry token, when it protects reads (WHARF_REGISTRY_TOKEN).") var token: String?
        @Option(help: "Only this pipeline's runs.") var pipeline: String?
        @Option(help: "The newest this many.") var limit = 100

        func run() async throws {
            try await reportingErrors {
                let runs = try await state.history(token: token).runs(pipeline: pipeline, limit: limit)
                var text = ""
                for run in runs {
                    let counts = Dictionary(grouping: run.steps, by: \.outcome).mapValues(\.count).sorted { $0.key < $1.key }
                        .map { "\($0.value) \($0.key)" }.joined(separator: ", ")
                    text += "\(run.id)  \(run.pipeline)  \(run.outcome)  (\(counts))\n"
                }
                writeStandardOutput(text.isEmpty ? "no runs in \(state.place)\n" : text)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one run: its steps, outputs, metrics and the end of failed steps' logs.")
        @Argument(help: "The run id.") var id: String
        @OptionGroup var state: StateOptions
        @Option(help: "Registry token, when it protects reads (WHARF_REGISTRY_TOKEN).") var token: String?
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await reportingErrors {
                guard let found = try await state.history(token: token).run(id: id) else {
                    throw WharfError(.notFound, "no run \(id) in \(state.place)")
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
        if step.outcome == "failed" {
            if let log = step.log { text += "      log: \(log)\n" }
            if let tail = step.logTail {
                let lines = tail.split(separator: "\n", omittingEmptySubsequences: false).suffix(20)
                text += lines.map { "      | \($0)\n" }.joined()
            }
        }
    }
    return text
}
