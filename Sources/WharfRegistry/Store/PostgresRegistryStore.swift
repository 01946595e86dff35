import Foundation
import Logging
import PostgresNIO
import WharfCore

/// The registry in PostgreSQL, for several registry replicas sharing one database.
///
/// Every value reaches the server as a bound parameter (PostgresQuery interpolation); the only
/// SQL text built at run time is the fixed schema. A registration locks its model's row
/// (`SELECT … FOR UPDATE`), so concurrent registrations of one name are numbered one after the
/// other, whichever replica takes them.
///
/// The connection pool runs from `init` until ``shutdown()``.
public final class PostgresRegistryStore: RegistryStore {
    private let client: PostgresClient
    private let logger: Logger
    private let pool: Task<Void, Never>

    /// `url`: `postgres://user[:password]@host[:port]/database`.
    public init(url: String, logger: Logger) throws(WharfError) {
        let client = PostgresClient(configuration: try Self.configuration(url), backgroundLogger: logger)
        self.client = client
        self.logger = logger
        pool = Task { await client.run() }
    }

    /// Closes the pool's connections; the store cannot be used afterwards.
    public func shutdown() {
        pool.cancel()
    }

    deinit { pool.cancel() }

    static func configuration(_ url: String) throws(WharfError) -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? ""),
              let host = components.host, !host.isEmpty
        else {
            throw WharfError(.invalidInput, "--database must look like postgres://user:password@host:port/database")
        }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        var configuration = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432, username: components.user ?? "postgres",
            password: components.password, database: database.isEmpty ? nil : database, tls: .disable)
        configuration.options.maximumConnections = 10
        return configuration
    }

    /// Creates or updates the schema: named migrations, each applied once, under an advisory
    /// lock so that replicas starting together do not race.
    public func migrate() async throws {
        try await transaction { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(727274)", logger: logger)
            try await connection.query("CREATE TABLE IF NOT EXISTS wharf_migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)", logger: logger)
            let applied = try await connection.query("SELECT name FROM wharf_migrations", logger: logger)
            var names: Set<String> = []
            for try await name in applied.decode(String.self) { names.insert(name) }
            if !names.contains("1-registry") {
                for statement in RegistrySchema.statements(autoIncrement: "BIGSERIAL PRIMARY KEY", real: "DOUBLE PRECISION") {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                let now = Date().timeIntervalSince1970
                try await connection.query("INSERT INTO wharf_migrations (name, applied_at) VALUES ('1-registry', \(now))", logger: logger)
            }
            if !names.contains("2-pipeline-runs") {
                for statement in RegistrySchema.pipelineRunStatements(real: "DOUBLE PRECISION") {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                let now = Date().timeIntervalSince1970
                try await connection.query("INSERT INTO wharf_migrations (name, applied_at) VALUES ('2-pipeline-runs', \(now))", logger: logger)
            }
        }
    }

    public func createVersion(name: String, draft: VersionDraft, actor: String) async throws -> ModelVersion {
        let now = Date()
        let stamp = now.timeIntervalSince1970
        let columns = try VersionColumns(draft)
        let logger = logger
        return try await transaction { connection in
            try await connection.query("INSERT INTO models (name, created_at) VALUES (\(name), \(stamp)) ON CONFLICT (name) DO NOTHING", logger: logger)
            try await connection.query("SELECT name FROM models WHERE name = \(name) FOR UPDATE", logger: logger)
            var latest = 0
            for try await value in try await connection.query("SELECT COALESCE(MAX(version), 0)::BIGINT FROM versions WHERE name = \(name)", logger: logger).decode(Int.self) {
                latest = value
            }
            let number = latest + 1
            try await connection.query(
                """
                INSERT INTO versions (name, version, format, task, signature, artifact_sha256, artifact_size,
                                      params, tags, lineage, state, created_at, created_by)
                VALUES (\(name), \(number), \(draft.format), \(draft.task), \(columns.signature), \(draft.artifact.sha256),
                        \(draft.artifact.size), \(columns.params), \(columns.tags), \(columns.lineage), 'registered', \(stamp), \(actor))
                """, logger: logger)
            return ModelVersion(name: name, version: number, draft: draft, createdAt: now, createdBy: actor)
        }
    }

    public func version(name: String, version: Int) async throws -> ModelVersion? {
        try await client.withConnection { connection in try await self.fetchVersions(connection, name: name, version: version).first }
    }

    public func versions(name: String) async throws -> [ModelVersion] {
        try await client.withConnection { connection in try await self.fetchVersions(connection, name: name, version: nil) }
    }

    public func models() async throws -> [RegisteredModel] {
        try await client.withConnection { connection in
            var names: [String] = []
            for try await name in try await connection.query("SELECT name FROM models ORDER BY name", logger: self.logger).decode(String.self) {
                names.append(name)
            }
            var models: [RegisteredModel] = []
            for name in names {
                if let model = try await self.fetchModel(connection, name: name) { models.append(model) }
            }
            return models
        }
    }

    public func model(name: String) async throws -> RegisteredModel? {
        try await client.withConnection { connection in try await self.fetchModel(connection, name: name) }
    }

    public func addValidation(name: String, version: Int, record: ValidationRecord) async throws -> ModelVersion {
        var record = record
        record.at = record.at ?? Date()
        let encoded = try StoredJSON.encode(record)
        let passed = record.passed
        let logger = logger
        return try await transaction { connection in
            guard try await self.exists(connection, name: name, version: version) != nil else { throw RegistryStoreError.unknownVersion(name, version) }
            try await connection.query("INSERT INTO validations (name, version, record, passed) VALUES (\(name), \(version), \(encoded), \(passed))", logger: logger)
            if passed {
                try await connection.query("UPDATE versions SET state = 'validated' WHERE name = \(name) AND version = \(version) AND state = 'registered'", logger: logger)
            }
            return try await self.fetchVersions(connection, name: name, version: version)[0]
        }
    }

    /// Takes the model's row lock for the rest of the transaction: alias moves, alias removals
    /// and archives of one model then run one after the other. Each checks what the other
    /// changes (an alias on an archived version, an archived version under an alias), and
    /// without the lock both could pass their checks and commit.
    private func lockModel(_ connection: PostgresConnection, name: String) async throws {
        try await connection.query("SELECT name FROM models WHERE name = \(name) FOR UPDATE", logger: logger)
    }

    public func archive(name: String, version: Int, actor: String, reason: String?) async throws -> ModelVersion {
        let logger = logger
        return try await transaction { connection in
            try await self.lockModel(connection, name: name)
            guard try await self.exists(connection, name: name, version: version) != nil else { throw RegistryStoreError.unknownVersion(name, version) }
            let pointing = try await connection.query("SELECT alias FROM aliases WHERE name = \(name) AND version = \(version) ORDER BY alias LIMIT 1", logger: logger)
            for try await alias in pointing.decode(String.self) {
                throw WharfError(.conflict, "\(name)@\(version) is the target of alias \(alias): move the alias first")
            }
            try await connection.query("UPDATE versions SET state = 'archived' WHERE name = \(name) AND version = \(version)", logger: logger)
            _ = try await self.audit(connection, name: name, action: "version.archive", alias: nil, from: version, to: nil, actor: actor, reason: reason, forced: false)
            return try await self.fetchVersions(connection, name: name, version: version)[0]
        }
    }

    public func setAlias(name: String, alias: String, version: Int, actor: String, reason: String?, forced: Bool) async throws -> AuditEntry {
        let logger = logger
        return try await transaction { connection in
            try await self.lockModel(connection, name: name)
            guard let state = try await self.exists(connection, name: name, version: version) else { throw RegistryStoreError.unknownVersion(name, version) }
            guard state != VersionState.archived.rawValue else { throw RegistryStoreError.archived(name, version) }
            var previous: Int?
            for try await value in try await connection.query("SELECT version::BIGINT FROM aliases WHERE name = \(name) AND alias = \(alias) FOR UPDATE", logger: logger).decode(Int.self) {
                previous = value
            }
            let now = Date().timeIntervalSince1970
            try await connection.query(
                """
                INSERT INTO aliases (name, alias, version, updated_at, updated_by) VALUES (\(name), \(alias), \(version), \(now), \(actor))
                ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by
                """, logger: logger)
            return try await self.audit(connection, name: name, action: "alias.set", alias: alias, from: previous, to: version, actor: actor, reason: reason, forced: forced)
        }
    }

    public func deleteAlias(name: String, alias: String, actor: String, reason: String?) async throws -> AuditEntry {
        let logger = logger
        return try await transaction { connection in
            try await self.lockModel(connection, name: name)
            var previous: Int?
            for try await value in try await connection.query("DELETE FROM aliases WHERE name = \(name) AND alias = \(alias) RETURNING version::BIGINT", logger: logger).decode(Int.self) {
                previous = value
            }
            guard let previous else { throw RegistryStoreError.unknownAlias(name, alias) }
            return try await self.audit(connection, name: name, action: "alias.delete", alias: alias, from: previous, to: nil, actor: actor, reason: reason, forced: false)
        }
    }

    public func aliases(name: String) async throws -> [ModelAlias] {
        var aliases: [ModelAlias] = []
        let rows = try await client.query(
            "SELECT alias, version::BIGINT, updated_at, updated_by FROM aliases WHERE name = \(name) ORDER BY alias", logger: logger)
        for try await (alias, version, updatedAt, updatedBy) in rows.decode((String, Int, Double, String).self) {
            aliases.append(ModelAlias(name: name, alias: alias, version: version, updatedAt: Date(timeIntervalSince1970: updatedAt), updatedBy: updatedBy))
        }
        return aliases
    }

    public func audit(name: String) async throws -> [AuditEntry] {
        var entries: [AuditEntry] = []
        let rows = try await client.query(
            """
            SELECT id, action, alias, from_version::BIGINT, to_version::BIGINT, actor, reason, forced, at
            FROM audit WHERE name = \(name) ORDER BY id
            """, logger: logger)
        for try await (id, action, alias, from, to, actor, reason, forced, at) in rows.decode((Int, String, String?, Int?, Int?, String, String?, Bool, Double).self) {
            entries.append(AuditEntry(id: id, name: name, action: action, alias: alias, fromVersion: from, toVersion: to, actor: actor,
                                      reason: reason, forced: forced, at: Date(timeIntervalSince1970: at)))
        }
        return entries
    }

    public func setValidationData(name: String, data: DatasetFingerprint, actor: String) async throws -> AuditEntry {
        let encoded = try StoredJSON.encode(data)
        let now = Date().timeIntervalSince1970
        let logger = logger
        return try await transaction { connection in
            try await connection.query(
                """
                INSERT INTO models (name, created_at, validation_data) VALUES (\(name), \(now), \(encoded))
                ON CONFLICT (name) DO UPDATE SET validation_data = excluded.validation_data
                """, logger: logger)
            return try await self.audit(connection, name: name, action: "validation_data.set", alias: nil, from: nil, to: nil, actor: actor,
                                        reason: "sha256 \(data.sha256)", forced: false)
        }
    }

    public func saveRun(_ run: PipelineRun) async throws {
        let record = try StoredJSON.encode(run)
        let started = run.startedAt.timeIntervalSince1970
        try await client.query(
            """
            INSERT INTO pipeline_runs (id, pipeline, started_at, outcome, record) VALUES (\(run.id), \(run.pipeline), \(started), \(run.outcome), \(record))
            ON CONFLICT (id) DO UPDATE SET pipeline = excluded.pipeline, started_at = excluded.started_at,
                outcome = excluded.outcome, record = excluded.record
            """, logger: logger)
    }

    public func runs(pipeline: String?, limit: Int) async throws -> [PipelineRun] {
        let limit = max(0, limit)
        let rows = if let pipeline {
            try await client.query("SELECT record FROM pipeline_runs WHERE pipeline = \(pipeline) ORDER BY started_at DESC, id DESC LIMIT \(limit)", logger: logger)
        } else {
            try await client.query("SELECT record FROM pipeline_runs ORDER BY started_at DESC, id DESC LIMIT \(limit)", logger: logger)
        }
        var runs: [PipelineRun] = []
        for try await record in rows.decode(String.self) { runs.append(try StoredJSON.decode(PipelineRun.self, record)) }
        return runs.reversed()
    }

    public func run(id: String) async throws -> PipelineRun? {
        for try await record in try await client.query("SELECT record FROM pipeline_runs WHERE id = \(id)", logger: logger).decode(String.self) {
            return try StoredJSON.decode(PipelineRun.self, record)
        }
        return nil
    }

    /// A transaction whose failure is the closure's own error (a ``WharfError`` stays one),
    /// not postgres-nio's wrapper.
    private func transaction<Result: Sendable>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: (PostgresConnection) async throws -> sending Result
    ) async throws -> sending Result {
        do {
            return try await client.withTransaction(logger: logger, body)
        } catch let error as PostgresTransactionError {
            if let inner = error.closureError { throw inner }
            throw WharfError(.unavailable, "a PostgreSQL transaction failed: \(String(reflecting: error).prefix(300))")
        }
    }

    // MARK: - Rows

    /// The version's state, or nil when it does not exist.
    private func exists(_ connection: PostgresConnection, name: String, version: Int) async throws -> String? {
        var state: String?
        for try await value in try await connection.query("SELECT state FROM versions WHERE name = \(name) AND version = \(version)", logger: logger).decode(String.self) {
            state = value
        }
        return state
    }

    private func fetchVersions(_ connection: PostgresConnection, name: String, version: Int?) async throws -> [ModelVersion] {
        let filter = version ?? 0
        let all = version == nil
        var validations: [Int: [ValidationRecord]] = [:]
        let validationRows = try await connection.query(
            "SELECT version::BIGINT, record FROM validations WHERE name = \(name) AND (\(all) OR version = \(filter)) ORDER BY id", logger: logger)
        for try await (number, record) in validationRows.decode((Int, String).self) {
            validations[number, default: []].append(try StoredJSON.decode(ValidationRecord.self, record))
        }
        let rows = try await connection.query(
            """
            SELECT version::BIGINT, format, task, signature, artifact_sha256, artifact_size::BIGINT, params, tags, lineage, state, created_at, created_by
            FROM versions WHERE name = \(name) AND (\(all) OR version = \(filter)) ORDER BY version
            """, logger: logger)
        var versions: [ModelVersion] = []
        for try await (number, format, task, signature, sha256, size, params, tags, lineage, state, createdAt, createdBy)
            in rows.decode((Int, String, String, String, String, Int, String, String, String, String, Double, String).self)
        {
            let columns = VersionColumns(signature: signature, params: params, tags: tags, lineage: lineage)
            versions.append(ModelVersion(
                name: name, version: number, draft: try columns.draft(format: format, task: task, sha256: sha256, size: size),
                validations: validations[number] ?? [], state: VersionState(rawValue: state) ?? .registered,
                createdAt: Date(timeIntervalSince1970: createdAt), createdBy: createdBy))
        }
        return versions
    }

    private func fetchModel(_ connection: PostgresConnection, name: String) async throws -> RegisteredModel? {
        var found = false
        var data: String?
        for try await value in try await connection.query("SELECT validation_data FROM models WHERE name = \(name)", logger: logger).decode(String?.self) {
            found = true
            data = value
        }
        guard found else { return nil }
        var latest: Int?
        for try await value in try await connection.query("SELECT MAX(version)::BIGINT FROM versions WHERE name = \(name)", logger: logger).decode(Int?.self) {
            latest = value
        }
        var aliases: [String: Int] = [:]
        for try await (alias, version) in try await connection.query("SELECT alias, version::BIGINT FROM aliases WHERE name = \(name)", logger: logger).decode((String, Int).self) {
            aliases[alias] = version
        }
        return RegisteredModel(name: name, latestVersion: latest, aliases: aliases,
                               validationData: try data.map { try StoredJSON.decode(DatasetFingerprint.self, $0) })
    }

    private func audit(_ connection: PostgresConnection, name: String, action: String, alias: String?, from: Int?, to: Int?,
                       actor: String, reason: String?, forced: Bool) async throws -> AuditEntry {
        let now = Date()
        let stamp = now.timeIntervalSince1970
        var id = 0
        let rows = try await connection.query(
            """
            INSERT INTO audit (name, action, alias, from_version, to_version, actor, reason, forced, at)
            VALUES (\(name), \(action), \(alias), \(from), \(to), \(actor), \(reason), \(forced), \(stamp)) RETURNING id
            """, logger: logger)
        for try await value in rows.decode(Int.self) { id = value }
        return AuditEntry(id: id, name: name, action: action, alias: alias, fromVersion: from, toVersion: to, actor: actor,
                          reason: reason, forced: forced, at: now)
    }
}
