import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import WharfClient
import WharfCore

/// Fills a request's missing model inputs from the hub's online feature store.
///
/// A request that carries `parameters: {"entity_id": "u1"}` (or `"entity_ids": "u1,u2,…"`, one
/// a row) gets, before evaluation, each model feature it did not send — an absent per-feature
/// tensor, or a NaN cell of an `[N, F]` tensor — from the view's latest fresh value for that
/// entity. A feature the store does not have stays missing (the model's missing-value branch),
/// unless the view requires it: then 400, naming the entity and the feature.
public final class FeatureFiller: Sendable {
    let hub: String
    let view: String
    private let requiredFeatures = Mutex<[String]?>(nil)

    public init(hub: String, view: String) {
        var url = hub
        while url.hasSuffix("/") { url.removeLast() }
        self.hub = url
        self.view = view
    }

    static func entities(_ request: InferenceRequest) throws(WharfError) -> [String]? {
        switch (request.parameters["entity_id"], request.parameters["entity_ids"]) {
        case (nil, nil): return nil
        case (.string(let id)?, nil): return [id]
        case (.number(let id)?, nil):
            // Whole numbers only, and only those an Int64 holds exactly (2^63 itself does not).
            guard id == id.rounded(), abs(id) < 9.2e18 else {
                throw WharfError(.invalidInput, "parameters.entity_id \(id) is not an id: give a whole number below 2^63, or a string")
            }
            return [String(Int64(id))]
        case (nil, .string(let ids)?):
            let list = ids.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard !list.isEmpty, list.allSatisfy({ !$0.isEmpty }) else { throw WharfError(.invalidInput, "parameters.entity_ids must be ids separated by commas") }
            return list
        default: throw WharfError(.invalidInput, "give parameters.entity_id (a string) or parameters.entity_ids (ids separated by commas), not both")
        }
    }

    /// The request with the store's values filled in where it had none.
    func fill(_ request: InferenceRequest, names: [String]) async throws -> InferenceRequest {
        guard let entities = try Self.entities(request) else { return request }
        let rows = try await lookup(entities)
        let required = try await required()
        for (entity, row) in zip(entities, rows) {
            let absent = required.filter { row[$0] == nil }
            guard absent.isEmpty else {
                throw WharfError(.invalidInput, "entity \(entity.prefix(64)) has no fresh value for the required feature(s) \(absent.joined(separator: ", ")) of view \(view)")
            }
        }
        var request = request
        let byName = Set(request.inputs.map(\.name))
        if request.inputs.count == 1, request.inputs[0].shape.count == 2, request.inputs[0].shape[1] == names.count {
            // One [N, F] tensor: NaN cells are the missing ones.
            var input = request.inputs[0]
            guard input.shape[0] == entities.count else { throw Self.rowMismatch(entities.count, input.shape[0]) }
            for (row, values) in rows.enumerated() {
                for (column, name) in names.enumerated() where input.data[row * names.count + column].isNaN {
                    if let value = values[name] { input.data[row * names.count + column] = value }
                }
            }
            request.inputs[0] = input
        } else if entities.count == 1, request.inputs.count == 1, request.inputs[0].shape == [names.count], !names.contains(request.inputs[0].name) {
            // One row as one [F] tensor (not a per-feature tensor named after a feature).
            var input = request.inputs[0]
            for (column, name) in names.enumerated() where input.data[column].isNaN {
                if let value = rows[0][name] { input.data[column] = value }
            }
            request.inputs[0] = input
        } else if byName.isSubset(of: Set(names)) {
            // Per-feature tensors: absent features become tensors of their own.
            if let first = request.inputs.first, first.shape.first != entities.count { throw Self.rowMismatch(entities.count, first.shape.first ?? 0) }
            for name in names where !byName.contains(name) && rows.contains(where: { $0[name] != nil }) {
                request.inputs.append(RequestInput(name: name, shape: [entities.count], datatype: .fp64, data: rows.map { $0[name] ?? .nan }))
            }
        } else {
            // Entities were given to fill something: evaluating the request unfilled would
            // answer for missing values the caller did not mean.
            throw WharfError(.invalidInput, "parameters.entity_id(s) given, but the inputs are not one [N, \(names.count)] or [\(names.count)] tensor, nor tensors named after the model's features: there is nothing to fill")
        }
        return request
    }

    private static func rowMismatch(_ entities: Int, _ rows: Int) -> WharfError {
        WharfError(.invalidInput, "\(entities) entities for \(rows) rows: give one entity a row")
    }

    /// One row of values a entity, numbers as they are, booleans as 1 and 0.
    private func lookup(_ entities: [String]) async throws -> [[String: Double]] {
        struct Answer: Decodable {
            struct Row: Decodable { var features: [String: Value] }
            var rows: [Row]
        }
        struct Value: Decodable {
            var number: Double
            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let flag = try? container.decode(Bool.self) { number = flag ? 1 : 0 }
                else if let value = try? container.decode(Double.self) { number = value }
                else { number = Double(try container.decode(String.self)) ?? .nan }
            }
        }
        let body = try JSONSerialization.data(withJSONObject: ["rows": entities.map { ["entity": $0] }])
        let bytes = try await call(.POST, "/v1/features/\(view)/lookup", body: body)
        let answer = try JSONDecoder().decode(Answer.self, from: bytes)
        guard answer.rows.count == entities.count else { throw WharfError(.unavailable, "the feature store answered \(answer.rows.count) rows for \(entities.count) entities") }
        return answer.rows.map { $0.features.mapValues(\.number) }
    }

    private func required() async throws -> [String] {
        if let known = requiredFeatures.withLock({ $0 }) { return known }
        struct Views: Decodable {
            struct View: Decodable { var name: String; var required: [String]? }
            var views: [View]
        }
        let views = try JSONDecoder().decode(Views.self, from: try await call(.GET, "/v1/views", body: nil))
        guard let found = views.views.first(where: { $0.name == view }) else { throw WharfError(.unavailable, "the hub has no feature view \(view)") }
        requiredFeatures.withLock { $0 = found.required ?? [] }
        return found.required ?? []
    }

    private func call(_ method: HTTPMethod, _ path: String, body: Data?) async throws -> Data {
        var request = HTTPClientRequest(url: hub + path)
        request.method = method
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response: HTTPClientResponse
        do {
            response = try await RegistryClient.forServices.execute(request, timeout: .seconds(5))
        } catch {
            throw WharfError(.unavailable, "the feature store at \(hub) cannot be reached: \(error)")
        }
        let bytes: ByteBuffer
        do {
            bytes = try await response.body.collect(upTo: 64 << 20)
        } catch {
            throw WharfError(.unavailable, "the feature store at \(hub) cut its answer short: \(error)")
        }
        guard response.status.code == 200 else {
            let error = RegistryClient.failure(response.status, bytes)
            throw WharfError(error.code == .notFound ? .unavailable : error.code, "feature store: \(error.message)")
        }
        return Data(bytes.readableBytesView)
    }
}
