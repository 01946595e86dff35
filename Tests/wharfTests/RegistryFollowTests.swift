import Foundation
import Synchronization
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The registry and a model server as real processes: production moves from version 3 to 4 and
/// back while clients keep sending requests, and not one request fails.
@Suite("wharf serve follows the registry")
struct RegistryFollowTests {
    static let token = "follow-token"

    final class Server: Sendable {
        let process: Process
        init(_ arguments: [String], environment: [String: String] = [:]) throws {
            process = Process()
            process.executableURL = WharfCLI.executable
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
        }

        func stop() {
            guard process.isRunning else { return }
            process.terminate()
            process.waitUntilExit()
        }
    }

    private func cli(_ arguments: [String], registry: String) throws -> WharfCLI.Result {
        try WharfCLI.run(arguments + ["--registry", registry, "--token", Self.token])
    }

    /// The version that answered one inference request, or the status when it failed.
    private static func infer(_ url: String) async -> Result<String, Failure> {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = "POST"
        request.timeoutInterval = 10
        request.httpBody = Data(#"{"inputs":[{"name":"x","shape":[2,8],"datatype":"FP64","data":[0.1,1,2,3,4,5,6,7,1.5,-1,0,2,3,1,0.5,9]}]}"#.utf8)
        do {
            let (_, response) = try await URLSession.shared.data(for: request)
            let http = response as? HTTPURLResponse
            guard http?.statusCode == 200, let version = http?.value(forHTTPHeaderField: "x-wharf-model-version") else {
                return .failure(Failure(what: "status \(http?.statusCode ?? 0)"))
            }
            return .success(version)
        } catch {
            return .failure(Failure(what: "\(error)"))
        }
    }

    struct Failure: Error { var what: String }

    /// Shared by the load tasks: when to stop, and every outcome in order.
    final class Load: Sendable {
        let stop = Atomic(false)
        let outcomes = Mutex<[Result<String, Failure>]>([])
    }

    @Test func productionMovesUnderLoadWithoutAFailedRequest() async throws {
        try await ProcessTestGate.shared.run { try await self.productionMovesUnderLoadWithoutAFailedRequestBody() }
    }

    private func productionMovesUnderLoadWithoutAFailedRequestBody() async throws {
        let base = WharfCLI.ports(2)
        let registryPort = base, servePort = base + 1
        let registry = "http://127.0.0.1:\(registryPort)"
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-follow-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let metrics = WharfCLI.fixtures.appendingPathComponent("metrics")
        let weak = metrics.appendingPathComponent("champion_weak.json").path
        let strong = metrics.appendingPathComponent("champion_strong.json").path
        let validation = metrics.appendingPathComponent("champion.validation.csv").path

        let registryProcess = try Server(["registry", "--port", String(registryPort), "--data-dir", data + "/registry", "--token", Self.token])
        defer { registryProcess.stop() }
        #expect(try await WharfCLI.waitForStatus(registry + "/v1/health/ready", status: 200))

        // Versions 1-4, alternately weak and strong; 3 and 4 pass validation on the registered data.
        for (index, file) in [weak, strong, weak, strong].enumerated() {
            var arguments = ["models", "register", "champ", "--file", file]
            if index == 0 { arguments += ["--validation-data", validation] }
            let result = try cli(arguments, registry: registry)
            #expect(result.status == 0, "\(result.stderr)")
        }
        for version in [3, 4] {
            let result = try cli(["validate", "--model", "champ@\(version)", "--data", validation, "--label", "label", "--gate", "roc_auc>=0.7"], registry: registry)
            #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        }
        #expect(try cli(["models", "promote", "champ@3"], registry: registry).status == 0)

        let serve = try Server(["serve", "--registry", registry, "--model", "champ@production", "--port", String(servePort),
                                "--cache-dir", data + "/cache"])
        defer { serve.stop() }
        #expect(try await WharfCLI.waitForStatus("http://127.0.0.1:\(servePort)/v2/health/ready", status: 200, seconds: 60))
        let url = "http://127.0.0.1:\(servePort)/v2/models/champ/infer"
        #expect(try await Self.infer(url).get() == "3")

        let load = Load()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    while !load.stop.load(ordering: .relaxed) {
                        let outcome = await Self.infer(url)
                        load.outcomes.withLock { $0.append(outcome) }
                    }
                }
            }
            /// Moves production and measures how long until the server answers with `version`.
            func move(to version: Int) async throws -> Double {
                #expect(try cli(["models", "promote", "champ@\(version)"], registry: registry).status == 0)
                let moved = Date()
                while load.outcomes.withLock({ $0.last.flatMap { try? $0.get() } }) != String(version) {
                    guard Date().timeIntervalSince(moved) < 20 else { break }
                    try await Task.sleep(for: .milliseconds(10))
                }
                return Date().timeIntervalSince(moved)
            }
            let toFour = try await move(to: 4)
            let backToThree = try await move(to: 3)
            try await Task.sleep(for: .milliseconds(300))
            load.stop.store(true, ordering: .relaxed)
            try await group.waitForAll()
            // The server polls the registry every second: a move is served within 2 seconds.
            #expect(toFour < 2 && backToThree < 2, "followed in \(toFour) s and \(backToThree) s")
        }
        let all = load.outcomes.withLock { $0 }
        let failures = all.compactMap { outcome -> String? in
            if case .failure(let failure) = outcome { return failure.what }
            return nil
        }
        #expect(failures.isEmpty, "\(failures.count) of \(all.count) requests failed: \(failures.prefix(3))")
        let versions = Set(all.compactMap { try? $0.get() })
        #expect(versions == ["3", "4"])
        #expect(all.count > 10)
    }
}
