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
/// Everything happens on the event loop of the client's connection, with one object a request
/// (``RoutedInference``) called back, rather than futures or tasks: this is the gateway's hot
/// path.
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
        var headers: AnswerHeaders
        var body: ByteBuffer
    }

    typealias Completion = (Result<Forwarded, any Error>) -> Void

    /// Routes one request, on `pool`'s event loop; `receiver` gets the answer of a replica of
    /// the right version (with `x-wharf-deployment-version` set) or a ``WharfError`` (404, 503).
    /// `headers` are the client's, for the sticky-routing key; `forwarded` what replicas get.
    func route(
        model: String, version: String?, body: ByteBuffer, headers: some RequestHeaderLookup, forwarded: ForwardedRequestHeaders,
        pool upstreamPool: any UpstreamPool, receiver: any InferenceReceiver
    ) {
        guard let deployment = store.deployment(model) else {
            return receiver.inferenceFinished(.failure(WharfError(.notFound, "no deployment for model \(model) (create one with wharf deploy set)")))
        }
        let spec = deployment.spec
        // The bulkhead: this model's requests in flight never exceed its limit.
        let inFlight = deployment.inFlight.enter()
        guard inFlight <= spec.maxConcurrency else {
            deployment.inFlight.leave()
            return receiver.inferenceFinished(.failure(WharfError(
                .unavailable, "model \(model) already has \(spec.maxConcurrency) requests in flight (its max_concurrency)")))
        }
        let first: Int
        if let version {
            guard let index = spec.targets.firstIndex(where: { $0.version == version }) else {
                deployment.inFlight.leave()
                return receiver.inferenceFinished(.failure(WharfError(.notFound, "deployment \(model) has no version \(version)")))
            }
            first = index
        } else {
            let key = spec.stickyHeader.flatMap { headers.first(name: $0) }
            guard let chosen = TrafficSplitter.choose(spec.targets, key: key, random: &upstreamPool.random) else {
                deployment.inFlight.leave()
                return receiver.inferenceFinished(.failure(WharfError(.unavailable, "deployment \(model) gives no version any traffic")))
            }
            first = chosen
        }
        let request = Outbound(model: model, body: body, headers: forwarded, timeout: .milliseconds(Int64(spec.timeoutMilliseconds)))
        RoutedInference(router: self, deployment: deployment, request: request, upstream: upstreamPool, receiver: receiver,
                        first: first, versionPinned: version != nil).start()
    }

    /// ``route(model:version:body:headers:forwarded:pool:receiver:)`` with a closure.
    func route(
        model: String, version: String?, body: ByteBuffer, headers: some RequestHeaderLookup, forwarded: ForwardedRequestHeaders,
        pool upstreamPool: any UpstreamPool, completion: @escaping Completion
    ) {
        route(model: model, version: version, body: body, headers: headers, forwarded: forwarded, pool: upstreamPool,
              receiver: CompletionReceiver(completion))
    }

    /// One request as sent to replicas.
    struct Outbound: Sendable {
        var model: String
        var body: ByteBuffer
        var headers: ForwardedRequestHeaders
        var timeout: TimeAmount
    }

    static func isTimeout(_ error: any Error) -> Bool {
        if let error = error as? UpstreamError { return error == .timedOut }
        if let error = error as? HTTPClientError { return error == .deadlineExceeded }
        return false
    }

    /// One request to one replica, with a closure (shadow copies): on the raw client for
    /// http://, async-http-client for https://.
    private func send(_ request: Outbound, to replica: Replica, upstream: any UpstreamPool, completion: @escaping Completion) {
        guard let endpoint = replica.endpoint else {
            sendOverTLS(request, to: replica, upstream: upstream, completion: completion)
            return
        }
        upstream.execute(UpstreamLane(endpoint: endpoint, model: request.model), headers: request.headers, body: request.body,
                         timeout: request.timeout, receiver: CompletionReceiver(completion))
    }

    /// To an https replica, through async-http-client; `completion` runs on `upstream`'s thread.
    func sendOverTLS(_ request: Outbound, to replica: Replica, upstream: any UpstreamPool, completion: @escaping Completion) {
        let answered = upstream.callback(completion)
        let url = replica.url
        Task {
            do {
                answered(.success(try await self.forwardOverTLS(to: url, request: request)))
            } catch {
                answered(.failure(error))
            }
        }
    }

    private func forwardOverTLS(to base: String, request: Outbound) async throws -> Forwarded {
        var outbound = HTTPClientRequest(url: "\(base)/v2/models/\(request.model)/infer")
        outbound.method = .POST
        outbound.headers = request.headers.httpHeaders
        outbound.body = .bytes(request.body)
        let response = try await http.execute(outbound, deadline: .now() + request.timeout)
        let bytes = try await response.body.collect(upTo: UpstreamClient.maxResponseBytes)
        return Forwarded(status: response.status, headers: AnswerHeaders(response.headers), body: bytes)
    }

    /// Copies the request to the shadow version when sampled, compares its answer with the
    /// primary's and records the result; never delays or changes the client's answer.
    fileprivate func shadow(_ deployment: LiveDeployment, primary: Forwarded, request: Outbound, upstream: any UpstreamPool) {
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

/// Where a routed request's outcome goes, once, on the loop it was routed on: the handler of
/// the client's connection.
protocol InferenceReceiver: AnyObject {
    func inferenceFinished(_ result: Result<InferenceRouter.Forwarded, any Error>)
}

/// A closure as a receiver, where one allocation more does not matter (shadow copies, the
/// codec's path).
private final class CompletionReceiver: InferenceReceiver, UpstreamReceiver {
    let completion: InferenceRouter.Completion

    init(_ completion: @escaping InferenceRouter.Completion) {
        self.completion = completion
    }

    func inferenceFinished(_ result: Result<InferenceRouter.Forwarded, any Error>) {
        completion(result)
    }

    func upstreamFinished(_ outcome: Result<UpstreamResponse, UpstreamError>) {
        completion(outcome.map { InferenceRouter.Forwarded(status: $0.status, headers: $0.headers, body: $0.body) }.mapError { $0 })
    }
}

/// One request on its way through a deployment, after the bulkhead let it in: the version
/// tried, the replica leased, the retries left. One object carries it from route to answer (a
/// chain of closures, one for each step, cost an allocation at each).
///
/// Versions: the first (chosen by weight or the sticky key, or named by the client); when it
/// cannot answer at all, the other versions with weight, unless the client named it. Replicas
/// of a version: up to 1 + `retries`, each tried once.
private final class RoutedInference: UpstreamReceiver {
    let router: InferenceRouter
    let deployment: LiveDeployment
    let request: InferenceRouter.Outbound
    let upstream: any UpstreamPool
    let receiver: any InferenceReceiver
    let first: Int
    let versionPinned: Bool
    /// Versions still to try after the first: listed when the first could not answer.
    private var fallbacks: ArraySlice<Int>?
    /// The version tried now (an index of the spec's targets), its replicas and its stats.
    private var version: Int
    private var pool: ReplicaPool?
    private var stats: VersionStats?
    private var started = ContinuousClock.now
    private var retriesLeft = 0
    private var excluded: Set<String> = []
    private var lease: Replica.Lease?

    init(
        router: InferenceRouter, deployment: LiveDeployment, request: InferenceRouter.Outbound, upstream: any UpstreamPool,
        receiver: any InferenceReceiver, first: Int, versionPinned: Bool
    ) {
        self.router = router
        self.deployment = deployment
        self.request = request
        self.upstream = upstream
        self.receiver = receiver
        self.first = first
        self.versionPinned = versionPinned
        self.version = first
    }

    func start() {
        tryVersion(first)
    }

    private func tryVersion(_ index: Int) {
        guard let pool = deployment.targetPools[index], let stats = deployment.targetStats[index] else { return tryNextVersion() }
        version = index
        self.pool = pool
        self.stats = stats
        started = .now
        retriesLeft = deployment.spec.retries
        excluded = []
        attempt()
    }

    private func tryNextVersion() {
        if fallbacks == nil {
            let targets = deployment.spec.targets
            fallbacks = versionPinned ? [] : targets.indices.filter { $0 != first && targets[$0].weight > 0 }[...]
            if !fallbacks!.isEmpty {
                router.logger.warning("version could not answer; trying another",
                                      metadata: ["model": "\(request.model)", "version": "\(targets[first].version)"])
            }
        }
        guard let next = fallbacks!.popFirst() else {
            return finish(.failure(WharfError(.unavailable, "no replica of model \(request.model) can answer now")))
        }
        tryVersion(next)
    }

    /// The next replica of the version, unless none is available.
    private func attempt() {
        guard let lease = pool!.acquire(excluding: excluded, random: &upstream.random) else { return versionFailed() }
        self.lease = lease
        guard let endpoint = lease.replica.endpoint else {
            router.sendOverTLS(request, to: lease.replica, upstream: upstream) { self.replicaAnswered($0) }
            return
        }
        upstream.execute(UpstreamLane(endpoint: endpoint, model: request.model), headers: request.headers, body: request.body,
                         timeout: request.timeout, receiver: self)
    }

    func upstreamFinished(_ outcome: Result<UpstreamResponse, UpstreamError>) {
        switch outcome {
        case .success(let response):
            replicaAnswered(.success(InferenceRouter.Forwarded(status: response.status, headers: response.headers, body: response.body)))
        case .failure(let error):
            replicaAnswered(.failure(error))
        }
    }

    private func replicaAnswered(_ result: Result<InferenceRouter.Forwarded, any Error>) {
        let lease = self.lease!
        self.lease = nil
        switch result {
        case .success(let answer):
            // 503: not ready or overloaded; 404: this replica does not serve the model (a
            // misdeployed version). Nothing was evaluated; another replica may take it.
            let unavailable = answer.status == .serviceUnavailable || answer.status == .notFound
            lease.release(failed: unavailable || answer.status.code >= 500, now: .now)
            guard unavailable else { return versionAnswered(answer) }
        case .failure(let error):
            lease.release(failed: true, now: .now)
            if InferenceRouter.isTimeout(error) {
                // The version took the request and did not answer. It counts against it like
                // any failure, or a canary whose replicas hang would pass its steps.
                stats!.record(failed: true, duration: .now - started)
                return finish(.failure(WharfError(
                    .unavailable, "model \(request.model) did not answer within \(request.timeout.nanoseconds / 1_000_000) ms")))
            }
            // Connection refused, reset or cut: inference is a pure function, so trying it on
            // another replica is safe even if this one had started on it.
            router.logger.debug("replica failed", metadata: ["replica": "\(lease.replica.url)", "error": "\(error)"])
        }
        guard retriesLeft > 0 else { return versionFailed() }
        retriesLeft -= 1
        excluded.insert(lease.replica.url)
        attempt()
    }

    /// The version could not answer: it counts against it, and the next is tried.
    private func versionFailed() {
        stats!.record(failed: true, duration: .now - started)
        tryNextVersion()
    }

    private func versionAnswered(_ answer: InferenceRouter.Forwarded) {
        var answer = answer
        let failed = answer.status.code >= 500
        stats!.record(failed: failed, duration: .now - started)
        if !failed { router.shadow(deployment, primary: answer, request: request, upstream: upstream) }
        answer.headers.deploymentVersion = deployment.spec.targets[version].version
        finish(.success(answer))
    }

    private func finish(_ result: Result<InferenceRouter.Forwarded, any Error>) {
        deployment.inFlight.leave()
        receiver.inferenceFinished(result)
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
