import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import WharfCore

/// JSON in and out of the control-plane APIs (registry, gateway, hub): snake_case keys
/// (declared on the types), ISO 8601 dates, sorted keys; a body that does not decode is a 400
/// naming the field.
public enum JSONBody {
    public static func encode(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return Array(try encoder.encode(value))
    }

    public static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        Response.json(try encode(value), status: status)
    }

    public static func decode<T: Decodable>(_ type: T.Type, from request: Request, limit: Int = 1 << 20) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw WharfError(.payloadTooLarge, "the request body is larger than \(limit) bytes")
        }
        return try decode(type, from: Data(buffer.readableBytesView))
    }

    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws(WharfError) -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        decoder.userInfo[.refusesUnknownKeys] = true
        do {
            return try decoder.decode(type, from: data)
        } catch let error as DecodingError {
            throw WharfError(.invalidInput, "the request body is not a valid \(String(describing: type)): \(JSONErrors.describe(error, in: data))")
        } catch {
            throw WharfError(.invalidInput, "the request body is not valid JSON")
        }
    }
}
