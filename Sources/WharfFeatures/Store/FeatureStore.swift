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

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, stream, features, required
        case ttlSeconds = "ttl_seconds"
    }

    public init(from decoder: any Decoder) throws {
        try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
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

/// Feature values of entities, materialized from the streams into a `FeatureStorage` (every
/// observation, for point-in-time reads) with the newest value of each feature of each entity
/// cached in memory (online reads).
///
/// Values are ordered by event time, not arrival: an event that arrives late lands in its
/// place, and "latest" means the newest event time (at equal times, the last to arrive).
public final class FeatureStore: Sendable {
    public let storage: any FeatureStorage
    /// stream → entity → feature → newest observation; a stream is loaded from the storage on
    /// first use, then kept up to date by `catchUp`.
    private let latest = Mutex<[String: [String: [String: Observation]]]>([:])
    /// stream → the next offset to read, as last applied here (the storage holds the truth; a
    /// stale position only makes `apply` refuse, and it is read again).
    private let positions = Mutex<[String: Int64]>([:])
    /// stream → first offset → appended events that came before the batch ahead of them.
    private let parked = Mutex<[String: [Int64: [MaterializedEvent]]]>([:])
    /// stream → when appended events were last applied directly.
    private let appendedAt = Mutex<[String: ContinuousClock.Instant]>([:])

    /// Whether the hub's own ingest has kept `stream` up to date within `window`: a background
    /// catch-up then has nothing to add but would race the ingest for the newest batch (and
    /// parse it from the log).
    public func isFollowedByIngest(_ stream: String, within window: Duration = .seconds(1)) -> Bool {
        guard let last = appendedAt.withLock({ $0[stream] }) else { return false }
        return ContinuousClock.now - last < window
    }

    public init(storage: any FeatureStorage = InMemoryFeatureStorage()) {
        self.storage = storage
    }

    private func loadLatest(_ stream: String) async throws {
        guard latest.withLock({ $0[stream] == nil }) else { return }
        let stored = try await storage.latest(stream: stream)
        latest.withLock { all in
            if all[stream] == nil { all[stream] = stored }
        }
    }

    /// Reads what the stream has beyond the last read and stores it; returns how many events
    /// were applied.
    @discardableResult
    public func catchUp(stream: StreamDefinition, bus: any MessageBus) async throws -> Int {
        try await loadLatest(stream.name)
        var applied = 0
        while true {
            let known = positions.withLock { $0[stream.name] }
            let from: Int64
            if let known {
                from = known
            } else {
                from = try await storage.position(stream: stream.name)
                positions.withLock { $0[stream.name] = max($0[stream.name] ?? 1, from) }
            }
            let messages = try await bus.read(stream: stream.name, from: from, limit: 10_000)
            guard let last = messages.last else { return applied }
            let events = messages.map { message in
                MaterializedEvent(offset: message.offset, entity: message.key, time: message.time, values: Self.values(of: message, in: stream))
            }
            // Two readers may have read the same messages: only the first to get here applies them.
            guard try await apply(stream.name, events, from: from, next: last.offset + 1) else {
                positions.withLock { $0[stream.name] = nil }
                continue
            }
            applied += messages.count
        }
    }

    /// Events the hub has just appended (consecutive offsets), applied as they are when the
    /// store is exactly there, which spares reading and parsing them back; otherwise the next
    /// catch-up reads them from the log.
    ///
    /// Batches appended concurrently can arrive here out of order: one that comes before its
    /// predecessor waits (a few batches at most) and is applied right after it.
    public func applyAppended(stream: String, _ events: [MaterializedEvent]) async throws {
        guard let first = events.first?.offset, let last = events.last?.offset, last - first + 1 == Int64(events.count) else { return }
        var next: [MaterializedEvent]? = events
        while let batch = next, let start = batch.first?.offset {
            let ready: Bool = positions.withLock { positions in
                guard let position = positions[stream] else { return false }
                return position == start
            }
            if !ready {
                let retry: Bool = parked.withLock { parked in
                    guard let position = positions.withLock({ $0[stream] }) else { return false }
                    // Its predecessor was applied meanwhile: apply it now rather than park it.
                    if position == start { return true }
                    guard start > position else { return false }  // already read by a catch-up
                    var waiting = parked[stream] ?? [:]
                    waiting[start] = batch
                    // Bounded: the oldest waiting batches are left to the catch-up.
                    while waiting.count > 16, let oldest = waiting.keys.min() { waiting[oldest] = nil }
                    parked[stream] = waiting
                    return false
                }
                if retry { continue }
                return
            }
            guard try await apply(stream, batch, from: start, next: start + Int64(batch.count)) else { return }
            appendedAt.withLock { $0[stream] = ContinuousClock.now }
            let position = start + Int64(batch.count)
            next = parked.withLock { parked in
                parked[stream] = parked[stream]?.filter { $0.key >= position }
                return parked[stream]?.removeValue(forKey: position)
            }
        }
    }

    private func apply(_ stream: String, _ events: [MaterializedEvent], from: Int64, next: Int64) async throws -> Bool {
        guard try await storage.apply(stream: stream, events: events, from: from, next: next) else { return false }
        positions.withLock { $0[stream] = max($0[stream] ?? 1, next) }
        latest.withLock { all in
            var byEntity = all[stream] ?? [:]
            for event in events {
                for (feature, value) in event.values {
                    let observation = Observation(value: value, time: event.time, offset: event.offset)
                    if let current = byEntity[event.entity]?[feature], !observation.isNewer(than: current) { continue }
                    byEntity[event.entity, default: [:]][feature] = observation
                }
            }
            all[stream] = byEntity
        }
        return true
    }

    /// The stream's features in an event as the log keeps it (checked JSON with sorted keys).
    static func values(of message: BusMessage, in stream: StreamDefinition) -> [String: StreamDefinition.Scalar] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(message.payload)) as? [String: Any] else { return [:] }
        var values: [String: StreamDefinition.Scalar] = [:]
        for (field, type) in stream.features {
            switch (type, object[field]) {
            // The hub checked each value's type against the stream at ingest.
            case (.number, let number as Double): values[field] = .number(number)
            case (.number, let number as Int): values[field] = .number(Double(number))
            case (.string, let text as String): values[field] = .string(text)
            case (.bool, let flag as Bool): values[field] = .bool(flag)
            default: continue
            }
        }
        return values
    }

    /// Forgets observations older than `cutoff` (each feature's newest stays): the stream's
    /// retention, applied to what was materialized from it.
    @discardableResult
    public func forget(stream: String, before cutoff: Date) async throws -> Int {
        try await storage.forget(stream: stream, before: cutoff)
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
    /// before it, never one after it), within the TTL counted back from `time`. Online reads
    /// (the newest value is not after `time`) come from memory; older times from the storage.
    public func lookup(_ view: FeatureView, entity: String, asOf time: Date) async throws -> Lookup {
        try await loadLatest(view.stream)
        let newest = latest.withLock { $0[view.stream]?[entity] } ?? [:]
        var found: [String: Observation] = [:]
        var older: [String] = []
        for feature in view.features {
            guard let observation = newest[feature] else { continue }  // never seen
            if observation.time <= time { found[feature] = observation } else { older.append(feature) }
        }
        if !older.isEmpty {
            found.merge(try await storage.values(stream: view.stream, entity: entity, features: older, asOf: time)) { current, _ in current }
        }
        var result = Lookup(entity: entity, features: [:], observedAt: [:], expired: [], missing: [])
        for feature in view.features {
            guard let observation = found[feature] else {
                result.missing.append(feature)
                continue
            }
            if let ttl = view.ttlSeconds, time.timeIntervalSince(observation.time) > ttl {
                result.expired.append(feature)
                continue
            }
            result.features[feature] = FeatureValue(observation.value)
            result.observedAt[feature] = observation.time
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
