import Foundation
import Logging
import Synchronization
import WharfCore

/// Runs progressive rollouts: one step of traffic at a time, judged on the new version's live
/// figures, rolled back the moment a limit is crossed.
final class CanaryController: Sendable {
    public struct Status: Sendable, Hashable, Codable {
        var version: String
        var steps: [Double]
        var step: Double?
        /// `running`, `promoted` or `rolled_back`.
        var state: String
        var reason: String?
        var startedAt: Date
        var endedAt: Date?

        enum CodingKeys: String, CodingKey {
            case version, steps, step, state, reason
            case startedAt = "started_at"
            case endedAt = "ended_at"
        }
    }

    private struct Run {
        var status: Status
        var task: Task<Void, Never>?
        var stable: DeploymentSpec
        /// What `rollback` went back to before the rollout; restored when it is rolled back.
        var rollbackPoint: DeploymentSpec?
    }

    private let runs = Mutex([String: Run]())
    let store: DeploymentStore
    let logger: Logger
    /// How often a running step is checked, so a failing canary is stopped within this.
    let checkEvery: Duration

    init(store: DeploymentStore, logger: Logger, checkEvery: Duration = .milliseconds(200)) {
        self.store = store
        self.logger = logger
        self.checkEvery = checkEvery
    }

    func status(_ model: String) -> Status? {
        runs.withLock { $0[model]?.status }
    }

    func start(model: String, plan: CanaryPlan, actor: String) throws(WharfError) -> Status {
        let plan = try plan.validated()
        guard let entry = store.entry(model) else { throw WharfError(.notFound, "no deployment for model \(model): set one first") }
        guard !entry.spec.targets.contains(where: { $0.version == plan.version }) else {
            throw WharfError(.conflict, "version \(plan.version) is already a target of \(model)")
        }
        let status = Status(version: plan.version, steps: plan.steps, step: nil, state: "running", reason: nil, startedAt: Date(), endedAt: nil)
        try runs.withLock { runs throws(WharfError) in
            if runs[model]?.status.state == "running" { throw WharfError(.conflict, "a canary of \(model) is already running") }
            runs[model] = Run(status: status, task: nil, stable: entry.spec, rollbackPoint: entry.previous)
        }
        let task = Task { await self.run(model: model, plan: plan, stable: entry.spec, before: entry.previous, actor: actor) }
        runs.withLock { $0[model]?.task = task }
        return status
    }

    /// Stops a running canary and puts the stable spec back (a manual rollback).
    func abort(model: String, actor: String, reason: String) throws(WharfError) -> Bool {
        guard let run = runs.withLock({ $0[model] }), run.status.state == "running" else { return false }
        run.task?.cancel()
        try finish(model: model, state: "rolled_back", reason: reason, spec: run.stable, rollbackTo: run.rollbackPoint, actor: actor,
                   action: "canary.rollback")
        return true
    }

    /// Every step, and the promotion, roll back to `stable` (the spec before the rollout); a
    /// rollout rolled back leaves `before` as the rollback point, as if it had not run.
    private func run(model: String, plan: CanaryPlan, stable: DeploymentSpec, before: DeploymentSpec?, actor: String) async {
        let stats = store.stats(model: model, version: plan.version)
        do {
            for step in plan.steps {
                try Task.checkCancellation()
                try store.set(Self.spec(stable: stable, plan: plan, percent: step), actor: actor, action: "canary.step",
                              detail: "\(plan.version) at \(step)%", rollbackTo: .spec(stable))
                runs.withLock { $0[model]?.status.step = step }
                stats.resetWindow()
                let deadline = ContinuousClock.now + .milliseconds(Int64(plan.intervalSeconds * 1000))
                while ContinuousClock.now < deadline {
                    try await Task.sleep(for: min(checkEvery, deadline - .now))
                    if let why = Self.verdict(stats.summary(), plan: plan, final: false) {
                        try rollback(model: model, stable: stable, before: before, actor: actor, reason: "at \(step)%: \(why)")
                        return
                    }
                }
                if let why = Self.verdict(stats.summary(), plan: plan, final: true) {
                    try rollback(model: model, stable: stable, before: before, actor: actor, reason: "at \(step)%: \(why)")
                    return
                }
            }
            var promoted = Self.spec(stable: stable, plan: plan, percent: 100)
            promoted.targets = promoted.targets.filter { $0.version == plan.version }
            try finish(model: model, state: "promoted", reason: nil, spec: promoted, rollbackTo: stable, actor: actor, action: "canary.promote")
        } catch is CancellationError {
            return
        } catch {
            logger.error("canary failed", metadata: ["model": "\(model)", "error": "\(error)"])
            try? rollback(model: model, stable: stable, before: before, actor: actor, reason: "the canary could not continue: \(error)")
        }
    }

    private func rollback(model: String, stable: DeploymentSpec, before: DeploymentSpec?, actor: String, reason: String) throws(WharfError) {
        logger.warning("canary rolled back", metadata: ["model": "\(model)", "reason": "\(reason)"])
        try finish(model: model, state: "rolled_back", reason: reason, spec: stable, rollbackTo: before, actor: actor, action: "canary.rollback")
    }

    private func finish(
        model: String, state: String, reason: String?, spec: DeploymentSpec, rollbackTo point: DeploymentSpec?, actor: String, action: String
    ) throws(WharfError) {
        try store.set(spec, actor: actor, action: action, detail: reason ?? "all steps passed", rollbackTo: .spec(point))
        runs.withLock { runs in
            runs[model]?.status.state = state
            runs[model]?.status.reason = reason
            runs[model]?.status.endedAt = Date()
        }
    }

    /// Why the canary must stop, or nil. Mid-step only a clear breach counts (enough requests
    /// seen); at the end of a step the same limits with what there is.
    static func verdict(_ summary: VersionStats.Summary, plan: CanaryPlan, final: Bool) -> String? {
        guard summary.requests >= max(1, plan.minRequests) else { return nil }
        if summary.errorRate > plan.maxErrorRate {
            return "error rate \(String(format: "%.2f", summary.errorRate * 100))% over \(summary.requests) requests exceeds \(plan.maxErrorRate * 100)%"
        }
        if let limit = plan.maxP99Milliseconds, let p99 = summary.p99Milliseconds, p99 > limit, final || summary.requests >= 100 {
            return "p99 \(String(format: "%.1f", p99)) ms exceeds \(limit) ms"
        }
        return nil
    }

    /// The canary first (so sticky keys only move towards it), the stable targets after,
    /// their weights scaled to share what the canary leaves.
    static func spec(stable: DeploymentSpec, plan: CanaryPlan, percent: Double) -> DeploymentSpec {
        var spec = stable
        let stableTotal = stable.targets.reduce(0) { $0 + $1.weight }
        let rest = stable.targets.map { target -> DeploymentSpec.Target in
            var target = target
            target.weight = stableTotal > 0 ? target.weight / stableTotal * (100 - percent) : 0
            return target
        }
        spec.targets = [DeploymentSpec.Target(version: plan.version, weight: percent, replicas: plan.replicas)] + rest
        return spec
    }
}
