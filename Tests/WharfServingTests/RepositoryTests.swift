import Foundation
import Testing
import WharfCore
import WharfServing

/// `--model-repository DIR`: layout, settings files, and new versions picked up while serving.
@Suite("Model repository")
struct RepositoryTests {
    private func makeRepository() throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-repo-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: "\(root)/churn/1", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: ServingFixtures.model("xgb3_binary_logistic.json"), toPath: "\(root)/churn/1/model.json")
        try FileManager.default.createDirectory(atPath: "\(root)/prices/3", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: ServingFixtures.model("lgb_regression.txt"), toPath: "\(root)/prices/3/model.txt")
        try #"{"max_batch_rows": 8, "max_queued_rows": 16}"#.write(toFile: "\(root)/prices/settings.json", atomically: true, encoding: .utf8)
        return root
    }

    @Test func loadsEveryModelAtItsNewestVersion() async throws {
        let root = try makeRepository()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let server = ModelServer(configuration: ServingConfiguration(port: 0, catalog: .repository(root)), logger: ServingFixtures.logger)
        await server.manager.loadAll()
        #expect(server.store.names == ["churn", "prices"])
        #expect(try server.store.resolve("prices").version == "3")
        #expect(try server.store.resolve("churn").metadata.task == .binary)
    }

    @Test func aNewVersionDirectoryIsSwappedIn() async throws {
        let root = try makeRepository()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let server = ModelServer(configuration: ServingConfiguration(port: 0, catalog: .repository(root)), logger: ServingFixtures.logger)
        await server.manager.loadAll()
        let before = try server.store.resolve("churn")
        try FileManager.default.createDirectory(atPath: "\(root)/churn/2", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: ServingFixtures.model("xgb3_dart_binary.json"), toPath: "\(root)/churn/2/model.json")
        await server.manager.refresh()
        let after = try server.store.resolve("churn")
        #expect(after.version == "2")
        #expect(after.source.hasSuffix("churn/2/model.json"))
        // The old version still answers requests that name it, and requests that hold it.
        #expect(try server.store.resolve("churn", version: "1") === before)
        // Nothing changed: nothing is reloaded.
        await server.manager.refresh()
        #expect(try server.store.resolve("churn") === after)
    }

    /// A model unloaded through the API stays unloaded while the repository is watched, until
    /// a load asks for it again.
    @Test func anUnloadedModelIsNotReloadedByTheWatch() async throws {
        let root = try makeRepository()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let server = ModelServer(configuration: ServingConfiguration(port: 0, catalog: .repository(root)), logger: ServingFixtures.logger)
        await server.manager.loadAll()
        try server.manager.unload("churn")
        await server.manager.refresh()
        #expect(server.store.names == ["prices"])
        #expect(throws: WharfError.self) { try server.store.resolve("churn") }
        #expect(try await server.manager.load("churn", force: true) == "1")
        await server.manager.refresh()
        #expect(server.store.names == ["churn", "prices"])
    }

    /// A model of the catalog without a version yet answers 503 (not ready), not 404 (unknown):
    /// while it loads, and when its load failed.
    @Test func aModelNotYetLoadedIsUnavailableNotUnknown() async throws {
        let root = try makeRepository()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "{\"learner\": ".write(toFile: "\(root)/churn/1/model.json", atomically: true, encoding: .utf8)
        let server = ModelServer(configuration: ServingConfiguration(port: 0, catalog: .repository(root)), logger: ServingFixtures.logger)
        server.store.expect("churn")
        func failure(_ name: String) -> WharfError? {
            do {
                _ = try server.store.resolve(name)
                return nil
            } catch {
                return error
            }
        }
        #expect(failure("churn")?.code == .unavailable && failure("churn")?.message.contains("still loading") == true)
        #expect(server.store.index().first { $0.name == "churn" }?.state == "LOADING")
        await server.manager.loadAll()
        #expect(try server.store.resolve("prices").version == "3")
        #expect(failure("churn")?.code == .unavailable && failure("churn")?.message.contains("failed to load") == true,
                "\(failure("churn")?.message ?? "resolved")")
        #expect(server.store.index().first { $0.name == "churn" }?.state == "UNAVAILABLE")
        #expect(failure("other")?.code == .notFound)
    }

    @Test func aBrokenNewVersionLeavesTheOldOneAnswering() async throws {
        let root = try makeRepository()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let server = ModelServer(configuration: ServingConfiguration(port: 0, catalog: .repository(root)), logger: ServingFixtures.logger)
        await server.manager.loadAll()
        try FileManager.default.createDirectory(atPath: "\(root)/churn/2", withIntermediateDirectories: true)
        try "{\"learner\": ".write(toFile: "\(root)/churn/2/model.json", atomically: true, encoding: .utf8)
        await server.manager.refresh()
        #expect(try server.store.resolve("churn").version == "1")
        let entry = server.store.index().first { $0.name == "churn" }
        #expect(entry?.reason.contains("newest load failed") == true)
    }

    @Test func badSettingsAreReported() async throws {
        let root = try makeRepository()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try #"{"max_batch_rows": 0}"#.write(toFile: "\(root)/prices/settings.json", atomically: true, encoding: .utf8)
        let server = ModelServer(configuration: ServingConfiguration(port: 0, catalog: .repository(root)), logger: ServingFixtures.logger)
        await #expect(throws: WharfError.self) { try await server.manager.load("prices") }
        #expect(server.store.index().first { $0.name == "prices" }?.state == "UNAVAILABLE")
        // A misspelt key is refused, not a setting silently left at its default.
        try #"{"max_batch_rows": 8, "max_queue_delay": 5}"#.write(toFile: "\(root)/prices/settings.json", atomically: true, encoding: .utf8)
        do {
            _ = try await server.manager.load("prices", force: true)
            Issue.record("a settings file with max_queue_delay was accepted")
        } catch let error as WharfError {
            #expect(error.message.contains("unknown key max_queue_delay"), "\(error.message)")
        }
    }
}
