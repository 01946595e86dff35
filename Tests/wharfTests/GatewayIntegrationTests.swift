import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The gateway and its model servers as real processes on loopback.
@Suite("Gateway with real model servers")
struct GatewayIntegrationTests {
    static let adminKey = "gateway-admin-key"

    final class Server: Sendable {
        let process: Process
        let arguments: [String]

        /// `output`: where its standard output and error go (nowhere by default).
        init(_ arguments: [String], environment: [String: String] = [:], output: FileHandle? = nil) throws {
            self.arguments = arguments
            process = Process()
            process.executableURL = WharfCLI.executable
            process.arguments = arguments
            if !environment.isEmpty {
                process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            }
            process.standardOutput = output ?? FileHandle.nullDevice
            process.standardError = output ?? FileHandle.nullDevice
            try process.run()
        }

        func kill() {
            guard process.isRunning else { return }
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        /// SIGTERM, then SIGKILL (and a failed test) if it has not exited within 30 s: a process
        /// that cannot drain must fail the test, not hang the suite.
        func stop() {
            guard process.isRunning else { return }
            process.terminate()
            let deadline = Date().addingTimeInterval(30)
            while process.isRunning, Date() < deadline { usleep(10_000) }
            if process.isRunning {
                Issue.record("wharf \(process.arguments ?? []) did not exit within 30 s of SIGTERM")
                kill()
            }
        }
    }

    struct Outcome: Sendable {
        var ok: Bool
        var version: String?
        var status: Int
        var seconds: Double
    }

    static let eightFeatures = #"{"inputs":[{"name":"x","shape":[1,8],"datatype":"FP64","data":[0.1,1,2,3,4,5,6,7]}]}"#

    static func infer(_ url: String, body: String = eightFeatures) async -> Outcome {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = "POST"
        request.timeoutInterval = 10
        request.httpBody = Data(body.utf8)
        let started = Date()
        do {
            let (_, response) = try await URLSession.shared.data(for: request)
            let http = response as? HTTPURLResponse
            return Outcome(ok: http?.statusCode == 200, version: http?.value(forHTTPHeaderField: "x-wharf-deployment-version"),
                           status: http?.statusCode ?? 0, seconds: Date().timeIntervalSince(started))
        } catch {
            return Outcome(ok: false, version: nil, status: 0, seconds: Date().timeIntervalSince(started))
        }
    }

    /// Load from four clients until stopped; every outcome kept.
    final class Load: Sendable {
        let stop = Atomic(false)
        let outcomes = Mutex<[Outcome]>([])

        func run(_ url: String, body: String = GatewayIntegrationTests.eightFeatures) async {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        while !self.stop.load(ordering: .relaxed) {
                            let outcome = await GatewayIntegrationTests.infer(url, body: body)
                            self.outcomes.withLock { $0.append(outcome) }
                        }
                    }
                }
            }
        }

        var failures: [Outcome] { outcomes.withLock { $0.filter { !$0.ok } } }
        var versions: Set<String> { outcomes.withLock { Set($0.compactMap(\.version)) } }
        var count: Int { outcomes.withLock { $0.count } }
    }

    private func deploy(_ arguments: [String], gateway: String) throws -> WharfCLI.Result {
        let result = try WharfCLI.run(["deploy"] + arguments + ["--gateway", gateway, "--key", Self.adminKey])
        #expect(result.status == 0, "\(arguments): \(result.stderr)")
        return result
    }

    private func status(_ model: String, gateway: String) throws -> [String: Any] {
        let result = try WharfCLI.run(["deploy", "status", model, "--gateway", gateway, "--key", Self.adminKey])
        return (try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    @Test func rolloutsReplicaDeathAndDeadModelsCostNoClientRequest() async throws {
        try await ProcessTestGate.shared.run { try await self.rolloutsReplicaDeathAndDeadModelsCostNoClientRequestBody() }
    }

    private func rolloutsReplicaDeathAndDeadModelsCostNoClientRequestBody() async throws {
        let base = WharfCLI.ports(11)
        let metrics = WharfCLI.fixtures.appendingPathComponent("metrics")
        let weak = metrics.appendingPathComponent("champion_weak.json").path
        let strong = metrics.appendingPathComponent("champion_strong.json").path
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-gateway-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        func url(_ offset: Int) -> String { "http://127.0.0.1:\(base + offset)" }

        var servers: [Int: Server] = [:]
        func startServer(_ offset: Int, model: String, file: String) throws {
            servers[offset] = try Server(["serve", "--model", "\(model)=\(file)", "--port", String(base + offset)])
        }
        try startServer(1, model: "champ", file: weak)    // version 1, replica a
        try startServer(2, model: "champ", file: weak)    // version 1, replica b
        try startServer(3, model: "champ", file: strong)  // version 2
        try startServer(4, model: "other", file: strong)  // a misdeployed version: no champ here
        try startServer(5, model: "side", file: weak)     // another model
        let gateway = try Server(["gateway", "--port", String(base), "--data-dir", data, "--admin-key", Self.adminKey,
                                  "--open-inference", "--health-interval-ms", "100"])
        defer {
            gateway.stop()
            for server in servers.values { server.stop() }
        }
        for offset in [0, 1, 2, 3, 4, 5] {
            #expect(try await WharfCLI.waitForStatus(url(offset) + "/v2/health/ready", status: 200, seconds: 60))
        }
        let gatewayURL = url(0)
        _ = try deploy(["set", "champ", "--target", "1=100@\(url(1)),\(url(2))"], gateway: gatewayURL)
        _ = try deploy(["set", "side", "--target", "s=100@\(url(5))"], gateway: gatewayURL)
        _ = try deploy(["set", "dead", "--target", "1=100@\(url(9)),\(url(10))"], gateway: gatewayURL)

        // 1. Under load: 0 → 5 → 50 → 100 % to version 2, roll back, then kill a replica and restart it.
        let load = Load()
        let running = Task { await load.run(gatewayURL + "/v2/models/champ/infer") }
        try await Task.sleep(for: .milliseconds(400))
        for share in [5, 50, 100] {
            _ = try deploy(["set", "champ", "--target", "2=\(share)@\(url(3))", "--target", "1=\(100 - share)@\(url(1)),\(url(2))"], gateway: gatewayURL)
            try await Task.sleep(for: .milliseconds(500))
        }
        _ = try deploy(["rollback", "champ"], gateway: gatewayURL)
        try await Task.sleep(for: .milliseconds(400))
        servers[1]!.kill()
        try await Task.sleep(for: .milliseconds(800))
        try startServer(1, model: "champ", file: weak)
        #expect(try await WharfCLI.waitForStatus(url(1) + "/v2/health/ready", status: 200, seconds: 60))
        try await Task.sleep(for: .milliseconds(600))
        load.stop.store(true, ordering: .relaxed)
        await running.value
        #expect(load.failures.isEmpty, "\(load.failures.count) of \(load.count) requests failed: \(load.failures.prefix(3).map(\.status))")
        #expect(load.versions == ["1", "2"])
        #expect(load.count > 100)

        // 2. A model whose replicas are all dead answers 503 at once; another model is unaffected.
        func sideLatencies() async -> [Double] {
            var seconds: [Double] = []
            for _ in 0..<40 {
                let outcome = await Self.infer(gatewayURL + "/v2/models/side/infer")
                #expect(outcome.ok)
                seconds.append(outcome.seconds)
            }
            return seconds.sorted()
        }
        let before = await sideLatencies()
        let flood = Load()
        let flooding = Task { await flood.run(gatewayURL + "/v2/models/dead/infer") }
        try await Task.sleep(for: .milliseconds(200))
        let during = await sideLatencies()
        flood.stop.store(true, ordering: .relaxed)
        await flooding.value
        let dead = flood.outcomes.withLock { $0 }
        #expect(!dead.isEmpty && dead.allSatisfy { $0.status == 503 })
        let deadMedian = dead.map(\.seconds).sorted()[dead.count / 2]
        #expect(deadMedian < max(0.1, 2 * during[20]), "a dead model's 503 took \(deadMedian) s")
        #expect(during[20] < before[20] * 3 + 0.005, "side p50 went from \(before[20]) s to \(during[20]) s")

        // 3. A canary whose new version fails is rolled back by itself; clients never see it fail.
        let canaryLoad = Load()
        let canaryRunning = Task { await canaryLoad.run(gatewayURL + "/v2/models/champ/infer") }
        _ = try deploy(["canary", "champ", "--version", "bad", "--replicas", url(4), "--steps", "50,100", "--interval", "3s",
                        "--min-requests", "5", "--max-error-rate", "1%"], gateway: gatewayURL)
        var state = "running"
        let deadline = Date().addingTimeInterval(15)
        while state == "running", Date() < deadline {
            try await Task.sleep(for: .milliseconds(100))
            state = (try status("champ", gateway: gatewayURL)["canary"] as? [String: Any])?["state"] as? String ?? "?"
        }
        canaryLoad.stop.store(true, ordering: .relaxed)
        await canaryRunning.value
        #expect(state == "rolled_back")
        let final = try status("champ", gateway: gatewayURL)
        let versions = ((final["spec"] as? [String: Any])?["targets"] as? [[String: Any]])?.compactMap { $0["version"] as? String }
        #expect(versions?.contains("bad") == false)
        #expect(canaryLoad.failures.isEmpty, "\(canaryLoad.failures.count) client requests failed during the bad canary")
        let reason = (final["canary"] as? [String: Any])?["reason"] as? String ?? ""
        #expect(reason.contains("error rate"), "\(reason)")
    }

    @Test func shutdownAnswersWhatIsOwedThenCloses() async throws {
        try await ProcessTestGate.shared.run { try await self.shutdownAnswersWhatIsOwedThenClosesBody() }
    }

    /// SIGTERM: the gateway takes no new connection, closes idle ones at once, answers the
    /// inference a connection is owed (here the replica's deadline, 1.5 s on) before closing
    /// it, and exits 0.
    private func shutdownAnswersWhatIsOwedThenClosesBody() async throws {
        let base = WharfCLI.ports(2)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-gateway-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let hanging = try HangingReplica(port: base + 1)
        defer { hanging.close() }
        let gateway = try Server(["gateway", "--port", String(base), "--data-dir", data, "--admin-key", Self.adminKey, "--open-inference"])
        defer { gateway.stop() }
        let gatewayURL = "http://127.0.0.1:\(base)"
        #expect(try await WharfCLI.waitForStatus(gatewayURL + "/v2/health/ready", status: 200, seconds: 60))
        _ = try deploy(["set", "stuck", "--target", "1=100@http://127.0.0.1:\(base + 1)", "--timeout-ms", "1500", "--retries", "0"],
                       gateway: gatewayURL)
        let idle = RawHTTP.open(port: base)
        defer { Glibc.close(idle) }
        let body = Self.eightFeatures
        let request = "POST /v2/models/stuck/infer HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let owed = Task.detached { try RawHTTP.exchange(port: base, request: request) }
        var inFlight = 0
        let deadline = Date().addingTimeInterval(3)
        while inFlight < 1, Date() < deadline {
            inFlight = (try status("stuck", gateway: gatewayURL)["in_flight"] as? Int) ?? 0
        }
        #expect(inFlight == 1)

        let stopping = Date()
        #expect(Glibc.kill(gateway.process.processIdentifier, SIGTERM) == 0)
        // The idle connection is closed at once, not after the answer owed on the other.
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(idle, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var byte: UInt8 = 0
        #expect(recv(idle, &byte, 1, 0) == 0)
        #expect(Date().timeIntervalSince(stopping) < 1.2)
        // New connections are refused from then on (not left in the listener's queue).
        let probe = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let connected = withLoopback(port: base, { connect(probe, $0, $1) })
        let failure = errno
        Glibc.close(probe)
        #expect(connected != 0 && failure == ECONNREFUSED)
        // The answer owed arrives whole (the replica's deadline passed: 503), then the close.
        let answers = try await owed.value
        #expect(answers.map(\.status) == [503], "\(answers.map(\.head))")
        #expect(Date().timeIntervalSince(stopping) >= 1.0)
        while gateway.process.isRunning, Date().timeIntervalSince(stopping) < 10 { usleep(10_000) }
        #expect(!gateway.process.isRunning && gateway.process.terminationStatus == 0)
    }

    @Test func shutdownClosesWhatIsNotTakenInTime() async throws {
        try await ProcessTestGate.shared.run { try await self.shutdownClosesWhatIsNotTakenInTimeBody() }
    }

    /// SIGTERM with 16 MB answers still on their way, on the plane and on connections handed to
    /// NIO: a client that reads from then on gets its answer whole, as the closing promises; the
    /// connections of clients that never read are closed after `--shutdown-timeout-seconds`, and
    /// the gateway exits 0, rather than waiting for the idle timeout (60 s) or for ever.
    private func shutdownClosesWhatIsNotTakenInTimeBody() async throws {
        let base = WharfCLI.ports(2)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-gateway-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let replica = try HangingReplica(port: base + 1, large: "big", largeBytes: 16 << 20)
        defer { replica.close() }
        let logFile = data + ".log"
        FileManager.default.createFile(atPath: logFile, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: logFile) }
        let gateway = try Server(["gateway", "--port", String(base), "--data-dir", data, "--admin-key", Self.adminKey, "--open-inference",
                                  "--shutdown-timeout-seconds", "1"], output: FileHandle(forWritingAtPath: logFile))
        defer { gateway.stop() }
        let gatewayURL = "http://127.0.0.1:\(base)"
        #expect(try await WharfCLI.waitForStatus(gatewayURL + "/v2/health/ready", status: 200, seconds: 60))
        _ = try deploy(["set", "big", "--target", "1=100@http://127.0.0.1:\(base + 1)"], gateway: gatewayURL)

        // Clients that ask for 16 MB and read nothing for now, on the plane and handed to NIO
        // (by a health check first); those that read from SIGTERM on get every answer whole.
        // Two more: one whose health check waits, behind its answer, to be handed over, and one
        // whose body is still arriving (the rest is sent after SIGTERM).
        let body = Self.eightFeatures
        let big = "POST /v2/models/big/infer HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let handOver = "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
        let half = body.utf8.count / 2
        struct Client {
            var name: String
            var reads: Bool
            var fd: Int32 = -1
            var rest = ""
            var expected: [Int] = [200]
        }
        var clients = [
            Client(name: "plane", reads: false), Client(name: "plane", reads: true),
            Client(name: "NIO", reads: false, expected: [200, 200]), Client(name: "NIO", reads: true, expected: [200, 200]),
            Client(name: "hand-over after the answer", reads: true, expected: [200, 200]),
            Client(name: "body still arriving", reads: true, rest: String(body.utf8.dropFirst(half))!),
        ]
        for index in clients.indices {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            if !clients[index].reads {
                var small: Int32 = 4096
                setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            _ = withLoopback(port: base, { connect(fd, $0, $1) })
            switch clients[index].name {
            case "NIO": RawHTTP.write(fd, handOver + big)
            case "hand-over after the answer": RawHTTP.write(fd, big + handOver)
            case "body still arriving": RawHTTP.write(fd, String(big.utf8.dropLast(body.utf8.count - half))!)
            default: RawHTTP.write(fd, big)
            }
            clients[index].fd = fd
        }
        defer { clients.forEach { _ = Glibc.close($0.fd) } }
        // Every answer owed came from the replica: what is left is the clients' reading.
        var answered = 0
        let deadline = Date().addingTimeInterval(10)
        while answered < clients.count - 1, Date() < deadline {
            let versions = try status("big", gateway: gatewayURL)["versions"] as? [[String: Any]]
            answered = (versions?.first?["live"] as? [String: Any])?["requests"] as? Int ?? 0
        }
        #expect(answered == clients.count - 1)

        func readToEnd(_ fd: Int32) -> [UInt8] {
            var received: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard count > 0 else { break }
                received += chunk[..<count]
            }
            return received
        }
        let stopping = Date()
        #expect(Glibc.kill(gateway.process.processIdentifier, SIGTERM) == 0)
        for client in clients where client.reads {
            if !client.rest.isEmpty { RawHTTP.write(client.fd, client.rest) }
            let answers = RawHTTP.parse(readToEnd(client.fd))
            let big = answers.first { $0.header("content-length") == String(16 << 20) }
            #expect(answers.map(\.status) == client.expected && big?.body.utf8.count == 16 << 20,
                    "\(client.name): \(answers.map(\.head)), \(big?.body.utf8.count ?? 0) bytes of the body")
        }
        while gateway.process.isRunning, Date().timeIntervalSince(stopping) < 10 { usleep(10_000) }
        let took = Date().timeIntervalSince(stopping)
        #expect(!gateway.process.isRunning && gateway.process.terminationStatus == 0)
        #expect(took >= 0.9 && took < 5, "exited \(took) s after SIGTERM")
        for client in clients where !client.reads {
            #expect(readToEnd(client.fd).count < 16 << 20, "\(client.name): the answer was not cut")
        }
        // The log says where the gateway listens, and not where its router does (a loopback
        // port no client should use); then the shutdown, and what its timeout closed.
        let log = try String(contentsOfFile: logFile, encoding: .utf8)
        #expect(log.contains("127.0.0.1:\(base)") && log.contains("wharf gateway listening"), "\(log)")
        #expect(!log.contains("Server started"), "\(log)")
        #expect(log.contains("wharf gateway shutting down"), "\(log)")
        #expect(log.components(separatedBy: "shutdown timeout: closing connections whose answers were not taken").count - 1 == 2, "\(log)")
    }

    @Test func theInferencePathKeepsHTTPOrderLimitsAndDeadlines() async throws {
        try await ProcessTestGate.shared.run { try await self.theInferencePathKeepsHTTPOrderLimitsAndDeadlinesBody() }
    }

    /// The gateway answers inference itself, ahead of its router: on one connection, pipelined
    /// requests of both kinds are answered in order; the body limit, `Connection: close`,
    /// `Expect: 100-continue` and a replica that never answers are handled there too.
    private func theInferencePathKeepsHTTPOrderLimitsAndDeadlinesBody() async throws {
        let base = WharfCLI.ports(5)
        let weak = WharfCLI.fixtures.appendingPathComponent("metrics").appendingPathComponent("champion_weak.json").path
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-gateway-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let hanging = try HangingReplica(port: base + 2)
        // Hangs on every model but `quick`, which it answers at once.
        let alsoHanging = try HangingReplica(port: base + 3, answering: "quick", large: "big", largeBytes: 16 << 20)
        // Its own, so that no breaker another test opened answers before the deadline.
        let hangingForOrder = try HangingReplica(port: base + 4)
        defer {
            hanging.close()
            alsoHanging.close()
            hangingForOrder.close()
        }
        let server = try Server(["serve", "--model", "champ=\(weak)", "--port", String(base + 1)])
        let gateway = try Server(["gateway", "--port", String(base), "--data-dir", data, "--admin-key", Self.adminKey,
                                  "--open-inference", "--max-body-bytes", "4096", "--idle-timeout-seconds", "1",
                                  "--connections-per-replica", "2"])
        defer {
            gateway.stop()
            server.stop()
        }
        let gatewayURL = "http://127.0.0.1:\(base)"
        #expect(try await WharfCLI.waitForStatus(gatewayURL + "/v2/health/ready", status: 200, seconds: 60))
        #expect(try await WharfCLI.waitForStatus("http://127.0.0.1:\(base + 1)/v2/health/ready", status: 200, seconds: 60))
        _ = try deploy(["set", "champ", "--target", "1=100@http://127.0.0.1:\(base + 1)"], gateway: gatewayURL)
        _ = try deploy(["set", "stuck", "--target", "1=100@http://127.0.0.1:\(base + 2)", "--timeout-ms", "300", "--retries", "0"],
                       gateway: gatewayURL)
        _ = try deploy(["set", "stuck-too", "--target", "1=100@http://127.0.0.1:\(base + 3)", "--timeout-ms", "300", "--retries", "0"],
                       gateway: gatewayURL)
        _ = try deploy(["set", "owed", "--target", "1=100@http://127.0.0.1:\(base + 4)", "--timeout-ms", "300", "--retries", "0"],
                       gateway: gatewayURL)
        _ = try deploy(["set", "big", "--target", "1=100@http://127.0.0.1:\(base + 3)"], gateway: gatewayURL)
        _ = try deploy(["set", "quick", "--target", "1=100@http://127.0.0.1:\(base + 3)"], gateway: gatewayURL)
        _ = try deploy(["set", "slow", "--target", "1=100@http://127.0.0.1:\(base + 3)", "--timeout-ms", "4000", "--retries", "0"],
                       gateway: gatewayURL)

        // Four pipelined requests in one write: router, inference, router, inference (closing).
        let body = Self.eightFeatures
        func infer(_ id: String, close: Bool = false) -> String {
            "POST /v2/models/champ/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nx-request-id: \(id)\r\n"
                + (close ? "Connection: close\r\n" : "") + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
        }
        let pipelined = "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n" + infer("first")
            + "GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n" + infer("second", close: true)
        let answers = try RawHTTP.exchange(port: base, request: pipelined)
        #expect(answers.map(\.status) == [200, 200, 200, 200], "\(answers.map(\.head))")
        if answers.count == 4 {
            #expect(answers[0].body.isEmpty)
            #expect(answers[1].header("x-request-id") == "first" && answers[1].body.contains("\"outputs\""))
            #expect(answers[2].body.contains("wharf-gateway"))
            #expect(answers[3].header("x-request-id") == "second" && answers[3].header("connection") == "close")
        }

        // Plain inference requests first (read at the byte level, ahead of the HTTP codec), then a
        // router request, which hands the connection to the codec for good, then inference again.
        let unknown = "POST /v2/models/nosuch/infer HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let fastFirst = infer("fast-1") + unknown + infer("fast-2") + "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
            + infer("after", close: true)
        let inOrder = try RawHTTP.exchange(port: base, request: fastFirst)
        #expect(inOrder.map(\.status) == [200, 404, 200, 200, 200], "\(inOrder.map(\.head))")
        if inOrder.count == 5 {
            #expect(inOrder[0].header("x-request-id") == "fast-1" && inOrder[0].header("x-wharf-model-version") == "1")
            #expect(inOrder[1].body.contains("no deployment for model nosuch"), "\(inOrder[1].body)")
            #expect(inOrder[2].header("x-request-id") == "fast-2" && inOrder[2].body.contains("\"outputs\""))
            #expect(inOrder[3].body.isEmpty)
            #expect(inOrder[4].header("x-request-id") == "after" && inOrder[4].header("connection") == "close")
        }

        // A client that sends its requests and then closes its side gets every answer, on the
        // byte-level path and after a hand-over to the codec alike, and then the close.
        let halfClosed = try RawHTTP.exchange(port: base, request: infer("half-1") + infer("half-2"), halfClose: true)
        #expect(halfClosed.map { $0.header("x-request-id") } == ["half-1", "half-2"], "\(halfClosed.map(\.head))")
        let handedOver = try RawHTTP.exchange(
            port: base, request: "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n" + infer("half-3") + infer("half-4"), halfClose: true)
        #expect(handedOver.map(\.status) == [200, 200, 200], "\(handedOver.map(\.head))")
        #expect(handedOver.last?.header("x-request-id") == "half-4")

        // A head with bare LFs is refused (400) at once, not left waiting for a CRLF CRLF that
        // never comes; the absolute form of the target (a client behind a proxy setting) is
        // inference like the origin form.
        let bareLF = try RawHTTP.exchange(port: base, request: "POST /v2/models/champ/infer HTTP/1.1\nHost: x\nContent-Length: \(body.utf8.count)\n\n\(body)")
        #expect(bareLF.map(\.status) == [400], "\(bareLF.map(\.head))")
        let absolute = try RawHTTP.exchange(port: base, request: "POST http://x/v2/models/champ/infer?a=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                            + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(absolute.map(\.status) == [200] && absolute.first?.body.contains("\"outputs\"") == true, "\(absolute.map(\.head))")

        // A large answer to a client that reads slowly, then `Connection: close`: the gateway
        // closes once the whole answer has left, on both paths (a close at once dropped what the
        // socket had not taken yet).
        let bigRequest = "POST /v2/models/big/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        for prefix in ["", "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"] {
            let got = try RawHTTP.exchange(port: base, request: prefix + bigRequest, receiveBuffer: 4096)
            #expect(got.last?.status == 200 && got.last?.header("content-length") == String(16 << 20)
                    && got.last?.body.utf8.count == 16 << 20, "\(got.map(\.head)), \(got.last?.body.utf8.count ?? 0) bytes of the body")
        }

        // Behind a large answer the client has not read yet, a request for the router, then the
        // client's half-close: the connection goes to NIO once the answer has left, and the
        // router's answer comes too (the half-close once closed it after the first answer).
        let bigKeepAlive = "POST /v2/models/big/infer HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let waitingHandOver = try RawHTTP.exchange(port: base, request: bigKeepAlive + "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
                                                   halfClose: true, receiveBuffer: 4096)
        #expect(waitingHandOver.map(\.status) == [200, 200] && waitingHandOver.first?.body.utf8.count == 16 << 20,
                "\(waitingHandOver.map(\.head)), \(waitingHandOver.first?.body.utf8.count ?? 0) bytes of the first body")

        // `Expect: 100-continue` (curl's way with bodies over 1 MB) is answered at once, by the
        // gateway and by the model server alike.
        for port in [base, base + 1] {
            let expecting = "POST /v2/models/champ/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
            #expect(try RawHTTP.exchange(port: port, request: expecting).map(\.status) == [100, 200], "port \(port)")
        }

        // Over the body limit: 413 with the limit named, and the connection closed.
        let large = "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"FP64\",\"data\":[" + String(repeating: "1,", count: 3000) + "1]}]}"
        let refused = try RawHTTP.exchange(
            port: base, request: "POST /v2/models/champ/infer HTTP/1.1\r\nHost: x\r\nContent-Length: \(large.utf8.count)\r\n\r\n\(large)")
        #expect(refused.first?.status == 413)
        #expect(refused.first?.body.contains("4096 bytes") == true, "\(refused.first?.body ?? "")")
        // On the codec's path a declared length over the limit is refused at the head, before
        // any `100 Continue` and without reading the body.
        let declared = try RawHTTP.exchange(
            port: base, request: "POST /v2/models/champ/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n")
        #expect(declared.map(\.status) == [413], "\(declared.map(\.status))")

        // A client that stops in the middle of a body, and one that stays connected after its
        // answer, are cut off once silent for the idle timeout (1 s here), not held for ever.
        // The same after a hand-over to the codec (a router request first).
        let handedOverFirst = "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
        // So is one whose head never ends once it is the codec's (nothing the codec makes a
        // part of): a router request's head, or a single byte.
        for (request, answers) in [(String(infer("idle").dropLast(10)), 0), (infer("idle"), 1),
                                   (handedOverFirst + String(infer("idle").dropLast(10)), 1), (handedOverFirst + infer("idle"), 2),
                                   ("GET /v2/health/live HTTP/1.1\r\nHost: x\r\n", 0), ("G", 0)] {
            let started = Date()
            let got = try RawHTTP.exchange(port: base, request: request)
            let waited = Date().timeIntervalSince(started)
            #expect(got.count == answers && waited >= 0.9 && waited < 4.5, "\(got.count) answers, closed after \(waited) s")
        }
        // Waiting for a replica is not silence, on either path: a 4 s wait is not cut at 1 s.
        let slowInference = "POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        for prefix in ["", handedOverFirst] {
            let started = Date()
            let got = try RawHTTP.exchange(port: base, request: prefix + slowInference)
            let waited = Date().timeIntervalSince(started)
            #expect(got.last?.status == 503 && waited >= 4.8, "\(got.map(\.status)) after \(waited) s")
        }

        // Two models on one server: one hangs with more requests than the gateway keeps
        // connections for (2 per loop here), the other still answers at once; it has its own.
        let slowClients = (0..<6).map { _ in RawHTTP.open(port: base) }
        defer { for fd in slowClients { Glibc.close(fd) } }
        let slowRequest = "POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        for fd in slowClients { RawHTTP.write(fd, slowRequest) }
        var slowInFlight = 0
        let slowDeadline = Date().addingTimeInterval(3)
        while slowInFlight < 6, Date() < slowDeadline {
            slowInFlight = (try status("slow", gateway: gatewayURL)["in_flight"] as? Int) ?? 0
        }
        #expect(slowInFlight == 6)
        let quickStarted = Date()
        let quick = try RawHTTP.exchange(port: base, request: "POST /v2/models/quick/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                         + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(quick.map(\.status) == [200] && Date().timeIntervalSince(quickStarted) < 2, "\(quick.map(\.head)) after \(Date().timeIntervalSince(quickStarted)) s")

        // Two requests pipelined to a replica that never answers: the second is sent when the
        // first times out, from inside the timer's pass, and still gets its own deadline.
        let stuckRequest = "POST /v2/models/stuck-too/infer HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let pipelinedStarted = Date()
        let bothStuck = try RawHTTP.exchange(port: base, request: stuckRequest + stuckRequest, halfClose: true)
        let bothWaited = Date().timeIntervalSince(pipelinedStarted)
        #expect(bothStuck.map(\.status) == [503, 503], "\(bothStuck.map(\.head))")
        #expect(bothWaited >= 0.59 && bothWaited < 3, "two pipelined timeouts took \(bothWaited) s")
        // Timeouts count against their version (a canary whose replicas hang must not pass).
        let stuckLive = ((try status("stuck-too", gateway: gatewayURL)["versions"] as? [[String: Any]])?.first?["live"] as? [String: Any]) ?? [:]
        #expect(stuckLive["requests"] as? Int == 2 && stuckLive["error_rate"] as? Double == 1, "\(stuckLive)")

        // A request the HTTP parser refuses, pipelined behind an inference still owed its answer:
        // the parser's 400 comes after that answer, not ahead of it, on both paths.
        let owedRequest = "POST /v2/models/owed/infer HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        for prefix in ["", handedOverFirst] {
            let started = Date()
            let owed = try RawHTTP.exchange(port: base, request: prefix + owedRequest + "NOT HTTP AT ALL\r\n\r\n")
            #expect(owed.map(\.status) == (prefix.isEmpty ? [503, 400] : [200, 503, 400]), "\(owed.map(\.head))")
            // The replica's deadline passed: the answer owed was not cut short by the 400.
            #expect(Date().timeIntervalSince(started) >= 0.29)
        }
        // The same with a megabyte after the refused request: read over many reads, each of
        // which the failed decoder reports again; only the first error counts.
        let trailing = try RawHTTP.exchange(port: base, request: handedOverFirst + owedRequest + "NOT HTTP AT ALL\r\n\r\n"
                                            + String(repeating: "x", count: 1 << 20))
        #expect(trailing.map(\.status) == [200, 503, 400], "\(trailing.map(\.head))")
        // With only the router's answer owed, its own order holds: the answer, then the 400,
        // also when the client closes its side at once.
        let routerOwed = try RawHTTP.exchange(port: base, request: handedOverFirst + "NOT HTTP AT ALL\r\n\r\n", halfClose: true)
        #expect(routerOwed.map(\.status) == [200, 400], "\(routerOwed.map(\.head))")
        // An absolute-form target whose authority ends in a query has no inference path.
        let queryOnly = try RawHTTP.exchange(port: base, request: handedOverFirst + "POST http://x?/v2/models/champ/infer HTTP/1.1\r\nHost: x\r\n"
                                             + "Connection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(queryOnly.count == 2 && queryOnly.last?.body.contains("\"outputs\"") == false, "\(queryOnly.map(\.head))")

        // A ready replica that never answers: 503 after the deployment's timeout, not later, each
        // time on a new connection (a timed-out one is closed); after three, its breaker is open
        // and the next client gets 503 at once, though the replica's readiness still answers.
        for _ in 0..<3 {
            let started = Date()
            let stuck = await Self.infer(gatewayURL + "/v2/models/stuck/infer")
            let waited = Date().timeIntervalSince(started)
            #expect(stuck.status == 503)
            #expect(waited >= 0.29 && waited < 2, "the stuck replica's 503 took \(waited) s")
        }
        let ejected = await Self.infer(gatewayURL + "/v2/models/stuck/infer")
        #expect(ejected.status == 503 && ejected.seconds < 0.2, "with its breaker open: \(ejected.status) after \(ejected.seconds) s")
        // The gateway still answers promptly afterwards.
        #expect(await Self.infer(gatewayURL + "/v2/models/champ/infer").ok)
    }
}

/// One HTTP/1.1 exchange over a plain socket: the bytes written as given, every answer read back
/// until the server closes the connection (or 5 s pass).
enum RawHTTP {
    struct Answer {
        var head: String
        var status: Int
        var headers: [(String, String)]
        var body: String

        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }
    }

    /// A connected socket (closed by the caller), for requests whose answers are not read.
    static func open(port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        _ = withLoopback(port: port, { connect(fd, $0, $1) })
        return fd
    }

    static func write(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Sends `request` and reads until the server closes; `halfClose` closes the sending side
    /// first, as a client that has nothing more to ask does.
    /// `receiveBuffer`: the socket's receive buffer, set before connecting (a small one makes the
    /// server's writes of a large answer wait for the client).
    static func exchange(port: Int, request: String, halfClose: Bool = false, receiveBuffer: Int32? = nil) throws -> [Answer] {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CocoaError(.fileReadUnknown) }
        defer { Glibc.close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if var receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receiveBuffer, socklen_t(MemoryLayout<Int32>.size))
        }
        guard withLoopback(port: port, { connect(fd, $0, $1) }) == 0 else { throw CocoaError(.fileReadUnknown) }
        let bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            // A server that closes early resets the connection: an error here, not SIGPIPE.
            let written = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { break }
            sent += written
        }
        if halfClose { shutdown(fd, Int32(SHUT_WR)) }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            received += chunk[..<count]
        }
        return parse(received)
    }

    /// Answers with a Content-Length (all the gateway sends).
    static func parse(_ bytes: [UInt8]) -> [Answer] {
        var answers: [Answer] = []
        var rest = bytes[...]
        let separator: [UInt8] = [13, 10, 13, 10]
        while let end = rest.firstRange(of: separator) {
            let head = String(decoding: rest[..<end.lowerBound], as: UTF8.self)
            var lines = head.components(separatedBy: "\r\n")
            let statusLine = lines.removeFirst()
            let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") ?? 0
            let headers = lines.compactMap { line -> (String, String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
            }
            let length = Int(headers.first { $0.0.lowercased() == "content-length" }?.1 ?? "0") ?? 0
            let bodyStart = end.upperBound
            let bodyEnd = min(rest.endIndex, bodyStart + length)
            answers.append(Answer(head: head, status: status, headers: headers,
                                  body: String(decoding: rest[bodyStart..<bodyEnd], as: UTF8.self)))
            rest = rest[bodyEnd...]
        }
        return answers
    }
}

/// A replica that is ready (it answers every GET with 200) and never answers an inference:
/// the connection stays open and silent, as when a model hangs.
final class HangingReplica: @unchecked Sendable {
    let fd: Int32

    /// `answering`: a model whose inferences are answered at once (200), the others hang;
    /// `large`: one answered at once with a body of `largeBytes`.
    init(port: Int, answering: String? = nil, large: String? = nil, largeBytes: Int = 0) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        guard withLoopback(port: port, { bind(fd, $0, $1) }) == 0, listen(fd, 64) == 0 else {
            Glibc.close(fd)
            throw CocoaError(.fileWriteUnknown)
        }
        let listener = fd
        Thread.detachNewThread {
            while true {
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { return }
                Thread.detachNewThread { Self.serve(connection, answering: answering, large: large, largeBytes: largeBytes) }
            }
        }
    }

    private static func serve(_ connection: Int32, answering: String?, large: String?, largeBytes: Int) {
        defer { Glibc.close(connection) }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return }
            let text = String(decoding: chunk[..<count], as: UTF8.self)
            for _ in text.components(separatedBy: "GET ").dropFirst() {
                let answer = Array("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".utf8)
                _ = answer.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, 0) }
            }
            if let answering {
                for _ in text.components(separatedBy: "POST /v2/models/\(answering)/infer ").dropFirst() {
                    let json = #"{"model_name":"\#(answering)","outputs":[]}"#
                    let answer = Array("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: \(json.utf8.count)\r\n\r\n\(json)".utf8)
                    _ = answer.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, 0) }
                }
            }
            if let large {
                for _ in text.components(separatedBy: "POST /v2/models/\(large)/infer ").dropFirst() {
                    let start = #"{"model_name":"\#(large)","outputs":[],"padding":""#
                    let json = start + String(repeating: "x", count: max(0, largeBytes - start.utf8.count - 2)) + #""}"#
                    let answer = Array("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: \(json.utf8.count)\r\n\r\n\(json)".utf8)
                    var sent = 0
                    while sent < answer.count {
                        let count = answer[sent...].withUnsafeBytes { send(connection, $0.baseAddress, $0.count, 0) }
                        guard count > 0 else { return }
                        sent += count
                    }
                }
            }
        }
    }

    func close() {
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
    }
}

/// Calls `body` with 127.0.0.1:`port` as a socket address (for connect and bind).
func withLoopback(port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
}
