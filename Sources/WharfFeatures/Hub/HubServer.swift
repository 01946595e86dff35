#if canImport(Glibc)
import Glibc
#endif
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import WharfBus
import WharfCore
import WharfHTTP

/// The messaging hub (`wharf hub`): named streams with a declared schema, batches of events
/// checked one by one and appended durably, replay, and durable consumers.
///
/// | method and path | what |
/// | --- | --- |
/// | `PUT /v1/streams/{s}` | declare (or change) a stream: entity key, time field, features, retention |
/// | `GET /v1/streams`, `GET /v1/streams/{s}` | definitions, with the log's bounds |
/// | `POST /v1/streams/{s}/events` | a JSON array or NDJSON batch; per-event results; the accepted ones are durable when it answers |
/// | `GET /v1/streams/{s}/events?from=OFFSET&limit=N` (or `since=RFC3339`) | replay |
/// | `POST /v1/streams/{s}/consumers/{c}/fetch?limit=N` | the next events after the consumer's acknowledgement |
/// | `POST /v1/streams/{s}/consumers/{c}/ack` `{"offset": N}` | acknowledge through N |
public final class HubServer: Sendable {
    public let bus: any MessageBus
    let definitions: Mutex<[String: StreamDefinition]>
    let definitionsFile: String?
    let views: Mutex<[String: FeatureView]>
    /// Held while a stream or view definition is changed and saved: one change at a time.
    private let saving = Mutex(())
    let store: FeatureStore
    let tokenSHA256: String
    public static let maxBatchEvents = 10_000
    /// How often each stream's retention (age, count) is enforced.
    public var retentionInterval: Duration { .seconds(60) }

    /// The embedded hub: the log and the stream definitions under `dataDirectory/hub/`.
    public static func embedded(dataDirectory: String, tokenSHA256: String) async throws -> HubServer {
        try await open(dataDirectory: dataDirectory, busURL: nil, tokenSHA256: tokenSHA256)
    }

    /// The hub with its log in the embedded SQLite file (`busURL` nil) or in NATS JetStream
    /// (`nats://host:port`); stream and view definitions stay under `dataDirectory/hub/`.
    public static func open(dataDirectory: String, busURL: String?, tokenSHA256: String) async throws -> HubServer {
        try FileManager.default.createDirectory(atPath: dataDirectory + "/hub", withIntermediateDirectories: true)
        let bus: any MessageBus
        if let busURL {
            bus = try await NATSBus.connect(url: busURL)
        } else {
            bus = try SQLiteLog(path: dataDirectory + "/hub/log.sqlite")
        }
        let store = FeatureStore(storage: try SQLiteFeatureStorage(path: dataDirectory + "/hub/features.sqlite"))
        return try HubServer(bus: bus, store: store, definitionsFile: dataDirectory + "/hub/streams.json", tokenSHA256: tokenSHA256)
    }

    /// Streams and views declared in a file (`wharf hub --definitions FILE`).
    public struct Definitions: Sendable, Decodable {
        public var streams: [StreamDefinition]
        public var views: [FeatureView]

        enum CodingKeys: String, CodingKey, CaseIterable { case streams, views }

        public init(from decoder: any Decoder) throws {
            try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
            let container = try decoder.container(keyedBy: CodingKeys.self)
            streams = try container.decodeIfPresent([StreamDefinition].self, forKey: .streams) ?? []
            views = try container.decodeIfPresent([FeatureView].self, forKey: .views) ?? []
        }

        /// Reads YAML (or JSON, which the YAML reader takes too when written in block style;
        /// a `.json` file is read as JSON).
        public static func load(file: String) throws -> Definitions {
            guard let data = FileManager.default.contents(atPath: file) else { throw WharfError(.notFound, "cannot read \(file)") }
            if file.hasSuffix(".json") {
                let decoder = JSONDecoder()
                decoder.userInfo[.refusesUnknownKeys] = true
                do {
                    return try decoder.decode(Definitions.self, from: data)
                } catch let error as DecodingError {
                    throw WharfError(.invalidInput, "\(file): \(JSONErrors.describe(error, in: data))")
                }
            }
            return try YAMLReader.parse(String(decoding: data, as: UTF8.self), file: file).decode(Definitions.self, from: file)
        }
    }

    /// Declares the streams, then the views (each checked as the API checks it); what exists is
    /// updated, so applying the same file at every start is harmless.
    public func apply(_ declared: Definitions) async throws {
        for stream in declared.streams { try await define(stream) }
        for view in declared.views { try defineView(view) }
    }

    public init(bus: any MessageBus, store: FeatureStore = FeatureStore(), definitionsFile: String?, tokenSHA256: String) throws {
        self.bus = bus
        self.store = store
        self.definitionsFile = definitionsFile
        self.tokenSHA256 = tokenSHA256
        var stored: [String: StreamDefinition] = [:]
        if let definitionsFile, let data = FileManager.default.contents(atPath: definitionsFile) {
            stored = try JSONDecoder().decode([String: StreamDefinition].self, from: data)
        }
        definitions = Mutex(stored)
        var storedViews: [String: FeatureView] = [:]
        if let file = definitionsFile.map({ ($0 as NSString).deletingLastPathComponent + "/views.json" }),
           let data = FileManager.default.contents(atPath: file) {
            storedViews = try JSONDecoder().decode([String: FeatureView].self, from: data)
        }
        views = Mutex(storedViews)
    }

    func defineView(_ view: FeatureView) throws {
        let view = try view.validated(against: try definition(view.stream))
        // The file is written before the view takes effect, one definition at a time: two
        // definitions at once cannot leave the older snapshot on disk.
        try saving.withLock { _ in
            var all = views.withLock { $0 }
            all[view.name] = view
            if let definitionsFile { try Self.save(all, to: (definitionsFile as NSString).deletingLastPathComponent + "/views.json") }
            views.withLock { $0 = all }
        }
    }

    /// Whether a view reads `stream` (then the feature store follows it).
    func isMaterialized(_ stream: String) -> Bool {
        views.withLock { $0.values.contains { $0.stream == stream } }
    }

    func view(_ name: String) throws(WharfError) -> FeatureView {
        guard let view = views.withLock({ $0[name] }) else { throw WharfError(.notFound, "no feature view named \(name)") }
        return view
    }

    /// `view`'s features for each entity as of `time`, after reading what the stream gained.
    func lookup(_ view: FeatureView, entities: [(String, Date)]) async throws -> [FeatureStore.Lookup] {
        // No such entity can be stored; looked up in SQLite, a NUL would cut it to another's name.
        if let bad = entities.firstIndex(where: { !StreamDefinition.isEntity($0.0) }) {
            let shown = entities[bad].0.unicodeScalars.prefix(64).map { $0.value < 0x20 || $0.value == 0x7F ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined()
            throw WharfError(.invalidInput, "entity \"\(shown)\"\(entities.count > 1 ? " (row \(bad))" : "") must be text of 1 to 256 bytes without control characters")
        }
        try await store.catchUp(stream: try definition(view.stream), bus: bus)
        var lookups: [FeatureStore.Lookup] = []
        lookups.reserveCapacity(entities.count)
        for (entity, time) in entities { lookups.append(try await store.lookup(view, entity: entity, asOf: time)) }
        return lookups
    }

    static func save(_ value: some Encodable, to file: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let temporary = file + ".tmp-\(UUID().uuidString)"
        try encoder.encode(value).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, file) == 0 else { throw WharfError(.io, "cannot save \(file)") }
    }

    public func buildApplication(host: String, port: Int, logger: Logger,
                                 onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: ErrorMiddleware())
        // Lookups and consumer fetches are POSTs that change nothing: reads, open like GETs.
        router.add(middleware: try BearerTokenMiddleware(tokenSHA256: tokenSHA256, protectReads: false, service: "hub") { request in
            let path = request.uri.path
            return request.method == .get || request.method == .head || (request.method == .post && (path.hasSuffix("/lookup") || path.hasSuffix("/fetch")))
        })
        router.get("/v1/health/live") { _, _ in Response.emptyOK }
        router.get("/v1/health/ready") { _, _ in Response.emptyOK }
        HubController(hub: self).addRoutes(to: router)
        router.refuseOtherMethods()
        return Application(router: router, server: .wharfHTTP1, configuration: .init(address: .hostname(host, port: port), serverName: "wharf-hub"),
                           services: [PeriodicService(interval: retentionInterval) { await self.enforceRetention(logger: logger) },
                                      PeriodicService(interval: .milliseconds(250)) { await self.materializeViews(logger: logger) }],
                           onServerRunning: onServerRunning, logger: logger)
    }

    func define(_ definition: StreamDefinition) async throws {
        let definition = try definition.validated()
        try await bus.createStream(StreamConfiguration(name: definition.name, maxAgeSeconds: definition.maxAgeSeconds, maxMessages: definition.maxMessages))
        try saving.withLock { _ in
            var all = definitions.withLock { $0 }
            all[definition.name] = definition
            if let definitionsFile { try Self.save(all, to: definitionsFile) }
            definitions.withLock { $0 = all }
        }
    }

    func definition(_ name: String) throws(WharfError) -> StreamDefinition {
        guard let definition = definitions.withLock({ $0[name] }) else { throw WharfError(.notFound, "no stream named \(name)") }
        return definition
    }

    var allDefinitions: [StreamDefinition] { definitions.withLock { $0.values.sorted { $0.name < $1.name } } }
}

struct HubController: Sendable {
    let hub: HubServer

    struct Acknowledgement: Codable { var offset: Int64 }

    struct StreamStatus: Encodable {
        var definition: StreamDefinition
        var bounds: StreamBounds
    }

    struct BatchResult: Encodable {
        struct Item: Encodable {
            var index: Int
            var offset: Int64?
            var error: String?
        }

        var accepted: Int
        var rejected: Int
        var results: [Item]

        /// The same JSON as the Encodable form (sorted keys), written directly: a batch of
        /// 10,000 events answers 10,000 items, and a JSONEncoder took a tenth of ingest's CPU.
        var json: [UInt8] {
            var writer = JSONWriter(capacity: 64 + results.count * 28)
            writer.raw("{\"accepted\":\(accepted),\"rejected\":\(rejected),\"results\":[")
            for (position, item) in results.enumerated() {
                if position > 0 { writer.raw(",") }
                if let error = item.error {
                    writer.raw("{\"error\":")
                    writer.string(error)
                    writer.raw(",\"index\":\(item.index)}")
                } else if let offset = item.offset {
                    writer.raw("{\"index\":\(item.index),\"offset\":\(offset)}")
                } else {
                    writer.raw("{\"index\":\(item.index)}")
                }
            }
            writer.raw("]}")
            return writer.bytes
        }
    }

    struct EventList: Encodable {
        struct Item: Encodable {
            var offset: Int64
            var entity: String
            /// RFC 3339, to the second (as every date of the API)…
            var time: Date
            /// …and exact: seconds since 1970, for point-in-time joins.
            var seconds: Double
            var event: String
        }

        var events: [Item]
        var next: Int64
    }

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.put("/v1/streams/:stream") { request, context in try await define(request, context) }
        router.get("/v1/streams") { _, _ in try JSONBody.response(["streams": hub.allDefinitions]) }
        router.get("/v1/streams/:stream") { _, context in try await status(context) }
        router.post("/v1/streams/:stream/events") { request, context in try await ingest(request, context) }
        router.get("/v1/streams/:stream/events") { request, context in try await replay(request, context) }
        router.post("/v1/streams/:stream/consumers/:consumer/fetch") { request, context in try await fetch(request, context) }
        router.post("/v1/streams/:stream/consumers/:consumer/ack") { request, context in try await acknowledge(request, context) }
        router.put("/v1/views/:view") { request, context in try await defineView(request, context) }
        router.get("/v1/views") { _, _ in try JSONBody.response(["views": hub.views.withLock { $0.values.sorted { $0.name < $1.name } }]) }
        router.get("/v1/features/:view/:entity") { request, context in try await features(request, context) }
        router.post("/v1/features/:view/lookup") { request, context in try await lookup(request, context) }
    }

    struct LookupRequest: Decodable {
        struct Row: Decodable {
            var entity: String
            /// RFC 3339 or seconds since 1970; absent: now.
            var time: FeatureValue?

            enum CodingKeys: String, CodingKey, CaseIterable { case entity, time }

            init(from decoder: any Decoder) throws {
                // A row's time under another name ("ts") would be read as now: a point-in-time
                // join would take values from after the label's time.
                try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
                let container = try decoder.container(keyedBy: CodingKeys.self)
                entity = try container.decode(String.self, forKey: .entity)
                time = try container.decodeIfPresent(FeatureValue.self, forKey: .time)
            }
        }

        var rows: [Row]

        enum CodingKeys: String, CodingKey, CaseIterable { case rows }

        init(from decoder: any Decoder) throws {
            try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
            rows = try decoder.container(keyedBy: CodingKeys.self).decode([Row].self, forKey: .rows)
        }
    }

    private func defineView(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let name = try context.parameters.require("view")
        let view = try await JSONBody.decode(FeatureView.self, from: request)
        guard view.name == name else { throw WharfError(.invalidInput, "the view is named \(view.name), the path \(name)") }
        try hub.defineView(view)
        return try JSONBody.response(view)
    }

    /// The online read: the latest fresh values now; 400 when a required feature is absent.
    private func features(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let view = try hub.view(try context.parameters.require("view"))
        // Path parameters arrive as sent: an entity with a space or a slash comes percent-encoded.
        let raw = try context.parameters.require("entity")
        guard let entity = raw.removingPercentEncoding, !entity.isEmpty else {
            throw WharfError(.invalidInput, "entity \"\(raw.prefix(64))\" is not valid percent-encoded text")
        }
        let result = try await hub.lookup(view, entities: [(entity, Date())])[0]
        let absent = view.required.filter { result.features[$0] == nil }
        guard absent.isEmpty else {
            throw WharfError(.invalidInput, "entity \(entity.prefix(64)) has no fresh value for the required \(absent.joined(separator: ", "))")
        }
        return try JSONBody.response(result)
    }

    /// Many entities at once, each as of its own time (now when none is given): the online
    /// batch lookup and the point-in-time join of `wharf dataset build`.
    private func lookup(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let view = try hub.view(try context.parameters.require("view"))
        let rows = try await JSONBody.decode(LookupRequest.self, from: request, limit: 64 << 20).rows
        guard rows.count <= 100_000 else { throw WharfError(.invalidInput, "at most 100000 rows a lookup") }
        let now = Date()
        let keys = try rows.enumerated().map { index, row throws(WharfError) -> (String, Date) in
            switch row.time {
            case nil: return (row.entity, now)
            case .number(let seconds)?:
                guard seconds.isFinite else { throw WharfError(.invalidInput, "rows[\(index)].time must be a finite number of seconds") }
                return (row.entity, Date(timeIntervalSince1970: seconds))
            case .string(let text)?:
                guard let time = StreamDefinition.parseTime(text) else { throw WharfError(.invalidInput, "rows[\(index)].time \"\(text.prefix(40))\" is not an RFC 3339 time") }
                return (row.entity, time)
            case .bool?: throw WharfError(.invalidInput, "rows[\(index)].time must be RFC 3339 text or seconds")
            }
        }
        return try JSONBody.response(["rows": try await hub.lookup(view, entities: keys)])
    }

    private func define(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let name = try context.parameters.require("stream")
        var definition = try await JSONBody.decode(StreamDefinition.self, from: request)
        guard definition.name == name else { throw WharfError(.invalidInput, "the definition is for stream \(definition.name), the path for \(name)") }
        definition = try definition.validated()
        try await hub.define(definition)
        return try JSONBody.response(StreamStatus(definition: definition, bounds: try await hub.bus.bounds(stream: name)))
    }

    private func status(_ context: BasicRequestContext) async throws -> Response {
        let definition = try hub.definition(try context.parameters.require("stream"))
        return try JSONBody.response(StreamStatus(definition: definition, bounds: try await hub.bus.bounds(stream: definition.name)))
    }

    private func ingest(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let definition = try hub.definition(try context.parameters.require("stream"))
        let body = try await request.body.collect(upTo: 64 << 20)
        let parsed = try body.withUnsafeReadableBytes { bytes throws(WharfError) in
            try EventBatchParser.parse(bytes, maxEvents: HubServer.maxBatchEvents)
        }
        let now = Date()
        var accepted: [OutgoingMessage] = []
        var values: [[String: StreamDefinition.Scalar]] = []
        var items: [BatchResult.Item] = []
        var acceptedIndices: [Int] = []
        for (index, fields) in parsed.enumerated() {
            switch fields.flatMap({ definition.check($0, receivedAt: now) }) {
            case .success(let event):
                accepted.append(OutgoingMessage(key: event.entity, time: event.time, payload: event.payload))
                values.append(event.values)
                acceptedIndices.append(index)
                items.append(.init(index: index, offset: nil, error: nil))
            case .failure(let error):
                items.append(.init(index: index, offset: nil, error: error.message))
            }
        }
        // An event the bus cannot take for its size (NATS: over the server's max_payload) is
        // refused on its own, like any other bad event.
        let oversized = accepted.isEmpty ? [] : try await hub.bus.oversized(stream: definition.name, accepted)
        if !oversized.isEmpty {
            for event in oversized.reversed() {
                items[acceptedIndices[event.index]].error = "the event is \(event.bytes) bytes as stored, over the bus's limit of \(event.limit)"
                accepted.remove(at: event.index)
                values.remove(at: event.index)
                acceptedIndices.remove(at: event.index)
            }
        }
        // One append for the whole batch: all of its accepted events are durable, or none.
        let offsets = accepted.isEmpty ? [] : try await hub.bus.publish(stream: definition.name, accepted)
        for (index, offset) in zip(acceptedIndices, offsets) { items[index].offset = offset }
        if !offsets.isEmpty, hub.isMaterialized(definition.name) {
            // The feature store takes the checked events as they are, without reading them back.
            let events = zip(offsets, zip(accepted, values)).map { offset, event in
                MaterializedEvent(offset: offset, entity: event.0.key, time: event.0.time, values: event.1)
            }
            // The batch is durable in the log: a failure here must not read as "not stored" (a
            // client would send it again). The store's position did not move, so the next
            // catch-up reads these events from the log.
            do {
                try await hub.store.applyAppended(stream: definition.name, events)
            } catch {
                context.logger.warning("feature store update failed; the views catch up from the log", metadata: ["stream": "\(definition.name)", "error": "\(error)"])
            }
        }
        let result = BatchResult(accepted: accepted.count, rejected: parsed.count - accepted.count, results: items)
        return Response.json(result.json, status: accepted.isEmpty ? .badRequest : .ok)
    }

    private func replay(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let definition = try hub.definition(try context.parameters.require("stream"))
        let query = request.uri.queryParameters
        let limit = try Self.limit(query["limit"].map(String.init))
        var from: Int64 = 1
        if let since = query["since"].map(String.init) {
            guard let time = StreamDefinition.parseTime(since) else { throw WharfError(.invalidInput, "since \"\(since.prefix(40))\" is not an RFC 3339 time") }
            from = try await hub.bus.firstOffset(stream: definition.name, atOrAfter: time) ?? Int64.max
        } else if let text = query["from"].map(String.init) {
            guard let offset = Int64(text), offset >= 1 else { throw WharfError(.invalidInput, "from must be an offset from 1") }
            from = offset
        }
        let messages = from == Int64.max ? [] : try await hub.bus.read(stream: definition.name, from: from, limit: limit)
        return try JSONBody.response(Self.list(messages, after: from - 1))
    }

    private func fetch(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let definition = try hub.definition(try context.parameters.require("stream"))
        let consumer = try context.parameters.require("consumer")
        let limit = try Self.limit(request.uri.queryParameters["limit"].map(String.init))
        let messages = try await hub.bus.fetch(stream: definition.name, consumer: consumer, limit: limit)
        let acknowledged = try await hub.bus.acknowledged(stream: definition.name, consumer: consumer)
        return try JSONBody.response(Self.list(messages, after: acknowledged))
    }

    private func acknowledge(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let definition = try hub.definition(try context.parameters.require("stream"))
        let consumer = try context.parameters.require("consumer")
        let ack = try await JSONBody.decode(Acknowledgement.self, from: request, limit: 4096)
        guard ack.offset >= 0 else { throw WharfError(.invalidInput, "offset must be 0 or more") }
        try await hub.bus.acknowledge(stream: definition.name, consumer: consumer, through: ack.offset)
        return try JSONBody.response(["acknowledged": try await hub.bus.acknowledged(stream: definition.name, consumer: consumer)])
    }

    private static func list(_ messages: [BusMessage], after: Int64) -> EventList {
        EventList(events: messages.map { .init(offset: $0.offset, entity: $0.key, time: $0.time, seconds: $0.time.timeIntervalSince1970,
                                                        event: String(decoding: $0.payload, as: UTF8.self)) },
                  next: (messages.last?.offset ?? after) + 1)
    }

    private static func limit(_ text: String?) throws(WharfError) -> Int {
        guard let text else { return 1000 }
        guard let limit = Int(text), (1...10_000).contains(limit) else { throw WharfError(.invalidInput, "limit must be 1…10000") }
        return limit
    }
}

/// Runs `work` every `interval` until graceful shutdown.
struct PeriodicService: Service {
    let interval: Duration
    let work: @Sendable () async -> Void

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await work()
                try? await Task.sleep(for: interval)
            }
        }
    }
}

extension HubServer {
    /// Keeps the feature store following the streams that views read, so the online store is
    /// materialized continuously and not only when a lookup comes (lookups still catch up
    /// first, so an accepted event is visible to the next one).
    func materializeViews(logger: Logger) async {
        let streams = Set(views.withLock { $0.values.map(\.stream) })
        for name in streams.sorted() where !store.isFollowedByIngest(name) {
            do {
                try await store.catchUp(stream: try definition(name), bus: bus)
            } catch {
                logger.warning("materializing failed", metadata: ["stream": "\(name)", "error": "\(error)"])
            }
        }
    }

    /// Enforces every stream's retention (`max_age_seconds`, `max_messages`), on the log and on
    /// what was materialized from it.
    func enforceRetention(logger: Logger) async {
        for definition in allDefinitions where definition.maxAgeSeconds != nil || definition.maxMessages != nil {
            do {
                let now = Date()
                let removed = try await bus.enforceRetention(stream: definition.name, now: now)
                if removed > 0 { logger.info("retention", metadata: ["stream": "\(definition.name)", "removed": "\(removed)"]) }
                if let maxAge = definition.maxAgeSeconds {
                    try await store.forget(stream: definition.name, before: now.addingTimeInterval(-maxAge))
                }
            } catch {
                logger.warning("retention failed", metadata: ["stream": "\(definition.name)", "error": "\(error)"])
            }
        }
    }
}
