import Foundation
import WharfCore

/// The bus in memory: for tests, and for services in one process that need no durability.
public actor InProcessBus: MessageBus {
    private struct Stream {
        var configuration: StreamConfiguration
        var messages: [BusMessage] = []
        var nextOffset: Int64 = 1
        var acknowledged: [String: Int64] = [:]
    }

    private var streamsByName: [String: Stream] = [:]

    public init() {}

    public func createStream(_ configuration: StreamConfiguration) throws {
        let configuration = try configuration.validated()
        if var existing = streamsByName[configuration.name] {
            existing.configuration = configuration
            streamsByName[configuration.name] = existing
        } else {
            streamsByName[configuration.name] = Stream(configuration: configuration)
        }
    }

    public func streams() -> [StreamConfiguration] {
        streamsByName.values.map(\.configuration).sorted { $0.name < $1.name }
    }

    private func stream(_ name: String) throws(WharfError) -> Stream {
        guard let stream = streamsByName[name] else { throw BusErrors.unknownStream(name) }
        return stream
    }

    public func publish(stream name: String, _ messages: [OutgoingMessage]) throws -> [Int64] {
        var stream = try stream(name)
        var offsets: [Int64] = []
        for message in messages {
            stream.messages.append(BusMessage(stream: name, offset: stream.nextOffset, key: message.key, time: message.time, payload: message.payload))
            offsets.append(stream.nextOffset)
            stream.nextOffset += 1
        }
        streamsByName[name] = stream
        return offsets
    }

    public func read(stream name: String, from offset: Int64, limit: Int) throws -> [BusMessage] {
        let messages = try stream(name).messages
        // Offsets are dense from the first kept message on.
        guard let first = messages.first?.offset else { return [] }
        let start = max(0, Int(offset - first))
        guard start < messages.count else { return [] }
        return Array(messages[start..<min(messages.count, start + max(0, limit))])
    }

    public func firstOffset(stream name: String, atOrAfter time: Date) throws -> Int64? {
        try stream(name).messages.first { $0.time >= time }?.offset
    }

    public func fetch(stream name: String, consumer: String, limit: Int) throws -> [BusMessage] {
        try BusErrors.checkConsumer(consumer)
        let after = try stream(name).acknowledged[consumer] ?? 0
        return try read(stream: name, from: after + 1, limit: limit)
    }

    public func acknowledge(stream name: String, consumer: String, through offset: Int64) throws {
        try BusErrors.checkConsumer(consumer)
        var stream = try stream(name)
        guard offset < stream.nextOffset else {
            throw WharfError(.invalidInput, "offset \(offset) is beyond the end of stream \(name) (last \(stream.nextOffset - 1))")
        }
        stream.acknowledged[consumer] = max(stream.acknowledged[consumer] ?? 0, offset)
        streamsByName[name] = stream
    }

    public func acknowledged(stream name: String, consumer: String) throws -> Int64 {
        try stream(name).acknowledged[consumer] ?? 0
    }

    public func enforceRetention(stream name: String, now: Date) throws -> Int {
        var stream = try stream(name)
        let before = stream.messages.count
        if let maxAge = stream.configuration.maxAgeSeconds {
            let cutoff = now.addingTimeInterval(-maxAge)
            // Removed from the old end only: offsets stay dense.
            let keepFrom = stream.messages.firstIndex { $0.time >= cutoff } ?? stream.messages.count
            stream.messages.removeFirst(keepFrom)
        }
        if let maxMessages = stream.configuration.maxMessages, stream.messages.count > maxMessages {
            stream.messages.removeFirst(stream.messages.count - maxMessages)
        }
        streamsByName[name] = stream
        return before - stream.messages.count
    }

    public func bounds(stream name: String) throws -> StreamBounds {
        let stream = try stream(name)
        return StreamBounds(first: stream.messages.first?.offset ?? 0, last: stream.messages.last?.offset ?? 0, count: stream.messages.count)
    }
}
