import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOPosix
import WharfCore
import WharfHTTP

/// The registry's JSON API under `/v1/` (docs/registry-openapi.yaml, served at `/openapi.yaml`).
struct RegistryController: Sendable {
    typealias Context = BasicRequestContext

    let store: any RegistryStore
    let artifacts: ArtifactStore
    let policy: PromotionPolicy

    struct AliasMove: Codable {
        var version: Int
        var reason: String?
        var force: Bool?
        /// Check the move against the promotion policy without making it (200 and the entry it
        /// would write, or the refusal it would get): a rollout asks before sending traffic.
        var dryRun: Bool?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case version, reason, force
            case dryRun = "dry_run"
        }
    }

    struct Reason: Codable {
        var reason: String?

        enum CodingKeys: String, CodingKey, CaseIterable { case reason }
    }

    func addRoutes(to router: Router<Context>) {
        let models = router.group("/v1/models")
        models.get { _, _ in
            let models = try await store.models()
            return try JSONBody.response(Lists.Models(models: models))
        }
        models.get(":name") { _, context in
            let name = try Self.name(context)
            guard let model = try await store.model(name: name) else { throw RegistryStoreError.unknownModel(name) }
            return try JSONBody.response(ModelDetail(model: model, versions: try await store.versions(name: name)))
        }
        models.put(":name/validation-data") { request, context in
            let name = try Self.name(context)
            let data = try await JSONBody.decodeStrictly(DatasetFingerprint.self, from: request)
            try RegistryName.checkDigest(data.sha256)
            guard data.rows > 0, data.columns > 0 else { throw WharfError(.invalidInput, "validation data must have rows and columns") }
            return try JSONBody.response(try await store.setValidationData(name: name, data: data, actor: Self.actor(request)))
        }
        models.post(":name/versions") { request, context in
            let name = try Self.name(context)
            let draft = try await JSONBody.decodeStrictly(VersionDraft.self, from: request)
            try Self.check(draft)
            guard artifacts.contains(draft.artifact) else {
                throw WharfError(.invalidInput, "artifact sha256 \(draft.artifact.sha256) (\(draft.artifact.size) bytes) is not in the registry: upload it to /v1/artifacts first")
            }
            // Lineage names a version that exists (versions are never deleted, only archived).
            if let parent = draft.lineage.parentVersion, try await store.version(name: name, version: parent) == nil {
                throw WharfError(.invalidInput, "lineage.parent_version: \(parent) is not a version of \(name)")
            }
            let version = try await store.createVersion(name: name, draft: draft, actor: Self.actor(request))
            return try JSONBody.response(version, status: .created)
        }
        models.get(":name/versions") { _, context in
            let versions = try await store.versions(name: try Self.name(context))
            return try JSONBody.response(Lists.Versions(versions: versions))
        }
        models.get(":name/versions/:version") { _, context in
            try JSONBody.response(try await resolveVersion(context))
        }
        models.get(":name/versions/:version/artifact") { _, context in
            let version = try await resolveVersion(context)
            return try await artifactResponse(version.artifact.sha256)
        }
        models.post(":name/versions/:version/validations") { request, context in
            let version = try await resolveVersion(context)
            var record = try await JSONBody.decodeStrictly(ValidationRecord.self, from: request)
            try Self.check(record)
            record.by = Self.actor(request)
            record.at = Date()
            return try JSONBody.response(try await store.addValidation(name: version.name, version: version.version, record: record), status: .created)
        }
        models.post(":name/versions/:version/archive") { request, context in
            let version = try await resolveVersion(context)
            let reason = try await Self.reason(request)
            return try JSONBody.response(try await store.archive(name: version.name, version: version.version, actor: Self.actor(request), reason: reason))
        }
        models.get(":name/aliases") { _, context in
            let aliases = try await store.aliases(name: try Self.name(context))
            return try JSONBody.response(Lists.Aliases(aliases: aliases))
        }
        models.get(":name/aliases/:alias") { _, context in
            let (name, alias) = try Self.alias(context)
            guard let found = try await store.alias(name: name, alias: alias) else { throw RegistryStoreError.unknownAlias(name, alias) }
            return try JSONBody.response(found)
        }
        models.put(":name/aliases/:alias") { request, context in
            let (name, alias) = try Self.alias(context, creating: true)
            let move = try await JSONBody.decode(AliasMove.self, from: request)
            guard move.version >= 1 else { throw WharfError(.invalidInput, "version must be a whole number from 1, not \(move.version)") }
            try Self.checkText(move.reason, "reason", maxBytes: Self.maxReasonBytes)
            let forced = try await policy.check(store: store, name: name, alias: alias, version: move.version, force: move.force ?? false, reason: move.reason)
            if move.dryRun == true {
                guard let target = try await store.version(name: name, version: move.version) else { throw RegistryStoreError.unknownVersion(name, move.version) }
                guard target.state != .archived else { throw RegistryStoreError.archived(name, move.version) }
                let current = try await store.alias(name: name, alias: alias)
                return try JSONBody.response(AuditEntry(id: 0, name: name, action: "alias.set", alias: alias, fromVersion: current?.version, toVersion: move.version,
                                                        actor: Self.actor(request), reason: move.reason, forced: forced, at: Date()))
            }
            let entry = try await store.setAlias(name: name, alias: alias, version: move.version, actor: Self.actor(request), reason: move.reason, forced: forced)
            return try JSONBody.response(entry)
        }
        models.delete(":name/aliases/:alias") { request, context in
            let (name, alias) = try Self.alias(context)
            let reason = try await Self.reason(request)
            return try JSONBody.response(try await store.deleteAlias(name: name, alias: alias, actor: Self.actor(request), reason: reason))
        }
        models.get(":name/audit") { _, context in try await auditLog(context) }

        router.put("/v1/runs/:id") { request, context in
            let id = try context.parameters.require("id")
            let run = try await JSONBody.decode(PipelineRun.self, from: request, limit: PipelineRun.maxRecordBytes).validated()
            guard run.id == id else { throw WharfError(.invalidInput, "id: the body is run \(run.id.prefix(80)), the path \(id.prefix(80))") }
            try await store.saveRun(run)
            return try JSONBody.response(run)
        }
        router.get("/v1/runs") { request, _ in
            let query = try RunQuery(request)
            return try JSONBody.response(Lists.Runs(runs: try await store.runs(pipeline: query.pipeline, limit: query.limit)))
        }
        router.get("/v1/runs/:id") { _, context in
            let id = try context.parameters.require("id")
            try RegistryName.check(id, kind: "run")
            guard let run = try await store.run(id: id) else { throw WharfError(.notFound, "no pipeline run \(id)") }
            return try JSONBody.response(run)
        }

        router.post("/v1/artifacts") { request, _ in try await upload(request) }
        router.get("/v1/artifacts/:sha256") { _, context in
            try await artifactResponse(try context.parameters.require("sha256"))
        }
    }

    /// List answers, each an object with one array (room for paging fields later).
    enum Lists {
        struct Models: Encodable { var models: [RegisteredModel] }
        struct Versions: Encodable { var versions: [ModelVersion] }
        struct Aliases: Encodable { var aliases: [ModelAlias] }
        struct Audit: Encodable { var entries: [AuditEntry] }
        struct Runs: Codable { var runs: [PipelineRun] }
    }

    private func auditLog(_ context: Context) async throws -> Response {
        let name = try Self.name(context)
        let entries = try await store.audit(name: name)
        return try JSONBody.response(Lists.Audit(entries: entries))
    }

    /// Streams the body into the artifact store a chunk at a time. The writes and the final
    /// flushes run on NIO's blocking-I/O pool, as downloads do: an upload (its fsync above all)
    /// must not hold one of Swift's cooperative threads, which every other route needs.
    private func upload(_ request: Request) async throws -> Response {
        let upload = try await NIOThreadPool.singleton.runIfActive { [artifacts] in UploadInFlight(try artifacts.beginUpload()) }
        for try await buffer in request.body {
            try await NIOThreadPool.singleton.runIfActive { try buffer.withUnsafeReadableBytes { bytes in try upload.value.append(bytes) } }
        }
        let artifact = try await NIOThreadPool.singleton.runIfActive { try upload.value.finish() }
        return try JSONBody.response(artifact, status: .created)
    }

    /// The artifact, verified first, then streamed a chunk at a time. The file is read on NIO's
    /// blocking-I/O pool, not on Swift's cooperative threads: a large artifact downloaded many
    /// times at once must not stall every other route (health checks, alias polls).
    private func artifactResponse(_ digest: String) async throws -> Response {
        let artifacts = artifacts
        let path = try await NIOThreadPool.singleton.runIfActive { try artifacts.verifiedPath(digest) }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
        var headers: HTTPFields = [.contentType: "application/octet-stream"]
        headers[.init("x-wharf-artifact-sha256")!] = digest
        if let size { headers[.contentLength] = String(size) }
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            let reader = try ArtifactReader(path: path)
            while let chunk = try await NIOThreadPool.singleton.runIfActive({ try reader.next() }) { try await writer.write(ByteBuffer(bytes: chunk)) }
            try await writer.finish(nil)
        })
    }

    private func resolveVersion(_ context: Context) async throws -> ModelVersion {
        let name = try Self.name(context)
        let text = try context.parameters.require("version")
        guard let number = Int(text), number >= 1 else { throw WharfError(.invalidInput, "version \"\(text.prefix(40))\" must be a whole number from 1") }
        guard let version = try await store.version(name: name, version: number) else { throw RegistryStoreError.unknownVersion(name, number) }
        return version
    }

    private static func name(_ context: Context) throws -> String {
        let name = try context.parameters.require("name")
        try RegistryName.check(name, kind: "model")
        return name
    }

    /// `creating`: a PUT, which may not make an all-digit alias; reads and removals take any
    /// name the registry once accepted (an older all-digit alias can still be removed).
    private static func alias(_ context: Context, creating: Bool = false) throws -> (String, String) {
        let alias = try context.parameters.require("alias")
        if creating { try RegistryName.checkAlias(alias) } else { try RegistryName.check(alias, kind: "alias") }
        return (try name(context), alias)
    }

    /// Who made a change: `X-Wharf-Actor` (a person or pipeline name), else "api".
    private static func actor(_ request: Request) -> String {
        guard let actor = request.headers[HTTPField.Name("x-wharf-actor")!], !actor.isEmpty else { return "api" }
        return String(actor.prefix(128))
    }

    static let maxReasonBytes = 1000

    /// A text field kept in the audit log or a record: no control characters (a NUL cut the
    /// text short in SQLite and failed the insert in PostgreSQL), at most `maxBytes`.
    static func checkText(_ text: String?, _ field: String, maxBytes: Int) throws(WharfError) {
        guard let text else { return }
        guard text.utf8.count <= maxBytes else { throw WharfError(.invalidInput, "\(field) is longer than \(maxBytes) bytes") }
        guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw WharfError(.invalidInput, "\(field) must not contain control characters")
        }
    }

    /// The reason of an archive or an alias removal: the body is optional (`{}`, or nothing).
    private static func reason(_ request: Request) async throws -> String? {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: 64 << 10)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw WharfError(.payloadTooLarge, "the request body is larger than \(64 << 10) bytes")
        }
        guard buffer.readableBytesView.contains(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) else { return nil }
        let reason = try JSONBody.decode(Reason.self, from: Data(buffer.readableBytesView)).reason
        try checkText(reason, "reason", maxBytes: maxReasonBytes)
        return reason
    }

    /// A validation record as `wharf validate` writes it: a fingerprint like the validation
    /// data's, finite figures, and `passed` only when no gate failed (the promotion policy
    /// trusts it).
    private static func check(_ record: ValidationRecord) throws(WharfError) {
        try RegistryName.checkDigest(record.data.sha256)
        guard record.data.rows > 0, record.data.columns > 0 else { throw WharfError(.invalidInput, "data: rows and columns must be positive") }
        guard record.metrics.count <= 1000, record.gates.count <= 1000 else { throw WharfError(.invalidInput, "at most 1000 metrics and 1000 gates") }
        if let bad = record.metrics.first(where: { !$0.value.isFinite }) { throw WharfError(.invalidInput, "metrics.\(bad.key.prefix(64)) is not a finite number") }
        for (index, gate) in record.gates.enumerated() {
            try checkText(gate.gate, "gates[\(index)].gate", maxBytes: 256)
            try checkText(gate.detail, "gates[\(index)].detail", maxBytes: 4096)
            guard gate.value?.isFinite ?? true, gate.threshold?.isFinite ?? true else {
                throw WharfError(.invalidInput, "gates[\(index)]: value and threshold must be finite numbers")
            }
        }
        if record.passed, let failed = record.gates.firstIndex(where: { !$0.passed }) {
            throw WharfError(.invalidInput, "passed is true, but gates[\(failed)] (\(record.gates[failed].gate.prefix(64))) failed")
        }
        try checkText(record.against, "against", maxBytes: 256)
    }

    private static func check(_ draft: VersionDraft) throws(WharfError) {
        try RegistryName.checkDigest(draft.artifact.sha256)
        guard draft.artifact.size > 0 else { throw WharfError(.invalidInput, "artifact.size must be positive") }
        guard !draft.format.isEmpty, draft.format.count <= 64 else { throw WharfError(.invalidInput, "format must have 1 to 64 characters") }
        try checkText(draft.format, "format", maxBytes: 256)
        for (index, type) in draft.signature.featureTypes.enumerated() where type != "numeric" && type != "categorical" {
            throw WharfError(.invalidInput, "signature.feature_types[\(index)] must be numeric or categorical, not \"\(type.prefix(40))\"")
        }
        if let data = draft.lineage.trainingData {
            do {
                try RegistryName.checkDigest(data.sha256)
            } catch {
                throw WharfError(.invalidInput, "lineage.training_data.sha256: \(error.message)")
            }
            guard data.rows > 0, data.columns > 0 else { throw WharfError(.invalidInput, "lineage.training_data: rows and columns must be positive") }
        }
        try checkText(draft.lineage.codeRevision, "lineage.code_revision", maxBytes: 256)
        for (key, value) in draft.params { try checkText(key, "params key", maxBytes: 256); try checkText(value, "params.\(key.prefix(64))", maxBytes: 4096) }
        for (key, value) in draft.tags { try checkText(key, "tags key", maxBytes: 256); try checkText(value, "tags.\(key.prefix(64))", maxBytes: 4096) }
        guard ["binary", "multiclass", "regression"].contains(draft.task) else {
            throw WharfError(.invalidInput, "task must be binary, multiclass or regression, not \"\(draft.task.prefix(40))\"")
        }
        guard draft.signature.features.count == draft.signature.featureTypes.count else {
            throw WharfError(.invalidInput, "signature: \(draft.signature.features.count) features but \(draft.signature.featureTypes.count) feature_types")
        }
        if let parent = draft.lineage.parentVersion, parent < 1 { throw WharfError(.invalidInput, "lineage.parent_version must be at least 1") }
        guard draft.params.count <= 1000, draft.tags.count <= 1000 else { throw WharfError(.invalidInput, "at most 1000 params and 1000 tags") }
    }
}

/// `GET /v1/models/{name}`: the model and all its versions.
struct ModelDetail: Codable {
    var model: RegisteredModel
    var versions: [ModelVersion]
}

// A misspelt `dry_run` made a real move of the alias; `reson` dropped the reason from the audit log.
extension RegistryController.AliasMove {
    init(from decoder: any Decoder) throws {
        try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        version = try container.decode(Int.self, forKey: .version)
        reason = try container.decodeIfPresent(String.self, forKey: .reason)
        force = try container.decodeIfPresent(Bool.self, forKey: .force)
        dryRun = try container.decodeIfPresent(Bool.self, forKey: .dryRun)
    }
}

extension RegistryController.Reason {
    init(from decoder: any Decoder) throws {
        try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
        reason = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(String.self, forKey: .reason)
    }
}

/// One upload handed between this route's task and NIO's blocking-I/O pool: each step is awaited
/// before the next, so it is never used from two threads at once.
private final class UploadInFlight: @unchecked Sendable {
    let value: ArtifactStore.Upload
    init(_ value: ArtifactStore.Upload) { self.value = value }
}
