import Foundation
import WharfCore

/// Where a server finds its models.
///
/// - `files`: `wharf serve --model NAME=FILE …`. Each file is version 1; loading it again
///   through the API (after the file changed) installs it as the next version.
/// - `repository`: `wharf serve --model-repository DIR`, laid out `DIR/<name>/<version>/<file>`
///   (one model file per version directory; versions are whole numbers, the highest answers),
///   with optional `DIR/<name>/settings.json` holding ``BatchingSettings`` keys.
public enum ModelCatalog: Sendable {
    case files([String: String])
    case repository(String)

    /// Settings files are looked for under this name in a model's directory.
    public static let settingsFileName = "settings.json"

    public var modelNames: [String] {
        switch self {
        case .files(let files): return files.keys.sorted()
        case .repository(let root):
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
            return entries.filter { !$0.hasPrefix(".") && Self.isDirectory("\(root)/\($0)") }.sorted()
        }
    }

    /// The newest version on disk and its model file.
    func newest(_ name: String) throws(WharfError) -> (version: String?, path: String) {
        switch self {
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
            return try JSONDecoder().decode(BatchingSettings.self, from: data).validated()
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
