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
        /// Which rollout: writes of one that was stopped are refused.
        var id = UUID()
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
        let status = Status(version: plan.version, steps: plan.steps, step: nil, state: "running", reason: nil, startedAt: Date(), endedAt: nil)
        // The spec the rollout starts from is read under the lock changes by hand take.
        let (id, entry) = try runs.withLock { runs throws(WharfError) in
            guard let entry = store.entry(model) else { throw WharfError(.notFound, "no deployment for model \(model): set one first") }
            guard !entry.spec.targets.contains(where: { $0.version == plan.version }) else {
                throw WharfError(.conflict, "version \(plan.version) is already a target of \(model)")
            }
            guard entry.spec.shadow?.version != plan.version else {
                throw WharfError(.conflict, "version \(plan.version) is the shadow of \(model): turn the shadow off before its canary")
            }
            if runs[model]?.status.state == "running" { throw WharfError(.conflict, "a canary of \(model) is already running") }
            let run = Run(status: status, task: nil, stable: entry.spec, rollbackPoint: entry.previous)
            runs[model] = run
            return (run.id, entry)
        }
        let task = Task { await self.run(model: model, id: id, plan: plan, stable: entry.spec, before: entry.previous, actor: actor) }
        runs.withLock { $0[model]?.task = task }
        return status
    }

    /// Stops a running canary and puts the stable spec back (a manual rollback). Under the same
    /// lock as the rollout's own writes, so none of them lands after this.
    func abort(model: String, actor: String, reason: String) throws(WharfError) -> Bool {
        try runs.withLock { runs throws(WharfError) in
            guard var run = runs[model], run.status.state == "running" else { return false }
            // The run ends even when the spec cannot be saved (it is installed before it is
            // saved): a run left "running" would refuse every change for good.
            defer {
                run.task?.cancel()
                run.status.state = "rolled_back"
                run.status.reason = reason
                run.status.endedAt = Date()
                runs[model] = run
            }
            try store.set(run.stable, actor: actor, action: "canary.rollback", detail: reason, rollbackTo: .spec(run.rollbackPoint))
            return true
        }
    }

    /// Does `write` (a change of `model`'s deployment by hand) only while no canary of it runs,
    /// under the lock a canary's start and steps take, so neither can overwrite the other.
    @discardableResult
    func withoutRunningCanary<T>(_ model: String, _ write: () throws(WharfError) -> T) throws(WharfError) -> T {
        try runs.withLock { runs throws(WharfError) in
            if let run = runs[model], run.status.state == "running" {
                throw WharfError(.conflict, "a canary of \(model) (version \(run.status.version)) is running: wait for it to end, or roll it back")
            }
            return try write()
        }
    }

    /// Does `write` (a change of the deployment by rollout `id`) only while that rollout is the
    /// model's running canary; false, having written nothing, once it was stopped.
    private func whileRunning(_ model: String, _ id: UUID, _ write: (inout Run) throws(WharfError) -> Void) throws(WharfError) -> Bool {
        try runs.withLock { runs throws(WharfError) in
            guard var run = runs[model], run.id == id, run.status.state == "running" else { return false }
            // Kept even when `write` throws after changing it (a spec installed, not saved).
            defer { runs[model] = run }
            try write(&run)
            return true
        }
    }

    /// Every step, and the promotion, roll back to `stable` (the spec before the rollout); a
    /// rollout rolled back leaves `before` as the rollback point, as if it had not run.
    private func run(model: String, id: UUID, plan: CanaryPlan, stable: DeploymentSpec, before: DeploymentSpec?, actor: String) async {
        let stats = store.stats(model: model, version: plan.version)
        do {
            for step in plan.steps {
                try Task.checkCancellation()
                let stepped = try whileRunning(model, id) { run throws(WharfError) in
                    try store.set(Self.spec(stable: stable, plan: plan, percent: step), actor: actor, action: "canary.step",
                                  detail: "\(plan.version) at \(step)%", rollbackTo: .spec(stable))
                    run.status.step = step
                }
                guard stepped else { return }
                stats.resetWindow()
                let deadline = ContinuousClock.now + .milliseconds(Int64(plan.intervalSeconds * 1000))
                while ContinuousClock.now < deadline {
                    try await Task.sleep(for: min(checkEvery, deadline - .now))
                    if let why = Self.verdict(stats.summary(), plan: plan, final: false) {
                        try rollback(model: model, id: id, stable: stable, before: before, actor: actor, reason: "at \(step)%: \(why)")
                        return
                    }
                }
                if let why = Self.verdict(stats.summary(), plan: plan, final: true) {
                    try rollback(model: model, id: id, stable: stable, before: before, actor: actor, reason: "at \(step)%: \(why)")
                    return
                }
            }
            var promoted = Self.spec(stable: stable, plan: plan, percent: 100)
            promoted.targets = promoted.targets.filter { $0.version == plan.version }
            try finish(model: model, id: id, state: "promoted", reason: nil, spec: promoted, rollbackTo: stable, actor: actor, action: "canary.promote")
        } catch is CancellationError {
            return
        } catch {
            logger.error("canary failed", metadata: ["model": "\(model)", "error": "\(error)"])
            try? rollback(model: model, id: id, stable: stable, before: before, actor: actor, reason: "the canary could not continue: \(error)")
        }
    }

    private func rollback(model: String, id: UUID, stable: DeploymentSpec, before: DeploymentSpec?, actor: String, reason: String) throws(WharfError) {
        logger.warning("canary rolled back", metadata: ["model": "\(model)", "reason": "\(reason)"])
        try finish(model: model, id: id, state: "rolled_back", reason: reason, spec: stable, rollbackTo: before, actor: actor, action: "canary.rollback")
    }

    private func finish(
        model: String, id: UUID, state: String, reason: String?, spec: DeploymentSpec, rollbackTo point: DeploymentSpec?, actor: String,
        action: String
    ) throws(WharfError) {
        _ = try whileRunning(model, id) { run throws(WharfError) in
            defer {
                run.status.state = state
                run.status.reason = reason
                run.status.endedAt = Date()
            }
            try store.set(spec, actor: actor, action: action, detail: reason ?? "all steps passed", rollbackTo: .spec(point))
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
