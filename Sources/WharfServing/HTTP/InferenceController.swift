import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import WharfCore
import WharfHTTP

extension HTTPField.Name {
    /// The binary tensor extension's length of the JSON part of a body.
    public static let inferenceHeaderContentLength = HTTPField.Name("Inference-Header-Content-Length")!
    /// Which model version answered.
    public static let modelVersion = HTTPField.Name("x-wharf-model-version")!
}

/// The Open Inference Protocol v2 REST API: health, metadata, inference and the model
/// repository extension. Handlers decode, call the data plane, encode.
struct InferenceController<Context: RequestContext>: Sendable {
    let service: InferenceService
    let manager: ModelManager
    let readiness: Readiness
    let maxBodyBytes: Int
    var predictionLog: PredictionLog? = nil
    var featureFiller: FeatureFiller? = nil

    static var serverVersion: String { "0.1.0" }

    func addRoutes(to router: Router<Context>) {
        router.get("/v2/health/live") { _, _ in Response.json(Array(#"{"live":true}"#.utf8)) }
        router.get("/v2/health/ready") { _, _ in
            guard readiness.isReady else {
                throw WharfError(.unavailable, readiness.isShuttingDown ? "the server is shutting down" : "models are still loading")
            }
            return Response.json(Array(#"{"ready":true}"#.utf8))
        }
        router.get("/v2") { _, _ in
            var json = JSONWriter()
            json.raw(#"{"name":"wharf","version":"\#(Self.serverVersion)","extensions":["binary_tensor_data","model_repository"]}"#)
            return Response.json(json.bytes)
        }
        router.get("/v2/models") { _, _ in
            var json = JSONWriter()
            json.raw(#"{"models":["#)
            for (index, name) in manager.store.names.enumerated() {
                if index > 0 { json.raw(",") }
                json.string(name)
            }
            json.raw("]}")
            return Response.json(json.bytes)
        }
        router.get("/v2/models/:model") { _, context in try metadata(context, version: nil) }
        router.get("/v2/models/:model/versions/:version") { _, context in
            try metadata(context, version: context.parameters.require("version"))
        }
        router.get("/v2/models/:model/ready") { _, context in try modelReady(context, version: nil) }
        router.get("/v2/models/:model/versions/:version/ready") { _, context in
            try modelReady(context, version: context.parameters.require("version"))
        }
        router.post("/v2/models/:model/infer") { request, context in try await infer(request, context, version: nil) }
        router.post("/v2/models/:model/versions/:version/infer") { request, context in
            try await infer(request, context, version: context.parameters.require("version"))
        }
        router.post("/v2/repository/index") { request, _ in
            repositoryIndex(readyOnly: try await Self.readyOnly(request))
        }
        router.post("/v2/repository/models/:model/load") { _, context in
            let name = try context.parameters.require("model")
            // The name is looked up as a directory of the repository: nothing that leaves it.
            guard name != ".", name != "..", !name.contains("/"), !name.contains("\u{0}") else {
                throw WharfError(.invalidInput, "\"\(name.prefix(64))\" is not a model name")
            }
            let version = try await manager.load(name, force: true)
            var json = JSONWriter()
            json.raw(#"{"name":"#)
            json.string(name)
            json.raw(#","version":"#)
            json.string(version)
            json.raw(#","state":"READY"}"#)
            return Response.json(json.bytes)
        }
        router.post("/v2/repository/models/:model/unload") { _, context in
            try manager.unload(try context.parameters.require("model"))
            return Response.emptyOK
        }
    }

    func infer(_ request: Request, _ context: Context, version: String?) async throws -> Response {
        let started = ContinuousClock.now
        let name = try context.parameters.require("model")
        let headerLength = try request.headers[.inferenceHeaderContentLength].map { text throws(WharfError) -> Int in
            guard let value = Int(text) else {
                throw WharfError(.invalidInput, "Inference-Header-Content-Length \"\(text.prefix(32))\" is not a number")
            }
            return value
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBodyBytes)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw WharfError(.payloadTooLarge, "the request body is larger than \(maxBodyBytes) bytes")
        }
        var inference = try body.withUnsafeReadableBytes { bytes throws(WharfError) in
            try InferenceRequestDecoder.decode(bytes, headerLength: headerLength)
        }
        if let featureFiller, inference.parameters["entity_id"] != nil || inference.parameters["entity_ids"] != nil {
            let metadata = try manager.store.resolve(name, version: version).metadata
            inference = try await featureFiller.fill(inference, names: metadata.featureNames ?? (0..<metadata.featureCount).map { "f\($0)" })
        }
        let response = try await service.infer(inference, model: name, version: version)
        if let predictionLog {
            let requestID = context.logger[metadataKey: "request_id"].map { "\($0)" }
            predictionLog.record(requestID: requestID, model: name, response: response, request: inference, latency: .now - started)
        }
        let encoded = InferenceResponseEncoder.encode(response)
        var headers: HTTPFields = [:]
        if let version = response.modelVersion { headers[.modelVersion] = version }
        if let headerLength = encoded.headerLength {
            headers[.inferenceHeaderContentLength] = String(headerLength)
            headers[.contentType] = "application/octet-stream"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: encoded.body)))
        }
        return Response.json(encoded.body, headers: headers)
    }

    private func metadata(_ context: Context, version: String?) throws -> Response {
        let served = try manager.store.resolve(try context.parameters.require("model"), version: version)
        let meta = served.metadata
        var json = JSONWriter(capacity: 512)
        json.raw(#"{"name":"#)
        json.string(served.name)
        json.raw(#","versions":["#)
        json.raw(manager.store.versions(of: served.name).map { "\"\($0)\"" }.joined(separator: ","))
        json.raw(#"],"platform":"#)
        json.string("wharf_\(meta.format.rawValue)")
        json.raw(#","inputs":[{"name":"input-0","datatype":"FP64","shape":[-1,\#(meta.featureCount)]}],"outputs":["#)
        for (index, spec) in OutputBuilder.specs(for: meta).enumerated() {
            if index > 0 { json.raw(",") }
            json.raw(#"{"name":"\#(spec.name)","datatype":"\#(spec.datatype.rawValue)","shape":[\#(spec.shape.map(String.init).joined(separator: ","))]}"#)
        }
        json.raw(#"],"parameters":{"version":"#)
        json.string(served.version)
        json.raw(#","task":"\#(meta.task.rawValue)","objective":"#)
        json.string(meta.objective)
        if let names = meta.featureNames {
            json.raw(#","feature_names":["#)
            for (index, name) in names.enumerated() {
                if index > 0 { json.raw(",") }
                json.string(name)
            }
            json.raw("]")
        }
        json.raw("}}")
        return Response.json(json.bytes)
    }

    private func modelReady(_ context: Context, version: String?) throws -> Response {
        let served = try manager.store.resolve(try context.parameters.require("model"), version: version)
        guard readiness.isReady || !readiness.isShuttingDown else {
            throw WharfError(.unavailable, "the server is shutting down")
        }
        var json = JSONWriter()
        json.raw(#"{"name":"#)
        json.string(served.name)
        json.raw(#","version":"#)
        json.string(served.version)
        json.raw(#","ready":true}"#)
        return Response.json(json.bytes)
    }

    /// The index request's optional body, `{"ready": true}`: list only models ready to answer.
    private static func readyOnly(_ request: Request) async throws -> Bool {
        let body = try await request.body.collect(upTo: 64 * 1024)
        guard body.readableBytes > 0 else { return false }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
            throw WharfError(.invalidInput, "the repository index request must be a JSON object, like {\"ready\": true}")
        }
        guard let ready = object["ready"] else { return false }
        guard let flag = ready as? Bool else {
            throw WharfError(.invalidInput, "\"ready\" must be true or false")
        }
        return flag
    }

    private func repositoryIndex(readyOnly: Bool) -> Response {
        var json = JSONWriter()
        json.raw("[")
        var first = true
        var listed = Set<String>()
        for entry in manager.store.index() {
            listed.insert(entry.name)
            if readyOnly, entry.state != "READY" { continue }
            if !first { json.raw(",") }
            first = false
            json.raw(#"{"name":"#)
            json.string(entry.name)
            if let version = entry.version {
                json.raw(#","version":"#)
                json.string(version)
            }
            json.raw(#","state":"\#(entry.state)","reason":"#)
            json.string(entry.reason)
            json.raw("}")
        }
        // Models in the catalog that were never loaded (or were unloaded).
        for name in manager.catalog.modelNames where !listed.contains(name) && !readyOnly {
            if !first { json.raw(",") }
            first = false
            json.raw(#"{"name":"#)
            json.string(name)
            json.raw(#","state":"UNAVAILABLE","reason":"not loaded"}"#)
        }
        json.raw("]")
        return Response.json(json.bytes)
    }
}
