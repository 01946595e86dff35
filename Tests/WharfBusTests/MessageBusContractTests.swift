import Foundation
import Testing
import WharfBus
import WharfCore

/// One contract for every MessageBus: in process, the embedded SQLite log, and NATS JetStream
/// (at WHARF_TEST_NATS_URL, a `nats-server -js` that scripts/test.sh starts and sets).
enum BusBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case inProcess, sqlite, nats

    var testDescription: String { rawValue }

    static var natsURL: String? { ProcessInfo.processInfo.environment["WHARF_TEST_NATS_URL"] }

    /// NATS only when a server is there; scripts/test.sh always provides one, and a missing one
    /// fails `natsIsThereWhenRequired` rather than passing silently.
    static var available: [BusBackend] { natsURL == nil ? [.inProcess, .sqlite] : allCases }

    /// A fresh bus. Tests share the one NATS server, so each bus gets a JetStream name prefix of
    /// its own.
    func make() async throws -> (bus: any MessageBus, path: String?) {
        switch self {
        case .inProcess: return (InProcessBus(), nil)
        case .sqlite:
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-bus-\(UUID().uuidString).sqlite").path
            return (try SQLiteLog(path: path), path)
        case .nats:
            return (try await NATSBus.connect(url: Self.natsURL!, prefix: uniquePrefix()), nil)
        }
    }
}

func uniquePrefix() -> String {
    "t\(UUID().uuidString.prefix(8).lowercased())"
}

private func message(_ index: Int, time: Date = Date(timeIntervalSince1970: 1_800_000_000)) -> OutgoingMessage {
    OutgoingMessage(key: "user-\(index % 7)", time: time.addingTimeInterval(Double(index)), payload: Array(#"{"i":\#(index)}"#.utf8))
}

@Suite("Message bus contract")
struct MessageBusContractTests {
    @Test func natsIsThereWhenRequired() {
        if ProcessInfo.processInfo.environment["WHARF_REQUIRE_NATS"] == "1" {
            #expect(BusBackend.natsURL != nil, "WHARF_REQUIRE_NATS=1 but WHARF_TEST_NATS_URL is not set")
        }
    }

    @Test(arguments: BusBackend.available)
    func publishedMessagesAreReadBackInOrder(_ backend: BusBackend) async throws {
        let (bus, _) = try await backend.make()
        try await bus.createStream(StreamConfiguration(name: "clicks"))
        let first = try await bus.publish(stream: "clicks", (0..<5).map { message($0) })
        let second = try await bus.publish(stream: "clicks", (5..<8).map { message($0) })
        #expect(first == [1, 2, 3, 4, 5] && second == [6, 7, 8])
        let all = try await bus.read(stream: "clicks", from: 1, limit: 100)
        #expect(all.map(\.offset) == Array(1...8))
        #expect(all.map(\.payload) == (0..<8).map { message($0).payload })
        #expect(all.map(\.key) == (0..<8).map { message($0).key })
        #expect(all[3].time == message(3).time)
        #expect(try await bus.read(stream: "clicks", from: 6, limit: 2).map(\.offset) == [6, 7])
        #expect(try await bus.read(stream: "clicks", from: 9, limit: 10).isEmpty)
        #expect(try await bus.firstOffset(stream: "clicks", atOrAfter: message(4).time) == 5)
        #expect(try await bus.bounds(stream: "clicks") == StreamBounds(first: 1, last: 8, count: 8))
        await #expect(throws: WharfError.self) { try await bus.publish(stream: "nope", [message(0)]) }
        #expect(try await bus.streams().map(\.name) == ["clicks"])
    }

    /// At least once: a consumer gets what follows its last acknowledgement, again and again
    /// until it acknowledges; acknowledgements never move back.
    @Test(arguments: BusBackend.available)
    func consumersResumeAfterTheirLastAcknowledgement(_ backend: BusBackend) async throws {
        let (bus, _) = try await backend.make()
        try await bus.createStream(StreamConfiguration(name: "orders"))
        _ = try await bus.publish(stream: "orders", (0..<10).map { message($0) })
        let batch = try await bus.fetch(stream: "orders", consumer: "features", limit: 4)
        #expect(batch.map(\.offset) == [1, 2, 3, 4])
        #expect(try await bus.fetch(stream: "orders", consumer: "features", limit: 4).map(\.offset) == [1, 2, 3, 4])
        try await bus.acknowledge(stream: "orders", consumer: "features", through: 4)
        #expect(try await bus.fetch(stream: "orders", consumer: "features", limit: 100).map(\.offset) == Array(5...10))
        try await bus.acknowledge(stream: "orders", consumer: "features", through: 2)
        #expect(try await bus.acknowledged(stream: "orders", consumer: "features") == 4)
        #expect(try await bus.fetch(stream: "orders", consumer: "monitor", limit: 1).map(\.offset) == [1])
        await #expect(throws: WharfError.self) { try await bus.acknowledge(stream: "orders", consumer: "features", through: 11) }
        await #expect(throws: WharfError.self) { try await bus.acknowledge(stream: "orders", consumer: "../x", through: 1) }
    }

    /// Keys are any text and times keep their fractions; big batches and reads past a page work.
    @Test(arguments: BusBackend.available)
    func keysTimesAndLargeBatchesRoundTrip(_ backend: BusBackend) async throws {
        let (bus, _) = try await backend.make()
        try await bus.createStream(StreamConfiguration(name: "odd.names_1"))
        let keys = ["plain", "with space", " lead", "trail ", "line\nbreak", "100%", "%41", "ünïcødé", "", "a:b/c"]
        let time = Date(timeIntervalSince1970: 1_800_000_000.123456)
        let odd = keys.map { OutgoingMessage(key: $0, time: time, payload: Array("\($0)\r\n".utf8)) }
        #expect(try await bus.publish(stream: "odd.names_1", odd) == Array(1...Int64(keys.count)))
        let read = try await bus.read(stream: "odd.names_1", from: 1, limit: 100)
        #expect(read.map(\.key) == keys)
        #expect(read.map(\.payload) == odd.map(\.payload))
        #expect(read.allSatisfy { abs($0.time.timeIntervalSince1970 - time.timeIntervalSince1970) < 1e-6 })

        let many = (0..<2500).map { message($0) }
        let offsets = try await bus.publish(stream: "odd.names_1", many)
        #expect(offsets == Array(Int64(keys.count + 1)...Int64(keys.count + 2500)))
        let page = try await bus.read(stream: "odd.names_1", from: 5, limit: 2000)
        #expect(page.count == 2000 && page.first?.offset == 5 && page.last?.offset == 2004)
        #expect(try await bus.fetch(stream: "odd.names_1", consumer: "c.1", limit: 1500).map(\.offset) == Array(1...1500))
        try await bus.acknowledge(stream: "odd.names_1", consumer: "c.1", through: 1500)
        #expect(try await bus.fetch(stream: "odd.names_1", consumer: "c.1", limit: 5000).count == keys.count + 2500 - 1500)
    }

    @Test(arguments: BusBackend.available)
    func retentionRemovesTheOldEndOnly(_ backend: BusBackend) async throws {
        let (bus, _) = try await backend.make()
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        try await bus.createStream(StreamConfiguration(name: "events", maxAgeSeconds: 100, maxMessages: 50))
        _ = try await bus.publish(stream: "events", (0..<200).map { message($0, time: start) })
        // Messages are 1 s apart: at start+199, the last 100 s keep offsets 100…200; then 50 at most.
        let removed = try await bus.enforceRetention(stream: "events", now: start.addingTimeInterval(199))
        #expect(removed == 150)
        #expect(try await bus.bounds(stream: "events") == StreamBounds(first: 151, last: 200, count: 50))
        #expect(try await bus.read(stream: "events", from: 1, limit: 3).map(\.offset) == [151, 152, 153])
        // Offsets are never reused.
        #expect(try await bus.publish(stream: "events", [message(0, time: start.addingTimeInterval(300))]) == [201])
    }

    /// The embedded log keeps what it acknowledged across a reopen, consumers' positions too.
    @Test func theSQLiteLogSurvivesAReopen() async throws {
        let (bus, path) = try await BusBackend.sqlite.make()
        try await bus.createStream(StreamConfiguration(name: "clicks"))
        _ = try await bus.publish(stream: "clicks", (0..<1000).map { message($0) })
        try await bus.acknowledge(stream: "clicks", consumer: "c", through: 600)
        let reopened = try SQLiteLog(path: try #require(path))
        #expect(try await reopened.bounds(stream: "clicks") == StreamBounds(first: 1, last: 1000, count: 1000))
        #expect(try await reopened.fetch(stream: "clicks", consumer: "c", limit: 1).first?.offset == 601)
        #expect(try await reopened.publish(stream: "clicks", [message(1)]) == [1001])
    }
}
