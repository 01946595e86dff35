import Foundation

// The registry's vocabulary, shared by the registry service, its clients (the `wharf models`
// commands, `wharf serve --registry`) and the OpenAPI document (docs/registry-openapi.yaml).
// JSON keys are snake_case on the wire.

/// What a model reads and writes, as registered.
public struct ModelSignature: Sendable, Hashable, Codable {
    /// Feature names in input order (`f0`, `f1`, … when the file has none).
    public var features: [String]
    /// Per-feature type: "numeric" or "categorical".
    public var featureTypes: [String]
    /// Output column names (`probability`, `probability_0`, …, `prediction`).
    public var outputs: [String]

    public init(features: [String], featureTypes: [String], outputs: [String]) {
        self.features = features
        self.featureTypes = featureTypes
        self.outputs = outputs
    }

    enum CodingKeys: String, CodingKey {
        case features, outputs
        case featureTypes = "feature_types"
    }
}

/// The bytes of a model version, by content.
public struct ArtifactReference: Sendable, Hashable, Codable {
    public var sha256: String
    public var size: Int

    public init(sha256: String, size: Int) {
        self.sha256 = sha256
        self.size = size
    }
}

/// What identifies a dataset in lineage and validations: its bytes' SHA-256 and its size, so
/// that "validated on the registered validation set" can be checked later.
public struct DatasetFingerprint: Sendable, Hashable, Codable {
    public var sha256: String
    public var rows: Int
    public var columns: Int

    public init(sha256: String, rows: Int, columns: Int) {
        self.sha256 = sha256
        self.rows = rows
        self.columns = columns
    }
}

/// Where a model version came from.
public struct Lineage: Sendable, Hashable, Codable {
    public var trainingData: DatasetFingerprint?
    public var codeRevision: String?
    public var parentVersion: Int?

    public init(trainingData: DatasetFingerprint? = nil, codeRevision: String? = nil, parentVersion: Int? = nil) {
        self.trainingData = trainingData
        self.codeRevision = codeRevision
        self.parentVersion = parentVersion
    }

    enum CodingKeys: String, CodingKey {
        case trainingData = "training_data"
        case codeRevision = "code_revision"
        case parentVersion = "parent_version"
    }
}

public enum VersionState: String, Sendable, Hashable, Codable, CaseIterable {
    case registered
    case validated
    case archived
}

/// One offline validation of a version: the data, the metrics, the gates and their outcome.
public struct ValidationRecord: Sendable, Hashable, Codable {
    public struct Gate: Sendable, Hashable, Codable {
        public var gate: String
        public var value: Double?
        public var threshold: Double?
        public var passed: Bool
        public var detail: String

        public init(gate: String, value: Double?, threshold: Double?, passed: Bool, detail: String) {
            self.gate = gate
            self.value = value
            self.threshold = threshold
            self.passed = passed
            self.detail = detail
        }
    }

    public var data: DatasetFingerprint
    public var metrics: [String: Double]
    public var gates: [Gate]
    public var passed: Bool
    /// The alias and version the candidate was compared with, if any ("production@3").
    public var against: String?
    public var at: Date?
    public var by: String?

    public init(data: DatasetFingerprint, metrics: [String: Double], gates: [Gate], passed: Bool, against: String? = nil, at: Date? = nil, by: String? = nil) {
        self.data = data
        self.metrics = metrics
        self.gates = gates
        self.passed = passed
        self.against = against
        self.at = at
        self.by = by
    }
}

/// What a client sends to register a version; the registry numbers it.
public struct VersionDraft: Sendable, Hashable, Codable {
    public var format: String
    public var task: String
    public var signature: ModelSignature
    public var artifact: ArtifactReference
    public var params: [String: String]
    public var tags: [String: String]
    public var lineage: Lineage

    public init(format: String, task: String, signature: ModelSignature, artifact: ArtifactReference,
                params: [String: String] = [:], tags: [String: String] = [:], lineage: Lineage = Lineage()) {
        self.format = format
        self.task = task
        self.signature = signature
        self.artifact = artifact
        self.params = params
        self.tags = tags
        self.lineage = lineage
    }
}

/// A registered model version.
public struct ModelVersion: Sendable, Hashable, Codable {
    public var name: String
    public var version: Int
    public var format: String
    public var task: String
    public var signature: ModelSignature
    public var artifact: ArtifactReference
    public var params: [String: String]
    public var tags: [String: String]
    public var lineage: Lineage
    public var validations: [ValidationRecord]
    public var state: VersionState
    public var createdAt: Date
    public var createdBy: String

    public init(name: String, version: Int, draft: VersionDraft, validations: [ValidationRecord] = [],
                state: VersionState = .registered, createdAt: Date, createdBy: String) {
        self.name = name
        self.version = version
        format = draft.format
        task = draft.task
        signature = draft.signature
        artifact = draft.artifact
        params = draft.params
        tags = draft.tags
        lineage = draft.lineage
        self.validations = validations
        self.state = state
        self.createdAt = createdAt
        self.createdBy = createdBy
    }

    public var draft: VersionDraft {
        VersionDraft(format: format, task: task, signature: signature, artifact: artifact, params: params, tags: tags, lineage: lineage)
    }

    enum CodingKeys: String, CodingKey {
        case name, version, format, task, signature, artifact, params, tags, lineage, validations, state
        case createdAt = "created_at"
        case createdBy = "created_by"
    }
}

/// A named pointer at a version of a model (`production`, `staging`, …).
public struct ModelAlias: Sendable, Hashable, Codable {
    public var name: String
    public var alias: String
    public var version: Int
    public var updatedAt: Date
    public var updatedBy: String

    public init(name: String, alias: String, version: Int, updatedAt: Date, updatedBy: String) {
        self.name = name
        self.alias = alias
        self.version = version
        self.updatedAt = updatedAt
        self.updatedBy = updatedBy
    }

    enum CodingKeys: String, CodingKey {
        case name, alias, version
        case updatedAt = "updated_at"
        case updatedBy = "updated_by"
    }
}

/// One change to a model's aliases or versions, kept forever.
public struct AuditEntry: Sendable, Hashable, Codable {
    public var id: Int
    public var name: String
    /// `alias.set`, `alias.delete`, `version.archive`, `validation_data.set`.
    public var action: String
    public var alias: String?
    public var fromVersion: Int?
    public var toVersion: Int?
    public var actor: String
    public var reason: String?
    /// The alias moved without a passing validation (`--force`).
    public var forced: Bool
    public var at: Date

    public init(id: Int, name: String, action: String, alias: String?, fromVersion: Int?, toVersion: Int?,
                actor: String, reason: String?, forced: Bool, at: Date) {
        self.id = id
        self.name = name
        self.action = action
        self.alias = alias
        self.fromVersion = fromVersion
        self.toVersion = toVersion
        self.actor = actor
        self.reason = reason
        self.forced = forced
        self.at = at
    }

    enum CodingKeys: String, CodingKey {
        case id, name, action, alias, actor, reason, forced, at
        case fromVersion = "from_version"
        case toVersion = "to_version"
    }
}

/// A model name's summary: its latest version, aliases and registered validation dataset.
public struct RegisteredModel: Sendable, Hashable, Codable {
    public var name: String
    public var latestVersion: Int?
    public var aliases: [String: Int]
    /// The dataset a version must pass validation on before it may become `production`.
    public var validationData: DatasetFingerprint?

    public init(name: String, latestVersion: Int?, aliases: [String: Int], validationData: DatasetFingerprint?) {
        self.name = name
        self.latestVersion = latestVersion
        self.aliases = aliases
        self.validationData = validationData
    }

    enum CodingKeys: String, CodingKey {
        case name, aliases
        case latestVersion = "latest_version"
        case validationData = "validation_data"
    }
}

/// Names of models and aliases: letters, digits, '.', '_' and '-', starting with a letter or
/// digit, without "..", at most 64 characters. They become URL path segments and file names, so nothing else
/// (no '/', no "..") is allowed.
public enum RegistryName {
    public static func check(_ name: String, kind: String) throws(WharfError) {
        // Byte by byte, without allocating: the gateway checks a model name on every request.
        var count = 0
        var valid = true
        var previous: UInt8 = 0
        for byte in name.utf8 {
            let isAlphanumeric = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            let isPunctuation = byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            if !(isAlphanumeric || (isPunctuation && count > 0)) || (byte == UInt8(ascii: ".") && previous == UInt8(ascii: ".")) {
                valid = false
            }
            previous = byte
            count += 1
        }
        guard count > 0, count <= 64 else {
            throw WharfError(.invalidInput, "\(kind) name must have 1 to 64 characters, not \(count)")
        }
        guard valid else {
            throw WharfError(.invalidInput, "\(kind) name \"\(name.prefix(80))\" may hold only letters, digits, '.', '_' and '-' (never \"..\"), and must start with a letter or digit")
        }
    }

    /// An alias name: a registry name that is not all digits (`churn@2024` reads as version
    /// 2024, so such an alias could never be asked for).
    public static func checkAlias(_ alias: String) throws(WharfError) {
        try check(alias, kind: "alias")
        guard !alias.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw WharfError(.invalidInput, "alias \"\(alias)\" is all digits: NAME@\(alias) would read as version \(alias); add a letter")
        }
    }

    /// A lower-case 64-digit hexadecimal SHA-256.
    public static func checkDigest(_ digest: String) throws(WharfError) {
        let bytes = Array(digest.utf8)
        guard bytes.count == 64, bytes.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
            throw WharfError(.invalidInput, "\"\(digest.prefix(80))\" is not a sha256 digest (64 lower-case hexadecimal digits)")
        }
    }
}

/// `NAME@VERSION` or `NAME@ALIAS`, as the command line writes a registered model.
public struct ModelReference: Sendable, Hashable, CustomStringConvertible {
    public enum Selector: Sendable, Hashable {
        case version(Int)
        case alias(String)
    }

    public var name: String
    public var selector: Selector

    public init(name: String, selector: Selector) {
        self.name = name
        self.selector = selector
    }

    /// nil when `text` has no '@' (a file path, say).
    public init?(parsing text: String) throws(WharfError) {
        guard let at = text.lastIndex(of: "@") else { return nil }
        let name = String(text[..<at])
        let rest = String(text[text.index(after: at)...])
        try RegistryName.check(name, kind: "model")
        if let version = Int(rest) {
            guard version >= 1 else { throw WharfError(.invalidInput, "\"\(text)\": versions start at 1") }
            self.init(name: name, selector: .version(version))
        } else {
            try RegistryName.checkAlias(rest)
            self.init(name: name, selector: .alias(rest))
        }
    }

    public var description: String {
        switch selector {
        case .version(let version): "\(name)@\(version)"
        case .alias(let alias): "\(name)@\(alias)"
        }
    }
}
