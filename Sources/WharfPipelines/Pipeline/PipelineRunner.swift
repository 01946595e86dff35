#if canImport(Glibc)
import Glibc
#endif
import Foundation
import WharfCore

/// Runs a pipeline step by step in dependency order, each step as a process (the `wharf`
/// executable for native steps), with retries and a timeout per step.
///
/// A step whose definition and input contents are unchanged since a successful run is taken
/// from the cache (`<state>/cache/<key>/`, the key a SHA-256 of both) instead of run again. A
/// failed step — a gate that does not hold, a program that fails or outlives its timeout after
/// its retries — ends the run; the steps after it are skipped, so nothing downstream (register,
/// deploy) sees an unvalidated model. Every run is recorded in its ``RunHistory`` (the
/// registry's database, or `<state>/runs/`) with each step's outcome, attempts, duration,
/// outputs, metrics and the end of its log; whole logs stay in `<state>/runs/<id>/`.
public struct PipelineRunner: Sendable {
    public var stateDirectory: String
    /// The `wharf` executable native steps run.
    public var executable: String
    /// Where relative file names in the pipeline are found (the pipeline file's directory).
    public var baseDirectory: String
    /// Added to the steps' environment (WHARF_REGISTRY_URL, WHARF_REGISTRY_TOKEN…).
    public var environment: [String: String]
    /// Where runs are recorded: the registry's database when there is a registry, else the
    /// state directory.
    public var history: any RunHistory

    static let trainerRevision = 1

    public init(stateDirectory: String, executable: String, baseDirectory: String, environment: [String: String] = [:],
                history: (any RunHistory)? = nil) {
        // Absolute: a command runs in the pipeline's directory and is handed paths under it.
        self.stateDirectory = Self.absolute(stateDirectory)
        self.executable = executable
        self.baseDirectory = Self.absolute(baseDirectory)
        self.environment = environment
        self.history = history ?? DirectoryRunHistory(stateDirectory: stateDirectory)
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : URL(fileURLWithPath: path).standardizedFileURL.path
    }

    public typealias Run = PipelineRun
    public typealias StepRun = PipelineRun.Step
    public typealias Artifact = PipelineRun.Artifact

    /// Runs every step; the run is recorded when it starts, after each step, and when it ends.
    /// Only the first and the last record must be written (the last is retried): a history that
    /// hiccups mid-run does not stop a run that is otherwise going well.
    public func run(_ pipeline: PipelineDefinition, trigger: String = "manual", id: String = PipelineRunner.runID()) async throws -> Run {
        let ordered = try pipeline.order()
        let runDirectory = "\(stateDirectory)/runs/\(id)"
        try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
        var run = Run(id: id, pipeline: pipeline.name, startedAt: Date(), finishedAt: nil, outcome: "running", trigger: trigger, steps: [])
        try await history.save(run)
        var produced: [String: [String: Artifact]] = [:]
        var failed = false
        for step in ordered {
            if failed {
                run.steps.append(StepRun(name: step.name, outcome: "skipped", attempts: 0, seconds: 0, outputs: [:]))
                continue
            }
            let inputs = produced
            var record = await Self.offThread { execute(step, produced: inputs, runDirectory: runDirectory) }
            record.logTail = record.log.flatMap(Self.tail)
            produced[step.name] = record.outputs
            failed = record.outcome == "failed"
            run.steps.append(record)
            try? await history.save(run)
        }
        run.finishedAt = Date()
        run.outcome = failed ? "failed" : "succeeded"
        for attempt in 1...3 {
            do {
                try await history.save(run)
                break
            } catch where attempt < 3 {
                try? await Task.sleep(for: .seconds(attempt))
            }
        }
        return run
    }

    /// Steps wait on processes: they block a thread of their own, never the concurrency pool's.
    private static func offThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: work()) }.start()
        }
    }

    /// The end of a log, whole lines where possible, within the record's limit.
    static func tail(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        let limit = UInt64(StepRun.logTailLimit)
        try? handle.seek(toOffset: size > limit ? size - limit : 0)
        guard let data = try? handle.readToEnd(), !data.isEmpty else { return nil }
        var text = Substring(String(decoding: data, as: UTF8.self))
        // Undecodable bytes become U+FFFD, three bytes each: trim again to the limit.
        while text.utf8.count > StepRun.logTailLimit { text = text.dropFirst(max(1, (text.utf8.count - StepRun.logTailLimit) / 3)) }
        if size > limit, let newline = text.firstIndex(of: "\n") { text = text[text.index(after: newline)...] }
        return String(text)
    }

    // MARK: - One step

    private func execute(_ step: PipelineDefinition.Step, produced: [String: [String: Artifact]], runDirectory: String) -> StepRun {
        let started = Date()
        var record = StepRun(name: step.name, outcome: "failed", attempts: 0, seconds: 0, outputs: [:])
        do {
            // Inputs: what each reference and each plain file holds, by content.
            let resolve = { (text: String) throws -> String in try self.resolve(text, produced: produced) }
            let key = try cacheKey(step, resolve: resolve, produced: produced)
            record.cacheKey = key
            let cache = "\(stateDirectory)/cache/\(key)"
            var cacheable = true
            switch step.action {
            // Its content lives in the hub, not in the key.
            case .hubDataset: cacheable = false
            // The champion an alias names can move between runs: compared again each time.
            case .validate(let validate) where validate.against != nil: cacheable = false
            default: break
            }
            if cacheable, let cached = try? Data(contentsOf: URL(fileURLWithPath: cache + "/outputs.json")),
               let outputs = try? JSONDecoder().decode([String: Artifact].self, from: cached),
               outputs.values.allSatisfy({ FileManager.default.fileExists(atPath: $0.path) }) {
                record.outcome = "cached"
                record.outputs = outputs
                record.metrics = try? JSONDecoder().decode([String: Double].self, from: Data(contentsOf: URL(fileURLWithPath: cache + "/metrics.json")))
                record.seconds = Date().timeIntervalSince(started)
                return record
            }
            let work = "\(cache).partial-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: work) }
            let log = "\(runDirectory)/\(step.name).log"
            record.log = log
            guard FileManager.default.createFile(atPath: log, contents: nil) else { throw WharfError(.io, "cannot write \(log)") }
            var lastError = "did not run"
            for attempt in 1...(step.retries + 1) {
                record.attempts = attempt
                let (arguments, outputs) = try plan(step, resolve: resolve, work: work)
                if case .dataset(let csv) = step.action {
                    try FileManager.default.copyItem(atPath: try resolve(csv), toPath: outputs["csv"]!)
                } else {
                    // A command runs where the pipeline file is: the files it names are found as
                    // the rest of the pipeline's are (and are in its cache key).
                    var directory: String?
                    if case .command = step.action { directory = baseDirectory }
                    let result = try Self.runProcess(arguments, timeout: step.timeoutSeconds, log: log, attempt: attempt, environment: environment,
                                                     directory: directory)
                    if case .validate = step.action, result.status == 1 {
                        // Gates that do not hold are an answer, not a flaky failure: no retry.
                        record.metrics = Self.metrics(result.output)
                        record.error = "a gate does not hold: \(Self.failedGates(result.output))"
                        record.seconds = Date().timeIntervalSince(started)
                        return record
                    }
                    if case .deploy = step.action, result.status == 1 {
                        // So is a canary the gateway rolled back on live figures.
                        record.error = "the canary was rolled back: \(Self.rollbackReason(result.output))"
                        record.seconds = Date().timeIntervalSince(started)
                        return record
                    }
                    // A program that exits 0 on SIGTERM still ran out of time: its outputs may
                    // be partial, and are not cached.
                    guard result.status == 0, !result.timedOut else {
                        lastError = result.timedOut ? "timed out after \(step.timeoutSeconds ?? 0) s" : "exited with status \(result.status)"
                        continue
                    }
                    // Steps that answer on standard output keep the answer as their output.
                    switch step.action {
                    case .validate:
                        record.metrics = Self.metrics(result.output)
                        try result.output.write(to: URL(fileURLWithPath: outputs["report"]!))
                    case .register:
                        try result.output.write(to: URL(fileURLWithPath: outputs["version"]!))
                    case .promote:
                        try result.output.write(to: URL(fileURLWithPath: outputs["promotion"]!))
                    case .deploy:
                        try result.output.write(to: URL(fileURLWithPath: outputs["rollout"]!))
                    default:
                        break
                    }
                }
                guard let missing = outputs.first(where: { !FileManager.default.fileExists(atPath: $0.value) }) else {
                    // Done: describe the outputs in the work directory, then move it into place
                    // whole (one rename), so that an entry is either complete or absent. A step
                    // that is not cached keeps its outputs with its run: nothing another run
                    // reads is ever replaced.
                    let destination = cacheable ? cache : "\(runDirectory)/\(step.name).outputs"
                    var artifacts: [String: Artifact] = [:]
                    for (name, path) in outputs {
                        let final = destination + "/" + (path as NSString).lastPathComponent
                        artifacts[name] = Artifact(path: final, sha256: try Self.sha256(of: path))
                    }
                    if let metrics = record.metrics { try JSONEncoder().encode(metrics).write(to: URL(fileURLWithPath: work + "/metrics.json")) }
                    try JSONEncoder().encode(artifacts).write(to: URL(fileURLWithPath: work + "/outputs.json"))
                    if FileManager.default.fileExists(atPath: destination + "/outputs.json") {
                        // Another run finished the same step (same key, same inputs) meanwhile:
                        // its entry stays, ours is dropped with the work directory.
                        let existing = try JSONDecoder().decode([String: Artifact].self, from: Data(contentsOf: URL(fileURLWithPath: destination + "/outputs.json")))
                        artifacts = existing
                    } else {
                        try? FileManager.default.removeItem(atPath: destination)  // an incomplete leftover
                        do {
                            try FileManager.default.moveItem(atPath: work, toPath: destination)
                        } catch where FileManager.default.fileExists(atPath: destination + "/outputs.json") {
                            artifacts = try JSONDecoder().decode([String: Artifact].self, from: Data(contentsOf: URL(fileURLWithPath: destination + "/outputs.json")))
                        }
                    }
                    record.outputs = artifacts
                    record.outcome = "succeeded"
                    record.seconds = Date().timeIntervalSince(started)
                    return record
                }
                lastError = "did not write its output \(missing.key)"
            }
            record.error = lastError
        } catch let error as WharfError {
            record.error = error.message
        } catch {
            record.error = "\(error)"
        }
        record.seconds = Date().timeIntervalSince(started)
        return record
    }

    /// `steps.X.Y` → the artifact's path; anything else → a file relative to the pipeline.
    private func resolve(_ text: String, produced: [String: [String: Artifact]]) throws -> String {
        if text.hasPrefix("steps.") {
            let parts = text.dropFirst("steps.".count).split(separator: ".", maxSplits: 1).map(String.init)
            guard parts.count == 2, let artifact = produced[parts[0]]?[parts[1]] else {
                throw WharfError(.invalidInput, "\(text) is not available (its step did not succeed)")
            }
            return artifact.path
        }
        return text.hasPrefix("/") ? text : "\(baseDirectory)/\(text)"
    }

    /// The step's definition with every input replaced by its content hash.
    private func cacheKey(_ step: PipelineDefinition.Step, resolve: (String) throws -> String, produced: [String: [String: Artifact]]) throws -> String {
        var material = "wharf-pipeline-step-1\n\(step.name)\n\(step.canonical)\n"
        for input in step.inputs {
            if input.hasPrefix("steps.") {
                let parts = input.dropFirst("steps.".count).split(separator: ".", maxSplits: 1).map(String.init)
                material += "\(input)=\(produced[parts[0]]?[parts[1]]?.sha256 ?? "?")\n"
            } else {
                let path = try resolve(input)
                guard FileManager.default.fileExists(atPath: path) else { throw WharfError(.notFound, "step \(step.name): cannot read \(path)") }
                material += "\(input)=\(try Self.sha256(of: path))\n"
            }
        }
        switch step.action {
        case .train:
            // A change to the trainer that changes its models bumps this, so cached models are not reused.
            material += "trainer=\(Self.trainerRevision)\n"
        case .command(let arguments, _):
            // The files a command names (a script, its configuration) are part of what it
            // runs: editing one runs the step again.
            for argument in arguments where !argument.contains("{") && !argument.hasPrefix("-") {
                let path = argument.hasPrefix("/") ? argument : "\(baseDirectory)/\(argument)"
                // Regular files only (not /dev/stdin, a FIFO or a directory).
                if (try? FileManager.default.attributesOfItem(atPath: path)[.type] as? FileAttributeType) == .typeRegular {
                    material += "file \(argument)=\(try Self.sha256(of: path))\n"
                }
            }
        case .register, .promote, .deploy, .validate:
            // What they did was done in this registry: another one has none of it.
            material += "registry=\(environment["WHARF_REGISTRY_URL"] ?? "")\n"
        default:
            break
        }
        return SHA256.hash(Array(material.utf8)).hex
    }

    /// The program to run and where its outputs go.
    private func plan(_ step: PipelineDefinition.Step, resolve: (String) throws -> String, work: String) throws -> ([String], [String: String]) {
        switch step.action {
        case .dataset:
            return ([], ["csv": work + "/data.csv"])
        case .hubDataset(let dataset):
            var arguments = [executable, "dataset", "build", "--hub", dataset.hub, "--view", dataset.view, "--out", work + "/data.csv"]
            if let labels = dataset.labels { arguments += ["--labels", try resolve(labels)] }
            if let stream = dataset.labelsStream, let label = dataset.label { arguments += ["--labels-stream", stream, "--label", label] }
            if let column = dataset.entityColumn { arguments += ["--entity-column", column] }
            if let column = dataset.timeColumn { arguments += ["--time-column", column] }
            return (arguments, ["csv": work + "/data.csv"])
        case .train(let train):
            let model = work + "/model.json"
            var arguments = [executable, "train", "--data", try resolve(train.data), "--label", train.label, "--task", train.task,
                             "--algorithm", train.algorithm ?? "gbdt", "--out", model, "--seed", String(train.seed ?? 0)]
            if let valid = train.valid { arguments += ["--valid", try resolve(valid)] }
            for column in train.ignore ?? [] { arguments += ["--ignore", column] }
            for (key, value) in (train.params ?? [:]).sorted(by: { $0.key < $1.key }) { arguments += ["--param", "\(key)=\(value)"] }
            return (arguments, ["model": model])
        case .validate(let validate):
            // A registered version is validated in the registry (and the result recorded on it).
            let model = validate.model.hasSuffix(".version") ? try Self.registered(try resolve(validate.model)) : try resolve(validate.model)
            var arguments = [executable, "validate", "--model", model, "--data", try resolve(validate.data), "--label", validate.label, "--json"]
            for gate in validate.gates { arguments += ["--gate", gate] }
            if let against = validate.against { arguments += ["--against", against] }
            return (arguments, ["report": work + "/report.json"])
        case .register(let register):
            var arguments = [executable, "models", "register", register.name, "--file", try resolve(register.model), "--json"]
            if let data = register.trainingData { arguments += ["--training-data", try resolve(data)] }
            if let data = register.validationData { arguments += ["--validation-data", try resolve(data)] }
            if let revision = register.codeRevision { arguments += ["--code-revision", revision] }
            return (arguments, ["version": work + "/version.json"])
        case .promote(let promote):
            let arguments = [executable, "models", "promote", try Self.registered(try resolve(promote.version)), "--alias", promote.alias ?? "production",
                             "--reason", "pipeline run"]
            return (arguments, ["promotion": work + "/promotion.txt"])
        case .deploy(let deploy):
            let registered = try Self.registered(try resolve(deploy.version))
            guard let at = registered.lastIndex(of: "@") else { throw WharfError(.invalidInput, "\(registered) is not NAME@VERSION") }
            let arguments = [executable, "deploy", "rollout", String(registered[..<at]), "--version", String(registered[registered.index(after: at)...]),
                             "--json"] + deploy.arguments
            return (arguments, ["rollout": work + "/rollout.json"])
        case .command(let template, let outputNames):
            var outputs: [String: String] = [:]
            for name in outputNames { outputs[name] = work + "/" + name }
            let arguments = try template.map { argument in
                var text = argument
                for (name, path) in outputs { text = text.replacingOccurrences(of: "{outputs.\(name)}", with: path) }
                for reference in step.references {
                    let key = "steps.\(reference.step).\(reference.output)"
                    text = text.replacingOccurrences(of: "{\(key)}", with: try resolve(key))
                }
                return text
            }
            return (arguments, outputs)
        }
    }

    /// NAME@VERSION from a register step's output (the version as JSON).
    static func registered(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let name = object["name"] as? String, let version = object["version"] as? Int
        else { throw WharfError(.invalidInput, "\(path) is not a registered version") }
        return "\(name)@\(version)"
    }

    // MARK: - Processes

    struct ProcessResult {
        var status: Int32
        var timedOut: Bool
        var output: Data
    }

    /// Runs the program with its output appended to `log` (and kept, for reports); past the
    /// timeout it gets SIGTERM, then SIGKILL.
    static func runProcess(_ arguments: [String], timeout: Double?, log: String, attempt: Int, environment: [String: String] = [:],
                           directory: String? = nil) throws -> ProcessResult {
        let process = Process()
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        // A relative program (./export.sh) is found where the step runs, as its arguments are.
        let program = arguments[0].contains("/") && !arguments[0].hasPrefix("/") && directory != nil ? "\(directory!)/\(arguments[0])" : arguments[0]
        process.executableURL = URL(fileURLWithPath: program.contains("/") ? program : "/usr/bin/env")
        process.arguments = arguments[0].contains("/") ? Array(arguments.dropFirst()) : arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        do {
            try process.run()
        } catch {
            throw WharfError(.invalidInput, "cannot start \(arguments[0]): \(error)")
        }
        // Foundation starts the program as the leader of a process group of its own: signals
        // go to the whole group, so a shell's children (and theirs) stop with it.
        let pid = process.processIdentifier
        let target = getpgid(pid) == pid ? -pid : pid
        // Read while it runs, so a chatty program never blocks on a full pipe.
        let reader = pipe.fileHandleForReading
        let collected = DataBox()
        let readDone = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            collected.data = reader.readDataToEndOfFile()
            readDone.signal()
        }
        var timedOut = false
        if let timeout, finished.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            kill(target, SIGTERM)
            if finished.wait(timeout: .now() + 5) == .timedOut {
                kill(target, SIGKILL)
                finished.wait()
            }
        } else if timeout == nil {
            finished.wait()
        }
        // The output ends when every process holding the pipe is gone: one the program left
        // behind (in its group) is stopped rather than waited for without end.
        if readDone.wait(timeout: .now() + (timedOut ? 1 : 10)) == .timedOut {
            kill(target, SIGTERM)
            if readDone.wait(timeout: .now() + 5) == .timedOut {
                kill(target, SIGKILL)
                _ = readDone.wait(timeout: .now() + 5)
            }
        }
        if let handle = FileHandle(forWritingAtPath: log) {
            handle.seekToEndOfFile()
            handle.write(Data("--- attempt \(attempt): \(arguments.joined(separator: " "))\n".utf8))
            handle.write(collected.data)
            try? handle.close()
        }
        return ProcessResult(status: process.terminationStatus, timedOut: timedOut, output: collected.data)
    }

    /// The output, set by the reading thread: locked, since a run that gave up waiting for the
    /// end of the output reads it while that thread may still write.
    private final class DataBox: @unchecked Sendable {
        private let lock = NSLock()
        private var value = Data()
        var data: Data {
            get { lock.withLock { value } }
            set { lock.withLock { value = newValue } }
        }
    }

    static func metrics(_ output: Data) -> [String: Double]? {
        guard let text = String(data: output, encoding: .utf8), let brace = text.firstIndex(of: "{"),
              let object = try? JSONSerialization.jsonObject(with: Data(text[brace...].utf8)) as? [String: Any]
        else { return nil }
        var metrics: [String: Double] = [:]
        for (key, value) in object where !["passed", "recorded", "rows"].contains(key) {
            if let number = value as? Double { metrics[key] = number }
        }
        return metrics
    }

    static func failedGates(_ output: Data) -> String {
        guard let text = String(data: output, encoding: .utf8), let brace = text.firstIndex(of: "{"),
              let object = try? JSONSerialization.jsonObject(with: Data(text[brace...].utf8)) as? [String: Any],
              let gates = object["gates"] as? [[String: Any]]
        else { return "see the log" }
        return gates.filter { ($0["passed"] as? Bool) == false }.compactMap { $0["detail"] as? String }.joined(separator: "; ")
    }

    static func rollbackReason(_ output: Data) -> String {
        guard let text = String(data: output, encoding: .utf8), let brace = text.firstIndex(of: "{"),
              let object = try? JSONSerialization.jsonObject(with: Data(text[brace...].utf8)) as? [String: Any]
        else { return "see the log" }
        return object["reason"] as? String ?? "no reason given"
    }

    static func sha256(of path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw WharfError(.notFound, "cannot read \(path)") }
        return SHA256.hash([UInt8](data)).hex
    }

    /// The start time to the millisecond, then six random hex digits: ids sort as runs started,
    /// which also orders runs that started within one second (the API's times are whole seconds).
    public static func runID() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "yyyyMMdd-HHmmss-SSS"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date()) + "-" + UUID().uuidString.prefix(6).lowercased()
    }

    public func runs() async throws -> [Run] {
        try await history.runs(pipeline: nil, limit: 1000)
    }
}
