import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NIOCore
import WharfCore
import WharfPipelines

extension PipelineCommand {
    /// The pipelines' API: the runs' history and a hook to start a run.
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve pipelines over HTTP: their runs, and POST /v1/pipelines/{p}/runs to start one (the drift hook).",
            discussion: """
                API: GET /v1/pipelines, POST /v1/pipelines/{p}/runs {"trigger": "drift"} (bearer \
                token; 202 with the run's id, 409 while it runs), GET /v1/runs[?pipeline=P], GET \
                /v1/runs/{id}.
                """
        )
        @Argument(help: "The pipeline files to serve.") var files: [String]
        @OptionGroup var state: StateOptions
        @Option(help: "Address to listen on.") var host = "127.0.0.1"
        @Option(help: "Port to listen on.") var port = 8083
        @Option(help: "Bearer token that starting a run needs (WHARF_PIPELINES_TOKEN).") var token: String?
        @Option(help: "Registry token (WHARF_REGISTRY_TOKEN).") var registryToken: String?
        @Option(help: "Gateway URL for deploy steps (WHARF_GATEWAY_URL).") var gateway: String?
        @Option(help: "Gateway API key with the deploy scope, for deploy steps (WHARF_API_KEY).") var gatewayKey: String?
        @Option(help: "Log format: text or json.") var logFormat: LogFormat = .text

        func validate() throws {
            try checkListenPort(port)
        }

        func run() async throws {
            bootstrapLogging(format: logFormat, level: .info)
            let logger = Logger(label: "wharf.pipelines")
            try await reportingErrors {
                guard let token = token ?? ProcessInfo.processInfo.environment["WHARF_PIPELINES_TOKEN"], !token.isEmpty else {
                    throw WharfError(.invalidInput, "starting runs needs a bearer token: --token or WHARF_PIPELINES_TOKEN")
                }
                guard !files.isEmpty else { throw WharfError(.invalidInput, "name at least one pipeline file") }
                let served = try files.map { file in
                    (try PipelineDefinition.load(file: file),
                     try Run.runner(file: file, state: state, token: registryToken, gateway: gateway, gatewayKey: gatewayKey))
                }
                let server = try PipelineServer(pipelines: served, history: state.history(token: registryToken),
                                                tokenSHA256: SHA256.hash(Array(token.utf8)).hex)
                let application = try server.buildApplication(host: host, port: port, logger: logger) { channel in
                    logger.info("wharf pipelines listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
                }
                try await application.runService()
            }
        }
    }
}
