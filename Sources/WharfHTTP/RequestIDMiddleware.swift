import HTTPTypes
import Hummingbird
import Logging
import WharfCore

extension HTTPField.Name {
    /// Correlates one request across services and logs.
    public static let requestID = HTTPField.Name("x-request-id")!
}

/// Accepts the caller's `x-request-id` (or makes one), puts it on every log line of the request
/// and echoes it in the response, so one request can be followed through gateway, server and logs.
public struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let id = request.headers[.requestID].flatMap { Self.isAcceptable($0) ? $0 : nil } ?? Self.makeID()
        context.logger[metadataKey: "request_id"] = .string(id)
        var response = try await next(request, context)
        response.headers[.requestID] = id
        return response
    }

    /// Ids from callers are echoed into headers and logs: keep them short and printable.
    static func isAcceptable(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128 && id.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    static func makeID() -> String {
        var random = SystemRandomNumberGenerator()
        let value = random.next() as UInt64
        let text = String(value, radix: 16)
        return String(repeating: "0", count: 16 - text.count) + text
    }
}
