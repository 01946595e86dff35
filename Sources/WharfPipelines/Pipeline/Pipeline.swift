import Foundation
import WharfCore
import WharfRuntime

/// A declarative pipeline: named steps whose inputs name files or other steps' outputs
/// (`steps.NAME.OUTPUT`), forming a DAG.
///
/// ```yaml
/// name: churn
/// steps:
///   - name: data
///     dataset: {csv: data/train.csv}
///   - name: train
///     train: {data: steps.data.csv, label: churned, task: binary, algorithm: gbdt, params: {max_depth: 4}}
///     retries: 1
///     timeout_seconds: 600
///   - name: check
///     validate: {model: steps.train.model, data: data/valid.csv, label: churned, gates: ["roc_auc>=0.9"]}
///   - name: ship
///     deploy: {version: steps.register.version, replicas: [http://10.0.0.7:9001], steps: [10, 50, 100], interval: 30s}
///   - name: report
///     command: [sh, -c, "wc -l {steps.data.csv} > {outputs.summary}"]
///     outputs: [summary]
/// ```
public struct PipelineDefinition: Sendable, Decodable {
    public var name: String
    public var steps: [Step]

    enum CodingKeys: String, CodingKey, CaseIterable { case name, steps }

    public init(from decoder: any Decoder) throws {
        try UnknownKeys.refuse(decoder, CodingKeys.self, in: "the pipeline")
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        steps = try container.decode([Step].self, forKey: .steps)
    }

    public struct Step: Sendable, Decodable, Hashable {
        public var name: String
        public var action: Action
        public var retries: Int
        public var timeoutSeconds: Double?

        public enum Action: Sendable, Hashable {
            /// A CSV file taken into the run (content-addressed): output `csv`.
            case dataset(csv: String)
            /// A point-in-time training set from the hub (`wharf dataset build`): output `csv`.
            /// Never cached (the hub's log grows); steps that read it are, when it comes out the same.
            case hubDataset(HubDataset)
            /// `wharf train`: output `model`.
            case train(Train)
            /// `wharf validate` with gates: output `report`; a failed gate fails the run.
            case validate(Validate)
            /// Any program; `{steps.X.Y}`, `{outputs.Y}` in its arguments are replaced by paths.
            case command(arguments: [String], outputs: [String])
            /// `wharf models register`: output `version` (the registered version, as JSON).
            case register(Register)
            /// `wharf models promote`: moves an alias to a registered version; output `promotion`.
            case promote(Promote)
            /// `wharf deploy rollout`: a canary through the gateway, then the production alias;
            /// output `rollout`. A canary the gateway rolls back fails the step (and the run).
            case deploy(Deploy)
        }

        /// A registered version rolled out through the gateway (``Rollout``).
        public struct Deploy: Sendable, Hashable, Decodable {
            /// A register step's `version`.
            public var version: String
            /// The candidate replicas (servers following NAME@candidate_alias).
            public var replicas: [String]
            public var productionReplicas: [String]?
            public var candidateAlias: String?
            public var alias: String?
            /// Traffic percentages, like [5, 25, 50, 100].
            public var steps: [Double]?
            /// Time per step: 30s, 2m.
            public var interval: String?
            /// 1% or 0.01.
            public var maxErrorRate: String?
            public var maxP99Ms: Double?
            public var minRequests: Int?
            /// How long replicas get to load the version.
            public var wait: String?

            enum CodingKeys: String, CodingKey, CaseIterable {
                case version, replicas, alias, steps, interval, wait
                case productionReplicas = "production_replicas"
                case candidateAlias = "candidate_alias"
                case maxErrorRate = "max_error_rate"
                case maxP99Ms = "max_p99_ms"
                case minRequests = "min_requests"
            }

            public init(from decoder: any Decoder) throws {
                try UnknownKeys.refuse(decoder, CodingKeys.self, in: "deploy")
                let container = try decoder.container(keyedBy: CodingKeys.self)
                version = try container.decode(String.self, forKey: .version)
                replicas = try container.decode([String].self, forKey: .replicas)
                productionReplicas = try container.decodeIfPresent([String].self, forKey: .productionReplicas)
                candidateAlias = try container.decodeIfPresent(String.self, forKey: .candidateAlias)
                alias = try container.decodeIfPresent(String.self, forKey: .alias)
                steps = try container.decodeIfPresent([Double].self, forKey: .steps)
                interval = try container.decodeIfPresent(Scalar.self, forKey: .interval)?.text
                maxErrorRate = try container.decodeIfPresent(Scalar.self, forKey: .maxErrorRate)?.text
                maxP99Ms = try container.decodeIfPresent(Double.self, forKey: .maxP99Ms)
                minRequests = try container.decodeIfPresent(Int.self, forKey: .minRequests)
                wait = try container.decodeIfPresent(Scalar.self, forKey: .wait)?.text
            }

            /// `wharf deploy rollout`'s options.
            var arguments: [String] {
                var arguments = ["--replicas", replicas.joined(separator: ",")]
                if let productionReplicas { arguments += ["--production-replicas", productionReplicas.joined(separator: ",")] }
                if let candidateAlias { arguments += ["--candidate-alias", candidateAlias] }
                if let alias { arguments += ["--alias", alias] }
                if let steps { arguments += ["--steps", steps.map { $0 == $0.rounded() ? String(Int($0)) : String($0) }.joined(separator: ",")] }
                if let interval { arguments += ["--interval", interval] }
                if let maxErrorRate { arguments += ["--max-error-rate", maxErrorRate] }
                if let maxP99Ms { arguments += ["--max-p99-ms", String(maxP99Ms)] }
                if let minRequests { arguments += ["--min-requests", String(minRequests)] }
                if let wait { arguments += ["--wait", wait] }
                return arguments
            }
        }

        public struct HubDataset: Sendable, Hashable, Decodable {
            public var hub: String
            public var view: String
            /// The labels: a CSV file (or a step's output)…
            public var labels: String?
            /// …or the events of a hub stream, `label` naming the field.
            public var labelsStream: String?
            public var label: String?
            public var entityColumn: String?
            public var timeColumn: String?

            enum CodingKeys: String, CodingKey {
                case hub, view, labels, label
                case labelsStream = "labels_stream"
                case entityColumn = "entity_column"
                case timeColumn = "time_column"
            }
        }

        public struct Register: Sendable, Hashable, Decodable {
            public var model: String
            public var name: String
            public var trainingData: String?
            public var validationData: String?
            public var codeRevision: String?

            enum CodingKeys: String, CodingKey, CaseIterable {
                case model, name
                case trainingData = "training_data"
                case validationData = "validation_data"
                case codeRevision = "code_revision"
            }

            public init(from decoder: any Decoder) throws {
                try UnknownKeys.refuse(decoder, CodingKeys.self, in: "register")
                let container = try decoder.container(keyedBy: CodingKeys.self)
                model = try container.decode(String.self, forKey: .model)
                name = try container.decode(String.self, forKey: .name)
                trainingData = try container.decodeIfPresent(String.self, forKey: .trainingData)
                validationData = try container.decodeIfPresent(String.self, forKey: .validationData)
                codeRevision = try container.decodeIfPresent(String.self, forKey: .codeRevision)
            }
        }

        public struct Promote: Sendable, Hashable, Decodable {
            public var version: String
            public var alias: String?

            enum CodingKeys: String, CodingKey, CaseIterable { case version, alias }

            public init(from decoder: any Decoder) throws {
                try UnknownKeys.refuse(decoder, CodingKeys.self, in: "promote")
                let container = try decoder.container(keyedBy: CodingKeys.self)
                version = try container.decode(String.self, forKey: .version)
                alias = try container.decodeIfPresent(String.self, forKey: .alias)
            }
        }

        public struct Train: Sendable, Hashable, Decodable {
            public var data: String
            public var label: String
            public var task: String
            public var algorithm: String?
            public var valid: String?
            public var params: [String: String]?
            public var seed: UInt64?
            /// Columns that are not features (an id, a timestamp).
            public var ignore: [String]?

            enum CodingKeys: String, CodingKey, CaseIterable { case data, label, task, algorithm, valid, params, seed, ignore }

            public init(from decoder: any Decoder) throws {
                try UnknownKeys.refuse(decoder, CodingKeys.self, in: "train")
                let container = try decoder.container(keyedBy: CodingKeys.self)
                data = try container.decode(String.self, forKey: .data)
                label = try container.decode(String.self, forKey: .label)
                task = try container.decode(String.self, forKey: .task)
                algorithm = try container.decodeIfPresent(String.self, forKey: .algorithm)
                valid = try container.decodeIfPresent(String.self, forKey: .valid)
                seed = try container.decodeIfPresent(UInt64.self, forKey: .seed)
                ignore = try container.decodeIfPresent([String].self, forKey: .ignore)
                // `max_depth: 4` in YAML is a number; parameters are passed on as text.
                params = try container.decodeIfPresent([String: Scalar].self, forKey: .params)?.mapValues(\.text)
            }
        }

        /// A parameter value written as a number, a boolean or text.
        struct Scalar: Decodable {
            var text: String
            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let flag = try? container.decode(Bool.self) {
                    text = String(flag)
                } else if let number = try? container.decode(Double.self) {
                    text = number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
                } else {
                    text = try container.decode(String.self)
                }
            }
        }

        /// The step's definition in one stable spelling (for its cache key).
        var canonical: String {
            switch action {
            case .dataset(let csv): return "dataset csv=\(csv)"
            case .hubDataset(let dataset):
                return "dataset hub=\(dataset.hub) view=\(dataset.view) labels=\(dataset.labels ?? "") labels_stream=\(dataset.labelsStream ?? "") label=\(dataset.label ?? "") entity=\(dataset.entityColumn ?? "") time=\(dataset.timeColumn ?? "")"
            case .train(let train):
                let params = (train.params ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
                return "train data=\(train.data) label=\(train.label) task=\(train.task) algorithm=\(train.algorithm ?? "gbdt") valid=\(train.valid ?? "") seed=\(train.seed ?? 0) params=\(params) ignore=\((train.ignore ?? []).joined(separator: ","))"
            case .validate(let validate):
                return "validate model=\(validate.model) data=\(validate.data) label=\(validate.label) gates=\(validate.gates.joined(separator: ";")) against=\(validate.against ?? "")"
            case .register(let register):
                return "register model=\(register.model) name=\(register.name) training=\(register.trainingData ?? "") validation=\(register.validationData ?? "") code=\(register.codeRevision ?? "")"
            case .promote(let promote):
                return "promote version=\(promote.version) alias=\(promote.alias ?? "production")"
            case .deploy(let deploy):
                return "deploy version=\(deploy.version) \(deploy.arguments.joined(separator: " "))"
            case .command(let arguments, let outputs):
                return "command \(arguments.map { "[\($0)]" }.joined()) outputs=\(outputs.joined(separator: ","))"
            }
        }

        public struct Validate: Sendable, Hashable, Decodable {
            /// A model file (a step's `model`), or a registered version (a `register` step's
            /// `version`): then the result is recorded on it, as promotion requires.
            public var model: String
            public var data: String
            public var label: String
            public var gates: [String]
            /// Champion/challenger: no worse than this alias's version on every gated metric.
            public var against: String?

            enum CodingKeys: String, CodingKey, CaseIterable { case model, data, label, gates, against }

            public init(from decoder: any Decoder) throws {
                try UnknownKeys.refuse(decoder, CodingKeys.self, in: "validate")
                let container = try decoder.container(keyedBy: CodingKeys.self)
                model = try container.decode(String.self, forKey: .model)
                data = try container.decode(String.self, forKey: .data)
                label = try container.decode(String.self, forKey: .label)
                gates = try container.decode([String].self, forKey: .gates)
                against = try container.decodeIfPresent(String.self, forKey: .against)
            }
        }

        enum CodingKeys: String, CodingKey, CaseIterable {
            case name, dataset, train, validate, command, outputs, retries, register, promote, deploy
            case timeoutSeconds = "timeout_seconds"
        }

        /// `{csv: FILE}`, or `{hub: URL, view: V, labels: FILE | labels_stream: S + label: F, entity_column: C, time_column: T}`.
        struct DatasetSpec: Decodable {
            var csv: String?
            var hub: String?
            var view: String?
            var labels: String?
            var labels_stream: String?
            var label: String?
            var entity_column: String?
            var time_column: String?

            enum CodingKeys: String, CodingKey, CaseIterable { case csv, hub, view, labels, labels_stream, label, entity_column, time_column }

            init(from decoder: any Decoder) throws {
                try UnknownKeys.refuse(decoder, CodingKeys.self, in: "dataset")
                let container = try decoder.container(keyedBy: CodingKeys.self)
                csv = try container.decodeIfPresent(String.self, forKey: .csv)
                hub = try container.decodeIfPresent(String.self, forKey: .hub)
                view = try container.decodeIfPresent(String.self, forKey: .view)
                labels = try container.decodeIfPresent(String.self, forKey: .labels)
                labels_stream = try container.decodeIfPresent(String.self, forKey: .labels_stream)
                label = try container.decodeIfPresent(String.self, forKey: .label)
                entity_column = try container.decodeIfPresent(String.self, forKey: .entity_column)
                time_column = try container.decodeIfPresent(String.self, forKey: .time_column)
            }
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decode(String.self, forKey: .name)
            try UnknownKeys.refuse(decoder, CodingKeys.self, in: "step \(name)")
            retries = try container.decodeIfPresent(Int.self, forKey: .retries) ?? 0
            timeoutSeconds = try container.decodeIfPresent(Double.self, forKey: .timeoutSeconds)
            var actions: [Action] = []
            if let dataset = try container.decodeIfPresent(DatasetSpec.self, forKey: .dataset) {
                if let csv = dataset.csv, dataset.hub == nil {
                    actions.append(.dataset(csv: csv))
                } else if dataset.csv == nil, let hub = dataset.hub, let view = dataset.view,
                          (dataset.labels != nil) != (dataset.labels_stream != nil), (dataset.labels_stream != nil) == (dataset.label != nil) {
                    actions.append(.hubDataset(HubDataset(hub: hub, view: view, labels: dataset.labels, labelsStream: dataset.labels_stream, label: dataset.label,
                                                          entityColumn: dataset.entity_column, timeColumn: dataset.time_column)))
                } else {
                    throw DecodingError.dataCorruptedError(
                        forKey: .dataset, in: container,
                        debugDescription: "step \(name): a dataset is {csv: FILE}, {hub: URL, view: V, labels: FILE} or {hub: URL, view: V, labels_stream: S, label: FIELD}")
                }
            }
            if let train = try container.decodeIfPresent(Train.self, forKey: .train) { actions.append(.train(train)) }
            if let validate = try container.decodeIfPresent(Validate.self, forKey: .validate) { actions.append(.validate(validate)) }
            if let register = try container.decodeIfPresent(Register.self, forKey: .register) { actions.append(.register(register)) }
            if let promote = try container.decodeIfPresent(Promote.self, forKey: .promote) { actions.append(.promote(promote)) }
            if let deploy = try container.decodeIfPresent(Deploy.self, forKey: .deploy) { actions.append(.deploy(deploy)) }
            if let command = try container.decodeIfPresent([String].self, forKey: .command) {
                actions.append(.command(arguments: command, outputs: try container.decodeIfPresent([String].self, forKey: .outputs) ?? []))
            }
            guard actions.count == 1 else {
                throw DecodingError.dataCorruptedError(forKey: .name, in: container,
                                                       debugDescription: "step \(name) needs exactly one of dataset, train, validate, register, promote, deploy, command")
            }
            action = actions[0]
        }

        /// What can be checked before anything runs, so that a mistake is a file error naming
        /// the step and the field, not a failure after training and registering.
        func checkFields() throws(WharfError) {
            switch action {
            case .train(let train):
                guard ["binary", "multiclass", "regression"].contains(train.task) else {
                    throw WharfError(.invalidInput, "step \(name): train.task must be binary, multiclass or regression, not \"\(train.task.prefix(40))\"")
                }
                if let algorithm = train.algorithm, !["gbdt", "linear"].contains(algorithm) {
                    throw WharfError(.invalidInput, "step \(name): train.algorithm must be gbdt or linear, not \"\(algorithm.prefix(40))\"")
                }
            case .validate(let validate):
                // No gate and no champion: nothing could fail, and the step would always pass.
                guard !validate.gates.isEmpty || validate.against != nil else {
                    throw WharfError(.invalidInput, "step \(name): validate needs gates, against, or both: with neither it could never fail")
                }
                for (index, gate) in validate.gates.enumerated() {
                    do {
                        _ = try Gate(parsing: gate)
                    } catch {
                        throw WharfError(.invalidInput, "step \(name): validate.gates[\(index)]: \(error.message)")
                    }
                }
            default:
                break
            }
        }

        /// The outputs the step makes.
        public var outputNames: [String] {
            switch action {
            case .dataset, .hubDataset: ["csv"]
            case .train: ["model"]
            case .validate: ["report"]
            case .register: ["version"]
            case .promote: ["promotion"]
            case .deploy: ["rollout"]
            case .command(_, let outputs): outputs
            }
        }

        /// What the step reads, as written: files and `steps.X.Y` (a command: its references).
        public var inputs: [String] {
            switch action {
            case .dataset(let csv): [csv]
            case .hubDataset(let dataset): dataset.labels.map { [$0] } ?? []
            case .train(let train): [train.data] + (train.valid.map { [$0] } ?? [])
            case .validate(let validate): [validate.model, validate.data]
            case .register(let register): [register.model] + [register.trainingData, register.validationData].compactMap { $0 }
            case .promote(let promote): [promote.version]
            case .deploy(let deploy): [deploy.version]
            case .command: references.map { "steps.\($0.step).\($0.output)" }
            }
        }

        /// Every `steps.X.Y` the step reads (in its fields or its command's arguments).
        public var references: [(step: String, output: String)] {
            let texts: [String]
            if case .command(let arguments, _) = action { texts = arguments } else { texts = inputs }
            var found: [(String, String)] = []
            for text in texts {
                var rest = Substring(text)
                while let range = rest.range(of: "steps.") {
                    let after = rest[range.upperBound...]
                    let token = after.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }
                    let parts = token.split(separator: ".", maxSplits: 1)
                    if parts.count == 2 { found.append((String(parts[0]), String(parts[1].prefix { $0 != "." && $0 != "}" }))) }
                    rest = after.dropFirst(token.count)
                }
            }
            return found
        }
    }

    public static func load(file: String) throws -> PipelineDefinition {
        guard let data = FileManager.default.contents(atPath: file) else { throw WharfError(.notFound, "cannot read \(file)") }
        let definition = try YAMLReader.parse(String(decoding: data, as: UTF8.self), file: file).decode(PipelineDefinition.self, from: file)
        _ = try definition.order()
        return definition
    }

    /// The steps in an order where each comes after those it reads; errors name unknown
    /// references, duplicate names and cycles.
    public func order() throws(WharfError) -> [Step] {
        try RegistryName.check(name, kind: "pipeline")
        var byName: [String: Step] = [:]
        for step in steps {
            try RegistryName.check(step.name, kind: "step")
            guard byName.updateValue(step, forKey: step.name) == nil else { throw WharfError(.invalidInput, "pipeline \(name): two steps are named \(step.name)") }
            guard step.retries >= 0, step.retries <= 10 else { throw WharfError(.invalidInput, "step \(step.name): retries must be 0…10") }
            if let timeout = step.timeoutSeconds, !(timeout > 0) { throw WharfError(.invalidInput, "step \(step.name): timeout_seconds must be above 0") }
            try step.checkFields()
        }
        for step in steps {
            for reference in step.references {
                guard let source = byName[reference.step] else {
                    throw WharfError(.invalidInput, "step \(step.name) reads steps.\(reference.step).\(reference.output), but there is no step \(reference.step)")
                }
                guard source.outputNames.contains(reference.output) else {
                    throw WharfError(.invalidInput, "step \(step.name) reads steps.\(reference.step).\(reference.output), but \(reference.step) makes only \(source.outputNames.joined(separator: ", "))")
                }
            }
        }
        var ordered: [Step] = []
        var state: [String: Int] = [:]  // 1 visiting, 2 done
        func visit(_ step: Step, path: [String]) throws(WharfError) {
            if state[step.name] == 2 { return }
            guard state[step.name] != 1 else { throw WharfError(.invalidInput, "pipeline \(name) has a cycle: \((path + [step.name]).joined(separator: " → "))") }
            state[step.name] = 1
            for reference in step.references { try visit(byName[reference.step]!, path: path + [step.name]) }
            state[step.name] = 2
            ordered.append(step)
        }
        for step in steps { try visit(step, path: []) }
        return ordered
    }
}
