import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import WharfCore

/// A typed client of the registry API (docs/registry-openapi.yaml), used by `wharf models`,
/// `wharf validate` and `wharf serve --registry`.
///
/// Every non-2xx answer becomes a ``WharfError`` carrying the server's message and a code
/// matching its status; an unreachable registry is ``WharfError/Code/unavailable``.
public struct RegistryClient: Sendable {
    public let baseURL: String
    let token: String?
    let actor: String?
    let http: HTTPClient
    let timeout: TimeAmount

    public init(baseURL: String, token: String? = nil, actor: String? = nil, http: HTTPClient = RegistryClient.failFast, timeout: TimeAmount = .seconds(60)) {
        var url = baseURL
        while url.hasSuffix("/") { url.removeLast() }
        self.baseURL = url
        self.token = token
        self.actor = actor
        self.http = http
        self.timeout = timeout
    }

    /// A client that reports a service that is down at once: connection errors are not retried
    /// until the deadline (async-http-client's default), and connecting gives up after 2 s.
    public static let failFast: HTTPClient = makeHTTPClient()

    /// `failFast`, for the calls a long-running service makes on its own (the alias watch of
    /// `wharf serve --registry`, the model server's feature lookups and prediction log): an
    /// answer that sends nothing for 30 s is cut. A request's `timeout` covers only the wait for
    /// the answer's head, so without it a server that stalls part-way through a body would hold
    /// such a call, and what waits on it, for ever. Not for the command line, where a slow
    /// answer (a large lookup, an artifact hashed before it is sent) is worth waiting for.
    public static let forServices: HTTPClient = makeHTTPClient(readTimeout: .seconds(30))

    /// `failFast`'s configuration, with an optional read timeout: how long an answer may send
    /// nothing (after the request is sent, head and body alike) before it is cut.
    public static func makeHTTPClient(readTimeout: TimeAmount? = nil) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(2)
        configuration.timeout.read = readTimeout
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    // MARK: - Models and versions

    public func models() async throws -> [RegisteredModel] {
        struct List: Decodable { var models: [RegisteredModel] }
        return try await get("/v1/models", as: List.self).models
    }

    public func model(_ name: String) async throws -> (model: RegisteredModel, versions: [ModelVersion]) {
        struct Detail: Decodable {
            var model: RegisteredModel
            var versions: [ModelVersion]
        }
        let detail = try await get("/v1/models/\(try segment(name, "model"))", as: Detail.self)
        return (detail.model, detail.versions)
    }

    public func version(_ name: String, _ version: Int) async throws -> ModelVersion {
        try await get("/v1/models/\(try segment(name, "model"))/versions/\(version)", as: ModelVersion.self)
    }

    /// The version a reference names: `NAME@3`, or `NAME@production` resolved now.
    public func resolve(_ reference: ModelReference) async throws -> ModelVersion {
        switch reference.selector {
        case .version(let number): return try await version(reference.name, number)
        case .alias(let alias): return try await version(reference.name, try await self.alias(reference.name, alias).version)
        }
    }

    public func alias(_ name: String, _ alias: String) async throws -> ModelAlias {
        try await get("/v1/models/\(try segment(name, "model"))/aliases/\(try segment(alias, "alias"))", as: ModelAlias.self)
    }

    public func audit(_ name: String) async throws -> [AuditEntry] {
        struct Log: Decodable { var entries: [AuditEntry] }
        return try await get("/v1/models/\(try segment(name, "model"))/audit", as: Log.self).entries
    }

    /// Uploads the file (streamed from disk), then registers it as the next version of `name`.
    public func register(_ name: String, file: String, draft: (ArtifactReference) -> VersionDraft) async throws -> ModelVersion {
        let artifact = try await uploadArtifact(file: file)
        return try await send(.POST, "/v1/models/\(try segment(name, "model"))/versions", body: draft(artifact), as: ModelVersion.self)
    }

    public func uploadArtifact(file: String) async throws -> ArtifactReference {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: file), let size = attributes[.size] as? Int else {
            throw WharfError(.notFound, "cannot read \(file): no such file or no permission")
        }
        guard let handle = FileHandle(forReadingAtPath: file) else { throw WharfError(.notFound, "cannot open \(file)") }
        // Read a chunk only when the connection wants one: a large file is never all in memory.
        let reader = ChunkReader(handle)
        let chunks = AsyncThrowingStream<ByteBuffer, any Error> { reader.next() }
        var request = makeRequest(.POST, "/v1/artifacts")
        request.headers.add(name: "content-type", value: "application/octet-stream")
        request.body = .stream(chunks, length: .known(Int64(size)))
        return try await execute(request, as: ArtifactReference.self)
    }

    /// A version's model file, checked against its registered sha256 and size.
    public func downloadArtifact(of version: ModelVersion) async throws -> [UInt8] {
        let request = makeRequest(.GET, "/v1/artifacts/\(version.artifact.sha256)")
        let response = try await perform(request)
        let body = try await collect(response, limit: version.artifact.size + 1)
        guard (200..<300).contains(response.status.code) else { throw Self.failure(response.status, body) }
        let bytes = Array(body.readableBytesView)
        guard bytes.count == version.artifact.size, SHA256.hash(bytes).hex == version.artifact.sha256 else {
            throw WharfError(.io, "the artifact of \(version.name)@\(version.version) did not arrive intact (size or sha256 differs)")
        }
        return bytes
    }

    // MARK: - Changes

    public func setValidationData(_ name: String, _ data: DatasetFingerprint) async throws -> AuditEntry {
        try await send(.PUT, "/v1/models/\(try segment(name, "model"))/validation-data", body: data, as: AuditEntry.self)
    }

    public func addValidation(_ name: String, _ version: Int, _ record: ValidationRecord) async throws -> ModelVersion {
        try await send(.POST, "/v1/models/\(try segment(name, "model"))/versions/\(version)/validations", body: record, as: ModelVersion.self)
    }

    /// Moves the alias; with `dryRun`, only checks that the registry would (its promotion
    /// policy), throwing its refusal.
    public func setAlias(_ name: String, _ alias: String, version: Int, reason: String? = nil, force: Bool = false,
                         dryRun: Bool = false) async throws -> AuditEntry {
        struct Move: Encodable {
            var version: Int
            var reason: String?
            var force: Bool
            var dryRun: Bool?

            enum CodingKeys: String, CodingKey {
                case version, reason, force
                case dryRun = "dry_run"
            }
        }
        return try await send(.PUT, "/v1/models/\(try segment(name, "model"))/aliases/\(try segment(alias, "alias"))",
                              body: Move(version: version, reason: reason, force: force, dryRun: dryRun ? true : nil), as: AuditEntry.self)
    }

    public func deleteAlias(_ name: String, _ alias: String, reason: String? = nil) async throws -> AuditEntry {
        try await send(.DELETE, "/v1/models/\(try segment(name, "model"))/aliases/\(try segment(alias, "alias"))",
                       body: ["reason": reason], as: AuditEntry.self)
    }

    public func archive(_ name: String, _ version: Int, reason: String? = nil) async throws -> ModelVersion {
        try await send(.POST, "/v1/models/\(try segment(name, "model"))/versions/\(version)/archive", body: ["reason": reason], as: ModelVersion.self)
    }

    // MARK: - Pipeline runs

    public func saveRun(_ run: PipelineRun) async throws {
        _ = try await send(.PUT, "/v1/runs/\(try segment(run.id, "run"))", body: run, as: PipelineRun.self)
    }

    /// The newest `limit` runs, oldest first.
    public func runs(pipeline: String? = nil, limit: Int = 100) async throws -> [PipelineRun] {
        struct Runs: Decodable { var runs: [PipelineRun] }
        var query = "?limit=\(limit)"
        if let pipeline { query += "&pipeline=\(try segment(pipeline, "pipeline"))" }
        return try await get("/v1/runs" + query, as: Runs.self).runs
    }

    public func run(_ id: String) async throws -> PipelineRun {
        try await get("/v1/runs/\(try segment(id, "run"))", as: PipelineRun.self)
    }

    // MARK: - Plumbing

    private func segment(_ name: String, _ kind: String) throws(WharfError) -> String {
        try RegistryName.check(name, kind: kind)
        return name
    }

    private func makeRequest(_ method: HTTPMethod, _ path: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        if let actor { request.headers.add(name: "x-wharf-actor", value: actor) }
        return request
    }

    private func get<T: Decodable>(_ path: String, as type: T.Type) async throws -> T {
        try await execute(makeRequest(.GET, path), as: type)
    }

    private func send<T: Decodable>(_ method: HTTPMethod, _ path: String, body: some Encodable, as type: T.Type) async throws -> T {
        var request = makeRequest(method, path)
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try Self.encoder.encode(body)))
        return try await execute(request, as: type)
    }

    private func execute<T: Decodable>(_ request: HTTPClientRequest, as type: T.Type) async throws -> T {
        let response = try await perform(request)
        let body = try await collect(response, limit: 64 << 20)
        guard (200..<300).contains(response.status.code) else { throw Self.failure(response.status, body) }
        do {
            return try Self.decoder.decode(type, from: Data(body.readableBytesView))
        } catch {
            throw WharfError(.internalError, "the registry at \(baseURL) answered with JSON this client cannot read: \(error)")
        }
    }

    private func perform(_ request: HTTPClientRequest) async throws -> HTTPClientResponse {
        try ServiceURL.check(baseURL, "the registry URL")
        do {
            return try await http.execute(request, timeout: timeout)
        } catch let error as HTTPClientError where error == .readTimeout {
            throw WharfError(.unavailable, "the registry at \(baseURL) sent no answer within the read timeout")
        } catch {
            throw WharfError(.unavailable, "cannot reach the registry at \(baseURL): \(error)")
        }
    }

    private func collect(_ response: HTTPClientResponse, limit: Int) async throws -> ByteBuffer {
        do {
            return try await response.body.collect(upTo: limit)
        } catch let error as HTTPClientError where error == .readTimeout {
            throw WharfError(.unavailable, "the registry at \(baseURL) stopped sending its answer part-way")
        } catch {
            throw WharfError(.io, "the registry's answer was cut short or larger than \(limit) bytes")
        }
    }

    /// The server's `{"error": …}` as a ``WharfError`` whose code matches the status.
    public static func failure(_ status: HTTPResponseStatus, _ body: ByteBuffer) -> WharfError {
        struct ErrorBody: Decodable { var error: String }
        let message = (try? JSONDecoder().decode(ErrorBody.self, from: Data(body.readableBytesView)))?.error
            ?? "HTTP \(status.code) \(status.reasonPhrase)"
        let code: WharfError.Code = switch status.code {
        case 400: .invalidInput
        case 401: .unauthorized
        case 403: .forbidden
        case 404: .notFound
        case 409: .conflict
        case 413: .payloadTooLarge
        case 429, 503: .unavailable
        default: .internalError
        }
        return WharfError(code, message)
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()
}

/// A file read a chunk at a time by one consumer (the upload stream, which asks in turn).
private final class ChunkReader: @unchecked Sendable {
    private let handle: FileHandle

    init(_ handle: FileHandle) {
        self.handle = handle
    }

    deinit { try? handle.close() }

    func next() -> ByteBuffer? {
        let data = handle.readData(ofLength: 1 << 20)
        return data.isEmpty ? nil : ByteBuffer(bytes: data)
    }
}
