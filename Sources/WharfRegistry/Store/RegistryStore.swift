import Foundation
import WharfCore

/// Where the registry keeps model versions, aliases and the audit log. One contract
/// (`Tests/WharfRegistryTests/RegistryStoreContract.swift`) holds for every implementation:
/// in memory (tests), SQLite (the embedded default) and PostgreSQL.
///
/// Every method is atomic: a version number is taken and its record written in one
/// transaction, an alias moves together with its audit entry.
public protocol RegistryStore: Sendable {
    /// Registers a version under the next number for `name` (1 for a new name).
    func createVersion(name: String, draft: VersionDraft, actor: String) async throws -> ModelVersion
    func version(name: String, version: Int) async throws -> ModelVersion?
    /// Every version of `name`, oldest first.
    func versions(name: String) async throws -> [ModelVersion]
    func models() async throws -> [RegisteredModel]
    func model(name: String) async throws -> RegisteredModel?
    /// Adds a validation to a version; a passing one moves it from registered to validated.
    func addValidation(name: String, version: Int, record: ValidationRecord) async throws -> ModelVersion
    /// Archives a version (it stays readable; aliases may no longer point at it).
    func archive(name: String, version: Int, actor: String, reason: String?) async throws -> ModelVersion
    /// Points `alias` at `version` (which must exist and not be archived) and records the move.
    func setAlias(name: String, alias: String, version: Int, actor: String, reason: String?, forced: Bool) async throws -> AuditEntry
    func deleteAlias(name: String, alias: String, actor: String, reason: String?) async throws -> AuditEntry
    func aliases(name: String) async throws -> [ModelAlias]
    func audit(name: String) async throws -> [AuditEntry]
    /// Registers the dataset versions of `name` must pass validation on before production.
    func setValidationData(name: String, data: DatasetFingerprint, actor: String) async throws -> AuditEntry

    /// Records a pipeline run, replacing the earlier record with its id: a run is saved as it
    /// progresses.
    func saveRun(_ run: PipelineRun) async throws
    /// The newest `limit` runs (of `pipeline`, or of every pipeline), oldest first.
    func runs(pipeline: String?, limit: Int) async throws -> [PipelineRun]
    func run(id: String) async throws -> PipelineRun?
}

extension RegistryStore {
    public func alias(name: String, alias: String) async throws -> ModelAlias? {
        try await aliases(name: name).first { $0.alias == alias }
    }
}

extension PipelineRun {
    /// The order runs are listed in: by start, then by id (ids begin with their start time).
    static func listedBefore(_ a: PipelineRun, _ b: PipelineRun) -> Bool {
        (a.startedAt, a.id) < (b.startedAt, b.id)
    }
}

/// Errors every store reports the same way.
enum RegistryStoreError {
    static func unknownVersion(_ name: String, _ version: Int) -> WharfError {
        WharfError(.notFound, "model \(name) has no version \(version)")
    }

    static func unknownModel(_ name: String) -> WharfError {
        WharfError(.notFound, "no model named \(name) is registered")
    }

    static func unknownAlias(_ name: String, _ alias: String) -> WharfError {
        WharfError(.notFound, "model \(name) has no alias \(alias)")
    }

    static func archived(_ name: String, _ version: Int) -> WharfError {
        WharfError(.conflict, "\(name)@\(version) is archived: an alias cannot point at it")
    }
}

/// JSON for the columns that hold structures (signature, params, lineage, …): stable output.
enum StoredJSON {
    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(type, from: Data(text.utf8))
    }
}
