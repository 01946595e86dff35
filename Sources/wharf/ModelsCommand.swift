import ArgumentParser
import Foundation
import WharfClient
import WharfCore
import WharfRuntime

/// Where the registry is and who is speaking: shared by every command that talks to it.
struct RegistryOptions: ParsableArguments {
    @Option(help: "Registry URL (WHARF_REGISTRY_URL; default http://127.0.0.1:8081).")
    var registry: String?

    @Option(help: "Bearer token for changes (WHARF_REGISTRY_TOKEN).")
    var token: String?

    @Option(help: "Who is making the change, for the audit log (WHARF_ACTOR; default $USER).")
    var actor: String?

    var client: RegistryClient {
        let environment = ProcessInfo.processInfo.environment
        return RegistryClient(
            baseURL: registry ?? environment["WHARF_REGISTRY_URL"] ?? "http://127.0.0.1:8081",
            token: token ?? environment["WHARF_REGISTRY_TOKEN"],
            actor: actor ?? environment["WHARF_ACTOR"] ?? environment["USER"])
    }
}

/// Runs an async command body, turning a ``WharfError`` into a message and exit status 2.
func reportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as WharfError {
        FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
        throw ExitCode(2)
    }
}

func parseReference(_ text: String) throws(WharfError) -> ModelReference {
    guard let reference = try ModelReference(parsing: text) else {
        throw WharfError(.invalidInput, "\"\(text)\" is not NAME@VERSION or NAME@ALIAS")
    }
    return reference
}

func parsePairs(_ pairs: [String], option: String) throws(WharfError) -> [String: String] {
    var result: [String: String] = [:]
    for pair in pairs {
        guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
            throw WharfError(.invalidInput, "\(option) \(pair): expected KEY=VALUE")
        }
        result[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
    }
    return result
}

struct ModelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "Work with the model registry: register, list, show, promote, alias, archive, download.",
        subcommands: [Register.self, List.self, Show.self, Promote.self, Alias.self, Archive.self, Download.self]
    )

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a model file and register it as the next version of NAME.",
            discussion: "Format, task and signature are read from the file itself; the file is checked before anything is uploaded."
        )

        @OptionGroup var options: RegistryOptions
        @Argument(help: "The model's name.") var name: String
        @Option(help: "The model file.") var file: String
        @Option(help: "A training parameter, KEY=VALUE. Repeatable.") var param: [String] = []
        @Option(help: "A tag, KEY=VALUE. Repeatable.") var tag: [String] = []
        @Option(help: "The training data CSV, fingerprinted into the lineage.") var trainingData: String?
        @Option(help: "The code revision that trained it (a git commit, say).") var codeRevision: String?
        @Option(help: "The version this one was derived from.") var parent: Int?
        @Option(help: "Register this CSV as NAME's validation dataset (production needs a passing validation on it).") var validationData: String?
        @Flag(help: "Print the version as JSON.") var json = false

        func run() async throws {
            try await reportingErrors {
                try RegistryName.check(name, kind: "model")
                let model = try loadModel(file)
                let meta = model.metadata
                let features = meta.featureNames ?? (0..<meta.featureCount).map { "f\($0)" }
                let signature = ModelSignature(
                    features: features,
                    featureTypes: (0..<meta.featureCount).map { meta.categoricalFeatures.contains($0) ? "categorical" : "numeric" },
                    outputs: meta.output.columns)
                var lineage = Lineage(codeRevision: codeRevision, parentVersion: parent)
                if let trainingData {
                    lineage.trainingData = DatasetFingerprint.of(csv: try readFile(trainingData))
                }
                let params = try parsePairs(param, option: "--param")
                let tags = try parsePairs(tag, option: "--tag")
                let client = options.client
                if let validationData {
                    _ = try await client.setValidationData(name, DatasetFingerprint.of(csv: try readFile(validationData)))
                }
                let version = try await client.register(name, file: file) { artifact in
                    VersionDraft(format: meta.format.rawValue, task: meta.task.rawValue, signature: signature, artifact: artifact,
                                 params: params, tags: tags, lineage: lineage)
                }
                writeStandardOutput(json ? try encodeJSON(version) : "registered \(version.name)@\(version.version) (sha256 \(version.artifact.sha256.prefix(12))…, \(version.artifact.size) bytes)\n")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the registered models.")
        @OptionGroup var options: RegistryOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await reportingErrors {
                let models = try await options.client.models()
                if json { return writeStandardOutput(try encodeJSON(models)) }
                var text = "NAME\tLATEST\tALIASES\n"
                for model in models {
                    let aliases = model.aliases.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
                    text += "\(model.name)\t\(model.latestVersion.map(String.init) ?? "-")\t\(aliases.isEmpty ? "-" : aliases)\n"
                }
                writeStandardOutput(text)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a model (NAME), or one version (NAME@VERSION, NAME@ALIAS), as JSON.")
        @OptionGroup var options: RegistryOptions
        @Argument(help: "NAME, NAME@VERSION or NAME@ALIAS.") var model: String
        @Flag(help: "Also print the model's audit log.") var audit = false

        func run() async throws {
            try await reportingErrors {
                let client = options.client
                if let reference = try ModelReference(parsing: model) {
                    writeStandardOutput(try encodeJSON(try await client.resolve(reference)))
                } else {
                    try RegistryName.check(model, kind: "model")
                    let detail = try await client.model(model)
                    struct Detail: Encodable {
                        var model: RegisteredModel
                        var versions: [ModelVersion]
                        var audit: [AuditEntry]?
                    }
                    writeStandardOutput(try encodeJSON(Detail(model: detail.model, versions: detail.versions, audit: audit ? try await client.audit(model) : nil)))
                }
            }
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Point an alias (production by default) at NAME@VERSION.",
            discussion: "The registry refuses a protected alias for a version without a passing validation on the model's validation dataset, unless --force with a --reason (kept in the audit log)."
        )
        @OptionGroup var options: RegistryOptions
        @Argument(help: "NAME@VERSION.") var model: String
        @Option(help: "The alias to move.") var alias = "production"
        @Flag(help: "Move it without a passing validation (needs --reason).") var force = false
        @Option(help: "Why, for the audit log.") var reason: String?

        func run() async throws {
            try await reportingErrors {
                try await moveAlias(options: options, model: model, alias: alias, force: force, reason: reason)
            }
        }
    }

    struct Alias: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Point ALIAS at NAME@VERSION, or remove it with --delete.")
        @OptionGroup var options: RegistryOptions
        @Argument(help: "NAME@VERSION (or NAME with --delete).") var model: String
        @Argument(help: "The alias.") var alias: String
        @Flag(help: "Remove the alias.") var delete = false
        @Option(help: "Why, for the audit log.") var reason: String?

        func run() async throws {
            try await reportingErrors {
                if delete {
                    let name = model.split(separator: "@").first.map(String.init) ?? model
                    let entry = try await options.client.deleteAlias(name, alias, reason: reason)
                    writeStandardOutput("removed \(name)@\(alias) (was version \(entry.fromVersion.map(String.init) ?? "?"))\n")
                } else {
                    try await moveAlias(options: options, model: model, alias: alias, force: false, reason: reason)
                }
            }
        }
    }

    struct Archive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Archive NAME@VERSION (kept, but no alias may point at it).")
        @OptionGroup var options: RegistryOptions
        @Argument(help: "NAME@VERSION.") var model: String
        @Option(help: "Why, for the audit log.") var reason: String?

        func run() async throws {
            try await reportingErrors {
                let reference = try parseReference(model)
                let version = try await options.client.resolve(reference)
                let archived = try await options.client.archive(version.name, version.version, reason: reason)
                writeStandardOutput("archived \(archived.name)@\(archived.version)\n")
            }
        }
    }

    struct Download: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Download a version's model file, checked against its sha256.")
        @OptionGroup var options: RegistryOptions
        @Argument(help: "NAME@VERSION or NAME@ALIAS.") var model: String
        @Option(help: "Where to write the file.") var output: String

        func run() async throws {
            try await reportingErrors {
                let client = options.client
                let version = try await client.resolve(try parseReference(model))
                let bytes = try await client.downloadArtifact(of: version)
                try writeFileAtomically(output, bytes)
                writeStandardOutput("\(version.name)@\(version.version) → \(output) (\(bytes.count) bytes, sha256 \(version.artifact.sha256.prefix(12))…)\n")
            }
        }
    }
}

private func moveAlias(options: RegistryOptions, model: String, alias: String, force: Bool, reason: String?) async throws {
    let reference = try parseReference(model)
    guard case .version(let number) = reference.selector else {
        throw WharfError(.invalidInput, "\(model): name a version (NAME@VERSION), not an alias")
    }
    let entry = try await options.client.setAlias(reference.name, alias, version: number, reason: reason, force: force)
    let from = entry.fromVersion.map { "version \($0)" } ?? "nothing"
    writeStandardOutput("\(reference.name)@\(alias): \(from) → version \(number)\(entry.forced ? " (forced)" : "")\n")
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
func writeFileAtomically(_ path: String, _ bytes: [UInt8]) throws(WharfError) {
    let temporary = path + ".partial-\(getpid())"
    guard FileManager.default.createFile(atPath: temporary, contents: Data(bytes)) else { throw WharfError(.io, "cannot write \(temporary)") }
    guard rename(temporary, path) == 0 else {
        unlink(temporary)
        throw WharfError(.io, "cannot move the file into place at \(path)")
    }
}
