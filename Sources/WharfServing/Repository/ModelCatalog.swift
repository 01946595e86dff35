import Foundation
import WharfClient
import WharfCore

/// Where a server finds its models.
///
/// - `files`: `wharf serve --model NAME=FILE …`. Each file is version 1; loading it again
///   through the API (after the file changed) installs it as the next version.
/// - `repository`: `wharf serve --model-repository DIR`, laid out `DIR/<name>/<version>/<file>`
///   (one model file per version directory; versions are whole numbers, the highest answers),
///   with optional `DIR/<name>/settings.json` holding ``BatchingSettings`` keys.
/// - `registry`: `wharf serve --registry URL --model NAME@ALIAS …`. Each model is the version
///   its alias (or fixed version) names in the registry, downloaded into a cache directory and
///   checked against its sha256; the watch follows alias moves.
public enum ModelCatalog: Sendable {
    case files([String: String])
    case repository(String)
    case registry(RegistrySource)

    /// Settings files are looked for under this name in a model's directory.
    public static let settingsFileName = "settings.json"

    public var modelNames: [String] {
        switch self {
        case .files(let files): return files.keys.sorted()
        case .registry(let source): return source.references.map(\.name).sorted()
        case .repository(let root):
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
            return entries.filter { !$0.hasPrefix(".") && Self.isDirectory("\(root)/\($0)") }.sorted()
        }
    }

    /// The newest version on disk (or the one the registry's alias names) and its model file.
    func newest(_ name: String) async throws(WharfError) -> (version: String?, path: String) {
        switch self {
        case .registry(let source):
            return try await source.fetch(name)
        case .files(let files):
            guard let path = files[name] else { throw WharfError(.notFound, "no model named \"\(name)\" was given to this server") }
            return (nil, path)
        case .repository(let root):
            let directory = "\(root)/\(name)"
            guard Self.isDirectory(directory) else { throw WharfError(.notFound, "the model repository has no model \"\(name)\"") }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            let versions = entries.filter { Int($0) != nil && Self.isDirectory("\(directory)/\($0)") }.sorted { Int($0)! < Int($1)! }
            guard let version = versions.last else {
                throw WharfError(.notFound, "model \"\(name)\" has no version directory (expected \(directory)/<number>/<model file>)")
            }
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: "\(directory)/\(version)")) ?? [])
                .filter { !$0.hasPrefix(".") && !Self.isDirectory("\(directory)/\(version)/\($0)") }
            guard files.count == 1 else {
                throw WharfError(.invalidInput, "\(directory)/\(version) must hold exactly one model file, found \(files.count)")
            }
            return (version, "\(directory)/\(version)/\(files[0])")
        }
    }

    func settings(for name: String, defaults: BatchingSettings) throws(WharfError) -> BatchingSettings {
        guard case .repository(let root) = self else { return defaults }
        let path = "\(root)/\(name)/\(Self.settingsFileName)"
        guard let data = FileManager.default.contents(atPath: path) else { return defaults }
        do {
            let decoder = JSONDecoder()
            decoder.userInfo[.refusesUnknownKeys] = true
            return try decoder.decode(BatchingSettings.self, from: data).validated()
        } catch let error as DecodingError {
            throw WharfError(.invalidInput, "\(path) is not a valid settings file: \(JSONErrors.describe(error, in: data))")
        } catch let error as WharfError {
            throw WharfError(.invalidInput, "\(path): \(error.message)")
        } catch {
            throw WharfError(.invalidInput, "\(path) is not a valid settings file: \(error)")
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}

/// Models served from a registry: which references, and where downloads are kept.
public struct RegistrySource: Sendable {
    public let client: RegistryClient
    public let references: [ModelReference]
    /// Downloaded model files, named by sha256 (so a file is complete or absent).
    public let cacheDirectory: String

    public init(client: RegistryClient, references: [ModelReference], cacheDirectory: String) {
        self.client = client
        self.references = references
        self.cacheDirectory = cacheDirectory
    }

    /// Resolves `name`'s reference now and returns the version and its local file,
    /// downloading (and verifying) it unless the cache has it.
    func fetch(_ name: String) async throws(WharfError) -> (version: String?, path: String) {
        guard let reference = references.first(where: { $0.name == name }) else {
            throw WharfError(.notFound, "no model named \"\(name)\" was given to this server")
        }
        do {
            let version = try await client.resolve(reference)
            let path = "\(cacheDirectory)/\(version.artifact.sha256)"
            if !FileManager.default.fileExists(atPath: path) {
                let bytes = try await client.downloadArtifact(of: version)
                try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
                let temporary = path + ".partial-\(UUID().uuidString)"
                guard FileManager.default.createFile(atPath: temporary, contents: Data(bytes)) else {
                    throw WharfError(.io, "cannot write the model cache \(cacheDirectory)")
                }
                try FileManager.default.moveItem(atPath: temporary, toPath: path)
            }
            return (String(version.version), path)
        } catch let error as WharfError {
            throw error
        } catch {
            throw WharfError(.io, "cannot fetch \(reference) from the registry: \(error)")
        }
    }
}
