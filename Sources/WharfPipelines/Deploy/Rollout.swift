import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import WharfClient
import WharfCore

/// Rolls a registered version out through the gateway with no manual step and no disruption:
/// the pipelines' `deploy` step, `wharf deploy rollout`, and `wharf up --demo`.
///
/// Two sets of model servers take part: **candidate** replicas, which follow
/// `NAME@<candidate alias>`, and **production** replicas, which follow `NAME@<alias>`
/// (production). The rollout
/// 1. waits for a canary of the model that is already running to end (rollouts queue), and asks
///    the registry whether the version may become production (a dry run of the alias move), so
///    a version its promotion policy refuses never gets live traffic;
/// 2. points the candidate alias at the version and waits until every candidate replica is
///    ready with it;
/// 3. starts the gateway's canary towards the candidate replicas, and follows it step by step;
///    the gateway rolls it back by itself when the error rate or p99 crosses its limit, and the
///    rollout then ends `rolled_back` with the gateway's reason: production never moved;
/// 4. when the canary has promoted the version (all traffic on the candidate replicas), moves
///    the production alias in the registry (its promotion policy applies again, in case a
///    validation changed meanwhile: a refusal puts the previous deployment back), waits until the production replicas have swapped to the
///    version, and routes all traffic to them again, labelled with the version.
///
/// Every request is answered throughout: the canary shifts traffic between replicas that are
/// all ready, and the production replicas swap while they carry none.
public struct Rollout: Sendable {
    public var model: String
    public var version: Int
    /// The candidate replicas' URLs (servers following `model@candidateAlias`).
    public var replicas: [String]
    /// The servers following `model@alias`; by default those of the deployment before the rollout.
    public var productionReplicas: [String]?
    public var candidateAlias = "candidate"
    public var alias = "production"
    public var steps: [Double] = [5, 25, 50, 100]
    public var intervalSeconds: Double = 30
    public var maxErrorRate = 0.01
    public var maxP99Milliseconds: Double?
    public var minRequests = 20
    /// How long replicas get to load a version, and a running canary to end, before it gives up.
    public var waitSeconds: Double = 300

    public init(model: String, version: Int, replicas: [String]) {
        self.model = model
        self.version = version
        self.replicas = replicas
    }

    public struct Outcome: Sendable, Codable {
        public var model: String
        public var version: Int
        /// `promoted` or `rolled_back`.
        public var state: String
        public var reason: String?
        public var replicas: [String]
        public var seconds: Double
    }

    public func run(registry: RegistryClient, gateway: GatewayClient, http: HTTPClient = RegistryClient.failFast,
                    progress: @Sendable (String) -> Void = { _ in }) async throws -> Outcome {
        let started = ContinuousClock.now
        let label = String(version)
        guard !replicas.isEmpty else { throw WharfError(.invalidInput, "a rollout needs the candidate replicas' URLs") }
        guard candidateAlias != alias else { throw WharfError(.invalidInput, "the candidate alias and the production alias must differ") }
        // Checked before anything moves (the readiness polls below call them directly).
        _ = try ReplicaAddress.checkList(replicas, "candidate replicas")
        if let productionReplicas { _ = try ReplicaAddress.checkList(productionReplicas, "production replicas") }
        _ = try await registry.version(model, version)

        try await waitForNoCanary(gateway: gateway, progress: progress)
        let stable = try await Self.spec(of: try await gateway.status(model))
        guard !stable.targets.contains(where: { $0.version == label }) else {
            throw WharfError(.conflict, "\(model)@\(label) is already deployed: \(stable.targets.map { "\($0.version) \($0.weight)%" }.joined(separator: ", "))")
        }
        let production = productionReplicas ?? Array(Set(stable.targets.flatMap(\.replicas))).sorted()
        // No live traffic for a version the registry would not make production.
        do {
            _ = try await registry.setAlias(model, alias, version: version, reason: "rollout of \(model)@\(version)", dryRun: true)
        } catch let error as WharfError where error.code == .forbidden {
            throw WharfError(.forbidden, "\(model)@\(version) cannot become \(alias), so it gets no traffic: \(error.message)")
        }

        _ = try await registry.setAlias(model, candidateAlias, version: version, reason: "rollout of \(model)@\(version)")
        progress("\(candidateAlias) → \(version); waiting for \(replicas.count) candidate replica(s)")
        try await waitUntilServing(replicas, http: http)

        let plan = try CanaryPlan(version: label, replicas: replicas, steps: steps, intervalSeconds: intervalSeconds,
                                  maxErrorRate: maxErrorRate, maxP99Milliseconds: maxP99Milliseconds, minRequests: minRequests).validated()
        _ = try await gateway.canary(model, plan)
        progress("canary of \(model)@\(version): \(steps.map { "\(Self.percent($0))%" }.joined(separator: " → ")), \(intervalSeconds) s a step")
        let (state, reason) = try await followCanary(gateway: gateway, progress: progress)
        let seconds = { (ContinuousClock.now - started) / .seconds(1) }
        guard state == "promoted" else {
            progress("rolled back: \(reason ?? "no reason given")")
            return Outcome(model: model, version: version, state: "rolled_back", reason: reason, replicas: replicas, seconds: seconds())
        }

        do {
            _ = try await registry.setAlias(model, alias, version: version, reason: "canary passed: \(steps.map { "\(Self.percent($0))%" }.joined(separator: ", "))")
        } catch {
            // The registry refused production (its promotion policy): traffic goes back to
            // where it was, and the canary's success is not taken for a promotion.
            _ = try? await gateway.set(stable)
            throw WharfError(.forbidden, "the canary passed but \(alias) cannot move to \(model)@\(version), so the deployment is back as it was: \(error)")
        }
        progress("\(alias) → \(version); waiting for \(production.count) production replica(s) to swap")
        try await waitUntilServing(production, http: http)
        var settled = stable
        settled.targets = [DeploymentSpec.Target(version: label, weight: 100, replicas: production)]
        _ = try await gateway.set(try settled.validated())
        progress("\(model)@\(version) serves all traffic from the production replicas")
        return Outcome(model: model, version: version, state: "promoted", reason: nil, replicas: production, seconds: seconds())
    }

    static func spec(of status: [String: Any]) async throws -> DeploymentSpec {
        guard let spec = status["spec"] else { throw WharfError(.internalError, "the gateway's status has no spec") }
        do {
            return try JSONDecoder().decode(DeploymentSpec.self, from: JSONSerialization.data(withJSONObject: spec))
        } catch {
            throw WharfError(.internalError, "the gateway's deployment spec cannot be read: \(error)")
        }
    }

    static func percent(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }

    private var deadline: ContinuousClock.Instant { .now + .milliseconds(Int64(waitSeconds * 1000)) }

    private func waitForNoCanary(gateway: GatewayClient, progress: @Sendable (String) -> Void) async throws {
        let deadline = self.deadline
        var said = false
        while true {
            let canary = try await gateway.status(model)["canary"] as? [String: Any]
            guard canary?["state"] as? String == "running" else { return }
            if !said {
                progress("waiting for the running canary of \(model)@\(canary?["version"] as? String ?? "?") to end")
                said = true
            }
            guard ContinuousClock.now < deadline else {
                throw WharfError(.conflict, "a canary of \(model) has been running for more than \(Int(waitSeconds)) s")
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// Polls `GET /v2/models/{model}/versions/{version}/ready` on each replica until all say 200.
    private func waitUntilServing(_ urls: [String], http: HTTPClient) async throws {
        let deadline = self.deadline
        var waiting = Set(urls)
        while !waiting.isEmpty {
            for url in waiting.sorted() {
                var base = url
                while base.hasSuffix("/") { base.removeLast() }
                let request = HTTPClientRequest(url: "\(base)/v2/models/\(model)/versions/\(version)/ready")
                if let response = try? await http.execute(request, timeout: .seconds(5)) {
                    _ = try? await response.body.collect(upTo: 1 << 16)
                    if response.status.code == 200 { waiting.remove(url) }
                }
            }
            guard !waiting.isEmpty else { return }
            guard ContinuousClock.now < deadline else {
                throw WharfError(.unavailable, "\(waiting.sorted().joined(separator: ", ")) did not serve \(model)@\(version) within \(Int(waitSeconds)) s: do they follow the alias?")
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    /// Follows the gateway's canary of this version to its end: (state, reason).
    private func followCanary(gateway: GatewayClient, progress: @Sendable (String) -> Void) async throws -> (String, String?) {
        let limit = ContinuousClock.now + .seconds(Double(steps.count) * intervalSeconds + waitSeconds)
        var lastStep: Double?
        while true {
            try await Task.sleep(for: .milliseconds(250))
            guard let canary = try await gateway.status(model)["canary"] as? [String: Any],
                  canary["version"] as? String == String(version)
            else { throw WharfError(.conflict, "the canary of \(model)@\(version) was replaced by another") }
            let state = canary["state"] as? String ?? "running"
            if state != "running" { return (state, canary["reason"] as? String) }
            if let step = canary["step"] as? Double, step != lastStep {
                progress("\(Self.percent(step))% of the traffic on \(model)@\(version)")
                lastStep = step
            }
            guard ContinuousClock.now < limit else {
                _ = try? await gateway.rollback(model)
                throw WharfError(.unavailable, "the canary of \(model)@\(version) did not end in time; it was rolled back")
            }
        }
    }
}
