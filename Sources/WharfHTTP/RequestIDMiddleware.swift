import HTTPTypes
import Hummingbird
import Logging
import Synchronization
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
        let id = request.headers[.requestID].flatMap { RequestIDs.isAcceptable($0) ? $0 : nil } ?? RequestIDs.makeID()
        context.logger[metadataKey: "request_id"] = .string(id)
        var response = try await next(request, context)
        response.headers[.requestID] = id
        return response
    }
}

/// Request ids: the caller's when acceptable, otherwise a new one.
public enum RequestIDs {
    /// Ids from callers are echoed into headers and logs: keep them short and printable.
    public static func isAcceptable(_ id: String) -> Bool {
        isAcceptable(bytes: id.utf8)
    }

    /// ``isAcceptable(_:)`` for an id still in the request's bytes.
    public static func isAcceptable(bytes id: some Collection<UInt8>) -> Bool {
        !id.isEmpty && id.count <= 128 && id.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    /// Sixteen lower-case hex digits, written straight into the string (this runs for every
    /// request that comes without an id): a random key of this process and a count, mixed by
    /// SplitMix64, which maps distinct inputs to distinct outputs, so no id repeats within a
    /// process. The system's generator cost a system call a request.
    public static func makeID() -> String {
        let count = issued.add(1, ordering: .relaxed).newValue
        var random = SeededGenerator(seed: processKey &+ count &* 0x9E37_79B9_7F4A_7C15)
        return makeID(using: &random)
    }

    private static let processKey = UInt64.random(in: .min ... .max)
    private static let issued = Atomic<UInt64>(0)

    public static func makeID(using random: inout some RandomNumberGenerator) -> String {
        id(random.next())
    }

    /// The id of `value`: its sixteen lower-case hex digits.
    public static func id(_ value: UInt64) -> String {
        String(unsafeUninitializedCapacity: idLength) { buffer in
            writeID(value, into: UnsafeMutableRawBufferPointer(buffer))
            return idLength
        }
    }

    /// Bytes in an id made here.
    public static let idLength = 16

    /// Writes the id of `value` into the first ``idLength`` bytes of `bytes` (the gateway writes
    /// ids into the requests and answers it sends, without a string between).
    public static func writeID(_ value: UInt64, into bytes: UnsafeMutableRawBufferPointer) {
        let digits: StaticString = "0123456789abcdef"
        for index in 0..<idLength {
            bytes[index] = digits.utf8Start[Int((value >> UInt64(60 - 4 * index)) & 0xF)]
        }
    }
}
