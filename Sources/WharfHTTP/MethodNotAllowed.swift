import HTTPTypes
import Hummingbird

extension Router {
    /// Makes a known path asked with a method it does not take answer 405 Method Not Allowed,
    /// with `Allow` and the JSON error, where Hummingbird's router answers 404 ("no such
    /// path"). Call it once every route is added.
    ///
    /// `answeredElsewhere`: routes a server answers before its router (the gateway's inference
    /// path), so that their path is known here too; the router still never sees their method.
    public func refuseOtherMethods(answeredElsewhere: [(path: RouterPath, method: HTTPRequest.Method)] = []) {
        var allowed: [String: (path: RouterPath, methods: Set<HTTPRequest.Method>)] = [:]
        for (path, method) in routes.map({ ($0.path, $0.method) }) + answeredElsewhere {
            allowed[path.description, default: (path, [])].methods.insert(method)
        }
        for (path, methods) in allowed.values {
            let allow = methods.map(\.rawValue).sorted().joined(separator: ", ")
            for method in Self.refusable where !methods.contains(method) {
                on(path, method: method) { request, _ -> Response in
                    throw HTTPError(.methodNotAllowed, headers: [.allow: allow],
                                    message: "\(request.method) is not allowed on \(request.uri.path); it takes \(allow)")
                }
            }
        }
    }

    /// The methods a client could mean for a path that takes another (HEAD and OPTIONS keep
    /// the router's answer).
    private static var refusable: [HTTPRequest.Method] { [.get, .post, .put, .patch, .delete] }
}
