import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
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
///
/// Everything happens on the event loop of the client's connection, with callbacks rather than
/// futures or tasks: this is the gateway's hot path.
final class InferenceRouter: Sendable {
    let store: DeploymentStore
    /// Forwards to plain-HTTP replicas on the caller's event loop.
    let upstream: UpstreamClient
    /// Forwards to https replicas, and serves the metadata routes.
    let http: HTTPClient
    let logger: Logger
    /// Shadow copies in flight at most; beyond, copies are skipped rather than queued.
    static let maxShadowsInFlight = 64
    private let shadowsInFlight = Atomic(0)

    init(store: DeploymentStore, upstream: UpstreamClient, http: HTTPClient, logger: Logger) {
        self.store = store
        self.upstream = upstream
        self.http = http
        self.logger = logger
    }

    /// A replica's answer: its status, the headers passed back, and the body.
    struct Forwarded: Sendable {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: ByteBuffer
    }

    typealias Completion = (Result<Forwarded, any Error>) -> Void

    /// Headers passed to the model server and back.
    static let requestHeaders = ["content-type", "inference-header-content-length"]
    static let responseHeaders = ["content-type", "inference-header-content-length", "x-wharf-model-version", "retry-after"]

    /// Routes one request, on `pool`'s event loop; `completion` gets the answer of a replica of
    /// the right version (with `x-wharf-deployment-version` set) or a ``WharfError`` (404, 503).
    func route(
        model: String, version: String?, body: ByteBuffer, headers: HTTPHeaders, requestID: String,
        pool upstreamPool: UpstreamLoopPool, completion: @escaping Completion
    ) {
        guard let deployment = store.deployment(model) else {
            return completion(.failure(WharfError(.notFound, "no deployment for model \(model) (create one with wharf deploy set)")))
        }
        let spec = deployment.spec
        // The bulkhead: this model's requests in flight never exceed its limit.
        let inFlight = deployment.inFlight.enter()
        let finish: Completion = { result in
            deployment.inFlight.leave()
            completion(result)
        }
        guard inFlight <= spec.maxConcurrency else {
            return finish(.failure(WharfError(.unavailable, "model \(model) already has \(spec.maxConcurrency) requests in flight (its max_concurrency)")))
        }

        var order: [Int]
        if let version {
            guard let index = spec.targets.firstIndex(where: { $0.version == version }) else {
                return finish(.failure(WharfError(.notFound, "deployment \(model) has no version \(version)")))
            }
            order = [index]
        } else {
            let key = spec.stickyHeader.flatMap { headers.first(name: $0) }
            guard let chosen = TrafficSplitter.choose(spec.targets, key: key, random: &upstreamPool.random) else {
                return finish(.failure(WharfError(.unavailable, "deployment \(model) gives no version any traffic")))
            }
            order = [chosen]
            if spec.targets.count > 1 {
                order += spec.targets.indices.filter { $0 != chosen && spec.targets[$0].weight > 0 }
            }
        }
        var forwardHeaders = HTTPHeaders()
        forwardHeaders.reserveCapacity(5)
        for name in Self.requestHeaders {
            if let value = headers.first(name: name) { forwardHeaders.add(name: name, value: value) }
        }
        forwardHeaders.add(name: "x-request-id", value: requestID)
        let request = Outbound(model: model, body: body, headers: forwardHeaders, timeout: .milliseconds(Int64(spec.timeoutMilliseconds)))
        tryVersions(order[...], deployment: deployment, request: request, pool: upstreamPool, completion: finish)
    }

    /// One request as sent to replicas.
    struct Outbound: Sendable {
        var model: String
        var body: ByteBuffer
        var headers: HTTPHeaders
        var timeout: TimeAmount
    }

    /// The versions in `order`, each until one answers: a dead canary costs its own error
    /// count, not the client's request.
    private func tryVersions(
        _ order: ArraySlice<Int>, deployment: LiveDeployment, request: Outbound, pool upstreamPool: UpstreamLoopPool,
        completion: @escaping Completion
    ) {
        let spec = deployment.spec
        guard let index = order.first else {
            return completion(.failure(WharfError(.unavailable, "no replica of model \(request.model) can answer now")))
        }
        let target = spec.targets[index]
        guard let pool = deployment.pools[target.version], let stats = deployment.stats[target.version] else {
            return tryVersions(order.dropFirst(), deployment: deployment, request: request, pool: upstreamPool, completion: completion)
        }
        let started = ContinuousClock.now
        attempt(pool: pool, request: request, retriesLeft: spec.retries, excluded: [], upstream: upstreamPool) { result in
            switch result {
            case .failure(let error):
                // A timeout: the version took the request and did not answer. It counts against
                // it like any failure, or a canary whose replicas hang would pass its steps.
                stats.record(failed: true, duration: .now - started)
                completion(.failure(error))
            case .success(nil):
                // The chosen version could not answer: count it against that version, try the next.
                stats.record(failed: true, duration: .now - started)
                if order.count > 1, order.startIndex == 0 {
                    self.logger.warning("version could not answer; trying another", metadata: ["model": "\(request.model)", "version": "\(target.version)"])
                }
                self.tryVersions(order.dropFirst(), deployment: deployment, request: request, pool: upstreamPool, completion: completion)
            case .success(var answer?):
                let failed = answer.status.code >= 500
                stats.record(failed: failed, duration: .now - started)
                if !failed { self.shadow(deployment, primary: answer, request: request, upstream: upstreamPool) }
                answer.headers.add(name: "x-wharf-deployment-version", value: target.version)
                completion(.success(answer))
            }
        }
    }

    /// Up to 1 + retries replicas of one pool; nil when none answered (or none was available).
    private func attempt(
        pool: ReplicaPool, request: Outbound, retriesLeft: Int, excluded: Set<String>, upstream: UpstreamLoopPool,
        completion: @escaping (Result<Forwarded?, any Error>) -> Void
    ) {
        guard let lease = pool.acquire(excluding: excluded, random: &upstream.random) else { return completion(.success(nil)) }
        let replica = lease.replica
        send(request, to: replica, upstream: upstream) { result in
            switch result {
            case .success(let answer):
                // 503: not ready or overloaded; 404: this replica does not serve the model (a
                // misdeployed version). Nothing was evaluated; another replica may take it.
                let unavailable = answer.status == .serviceUnavailable || answer.status == .notFound
                lease.release(failed: unavailable || answer.status.code >= 500, now: .now)
                guard unavailable else { return completion(.success(answer)) }
            case .failure(let error):
                lease.release(failed: true, now: .now)
                if Self.isTimeout(error) {
                    return completion(.failure(WharfError(
                        .unavailable, "model \(request.model) did not answer within \(request.timeout.nanoseconds / 1_000_000) ms")))
                }
                // Connection refused, reset or cut: inference is a pure function, so trying it
                // on another replica is safe even if this one had started on it.
                self.logger.debug("replica failed", metadata: ["replica": "\(replica.url)", "error": "\(error)"])
            }
            guard retriesLeft > 0 else { return completion(.success(nil)) }
            self.attempt(pool: pool, request: request, retriesLeft: retriesLeft - 1, excluded: excluded.union([replica.url]),
                         upstream: upstream, completion: completion)
        }
    }

    private static func isTimeout(_ error: any Error) -> Bool {
        if let error = error as? UpstreamError { return error == .timedOut }
        if let error = error as? HTTPClientError { return error == .deadlineExceeded }
        return false
    }

    /// One request to one replica: on the raw client for http://, async-http-client for https://.
    private func send(_ request: Outbound, to replica: Replica, upstream: UpstreamLoopPool, completion: @escaping Completion) {
        guard let endpoint = replica.endpoint else {
            let promise = upstream.eventLoop.makePromise(of: Forwarded.self)
            promise.completeWithTask { try await self.forwardOverTLS(to: replica.url, request: request) }
            promise.futureResult.assumeIsolated().whenComplete(completion)
            return
        }
        upstream.execute(UpstreamLane(endpoint: endpoint, model: request.model), headers: request.headers, body: request.body,
                         timeout: request.timeout) { result in
            switch result {
            case .success(let response):
                // The raw client keeps only `responseHeaders`.
                completion(.success(Forwarded(status: response.status, headers: response.headers, body: response.body)))
            case .failure(let error):
                completion(.failure(error))
            }
        }
    }

    private static func passedBack(_ headers: HTTPHeaders) -> HTTPHeaders {
        var passed = HTTPHeaders()
        passed.reserveCapacity(8)
        for name in responseHeaders {
            if let value = headers.first(name: name) { passed.add(name: name, value: value) }
        }
        return passed
    }

    private func forwardOverTLS(to base: String, request: Outbound) async throws -> Forwarded {
        var outbound = HTTPClientRequest(url: "\(base)/v2/models/\(request.model)/infer")
        outbound.method = .POST
        outbound.headers = request.headers
        outbound.body = .bytes(request.body)
        let response = try await http.execute(outbound, deadline: .now() + request.timeout)
        let bytes = try await response.body.collect(upTo: UpstreamClient.maxResponseBytes)
        return Forwarded(status: response.status, headers: Self.passedBack(response.headers), body: bytes)
    }

    /// Copies the request to the shadow version when sampled, compares its answer with the
    /// primary's and records the result; never delays or changes the client's answer.
    private func shadow(_ deployment: LiveDeployment, primary: Forwarded, request: Outbound, upstream: UpstreamLoopPool) {
        guard let shadow = deployment.spec.shadow, let pool = deployment.shadowPool, let stats = deployment.stats[shadow.version] else { return }
        guard TrafficSplitter.sampleShadow(share: shadow.share, random: &upstream.random) else { return }
        guard shadowsInFlight.wrappingAdd(1, ordering: .relaxed).newValue <= Self.maxShadowsInFlight else {
            shadowsInFlight.wrappingSubtract(1, ordering: .relaxed)
            return
        }
        guard let lease = pool.acquire(excluding: [], random: &upstream.random) else {
            shadowsInFlight.wrappingSubtract(1, ordering: .relaxed)
            stats.recordShadow(.failed)
            return
        }
        let started = ContinuousClock.now
        send(request, to: lease.replica, upstream: upstream) { result in
            switch result {
            case .success(let answer):
                lease.release(failed: answer.status.code >= 500, now: .now)
                stats.record(failed: answer.status.code >= 500, duration: .now - started)
                guard answer.status == primary.status, answer.status == .ok else {
                    self.shadowsInFlight.wrappingSubtract(1, ordering: .relaxed)
                    stats.recordShadow(answer.status == primary.status ? .agree : .disagree)
                    return
                }
                // Comparing parses both answers: in a task, after the client's answer is on its way.
                Task {
                    defer { self.shadowsInFlight.wrappingSubtract(1, ordering: .relaxed) }
                    stats.recordShadow(OutputComparison.agree(primary.body, answer.body) ? .agree : .disagree)
                }
            case .failure:
                self.shadowsInFlight.wrappingSubtract(1, ordering: .relaxed)
                lease.release(failed: true, now: .now)
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
