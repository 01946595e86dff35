import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Synchronization
import Testing
import WharfBus
import WharfCore
@testable import WharfFeatures

@Suite("Hub ingest, in process")
struct HubIngestTests {
    static let token = "hub-token"
    static let tokenSHA256 = "505a8c497606f899f72232a403399922417b7ca910dd96f341a44d1658a22a8f"  // sha256("hub-token")

    /// Storage whose writes fail while `failing`, as a full disk or a locked database would.
    final class FailingWrites: FeatureStorage {
        let inner = InMemoryFeatureStorage()
        let failing = Mutex(true)
        func position(stream: String) async throws -> Int64 { try await inner.position(stream: stream) }
        func apply(stream: String, events: [MaterializedEvent], from: Int64, next: Int64) async throws -> Bool {
            if failing.withLock({ $0 }) { throw WharfError(.io, "disk full") }
            return try await inner.apply(stream: stream, events: events, from: from, next: next)
        }
        func values(stream: String, entity: String, features: [String], asOf time: Date) async throws -> [String: Observation] {
            try await inner.values(stream: stream, entity: entity, features: features, asOf: time)
        }
        func latest(stream: String) async throws -> [String: [String: Observation]] { try await inner.latest(stream: stream) }
        func forget(stream: String, before cutoff: Date) async throws -> Int { try await inner.forget(stream: stream, before: cutoff) }
    }

    /// Once a batch is in the log it is stored: a failure of the feature store's update after
    /// that must not answer 500 (a client would send the batch again, and it would be stored
    /// twice). The answer is the log's, and the events can be replayed.
    @Test func aBatchInTheLogIsAcceptedWhenTheFeatureStoreFails() async throws {
        let bus = InProcessBus()
        let storage = FailingWrites()
        let store = FeatureStore(storage: storage)
        let hub = try HubServer(bus: bus, store: store, definitionsFile: nil, tokenSHA256: Self.tokenSHA256)
        let declared = #"""
            {"streams": [{"name": "clicks", "entity_key": "user", "time_field": "ts", "features": {"seq": "number"}}],
             "views": [{"name": "activity", "stream": "clicks", "features": ["seq"]}]}
            """#
        try await hub.apply(JSONDecoder().decode(HubServer.Definitions.self, from: Data(declared.utf8)))
        // The store knows where the stream stands, so the ingest's own update reaches the storage.
        try await store.catchUp(stream: try hub.definition("clicks"), bus: bus)

        let app = try hub.buildApplication(host: "127.0.0.1", port: 0, logger: Logger(label: "hub-test"))
        try await app.test(.router) { client in
            let batch = #"[{"user": "a", "ts": "2026-11-29T10:00:00Z", "seq": 1}, {"user": "b", "ts": "2026-11-29T10:00:01Z", "seq": 2}]"#
            try await client.execute(uri: "/v1/streams/clicks/events", method: .post, headers: [.authorization: "Bearer \(Self.token)"],
                                     body: ByteBuffer(string: batch)) { response in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let answer = try JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [String: Any]
                #expect(answer?["accepted"] as? Int == 2)
                #expect((answer?["results"] as? [[String: Any]])?.compactMap { $0["offset"] as? Int } == [1, 2])
            }
            try await client.execute(uri: "/v1/streams/clicks/events?from=1&limit=10", method: .get) { response in
                #expect(response.status == .ok)
                let replay = try JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [String: Any]
                #expect((replay?["events"] as? [Any])?.count == 2, "\(String(buffer: response.body))")
            }
        }
        // The store's position did not move: once writes work again, the catch-up reads the
        // batch from the log.
        storage.failing.withLock { $0 = false }
        #expect(try await store.catchUp(stream: try hub.definition("clicks"), bus: bus) == 2)
        #expect(try await storage.latest(stream: "clicks")["b"]?["seq"] != nil)
    }
}

@Suite("Hub entities, in process")
struct HubEntityTests {
    /// SQLite keeps text up to its first NUL: an entity "a\0b" was filed under "a" (its events
    /// became a's features), and a lookup of "a\0b" read a's values. Control characters in an
    /// entity, and a NUL in a string feature, are refused per event; such an entity is refused
    /// at lookup.
    @Test func controlCharactersCannotNameAnEntity() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-hub-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let hub = try await HubServer.embedded(dataDirectory: directory, tokenSHA256: HubIngestTests.tokenSHA256)
        let declared = #"""
            {"streams": [{"name": "clicks", "entity_key": "user", "time_field": "ts", "features": {"seq": "number", "page": "string"}}],
             "views": [{"name": "activity", "stream": "clicks", "features": ["seq", "page"]}]}
            """#
        try await hub.apply(JSONDecoder().decode(HubServer.Definitions.self, from: Data(declared.utf8)))
        let app = try hub.buildApplication(host: "127.0.0.1", port: 0, logger: Logger(label: "hub-test"))
        let auth: HTTPFields = [.authorization: "Bearer \(HubIngestTests.token)"]
        try await app.test(.router) { client in
            let batch = #"""
                [{"user": "a", "ts": "2026-11-29T10:00:00Z", "seq": 1, "page": "home"},
                 {"user": "a\u0000b", "ts": "2026-11-29T10:00:01Z", "seq": 2},
                 {"user": "a\nb", "ts": "2026-11-29T10:00:01Z", "seq": 3},
                 {"user": "c", "ts": "2026-11-29T10:00:01Z", "page": "x\u0000y"}]
                """#
            try await client.execute(uri: "/v1/streams/clicks/events", method: .post, headers: auth, body: ByteBuffer(string: batch)) { response in
                let answer = try JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [String: Any]
                #expect(answer?["accepted"] as? Int == 1 && answer?["rejected"] as? Int == 3, "\(String(buffer: response.body))")
                let errors = (answer?["results"] as? [[String: Any]])?.map { $0["error"] as? String ?? "" } ?? []
                #expect(errors.count == 4 && errors[0].isEmpty)
                #expect(errors.dropFirst().prefix(2).allSatisfy { $0.contains("without control characters") }, "\(errors)")
                #expect(errors.last?.contains("page must not contain a NUL") == true, "\(errors)")
            }
            // A misspelt retention is refused, not a stream kept for ever.
            let misspelt = #"{"name": "kept", "entity_key": "user", "features": {"seq": "number"}, "max_age_secs": 60}"#
            try await client.execute(uri: "/v1/streams/kept", method: .put, headers: auth, body: ByteBuffer(string: misspelt)) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("unknown key max_age_secs"), "\(String(buffer: response.body))")
            }
            // Nor a field: "a\u0000b" and "a" would be one feature where values are kept.
            let oddField = #"{"name": "odd", "entity_key": "user", "time_field": "ts", "features": {"a\u0000b": "number", "a": "number"}}"#
            try await client.execute(uri: "/v1/streams/odd", method: .put, headers: auth, body: ByteBuffer(string: oddField)) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("no control characters"), "\(String(buffer: response.body))")
            }
            try await client.execute(uri: "/v1/features/activity/a", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("\"home\""), "\(String(buffer: response.body))")
            }
            // a's values are not anyone else's.
            try await client.execute(uri: "/v1/features/activity/a%00b", method: .get) { response in
                #expect(response.status == .badRequest, "\(String(buffer: response.body))")
            }
            // A row's time under another name would be read as "now", leaking later values into
            // a point-in-time join: refused.
            let misnamed = #"{"rows": [{"entity": "a", "ts": "2026-11-29T09:00:00Z"}]}"#
            try await client.execute(uri: "/v1/features/activity/lookup", method: .post, body: ByteBuffer(string: misnamed)) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("unknown key ts"), "\(String(buffer: response.body))")
            }
            let rows = #"{"rows": [{"entity": "a"}, {"entity": "a\u0000b", "time": "2026-11-29T11:00:00Z"}]}"#
            try await client.execute(uri: "/v1/features/activity/lookup", method: .post, body: ByteBuffer(string: rows)) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("row 1"), "\(String(buffer: response.body))")
            }
        }
    }
}
