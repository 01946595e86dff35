import Foundation
import WharfCore

/// A stream of feature events as the hub accepts them: which field names the entity, which the
/// event time, and the features with their types. Events are checked against it one by one.
public struct StreamDefinition: Sendable, Hashable, Codable {
    public enum FeatureType: String, Sendable, Hashable, Codable {
        case number, string, bool
    }

    public var name: String
    /// The field holding the entity id (a string or a whole number).
    public var entityKey: String
    /// The field holding the event time: RFC 3339 text or seconds since 1970. Absent: the time
    /// the hub received the event.
    public var timeField: String
    public var features: [String: FeatureType]
    public var maxAgeSeconds: Double?
    public var maxMessages: Int?

    public init(name: String, entityKey: String, timeField: String = "time", features: [String: FeatureType],
                maxAgeSeconds: Double? = nil, maxMessages: Int? = nil) {
        self.name = name
        self.entityKey = entityKey
        self.timeField = timeField
        self.features = features
        self.maxAgeSeconds = maxAgeSeconds
        self.maxMessages = maxMessages
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, features
        case entityKey = "entity_key"
        case timeField = "time_field"
        case maxAgeSeconds = "max_age_seconds"
        case maxMessages = "max_messages"
    }

    public init(from decoder: any Decoder) throws {
        // `max_age_secs` for `max_age_seconds` would be a stream kept for ever.
        try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        entityKey = try container.decode(String.self, forKey: .entityKey)
        timeField = try container.decodeIfPresent(String.self, forKey: .timeField) ?? "time"
        features = try container.decode([String: FeatureType].self, forKey: .features)
        maxAgeSeconds = try container.decodeIfPresent(Double.self, forKey: .maxAgeSeconds)
        maxMessages = try container.decodeIfPresent(Int.self, forKey: .maxMessages)
    }

    public func validated() throws(WharfError) -> StreamDefinition {
        try RegistryName.check(name, kind: "stream")
        guard !features.isEmpty, features.count <= 10_000 else { throw WharfError(.invalidInput, "stream \(name): declare 1 to 10000 features") }
        for field in [entityKey, timeField] + features.keys {
            // No control characters: the feature store keys values by name in SQLite, which cuts
            // text at a NUL ("a\u0000b" and "a" would be one feature), and datasets write the
            // names as a CSV header.
            guard !field.isEmpty, field.utf8.count <= 128, !field.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
                throw WharfError(.invalidInput, "stream \(name): field names have 1 to 128 bytes and no control characters")
            }
        }
        guard features[entityKey] == nil, features[timeField] == nil, entityKey != timeField else {
            throw WharfError(.invalidInput, "stream \(name): the entity key and the time field cannot also be features")
        }
        if let maxAgeSeconds, !(maxAgeSeconds > 0) { throw WharfError(.invalidInput, "stream \(name): max_age_seconds must be above 0") }
        if let maxMessages, maxMessages < 1 { throw WharfError(.invalidInput, "stream \(name): max_messages must be at least 1") }
        return self
    }

    /// A field's value: features are scalars.
    public enum Scalar: Sendable, Hashable {
        case string(String), number(Double), bool(Bool), null
    }

    /// A checked event, re-encoded with sorted keys: what the log keeps.
    public struct Event: Sendable {
        public var entity: String
        public var time: Date
        public var payload: [UInt8]
        /// The feature values (nulls left out), for the feature store.
        public var values: [String: Scalar]
    }

    /// Checks one event; the error names the field and what was wrong.
    /// How far ahead of the hub's clock an event's time may be (clocks of sources drift).
    static let maxFutureSeconds: Double = 86_400

    /// Whether `text` can name an entity: not empty, at most 256 bytes, no control characters.
    /// A NUL would be cut off where the entity is stored (SQLite text), and that entity's
    /// events filed under another's name.
    static func isEntity(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 256 && !text.utf8.contains { $0 < 0x20 || $0 == 0x7F }
    }

    public func check(_ fields: [(String, Scalar)], receivedAt now: Date) -> Result<Event, WharfError> {
        var entity: String?
        var time = now
        var values: [(String, Scalar)] = []
        var seen: Set<String> = []
        for (field, value) in fields {
            guard seen.insert(field).inserted else { return .failure(WharfError(.invalidInput, "\(field) appears twice")) }
            if field == entityKey {
                switch value {
                case .string(let text) where Self.isEntity(text): entity = text
                case .number(let number) where number == number.rounded() && abs(number) < 1e15: entity = String(Int64(number))
                default:
                    return .failure(WharfError(.invalidInput, "\(entityKey) (the entity key) must be a whole number or text of 1 to 256 bytes without control characters"))
                }
            } else if field == timeField {
                switch value {
                case .null: break
                case .number(let seconds): time = Date(timeIntervalSince1970: seconds)
                case .string(let text):
                    guard let parsed = Self.parseTime(text) else {
                        return .failure(WharfError(.invalidInput, "\(timeField) \"\(text.prefix(40))\" is not an RFC 3339 time"))
                    }
                    time = parsed
                default: return .failure(WharfError(.invalidInput, "\(timeField) must be RFC 3339 text or seconds since 1970"))
                }
                // A time beyond tomorrow (milliseconds sent as seconds, an overflow) would be
                // invisible to lookups "as of now" and hold up retention, which deletes from the
                // old end up to the first young event; a non-finite one cannot be read back.
                let seconds = time.timeIntervalSince1970
                guard seconds.isFinite, seconds >= 0, seconds <= now.timeIntervalSince1970 + Self.maxFutureSeconds else {
                    return .failure(WharfError(.invalidInput, "\(timeField) must be seconds since 1970 (or RFC 3339 text) from 1970 to a day from now"))
                }
            } else {
                guard let type = features[field] else { return .failure(WharfError(.invalidInput, "\(field) is not a feature of stream \(name)")) }
                switch (type, value) {
                case (_, .null): continue
                case (.number, .number(let number)) where !number.isFinite:
                    return .failure(WharfError(.invalidInput, "\(field) must be a finite number"))
                case (.string, .string(let text)) where text.utf8.contains(0):
                    // Cut off at the NUL where the feature store keeps it (SQLite text).
                    return .failure(WharfError(.invalidInput, "\(field) must not contain a NUL character"))
                case (.number, .number), (.string, .string), (.bool, .bool): values.append((field, value))
                default: return .failure(WharfError(.invalidInput, "\(field) must be a \(type == .bool ? "boolean" : type.rawValue)"))
                }
            }
        }
        guard let entity else { return .failure(WharfError(.invalidInput, "\(entityKey) (the entity key) is missing")) }
        // Stored with sorted keys and the time as seconds: one spelling per event.
        var all = values + [(entityKey, .string(entity)), (timeField, .number(time.timeIntervalSince1970))]
        all.sort { $0.0 < $1.0 }
        var writer = JSONWriter(capacity: 64 + all.count * 24)
        writer.raw("{")
        for (index, (field, value)) in all.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.string(field)
            writer.raw(":")
            switch value {
            case .string(let text): writer.string(text)
            case .number(let number): writer.number(number)
            case .bool(let flag): writer.raw(flag ? "true" : "false")
            case .null: writer.raw("null")
            }
        }
        writer.raw("}")
        return .success(Event(entity: entity, time: time, payload: writer.bytes, values: Dictionary(values) { first, _ in first }))
    }

    static func parseTime(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }
}
