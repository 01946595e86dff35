import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `wharf up` with two models under load: one model's server is SIGKILLed; the other model sees
/// no error and no slowdown, the gateway answers 503 at once for the dead one, and the
/// supervisor brings it back.
@Suite("wharf up isolates faults")
struct UpFaultIsolationTests {
    final class Probe: Sendable {
        let stop = Atomic(false)
        let outcomes = Mutex<[(at: Date, outcome: GatewayIntegrationTests.Outcome)]>([])

        func run(_ url: String) async {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<3 {
                    group.addTask {
                        while !self.stop.load(ordering: .relaxed) {
                            let outcome = await GatewayIntegrationTests.infer(url)
                            self.outcomes.withLock { $0.append((Date(), outcome)) }
                        }
                    }
                }
            }
        }
    }

    private static func pids(matching pattern: String) -> [Int32] {
        let result = try? WharfCLI.runTool("/usr/bin/pgrep", ["-f", "--", pattern])  // "--": a pattern may start with a dash
        return result?.stdout.split(separator: "\n").compactMap { Int32($0) } ?? []
    }

    @Test func oneModelDiesTheOtherDoesNotNotice() async throws {
        try await ProcessTestGate.shared.run { try await self.oneModelDiesTheOtherDoesNotNoticeBody() }
    }

    private func oneModelDiesTheOtherDoesNotNoticeBody() async throws {
        let base = WharfCLI.ports(13)
        let gatewayPort = base, registryPort = base + 1, serverPort = base + 10
        let registry = "http://127.0.0.1:\(registryPort)"
        let gateway = "http://127.0.0.1:\(gatewayPort)"
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-up-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let metrics = WharfCLI.fixtures.appendingPathComponent("metrics")

        // A registry with two models in production, made beforehand with the same data dir.
        try FileManager.default.createDirectory(atPath: data + "/up", withIntermediateDirectories: true)
        try "seed-token".write(toFile: data + "/up/registry-token", atomically: true, encoding: .utf8)
        let seed = try GatewayIntegrationTests.Server(["registry", "--port", String(registryPort), "--data-dir", data + "/registry", "--token", "seed-token"])
        #expect(try await WharfCLI.waitForStatus(registry + "/v1/health/ready", status: 200))
        for (name, file) in [("alpha", "champion_weak.json"), ("beta", "champion_strong.json")] {
            let options = ["--registry", registry, "--token", "seed-token"]
            #expect(try WharfCLI.run(["models", "register", name, "--file", metrics.appendingPathComponent(file).path] + options).status == 0)
            #expect(try WharfCLI.run(["models", "promote", "\(name)@1", "--force", "--reason", "test seed"] + options).status == 0)
        }
        seed.stop()

        let up = try GatewayIntegrationTests.Server(["up", "--data-dir", data, "--port", String(gatewayPort), "--registry-port", String(registryPort),
                                                    "--server-port", String(serverPort)])
        defer { up.stop() }
        var ready = false
        let deadline = Date().addingTimeInterval(60)
        while !ready, Date() < deadline {
            let alpha = await GatewayIntegrationTests.infer(gateway + "/v2/models/alpha/infer")
            let beta = await GatewayIntegrationTests.infer(gateway + "/v2/models/beta/infer")
            ready = alpha.ok && beta.ok
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(ready, "wharf up did not serve both models")

        let alpha = Probe(), beta = Probe()
        let running = Task {
            async let a: Void = alpha.run(gateway + "/v2/models/alpha/infer")
            async let b: Void = beta.run(gateway + "/v2/models/beta/infer")
            _ = await (a, b)
        }
        try await Task.sleep(for: .seconds(1))
        let victims = Self.pids(matching: "serve --registry \(registry) --model beta@production")
        #expect(victims.count == 1)
        let killedAt = Date()
        for pid in victims { kill(pid, SIGKILL) }
        // The supervisor restarts it; wait until beta answers again.
        var recoveredAt: Date?
        while recoveredAt == nil, Date().timeIntervalSince(killedAt) < 20 {
            try await Task.sleep(for: .milliseconds(50))
            recoveredAt = beta.outcomes.withLock { $0.last { $0.at > killedAt.addingTimeInterval(0.2) && $0.outcome.ok }?.at }
        }
        try await Task.sleep(for: .milliseconds(500))
        alpha.stop.store(true, ordering: .relaxed)
        beta.stop.store(true, ordering: .relaxed)
        await running.value

        let alphaAll = alpha.outcomes.withLock { $0 }
        #expect(!alphaAll.isEmpty && alphaAll.allSatisfy(\.outcome.ok), "alpha failed \(alphaAll.filter { !$0.outcome.ok }.count) times")
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        let before = alphaAll.filter { $0.at < killedAt }.map(\.outcome.seconds)
        let during = alphaAll.filter { $0.at >= killedAt && $0.at <= (recoveredAt ?? Date()) }.map(\.outcome.seconds)
        if !before.isEmpty, !during.isEmpty {
            #expect(median(during) < median(before) * 3 + 0.005, "alpha p50 \(median(before)) s before, \(median(during)) s while beta was down")
        }
        #expect(recoveredAt != nil, "the supervisor did not bring beta back")
        let betaFailures = beta.outcomes.withLock { $0.filter { !$0.outcome.ok } }
        #expect(betaFailures.allSatisfy { $0.outcome.status == 503 }, "beta failed with \(Set(betaFailures.map(\.outcome.status)))")
        // "At once": no slower than the healthy model's answers (the machine may be busy).
        if !betaFailures.isEmpty, !during.isEmpty {
            let fastest = max(0.1, 2 * median(during))
            #expect(median(betaFailures.map(\.outcome.seconds)) < fastest, "the 503s for the dead model were slow")
        }

        // Ctrl-C / SIGTERM: everything stops, children included.
        up.process.terminate()
        let stopDeadline = Date().addingTimeInterval(20)
        while up.process.isRunning, Date() < stopDeadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!up.process.isRunning)
        #expect(Self.pids(matching: "--port \(serverPort)").isEmpty && Self.pids(matching: "--port \(gatewayPort)").isEmpty)

        // SIGKILL (no chance to stop them): the services notice their supervisor is gone and stop
        // too, rather than keep the ports a new `wharf up` needs.
        let again = try GatewayIntegrationTests.Server(["up", "--data-dir", data, "--port", String(gatewayPort), "--registry-port", String(registryPort),
                                                       "--server-port", String(serverPort)])
        defer { again.stop() }
        #expect(try await WharfCLI.waitForStatus(gateway + "/v2/health/ready", status: 200, seconds: 60))
        var started: [Int32] = []
        let startDeadline = Date().addingTimeInterval(30)
        while started.count < 2, Date() < startDeadline {
            started = Self.pids(matching: "serve --registry \(registry) --model")
            if started.count < 2 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(started.count == 2, "model servers under the second wharf up: \(started)")
        #expect(Self.pids(matching: data).count == 5, "registry, gateway, two model servers and wharf up itself")
        kill(again.process.processIdentifier, SIGKILL)
        let orphanDeadline = Date().addingTimeInterval(20)
        var left = [Int32]()
        repeat {
            try await Task.sleep(for: .milliseconds(100))
            // Every service's command line names a path in this run's data directory.
            left = Self.pids(matching: data)
        } while !left.isEmpty && Date() < orphanDeadline
        #expect(left.isEmpty, "services still running after their supervisor was killed: \(left)")
        for pid in left { kill(pid, SIGKILL) }
    }
}
