import Dispatch
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization
import WharfCore
import WharfHTTP

/// The pipelines' API (`wharf pipeline serve`): what is declared, what ran, and a way to start
/// a run — the hook a drift monitor calls.
///
/// | method and path | what |
/// | --- | --- |
/// | `GET /v1/pipelines` | the pipelines served, each with its last run |
/// | `POST /v1/pipelines/{p}/runs` `{"trigger": "drift"}` | start a run (202, its id); 409 while one runs |
/// | `GET /v1/runs?pipeline=P` | the recorded runs, oldest first |
/// | `GET /v1/runs/{id}` | one run: steps, outcomes, outputs, metrics, logs |
///
/// Starting a run needs the bearer token; reads are open. Runs go on a thread of their own,
/// never on the event loops.
public final class PipelineServer: Sendable {
    let pipelines: [String: (definition: PipelineDefinition, runner: PipelineRunner)]
    let tokenSHA256: String
    private let running = Mutex<Set<String>>([])

    public init(pipelines: [(PipelineDefinition, PipelineRunner)], tokenSHA256: String) throws(WharfError) {
        var byName: [String: (PipelineDefinition, PipelineRunner)] = [:]
        for (definition, runner) in pipelines {
            guard byName.updateValue((definition, runner), forKey: definition.name) == nil else {
                throw WharfError(.invalidInput, "two pipelines are named \(definition.name)")
            }
        }
        self.pipelines = byName
        self.tokenSHA256 = tokenSHA256
    }

    struct Summary: Encodable {
        var name: String
        var steps: [String]
        var running: Bool
        var lastRun: PipelineRunner.Run?

        enum CodingKeys: String, CodingKey {
            case name, steps, running
            case lastRun = "last_run"
        }
    }

    struct Start: Decodable {
        var trigger: String?
    }

    public func buildApplication(host: String, port: Int, logger: Logger,
                                 onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: try BearerTokenMiddleware(tokenSHA256: tokenSHA256, protectReads: false, service: "pipelines"))
        router.get("/v1/health/live") { _, _ in Response.emptyOK }
        router.get("/v1/health/ready") { _, _ in Response.emptyOK }
        router.get("/v1/pipelines") { _, _ in
            let summaries = try self.pipelines.keys.sorted().map { name in
                let (definition, runner) = self.pipelines[name]!
                return Summary(name: name, steps: definition.steps.map(\.name), running: self.running.withLock { $0.contains(name) },
                               lastRun: try runner.runs().last { $0.pipeline == name })
            }
            return try JSONBody.response(["pipelines": summaries])
        }
        router.post("/v1/pipelines/:pipeline/runs") { request, context in
            let name = try context.parameters.require("pipeline")
            guard let (definition, runner) = self.pipelines[name] else { throw WharfError(.notFound, "no pipeline named \(name)") }
            let start = try await JSONBody.decode(Start.self, from: request)
            let trigger = start.trigger ?? "api"
            try RegistryName.check(trigger.replacingOccurrences(of: ":", with: "-"), kind: "trigger")
            guard self.running.withLock({ $0.insert(name).inserted }) else {
                throw WharfError(.conflict, "pipeline \(name) is running; start it again when that run ends")
            }
            let id = PipelineRunner.runID()
            // The run blocks on its steps' processes: a thread of its own, not an event loop.
            DispatchQueue.global().async {
                defer { _ = self.running.withLock { $0.remove(name) } }
                do {
                    _ = try runner.run(definition, trigger: trigger, id: id)
                } catch {
                    logger.error("pipeline run failed to start", metadata: ["pipeline": "\(name)", "error": "\(error)"])
                }
            }
            return try JSONBody.response(["id": id, "pipeline": name, "trigger": trigger], status: .accepted)
        }
        router.get("/v1/runs") { request, _ in
            let filter = request.uri.queryParameters["pipeline"].map(String.init)
            let runs = try self.pipelines.values.map(\.runner.stateDirectory).reduce(into: Set<String>()) { $0.insert($1) }.sorted()
                .flatMap { directory in try PipelineRunner(stateDirectory: directory, executable: "", baseDirectory: ".").runs() }
                .filter { filter == nil || $0.pipeline == filter }
                .sorted { ($0.startedAt, $0.id) < ($1.startedAt, $1.id) }
            return try JSONBody.response(["runs": runs])
        }
        router.get("/v1/runs/:id") { _, context in
            let id = try context.parameters.require("id")
            for (_, runner) in self.pipelines.values {
                if let run = try runner.runs().first(where: { $0.id == id }) { return try JSONBody.response(run) }
            }
            throw WharfError(.notFound, "no run \(id)")
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "wharf-pipelines"),
                           onServerRunning: onServerRunning, logger: logger)
    }
}
