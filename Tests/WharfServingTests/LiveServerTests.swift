import AsyncHTTPClient
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Prometheus
import ServiceLifecycle
import Synchronization
import Testing
import WharfCore
import WharfRuntime
import WharfServing

/// A real server on a loopback port, driven by a real HTTP client.
@Suite("Model server on a live socket")
struct LiveServerTests {
    /// Runs `server` on a free port until `body` returns, then shuts it down gracefully.
    private func withRunningServer(
        _ server: ModelServer,
        drainDelay: Duration = .zero,
        _ body: @Sendable (_ port: Int, _ group: ServiceGroup) async throws -> Void
    ) async throws {
        let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
        let application = server.buildApplication(logger: ServingFixtures.logger, metrics: ServingFixtures.registry) { channel in
            portContinuation.yield(channel.localAddress?.port ?? 0)
            portContinuation.finish()
        }
        let group = server.serviceGroup(application, drainDelay: drainDelay, logger: ServingFixtures.logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var ports = portStream.makeAsyncIterator()
            let port = try #require(await ports.next())
            // Readiness comes from the loader service: wait for it, not for a fixed time.
            while !server.readiness.isReady { await Task.yield() }
            try await body(port, group)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    private static func post(_ client: HTTPClient, port: Int, path: String, body: ByteBuffer) async throws -> (status: UInt, body: ByteBuffer, version: String?) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(body)
        let response = try await client.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return (response.status.code, bytes, response.headers.first(name: "x-wharf-model-version"))
    }

    /// Blocking socket work, on a thread of its own: a test blocked in `recv` on one of the
    /// concurrency pool's two threads while CPU-bound tests held the other left the server's
    /// routes, which run on that pool, no thread to answer on (the read timed out in CI).
    private static func offThePool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: work()) }.start()
        }
    }

    /// A plain TCP connection to the server on loopback, reads timing out after 10 s: for the
    /// byte-level behaviour an HTTP client hides.
    private static func connectedSocket(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw WharfError(.unavailable, "could not connect to 127.0.0.1:\(port)")
        }
        return fd
    }

    /// A client that promises a body and stops sending it does not hold its connection (or
    /// the server's shutdown) for ever: the connection is closed once silent for the idle timeout.
    @Test func aStalledBodyIsCutOffAfterTheIdleTimeout() async throws {
        let server = await ServingFixtures.server(idleTimeout: .milliseconds(500))
        try await withRunningServer(server) { port, _ in
            let fd = try Self.connectedSocket(port: port)
            defer { close(fd) }
            let partial = Array("POST /v2/models/binary/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\":".utf8)
            #expect(partial.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } == partial.count)
            let started = ContinuousClock.now
            var buffer = [UInt8](repeating: 0, count: 4096)
            while buffer.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, 0) }) > 0 {}
            let waited = ContinuousClock.now - started
            // Closed (not timed out on our side), after about the idle timeout.
            #expect(waited >= .milliseconds(400) && waited < .seconds(5), "closed after \(waited)")
        }
    }

    /// An answer leaves in one write: head and body arrive together, so whoever reads it (a
    /// client, the gateway) wakes once per answer. Request metrics used to wrap every body in
    /// a closure, and then the head went out alone and the body some 100 µs after it.
    @Test func anAnswerArrivesInOneRead() async throws {
        let server = await ServingFixtures.server()
        try await withRunningServer(server) { port, _ in
            let fd = try Self.connectedSocket(port: port)
            defer { close(fd) }
            let body = String(buffer: ServingFixtures.requestBody(Array(repeating: 0.5, count: 8), rows: 1, features: 8))
            let request = Array("POST /v2/models/binary/infer HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
            // One blocking read after each request, as soon as anything arrives: it must hold
            // the whole answer.
            let firstReads = await Self.offThePool { () -> [String?] in
                (0..<20).map { _ in
                    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else { return nil }
                    var buffer = [UInt8](repeating: 0, count: 8192)
                    let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : nil
                }
            }
            for (round, read) in firstReads.enumerated() {
                let text = try #require(read, "round \(round): nothing read")
                let parts = text.components(separatedBy: "\r\n\r\n")
                try #require(parts.count == 2, "round \(round): no whole head in \(text.debugDescription)")
                let length = parts[0].split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
                #expect(parts[0].hasPrefix("HTTP/1.1 200"))
                #expect(length != nil && parts[1].utf8.count == length, "round \(round): the first read held \(parts[1].utf8.count) of \(length ?? -1) body bytes")
            }
        }
    }

    /// Concurrent requests of different sizes are merged into batches, and every caller gets
    /// exactly its own rows back.
    @Test func batchingGivesEveryCallerItsOwnRows() async throws {
        let path = ServingFixtures.model("xgb3_multi_softprob_4class.json")
        let model = try ModelLoader.load(path: path)
        let (values, rows) = try ServingFixtures.rows("xgb3_multi_softprob_4class", model: model)
        let features = model.metadata.featureCount
        let expected = try model.predict(values, rows: rows)
        // A short queue delay makes merging certain even on a fast machine.
        let server = await ServingFixtures.server(["m": path], batching: BatchingSettings(maxBatchRows: 64, maxQueueDelayMilliseconds: 2, maxConcurrentBatches: 1))
        let client = HTTPClient.shared
        try await withRunningServer(server) { port, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for caller in 0..<120 {
                    let first = (caller * 7) % (rows - 4)
                    let count = 1 + caller % 4
                    group.addTask {
                        let slice = Array(values[(first * features)..<((first + count) * features)])
                        let body = ServingFixtures.requestBody(slice, rows: count, features: features, id: "caller-\(caller)")
                        let response = try await Self.post(client, port: port, path: "/v2/models/m/infer", body: body)
                        #expect(response.status == 200)
                        let json = try ServingFixtures.json(response.body)
                        #expect(json["id"] as? String == "caller-\(caller)")
                        let got = ServingFixtures.outputData(json, "probabilities")
                        let want = Array(expected[(first * 4)..<((first + count) * 4)])
                        #expect(got.count == want.count && zip(got, want).allSatisfy { abs($0 - $1) <= 1e-12 }, "caller \(caller) got rows of another caller")
                    }
                }
                try await group.waitForAll()
            }
        }
        // The batch-size histogram saw batches of more than one request.
        var text: [UInt8] = []
        ServingFixtures.registry.emit(into: &text)
        let exposition = String(decoding: text, as: UTF8.self)
        let sum = exposition.split(separator: "\n").first { $0.hasPrefix(#"wharf_batch_rows_count{model="m""#) }
        let batches = sum.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
        #expect(batches > 0 && batches < 120, "120 requests should have been merged into fewer batches, saw \(batches)")
    }

    /// A new version is loaded and swapped in 50 times while clients keep sending requests:
    /// none fails, and the answering version only moves forward.
    @Test func hotSwapUnderLoadFailsNoRequest() async throws {
        let pathA = ServingFixtures.model("xgb3_binary_logistic.json")
        let server = await ServingFixtures.server(["swap": pathA])
        let client = HTTPClient.shared
        let failures = Locked(0)
        let answered = Locked(0)
        try await withRunningServer(server) { port, _ in
            let body = ServingFixtures.requestBody(Array(repeating: 0.5, count: 16), rows: 2, features: 8)
            let done = Locked(false)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        var lastVersion = 0
                        while !done.value {
                            let response = try await Self.post(client, port: port, path: "/v2/models/swap/infer", body: body)
                            let version = Int(response.version ?? "") ?? -1
                            if response.status != 200 || version < lastVersion {
                                failures.withLock { $0 += 1 }
                            }
                            lastVersion = max(lastVersion, version)
                            answered.withLock { $0 += 1 }
                        }
                    }
                }
                for swap in 0..<50 {
                    let response = try await Self.post(client, port: port, path: "/v2/repository/models/swap/load", body: ByteBuffer())
                    #expect(response.status == 200)
                    #expect(try ServingFixtures.json(response.body)["version"] as? String == String(swap + 2))
                }
                done.withLock { $0 = true }
                try await group.waitForAll()
            }
        }
        #expect(failures.value == 0)
        #expect(answered.value > 50)
        #expect(server.store.versions(of: "swap").last == "51")
    }

    /// SIGTERM's path: readiness goes false at once, requests already in flight finish.
    @Test func gracefulShutdownDrainsInFlightRequests() async throws {
        let path = ServingFixtures.model("lgb_deep.txt")
        let model = try ModelLoader.load(path: path)
        let features = model.metadata.featureCount
        let server = await ServingFixtures.server(["deep": path], batching: BatchingSettings(maxBatchRows: 20_000, maxQueuedRows: 200_000, maxConcurrentBatches: 1))
        let client = HTTPClient.shared
        let rows = 20_000
        let body = ServingFixtures.requestBody((0..<(rows * features)).map { Double($0 % 97) / 10 }, rows: rows, features: features)
        let statuses = Locked([UInt]())
        // A long drain delay: the probe below must reach the server while both cores evaluate.
        try await withRunningServer(server, drainDelay: .seconds(5)) { port, group in
            try await withThrowingTaskGroup(of: Void.self) { requests in
                for _ in 0..<4 {
                    requests.addTask {
                        let response = try await Self.post(client, port: port, path: "/v2/models/deep/infer", body: body)
                        statuses.withLock { $0.append(response.status) }
                    }
                }
                // Let the requests reach the server, then begin the shutdown while they run.
                try await Task.sleep(for: .milliseconds(150))
                await group.triggerGracefulShutdown()
                // The shutdown reaches the loader service through the application's own group.
                let deadline = ContinuousClock.now + .seconds(5)
                while server.readiness.isReady, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
                #expect(!server.readiness.isReady)
                // Readiness is false while the server still answers (the drain delay), so a load
                // balancer sees 503 rather than a refused connection.
                var probe = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v2/health/ready")
                probe.method = .GET
                let ready = try await client.execute(probe, timeout: .seconds(5))
                let readyBody = try await ready.body.collect(upTo: 1 << 16)
                #expect(ready.status.code == 503)
                #expect(String(buffer: readyBody).contains("shutting down"), "\(String(buffer: readyBody))")
                try await requests.waitForAll()
            }
        }
        #expect(statuses.value == [200, 200, 200, 200])
    }
}

/// A value shared between test tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    func withLock<Result: Sendable>(_ body: (inout Value) -> Result) -> Result { mutex.withLock { body(&$0) } }

    var value: Value { mutex.withLock { $0 } }
}
