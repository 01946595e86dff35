import HTTPTypes
import Hummingbird
import WharfCore

/// Requires `Authorization: Bearer <token>` on writes (and on reads when `protectReads`).
///
/// Only the token's SHA-256 is kept; a presented token is hashed and compared in constant
/// time. Health probes and the OpenAPI document stay open.
public struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let tokenDigest: [UInt8]
    let protectReads: Bool
    /// What the messages call the service ("registry", "hub").
    let service: String
    /// Requests that only read (GET and HEAD, and any the service adds: a POST lookup, say).
    let isRead: @Sendable (Request) -> Bool

    /// `tokenSHA256`: the token's SHA-256, 64 hexadecimal digits.
    public init(
        tokenSHA256: String, protectReads: Bool, service: String = "registry",
        isRead: @escaping @Sendable (Request) -> Bool = { $0.method == .get || $0.method == .head }
    ) throws(WharfError) {
        try RegistryName.checkDigest(tokenSHA256.lowercased())
        let hex = Array(tokenSHA256.lowercased().utf8)
        tokenDigest = stride(from: 0, to: 64, by: 2).map { index in
            let value = { (byte: UInt8) -> UInt8 in byte <= 0x39 ? byte - 0x30 : byte - 0x61 + 10 }
            return value(hex[index]) << 4 | value(hex[index + 1])
        }
        self.protectReads = protectReads
        self.service = service
        self.isRead = isRead
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        let isRead = isRead(request)
        let open = path.hasPrefix("/v1/health/") || path == "/openapi.yaml" || path == "/metrics"
        if open || (isRead && !protectReads) { return try await next(request, context) }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw WharfError(.unauthorized, "\(isRead ? "reading" : "changing") the \(service) needs an Authorization: Bearer <token> header")
        }
        let presented = SHA256.hash(Array(header.utf8.dropFirst("Bearer ".utf8.count))).bytes
        var difference: UInt8 = 0
        for (a, b) in zip(presented, tokenDigest) { difference |= a ^ b }
        guard difference == 0 else { throw WharfError(.unauthorized, "the bearer token is not valid for this \(service)") }
        return try await next(request, context)
    }
}
