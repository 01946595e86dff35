import Foundation
import WharfCore

/// A registry held in memory: for tests, and the reference the SQL stores are checked against.
public actor InMemoryRegistryStore: RegistryStore {
    private var versionsByName: [String: [ModelVersion]] = [:]
    private var aliasesByName: [String: [String: ModelAlias]] = [:]
    private var validationData: [String: DatasetFingerprint] = [:]
    private var auditLog: [AuditEntry] = []
    private var pipelineRuns: [String: PipelineRun] = [:]
    private let clock: @Sendable () -> Date

    public init(clock: @escaping @Sendable () -> Date = { Date() }) {
        self.clock = clock
    }

    public func createVersion(name: String, draft: VersionDraft, actor: String) throws -> ModelVersion {
        let number = (versionsByName[name]?.count ?? 0) + 1
        let version = ModelVersion(name: name, version: number, draft: draft, createdAt: clock(), createdBy: actor)
        versionsByName[name, default: []].append(version)
        return version
    }

    public func version(name: String, version: Int) -> ModelVersion? {
        guard let list = versionsByName[name], version >= 1, version <= list.count else { return nil }
        return list[version - 1]
    }

    public func versions(name: String) -> [ModelVersion] {
        versionsByName[name] ?? []
    }

    public func models() -> [RegisteredModel] {
        Set(versionsByName.keys).union(validationData.keys).sorted().compactMap { model(name: $0) }
    }

    public func model(name: String) -> RegisteredModel? {
        guard versionsByName[name] != nil || validationData[name] != nil else { return nil }
        return RegisteredModel(
            name: name, latestVersion: versionsByName[name]?.last?.version,
            aliases: (aliasesByName[name] ?? [:]).mapValues(\.version), validationData: validationData[name])
    }

    public func addValidation(name: String, version: Int, record: ValidationRecord) throws -> ModelVersion {
        guard var stored = self.version(name: name, version: version) else { throw RegistryStoreError.unknownVersion(name, version) }
        var record = record
        record.at = record.at ?? clock()
        stored.validations.append(record)
        if record.passed, stored.state == .registered { stored.state = .validated }
        versionsByName[name]![version - 1] = stored
        return stored
    }

    public func archive(name: String, version: Int, actor: String, reason: String?) throws -> ModelVersion {
        guard var stored = self.version(name: name, version: version) else { throw RegistryStoreError.unknownVersion(name, version) }
        if let pointing = aliasesByName[name]?.values.first(where: { $0.version == version }) {
            throw WharfError(.conflict, "\(name)@\(version) is the target of alias \(pointing.alias): move the alias first")
        }
        stored.state = .archived
        versionsByName[name]![version - 1] = stored
        record(name: name, action: "version.archive", alias: nil, from: version, to: nil, actor: actor, reason: reason, forced: false)
        return stored
    }

    public func setAlias(name: String, alias: String, version: Int, actor: String, reason: String?, forced: Bool) throws -> AuditEntry {
        guard let target = self.version(name: name, version: version) else { throw RegistryStoreError.unknownVersion(name, version) }
        guard target.state != .archived else { throw RegistryStoreError.archived(name, version) }
        let previous = aliasesByName[name]?[alias]?.version
        aliasesByName[name, default: [:]][alias] = ModelAlias(name: name, alias: alias, version: version, updatedAt: clock(), updatedBy: actor)
        return record(name: name, action: "alias.set", alias: alias, from: previous, to: version, actor: actor, reason: reason, forced: forced)
    }

    public func deleteAlias(name: String, alias: String, actor: String, reason: String?) throws -> AuditEntry {
        guard let previous = aliasesByName[name]?.removeValue(forKey: alias) else { throw RegistryStoreError.unknownAlias(name, alias) }
        return record(name: name, action: "alias.delete", alias: alias, from: previous.version, to: nil, actor: actor, reason: reason, forced: false)
    }

    public func aliases(name: String) -> [ModelAlias] {
        (aliasesByName[name] ?? [:]).values.sorted { $0.alias < $1.alias }
    }

    public func audit(name: String) -> [AuditEntry] {
        auditLog.filter { $0.name == name }
    }

    public func setValidationData(name: String, data: DatasetFingerprint, actor: String) -> AuditEntry {
        validationData[name] = data
        return record(name: name, action: "validation_data.set", alias: nil, from: nil, to: nil, actor: actor, reason: "sha256 \(data.sha256)", forced: false)
    }

    public func saveRun(_ run: PipelineRun) {
        pipelineRuns[run.id] = run
    }

    public func runs(pipeline: String?, limit: Int) -> [PipelineRun] {
        let matching = pipelineRuns.values.filter { pipeline == nil || $0.pipeline == pipeline }.sorted(by: PipelineRun.listedBefore)
        return Array(matching.suffix(max(0, limit)))
    }

    public func run(id: String) -> PipelineRun? {
        pipelineRuns[id]
    }

    @discardableResult
    private func record(name: String, action: String, alias: String?, from: Int?, to: Int?, actor: String, reason: String?, forced: Bool) -> AuditEntry {
        let entry = AuditEntry(id: auditLog.count + 1, name: name, action: action, alias: alias, fromVersion: from, toVersion: to,
                               actor: actor, reason: reason, forced: forced, at: clock())
        auditLog.append(entry)
        return entry
    }
}
