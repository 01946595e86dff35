import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import WharfCore

/// Turns every error a handler throws into the JSON body Wharf's APIs promise,
/// `{"error": "<what was wrong>"}`, with the status chosen in ``ErrorAnswer``, once, from the
/// error's code.
public struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let answer = ErrorAnswer(for: error, method: request.method, path: request.uri.path, logger: context.logger)
            return Response(status: answer.status, headers: answer.headers, body: ResponseBody(byteBuffer: answer.body))
        }
    }

    public static func response(status: HTTPResponse.Status, message: String, headers: HTTPFields = [:]) -> Response {
        let answer = ErrorAnswer(status: status, message: message, headers: headers)
        return Response(status: answer.status, headers: answer.headers, body: ResponseBody(byteBuffer: answer.body))
    }
}

/// An answer as the client gets it: status, headers and body. Made from an error here, for the
/// router's middleware and for handlers outside the router (the gateway's inference path).
///
/// ``WharfError``s map by code (503 also gets `Retry-After`); Hummingbird's own errors (an
/// unknown route, a body over the limit) keep their status and headers; anything else is a 500
/// whose details stay in the log.
public struct ErrorAnswer: Sendable {
    public var status: HTTPResponse.Status
    public var headers: HTTPFields
    public var body: ByteBuffer

    public init(status: HTTPResponse.Status, headers: HTTPFields, body: ByteBuffer) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// `{"error": message}`.
    public init(status: HTTPResponse.Status, message: String, headers: HTTPFields = [:]) {
        var writer = JSONWriter(capacity: message.utf8.count + 16)
        writer.raw("{\"error\":")
        writer.string(message)
        writer.raw("}")
        var fields = headers
        fields[.contentType] = "application/json"
        self.init(status: status, headers: fields, body: ByteBuffer(bytes: writer.bytes))
    }

    public init(for error: any Error, method: HTTPRequest.Method, path: String, logger: Logger) {
        switch error {
        case let error as WharfError:
            let status = Self.status(for: error.code)
            if status == .internalServerError {
                logger.error("request failed", metadata: ["error": "\(error)"])
            } else {
                logger.debug("request refused", metadata: ["error": "\(error)"])
            }
            var headers: HTTPFields = [:]
            if error.code == .unavailable { headers[.retryAfter] = "1" }
            self.init(status: status, message: error.message, headers: headers)
        case let error as HTTPError:
            let message = error.body ?? Self.defaultMessage(for: error.status, method: method, path: path)
            self.init(status: error.status, message: message, headers: error.headers)
        case let error as any HTTPResponseError:
            self.init(status: error.status, message: Self.defaultMessage(for: error.status, method: method, path: path))
        default:
            logger.error("request failed", metadata: ["error": "\(error)"])
            self.init(status: .internalServerError, message: "internal error")
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

    static func defaultMessage(for status: HTTPResponse.Status, method: HTTPRequest.Method, path: String) -> String {
        switch status {
        case .notFound: "no route for \(method) \(path)"
        case .contentTooLarge: "the request body is larger than the limit"
        case .methodNotAllowed: "\(method) is not allowed on \(path)"
        default: status.reasonPhrase
        }
    }
}
