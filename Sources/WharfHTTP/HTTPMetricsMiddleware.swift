import Dispatch
import HTTPTypes
import Hummingbird
import Metrics
import Synchronization

/// Counts requests, errors and time per route, method and status, under the same names and
/// dimensions as Hummingbird's `MetricsMiddleware` (`hb_requests`, `hb_request_errors`,
/// `http_server_request_duration`, `http_server_active_requests`).
///
/// Hummingbird's version records after the body is written, by wrapping every body in a
/// closure. A wrapped body loses Hummingbird's single write of head, body and end: the head,
/// the body and the end then go out as three writes from the task to the event loop, and the
/// answer leaves as two TCP segments, so whoever reads it (a client, the gateway) wakes twice
/// per answer. Every body this project answers with is a buffer made before the handler
/// returns, so the time is taken when the response is made, which is when it is written, and
/// the body is left as it is.
public struct HTTPMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    private let cache = HTTPMetricsCache()

    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = DispatchTime.now().uptimeNanoseconds
        let active = cache.activeRequests(request.method)
        active.increment()
        defer { active.decrement() }
        do {
            let response = try await next(request, context)
            let route = cache.route(context.endpointPath ?? "Unknown", request.method, response.status)
            route.requests.increment()
            route.duration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds &- started))
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status ?? .internalServerError
            let route = cache.route(context.endpointPath ?? "NotFound", request.method, status)
            route.requests.increment()
            route.errors.increment()
            throw error
        }
    }
}

/// The metric handles of each route, method and status: made once, looked up per request.
final class HTTPMetricsCache: Sendable {
    struct RouteKey: Hashable {
        var route: String
        var method: HTTPRequest.Method
        var status: HTTPResponse.Status
    }

    struct RouteMetrics: Sendable {
        let requests: Counter
        let duration: Timer
        let errors: Counter

        init(_ key: RouteKey) {
            let method = key.method.rawValue
            let status = String(key.status.code)
            requests = Counter(label: "hb.requests", dimensions: [
                ("http.route", key.route), ("http.request.method", method), ("http.response.status_code", status),
            ])
            duration = Timer(label: "http.server.request.duration", dimensions: [
                ("http.route", key.route), ("http.request.method", method), ("http.response.status_code", status),
            ], preferredDisplayUnit: .seconds)
            errors = Counter(label: "hb.request.errors", dimensions: [
                ("http.route", key.route), ("http.request.method", method), ("error.type", status),
            ])
        }
    }

    private let routes = Mutex<[RouteKey: RouteMetrics]>([:])
    private let active = Mutex<[HTTPRequest.Method: Meter]>([:])

    func route(_ route: String, _ method: HTTPRequest.Method, _ status: HTTPResponse.Status) -> RouteMetrics {
        let key = RouteKey(route: route, method: method, status: status)
        return routes.withLock { routes in
            if let known = routes[key] { return known }
            let made = RouteMetrics(key)
            routes[key] = made
            return made
        }
    }

    func activeRequests(_ method: HTTPRequest.Method) -> Meter {
        active.withLock { active in
            if let known = active[method] { return known }
            let made = Meter(label: "http.server.active_requests", dimensions: [("http.request.method", method.rawValue)])
            active[method] = made
            return made
        }
    }
}
