import Foundation
import GRDB
import WharfCore

/// The embedded registry: one SQLite file (WAL) under the data directory, through GRDB.
///
/// Writes go through GRDB's single writer, each in a transaction, so the next version number
/// and its record are taken together even with many concurrent registrations; readers never
/// block the writer.
public final class SQLiteRegistryStore: RegistryStore {
    private let pool: DatabasePool

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    public init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(pool)
    }

    /// Named migrations, applied once each, in order.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("1-registry") { db in
            for statement in RegistrySchema.statements(autoIncrement: "INTEGER PRIMARY KEY AUTOINCREMENT", real: "REAL") {
                try db.execute(sql: statement)
            }
        }
        migrator.registerMigration("2-pipeline-runs") { db in
            for statement in RegistrySchema.pipelineRunStatements(real: "REAL") {
                try db.execute(sql: statement)
            }
        }
        return migrator
    }

    public func createVersion(name: String, draft: VersionDraft, actor: String) async throws -> ModelVersion {
        let now = Date()
        let columns = try VersionColumns(draft)
        return try await pool.write { db in
            try db.execute(sql: "INSERT INTO models (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                           arguments: [name, now.timeIntervalSince1970])
            let latest = try Int.fetchOne(db, sql: "SELECT MAX(version) FROM versions WHERE name = ?", arguments: [name]) ?? 0
            let number = latest + 1
            try db.execute(
                sql: """
                    INSERT INTO versions (name, version, format, task, signature, artifact_sha256, artifact_size,
                                          params, tags, lineage, state, created_at, created_by)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [name, number, draft.format, draft.task, columns.signature, draft.artifact.sha256, draft.artifact.size,
                            columns.params, columns.tags, columns.lineage, VersionState.registered.rawValue, now.timeIntervalSince1970, actor])
            return ModelVersion(name: name, version: number, draft: draft, createdAt: now, createdBy: actor)
        }
    }

    public func version(name: String, version: Int) async throws -> ModelVersion? {
        try await pool.read { db in try Self.fetchVersions(db, name: name, version: version).first }
    }

    public func versions(name: String) async throws -> [ModelVersion] {
        try await pool.read { db in try Self.fetchVersions(db, name: name, version: nil) }
    }

    public func models() async throws -> [RegisteredModel] {
        try await pool.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM models ORDER BY name").compactMap { try Self.fetchModel(db, name: $0) }
        }
    }

    public func model(name: String) async throws -> RegisteredModel? {
        try await pool.read { db in try Self.fetchModel(db, name: name) }
    }

    public func addValidation(name: String, version: Int, record: ValidationRecord) async throws -> ModelVersion {
        var record = record
        record.at = record.at ?? Date()
        let encoded = try StoredJSON.encode(record)
        let passed = record.passed
        return try await pool.write { db in
            guard try Self.fetchVersions(db, name: name, version: version).first != nil else { throw RegistryStoreError.unknownVersion(name, version) }
            try db.execute(sql: "INSERT INTO validations (name, version, record, passed) VALUES (?, ?, ?, ?)",
                           arguments: [name, version, encoded, passed])
            if passed {
                try db.execute(sql: "UPDATE versions SET state = 'validated' WHERE name = ? AND version = ? AND state = 'registered'",
                               arguments: [name, version])
            }
            return try Self.fetchVersions(db, name: name, version: version)[0]
        }
    }

    public func archive(name: String, version: Int, actor: String, reason: String?) async throws -> ModelVersion {
        try await pool.write { db in
            guard try Self.fetchVersions(db, name: name, version: version).first != nil else { throw RegistryStoreError.unknownVersion(name, version) }
            if let alias = try String.fetchOne(db, sql: "SELECT alias FROM aliases WHERE name = ? AND version = ? ORDER BY alias", arguments: [name, version]) {
                throw WharfError(.conflict, "\(name)@\(version) is the target of alias \(alias): move the alias first")
            }
            try db.execute(sql: "UPDATE versions SET state = 'archived' WHERE name = ? AND version = ?", arguments: [name, version])
            _ = try Self.audit(db, name: name, action: "version.archive", alias: nil, from: version, to: nil, actor: actor, reason: reason, forced: false)
            return try Self.fetchVersions(db, name: name, version: version)[0]
        }
    }

    public func setAlias(name: String, alias: String, version: Int, actor: String, reason: String?, forced: Bool) async throws -> AuditEntry {
        try await pool.write { db in
            guard let state = try String.fetchOne(db, sql: "SELECT state FROM versions WHERE name = ? AND version = ?", arguments: [name, version]) else {
                throw RegistryStoreError.unknownVersion(name, version)
            }
            guard state != VersionState.archived.rawValue else { throw RegistryStoreError.archived(name, version) }
            let previous = try Int.fetchOne(db, sql: "SELECT version FROM aliases WHERE name = ? AND alias = ?", arguments: [name, alias])
            let now = Date().timeIntervalSince1970
            try db.execute(
                sql: """
                    INSERT INTO aliases (name, alias, version, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by
                    """,
                arguments: [name, alias, version, now, actor])
            return try Self.audit(db, name: name, action: "alias.set", alias: alias, from: previous, to: version, actor: actor, reason: reason, forced: forced)
        }
    }

    public func deleteAlias(name: String, alias: String, actor: String, reason: String?) async throws -> AuditEntry {
        try await pool.write { db in
            guard let previous = try Int.fetchOne(db, sql: "SELECT version FROM aliases WHERE name = ? AND alias = ?", arguments: [name, alias]) else {
                throw RegistryStoreError.unknownAlias(name, alias)
            }
            try db.execute(sql: "DELETE FROM aliases WHERE name = ? AND alias = ?", arguments: [name, alias])
            return try Self.audit(db, name: name, action: "alias.delete", alias: alias, from: previous, to: nil, actor: actor, reason: reason, forced: false)
        }
    }

    public func aliases(name: String) async throws -> [ModelAlias] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT alias, version, updated_at, updated_by FROM aliases WHERE name = ? ORDER BY alias", arguments: [name]).map { row in
                ModelAlias(name: name, alias: row["alias"], version: row["version"],
                           updatedAt: Date(timeIntervalSince1970: row["updated_at"]), updatedBy: row["updated_by"])
            }
        }
    }

    public func audit(name: String) async throws -> [AuditEntry] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM audit WHERE name = ? ORDER BY id", arguments: [name]).map(Self.auditEntry)
        }
    }

    public func setValidationData(name: String, data: DatasetFingerprint, actor: String) async throws -> AuditEntry {
        let encoded = try StoredJSON.encode(data)
        return try await pool.write { db in
            try db.execute(
                sql: "INSERT INTO models (name, created_at, validation_data) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET validation_data = excluded.validation_data",
                arguments: [name, Date().timeIntervalSince1970, encoded])
            return try Self.audit(db, name: name, action: "validation_data.set", alias: nil, from: nil, to: nil, actor: actor, reason: "sha256 \(data.sha256)", forced: false)
        }
    }

    public func saveRun(_ run: PipelineRun) async throws {
        let record = try StoredJSON.encode(run)
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO pipeline_runs (id, pipeline, started_at, outcome, record) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET pipeline = excluded.pipeline, started_at = excluded.started_at,
                        outcome = excluded.outcome, record = excluded.record
                    """,
                arguments: [run.id, run.pipeline, run.startedAt.timeIntervalSince1970, run.outcome, record])
        }
    }

    public func runs(pipeline: String?, limit: Int) async throws -> [PipelineRun] {
        let records: [String] = try await pool.read { db in
            if let pipeline {
                return try String.fetchAll(db, sql: "SELECT record FROM pipeline_runs WHERE pipeline = ? ORDER BY started_at DESC, id DESC LIMIT ?",
                                           arguments: [pipeline, max(0, limit)])
            }
            return try String.fetchAll(db, sql: "SELECT record FROM pipeline_runs ORDER BY started_at DESC, id DESC LIMIT ?", arguments: [max(0, limit)])
        }
        return try records.reversed().map { try StoredJSON.decode(PipelineRun.self, $0) }
    }

    public func run(id: String) async throws -> PipelineRun? {
        let record = try await pool.read { db in try String.fetchOne(db, sql: "SELECT record FROM pipeline_runs WHERE id = ?", arguments: [id]) }
        return try record.map { try StoredJSON.decode(PipelineRun.self, $0) }
    }

    // MARK: - Rows

    private static func fetchVersions(_ db: Database, name: String, version: Int?) throws -> [ModelVersion] {
        let rows: [Row]
        if let version {
            rows = try Row.fetchAll(db, sql: "SELECT * FROM versions WHERE name = ? AND version = ?", arguments: [name, version])
        } else {
            rows = try Row.fetchAll(db, sql: "SELECT * FROM versions WHERE name = ? ORDER BY version", arguments: [name])
        }
        var validations: [Int: [ValidationRecord]] = [:]
        let validationRows: [Row] = if let version {
            try Row.fetchAll(db, sql: "SELECT version, record FROM validations WHERE name = ? AND version = ? ORDER BY id", arguments: [name, version])
        } else {
            try Row.fetchAll(db, sql: "SELECT version, record FROM validations WHERE name = ? ORDER BY id", arguments: [name])
        }
        for row in validationRows {
            validations[row["version"], default: []].append(try StoredJSON.decode(ValidationRecord.self, row["record"]))
        }
        return try rows.map { row in
            let columns = VersionColumns(signature: row["signature"], params: row["params"], tags: row["tags"], lineage: row["lineage"])
            let number: Int = row["version"]
            return ModelVersion(
                name: name, version: number,
                draft: try columns.draft(format: row["format"], task: row["task"], sha256: row["artifact_sha256"], size: row["artifact_size"]),
                validations: validations[number] ?? [], state: VersionState(rawValue: row["state"]) ?? .registered,
                createdAt: Date(timeIntervalSince1970: row["created_at"]), createdBy: row["created_by"])
        }
    }

    private static func fetchModel(_ db: Database, name: String) throws -> RegisteredModel? {
        guard let row = try Row.fetchOne(db, sql: "SELECT validation_data FROM models WHERE name = ?", arguments: [name]) else { return nil }
        let data: String? = row["validation_data"]
        let latest = try Int.fetchOne(db, sql: "SELECT MAX(version) FROM versions WHERE name = ?", arguments: [name])
        var aliases: [String: Int] = [:]
        for alias in try Row.fetchAll(db, sql: "SELECT alias, version FROM aliases WHERE name = ?", arguments: [name]) {
            aliases[alias["alias"]] = alias["version"]
        }
        return RegisteredModel(name: name, latestVersion: latest, aliases: aliases,
                               validationData: try data.map { try StoredJSON.decode(DatasetFingerprint.self, $0) })
    }

    private static func audit(_ db: Database, name: String, action: String, alias: String?, from: Int?, to: Int?,
                              actor: String, reason: String?, forced: Bool) throws -> AuditEntry {
        let now = Date()
        try db.execute(
            sql: "INSERT INTO audit (name, action, alias, from_version, to_version, actor, reason, forced, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            arguments: [name, action, alias, from, to, actor, reason, forced, now.timeIntervalSince1970])
        return AuditEntry(id: Int(db.lastInsertedRowID), name: name, action: action, alias: alias, fromVersion: from, toVersion: to,
                          actor: actor, reason: reason, forced: forced, at: now)
    }

    private static func auditEntry(_ row: Row) -> AuditEntry {
        AuditEntry(id: row["id"], name: row["name"], action: row["action"], alias: row["alias"], fromVersion: row["from_version"],
                   toVersion: row["to_version"], actor: row["actor"], reason: row["reason"], forced: row["forced"],
                   at: Date(timeIntervalSince1970: row["at"]))
    }
}

/// The registry's tables, the same in SQLite and PostgreSQL but for two column types.
enum RegistrySchema {
    static func statements(autoIncrement: String, real: String) -> [String] {
        [
            """
            CREATE TABLE models (
                name TEXT PRIMARY KEY,
                validation_data TEXT,
                created_at \(real) NOT NULL
            )
            """,
            """
            CREATE TABLE versions (
                name TEXT NOT NULL REFERENCES models (name),
                version INTEGER NOT NULL,
                format TEXT NOT NULL,
                task TEXT NOT NULL,
                signature TEXT NOT NULL,
                artifact_sha256 TEXT NOT NULL,
                artifact_size BIGINT NOT NULL,
                params TEXT NOT NULL,
                tags TEXT NOT NULL,
                lineage TEXT NOT NULL,
                state TEXT NOT NULL,
                created_at \(real) NOT NULL,
                created_by TEXT NOT NULL,
                PRIMARY KEY (name, version)
            )
            """,
            """
            CREATE TABLE validations (
                id \(autoIncrement),
                name TEXT NOT NULL,
                version INTEGER NOT NULL,
                record TEXT NOT NULL,
                passed BOOLEAN NOT NULL,
                FOREIGN KEY (name, version) REFERENCES versions (name, version)
            )
            """,
            """
            CREATE TABLE aliases (
                name TEXT NOT NULL,
                alias TEXT NOT NULL,
                version INTEGER NOT NULL,
                updated_at \(real) NOT NULL,
                updated_by TEXT NOT NULL,
                PRIMARY KEY (name, alias),
                FOREIGN KEY (name, version) REFERENCES versions (name, version)
            )
            """,
            """
            CREATE TABLE audit (
                id \(autoIncrement),
                name TEXT NOT NULL,
                action TEXT NOT NULL,
                alias TEXT,
                from_version INTEGER,
                to_version INTEGER,
                actor TEXT NOT NULL,
                reason TEXT,
                forced BOOLEAN NOT NULL,
                at \(real) NOT NULL
            )
            """,
            "CREATE INDEX audit_by_name ON audit (name, id)",
            "CREATE INDEX validations_by_version ON validations (name, version, id)",
        ]
    }
}

extension RegistrySchema {
    /// Migration 2: pipeline runs, the whole record as JSON beside the columns they are listed by.
    static func pipelineRunStatements(real: String) -> [String] {
        [
            """
            CREATE TABLE pipeline_runs (
                id TEXT PRIMARY KEY,
                pipeline TEXT NOT NULL,
                started_at \(real) NOT NULL,
                outcome TEXT NOT NULL,
                record TEXT NOT NULL
            )
            """,
            "CREATE INDEX pipeline_runs_by_start ON pipeline_runs (started_at, id)",
            "CREATE INDEX pipeline_runs_by_pipeline ON pipeline_runs (pipeline, started_at, id)",
        ]
    }
}

/// A version's structured fields as stored: JSON text columns.
struct VersionColumns {
    var signature: String
    var params: String
    var tags: String
    var lineage: String

    init(signature: String, params: String, tags: String, lineage: String) {
        self.signature = signature
        self.params = params
        self.tags = tags
        self.lineage = lineage
    }

    init(_ draft: VersionDraft) throws {
        signature = try StoredJSON.encode(draft.signature)
        params = try StoredJSON.encode(draft.params)
        tags = try StoredJSON.encode(draft.tags)
        lineage = try StoredJSON.encode(draft.lineage)
    }

    func draft(format: String, task: String, sha256: String, size: Int) throws -> VersionDraft {
        VersionDraft(
            format: format, task: task, signature: try StoredJSON.decode(ModelSignature.self, signature),
            artifact: ArtifactReference(sha256: sha256, size: size),
            params: try StoredJSON.decode([String: String].self, params), tags: try StoredJSON.decode([String: String].self, tags),
            lineage: try StoredJSON.decode(Lineage.self, lineage))
    }
}
