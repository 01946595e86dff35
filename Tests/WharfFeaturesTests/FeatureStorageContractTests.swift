import Foundation
import Testing
import WharfBus
import WharfCore
import WharfFeatures

/// One contract for every FeatureStorage: in memory and SQLite.
enum StorageBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory, sqlite

    var testDescription: String { rawValue }

    func make(path: String = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-features-\(UUID().uuidString).sqlite").path) throws -> any FeatureStorage {
        switch self {
        case .memory: InMemoryFeatureStorage()
        case .sqlite: try SQLiteFeatureStorage(path: path)
        }
    }
}

private let t0 = Date(timeIntervalSince1970: 1_800_000_000)

private func event(_ offset: Int64, _ entity: String, _ seconds: Double, _ values: [String: StreamDefinition.Scalar]) -> MaterializedEvent {
    MaterializedEvent(offset: offset, entity: entity, time: t0.addingTimeInterval(seconds), values: values)
}

@Suite("Feature storage contract")
struct FeatureStorageContractTests {
    /// Each read returns, per feature, the newest observation at or before the time: late
    /// events land in their place; at equal times the one that arrived last wins.
    @Test(arguments: StorageBackend.allCases)
    func pointInTimeReadsNeverSeeTheFuture(_ backend: StorageBackend) async throws {
        let storage = try backend.make()
        #expect(try await storage.position(stream: "clicks") == 1)
        let first = [
            event(1, "u1", 0, ["seq": .number(1), "page": .string("home")]),
            event(2, "u1", 200, ["seq": .number(3)]),
            event(3, "u2", 50, ["seq": .number(7), "mobile": .bool(true)]),
        ]
        #expect(try await storage.apply(stream: "clicks", events: first, from: 1, next: 4))
        // Late (time 100, after time 200 arrived) and a tie at 200 that arrives last.
        let second = [event(4, "u1", 100, ["seq": .number(2)]), event(5, "u1", 200, ["page": .string("cart")]), event(6, "u1", 200, ["page": .string("tie")])]
        #expect(try await storage.apply(stream: "clicks", events: second, from: 4, next: 7))
        #expect(try await storage.position(stream: "clicks") == 7)

        func read(_ entity: String, _ seconds: Double) async throws -> [String: StreamDefinition.Scalar] {
            try await storage.values(stream: "clicks", entity: entity, features: ["seq", "page", "mobile"], asOf: t0.addingTimeInterval(seconds)).mapValues(\.value)
        }
        #expect(try await read("u1", -1).isEmpty)
        #expect(try await read("u1", 0) == ["seq": .number(1), "page": .string("home")])
        #expect(try await read("u1", 150) == ["seq": .number(2), "page": .string("home")])
        #expect(try await read("u1", 200) == ["seq": .number(3), "page": .string("tie")])
        #expect(try await read("u2", 1000) == ["seq": .number(7), "mobile": .bool(true)])
        #expect(try await read("nobody", 1000).isEmpty)
        let observed = try await storage.values(stream: "clicks", entity: "u1", features: ["seq"], asOf: t0.addingTimeInterval(150))
        #expect(observed["seq"] == Observation(value: .number(2), time: t0.addingTimeInterval(100), offset: 4))

        let latest = try await storage.latest(stream: "clicks")
        #expect(latest["u1"]?.mapValues(\.value) == ["seq": .number(3), "page": .string("tie")])
        #expect(latest["u2"]?["mobile"]?.value == .bool(true))
        #expect(try await storage.latest(stream: "other").isEmpty)
    }

    /// Two readers that read the same events: only the first applies them.
    @Test(arguments: StorageBackend.allCases)
    func applyingIsConditionalOnThePosition(_ backend: StorageBackend) async throws {
        let storage = try backend.make()
        #expect(try await storage.apply(stream: "s", events: [event(1, "u", 0, ["x": .number(1)])], from: 1, next: 2))
        #expect(try await storage.apply(stream: "s", events: [event(1, "u", 0, ["x": .number(99)])], from: 1, next: 2) == false)
        #expect(try await storage.values(stream: "s", entity: "u", features: ["x"], asOf: t0)["x"]?.value == .number(1))
        #expect(try await storage.position(stream: "s") == 2)
    }

    /// Forgetting old observations keeps each feature's newest, so online reads still answer.
    @Test(arguments: StorageBackend.allCases)
    func forgettingKeepsTheNewest(_ backend: StorageBackend) async throws {
        let storage = try backend.make()
        var events: [MaterializedEvent] = []
        for index in 0..<10 {
            events.append(event(Int64(index + 1), "u", Double(index * 10), ["x": .number(Double(index))]))
        }
        events.append(event(11, "old", 0, ["x": .number(-1)]))
        #expect(try await storage.apply(stream: "s", events: events, from: 1, next: 12))
        #expect(try await storage.forget(stream: "s", before: t0.addingTimeInterval(55)) == 6)
        #expect(try await storage.values(stream: "s", entity: "u", features: ["x"], asOf: t0.addingTimeInterval(30)).isEmpty)
        #expect(try await storage.values(stream: "s", entity: "u", features: ["x"], asOf: t0.addingTimeInterval(65))["x"]?.value == .number(6))
        #expect(try await storage.values(stream: "s", entity: "old", features: ["x"], asOf: t0.addingTimeInterval(1000))["x"]?.value == .number(-1))
    }

    @Test func theSQLiteStorageSurvivesAReopen() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-features-\(UUID().uuidString).sqlite").path
        let storage = try StorageBackend.sqlite.make(path: path)
        #expect(try await storage.apply(stream: "s", events: [event(1, "u", 0, ["x": .string("a")])], from: 1, next: 2))
        let reopened = try SQLiteFeatureStorage(path: path)
        #expect(try await reopened.position(stream: "s") == 2)
        #expect(try await reopened.latest(stream: "s")["u"]?["x"]?.value == .string("a"))
    }

    /// The store over a bus: online reads from memory, past reads from the storage, TTLs
    /// counted back from the time asked; after a restart it resumes where it stopped.
    @Test func theStoreMaterializesAStreamAndAnswersAsOfAnyTime() async throws {
        let bus = InProcessBus()
        try await bus.createStream(StreamConfiguration(name: "clicks"))
        let stream = StreamDefinition(name: "clicks", entityKey: "user", timeField: "ts", features: ["seq": .number, "page": .string])
        let view = FeatureView(name: "activity", stream: "clicks", features: ["seq", "page"], ttlSeconds: 3600)
        func publish(_ entity: String, _ seconds: Double, _ json: String) async throws {
            _ = try await bus.publish(stream: "clicks", [OutgoingMessage(key: entity, time: t0.addingTimeInterval(seconds), payload: Array(json.utf8))])
        }
        try await publish("u1", 0, #"{"page":"home","seq":1,"user":"u1"}"#)
        try await publish("u1", 7200, #"{"seq":3,"user":"u1"}"#)
        try await publish("u1", 3600, #"{"seq":2,"user":"u1"}"#)  // late

        let path = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-features-\(UUID().uuidString).sqlite").path
        let store = FeatureStore(storage: try SQLiteFeatureStorage(path: path))
        #expect(try await store.catchUp(stream: stream, bus: bus) == 3)
        #expect(try await store.catchUp(stream: stream, bus: bus) == 0)

        let now = try await store.lookup(view, entity: "u1", asOf: t0.addingTimeInterval(7300))
        #expect(now.features == ["seq": .number(3)] && now.expired == ["page"] && now.missing.isEmpty)
        let past = try await store.lookup(view, entity: "u1", asOf: t0.addingTimeInterval(3599))
        #expect(past.features == ["seq": .number(1), "page": .string("home")])
        let lateOne = try await store.lookup(view, entity: "u1", asOf: t0.addingTimeInterval(3600))
        #expect(lateOne.features["seq"] == .number(2))
        #expect(try await store.lookup(view, entity: "u9", asOf: t0).missing == ["seq", "page"])

        // A new store on the same file: nothing is read twice, and what is new is added.
        try await publish("u1", 7300, #"{"page":"cart","user":"u1"}"#)
        let restarted = FeatureStore(storage: try SQLiteFeatureStorage(path: path))
        #expect(try await restarted.catchUp(stream: stream, bus: bus) == 1)
        let after = try await restarted.lookup(view, entity: "u1", asOf: t0.addingTimeInterval(7400))
        #expect(after.features == ["seq": .number(3), "page": .string("cart")])
    }

    /// Events the hub just appended are applied without reading the log, but only when the
    /// store is exactly at their first offset; anything else is left to the next catch-up.
    @Test func appendedEventsAreAppliedOnlyInOrder() async throws {
        let bus = InProcessBus()
        try await bus.createStream(StreamConfiguration(name: "s"))
        let stream = StreamDefinition(name: "s", entityKey: "user", timeField: "ts", features: ["x": .number])
        let view = FeatureView(name: "v", stream: "s", features: ["x"])
        let store = FeatureStore()
        #expect(try await store.catchUp(stream: stream, bus: bus) == 0)
        let later = t0.addingTimeInterval(10)
        _ = try await bus.publish(stream: "s", [OutgoingMessage(key: "u", time: t0, payload: Array(#"{"user":"u","x":1}"#.utf8))])
        try await store.applyAppended(stream: "s", [MaterializedEvent(offset: 1, entity: "u", time: t0, values: ["x": .number(1)])])
        #expect(try await store.lookup(view, entity: "u", asOf: later).features == ["x": .number(1)])
        // Offset 3 while the store is at 2: ignored, then read by the catch-up with offset 2.
        _ = try await bus.publish(stream: "s", [OutgoingMessage(key: "u", time: t0.addingTimeInterval(1), payload: Array(#"{"user":"u","x":2}"#.utf8)),
                                                OutgoingMessage(key: "u", time: t0.addingTimeInterval(2), payload: Array(#"{"user":"u","x":3}"#.utf8))])
        try await store.applyAppended(stream: "s", [MaterializedEvent(offset: 3, entity: "u", time: t0.addingTimeInterval(2), values: ["x": .number(3)])])
        #expect(try await store.lookup(view, entity: "u", asOf: later).features == ["x": .number(1)])
        #expect(try await store.catchUp(stream: stream, bus: bus) == 2)
        #expect(try await store.lookup(view, entity: "u", asOf: later).features == ["x": .number(3)])
        #expect(try await store.lookup(view, entity: "u", asOf: t0.addingTimeInterval(1)).features == ["x": .number(2)])
    }
}
