import Foundation
import Synchronization
import Testing

/// `wharf pipeline run`: steps in dependency order as processes, cached by content, a failed
/// gate stopping the run, retries and timeouts, and a history of runs.
@Suite("wharf pipeline")
struct PipelineTests {
    struct Workspace {
        let directory: String
        var state: String { directory + "/state" }
        var file: String { directory + "/pipeline.yaml" }

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-pipeline-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let example = WharfCLI.packageRoot.appendingPathComponent("examples/breast-cancer")
            for name in ["train.csv", "validation.csv"] {
                try FileManager.default.copyItem(atPath: example.appendingPathComponent(name).path, toPath: directory + "/" + name)
            }
        }

        func write(gate: String = "roc_auc>=0.95", extra: String = "") throws {
            try """
                name: cancer
                steps:
                  - name: data
                    dataset: {csv: train.csv}
                  - name: train
                    train: {data: steps.data.csv, label: diagnosis, task: binary, params: {max_depth: 3, num_rounds: 20}}
                  - name: check
                    validate: {model: steps.train.model, data: validation.csv, label: diagnosis, gates: ["\(gate)"]}
                  - name: size
                    command: [sh, -c, "wc -c < {steps.train.model} > {outputs.bytes}"]
                    outputs: [bytes]
                \(extra)
                """.write(toFile: file, atomically: true, encoding: .utf8)
        }

        func run() throws -> (status: Int32, run: [String: Any]) {
            Self.parsed(try WharfCLI.run(["pipeline", "run", file, "--state-dir", state, "--json"]))
        }

        /// `pipeline run --json`'s status and run (or its standard error).
        static func parsed(_ result: WharfCLI.Result) -> (Int32, [String: Any]) {
            (result.status, (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? ["stderr": result.stderr])
        }

        /// data → train → register → (check with `gate`) → ship, against a registry; `ship` is the
        /// last step's action.
        func writeRegistered(gate: String?, against: String? = nil, ship: String) throws {
            let champion = against.map { ", against: \($0)" } ?? ""
            let check = gate.map { "  - name: check\n    validate: {model: steps.register.version, data: validation.csv, label: diagnosis, gates: [\"\($0)\"]\(champion)}" } ?? ""
            try """
                name: cancer
                steps:
                  - name: data
                    dataset: {csv: train.csv}
                  - name: train
                    train: {data: steps.data.csv, label: diagnosis, task: binary, params: {max_depth: 3, num_rounds: 20}}
                  - name: register
                    register: {model: steps.train.model, name: cancer, training_data: steps.data.csv, validation_data: validation.csv}
                \(check)
                  - name: ship
                    \(ship)
                """.write(toFile: file, atomically: true, encoding: .utf8)
        }

        /// New data: the first `rows` rows of the validation set added to the training set.
        func addTrainingRows(_ rows: Int) throws {
            let validation = try String(contentsOfFile: directory + "/validation.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            try (try String(contentsOfFile: directory + "/train.csv", encoding: .utf8) + validation.prefix(rows).joined(separator: "\n") + "\n")
                .write(toFile: directory + "/train.csv", atomically: true, encoding: .utf8)
        }

        /// The version `cancer@production` points at.
        static func production(_ registry: String) throws -> Int? {
            let shown = try WharfCLI.run(["models", "show", "cancer@production", "--registry", registry]).stdout
            return (try JSONSerialization.jsonObject(with: Data(shown.utf8)) as? [String: Any])?["version"] as? Int
        }

        func outcomes(_ run: [String: Any]) -> [String] {
            (run["steps"] as? [[String: Any]] ?? []).map { "\($0["name"] ?? "?"):\($0["outcome"] ?? "?")" }
        }
    }

    @Test func stepsRunOnceAndAgainOnlyWhenTheirInputsChange() async throws {
        try await ProcessTestGate.shared.run { try self.stepsRunOnceAndAgainOnlyWhenTheirInputsChangeBody() }
    }

    private func stepsRunOnceAndAgainOnlyWhenTheirInputsChangeBody() throws {
        let space = try Workspace()
        defer { try? FileManager.default.removeItem(atPath: space.directory) }
        try space.write()
        let first = try space.run()
        #expect(first.status == 0 && first.run["outcome"] as? String == "succeeded", "\(first.run)")
        #expect(space.outcomes(first.run) == ["data:succeeded", "train:succeeded", "check:succeeded", "size:succeeded"])
        let check = (first.run["steps"] as? [[String: Any]])?[2]
        #expect(((check?["metrics"] as? [String: Any])?["roc_auc"] as? Double ?? 0) > 0.95)

        #expect(space.outcomes(try space.run().run) == ["data:cached", "train:cached", "check:cached", "size:cached"])

        // New data: everything downstream of it runs again.
        try (String(contentsOfFile: space.directory + "/train.csv", encoding: .utf8)
             + (try String(contentsOfFile: space.directory + "/validation.csv", encoding: .utf8)).split(separator: "\n").dropFirst().prefix(20).joined(separator: "\n") + "\n")
            .write(toFile: space.directory + "/train.csv", atomically: true, encoding: .utf8)
        #expect(space.outcomes(try space.run().run) == ["data:succeeded", "train:succeeded", "check:succeeded", "size:succeeded"])

        let runs = try WharfCLI.run(["pipeline", "runs", "--state-dir", space.state])
        #expect(runs.stdout.split(separator: "\n").count == 3 && runs.stdout.contains("4 cached"))
    }

    @Test func aFailedGateStopsTheRun() async throws {
        try await ProcessTestGate.shared.run { try self.aFailedGateStopsTheRunBody() }
    }

    private func aFailedGateStopsTheRunBody() throws {
        let space = try Workspace()
        defer { try? FileManager.default.removeItem(atPath: space.directory) }
        try space.write(gate: "roc_auc>=0.9999")
        let result = try space.run()
        #expect(result.status == 1 && result.run["outcome"] as? String == "failed")
        #expect(space.outcomes(result.run) == ["data:succeeded", "train:succeeded", "check:failed", "size:skipped"])
        let check = (result.run["steps"] as? [[String: Any]])?[2]
        #expect((check?["error"] as? String)?.contains("roc_auc") == true)
        let shown = try WharfCLI.run(["pipeline", "show", result.run["id"] as? String ?? "", "--state-dir", space.state])
        #expect(shown.status == 0 && shown.stdout.contains("check: failed") && shown.stdout.contains("size: skipped"))
    }

    @Test func retriesAndTimeouts() async throws {
        try await ProcessTestGate.shared.run { try self.retriesAndTimeoutsBody() }
    }

    private func retriesAndTimeoutsBody() throws {
        let space = try Workspace()
        defer { try? FileManager.default.removeItem(atPath: space.directory) }
        try space.write(extra: """
              - name: slow
                command: [sleep, "30"]
                retries: 1
                timeout_seconds: 0.5
            """)
        let started = Date()
        let result = try space.run()
        #expect(Date().timeIntervalSince(started) < 25)
        let slow = (result.run["steps"] as? [[String: Any]])?.first { $0["name"] as? String == "slow" }
        #expect(slow?["outcome"] as? String == "failed" && slow?["attempts"] as? Int == 2)
        #expect((slow?["error"] as? String)?.contains("timed out") == true)
    }

    /// A timeout stops the step's whole process group (a shell's background children held the
    /// output open for their whole sleep), and a program that exits 0 on SIGTERM still timed out.
    @Test func aTimeoutStopsEveryProcessOfTheStep() async throws {
        try await ProcessTestGate.shared.run {
            let space = try Workspace()
            defer { try? FileManager.default.removeItem(atPath: space.directory) }
            for (name, command) in [("spawner", #"[sh, -c, "sleep 40 & sleep 40; echo ok > {outputs.out}"]"#),
                                    ("obliging", #"[sh, -c, "trap 'echo partial > {outputs.out}; exit 0' TERM; sleep 40 & wait"]"#)] {
                try space.write(extra: "  - name: \(name)\n    command: \(command)\n    outputs: [out]\n    timeout_seconds: 0.5\n")
                let started = Date()
                let result = try space.run()
                #expect(Date().timeIntervalSince(started) < 20, "\(name): the run waited for the step's children")
                let step = (result.run["steps"] as? [[String: Any]] ?? []).first { $0["name"] as? String == name }
                #expect(step?["outcome"] as? String == "failed", "\(name): \(step ?? [:])")
                #expect((step?["error"] as? String)?.contains("timed out") == true, "\(name)")
            }
        }
    }

    /// A command's cache key holds the files it names: editing its script runs it again.
    @Test func aCommandRunsAgainWhenItsScriptChanges() async throws {
        try await ProcessTestGate.shared.run {
            let space = try Workspace()
            defer { try? FileManager.default.removeItem(atPath: space.directory) }
            try space.write(extra: """
                  - name: export
                    command: [sh, tool.sh, "{outputs.out}"]
                    outputs: [out]
                """)
            try "echo one > \"$1\"\n".write(toFile: space.directory + "/tool.sh", atomically: true, encoding: .utf8)
            func exportOutcome() throws -> String? {
                let run = try space.run().run
                return (run["steps"] as? [[String: Any]])?.first { $0["name"] as? String == "export" }?["outcome"] as? String
            }
            #expect(try exportOutcome() == "succeeded")
            #expect(try exportOutcome() == "cached")
            try "echo two > \"$1\"\n".write(toFile: space.directory + "/tool.sh", atomically: true, encoding: .utf8)
            #expect(try exportOutcome() == "succeeded")
        }
    }

    @Test func mistakesInTheFileAreNamed() async throws {
        try await ProcessTestGate.shared.run { try self.mistakesInTheFileAreNamedBody() }
    }

    private func mistakesInTheFileAreNamedBody() throws {
        let space = try Workspace()
        defer { try? FileManager.default.removeItem(atPath: space.directory) }
        let cases = [
            ("steps:\n  - name: a\n    command: [cat, \"{steps.b.out}\"]\n    outputs: [out]\n  - name: b\n    command: [cat, \"{steps.a.out}\"]\n    outputs: [out]\n", "cycle"),
            ("steps:\n  - name: a\n    validate: {model: steps.nope.model, data: x.csv, label: y, gates: [\"roc_auc>=0.5\"]}\n", "no step nope"),
            // A typo is not dropped (with it the check it meant), a check that cannot fail is
            // refused, and gates, task and algorithm are read before anything runs.
            ("steps:\n  - name: a\n    validate: {model: m.json, data: x.csv, label: y, gates: [\"roc_auc>=0.5\"], againts: production}\n",
             "validate: unknown key againts (known: against, data, gates, label, model)"),
            ("steps:\n  - name: a\n    dataset: {csv: x.csv}\n    retry: 2\n", "step a: unknown key retry"),
            ("steps:\n  - name: a\n    train: {data: x.csv, label: y, task: binary, param: {max_depth: 3}}\n", "train: unknown key param"),
            ("steps:\n  - name: a\n    validate: {model: m.json, data: x.csv, label: y, gates: []}\n", "with neither it could never fail"),
            ("steps:\n  - name: a\n    validate: {model: m.json, data: x.csv, label: y, gates: [\"roc_auc => 0.95\"]}\n", "step a: validate.gates[0]"),
            ("steps:\n  - name: a\n    train: {data: x.csv, label: y, task: ranking}\n", "train.task must be binary, multiclass or regression"),
            ("steps:\n  - name: a\n    train: {data: x.csv, label: y, task: binary, algorithm: forest}\n", "train.algorithm must be gbdt or linear"),
            ("description: x\nsteps:\n  - name: a\n    dataset: {csv: x.csv}\n", "the pipeline: unknown key description"),
            ("steps:\n  - name: a\n    dataset: {csv: x.csv}\n    command: [echo, hi]\n", "exactly one of"),
            ("steps:\n  - name: a\n    dataset: {hub: \"http://h\", view: v, labels: l.csv, labels_stream: s, label: y}\n", "labels_stream: S, label: FIELD"),
            ("steps:\n  - name: a\n    dataset: {hub: \"http://h\", view: v, labels_stream: s}\n", "labels_stream: S, label: FIELD"),
            ("steps:\n  - name: a\n    deploy: {version: steps.r.version}\n", "replicas"),
            ("steps:\n  - name: a\n    dataset: {csv: x.csv}\n  - name: b\n    deploy: {version: steps.a.model, replicas: [\"http://h:1\"]}\n", "makes only csv"),
        ]
        for (body, message) in cases {
            try ("name: broken\n" + body).write(toFile: space.file, atomically: true, encoding: .utf8)
            let result = try WharfCLI.run(["pipeline", "run", space.file, "--state-dir", space.state])
            #expect(result.status == 2 && result.stderr.contains(message), "\(result.stderr)")
        }
    }

    /// The whole offline loop against a real registry: train, register (with the lineage and
    /// the validation dataset), validate the registered version (recorded), promote it to
    /// production. A rerun with unchanged data changes nothing; a failing gate keeps
    /// production where it was.
    @Test func trainRegisterValidateAndPromote() async throws {
        try await ProcessTestGate.shared.run { try await self.trainRegisterValidateAndPromoteBody() }
    }

    private func trainRegisterValidateAndPromoteBody() async throws {
        let space = try Workspace()
        defer { try? FileManager.default.removeItem(atPath: space.directory) }
        let port = WharfCLI.ports(1)
        let registry = "http://127.0.0.1:\(port)"
        // An older token's hash left in the environment: the flag is the token meant.
        let server = try GatewayIntegrationTests.Server(
            ["registry", "--port", String(port), "--data-dir", space.directory + "/registry", "--token", "pipeline-token"],
            environment: ["WHARF_REGISTRY_TOKEN_SHA256": "7d19b716b1e5083012f0ec511be65a74992eeb0afd0ba6ea2649267df545f9b8"])  // sha256("stale-token")
        defer { server.stop() }
        #expect(try await WharfCLI.waitForStatus(registry + "/v1/health/ready", status: 200))
        #expect(try await HubTests.request("POST", registry + "/v1/models", body: "{}", token: "stale-token").status == 401)
        func write(gate: String) throws {
            try space.writeRegistered(gate: gate, ship: "promote: {version: steps.register.version, alias: production}")
        }
        func run() throws -> (Int32, [String: Any]) {
            Workspace.parsed(try WharfCLI.run(["pipeline", "run", space.file, "--state-dir", space.state, "--registry", registry, "--token", "pipeline-token", "--json"]))
        }
        try write(gate: "roc_auc>=0.95")
        let (status, first) = try run()
        #expect(status == 0, "\(first)")
        #expect(space.outcomes(first) == ["data:succeeded", "train:succeeded", "register:succeeded", "check:succeeded", "ship:succeeded"])
        #expect(try Workspace.production(registry) == 1)

        // Unchanged: nothing registered or moved again.
        #expect(space.outcomes(try run().1) == ["data:cached", "train:cached", "register:cached", "check:cached", "ship:cached"])
        // Against the champion, a check runs each time: the alias can move between runs.
        try space.writeRegistered(gate: "roc_auc>=0.95", against: "production",
                                  ship: "promote: {version: steps.register.version, alias: production}")
        for _ in 0..<2 {
            let (againstStatus, againstRun) = try run()
            #expect(againstStatus == 0, "\(againstRun)")
            #expect(space.outcomes(againstRun) == ["data:cached", "train:cached", "register:cached", "check:succeeded", "ship:cached"])
        }

        // A stricter gate on new data: the new version is registered but never promoted.
        try space.addTrainingRows(10)
        try write(gate: "roc_auc>=0.99999")
        let (failedStatus, failed) = try run()
        #expect(failedStatus == 1)
        #expect(space.outcomes(failed) == ["data:succeeded", "train:succeeded", "register:succeeded", "check:failed", "ship:skipped"])
        let model = try WharfCLI.run(["models", "show", "cancer", "--registry", registry]).stdout
        let detail = try JSONSerialization.jsonObject(with: Data(model.utf8)) as? [String: Any]
        #expect((detail?["versions"] as? [Any])?.count == 2)
        #expect(try Workspace.production(registry) == 1)

        // The five runs are in the registry's database (none in the state directory), the
        // failed one with its gate's metrics and the end of its log.
        #expect(!FileManager.default.fileExists(atPath: space.state + "/runs/\(failed["id"] as? String ?? "").json"))
        let recorded = try await HubTests.request("GET", registry + "/v1/runs?pipeline=cancer", token: nil).json["runs"] as? [[String: Any]] ?? []
        #expect(recorded.map { $0["outcome"] as? String ?? "" } == ["succeeded", "succeeded", "succeeded", "succeeded", "failed"])
        #expect(recorded.last?["id"] as? String == failed["id"] as? String)
        let check = (recorded.last?["steps"] as? [[String: Any]])?.first { $0["name"] as? String == "check" }
        #expect((check?["metrics"] as? [String: Any])?["roc_auc"] as? Double ?? 0 > 0.9)
        #expect((check?["log_tail"] as? String)?.contains("roc_auc") == true, "\(check ?? [:])")
        let listed = try WharfCLI.run(["pipeline", "runs", "--registry", registry]).stdout
        #expect(listed.split(separator: "\n").count == 5 && listed.contains("failed"), "\(listed)")
        let shown = try WharfCLI.run(["pipeline", "show", failed["id"] as? String ?? "", "--registry", registry]).stdout
        #expect(shown.contains("check: failed") && shown.contains("| "), "\(shown)")
    }

    /// The deploy step: a retrained version goes out as a canary through the gateway and is
    /// promoted with no manual step and no failed client request; a version whose replica dies
    /// mid-canary is rolled back by the gateway, and production never moves.
    @Test func aDeployStepCanariesThroughTheGateway() async throws {
        try await ProcessTestGate.shared.run { try await self.aDeployStepCanariesThroughTheGatewayBody() }
    }

    private func aDeployStepCanariesThroughTheGatewayBody() async throws {
        let space = try Workspace()
        defer { try? FileManager.default.removeItem(atPath: space.directory) }
        let base = WharfCLI.ports(4)
        let (registry, gateway, productionURL, candidateURL) = ("http://127.0.0.1:\(base)", "http://127.0.0.1:\(base + 1)",
                                                                "http://127.0.0.1:\(base + 2)", "http://127.0.0.1:\(base + 3)")
        let token = "pipeline-token", key = GatewayIntegrationTests.adminKey
        let registryServer = try GatewayIntegrationTests.Server(["registry", "--port", String(base), "--data-dir", space.directory + "/registry", "--token", token])
        let gatewayServer = try GatewayIntegrationTests.Server(["gateway", "--port", String(base + 1), "--data-dir", space.directory + "/gateway",
                                                                "--admin-key", key, "--open-inference", "--health-interval-ms", "100"])
        var servers: [GatewayIntegrationTests.Server] = [registryServer, gatewayServer]
        defer { for server in servers { server.stop() } }
        #expect(try await WharfCLI.waitForStatus(registry + "/v1/health/ready", status: 200))
        #expect(try await WharfCLI.waitForStatus(gateway + "/v2/health/live", status: 200))

        func write(deploy: Bool, check: Bool = true) throws {
            try space.writeRegistered(
                gate: check ? "roc_auc>=0.95" : nil,
                ship: deploy
                    ? "deploy: {version: steps.register.version, replicas: [\(candidateURL)], steps: [50, 100], interval: 1500ms, min_requests: 5, wait: 60s}"
                    : "promote: {version: steps.register.version, alias: production}")
        }
        let arguments = ["pipeline", "run", space.file, "--state-dir", space.state, "--registry", registry, "--token", token,
                         "--gateway", gateway, "--gateway-key", key, "--json"]
        func run() throws -> (Int32, [String: Any]) { Workspace.parsed(try WharfCLI.run(arguments)) }
        func production() throws -> Int? { try Workspace.production(registry) }
        func targets() async throws -> [String] {
            let status = try await HubTests.request("GET", gateway + "/v1/deployments/cancer", token: key).json
            return ((status["spec"] as? [String: Any])?["targets"] as? [[String: Any]] ?? []).map {
                "\($0["version"] ?? "?")=\($0["weight"] ?? "?")@\(($0["replicas"] as? [String] ?? []).joined(separator: ","))"
            }
        }
        // Version 1 by promotion; a production replica and a candidate replica follow the aliases.
        try write(deploy: false)
        let (bootstrap, first) = try run()
        #expect(bootstrap == 0, "\(first)")
        #expect(try WharfCLI.run(["models", "alias", "cancer@1", "candidate", "--registry", registry, "--token", token]).status == 0)
        for (port, alias) in [(base + 2, "production"), (base + 3, "candidate")] {
            servers.append(try GatewayIntegrationTests.Server(["serve", "--registry", registry, "--model", "cancer@\(alias)", "--port", String(port),
                                                               "--poll-seconds", "0.2", "--cache-dir", space.directory + "/cache-\(alias)"]))
        }
        #expect(try await WharfCLI.waitForStatus(productionURL + "/v2/health/ready", status: 200))
        #expect(try await WharfCLI.waitForStatus(candidateURL + "/v2/health/ready", status: 200))
        #expect(try WharfCLI.run(["deploy", "set", "cancer", "--target", "1=100@\(productionURL)", "--gateway", gateway, "--key", key]).status == 0)

        // Version 2 on new data, through the deploy step, under continuous client load.
        let request = try String(contentsOf: WharfCLI.packageRoot.appendingPathComponent("examples/breast-cancer/request.json"), encoding: .utf8)
        let load = GatewayIntegrationTests.Load()
        let loading = Task { await load.run(gateway + "/v2/models/cancer/infer", body: request) }
        try space.addTrainingRows(10)
        try write(deploy: true)
        let (status, second) = try run()
        try await Task.sleep(for: .milliseconds(500))
        load.stop.store(true, ordering: .relaxed)
        await loading.value
        #expect(status == 0, "\(second)")
        #expect(space.outcomes(second) == ["data:succeeded", "train:succeeded", "register:succeeded", "check:succeeded", "ship:succeeded"])
        #expect(try production() == 2)
        #expect(try await targets() == ["2=100@\(productionURL)"])
        #expect(load.failures.isEmpty, "\(load.failures.count) of \(load.count) client requests failed: \(load.failures.prefix(3).map(\.status))")
        #expect(load.versions == ["1", "2"], "\(load.versions)")

        // Version 3: its replica dies mid-canary; the gateway rolls it back, the run fails, and
        // production stays on 2, served by the production replica.
        let badLoad = GatewayIntegrationTests.Load()
        let badLoading = Task { await badLoad.run(gateway + "/v2/models/cancer/infer", body: request) }
        try space.addTrainingRows(20)
        let third = Task.detached { try WharfCLI.run(arguments) }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let canary = try await HubTests.request("GET", gateway + "/v1/deployments/cancer", token: key).json["canary"] as? [String: Any]
            if canary?["version"] as? String == "3", canary?["state"] as? String == "running" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        servers[3].kill()
        let (failedStatus, failed) = Workspace.parsed(try await third.value)
        badLoad.stop.store(true, ordering: .relaxed)
        await badLoading.value
        #expect(failedStatus == 1, "\(failed)")
        #expect(space.outcomes(failed) == ["data:succeeded", "train:succeeded", "register:succeeded", "check:succeeded", "ship:failed"])
        let ship = (failed["steps"] as? [[String: Any]])?.last
        #expect((ship?["error"] as? String)?.contains("the canary was rolled back") == true, "\(ship ?? [:])")
        #expect(try production() == 2)
        #expect(try await targets() == ["2=100@\(productionURL)"])
        #expect(badLoad.failures.isEmpty, "\(badLoad.failures.count) of \(badLoad.count) client requests failed")
        #expect(badLoad.count > 20)

        // Version 4 skips validation: the registry would refuse to make it production, so the
        // rollout stops before it gets any traffic; production and the deployment stay on 2.
        servers.append(try GatewayIntegrationTests.Server(["serve", "--registry", registry, "--model", "cancer@candidate", "--port", String(base + 3),
                                                           "--poll-seconds", "0.2", "--cache-dir", space.directory + "/cache-candidate"]))
        #expect(try await WharfCLI.waitForStatus(candidateURL + "/v2/health/ready", status: 200))
        let lastLoad = GatewayIntegrationTests.Load()
        let lastLoading = Task { await lastLoad.run(gateway + "/v2/models/cancer/infer", body: request) }
        try space.addTrainingRows(30)
        try write(deploy: true, check: false)
        let (refusedStatus, refused) = try run()
        lastLoad.stop.store(true, ordering: .relaxed)
        await lastLoading.value
        #expect(refusedStatus == 1, "\(refused)")
        #expect(space.outcomes(refused) == ["data:succeeded", "train:succeeded", "register:succeeded", "ship:failed"])
        let refusedShip = (refused["steps"] as? [[String: Any]])?.last
        #expect((refusedShip?["log_tail"] as? String)?.contains("so it gets no traffic") == true, "\(refusedShip ?? [:])")
        #expect(!lastLoad.versions.contains("4"), "\(lastLoad.versions)")
        #expect(try production() == 2)
        #expect(try await targets() == ["2=100@\(productionURL)"])
        #expect(lastLoad.failures.isEmpty, "\(lastLoad.failures.count) of \(lastLoad.count) client requests failed")
    }

    /// Triggers: enough new events in a hub stream start a run, once; a schedule starts one too.
    @Test func newEventsAndASchedulerTriggerRuns() async throws {
        try await ProcessTestGate.shared.run { try await self.newEventsAndASchedulerTriggerRunsBody() }
    }

    private func newEventsAndASchedulerTriggerRunsBody() async throws {
        let space = try Workspace()
        defer { try? FileManager.default.removeItem(atPath: space.directory) }
        let hub = try await HubTests.startHub()
        defer { hub.stop() }
        #expect(try await HubTests.request("PUT", hub.url + "/v1/streams/labels", body: #"{"name":"labels","entity_key":"user","features":{"label":"number"}}"#).status == 200)
        try "name: retrain\nsteps:\n  - name: fit\n    command: [sh, -c, \"date +%s%N > {outputs.stamp}\"]\n    outputs: [stamp]\n"
            .write(toFile: space.file, atomically: true, encoding: .utf8)
        func watch(_ extra: [String]) throws -> String {
            let result = try WharfCLI.run(["pipeline", "watch", space.file, "--state-dir", space.state, "--once"] + extra)
            #expect(result.status == 0, "\(result.stderr)")
            return result.stdout
        }
        let onNewData = ["--hub", hub.url, "--stream", "labels", "--min-new-events", "50"]
        #expect(try watch(onNewData).isEmpty, "nothing to run yet")
        let events = (0..<60).map { #"{"user":"u\#($0)","label":\#($0 % 2)}"# }.joined(separator: "\n")
        #expect(try await HubTests.request("POST", hub.url + "/v1/streams/labels/events", body: events).status == 200)
        #expect(try watch(onNewData).contains("succeeded (new-data: 60 events in labels)"))
        #expect(try watch(onNewData).isEmpty, "the same events do not trigger twice")
        #expect(try watch(["--every", "1ms"]).contains("(schedule)"))
        let runs = try WharfCLI.run(["pipeline", "runs", "--state-dir", space.state]).stdout
        #expect(runs.split(separator: "\n").count == 2)
        let misuse = try WharfCLI.run(["pipeline", "watch", space.file, "--state-dir", space.state, "--once"])
        #expect(misuse.status == 2 && misuse.stderr.contains("name a trigger"))
    }

    /// A training set built from the hub, point in time, feeds training; the dataset is built
    /// on every run (the hub keeps changing) and training reruns only when it came out different.
    @Test func aTrainingSetFromTheHub() async throws {
        try await ProcessTestGate.shared.run { try await self.aTrainingSetFromTheHubBody() }
    }

    private func aTrainingSetFromTheHubBody() async throws {
        let space = try Workspace()
        defer { try? FileManager.default.removeItem(atPath: space.directory) }
        let hub = try await HubTests.startHub()
        defer { hub.stop() }
        #expect(try await HubTests.request("PUT", hub.url + "/v1/streams/clicks", body: HubTests.definition).status == 200)
        #expect(try await HubTests.request("PUT", hub.url + "/v1/views/activity", body: #"{"name":"activity","stream":"clicks","features":["seq"]}"#).status == 200)
        let events = (0..<40).map { #"{"user":"u\#($0)","ts":\#(1_700_000_000 + $0),"seq":\#($0 % 10)}"# }.joined(separator: "\n")
        #expect(try await HubTests.request("POST", hub.url + "/v1/streams/clicks/events", body: events).status == 200)
        let labels = "user,ts,clicked\n" + (0..<40).map { "u\($0),\(1_700_000_100 + $0),\($0 % 10 >= 5 ? 1 : 0)" }.joined(separator: "\n") + "\n"
        try labels.write(toFile: space.directory + "/labels.csv", atomically: true, encoding: .utf8)
        try """
            name: from-hub
            steps:
              - name: data
                dataset: {hub: "\(hub.url)", view: activity, labels: labels.csv, entity_column: user, time_column: ts}
              - name: train
                train: {data: steps.data.csv, label: clicked, task: binary, algorithm: linear, ignore: [user, ts]}
            """.write(toFile: space.file, atomically: true, encoding: .utf8)
        let first = try space.run()
        #expect(first.status == 0, "\(first.run)")
        #expect(space.outcomes(first.run) == ["data:succeeded", "train:succeeded"])
        #expect(space.outcomes(try space.run().run) == ["data:succeeded", "train:cached"])
    }

    /// The pipelines' API: a monitor starts a run (the drift hook), the history is readable.
    @Test func theAPIStartsRunsAndShowsThem() async throws {
        try await ProcessTestGate.shared.run { try await self.theAPIStartsRunsAndShowsThemBody() }
    }

    private func theAPIStartsRunsAndShowsThemBody() async throws {
        let space = try Workspace()
        defer { try? FileManager.default.removeItem(atPath: space.directory) }
        try space.write()
        let port = WharfCLI.ports(1)
        let url = "http://127.0.0.1:\(port)"
        let server = try GatewayIntegrationTests.Server(["pipeline", "serve", space.file, "--state-dir", space.state, "--port", String(port), "--token", "pipe-token"])
        defer { server.stop() }
        #expect(try await WharfCLI.waitForStatus(url + "/v1/health/ready", status: 200))
        #expect(try await HubTests.request("POST", url + "/v1/pipelines/cancer/runs", body: #"{"trigger":"drift"}"#, token: nil).status == 401)
        #expect(try await HubTests.request("POST", url + "/v1/pipelines/nope/runs", body: "{}", token: "pipe-token").status == 404)
        let started = try await HubTests.request("POST", url + "/v1/pipelines/cancer/runs", body: #"{"trigger":"drift"}"#, token: "pipe-token")
        #expect(started.status == 202)
        let id = try #require(started.json["id"] as? String)
        // The run goes on in the background: its record says when it is done.
        var outcome = "running"
        let deadline = Date().addingTimeInterval(60)
        while outcome == "running" || outcome == "", Date() < deadline {
            let run = try await HubTests.request("GET", url + "/v1/runs/\(id)", token: nil)
            outcome = run.status == 200 ? run.json["outcome"] as? String ?? "" : ""
            if outcome == "running" || outcome == "" { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(outcome == "succeeded")
        let run = try await HubTests.request("GET", url + "/v1/runs/\(id)", token: nil).json
        #expect(run["trigger"] as? String == "drift")
        let listed = try await HubTests.request("GET", url + "/v1/pipelines", token: nil).json
        let pipeline = (listed["pipelines"] as? [[String: Any]])?.first
        #expect(pipeline?["name"] as? String == "cancer" && (pipeline?["last_run"] as? [String: Any])?["id"] as? String == id)
        #expect(((try await HubTests.request("GET", url + "/v1/runs?pipeline=cancer", token: nil).json["runs"]) as? [Any])?.count == 1)
        #expect(try await HubTests.request("GET", url + "/v1/runs/missing", token: nil).status == 404)
    }
}
