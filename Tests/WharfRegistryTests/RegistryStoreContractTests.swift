import Foundation
import Logging
import Testing
import WharfCore
import WharfRegistry

/// The registry's store contract, run against every implementation: in memory, SQLite and
/// PostgreSQL (at WHARF_TEST_POSTGRES_URL, which scripts/test.sh starts and sets).
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory, sqlite, postgres

    var testDescription: String { rawValue }

    static var postgresURL: String? { ProcessInfo.processInfo.environment["WHARF_TEST_POSTGRES_URL"] }

    /// PostgreSQL only when a server is there; scripts/test.sh always provides one, and a
    /// missing one fails `postgresIsThereWhenRequired` rather than passing silently.
    static var available: [Backend] { postgresURL == nil ? [.memory, .sqlite] : allCases }

    /// A fresh store; the cleanup closes it. PostgreSQL tests share one database, so each test
    /// uses model names of its own (`uniqueName`).
    func makeStore() async throws -> (store: any RegistryStore, cleanup: @Sendable () -> Void) {
        switch self {
        case .memory:
            return (InMemoryRegistryStore(), {})
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-registry-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let store = try SQLiteRegistryStore(path: directory.appendingPathComponent("registry.sqlite").path)
            return (store, { try? FileManager.default.removeItem(at: directory) })
        case .postgres:
            let store = try PostgresRegistryStore(url: Self.postgresURL!, logger: Logger(label: "test.postgres"))
            try await store.migrate()
            return (store, { store.shutdown() })
        }
    }
}

func uniqueName(_ prefix: String) -> String {
    "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
}

func draft(_ tag: String = "a", sha256: String = String(repeating: "ab", count: 32)) -> VersionDraft {
    VersionDraft(
        format: "xgboost_json", task: "binary",
        signature: ModelSignature(features: ["age", "income"], featureTypes: ["numeric", "categorical"], outputs: ["probability"]),
        artifact: ArtifactReference(sha256: sha256, size: 1234),
        params: ["max_depth": "4", "eta": "0.1"], tags: ["team": tag],
        lineage: Lineage(trainingData: DatasetFingerprint(sha256: String(repeating: "cd", count: 32), rows: 1000, columns: 9),
                         codeRevision: "abc123", parentVersion: nil))
}

func record(passed: Bool, sha256: String = String(repeating: "ef", count: 32)) -> ValidationRecord {
    ValidationRecord(
        data: DatasetFingerprint(sha256: sha256, rows: 400, columns: 9), metrics: ["roc_auc": 0.91, "log_loss": 0.37],
        gates: [.init(gate: "roc_auc>=0.9", value: 0.91, threshold: 0.9, passed: passed, detail: "roc_auc = 0.91 >= 0.9")],
        passed: passed, against: nil, at: Date(timeIntervalSince1970: 1_800_000_000), by: "ci")
}

@Suite("Registry store contract")
struct RegistryStoreContractTests {
    @Test func postgresIsThereWhenRequired() {
        if ProcessInfo.processInfo.environment["WHARF_REQUIRE_POSTGRES"] == "1" {
            #expect(Backend.postgresURL != nil, "WHARF_REQUIRE_POSTGRES=1 but WHARF_TEST_POSTGRES_URL is not set")
        }
    }

    @Test(arguments: Backend.available)
    func versionsAreNumberedAndReadBack(_ backend: Backend) async throws {
        let (store, cleanup) = try await backend.makeStore()
        defer { cleanup() }
        let name = uniqueName("churn")
        let first = try await store.createVersion(name: name, draft: draft("a"), actor: "alice")
        let second = try await store.createVersion(name: name, draft: draft("b"), actor: "bob")
        #expect(first.version == 1 && second.version == 2)
        let read = try #require(try await store.version(name: name, version: 2))
        #expect(read.draft == draft("b"))
        #expect(read.createdBy == "bob")
        #expect(read.state == .registered)
        #expect(abs(read.createdAt.timeIntervalSince(second.createdAt)) < 0.001)
        #expect(try await store.versions(name: name).map(\.version) == [1, 2])
        #expect(try await store.version(name: name, version: 3) == nil)
        #expect(try await store.version(name: uniqueName("nobody"), version: 1) == nil)
        let model = try #require(try await store.model(name: name))
        #expect(model.latestVersion == 2)
        #expect(try await store.models().contains { $0.name == name })
        // Another name starts again at 1.
        #expect(try await store.createVersion(name: uniqueName("other"), draft: draft(), actor: "alice").version == 1)
    }

    /// 20 registrations of one name at once: 20 distinct, consecutive versions, none lost.
    @Test(arguments: Backend.available)
    func concurrentRegistrationsGetConsecutiveVersions(_ backend: Backend) async throws {
        let (store, cleanup) = try await backend.makeStore()
        defer { cleanup() }
        let name = uniqueName("race")
        let numbers = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<20 {
                group.addTask { try await store.createVersion(name: name, draft: draft("t\(index)"), actor: "worker-\(index)").version }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(numbers.sorted() == Array(1...20))
        let stored = try await store.versions(name: name)
        #expect(stored.map(\.version) == Array(1...20))
        #expect(Set(stored.map { $0.tags["team"]! }) == Set((0..<20).map { "t\($0)" }))
    }

    @Test(arguments: Backend.available)
    func aliasesMoveAndEveryMoveIsAudited(_ backend: Backend) async throws {
        let (store, cleanup) = try await backend.makeStore()
        defer { cleanup() }
        let name = uniqueName("fraud")
        for tag in ["a", "b", "c"] { _ = try await store.createVersion(name: name, draft: draft(tag), actor: "ci") }
        let set = try await store.setAlias(name: name, alias: "production", version: 1, actor: "alice", reason: "first", forced: false)
        #expect(set.fromVersion == nil && set.toVersion == 1 && set.action == "alias.set")
        let moved = try await store.setAlias(name: name, alias: "production", version: 3, actor: "bob", reason: "hotfix", forced: true)
        #expect(moved.fromVersion == 1 && moved.toVersion == 3 && moved.forced)
        _ = try await store.setAlias(name: name, alias: "staging", version: 2, actor: "alice", reason: nil, forced: false)
        #expect(try await store.alias(name: name, alias: "production")?.version == 3)
        #expect(try await store.aliases(name: name).map(\.alias) == ["production", "staging"])
        #expect(try await store.model(name: name)?.aliases == ["production": 3, "staging": 2])

        await #expect(throws: WharfError.self) { try await store.setAlias(name: name, alias: "production", version: 9, actor: "x", reason: nil, forced: false) }
        // A version an alias points at cannot be archived; an archived one cannot be aliased.
        await #expect(throws: WharfError.self) { try await store.archive(name: name, version: 3, actor: "x", reason: nil) }
        let archived = try await store.archive(name: name, version: 1, actor: "carol", reason: "superseded")
        #expect(archived.state == .archived)
        do {
            _ = try await store.setAlias(name: name, alias: "canary", version: 1, actor: "x", reason: nil, forced: false)
            Issue.record("aliased an archived version")
        } catch let error as WharfError {
            #expect(error.code == .conflict)
        }
        let deleted = try await store.deleteAlias(name: name, alias: "staging", actor: "alice", reason: "done")
        #expect(deleted.fromVersion == 2)
        await #expect(throws: WharfError.self) { try await store.deleteAlias(name: name, alias: "staging", actor: "alice", reason: nil) }

        let log = try await store.audit(name: name)
        #expect(log.map(\.action) == ["alias.set", "alias.set", "alias.set", "version.archive", "alias.delete"])
        #expect(log.map(\.actor) == ["alice", "bob", "alice", "carol", "alice"])
        #expect(log[1].reason == "hotfix" && log[1].forced && log[1].fromVersion == 1)
        #expect(log.map(\.id) == log.map(\.id).sorted())
    }

    @Test(arguments: Backend.available)
    func validationsAreKeptAndAPassingOneValidates(_ backend: Backend) async throws {
        let (store, cleanup) = try await backend.makeStore()
        defer { cleanup() }
        let name = uniqueName("credit")
        _ = try await store.createVersion(name: name, draft: draft(), actor: "ci")
        let failed = try await store.addValidation(name: name, version: 1, record: record(passed: false))
        #expect(failed.state == .registered && failed.validations.count == 1)
        let passed = try await store.addValidation(name: name, version: 1, record: record(passed: true))
        #expect(passed.state == .validated)
        #expect(passed.validations == [record(passed: false), record(passed: true)])
        await #expect(throws: WharfError.self) { try await store.addValidation(name: name, version: 2, record: record(passed: true)) }

        let data = DatasetFingerprint(sha256: String(repeating: "ef", count: 32), rows: 400, columns: 9)
        let entry = try await store.setValidationData(name: name, data: data, actor: "alice")
        #expect(entry.action == "validation_data.set")
        #expect(try await store.model(name: name)?.validationData == data)
        // A model may get its validation dataset before its first version.
        let early = uniqueName("early")
        _ = try await store.setValidationData(name: early, data: data, actor: "alice")
        #expect(try await store.model(name: early)?.latestVersion == nil)
        #expect(try await store.createVersion(name: early, draft: draft(), actor: "ci").version == 1)
    }

    @Test(arguments: Backend.available)
    func pipelineRunsAreSavedReplacedAndListedNewestLast(_ backend: Backend) async throws {
        let (store, cleanup) = try await backend.makeStore()
        defer { cleanup() }
        let pipeline = uniqueName("churn")
        let other = uniqueName("fraud")
        func run(_ id: String, _ pipeline: String, at second: Double, outcome: String = "running") -> PipelineRun {
            PipelineRun(id: id, pipeline: pipeline, startedAt: Date(timeIntervalSince1970: 1_800_000_000 + second), outcome: outcome,
                        trigger: "new-data: 1200 events in labels", steps: [])
        }
        let ids = (0..<4).map { "\(pipeline)-run-\($0)" }
        // Saved out of order; listed by start.
        for (index, second) in [(2, 20.0), (0, 0.0), (3, 30.0), (1, 10.0)] { try await store.saveRun(run(ids[index], pipeline, at: second)) }
        try await store.saveRun(run("\(other)-run", other, at: 15))

        // A run is saved as it progresses: the same id replaces the record.
        var finished = run(ids[1], pipeline, at: 10, outcome: "failed")
        finished.finishedAt = Date(timeIntervalSince1970: 1_800_000_042)
        finished.steps = [
            .init(name: "train", outcome: "succeeded", attempts: 2, seconds: 1.5,
                  outputs: ["model": .init(path: "/state/cache/k/model.json", sha256: String(repeating: "ab", count: 32))],
                  cacheKey: "k", log: "/state/runs/x/train.log", logTail: "boosted 40 rounds\n"),
            .init(name: "validate", outcome: "failed", attempts: 1, seconds: 0.2, outputs: [:], error: "a gate does not hold: roc_auc",
                  metrics: ["roc_auc": 0.71]),
            .init(name: "promote", outcome: "skipped", attempts: 0, seconds: 0, outputs: [:]),
        ]
        try await store.saveRun(finished)

        #expect(try await store.run(id: ids[1]) == finished)
        #expect(try await store.run(id: "\(pipeline)-missing") == nil)
        #expect(try await store.runs(pipeline: pipeline, limit: 100).map(\.id) == ids)
        #expect(try await store.runs(pipeline: pipeline, limit: 2).map(\.id) == Array(ids.suffix(2)))
        #expect(try await store.runs(pipeline: other, limit: 100).map(\.id) == ["\(other)-run"])
        let everything = try await store.runs(pipeline: nil, limit: 1000).map(\.id)
        #expect(everything.filter { $0.hasPrefix(pipeline) || $0.hasPrefix(other) } == [ids[0], ids[1], "\(other)-run", ids[2], ids[3]])
    }
}
