import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import WharfClient
import WharfCore

/// Sampled prediction records (request id, model, version, latency, inputs, outputs) shipped
/// to the hub's `predictions` stream, for monitoring and for joining labels that arrive later.
///
/// Recording never waits and never fails a request: records go into a bounded buffer (beyond
/// 10,000 waiting, new ones are dropped and counted) that a background service sends as NDJSON
/// batches every second or every 500 records. A batch the hub does not take is dropped, also
/// counted: the log is for monitoring, and must not grow the server's memory.
public final class PredictionLog: Sendable {
    public static let stream = "predictions"
    static let capacity = 10_000
    static let batchSize = 500
    /// Inputs and outputs are kept as JSON text up to this many bytes each.
    static let maxFieldBytes = 16_384

    let hub: String
    let token: String?
    let sampleRate: Double
    private let buffer = Mutex([[UInt8]]())
    let dropped = Atomic(0)
    let shipped = Atomic(0)

    public init(hub: String, token: String?, sampleRate: Double) {
        var url = hub
        while url.hasSuffix("/") { url.removeLast() }
        self.hub = url
        self.token = token
        self.sampleRate = max(0, min(1, sampleRate))
    }

    func record(requestID: String?, model: String, response: InferenceResponse, request: InferenceRequest, latency: Duration) {
        var random = SystemRandomNumberGenerator()
        guard sampleRate >= 1 || Double(random.next() >> 11) * 0x1p-53 < sampleRate else { return }
        var writer = JSONWriter(capacity: 256)
        writer.raw("{")
        writer.string("request_id")
        writer.raw(":")
        writer.string(requestID ?? UUID().uuidString)
        writer.raw(#","time":"#)
        writer.number(Date().timeIntervalSince1970)
        writer.raw(#","model":"#)
        writer.string(model)
        writer.raw(#","version":"#)
        writer.string(response.modelVersion ?? "")
        writer.raw(#","latency_ms":"#)
        writer.number(Double(latency.components.seconds) * 1000 + Double(latency.components.attoseconds) / 1e15)
        writer.raw(#","inputs":"#)
        writer.string(Self.clipped(request.inputs.map { "\"\($0.name)\":\(Self.numbers($0.data))" }))
        writer.raw(#","outputs":"#)
        writer.string(Self.clipped(response.outputs.map { "\"\($0.name)\":\(Self.numbers($0.data))" }))
        writer.raw("}\n")
        let line = writer.bytes
        let accepted = buffer.withLock { buffer -> Bool in
            guard buffer.count < Self.capacity else { return false }
            buffer.append(line)
            return true
        }
        if !accepted { dropped.wrappingAdd(1, ordering: .relaxed) }
    }

    private static func numbers(_ values: [Double]) -> String {
        var writer = JSONWriter(capacity: values.count * 8 + 2)
        writer.raw("[")
        for (index, value) in values.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.number(value)
            if index >= 4096 { break }
        }
        writer.raw("]")
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    private static func clipped(_ parts: [String]) -> String {
        let text = "{" + parts.joined(separator: ",") + "}"
        return text.utf8.count <= maxFieldBytes ? text : String(decoding: text.utf8.prefix(maxFieldBytes), as: UTF8.self) + "…"
    }

    func take() -> [[UInt8]] {
        buffer.withLock { buffer in
            let taken = Array(buffer.prefix(Self.batchSize))
            buffer.removeFirst(taken.count)
            return taken
        }
    }

    var pending: Int { buffer.withLock { $0.count } }
}

/// Sends the prediction log's batches to the hub, and declares the stream at start.
struct PredictionLogShipper: Service {
    let log: PredictionLog
    let logger: Logger

    static let definition = #"{"name":"predictions","entity_key":"request_id","time_field":"time","features":{"model":"string","version":"string","latency_ms":"number","inputs":"string","outputs":"string"},"max_age_seconds":2592000}"#

    func run() async throws {
        let declared = Atomic(false)
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if !declared.load(ordering: .relaxed) {
                    declared.store(await send(.PUT, "/v1/streams/\(PredictionLog.stream)", body: Array(Self.definition.utf8)), ordering: .relaxed)
                }
                while declared.load(ordering: .relaxed), log.pending > 0 {
                    let batch = log.take()
                    if await !send(.POST, "/v1/streams/\(PredictionLog.stream)/events", body: Array(batch.joined())) {
                        log.dropped.wrappingAdd(batch.count, ordering: .relaxed)
                        break
                    }
                    log.shipped.wrappingAdd(batch.count, ordering: .relaxed)
                    if log.pending < PredictionLog.batchSize { break }
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
        // What is left when the server stops is sent once more.
        if declared.load(ordering: .relaxed), log.pending > 0 { _ = await send(.POST, "/v1/streams/\(PredictionLog.stream)/events", body: Array(log.take().joined())) }
    }

    private func send(_ method: HTTPMethod, _ path: String, body: [UInt8]) async -> Bool {
        var request = HTTPClientRequest(url: log.hub + path)
        request.method = method
        request.headers.add(name: "content-type", value: "application/x-ndjson")
        if let token = log.token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await RegistryClient.forServices.execute(request, timeout: .seconds(10))
            _ = try await response.body.collect(upTo: 16 << 20)
            guard (200..<300).contains(response.status.code) else {
                logger.warning("the hub refused prediction records", metadata: ["status": "\(response.status.code)"])
                return false
            }
            return true
        } catch {
            logger.debug("cannot reach the hub for the prediction log", metadata: ["error": "\(error)"])
            return false
        }
    }
}
