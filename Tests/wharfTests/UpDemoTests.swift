import Foundation
import Synchronization
import Testing

/// `wharf up --demo` keeps the loop going by itself: patients and then their diagnoses arrive
/// on the hub, the pipeline retrains on a point-in-time training set, validates against
/// production and rolls the new version out through the gateway's canary; clients never see a
/// failed request.
@Suite("wharf up --demo")
struct UpDemoTests {
    @Test func newLabelsRetrainValidateCanaryAndPromoteWithNoManualStep() async throws {
        try await ProcessTestGate.shared.run { try await self.body() }
    }

    private func body() async throws {
        let base = WharfCLI.ports(14)
        let (gatewayPort, registryPort, hubPort, serverPort) = (base, base + 1, base + 2, base + 10)
        let gateway = "http://127.0.0.1:\(gatewayPort)", registry = "http://127.0.0.1:\(registryPort)"
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-demo-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let examples = WharfCLI.packageRoot.appendingPathComponent("examples/breast-cancer").path
        let up = try GatewayIntegrationTests.Server([
            "up", "--demo", "--examples", examples, "--data-dir", data, "--port", String(gatewayPort), "--registry-port", String(registryPort),
            "--hub-port", String(hubPort), "--server-port", String(serverPort), "--demo-retrain-every", "250", "--demo-canary-interval", "1s",
        ])
        defer { up.stop() }
        #expect(try await WharfCLI.waitForStatus(gateway + "/v2/health/ready", status: 200))

        let request = try String(contentsOfFile: examples + "/request.json", encoding: .utf8)
        let load = GatewayIntegrationTests.Load()
        var loading: Task<Void, Never>?
        func production() async throws -> Int {
            (try await HubTests.request("GET", registry + "/v1/models/demo/aliases/production", token: nil).json["version"] as? Int) ?? 0
        }
        // The demo first rolls version 2 out; from then on, only the loop moves production.
        let deadline = Date().addingTimeInterval(240)
        while try await production() < 2, Date() < deadline {
            try await Task.sleep(for: .milliseconds(250))
        }
        loading = Task { await load.run(gateway + "/v2/models/demo/infer", body: request) }
        var runs: [[String: Any]] = []
        while Date() < deadline {
            runs = try await HubTests.request("GET", registry + "/v1/runs?pipeline=demo-retrain", token: nil).json["runs"] as? [[String: Any]] ?? []
            if runs.contains(where: { $0["outcome"] as? String == "succeeded" }) { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        load.stop.store(true, ordering: .relaxed)
        await loading?.value

        let succeeded = try #require(runs.first { $0["outcome"] as? String == "succeeded" }, "no retraining run succeeded: \(runs.map { $0["outcome"] ?? "?" })")
        #expect((succeeded["trigger"] as? String)?.hasPrefix("new-data") == true)
        let steps = (succeeded["steps"] as? [[String: Any]] ?? []).map { "\($0["name"] ?? "?"):\($0["outcome"] ?? "?")" }
        #expect(steps == ["data:succeeded", "train:succeeded", "register:succeeded", "check:succeeded", "ship:succeeded"])
        let version = try await production()
        #expect(version > 2, "production is still demo@\(version)")
        // All traffic on the production replica again, labelled with the promoted version.
        let status = try await HubTests.request("GET", gateway + "/v1/deployments/demo",
                                                token: try String(contentsOfFile: data + "/up/gateway-admin-key", encoding: .utf8)).json
        let targets = ((status["spec"] as? [String: Any])?["targets"] as? [[String: Any]]) ?? []
        #expect(targets.count == 1 && Int(targets.first?["version"] as? String ?? "") ?? 0 > 2, "\(targets)")
        #expect(load.count > 50)
        #expect(load.failures.isEmpty, "\(load.failures.count) of \(load.count) client requests failed")
    }
}
