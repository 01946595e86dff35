import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import WharfCore
import WharfRegistry

struct RegistryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "Run the model registry: versions, lineage, validations, aliases, audit log, artifacts.",
        discussion: """
            The JSON API lives under /v1/ (OpenAPI document at /openapi.yaml). Records go to SQLite \
            in --data-dir unless --database postgres://… is given; artifacts always go to \
            --data-dir/artifacts. Writes need the bearer token (--token, or its SHA-256 with \
            --token-sha256; or WHARF_REGISTRY_TOKEN / WHARF_REGISTRY_TOKEN_SHA256): only its hash is kept.
            """
    )

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 8081

    @Option(help: "Directory of the SQLite database and the artifacts (WHARF_DATA_DIR).")
    var dataDir: String?

    @Option(help: "postgres://user:password@host:port/database: keep records in PostgreSQL (WHARF_DATABASE).")
    var database: String?

    @Option(help: "Bearer token that writes must present (WHARF_REGISTRY_TOKEN).")
    var token: String?

    @Option(help: "SHA-256 (hex) of the bearer token, instead of the token itself (WHARF_REGISTRY_TOKEN_SHA256).")
    var tokenSha256: String?

    @Flag(help: "Reads need the token too.")
    var protectReads = false

    @Option(help: "Largest model file accepted, in bytes.")
    var maxArtifactBytes = 1 << 30

    @Option(help: "An alias that needs a passing validation on the registered dataset. Repeatable.")
    var protectedAlias: [String] = ["production"]

    @Option(help: "Log format: text or json.")
    var logFormat: LogFormat = .text

    @Option(help: "Log level.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        try checkListenPort(port)
    }

    func run() async throws {
        bootstrapLogging(format: logFormat, level: logLevel)
        let logger = Logger(label: "wharf.registry")
        let environment = ProcessInfo.processInfo.environment
        do {
            // Flags before the environment (a token given on the command line is the one meant);
            // an empty variable is no value.
            func variable(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
            guard tokenSha256 == nil || token == nil else {
                throw WharfError(.invalidInput, "give --token or --token-sha256, not both")
            }
            let digest: String
            if let hash = tokenSha256 {
                digest = hash.lowercased()
            } else if let token, !token.isEmpty {
                digest = SHA256.hash(Array(token.utf8)).hex
            } else if let hash = variable("WHARF_REGISTRY_TOKEN_SHA256") {
                digest = hash.lowercased()
            } else if let token = variable("WHARF_REGISTRY_TOKEN") {
                digest = SHA256.hash(Array(token.utf8)).hex
            } else {
                throw WharfError(.invalidInput, "the registry needs a bearer token for writes: --token, --token-sha256, WHARF_REGISTRY_TOKEN or WHARF_REGISTRY_TOKEN_SHA256")
            }
            for alias in protectedAlias { try RegistryName.checkAlias(alias) }
            let configuration = RegistryConfiguration(
                host: host, port: port, dataDirectory: dataDir ?? environment["WHARF_DATA_DIR"] ?? ".wharf",
                databaseURL: database ?? environment["WHARF_DATABASE"], tokenSHA256: digest, protectReads: protectReads,
                maxArtifactBytes: maxArtifactBytes, protectedAliases: Set(protectedAlias))
            let server = try await RegistryServer.open(configuration, logger: logger)
            let application = try server.buildApplication(logger: logger) { channel in
                let address = channel.localAddress.map { "\($0)" } ?? "?"
                logger.info("wharf registry listening", metadata: ["address": "\(address)", "store": "\(configuration.databaseURL == nil ? "sqlite" : "postgres")"])
            }
            try await application.runService()
        } catch let error as WharfError {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
    }
}
