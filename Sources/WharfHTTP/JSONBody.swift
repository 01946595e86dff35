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
        try decode(type, from: try await body(of: request, limit: limit))
    }

    /// The whole body, up to `limit` bytes (413 beyond).
    private static func body(of request: Request, limit: Int) async throws -> Data {
        do {
            return Data(try await request.body.collect(upTo: limit).readableBytesView)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw WharfError(.payloadTooLarge, "the request body is larger than \(limit) bytes")
        }
    }

    /// ``decode(_:from:limit:)`` for a type whose keys are the same both ways (synthesized
    /// `Codable`): a key of the body that the decoded value does not write back is one it did not
    /// read, and a 400 names it (`lineage.parent_versoin` would otherwise be dropped, and the
    /// version registered without its parent). Keys with a null value are let through.
    public static func decodeStrictly<T: Codable>(_ type: T.Type, from request: Request, limit: Int = 1 << 20) async throws -> T {
        let data = try await body(of: request, limit: limit)
        let value = try decode(type, from: data)
        if let sent = try? JSONSerialization.jsonObject(with: data), let read = try? JSONSerialization.jsonObject(with: Data(encode(value))),
           let unknown = unknownKey(in: sent, readBack: read, path: "") {
            throw WharfError(.invalidInput, "the request body is not a valid \(String(describing: type)): \(unknown): unknown key")
        }
        return value
    }

    /// The path of the first key (by name) of `sent` that `readBack` lacks.
    static func unknownKey(in sent: Any, readBack: Any, path: String) -> String? {
        if let sent = sent as? [String: Any], let readBack = readBack as? [String: Any] {
            for key in sent.keys.sorted() where !(sent[key] is NSNull) {
                let here = path.isEmpty ? key : "\(path).\(key)"
                guard let counterpart = readBack[key] else { return here }
                if let found = unknownKey(in: sent[key]!, readBack: counterpart, path: here) { return found }
            }
        } else if let sent = sent as? [Any], let readBack = readBack as? [Any], sent.count == readBack.count {
            for (index, (element, counterpart)) in zip(sent, readBack).enumerated() {
                if let found = unknownKey(in: element, readBack: counterpart, path: "\(path)[\(index)]") { return found }
            }
        }
        return nil
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
