import Foundation
import Logging
import Synchronization
import WharfCore

/// Loads models from the catalog into the store: at start, on API request, and when the
/// repository gains a newer version. A model is loaded and warmed before it is installed, so
/// requests never wait on a load and never see a half-loaded model.
public final class ModelManager: Sendable {
    public let store: ModelStore
    public let catalog: ModelCatalog
    let defaults: BatchingSettings
    let logger: Logger
    /// The file's modification date and version each model was last loaded from.
    private let loaded = Mutex([String: (path: String, modified: Date?, version: String)]())
    /// Models being loaded (loads of one model are serialized, so two never race to install),
    /// and models unloaded through the API (the repository watch leaves them alone until a load
    /// asks). One lock for both, so an unload and a watch's load cannot cross.
    private let loads = Mutex((loading: Set<String>(), unloaded: Set<String>()))

    public init(store: ModelStore, catalog: ModelCatalog, defaults: BatchingSettings = BatchingSettings(), logger: Logger) {
        self.store = store
        self.catalog = catalog
        self.defaults = defaults
        self.logger = logger
    }

    /// Loads every model of the catalog; a model that fails is logged and reported by the
    /// repository index, and the others still load.
    public func loadAll() async {
        for name in catalog.modelNames { store.expect(name) }
        for name in catalog.modelNames {
            do {
                try await load(name)
            } catch {
                logger.error("model failed to load", metadata: ["model": "\(name)", "error": "\(error)"])
            }
        }
    }

    /// Loads the newest version of `name` unless it is already the one installed.
    /// Returns the version that now answers.
    @discardableResult
    public func load(_ name: String, force: Bool = false) async throws -> String {
        try loads.withLock { loads throws(WharfError) in
            guard !loads.loading.contains(name) else {
                throw WharfError(.unavailable, "model \"\(name)\" is already being loaded")
            }
            if force {
                loads.unloaded.remove(name)
            } else if loads.unloaded.contains(name) {
                throw WharfError(.unavailable, "model \"\(name)\" was unloaded; load it through the API")
            }
            loads.loading.insert(name)
        }
        defer { _ = loads.withLock { $0.loading.remove(name) } }
        do {
            let (diskVersion, path) = try await catalog.newest(name)
            let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
            let previous = loaded.withLock { $0[name] }
            if !force, let previous, previous.path == path, previous.modified == modified,
                (try? store.resolve(name, version: previous.version)) != nil
            {
                return previous.version
            }
            let version = diskVersion ?? previous.map { String((Int($0.version) ?? 0) + 1) } ?? "1"
            let settings = try catalog.settings(for: name, defaults: defaults)
            // Loading and warming is CPU work: keep it off the request path.
            let model = try await Task { () throws(WharfError) -> ServedModel in
                try ServedModel.load(name: name, version: version, path: path, settings: settings)
            }.value
            // A registry alias names the version to serve, even an older one (a rollback).
            let followsAlias = if case .registry = catalog { true } else { false }
            // An unload that came while a watch's load ran wins; a load asked for wins over one
            // that came before it.
            let installed = loads.withLock { loads in
                if force {
                    loads.unloaded.remove(name)
                } else if loads.unloaded.contains(name) {
                    return false
                }
                store.install(model, makeCurrent: followsAlias)
                loaded.withLock { $0[name] = (path, modified, version) }
                return true
            }
            guard installed else {
                model.retireMetrics()
                throw WharfError(.unavailable, "model \"\(name)\" was unloaded while it loaded")
            }
            logger.info(
                "model loaded",
                metadata: ["model": "\(name)", "version": "\(version)", "path": "\(path)", "seconds": "\(model.loadSeconds)"])
            return version
        } catch let error as WharfError {
            // An unloaded model is not a failed one (its index entry is gone, and stays gone);
            // nor is a name this server never had (a 404, not an entry kept for good).
            if !loads.withLock({ $0.unloaded.contains(name) }), error.code != .notFound || store.isKnown(name) {
                store.recordFailure(name: name, reason: error.message)
            }
            throw error
        }
    }

    /// Removes every version of `name`. A repository watch's load running meanwhile does not
    /// install it again (it checks, under the same lock, before installing).
    public func unload(_ name: String) throws(WharfError) {
        try loads.withLock { loads throws(WharfError) in
            guard store.unload(name) else { throw WharfError(.notFound, "model \"\(name)\" is not loaded") }
            loads.unloaded.insert(name)
            _ = loaded.withLock { $0.removeValue(forKey: name) }
        }
        logger.info("model unloaded", metadata: ["model": "\(name)"])
    }

    /// Models unloaded through the API and not loaded again since.
    public var unloadedNames: Set<String> { loads.withLock { $0.unloaded } }

    /// One pass of the repository watch: loads any model whose newest version (or file) changed.
    public func refresh() async {
        let leftAlone = unloadedNames
        for name in catalog.modelNames where !leftAlone.contains(name) {
            do {
                try await load(name)
            } catch let error as WharfError where error.code == .unavailable {
                continue
            } catch {
                logger.warning("model reload failed; the loaded version keeps answering", metadata: ["model": "\(name)", "error": "\(error)"])
            }
        }
    }
}
