#if canImport(Glibc)
import Glibc
#endif
import Foundation
import WharfClient
import WharfCore

/// Where pipeline runs are recorded and read back.
public protocol RunHistory: Sendable {
    /// Records the run, replacing the earlier record with its id.
    func save(_ run: PipelineRun) async throws
    /// The newest `limit` runs (of `pipeline`, or of all), oldest first.
    func runs(pipeline: String?, limit: Int) async throws -> [PipelineRun]
    func run(id: String) async throws -> PipelineRun?
}

/// Runs in the registry's database, next to the versions they registered: what the platform
/// uses (`wharf pipeline … --registry`, `wharf up`).
public struct RegistryRunHistory: RunHistory {
    public let client: RegistryClient

    public init(client: RegistryClient) {
        self.client = client
    }

    public func save(_ run: PipelineRun) async throws {
        try await client.saveRun(run.validated())
    }

    public func runs(pipeline: String?, limit: Int) async throws -> [PipelineRun] {
        try await client.runs(pipeline: pipeline, limit: limit)
    }

    public func run(id: String) async throws -> PipelineRun? {
        do {
            return try await client.run(id)
        } catch let error as WharfError where error.code == .notFound {
            return nil
        }
    }
}

/// Runs as JSON files in `<state>/runs/`: for pipelines run without a registry.
public struct DirectoryRunHistory: RunHistory {
    public let stateDirectory: String

    public init(stateDirectory: String) {
        self.stateDirectory = stateDirectory
    }

    public func save(_ run: PipelineRun) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .millisecondsSince1970
        let directory = "\(stateDirectory)/runs"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let file = "\(directory)/\(run.id).json"
        let temporary = file + ".tmp"
        try encoder.encode(run.validated()).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, file) == 0 else { throw WharfError(.io, "cannot save \(file)") }
    }

    public func runs(pipeline: String?, limit: Int) throws -> [PipelineRun] {
        let directory = "\(stateDirectory)/runs"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        let all = names.filter { $0.hasSuffix(".json") }.compactMap { name in
            try? decoder.decode(PipelineRun.self, from: Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(name)")))
        }
        let matching = all.filter { pipeline == nil || $0.pipeline == pipeline }.sorted { ($0.startedAt, $0.id) < ($1.startedAt, $1.id) }
        return Array(matching.suffix(max(0, limit)))
    }

    public func run(id: String) throws -> PipelineRun? {
        try RegistryName.check(id, kind: "run")
        return try runs(pipeline: nil, limit: .max).first { $0.id == id }
    }
}
