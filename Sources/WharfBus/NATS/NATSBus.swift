import Foundation
import NIOConcurrencyHelpers
import NIOCore
import WharfCore

/// The bus on NATS JetStream (`--bus nats://host:4222`): each Wharf stream is a JetStream stream
/// with one subject, each consumer a durable pull consumer.
///
/// - Names: stream `s` is JetStream stream `<prefix>-s` on subject `<prefix>.events.s` (a `.` in
///   a Wharf name becomes `~`, which Wharf names never contain). The Wharf configuration rides
///   in the stream's description, so `streams()` reads it back.
/// - A message's entity key and event time travel as headers (`Wharf-Key`, `Wharf-Time`); the
///   payload is the event as it was given. Its offset is the JetStream sequence.
/// - `publish` pipelines the batch on one connection and returns once JetStream has acknowledged
///   every message (stored on disk). Unlike the embedded log a batch is not atomic: when one
///   message fails, the ones before it are stored and the error says how many.
/// - Reads use direct gets (`allow_direct`), pipelined.
/// - Retention is by event time and count, enforced by `enforceRetention` with a purge (the hub
///   calls it once a minute), as on the embedded log; JetStream's own limits are left off, so
///   both backends keep exactly the same messages.
/// - Consumers are JetStream durable pull consumers (explicit acks): `fetch` pulls, and a fetch
///   before acknowledging gives the same messages again (what this process was given and did
///   not acknowledge is NAKed first, so JetStream redelivers it at once). Messages handed to a
///   process that died come again after the consumer's ack wait.
public final class NATSBus: MessageBus {
    public let prefix: String
    public let ackWait: Duration
    private let host: String
    private let port: Int
    private let current: NIOLockedValueBox<NATSConnection?>
    /// Per "stream/consumer": what this process was given and has not acknowledged, by offset.
    private let outstanding = NIOLockedValueBox<[String: [Int64: String]]>([:])
    private let knownConsumers = NIOLockedValueBox<Set<String>>([])

    /// `url`: `nats://host:port` (4222 when absent).
    public static func connect(url: String, prefix: String = "wharf", ackWait: Duration = .seconds(30)) async throws -> NATSBus {
        guard let components = URLComponents(string: url), components.scheme == "nats", let host = components.host, !host.isEmpty else {
            throw WharfError(.invalidInput, "\(url) is not a NATS URL (nats://host:port)")
        }
        guard !prefix.isEmpty, prefix.utf8.allSatisfy({ $0.isASCIILetterOrDigit || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }) else {
            throw WharfError(.invalidInput, "the JetStream name prefix may hold letters, digits, '_' and '-' only")
        }
        let bus = NATSBus(host: host, port: components.port ?? 4222, prefix: prefix, ackWait: ackWait)
        let connection = try await bus.connection()
        guard connection.serverInfo.jetstream == true else {
            await connection.close()
            throw WharfError(.unavailable, "NATS at \(host) has JetStream off (start nats-server with -js)")
        }
        return bus
    }

    private init(host: String, port: Int, prefix: String, ackWait: Duration) {
        self.host = host
        self.port = port
        self.prefix = prefix
        self.ackWait = ackWait
        self.current = NIOLockedValueBox(nil)
    }

    public func close() async {
        await current.withLockedValue { $0 }?.close()
    }

    /// The live connection, or a new one after the last was lost (the server restarted).
    private func connection() async throws -> NATSConnection {
        if let connection = current.withLockedValue({ $0 }), connection.isActive { return connection }
        let fresh = try await NATSConnection.connect(host: host, port: port, name: "wharf-bus")
        let (kept, spare): (NATSConnection, NATSConnection?) = current.withLockedValue { current in
            if let existing = current, existing.isActive { return (existing, fresh) }
            current = fresh
            return (fresh, nil)
        }
        if let spare { await spare.close() }
        if spare == nil {
            // Deliveries held by the old connection can no longer be NAKed; JetStream redelivers them after the ack wait.
            outstanding.withLockedValue { $0 = [:] }
        }
        return kept
    }

    // MARK: - Names

    private func encode(_ name: String) -> String { name.replacingOccurrences(of: ".", with: "~") }
    func jetStreamName(_ stream: String) -> String { "\(prefix)-\(encode(stream))" }
    func subject(_ stream: String) -> String { "\(prefix).events.\(encode(stream))" }

    // MARK: - Streams

    public func createStream(_ configuration: StreamConfiguration) async throws {
        let configuration = try configuration.validated()
        let description = String(decoding: try Self.sortedEncoder.encode(configuration), as: UTF8.self)
        let config = JetStreamAPI.StreamConfig(name: jetStreamName(configuration.name), description: description, subjects: [subject(configuration.name)])
        do {
            let _: JetStreamAPI.StreamInfo = try await api("STREAM.CREATE.\(config.name)", config)
        } catch let error as JetStreamAPI.Failure where error.errorCode == 10058 {
            // Exists with another configuration (its retention changed): update it.
            let _: JetStreamAPI.StreamInfo = try await api("STREAM.UPDATE.\(config.name)", config)
        }
    }

    public func streams() async throws -> [StreamConfiguration] {
        var found: [StreamConfiguration] = []
        var offset = 0
        while true {
            let page: JetStreamAPI.StreamList = try await api("STREAM.LIST", JetStreamAPI.Paging(offset: offset))
            for info in page.streams ?? [] where info.config.name.hasPrefix(prefix + "-") {
                guard let description = info.config.description,
                      let configuration = try? JSONDecoder().decode(StreamConfiguration.self, from: Data(description.utf8))
                else { continue }
                found.append(configuration)
            }
            offset += page.streams?.count ?? 0
            if page.streams?.isEmpty ?? true || offset >= page.total { break }
        }
        return found.sorted { $0.name < $1.name }
    }

    /// Deletes the JetStream stream and everything in it (benchmarks and tests clean up with it;
    /// the hub itself never deletes a stream).
    public func deleteStream(_ stream: String) async throws {
        do {
            let _: JetStreamAPI.DeleteResponse = try await api("STREAM.DELETE.\(jetStreamName(stream))", JetStreamAPI.Empty())
        } catch let error as JetStreamAPI.Failure where error.errorCode == 10059 {
            throw BusErrors.unknownStream(stream)
        }
    }

    private func info(_ stream: String) async throws -> JetStreamAPI.StreamInfo {
        do {
            return try await api("STREAM.INFO.\(jetStreamName(stream))", JetStreamAPI.Empty())
        } catch let error as JetStreamAPI.Failure where error.errorCode == 10059 {
            throw BusErrors.unknownStream(stream)
        }
    }

    public func bounds(stream: String) async throws -> StreamBounds {
        let state = try await info(stream).state
        guard state.messages > 0 else { return StreamBounds(first: 0, last: 0, count: 0) }
        return StreamBounds(first: state.firstSeq, last: state.lastSeq, count: state.messages)
    }

    // MARK: - Publish and read

    public func publish(stream: String, _ messages: [OutgoingMessage]) async throws -> [Int64] {
        guard !messages.isEmpty else {
            _ = try await info(stream)
            return []
        }
        let subject = subject(stream)
        let connection = try await connection()
        // A message over the server's limit makes it close the connection, failing every
        // request on it: refused here, before anything is sent.
        if let first = Self.oversized(stream: jetStreamName(stream), messages, limit: connection.serverInfo.maxPayload).first {
            throw WharfError(.payloadTooLarge, "event \(first.index) is \(first.bytes) bytes with its headers, over the NATS server's max_payload of \(first.limit)")
        }
        let requests = messages.map { message in
            (subject: subject, headers: Self.headers(message, jetStreamName: jetStreamName(stream)), payload: message.payload)
        }
        let replies = try await connection.requests(requests, timeout: .seconds(30))
        var offsets: [Int64] = []
        offsets.reserveCapacity(replies.count)
        for reply in replies {
            if reply.status == 503 {
                guard offsets.isEmpty else { throw partial(offsets.count, of: messages.count, stream, "JetStream stopped answering") }
                throw BusErrors.unknownStream(stream)
            }
            guard let sequence = JetStreamAPI.publishAckSequence(reply.payload) else {
                let reason = (try? JetStreamAPI.failure(in: reply.payload))?.description ?? "an unreadable acknowledgement"
                if offsets.isEmpty { throw WharfError(.unavailable, "JetStream refused the events of stream \(stream): \(reason)") }
                throw partial(offsets.count, of: messages.count, stream, reason)
            }
            offsets.append(sequence)
        }
        return offsets
    }

    public func oversized(stream: String, _ messages: [OutgoingMessage]) async throws -> [OversizedMessage] {
        Self.oversized(stream: jetStreamName(stream), messages, limit: try await connection().serverInfo.maxPayload)
    }

    /// What a published message carries besides its payload: the stream it must land in, its
    /// key and its time.
    private static func headers(_ message: OutgoingMessage, jetStreamName: String) -> [(String, String)] {
        [("Nats-Expected-Stream", jetStreamName), ("Wharf-Key", headerValue(message.key)), ("Wharf-Time", String(message.time.timeIntervalSince1970))]
    }

    /// Messages whose header block and payload (what `max_payload` counts) exceed `limit`.
    static func oversized(stream jetStreamName: String, _ messages: [OutgoingMessage], limit: Int) -> [OversizedMessage] {
        var found: [OversizedMessage] = []
        for (index, message) in messages.enumerated() {
            // NATS/1.0\r\n, a line a header (name: value\r\n), the blank line.
            let block = headers(message, jetStreamName: jetStreamName).reduce(12) { $0 + $1.0.utf8.count + $1.1.utf8.count + 4 }
            let bytes = block + message.payload.count
            if bytes > limit { found.append(OversizedMessage(index: index, bytes: bytes, limit: limit)) }
        }
        return found
    }

    private func partial(_ stored: Int, of total: Int, _ stream: String, _ reason: String) -> WharfError {
        WharfError(.unavailable, "JetStream stored \(stored) of \(total) events of stream \(stream) (offsets through the \(stored)th), then: \(reason)")
    }

    public func read(stream: String, from offset: Int64, limit: Int) async throws -> [BusMessage] {
        let state = try await info(stream).state
        guard state.messages > 0, limit > 0 else { return [] }
        let first = max(offset, state.firstSeq)
        guard first <= state.lastSeq else { return [] }
        let last = min(state.lastSeq, first + Int64(limit) - 1)
        let subject = "$JS.API.DIRECT.GET.\(jetStreamName(stream))"
        var messages: [BusMessage] = []
        messages.reserveCapacity(Int(last - first + 1))
        var chunkStart = first
        let connection = try await connection()
        while chunkStart <= last {
            let chunkEnd = min(last, chunkStart + 999)
            let requests = (chunkStart...chunkEnd).map { (subject: subject, headers: [(String, String)](), payload: Array(#"{"seq":\#($0)}"#.utf8)) }
            for reply in try await connection.requests(requests, timeout: .seconds(30)) {
                if reply.status == 404 { continue }  // removed in between
                if let status = reply.status { throw WharfError(.unavailable, "JetStream direct get of stream \(stream) answered \(status)") }
                messages.append(try Self.busMessage(reply, stream: stream, offset: nil))
            }
            chunkStart = chunkEnd + 1
        }
        return messages
    }

    /// Finds the first message whose event time is at or after `time` by reading from the old
    /// end: its cost grows with how far in the message is (event times are in headers, which
    /// JetStream does not index).
    public func firstOffset(stream: String, atOrAfter time: Date) async throws -> Int64? {
        var from: Int64 = 1
        while true {
            let page = try await read(stream: stream, from: from, limit: 1000)
            guard let last = page.last else { return nil }
            if let found = page.first(where: { $0.time >= time }) { return found.offset }
            from = last.offset + 1
        }
    }

    // MARK: - Consumers

    private func ensureConsumer(_ stream: String, _ consumer: String) async throws {
        let key = "\(stream)/\(consumer)"
        guard !knownConsumers.withLockedValue({ $0.contains(key) }) else { return }
        _ = try await info(stream)
        let name = encode(consumer)
        let request = JetStreamAPI.ConsumerCreate(
            streamName: jetStreamName(stream),
            config: .init(durableName: name, ackWaitNanoseconds: Int64(ackWait.components.seconds) * 1_000_000_000 + ackWait.components.attoseconds / 1_000_000_000,
                          filterSubject: subject(stream)))
        let _: JetStreamAPI.ConsumerInfo = try await api("CONSUMER.DURABLE.CREATE.\(jetStreamName(stream)).\(name)", request)
        knownConsumers.withLockedValue { _ = $0.insert(key) }
    }

    public func fetch(stream: String, consumer: String, limit: Int) async throws -> [BusMessage] {
        try BusErrors.checkConsumer(consumer)
        try await ensureConsumer(stream, consumer)
        let key = "\(stream)/\(consumer)"
        // What this process was given and did not acknowledge goes back first, so that this
        // fetch starts again after the last acknowledgement.
        let unacknowledged = outstanding.withLockedValue { all in
            defer { all[key] = nil }
            return (all[key] ?? [:]).sorted { $0.key < $1.key }.map(\.value)
        }
        let connection = try await connection()
        if !unacknowledged.isEmpty {
            _ = try await connection.requests(unacknowledged.map { ($0, [(String, String)](), Array("-NAK".utf8)) }, timeout: .seconds(10))
        }
        let messages = try await pull(stream, consumer, batch: max(1, min(limit, 10_000)), connection: connection)
        outstanding.withLockedValue { all in
            for (message, reply) in messages { all[key, default: [:]][message.offset] = reply }
        }
        return messages.map(\.0)
    }

    /// One pull request, answered at once with what is there (`no_wait`).
    private func pull(_ stream: String, _ consumer: String, batch: Int, connection: NATSConnection) async throws -> [(BusMessage, String)] {
        let replies = try await connection.collect(
            subject: "$JS.API.CONSUMER.MSG.NEXT.\(jetStreamName(stream)).\(encode(consumer))",
            payload: Array(#"{"batch":\#(batch),"no_wait":true}"#.utf8), timeout: .seconds(10)
        ) { message, count in
            if let status = message.status { return status >= 400 }
            return count >= batch
        }
        var messages: [(BusMessage, String)] = []
        for reply in replies where reply.status == nil {
            guard let ack = reply.replyTo, let offset = JetStreamAPI.streamSequence(ackSubject: ack) else {
                throw WharfError(.unavailable, "JetStream delivered a message without its acknowledgement subject")
            }
            messages.append((try Self.busMessage(reply, stream: stream, offset: offset), ack))
        }
        if let status = replies.last?.status, status >= 400, status != 404, status != 408 {
            throw WharfError(.unavailable, "JetStream answered the pull of \(stream)/\(consumer) with status \(status)")
        }
        return messages.sorted { $0.0.offset < $1.0.offset }
    }

    public func acknowledge(stream: String, consumer: String, through offset: Int64) async throws {
        try BusErrors.checkConsumer(consumer)
        let state = try await info(stream).state
        guard offset <= state.lastSeq else {
            throw WharfError(.invalidInput, "offset \(offset) is beyond the end of stream \(stream) (last \(state.lastSeq))")
        }
        try await ensureConsumer(stream, consumer)
        let floor = try await acknowledged(stream: stream, consumer: consumer)
        guard offset > floor else { return }  // never moves back
        let key = "\(stream)/\(consumer)"
        var held = outstanding.withLockedValue { $0[key] ?? [:] }
        let connection = try await connection()
        if (floor + 1...offset).contains(where: { held[$0] == nil && $0 >= state.firstSeq }) {
            // Not handed to this process yet: take them now (the hub may have restarted since).
            for (message, reply) in try await pull(stream, consumer, batch: Int(min(offset - floor, 10_000)), connection: connection) {
                held[message.offset] = reply
            }
            outstanding.withLockedValue { all in all[key, default: [:]].merge(held) { old, _ in old } }
        }
        let toAcknowledge = held.filter { $0.key <= offset }.sorted { $0.key < $1.key }
        // Acknowledged with a reply each, so that when this returns JetStream has them all.
        _ = try await connection.requests(toAcknowledge.map { ($0.value, [(String, String)](), Array("+ACK".utf8)) }, timeout: .seconds(10))
        outstanding.withLockedValue { all in
            for (acknowledgedOffset, _) in toAcknowledge { all[key]?[acknowledgedOffset] = nil }
        }
        let now = try await acknowledged(stream: stream, consumer: consumer)
        guard now >= offset else {
            throw WharfError(.conflict, """
                consumer \(consumer) of stream \(stream) is acknowledged through \(now), not \(offset): \
                messages after \(now) were given to another process and come back after the ack wait (\(ackWait))
                """)
        }
    }

    public func acknowledged(stream: String, consumer: String) async throws -> Int64 {
        do {
            let info: JetStreamAPI.ConsumerInfo = try await api("CONSUMER.INFO.\(jetStreamName(stream)).\(encode(consumer))", JetStreamAPI.Empty())
            return info.ackFloor.streamSeq
        } catch let error as JetStreamAPI.Failure where error.errorCode == 10014 {
            return 0
        } catch let error as JetStreamAPI.Failure where error.errorCode == 10059 {
            throw BusErrors.unknownStream(stream)
        }
    }

    // MARK: - Retention

    public func enforceRetention(stream: String, now: Date) async throws -> Int {
        guard let configuration = try await streams().first(where: { $0.name == stream }) else { throw BusErrors.unknownStream(stream) }
        var removed = 0
        if let maxAge = configuration.maxAgeSeconds {
            let cutoff = now.addingTimeInterval(-maxAge)
            var keepFrom = try await firstOffset(stream: stream, atOrAfter: cutoff)
            if keepFrom == nil { keepFrom = try await info(stream).state.lastSeq + 1 }
            let purged: JetStreamAPI.PurgeResponse = try await api("STREAM.PURGE.\(jetStreamName(stream))", JetStreamAPI.Purge(seq: keepFrom, keep: nil))
            removed += purged.purged
        }
        if let maxMessages = configuration.maxMessages {
            let purged: JetStreamAPI.PurgeResponse = try await api("STREAM.PURGE.\(jetStreamName(stream))", JetStreamAPI.Purge(seq: nil, keep: maxMessages))
            removed += purged.purged
        }
        return removed
    }

    // MARK: - Plumbing

    private static let sortedEncoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    private func api<Response: Decodable>(_ operation: String, _ body: some Encodable) async throws -> Response {
        let payload = try Self.sortedEncoder.encode(body)
        let reply = try await connection().request(subject: "$JS.API.\(operation)", payload: Array(payload), timeout: .seconds(10))
        if reply.status == 503 { throw WharfError(.unavailable, "JetStream is not answering (is nats-server started with -js?)") }
        if let failure = try? JetStreamAPI.failure(in: reply.payload) { throw failure }
        do {
            return try JSONDecoder().decode(Response.self, from: Data(reply.payload))
        } catch {
            throw WharfError(.unavailable, "JetStream's answer to \(operation) is unreadable: \(error)")
        }
    }

    /// Entity keys are any text; header values may not hold line breaks and lose surrounding
    /// spaces, so keys are percent-encoded.
    static func headerValue(_ key: String) -> String {
        let plain = key.utf8.allSatisfy { $0.isASCIILetterOrDigit || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }
        return plain ? key : key.addingPercentEncoding(withAllowedCharacters: headerSafe) ?? key
    }

    private static let headerSafe = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~:@/+")

    private static func busMessage(_ reply: NATSMessage, stream: String, offset: Int64?) throws -> BusMessage {
        var key = ""
        var time: Double?
        var sequence = offset
        for (name, value) in reply.headers {
            switch name {
            case "Wharf-Key": key = value.utf8.contains(UInt8(ascii: "%")) ? value.removingPercentEncoding ?? value : value
            case "Wharf-Time": time = Double(value)
            case "Nats-Sequence": if sequence == nil { sequence = Int64(value) }
            default: break
            }
        }
        guard let sequence, let time else {
            throw WharfError(.unavailable, "stream \(stream) holds a message Wharf did not write (no Wharf-Time header)")
        }
        return BusMessage(stream: stream, offset: sequence, key: key, time: Date(timeIntervalSince1970: time), payload: reply.payload)
    }
}

private extension UInt8 {
    var isASCIILetterOrDigit: Bool {
        (self >= 0x30 && self <= 0x39) || (self >= 0x41 && self <= 0x5A) || (self >= 0x61 && self <= 0x7A)
    }
}
