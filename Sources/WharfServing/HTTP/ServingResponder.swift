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
    let metrics: MetricsMiddleware<Context>
    let errors: ErrorMiddleware<Context>
    let controller: InferenceController<Context>

    static let inferPath = "/v2/models/{model}/infer"
    static let versionedInferPath = "/v2/models/{model}/versions/{version}/infer"

    func respond(to request: Request, context: Context) async throws -> Response {
        guard request.method == .post, let (model, version) = Self.inferTarget(request.uri.path) else {
            return try await router.respond(to: request, context: context)
        }
        var context = context
        if let version {
            context.coreContext.parameters = ["model": model, "version": version]
            context.coreContext.endpointPath.value = Self.versionedInferPath
        } else {
            context.coreContext.parameters = ["model": model]
            context.coreContext.endpointPath.value = Self.inferPath
        }
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
    /// else (other paths, empty segments, a trailing slash, a query left in) → nil.
    static func inferTarget(_ path: String) -> (model: Substring, version: Substring?)? {
        guard path.hasPrefix("/v2/models/"), path.hasSuffix("/infer") else { return nil }
        // "", "v2", "models", M, "infer"  or  "", "v2", "models", M, "versions", V, "infer"
        let segments = path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard segments.dropFirst().allSatisfy({ !$0.isEmpty }) else { return nil }
        switch segments.count {
        case 5:
            return (Substring(segments[3]), nil)
        case 7 where segments[4].elementsEqual("versions".utf8):
            return (Substring(segments[3]), Substring(segments[5]))
        default:
            return nil
        }
    }
}
