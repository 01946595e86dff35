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

/// Sends an inference request to a replica of the right version and brings its answer back.
///
/// In order: the deployment's bulkhead (over `max_concurrency` in flight: 503 at once), the
/// version (weights, or the sticky key), a replica of it (least outstanding, breaker closed,
/// ready), and on a failed connection or a 503 another replica, up to `retries` times; when the
/// chosen version cannot answer at all the other versions with weight are tried, so a dead
/// canary costs its own error count, not the client's request. No replica anywhere: 503 at
/// once, with `Retry-After`.
final class InferenceRouter: Sendable {
    let store: DeploymentStore
    let http: HTTPClient
    let logger: Logger
    /// Shadow copies in flight at most; beyond, copies are skipped rather than queued.
    static let maxShadowsInFlight = 64
    private let shadowsInFlight = Atomic(0)

    init(store: DeploymentStore, http: HTTPClient, logger: Logger) {
        self.store = store
        self.http = http
        self.logger = logger
    }

    struct Forwarded: Sendable {
        var status: HTTPResponse.Status
        var headers: HTTPFields
        var body: ByteBuffer
    }

    /// Headers passed to the model server and back.
    static let requestHeaders: [HTTPField.Name] = [.contentType, .inferenceHeaderContentLength, .requestID]
    static let responseHeaders: [HTTPField.Name] = [.contentType, .inferenceHeaderContentLength, .modelVersion, .retryAfter]

    func infer(model: String, version: String?, body: ByteBuffer, headers: HTTPFields, requestID: String?) async throws -> Response {
        guard let deployment = store.deployment(model) else {
            throw WharfError(.notFound, "no deployment for model \(model) (create one with wharf deploy set)")
        }
        let spec = deployment.spec
        // The bulkhead: this model's requests in flight never exceed its limit.
        let inFlight = deployment.inFlight.wrappingAdd(1, ordering: .relaxed).newValue
        defer { deployment.inFlight.wrappingSubtract(1, ordering: .relaxed) }
        guard inFlight <= spec.maxConcurrency else {
            throw WharfError(.unavailable, "model \(model) already has \(spec.maxConcurrency) requests in flight (its max_concurrency)")
        }

        var random = SystemRandomNumberGenerator()
        var order: [Int]
        if let version {
            guard let index = spec.targets.firstIndex(where: { $0.version == version }) else {
                throw WharfError(.notFound, "deployment \(model) has no version \(version)")
            }
            order = [index]
        } else {
            let key = spec.stickyHeader.flatMap { HTTPField.Name($0) }.flatMap { headers[$0] }
            guard let chosen = TrafficSplitter.choose(spec.targets, key: key, random: &random) else {
                throw WharfError(.unavailable, "deployment \(model) gives no version any traffic")
            }
            order = [chosen] + spec.targets.indices.filter { $0 != chosen && spec.targets[$0].weight > 0 }
        }
        var forwardHeaders = HTTPFields()
        for name in Self.requestHeaders { if let value = headers[name] { forwardHeaders[name] = value } }
        if let requestID { forwardHeaders[.requestID] = requestID }

        for (attemptIndex, index) in order.enumerated() {
            let target = spec.targets[index]
            guard let pool = deployment.pools[target.version], let stats = deployment.stats[target.version] else { continue }
            let started = ContinuousClock.now
            if let answer = try await attempt(pool: pool, model: model, body: body, headers: forwardHeaders, spec: spec) {
                let failed = answer.status.code >= 500
                stats.record(failed: failed, duration: .now - started)
                if !failed { shadow(deployment, primary: answer, body: body, headers: forwardHeaders) }
                var response = Response(status: answer.status, headers: answer.headers, body: ResponseBody(byteBuffer: answer.body))
                response.headers[.deploymentVersion] = target.version
                return response
            }
            // The chosen version could not answer: count it against that version, try the next.
            stats.record(failed: true, duration: .now - started)
            if attemptIndex == 0, order.count > 1 {
                logger.warning("version could not answer; trying another", metadata: ["model": "\(model)", "version": "\(target.version)"])
            }
        }
        throw WharfError(.unavailable, "no replica of model \(model) can answer now")
    }

    /// Up to 1 + retries replicas of one pool; nil when none answered (or none was available).
    private func attempt(pool: ReplicaPool, model: String, body: ByteBuffer, headers: HTTPFields, spec: DeploymentSpec) async throws -> Forwarded? {
        var random = SystemRandomNumberGenerator()
        var excluded: Set<String> = []
        for _ in 0...spec.retries {
            guard let replica = pool.acquire(excluding: excluded, random: &random) else { return nil }
            do {
                let answer = try await forward(to: replica.url, model: model, body: body, headers: headers, timeout: .milliseconds(Int64(spec.timeoutMilliseconds)))
                // 503: not ready or overloaded; 404: this replica does not serve the model (a
                // misdeployed version). Nothing was evaluated; another replica may take it.
                let unavailable = answer.status == .serviceUnavailable || answer.status == .notFound
                replica.release(failed: unavailable || answer.status.code >= 500, now: .now)
                if unavailable {
                    excluded.insert(replica.url)
                    continue
                }
                return answer
            } catch let error as HTTPClientError where error == .deadlineExceeded {
                replica.release(failed: true, now: .now)
                throw WharfError(.unavailable, "model \(model) did not answer within \(spec.timeoutMilliseconds) ms")
            } catch {
                // Connection refused, reset or cut: inference is a pure function, so trying it
                // on another replica is safe even if this one had started on it.
                replica.release(failed: true, now: .now)
                excluded.insert(replica.url)
                logger.debug("replica failed", metadata: ["replica": "\(replica.url)", "error": "\(error)"])
            }
        }
        return nil
    }

    func forward(to base: String, model: String, body: ByteBuffer, headers: HTTPFields, timeout: TimeAmount) async throws -> Forwarded {
        var request = HTTPClientRequest(url: "\(base)/v2/models/\(model)/infer")
        request.method = .POST
        for field in headers { request.headers.add(name: field.name.rawName, value: field.value) }
        request.body = .bytes(body)
        let response = try await http.execute(request, deadline: .now() + timeout)
        let bytes = try await response.body.collect(upTo: 256 << 20)
        var fields = HTTPFields()
        for name in Self.responseHeaders {
            if let value = response.headers.first(name: name.rawName) { fields[name] = value }
        }
        return Forwarded(status: HTTPResponse.Status(code: Int(response.status.code)), headers: fields, body: bytes)
    }

    /// Copies the request to the shadow version when sampled, compares its answer with the
    /// primary's and records the result; never delays or changes the client's answer.
    private func shadow(_ deployment: LiveDeployment, primary: Forwarded, body: ByteBuffer, headers: HTTPFields) {
        guard let shadow = deployment.spec.shadow, let pool = deployment.shadowPool, let stats = deployment.stats[shadow.version] else { return }
        var random = SystemRandomNumberGenerator()
        guard TrafficSplitter.sampleShadow(share: shadow.share, random: &random) else { return }
        guard shadowsInFlight.wrappingAdd(1, ordering: .relaxed).newValue <= Self.maxShadowsInFlight else {
            shadowsInFlight.wrappingSubtract(1, ordering: .relaxed)
            return
        }
        let model = deployment.spec.model
        let timeout = TimeAmount.milliseconds(Int64(deployment.spec.timeoutMilliseconds))
        Task {
            defer { shadowsInFlight.wrappingSubtract(1, ordering: .relaxed) }
            var random = SystemRandomNumberGenerator()
            guard let replica = pool.acquire(excluding: [], random: &random) else {
                stats.recordShadow(.failed)
                return
            }
            let started = ContinuousClock.now
            do {
                let answer = try await forward(to: replica.url, model: model, body: body, headers: headers, timeout: timeout)
                replica.release(failed: answer.status.code >= 500, now: .now)
                stats.record(failed: answer.status.code >= 500, duration: .now - started)
                guard answer.status == primary.status, answer.status == .ok else {
                    stats.recordShadow(answer.status == primary.status ? .agree : .disagree)
                    return
                }
                stats.recordShadow(OutputComparison.agree(primary.body, answer.body) ? .agree : .disagree)
            } catch {
                replica.release(failed: true, now: .now)
                stats.recordShadow(.failed)
            }
        }
    }
}

/// Whether two inference answers say the same: the same outputs, numbers within 1e-6
/// (relative), whatever the order of keys; other bodies must be byte for byte equal.
enum OutputComparison {
    static func agree(_ first: ByteBuffer, _ second: ByteBuffer) -> Bool {
        guard let a = outputs(first), let b = outputs(second) else { return first == second }
        guard a.keys == b.keys else { return false }
        for (name, values) in a {
            guard let other = b[name], other.count == values.count else { return false }
            for (x, y) in zip(values, other) where abs(x - y) > 1e-6 * max(1, abs(x), abs(y)) { return false }
        }
        return true
    }

    private static func outputs(_ body: ByteBuffer) -> [String: [Double]]? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
              let outputs = object["outputs"] as? [[String: Any]]
        else { return nil }
        var result: [String: [Double]] = [:]
        for output in outputs {
            guard let name = output["name"] as? String else { return nil }
            result[name] = (output["data"] as? [Any])?.compactMap { ($0 as? NSNumber)?.doubleValue } ?? []
        }
        return result
    }
}

extension HTTPField.Name {
    static let inferenceHeaderContentLength = HTTPField.Name("inference-header-content-length")!
    static let modelVersion = HTTPField.Name("x-wharf-model-version")!
    /// The deployment's label of the version that answered ("3", "production", "canary").
    static let deploymentVersion = HTTPField.Name("x-wharf-deployment-version")!
}
