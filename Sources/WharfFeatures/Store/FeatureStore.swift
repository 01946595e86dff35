import Foundation
import Logging
import Synchronization
import WharfBus
import WharfCore

/// A feature view: some features of a stream, per entity, with a time to live.
public struct FeatureView: Sendable, Hashable, Codable {
    public var name: String
    public var stream: String
    public var features: [String]
    /// A value older than this (by event time) is treated as missing; nil: never.
    public var ttlSeconds: Double?
    /// Features a lookup must find (fresh), or it is refused.
    public var required: [String]

    public init(name: String, stream: String, features: [String], ttlSeconds: Double? = nil, required: [String] = []) {
        self.name = name
        self.stream = stream
        self.features = features
        self.ttlSeconds = ttlSeconds
        self.required = required
    }

    enum CodingKeys: String, CodingKey {
        case name, stream, features, required
        case ttlSeconds = "ttl_seconds"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        stream = try container.decode(String.self, forKey: .stream)
        features = try container.decode([String].self, forKey: .features)
        ttlSeconds = try container.decodeIfPresent(Double.self, forKey: .ttlSeconds)
        required = try container.decodeIfPresent([String].self, forKey: .required) ?? []
    }

    func validated(against stream: StreamDefinition) throws(WharfError) -> FeatureView {
        try RegistryName.check(name, kind: "view")
        guard !features.isEmpty else { throw WharfError(.invalidInput, "view \(name): name at least one feature") }
        for feature in features + required where stream.features[feature] == nil {
            throw WharfError(.invalidInput, "view \(name): \(feature) is not a feature of stream \(stream.name)")
        }
        guard Set(required).isSubset(of: Set(features)) else { throw WharfError(.invalidInput, "view \(name): required features must be among its features") }
        if let ttlSeconds, !(ttlSeconds > 0) { throw WharfError(.invalidInput, "view \(name): ttl_seconds must be above 0") }
        return self
    }
}

/// Feature values of entities, materialized from the streams: the latest per entity for online
/// lookups, and every value with its event time for point-in-time (as-of) reads.
///
/// Values are ordered by event time, not arrival: an event that arrives late lands in its
/// place, and "latest" means the newest event time.
public final class FeatureStore: Sendable {
    struct Entry: Sendable {
        var time: Date
        var values: [String: StreamDefinition.Scalar]
    }

    struct State {
        /// stream → entity → entries sorted by time.
        var history: [String: [String: [Entry]]] = [:]
        /// stream → the next offset to read.
        var positions: [String: Int64] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Reads what the stream has beyond the last read; returns how many events were applied.
    @discardableResult
    public func catchUp(stream: StreamDefinition, bus: any MessageBus) async throws -> Int {
        var applied = 0
        while true {
            let from = state.withLock { $0.positions[stream.name] ?? 1 }
            let messages = try await bus.read(stream: stream.name, from: from, limit: 10_000)
            guard let last = messages.last else { return applied }
            let entries = messages.compactMap { message -> (String, Entry)? in
                guard let object = try? JSONSerialization.jsonObject(with: Data(message.payload)) as? [String: Any] else { return nil }
                var values: [String: StreamDefinition.Scalar] = [:]
                for (field, type) in stream.features {
                    switch (type, object[field]) {
                    case (.number, let number as Double): values[field] = .number(number)
                    case (.number, let number as Int): values[field] = .number(Double(number))
                    case (.string, let text as String): values[field] = .string(text)
                    case (.bool, let flag as Bool): values[field] = .bool(flag)
                    default: continue
                    }
                }
                return (message.key, Entry(time: message.time, values: values))
            }
            // Two readers may have read the same messages: only the first to get here applies them.
            let fresh = state.withLock { state -> Bool in
                guard (state.positions[stream.name] ?? 1) == from else { return false }
                var byEntity = state.history[stream.name] ?? [:]
                for (entity, entry) in entries {
                    var list = byEntity[entity] ?? []
                    // Usually appended at the end; a late event is put in its place.
                    let index = list.lastIndex { $0.time <= entry.time }.map { $0 + 1 } ?? 0
                    list.insert(entry, at: index)
                    byEntity[entity] = list
                }
                state.history[stream.name] = byEntity
                state.positions[stream.name] = last.offset + 1
                return true
            }
            if fresh { applied += messages.count }
        }
    }

    public struct Lookup: Sendable, Hashable, Codable {
        public var entity: String
        /// Each feature's value (absent: missing or past its TTL).
        public var features: [String: FeatureValue]
        /// When each present value was observed (event time).
        public var observedAt: [String: Date]
        public var expired: [String]
        public var missing: [String]

        enum CodingKeys: String, CodingKey {
            case entity, features, expired, missing
            case observedAt = "observed_at"
        }
    }

    /// The value of each of `view`'s features for `entity` as of `time` (the latest event at or
    /// before it, never one after it), within the TTL counted back from `time`.
    public func lookup(_ view: FeatureView, entity: String, asOf time: Date) -> Lookup {
        let entries = state.withLock { $0.history[view.stream]?[entity] } ?? []
        var result = Lookup(entity: entity, features: [:], observedAt: [:], expired: [], missing: [])
        for feature in view.features {
            // The newest entry at or before `time` that holds this feature.
            guard let entry = entries.last(where: { $0.time <= time && $0.values[feature] != nil }) else {
                result.missing.append(feature)
                continue
            }
            if let ttl = view.ttlSeconds, time.timeIntervalSince(entry.time) > ttl {
                result.expired.append(feature)
                continue
            }
            result.features[feature] = FeatureValue(entry.values[feature]!)
            result.observedAt[feature] = entry.time
        }
        return result
    }
}

/// A feature value on the wire: a number, a string or a boolean.
public enum FeatureValue: Sendable, Hashable, Codable {
    case number(Double), string(String), bool(Bool)

    init(_ scalar: StreamDefinition.Scalar) {
        switch scalar {
        case .number(let value): self = .number(value)
        case .string(let value): self = .string(value)
        case .bool(let value): self = .bool(value)
        case .null: self = .number(.nan)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let flag = try? container.decode(Bool.self) {
            self = .bool(flag)
        } else if let number = try? container.decode(Double.self) {
            self = .number(number)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public var csvText: String {
        switch self {
        case .number(let value): value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        case .string(let value): value
        case .bool(let value): value ? "1" : "0"
        }
    }
}
