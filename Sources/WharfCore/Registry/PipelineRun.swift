import Foundation

/// One run of a pipeline as recorded in the registry's database (and, without a registry, in
/// the runner's state directory): its steps in order, each with its outcome, attempts,
/// duration, outputs, metrics and the tail of its log. Saved as the run progresses, so a run in
/// progress is visible with `outcome: running`.
public struct PipelineRun: Sendable, Hashable, Codable {
    public struct Step: Sendable, Hashable, Codable {
        public var name: String
        /// succeeded, cached, failed or skipped.
        public var outcome: String
        public var attempts: Int
        public var seconds: Double
        /// Output name → file (in the runner's cache) and its SHA-256.
        public var outputs: [String: Artifact]
        public var cacheKey: String?
        /// Where the whole log is, on the machine that ran the step.
        public var log: String?
        /// The end of the log (at most ``Step/logTailLimit`` bytes), so the record explains a
        /// failure wherever it is read.
        public var logTail: String?
        public var error: String?
        /// A validate step's metrics.
        public var metrics: [String: Double]?

        public static let logTailLimit = 16 * 1024

        public init(name: String, outcome: String, attempts: Int, seconds: Double, outputs: [String: Artifact],
                    cacheKey: String? = nil, log: String? = nil, logTail: String? = nil, error: String? = nil, metrics: [String: Double]? = nil) {
            self.name = name
            self.outcome = outcome
            self.attempts = attempts
            self.seconds = seconds
            self.outputs = outputs
            self.cacheKey = cacheKey
            self.log = log
            self.logTail = logTail
            self.error = error
            self.metrics = metrics
        }

        enum CodingKeys: String, CodingKey {
            case name, outcome, attempts, seconds, outputs, log, error, metrics
            case cacheKey = "cache_key"
            case logTail = "log_tail"
        }
    }

    public struct Artifact: Sendable, Hashable, Codable {
        public var path: String
        public var sha256: String

        public init(path: String, sha256: String) {
            self.path = path
            self.sha256 = sha256
        }
    }

    public var id: String
    public var pipeline: String
    public var startedAt: Date
    public var finishedAt: Date?
    /// running, succeeded or failed.
    public var outcome: String
    /// manual, schedule, new-data: …, drift, api.
    public var trigger: String
    public var steps: [Step]

    public static let outcomes: Set<String> = ["running", "succeeded", "failed"]
    public static let stepOutcomes: Set<String> = ["succeeded", "cached", "failed", "skipped"]
    /// With ``Step/logTailLimit`` this keeps a record under the registry's 4 MiB body limit.
    public static let maxSteps = 200
    public static let maxRecordBytes = 4 << 20

    public init(id: String, pipeline: String, startedAt: Date, finishedAt: Date? = nil, outcome: String, trigger: String, steps: [Step]) {
        self.id = id
        self.pipeline = pipeline
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.outcome = outcome
        self.trigger = trigger
        self.steps = steps
    }

    enum CodingKeys: String, CodingKey {
        case id, pipeline, outcome, trigger, steps
        case startedAt = "started_at"
        case finishedAt = "finished_at"
    }

    /// The record, or an error naming the field that cannot be stored.
    public func validated() throws(WharfError) -> PipelineRun {
        try RegistryName.check(id, kind: "run")
        try RegistryName.check(pipeline, kind: "pipeline")
        guard Self.outcomes.contains(outcome) else {
            throw WharfError(.invalidInput, "outcome: \"\(outcome)\" is not one of \(Self.outcomes.sorted().joined(separator: ", "))")
        }
        guard trigger.utf8.count <= 256 else { throw WharfError(.invalidInput, "trigger: at most 256 bytes") }
        guard steps.count <= Self.maxSteps else { throw WharfError(.invalidInput, "steps: at most \(Self.maxSteps)") }
        for (index, step) in steps.enumerated() {
            guard !step.name.isEmpty, step.name.utf8.count <= 128 else {
                throw WharfError(.invalidInput, "steps[\(index)].name: 1 to 128 bytes")
            }
            guard Self.stepOutcomes.contains(step.outcome) else {
                throw WharfError(.invalidInput, "steps[\(index)].outcome: \"\(step.outcome)\" is not one of \(Self.stepOutcomes.sorted().joined(separator: ", "))")
            }
            guard step.attempts >= 0, step.seconds >= 0, step.seconds.isFinite else {
                throw WharfError(.invalidInput, "steps[\(index)]: attempts and seconds cannot be negative")
            }
            guard (step.logTail?.utf8.count ?? 0) <= Step.logTailLimit else {
                throw WharfError(.invalidInput, "steps[\(index)].log_tail: at most \(Step.logTailLimit) bytes")
            }
            for (name, artifact) in step.outputs {
                do {
                    try RegistryName.checkDigest(artifact.sha256)
                } catch {
                    throw WharfError(.invalidInput, "steps[\(index)].outputs.\(name).sha256: \(error.message)")
                }
            }
            if let metrics = step.metrics, let bad = metrics.first(where: { !$0.value.isFinite }) {
                throw WharfError(.invalidInput, "steps[\(index)].metrics.\(bad.key) is not a finite number")
            }
        }
        return self
    }
}
