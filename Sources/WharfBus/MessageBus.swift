import Foundation
import WharfCore

/// A named, ordered, durable stream of events: the hub's storage and the way services pass
/// data to each other without calling each other. One contract
/// (`Tests/WharfBusTests/MessageBusContractTests.swift`) holds for every implementation.
///
/// Offsets start at 1 and grow by one per message within a stream; retention removes messages
/// from the old end but never reuses an offset. A consumer is a name whose acknowledged offset
/// is kept: `fetch` returns what comes after it, so delivery is at least once and a restarted
/// consumer resumes after its last acknowledgement.
public protocol MessageBus: Sendable {
    func createStream(_ configuration: StreamConfiguration) async throws
    func streams() async throws -> [StreamConfiguration]
    /// Appends the messages in order, atomically; returns their offsets. When it returns they
    /// are durable.
    func publish(stream: String, _ messages: [OutgoingMessage]) async throws -> [Int64]
    /// Messages from `offset` on (inclusive), at most `limit`.
    func read(stream: String, from offset: Int64, limit: Int) async throws -> [BusMessage]
    /// The first offset whose event time is at or after `time` (for replay from a time).
    func firstOffset(stream: String, atOrAfter time: Date) async throws -> Int64?
    /// The next messages for `consumer`: those after its acknowledged offset.
    func fetch(stream: String, consumer: String, limit: Int) async throws -> [BusMessage]
    /// Acknowledges everything up to `offset` (inclusive) for `consumer`; never moves back.
    func acknowledge(stream: String, consumer: String, through offset: Int64) async throws
    func acknowledged(stream: String, consumer: String) async throws -> Int64
    /// Removes messages older than the stream's `maxAge` or beyond its `maxMessages`.
    @discardableResult
    func enforceRetention(stream: String, now: Date) async throws -> Int
    /// The stream's first and last offsets (0, 0 when empty) and message count.
    func bounds(stream: String) async throws -> StreamBounds
    /// The messages (by index) this bus cannot take for their size, with their size and the
    /// limit, so that a batch can refuse them one by one; empty for a bus without a limit.
    func oversized(stream: String, _ messages: [OutgoingMessage]) async throws -> [OversizedMessage]
}

/// A message over a bus's size limit (NATS: the server's `max_payload`, headers included).
public struct OversizedMessage: Sendable, Hashable {
    public var index: Int
    public var bytes: Int
    public var limit: Int

    public init(index: Int, bytes: Int, limit: Int) {
        self.index = index
        self.bytes = bytes
        self.limit = limit
    }
}

extension MessageBus {
    public func oversized(stream: String, _ messages: [OutgoingMessage]) async throws -> [OversizedMessage] { [] }
}

public struct StreamConfiguration: Sendable, Hashable, Codable {
    public var name: String
    /// Messages older than this (by event time) may be removed; nil: kept.
    public var maxAgeSeconds: Double?
    /// At most this many messages are kept; nil: no limit.
    public var maxMessages: Int?

    public init(name: String, maxAgeSeconds: Double? = nil, maxMessages: Int? = nil) {
        self.name = name
        self.maxAgeSeconds = maxAgeSeconds
        self.maxMessages = maxMessages
    }

    enum CodingKeys: String, CodingKey {
        case name
        case maxAgeSeconds = "max_age_seconds"
        case maxMessages = "max_messages"
    }

    public func validated() throws(WharfError) -> StreamConfiguration {
        try RegistryName.check(name, kind: "stream")
        if let maxAgeSeconds, !(maxAgeSeconds > 0) { throw WharfError(.invalidInput, "stream \(name): max_age_seconds must be above 0") }
        if let maxMessages, maxMessages < 1 { throw WharfError(.invalidInput, "stream \(name): max_messages must be at least 1") }
        return self
    }
}

public struct OutgoingMessage: Sendable, Hashable {
    /// The entity the event is about (for keyed reads and compaction later); may be empty.
    public var key: String
    public var time: Date
    public var payload: [UInt8]

    public init(key: String, time: Date, payload: [UInt8]) {
        self.key = key
        self.time = time
        self.payload = payload
    }
}

public struct BusMessage: Sendable, Hashable {
    public var stream: String
    public var offset: Int64
    public var key: String
    public var time: Date
    public var payload: [UInt8]

    public init(stream: String, offset: Int64, key: String, time: Date, payload: [UInt8]) {
        self.stream = stream
        self.offset = offset
        self.key = key
        self.time = time
        self.payload = payload
    }
}

public struct StreamBounds: Sendable, Hashable, Codable {
    public var first: Int64
    public var last: Int64
    public var count: Int

    public init(first: Int64, last: Int64, count: Int) {
        self.first = first
        self.last = last
        self.count = count
    }
}

enum BusErrors {
    static func unknownStream(_ name: String) -> WharfError {
        WharfError(.notFound, "no stream named \(name)")
    }

    static func checkConsumer(_ name: String) throws(WharfError) {
        try RegistryName.check(name, kind: "consumer")
    }
}
