import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import WharfClient
import WharfCore
import WharfPipelines

extension PipelineCommand {
    /// Triggers: new labeled events in a hub stream, and a schedule.
    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a pipeline whenever a hub stream has gained enough new events, and on a schedule.",
            discussion: """
                Every --poll, the hub stream's last offset is compared with the one seen at the last \
                triggered run (kept in the state directory; 0 before the first): --min-new-events new \
                events start a run (trigger "new-data"). With --every, a run also starts when that long \
                has passed since the last one (trigger "schedule"). --once checks once and exits (for \
                cron). A monitor signals drift with `wharf pipeline run FILE --trigger drift`.
                """
        )
        @Argument(help: "The pipeline file.") var file: String
        @OptionGroup var state: StateOptions
        @Option(help: "Registry token (WHARF_REGISTRY_TOKEN).") var token: String?
        @Option(help: "Gateway URL for deploy steps (WHARF_GATEWAY_URL).") var gateway: String?
        @Option(help: "Gateway API key with the deploy scope, for deploy steps (WHARF_API_KEY).") var gatewayKey: String?
        @Option(help: "The hub, for the new-data trigger.") var hub: String?
        @Option(help: "The stream whose new events trigger a run.") var stream: String?
        @Option(help: "New events that trigger a run.") var minNewEvents = 1000
        @Option(help: "Also run this often: 30s, 10m, 1h.") var every: String?
        @Option(help: "How often to check: 5s, 1m.") var poll = "5s"
        @Flag(help: "Check once, run if triggered, and exit.") var once = false

        struct Mark: Codable {
            var offset: Int64
            var lastRun: Date?
        }

        func run() async throws {
            try await reportingErrors {
                let definition = try PipelineDefinition.load(file: file)
                guard (hub == nil) == (stream == nil) else { throw WharfError(.invalidInput, "--hub and --stream go together") }
                guard hub != nil || every != nil else { throw WharfError(.invalidInput, "name a trigger: --hub with --stream, or --every") }
                guard minNewEvents >= 1 else { throw WharfError(.invalidInput, "--min-new-events must be at least 1") }
                // A schedule may be monthly or longer (it is only compared, never made a timer).
                let interval = try every.map { try parseSeconds($0, maxSeconds: 3_660 * 86_400) }
                let pollInterval = Duration.milliseconds(Int64(try parseSeconds(poll) * 1000))
                let runner = try Run.runner(file: file, state: state, token: token, gateway: gateway, gatewayKey: gatewayKey)
                let markFile = "\(state.stateDir)/triggers/\(definition.name).json"
                try FileManager.default.createDirectory(atPath: state.stateDir + "/triggers", withIntermediateDirectories: true)
                var mark = (try? JSONDecoder().decode(Mark.self, from: Data(contentsOf: URL(fileURLWithPath: markFile)))) ?? Mark(offset: 0, lastRun: nil)
                while true {
                    var reason: String?
                    var last = mark.offset
                    if let hub, let stream {
                        last = try await Self.lastOffset(hub: hub, stream: stream)
                        if last - mark.offset >= Int64(minNewEvents) { reason = "new-data: \(last - mark.offset) events in \(stream)" }
                    }
                    if reason == nil, let interval, Date().timeIntervalSince(mark.lastRun ?? .distantPast) >= interval {
                        reason = "schedule"
                    }
                    if let reason {
                        let outcome = try await runner.run(definition, trigger: reason)
                        mark = Mark(offset: last, lastRun: Date())
                        try JSONEncoder().encode(mark).write(to: URL(fileURLWithPath: markFile), options: .atomic)
                        var line = "\(outcome.id): \(outcome.outcome) (\(reason))"
                        if let failed = outcome.steps.first(where: { $0.outcome == "failed" }) {
                            line += " at step \(failed.name): \(failed.error ?? "see its log")"
                        } else {
                            line += ": " + outcome.steps.map { "\($0.name) \($0.outcome)" }.joined(separator: ", ")
                        }
                        writeStandardOutput(line + "\n")
                    }
                    if once { return }
                    try await Task.sleep(for: pollInterval)
                }
            }
        }

        static func lastOffset(hub: String, stream: String) async throws -> Int64 {
            struct Status: Decodable {
                struct Bounds: Decodable { var last: Int64 }
                var bounds: Bounds
            }
            let base = try ServiceURL.check(hub, "the hub URL")
            let response = try await RegistryClient.failFast.execute(HTTPClientRequest(url: "\(base)/v1/streams/\(stream)"), timeout: .seconds(30))
            let bytes = try await response.body.collect(upTo: 1 << 20)
            guard response.status == .ok else { throw WharfError(.unavailable, "the hub answered \(response.status.code) for stream \(stream)") }
            return try JSONDecoder().decode(Status.self, from: Data(bytes.readableBytesView)).bounds.last
        }
    }
}
