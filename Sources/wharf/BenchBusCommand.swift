import ArgumentParser
import Foundation
import WharfBus
import WharfCore
import WharfFeatures

/// Ingest throughput of the embedded log or of NATS JetStream, in process (batches as the hub
/// appends them).
struct BenchBusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-bus",
        abstract: "Measure how fast the embedded log (SQLite, WAL), or NATS JetStream, appends and reads events."
    )

    @Option(help: "Measure NATS JetStream at this URL (nats://host:4222) instead of the embedded log.") var bus: String?
    @Option(help: "Events to append.") var events = 200_000
    @Option(help: "Events per append (one transaction).") var batch = 1000
    @Option(help: "Bytes of JSON per event (about).") var eventBytes = 120
    @Flag(help: "Print a JSON object.") var json = false

    struct Result: Encodable {
        var events: Int
        var batch: Int
        var appendEventsPerSecond: Double
        var readEventsPerSecond: Double
        var lookupP50Microseconds: Double
        var lookupP99Microseconds: Double
    }

    func run() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-bench-bus-\(UUID().uuidString).sqlite").path
        defer {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
        let log: any MessageBus
        if let bus {
            // A prefix of its own, so that runs never meet an earlier run's stream.
            log = try await NATSBus.connect(url: bus, prefix: "bench\(UInt32.random(in: 0...UInt32.max))")
        } else {
            log = try SQLiteLog(path: path)
        }
        try await log.createStream(StreamConfiguration(name: "bench"))
        let padding = String(repeating: "x", count: max(0, eventBytes - 60))
        let batches = (0..<max(1, events / batch)).map { b in
            (0..<batch).map { i in
                OutgoingMessage(key: "user-\(i % 1000)", time: Date(timeIntervalSince1970: 1_800_000_000 + Double(b * batch + i)),
                                payload: Array(#"{"seq":\#(b * batch + i),"page":"\#(padding)"}"#.utf8))
            }
        }
        let clock = ContinuousClock()
        let start = clock.now
        for messages in batches { _ = try await log.publish(stream: "bench", messages) }
        let appended = clock.now - start
        let total = batches.count * batch
        let readStart = clock.now
        var from: Int64 = 1
        var read = 0
        while true {
            let page = try await log.read(stream: "bench", from: from, limit: 10_000)
            if page.isEmpty { break }
            read += page.count
            from = page.last!.offset + 1
        }
        let readTime = clock.now - readStart
        func seconds(_ duration: Duration) -> Double { Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18 }

        // Online lookups in process: the feature store materialized from the same log, then one
        // entity at a time, each lookup first checking the log for anything new (as the hub does).
        let definition = StreamDefinition(name: "bench", entityKey: "user", timeField: "time", features: ["seq": .number, "page": .string])
        let view = FeatureView(name: "bench", stream: "bench", features: ["seq", "page"])
        let featuresPath = path + ".features"
        defer {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: featuresPath + suffix) }
        }
        let store = FeatureStore(storage: try SQLiteFeatureStorage(path: featuresPath))
        try await store.catchUp(stream: definition, bus: log)
        var latencies: [Double] = []
        for index in 0..<20_000 {
            let start = clock.now
            try await store.catchUp(stream: definition, bus: log)
            _ = try await store.lookup(view, entity: "user-\(index % 1000)", asOf: Date())
            latencies.append(seconds(clock.now - start) * 1e6)
        }
        latencies.sort()
        let result = Result(events: total, batch: batch, appendEventsPerSecond: Double(total) / seconds(appended), readEventsPerSecond: Double(read) / seconds(readTime),
                            lookupP50Microseconds: latencies[latencies.count / 2], lookupP99Microseconds: latencies[latencies.count * 99 / 100])
        if let nats = log as? NATSBus {
            // Leave nothing behind on the server.
            _ = try? await nats.deleteStream("bench")
            await nats.close()
        }
        if json {
            writeStandardOutput(try encodeJSON(result))
        } else {
            writeStandardOutput("""
                \(bus == nil ? "embedded log (SQLite, WAL)" : "NATS JetStream at \(bus!)")
                appended \(total) events in batches of \(batch): \(Int(result.appendEventsPerSecond)) events/s
                read back: \(Int(result.readEventsPerSecond)) events/s
                online lookup in process (log checked first): p50 \(String(format: "%.1f", result.lookupP50Microseconds)) µs, p99 \(String(format: "%.1f", result.lookupP99Microseconds)) µs

                """)
        }
    }
}
