import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import WharfCore

/// A client of the gateway's deployments API (docs/gateway-openapi.yaml), for `wharf deploy`.
/// Answers come back as JSON objects: the CLI prints them, tests read them.
public struct GatewayClient: Sendable {
    public let baseURL: String
    let key: String?
    let http: HTTPClient

    public init(baseURL: String, key: String?, http: HTTPClient = RegistryClient.failFast) {
        var url = baseURL
        while url.hasSuffix("/") { url.removeLast() }
        self.baseURL = url
        self.key = key
        self.http = http
    }

    public func status(_ model: String) async throws -> [String: Any] {
        try await call(.GET, "/v1/deployments/\(try name(model))", body: Optional<String>.none)
    }

    public func set(_ spec: DeploymentSpec) async throws -> [String: Any] {
        try await call(.PUT, "/v1/deployments/\(try name(spec.model))", body: spec)
    }

    public func canary(_ model: String, _ plan: CanaryPlan) async throws -> [String: Any] {
        try await call(.POST, "/v1/deployments/\(try name(model))/canary", body: plan)
    }

    public func promote(_ model: String, version: String) async throws -> [String: Any] {
        try await call(.POST, "/v1/deployments/\(try name(model))/promote", body: ["version": version])
    }

    public func rollback(_ model: String) async throws -> [String: Any] {
        try await call(.POST, "/v1/deployments/\(try name(model))/rollback", body: [String: String]())
    }

    public func shadow(_ model: String, version: String?, share: Double, replicas: [String]) async throws -> [String: Any] {
        struct Change: Encodable {
            var version: String?
            var share: Double
            var replicas: [String]
        }
        return try await call(.PUT, "/v1/deployments/\(try name(model))/shadow", body: Change(version: version, share: share, replicas: replicas))
    }

    private func name(_ model: String) throws(WharfError) -> String {
        try RegistryName.check(model, kind: "model")
        return model
    }

    private func call(_ method: HTTPMethod, _ path: String, body: (some Encodable)?) async throws -> [String: Any] {
        try ServiceURL.check(baseURL, "the gateway URL")
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let key { request.headers.add(name: "authorization", value: "Bearer \(key)") }
        if let body {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try encoder.encode(body)))
        }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .seconds(30))
        } catch {
            throw WharfError(.unavailable, "cannot reach the gateway at \(baseURL): \(error)")
        }
        let bytes = try await response.body.collect(upTo: 16 << 20)
        guard (200..<300).contains(response.status.code) else { throw RegistryClient.failure(response.status, bytes) }
        return (try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView)) as? [String: Any]) ?? [:]
    }
}
