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

        init(_ arguments: [String], environment: [String: String] = [:]) throws {
            self.arguments = arguments
            process = Process()
            process.executableURL = WharfCLI.executable
            process.arguments = arguments
            if !environment.isEmpty {
                process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
        }

        func kill() {
            guard process.isRunning else { return }
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        func stop() {
            guard process.isRunning else { return }
            process.terminate()
            process.waitUntilExit()
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
}
