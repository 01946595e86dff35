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
/// | `GET /v1/runs?pipeline=P&limit=N` | the newest recorded runs, oldest first |
/// | `GET /v1/runs/{id}` | one run: steps, outcomes, outputs, metrics, logs |
///
/// Starting a run needs the bearer token; reads are open. Runs are read from the same history
/// the runners record into: the registry's database when there is a registry.
public final class PipelineServer: Sendable {
    let pipelines: [String: (definition: PipelineDefinition, runner: PipelineRunner)]
    /// Where the runs are read from (the runners record into it).
    let history: any RunHistory
    let tokenSHA256: String
    private let running = Mutex<Set<String>>([])

    public init(pipelines: [(PipelineDefinition, PipelineRunner)], history: any RunHistory, tokenSHA256: String) throws(WharfError) {
        var byName: [String: (PipelineDefinition, PipelineRunner)] = [:]
        for (definition, runner) in pipelines {
            guard byName.updateValue((definition, runner), forKey: definition.name) == nil else {
                throw WharfError(.invalidInput, "two pipelines are named \(definition.name)")
            }
        }
        self.pipelines = byName
        self.history = history
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
            var summaries: [Summary] = []
            for name in self.pipelines.keys.sorted() {
                let definition = self.pipelines[name]!.definition
                summaries.append(Summary(name: name, steps: definition.steps.map(\.name), running: self.running.withLock { $0.contains(name) },
                                         lastRun: try await self.history.runs(pipeline: name, limit: 1).last))
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
            // The runner waits for its steps' processes on threads of their own, never an event loop.
            Task {
                defer { _ = self.running.withLock { $0.remove(name) } }
                do {
                    _ = try await runner.run(definition, trigger: trigger, id: id)
                } catch {
                    logger.error("pipeline run failed to start", metadata: ["pipeline": "\(name)", "error": "\(error)"])
                }
            }
            return try JSONBody.response(["id": id, "pipeline": name, "trigger": trigger], status: .accepted)
        }
        router.get("/v1/runs") { request, _ in
            let query = try RunQuery(request)
            return try JSONBody.response(["runs": try await self.history.runs(pipeline: query.pipeline, limit: query.limit)])
        }
        router.get("/v1/runs/:id") { _, context in
            let id = try context.parameters.require("id")
            try RegistryName.check(id, kind: "run")
            guard let run = try await self.history.run(id: id) else { throw WharfError(.notFound, "no run \(id)") }
            return try JSONBody.response(run)
        }
        return Application(router: router, server: .wharfHTTP1, configuration: .init(address: .hostname(host, port: port), serverName: "wharf-pipelines"),
                           onServerRunning: onServerRunning, logger: logger)
    }
}
