import HTTPTypes
import Hummingbird
import WharfHTTP

/// The model server's responder: the router, except for the two inference routes, which are
/// recognised by a direct reading of the path.
///
/// Inference is nearly all of a model server's traffic, and matching its path in the router's
/// trie (a parameter dictionary and a walk over string components) was about 5 % of the CPU of
/// a one-row request in a profile. The fast path sets the same parameters and endpoint path the
/// router would and runs the same middleware in the same order, so answers, errors, logs and
/// metrics do not change; every other request, and any path it does not recognise exactly, goes
/// to the router.
struct ServingResponder: HTTPResponder {
    typealias Context = BasicRequestContext

    let router: RouterResponder<Context>
    let requestID: RequestIDMiddleware<Context>
    let metrics: HTTPMetricsMiddleware<Context>
    let errors: ErrorMiddleware<Context>
    let controller: InferenceController<Context>

    static let inferPath = "/v2/models/{model}/infer"
    static let versionedInferPath = "/v2/models/{model}/versions/{version}/infer"

    func respond(to request: Request, context: Context) async throws -> Response {
        guard request.method == .post, let (model, version) = Self.inferTarget(request.uri.path) else {
            return try await router.respond(to: request, context: context)
        }
        var context = context
        // Appended, not a dictionary literal: the literal's initializer is generic and was
        // instantiated at run time on every request.
        var parameters = Parameters()
        parameters.append(key: "model", value: model)
        if let version {
            parameters.append(key: "version", value: version)
            context.coreContext.endpointPath.value = Self.versionedInferPath
        } else {
            context.coreContext.endpointPath.value = Self.inferPath
        }
        context.coreContext.parameters = parameters
        let controller = controller
        let errors = errors
        let metrics = metrics
        return try await requestID.handle(request, context: context) { request, context in
            try await metrics.handle(request, context: context) { request, context in
                try await errors.handle(request, context: context) { request, context in
                    try await controller.infer(request, context, version: version.map(String.init))
                }
            }
        }
    }

    /// `/v2/models/M/infer` → (M, nil); `/v2/models/M/versions/V/infer` → (M, V); anything
    /// else (other paths, empty segments, a trailing slash) → nil. No allocation: this runs for
    /// every request.
    static func inferTarget(_ path: String) -> (model: Substring, version: Substring?)? {
        guard path.hasPrefix("/v2/models/"), path.hasSuffix("/infer") else { return nil }
        let utf8 = path.utf8
        let start = utf8.index(utf8.startIndex, offsetBy: 11)  // "/v2/models/"
        let end = utf8.index(utf8.endIndex, offsetBy: -6)  // "/infer"
        guard start < end else { return nil }
        let middle = path[start..<end]
        let slash = UInt8(ascii: "/")
        guard let cut = middle.utf8.firstIndex(of: slash) else { return (middle, nil) }
        let model = middle[..<cut]
        let rest = middle[middle.utf8.index(after: cut)...]
        guard !model.isEmpty, rest.hasPrefix("versions/") else { return nil }
        let version = rest[rest.utf8.index(rest.startIndex, offsetBy: 9)...]
        guard !version.isEmpty, !version.utf8.contains(slash) else { return nil }
        return (model, version)
    }
}
