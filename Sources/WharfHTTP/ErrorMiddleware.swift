import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import WharfCore

/// Turns every error a handler throws into the JSON body Wharf's APIs promise,
/// `{"error": "<what was wrong>"}`, with the status chosen here, once, from the error's code.
///
/// ``WharfError``s map by code; Hummingbird's own errors (an unknown route, a body over the
/// limit) keep their status; anything else is a 500 whose details stay in the log.
public struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as WharfError {
            let status = Self.status(for: error.code)
            if status == .internalServerError {
                context.logger.error("request failed", metadata: ["error": "\(error)"])
            } else {
                context.logger.debug("request refused", metadata: ["error": "\(error)"])
            }
            var headers: HTTPFields = [:]
            if error.code == .unavailable { headers[.retryAfter] = "1" }
            return Self.response(status: status, message: error.message, headers: headers)
        } catch let error as HTTPError {
            let message = error.body ?? Self.defaultMessage(for: error.status, request: request)
            return Self.response(status: error.status, message: message, headers: error.headers)
        } catch let error as any HTTPResponseError {
            return Self.response(status: error.status, message: Self.defaultMessage(for: error.status, request: request))
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)"])
            return Self.response(status: .internalServerError, message: "internal error")
        }
    }

    /// The HTTP status for each kind of ``WharfError``.
    public static func status(for code: WharfError.Code) -> HTTPResponse.Status {
        switch code {
        case .invalidInput, .invalidModel: .badRequest
        case .notFound: .notFound
        case .unavailable: .serviceUnavailable
        case .payloadTooLarge: .contentTooLarge
        case .unsupportedModel: .unprocessableContent
        case .conflict: .conflict
        case .unauthorized: .unauthorized
        case .forbidden: .forbidden
        default: .internalServerError
        }
    }

    static func defaultMessage(for status: HTTPResponse.Status, request: Request) -> String {
        switch status {
        case .notFound: "no route for \(request.method) \(request.uri.path)"
        case .contentTooLarge: "the request body is larger than the limit"
        case .methodNotAllowed: "\(request.method) is not allowed on \(request.uri.path)"
        default: status.reasonPhrase
        }
    }

    public static func response(status: HTTPResponse.Status, message: String, headers: HTTPFields = [:]) -> Response {
        var writer = JSONWriter(capacity: message.utf8.count + 16)
        writer.raw("{\"error\":")
        writer.string(message)
        writer.raw("}")
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: writer.bytes)))
    }
}
