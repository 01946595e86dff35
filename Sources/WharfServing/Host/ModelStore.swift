import Synchronization
import WharfCore

/// The models a server answers for: for each name, its loaded versions and the one that
/// answers when a request names none (the newest).
///
/// Swapping is one assignment under a lock: a request either resolves the old version or the
/// new one, and keeps the one it got until it finishes.
public final class ModelStore: Sendable {
    /// What the repository index reports for a model.
    public struct Entry: Sendable {
        public var name: String
        public var version: String?
        public var state: String
        public var reason: String
    }

    private struct Versions {
        var byVersion: [String: ServedModel] = [:]
        var current: String?
        var failure: String?
        /// Expected (in the catalog) and not loaded yet: requests get 503, not 404.
        var loading = false
        /// Versions by install time, the latest last.
        var installed: [String] = []
    }

    private let models = Mutex([String: Versions]())

    public init() {}

    /// The version that answers `name` (the given one, or the current one).
    public func resolve(_ name: String, version: String? = nil) throws(WharfError) -> ServedModel {
        let (found, pending): (ServedModel?, (loading: Bool, failure: String?)?) = models.withLock { models in
            guard let versions = models[name] else { return (nil, nil) }
            return (versions.byVersion[version ?? versions.current ?? ""], versions.byVersion.isEmpty ? (versions.loading, versions.failure) : nil)
        }
        guard let found else {
            // A model of the catalog that has no version yet: not ready, rather than unknown.
            if let pending {
                if let failure = pending.failure {
                    throw WharfError(.unavailable, "model \"\(name)\" failed to load (\(failure)); loading is retried")
                }
                if pending.loading { throw WharfError(.unavailable, "model \"\(name)\" is still loading") }
            }
            if let version {
                throw WharfError(.notFound, "model \"\(name)\" has no version \"\(version)\" loaded")
            }
            throw WharfError(.notFound, "model \"\(name)\" is not loaded")
        }
        return found
    }

    /// Installs a loaded version. The newest version (by number, else by name) becomes current,
    /// unless `makeCurrent`: then this one does, whatever its number (a registry alias moved
    /// back to an older version is a rollback, not a stale load).
    public func install(_ model: ServedModel, keepVersions: Int = 2, makeCurrent: Bool = false) {
        // Versions dropped here lose their metric series (after the lock); a version replaced by
        // a reload of the same number keeps them: its successor shares the same series.
        let dropped: [ServedModel] = models.withLock { models in
            var dropped: [ServedModel] = []
            var versions = models[model.name] ?? Versions()
            versions.byVersion[model.version] = model
            versions.failure = nil
            versions.loading = false
            versions.installed.removeAll { $0 == model.version }
            versions.installed.append(model.version)
            versions.current = makeCurrent ? model.version : versions.byVersion.keys.sorted(by: Self.versionOrder).last
            // Beyond `keepVersions`, the least recently installed go (never the current one);
            // requests holding them finish.
            let current = versions.current
            while versions.installed.count > keepVersions, let old = versions.installed.first(where: { $0 != current }) {
                versions.installed.removeAll { $0 == old }
                if let gone = versions.byVersion.removeValue(forKey: old) { dropped.append(gone) }
            }
            models[model.name] = versions
            return dropped
        }
        for version in dropped { version.retireMetrics() }
    }

    public func recordFailure(name: String, reason: String) {
        models.withLock { models in
            var versions = models[name] ?? Versions()
            versions.failure = reason
            versions.loading = false
            models[name] = versions
        }
    }

    /// Whether `name` has an entry: loaded, loading, or failed.
    public func isKnown(_ name: String) -> Bool {
        models.withLock { $0[name] != nil }
    }

    /// `name` is about to be loaded: until it is (or fails), its requests get 503.
    public func expect(_ name: String) {
        models.withLock { models in
            var versions = models[name] ?? Versions()
            if versions.byVersion.isEmpty, versions.failure == nil { versions.loading = true }
            models[name] = versions
        }
    }

    /// Removes every version of `name`; returns false when it was not loaded.
    @discardableResult
    public func unload(_ name: String) -> Bool {
        let removed = models.withLock { $0.removeValue(forKey: name)?.byVersion.values.map { $0 } ?? [] }
        for version in removed { version.retireMetrics() }
        return !removed.isEmpty
    }

    public func versions(of name: String) -> [String] {
        models.withLock { ($0[name]?.byVersion.keys).map { $0.sorted(by: Self.versionOrder) } ?? [] }
    }

    /// Models with at least one version loaded.
    public var names: [String] { models.withLock { $0.filter { !$0.value.byVersion.isEmpty }.keys.sorted() } }

    public func index() -> [Entry] {
        models.withLock { models in
            models.keys.sorted().flatMap { name -> [Entry] in
                let versions = models[name]!
                if versions.byVersion.isEmpty {
                    if versions.loading { return [Entry(name: name, version: nil, state: "LOADING", reason: "")] }
                    return [Entry(name: name, version: nil, state: "UNAVAILABLE", reason: versions.failure ?? "not loaded")]
                }
                return versions.byVersion.keys.sorted(by: Self.versionOrder).map {
                    Entry(name: name, version: $0, state: "READY", reason: versions.failure.map { "newest load failed: \($0)" } ?? "")
                }
            }
        }
    }

    /// Numeric versions in numeric order, before any others in text order.
    static func versionOrder(_ a: String, _ b: String) -> Bool {
        switch (Int(a), Int(b)) {
        case let (x?, y?): x < y
        case (_?, nil): true
        case (nil, _?): false
        case (nil, nil): a < b
        }
    }
}
