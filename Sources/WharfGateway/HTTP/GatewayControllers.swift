import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import WharfCore
import WharfHTTP

/// The OIP v2 face of the gateway beside inference: health, server and model metadata.
struct GatewayInferenceController<Context: RequestContext>: Sendable {
    let router: InferenceRouter
    let access: AccessControl

    func addRoutes(to routes: Router<Context>) {
        routes.get("/v2/health/live") { _, _ in Response.emptyOK }
        routes.get("/v2/health/ready") { _, _ in Response.emptyOK }
        routes.get("/v2") { _, _ in
            Response.json(Array(#"{"name":"wharf-gateway","version":"1","extensions":["binary_tensor_data"]}"#.utf8))
        }
        routes.get("/v2/models/:model") { request, context in try await metadata(request, context, suffix: "") }
        routes.get("/v2/models/:model/ready") { request, context in try await metadata(request, context, suffix: "/ready") }
        // POST …/infer never reaches the router: the gateway's InferenceForwarder answers it.
    }

    /// The routes the InferenceForwarder answers before the router.
    static var forwardedRoutes: [(path: RouterPath, method: HTTPRequest.Method)] {
        [("/v2/models/:model/infer", .post), ("/v2/models/:model/versions/:version/infer", .post)]
    }

    /// Model metadata and readiness come from a replica of the deployment's main version.
    private func metadata(_ request: Request, _ context: Context, suffix: String) async throws -> Response {
        let model = try context.parameters.require("model")
        try RegistryName.check(model, kind: "model")
        try access.authorize(request, scope: "infer:\(model)")
        guard let deployment = router.store.deployment(model) else { throw WharfError(.notFound, "no deployment for model \(model)") }
        let main = deployment.spec.targets.max { $0.weight < $1.weight }!
        for replica in main.replicas {
            guard let response = try? await router.http.execute(
                .init(url: "\(replica)/v2/models/\(model)\(suffix)"), deadline: .now() + .seconds(2))
            else { continue }
            let body = try await response.body.collect(upTo: 1 << 20)
            guard response.status.code < 500 else { continue }
            var headers: HTTPFields = [.contentType: response.headers.first(name: "content-type") ?? "application/json"]
            headers[.deploymentVersion] = main.version
            return Response(status: .init(code: Int(response.status.code)), headers: headers, body: ResponseBody(byteBuffer: body))
        }
        throw WharfError(.unavailable, "no replica of model \(model) answers")
    }
}

/// The body of `PUT /v1/deployments/{model}/shadow`.
struct ShadowChange: Codable {
    var version: String?
    var share: Double?
    var replicas: [String]?

    enum CodingKeys: String, CodingKey, CaseIterable { case version, share, replicas }

    /// The shadow asked for; nil turns it off, which only share 0 alone (or `{}`) does: a
    /// version or replicas without a share above 0 is a mistake, not a request to stop.
    func shadow(of model: String) throws(WharfError) -> DeploymentSpec.Shadow? {
        let label = "shadow of \(model)"
        guard let share, share != 0 else {
            guard version == nil, replicas?.isEmpty ?? true else {
                throw WharfError(.invalidInput, "\(label): share must be above 0 to copy traffic to a version (to turn the shadow off, send share 0 alone)")
            }
            return nil
        }
        guard let version else { throw WharfError(.invalidInput, "\(label): version is missing") }
        // The rest (share 0…1, the replicas) is checked with the whole spec.
        return DeploymentSpec.Shadow(version: version, share: share, replicas: replicas ?? [])
    }
}

extension ShadowChange {
    init(from decoder: any Decoder) throws {
        try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        version = try container.decodeIfPresent(String.self, forKey: .version)
        share = try container.decodeIfPresent(Double.self, forKey: .share)
        replicas = try container.decodeIfPresent([String].self, forKey: .replicas)
    }
}

/// `/v1/deployments` and `/v1/keys`: always behind a key (`deploy`, `admin`).
struct DeploymentController<Context: RequestContext>: Sendable {
    let store: DeploymentStore
    let canaries: CanaryController
    let access: AccessControl

    struct Status: Codable {
        struct Version: Codable {
            var version: String
            var weight: Double
            var role: String
            var live: VersionStats.Summary
            var replicas: [Replica.Snapshot]
        }

        var model: String
        var spec: DeploymentSpec
        var versions: [Version]
        var inFlight: Int
        var canary: CanaryController.Status?
        var history: [DeploymentChange]
        var canRollBack: Bool

        enum CodingKeys: String, CodingKey {
            case model, spec, versions, canary, history
            case inFlight = "in_flight"
            case canRollBack = "can_roll_back"
        }
    }

    struct Promotion: Codable { var version: String }
    struct KeyRequest: Codable {
        var id: String
        var scopes: [String]
        var ratePerSecond: Double?
        var burst: Double?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case id, scopes, burst
            case ratePerSecond = "rate_per_second"
        }

    }

    func addRoutes(to routes: Router<Context>) {
        let deployments = routes.group("/v1/deployments")
        deployments.get { request, _ in
            try access.authorize(request, scope: "deploy")
            return try JSONBody.response(["deployments": store.models.compactMap { status($0) }])
        }
        deployments.get(":model") { request, context in
            try access.authorize(request, scope: "deploy")
            let model = try Self.model(context)
            guard let status = status(model) else { throw WharfError(.notFound, "no deployment for model \(model)") }
            return try JSONBody.response(status)
        }
        deployments.put(":model") { request, context in
            let key = try access.authorize(request, scope: "deploy")
            let model = try Self.model(context)
            var spec = try await JSONBody.decode(DeploymentSpec.self, from: request)
            guard spec.model == model else { throw WharfError(.invalidInput, "the spec is for model \(spec.model), the path for \(model)") }
            spec = try spec.validated()
            try canaries.withoutRunningCanary(model) { () throws(WharfError) in
                try store.set(spec, actor: key?.id ?? "anonymous", action: "set", detail: "weights " + spec.targets.map { "\($0.version)=\($0.weight)" }.joined(separator: ","))
            }
            return try JSONBody.response(status(model))
        }
        deployments.delete(":model") { request, context in
            try access.authorize(request, scope: "deploy")
            let model = try Self.model(context)
            _ = try? canaries.abort(model: model, actor: "delete", reason: "deployment deleted")
            try store.delete(model)
            return Response(status: .noContent)
        }
        deployments.post(":model/canary") { request, context in
            let key = try access.authorize(request, scope: "deploy")
            let model = try Self.model(context)
            let plan = try await JSONBody.decode(CanaryPlan.self, from: request)
            return try JSONBody.response(try canaries.start(model: model, plan: plan, actor: key?.id ?? "anonymous"), status: .accepted)
        }
        deployments.post(":model/promote") { request, context in
            let key = try access.authorize(request, scope: "deploy")
            let model = try Self.model(context)
            let promotion = try await JSONBody.decode(Promotion.self, from: request)
            let actor = key?.id ?? "anonymous"
            // Taken before a running canary is stopped: it holds the canary's target. A promotion
            // by hand ends any running canary, whichever version it promotes; the canary's next
            // step would otherwise undo it.
            var spec = try current(model).spec
            // Checked before a running canary is stopped: a mistyped version changes nothing.
            guard let target = spec.targets.first(where: { $0.version == promotion.version }) else {
                throw WharfError(.notFound, "deployment \(model) has no version \(promotion.version.prefix(80)) (its versions: \(spec.targets.map(\.version).joined(separator: ", ")))")
            }
            if let canary = canaries.status(model), canary.state == "running" {
                _ = try canaries.abort(model: model, actor: actor, reason: "\(promotion.version) promoted by hand")
            }
            spec.targets = [DeploymentSpec.Target(version: target.version, weight: 100, replicas: target.replicas)]
            try store.set(spec, actor: actor, action: "promote", detail: "\(promotion.version) takes all traffic")
            return try JSONBody.response(status(model))
        }
        deployments.post(":model/rollback") { request, context in
            let key = try access.authorize(request, scope: "deploy")
            let model = try Self.model(context)
            let actor = key?.id ?? "anonymous"
            if try canaries.abort(model: model, actor: actor, reason: "rolled back by hand") {
                return try JSONBody.response(status(model))
            }
            guard let previous = try current(model).previous else {
                throw WharfError(.conflict, "deployment \(model) has no earlier spec to roll back to")
            }
            try store.set(previous, actor: actor, action: "rollback", detail: "back to the spec before the last change")
            return try JSONBody.response(status(model))
        }
        deployments.put(":model/shadow") { request, context in
            let key = try access.authorize(request, scope: "deploy")
            let model = try Self.model(context)
            let change = try await JSONBody.decode(ShadowChange.self, from: request)
            // Each canary step rebuilds the spec from the one before the rollout: not during one.
            try canaries.withoutRunningCanary(model) { () throws(WharfError) in
                var spec = try current(model).spec
                spec.shadow = try change.shadow(of: model)
                try store.set(spec, actor: key?.id ?? "anonymous", action: "shadow",
                              detail: spec.shadow.map { "\($0.version) gets a copy of \($0.share * 100)%" } ?? "shadow off")
            }
            return try JSONBody.response(status(model))
        }

        let keys = routes.group("/v1/keys")
        keys.get { request, _ in
            try access.authorize(request, scope: "admin")
            return try JSONBody.response(["keys": access.all.map { ["id": $0.id, "scopes": $0.scopes.joined(separator: " ")] }])
        }
        keys.post { request, _ in
            try access.authorize(request, scope: "admin")
            let new = try await JSONBody.decode(KeyRequest.self, from: request)
            let secret = try access.create(id: new.id, scopes: new.scopes, ratePerSecond: new.ratePerSecond, burst: new.burst)
            return try JSONBody.response(["id": new.id, "key": secret], status: .created)
        }
        keys.delete(":id") { request, context in
            try access.authorize(request, scope: "admin")
            try access.delete(id: try context.parameters.require("id"))
            return Response(status: .noContent)
        }
    }

    private func current(_ model: String) throws(WharfError) -> DeploymentStore.Entry {
        guard let entry = store.entry(model) else { throw WharfError(.notFound, "no deployment for model \(model)") }
        return entry
    }

    func status(_ model: String) -> Status? {
        guard let entry = store.entry(model), let live = store.deployment(model) else { return nil }
        var versions = entry.spec.targets.map { target in
            Status.Version(version: target.version, weight: target.weight, role: "primary",
                           live: store.stats(model: model, version: target.version).summary(),
                           replicas: live.pools[target.version]?.replicas.map(\.snapshot) ?? [])
        }
        if let shadow = entry.spec.shadow {
            versions.append(Status.Version(version: shadow.version, weight: 0, role: "shadow",
                                           live: store.stats(model: model, version: shadow.version).summary(),
                                           replicas: live.shadowPool?.replicas.map(\.snapshot) ?? []))
        }
        return Status(model: model, spec: entry.spec, versions: versions, inFlight: live.inFlight.value,
                      canary: canaries.status(model), history: Array(entry.history.suffix(50)), canRollBack: entry.previous != nil)
    }

    private static func model(_ context: Context) throws -> String {
        let model = try context.parameters.require("model")
        try RegistryName.check(model, kind: "model")
        return model
    }
}

extension DeploymentController.KeyRequest {
    init(from decoder: any Decoder) throws {
        try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        scopes = try container.decode([String].self, forKey: .scopes)
        ratePerSecond = try container.decodeIfPresent(Double.self, forKey: .ratePerSecond)
        burst = try container.decodeIfPresent(Double.self, forKey: .burst)
    }
}
