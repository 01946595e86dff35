#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import WharfCore

/// A deployment as the router uses it: the spec, a pool per version, live figures, and the
/// bulkhead counting its requests in flight.
final class LiveDeployment: Sendable {
    let spec: DeploymentSpec
    let pools: [String: ReplicaPool]
    let shadowPool: ReplicaPool?
    let stats: [String: VersionStats]
    /// `pools` and `stats` in the order of the spec's targets: what the router looks up for
    /// every request, by index rather than by hashing the version's name.
    let targetPools: [ReplicaPool?]
    let targetStats: [VersionStats?]
    /// Requests in flight for the model, shared by every spec of it: a spec change (a canary
    /// step) does not start a fresh count while the old spec's requests still run.
    let inFlight: InFlightCount

    final class InFlightCount: Sendable {
        private let count = Atomic(0)

        /// One more in flight; the count with it.
        func enter() -> Int { count.wrappingAdd(1, ordering: .relaxed).newValue }
        func leave() { count.wrappingSubtract(1, ordering: .relaxed) }
        var value: Int { count.load(ordering: .relaxed) }
    }

    init(spec: DeploymentSpec, directory: ReplicaDirectory, inFlight: InFlightCount = InFlightCount(), stats: (String) -> VersionStats) {
        self.spec = spec
        var pools: [String: ReplicaPool] = [:]
        var versionStats: [String: VersionStats] = [:]
        for target in spec.targets {
            pools[target.version] = ReplicaPool(target.replicas.map(directory.replica))
            versionStats[target.version] = stats(target.version)
        }
        if let shadow = spec.shadow {
            shadowPool = ReplicaPool(shadow.replicas.map(directory.replica))
            versionStats[shadow.version] = stats(shadow.version)
        } else {
            shadowPool = nil
        }
        self.pools = pools
        self.stats = versionStats
        targetPools = spec.targets.map { pools[$0.version] }
        targetStats = spec.targets.map { versionStats[$0.version] }
        self.inFlight = inFlight
    }
}

/// Replicas by URL, shared by every deployment and spec change, so that a replica's health and
/// breaker outlive a weight change.
final class ReplicaDirectory: Sendable {
    private let replicas = Mutex([String: Replica]())

    func replica(_ url: String) -> Replica {
        replicas.withLock { replicas in
            if let existing = replicas[url] { return existing }
            let replica = Replica(url: url)
            replicas[url] = replica
            return replica
        }
    }

    /// Drops replicas no deployment uses any more.
    func retain(_ urls: Set<String>) {
        replicas.withLock { $0 = $0.filter { urls.contains($0.key) } }
    }

    var all: [Replica] { replicas.withLock { Array($0.values) } }
}

/// One change to a deployment, kept for `wharf deploy status`.
public struct DeploymentChange: Sendable, Hashable, Codable {
    public var at: Date
    public var actor: String
    /// `set`, `canary.start`, `canary.step`, `canary.promote`, `canary.rollback`, `promote`,
    /// `rollback`, `shadow`, `delete`.
    public var action: String
    public var detail: String
    public var weights: [String: Double]
}

/// Every deployment, its history, and the file they are kept in (written atomically), so a
/// restarted gateway routes as before.
final class DeploymentStore: Sendable {
    struct Entry: Codable {
        var spec: DeploymentSpec
        var history: [DeploymentChange]
        /// The spec before the last change, for an instant rollback.
        var previous: DeploymentSpec?
    }

    private let entries = Mutex([String: Entry]())
    /// Held through a whole change (entries, file, routing), so that changes apply one at a time.
    private let changes = Mutex(())
    private let live = Mutex([String: LiveDeployment]())
    private let statsByVersion = Mutex([String: VersionStats]())
    let directory = ReplicaDirectory()
    private let file: String?

    init(file: String?) throws(WharfError) {
        self.file = file
        guard let file, let data = FileManager.default.contents(atPath: file) else { return }
        do {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            var stored = try decoder.decode([String: Entry].self, from: data)
            // Held to today's rules (a file from an older gateway, or edited by hand): the
            // replica URLs normalized, a spec that could not route refused by name.
            for (model, entry) in stored {
                do {
                    stored[model]?.spec = try entry.spec.validated()
                } catch {
                    throw WharfError(.invalidInput, "\(file): \(error.message)")
                }
            }
            entries.withLock { $0 = stored }
            for entry in stored.values { install(entry.spec) }
        } catch let error as WharfError {
            throw error
        } catch {
            throw WharfError(.invalidInput, "\(file) is not a deployments file: \(error)")
        }
    }

    func deployment(_ model: String) -> LiveDeployment? {
        live.withLock { $0[model] }
    }

    func entry(_ model: String) -> Entry? {
        entries.withLock { $0[model] }
    }

    var models: [String] { entries.withLock { $0.keys.sorted() } }

    /// What `rollback` goes back to after a change.
    enum RollbackPoint {
        /// The spec the change replaced (a plain change).
        case replacedSpec
        /// A given spec, or none: a rollout's steps all go back to the spec before the rollout.
        case spec(DeploymentSpec?)
    }

    /// Replaces (or creates) a deployment; returns the change recorded. The change is written
    /// to the file before it routes or shows: when it cannot be saved, it is not made.
    @discardableResult
    func set(_ spec: DeploymentSpec, actor: String, action: String, detail: String,
             rollbackTo point: RollbackPoint = .replacedSpec) throws(WharfError) -> DeploymentChange {
        let spec = try spec.validated()
        let change = DeploymentChange(at: Date(), actor: actor, action: action, detail: detail,
                                      weights: Dictionary(uniqueKeysWithValues: spec.targets.map { ($0.version, $0.weight) }))
        try changes.withLock { _ throws(WharfError) in
            var all = entries.withLock { $0 }
            var entry = all[spec.model] ?? Entry(spec: spec, history: [], previous: nil)
            switch point {
            case .replacedSpec: if entry.spec != spec { entry.previous = entry.spec }
            case .spec(let target): entry.previous = target
            }
            entry.spec = spec
            entry.history.append(change)
            if entry.history.count > 500 { entry.history.removeFirst(entry.history.count - 500) }
            all[spec.model] = entry
            try commit(all)
            install(spec)
            forgetUnnamedReplicas(all)
        }
        return change
    }

    func delete(_ model: String) throws(WharfError) {
        try changes.withLock { _ throws(WharfError) in
            var all = entries.withLock { $0 }
            guard all.removeValue(forKey: model) != nil else {
                throw WharfError(.notFound, "no deployment for model \(model)")
            }
            try commit(all)
            _ = live.withLock { $0.removeValue(forKey: model) }
            forgetUnnamedReplicas(all)
        }
    }

    /// Replicas no deployment names any more (a rolled-back canary, a replaced pod) are no
    /// longer health-checked or kept; requests still on them finish.
    private func forgetUnnamedReplicas(_ all: [String: Entry]) {
        directory.retain(Set(all.values.flatMap { Self.urls($0.spec) }))
    }

    func stats(model: String, version: String) -> VersionStats {
        statsByVersion.withLock { all in
            let key = model + "\u{0}" + version
            if let existing = all[key] { return existing }
            let stats = VersionStats(deployment: model, version: version)
            all[key] = stats
            return stats
        }
    }

    private func install(_ spec: DeploymentSpec) {
        live.withLock { live in
            let inFlight = live[spec.model]?.inFlight ?? LiveDeployment.InFlightCount()
            live[spec.model] = LiveDeployment(spec: spec, directory: directory, inFlight: inFlight) { self.stats(model: spec.model, version: $0) }
        }
    }

    static func urls(_ spec: DeploymentSpec) -> [String] {
        spec.targets.flatMap(\.replicas) + (spec.shadow?.replicas ?? [])
    }

    /// Writes `all` to the file (atomically: a whole new file renamed over the old), then
    /// makes it the store's. Runs under `changes`, so two changes never write out of order.
    private func commit(_ all: [String: Entry]) throws(WharfError) {
        try persist(all)
        entries.withLock { $0 = all }
    }

    private func persist(_ snapshot: [String: Entry]) throws(WharfError) {
        guard let file else { return }
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.dateEncodingStrategy = .iso8601
            let data = try encoder.encode(snapshot)
            let temporary = file + ".tmp-\(UUID().uuidString)"
            try data.write(to: URL(fileURLWithPath: temporary))
            guard rename(temporary, file) == 0 else {
                unlink(temporary)
                throw WharfError(.io, "cannot move the deployments file into place")
            }
        } catch {
            throw WharfError(.io, "cannot save the deployments to \(file): \(error.localizedDescription)")
        }
    }
}
