import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NIOCore
import WharfCore
import WharfFeatures

struct HubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hub",
        abstract: "Run the messaging hub: streams of feature events, checked, logged durably, replayed and consumed.",
        discussion: """
            The log is SQLite (WAL) in --data-dir/hub/, or NATS JetStream with --bus nats://host:4222. \
            --definitions FILE declares streams and feature views (YAML) at start. Writes need the bearer token (--token, or \
            WHARF_HUB_TOKEN); reads are open. API: PUT /v1/streams/{s}, POST /v1/streams/{s}/events \
            (JSON array or NDJSON), GET /v1/streams/{s}/events?from=N, POST \
            /v1/streams/{s}/consumers/{c}/fetch and /ack.
            """
    )

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0 picks a free one).") var port = 8082
    @Option(help: "Directory of the log.") var dataDir = ".wharf"
    @Option(help: "Bearer token that writes must present (WHARF_HUB_TOKEN).") var token: String?
    @Option(help: "Where the log lives: the embedded SQLite file (default) or NATS JetStream, nats://host:4222.")
    var bus: String?
    @Option(help: "A YAML (or .json) file of streams and feature views to declare at start.")
    var definitions: String?
    @Option(help: "Log format: text or json.") var logFormat: LogFormat = .text

    func validate() throws {
        try checkListenPort(port)
    }

    func run() async throws {
        bootstrapLogging(format: logFormat, level: .info)
        let logger = Logger(label: "wharf.hub")
        do {
            guard let token = token ?? ProcessInfo.processInfo.environment["WHARF_HUB_TOKEN"], !token.isEmpty else {
                throw WharfError(.invalidInput, "the hub needs a bearer token for writes: --token or WHARF_HUB_TOKEN")
            }
            let declared = try definitions.map { try HubServer.Definitions.load(file: $0) }
            let hub = try await HubServer.open(dataDirectory: dataDir, busURL: bus, tokenSHA256: SHA256.hash(Array(token.utf8)).hex)
            if let declared {
                try await hub.apply(declared)
                logger.info("declared from \(definitions ?? "")", metadata: ["streams": "\(declared.streams.count)", "views": "\(declared.views.count)"])
            }
            let application = try hub.buildApplication(host: host, port: port, logger: logger) { channel in
                logger.info("wharf hub listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
            }
            try await application.runService()
        } catch let error as WharfError {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
    }
}
