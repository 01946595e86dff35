import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Synchronization
import Testing
import WharfCore
@testable import WharfGateway

@Suite("Traffic splitting, stickiness and shadow sampling")
struct TrafficSplitterTests {
    private func targets(_ weights: [(String, Double)]) -> [DeploymentSpec.Target] {
        weights.map { DeploymentSpec.Target(version: $0.0, weight: $0.1, replicas: ["http://127.0.0.1:1"]) }
    }

    /// With a seeded source the split is exact and repeatable; over 100,000 draws each share
    /// is within 0.5 % of its weight.
    @Test func weightsAreHonoured() {
        let split = targets([("canary", 5), ("stable", 95)])
        func draw(seed: UInt64) -> [Int] {
            var random = SeededGenerator(seed: seed)
            var counts = [0, 0]
            for _ in 0..<100_000 { counts[TrafficSplitter.choose(split, key: nil, random: &random)!] += 1 }
            return counts
        }
        let counts = draw(seed: 7)
        #expect(counts == draw(seed: 7))
        #expect(abs(Double(counts[0]) / 100_000 - 0.05) < 0.005)
        let three = targets([("a", 1), ("b", 0), ("c", 3)])
        var random = SeededGenerator(seed: 1)
        var tally = [0, 0, 0]
        for _ in 0..<100_000 { tally[TrafficSplitter.choose(three, key: nil, random: &random)!] += 1 }
        #expect(tally[1] == 0)
        #expect(abs(Double(tally[0]) / 100_000 - 0.25) < 0.005)
        #expect(TrafficSplitter.choose(targets([("a", 0)]), key: nil, random: &random) == nil)
    }

    /// A key always lands on the same version; as the canary (listed first) grows, keys only
    /// move from the stable version to the canary, never back.
    @Test func stickyKeysStayAndOnlyMoveForward() {
        var random = SeededGenerator(seed: 3)
        let users = (0..<20_000).map { "user-\($0)" }
        var previous: [Int]?
        for share in [5.0, 25, 50, 100] {
            let split = targets([("canary", share), ("stable", 100 - share)])
            let chosen = users.map { TrafficSplitter.choose(split, key: $0, random: &random)! }
            #expect(chosen == users.map { TrafficSplitter.choose(split, key: $0, random: &random)! })
            let onCanary = Double(chosen.filter { $0 == 0 }.count) / Double(users.count)
            #expect(abs(onCanary - share / 100) < 0.02, "\(share)%: \(onCanary)")
            if let previous {
                #expect(!zip(previous, chosen).contains { $0 == 0 && $1 == 1 }, "a user went back from the canary at \(share)%")
            }
            previous = chosen
        }
    }

    @Test func shadowSamplingFollowsTheShare() {
        var random = SeededGenerator(seed: 11)
        let copied = (0..<100_000).filter { _ in TrafficSplitter.sampleShadow(share: 0.1, random: &random) }.count
        #expect(abs(Double(copied) / 100_000 - 0.1) < 0.005)
        #expect(!TrafficSplitter.sampleShadow(share: 0, random: &random))
        #expect((0..<1000).allSatisfy { _ in TrafficSplitter.sampleShadow(share: 1, random: &random) })
    }

    @Test func specsAreValidated() {
        let good = DeploymentSpec(model: "m", targets: targets([("1", 100)]))
        #expect((try? good.validated()) != nil)
        let bad: [DeploymentSpec] = [
            DeploymentSpec(model: "m", targets: []),
            DeploymentSpec(model: "m", targets: targets([("1", 0)])),
            DeploymentSpec(model: "m", targets: targets([("1", -1), ("2", 5)])),
            DeploymentSpec(model: "m", targets: targets([("1", 1), ("1", 5)])),
            DeploymentSpec(model: "m", targets: [.init(version: "1", weight: 1, replicas: ["ftp://x"])]),
            DeploymentSpec(model: "m", targets: [.init(version: "1", weight: 1, replicas: [])]),
            DeploymentSpec(model: "../m", targets: targets([("1", 1)])),
            DeploymentSpec(model: "m", targets: targets([("1", 1)]), shadow: .init(version: "2", share: 1.5, replicas: ["http://a"])),
            DeploymentSpec(model: "m", targets: targets([("1", 1)]), maxConcurrency: 0),
        ]
        for spec in bad { #expect(throws: WharfError.self) { try spec.validated() } }
    }

    @Test func replicaURLsAreCheckedNormalizedAndNotRepeated() throws {
        func version(_ replicas: [String]) -> DeploymentSpec {
            DeploymentSpec(model: "m", targets: [.init(version: "1", weight: 1, replicas: replicas)])
        }
        func refusal(_ replicas: [String]) -> String? {
            do {
                _ = try version(replicas).validated()
                return nil
            } catch {
                return error.message
            }
        }
        // Kept without trailing slashes, so that url + "/v2/health/ready" is the health route.
        let valid = try version(["http://10.0.0.5:8080/", "http://models.internal/champ//", "https://[::1]"]).validated()
        #expect(valid.targets[0].replicas == ["http://10.0.0.5:8080", "http://models.internal/champ", "https://[::1]"])
        // The same server twice, however written.
        for pair in [["http://a:80", "http://a"], ["http://Host:9000", "http://host:9000/"], ["https://a", "https://a:443"], ["http://[::1]:1", "http://[::1]:1/"]] {
            #expect(refusal(pair)?.contains("targets[0] (version 1): replica \"\(pair[1])\" is listed twice (also as \"\(pair[0])\")") == true)
        }
        // Schemes are case-insensitive, and written in lower case.
        #expect(try version(["HTTP://a:1", "Https://b"]).validated().targets[0].replicas == ["http://a:1", "https://b"])
        // A service's URL is checked the same way; a Unix socket (no port) passes as given.
        #expect(try ServiceURL.check("HTTP://127.0.0.1:8081/", "the registry URL") == "http://127.0.0.1:8081")
        #expect(try ServiceURL.check("http+unix://%2Ftmp%2Fregistry.sock/", "the registry URL") == "http+unix://%2Ftmp%2Fregistry.sock")
        #expect(throws: WharfError.self) { try ServiceURL.check("http://127.0.0.1:99999", "the registry URL") }
        // Different servers, or the same server behind different prefixes, are fine.
        #expect(refusal(["http://a:1", "http://a:2", "https://a:1", "http://a:1/p"]) == nil)
        let reasons = [
            "http://": "has no host",
            "http://:80": "has no host",
            "http://host:0": "it must be a number 1…65535",
            "http://host:99999": "it must be a number 1…65535",
            "http://host:+80": "it must be a number 1…65535",
            "http://host:８０": "it must be a number 1…65535",
            "http://user:pw@host": "user name or password",
            "http://host/a b": "spaces or control characters",
            "http://host/v?x=1": "query or fragment",
            "http://[::1": "closing ]",
            "http://[::1]x": "after its IPv6 address",
            "ftp://host": "must be an http:// or https:// URL",
            "http://" + String(repeating: "a", count: 600): "longer than 512 bytes",
        ]
        for (url, reason) in reasons {
            #expect(refusal([url])?.contains(reason) == true, "\(url)")
        }
        // A shadow's and a canary's replicas are held to the same rules.
        let shadowed = DeploymentSpec(model: "m", targets: [.init(version: "1", weight: 1, replicas: ["http://a"])],
                                      shadow: .init(version: "2", share: 0.5, replicas: ["http://b/", "http://B"]))
        #expect(throws: WharfError.self) { try shadowed.validated() }
        #expect(throws: WharfError.self) { try CanaryPlan(version: "2", replicas: ["http://a:70000"]).validated() }
        #expect(try CanaryPlan(version: "2", replicas: ["http://a/"]).validated().replicas == ["http://a"])
    }
}

@Suite("Replicas: least outstanding, breaker, health")
struct ReplicaTests {
    @Test func theBreakerOpensAfterFailuresAndTheHealthCheckClosesIt() throws {
        let replica = Replica(url: "http://127.0.0.1:1")
        let start = ContinuousClock.now
        for _ in 0..<Replica.failureThreshold {
            try #require(replica.acquire(now: start)).release(failed: true, now: start)
        }
        #expect(replica.snapshot.breakerOpen)
        #expect(replica.acquire(now: start + .milliseconds(100)) == nil)
        // Still ready (its readiness answers while its inferences fail): the breaker stays open.
        replica.recordHealth(ready: true)
        #expect(replica.acquire(now: start + .milliseconds(100)) == nil)
        // After the cooldown one trial request goes through; a second waits for its outcome.
        let trial = try #require(replica.acquire(now: start + .seconds(1)))
        #expect(trial.isTrial)
        #expect(replica.acquire(now: start + .seconds(1)) == nil)
        trial.release(failed: true, now: start + .seconds(1))
        // The trial failed: open again, for longer.
        #expect(replica.acquire(now: start + .milliseconds(1_900)) == nil)
        try #require(replica.acquire(now: start + .seconds(3))).release(failed: false, now: start + .seconds(3))
        #expect(!replica.snapshot.breakerOpen)
        // Not ready: no requests; ready again (restarted): the breaker is closed at once.
        let held = (0..<3).compactMap { _ in replica.acquire(now: .now) }
        replica.recordHealth(ready: false)
        #expect(replica.acquire(now: .now) == nil)
        for lease in held { lease.release(failed: true, now: .now) }
        replica.recordHealth(ready: true)
        #expect(replica.acquire(now: .now) != nil)
    }

    /// Requests sent before the breaker opened and ending after it do not judge the replica:
    /// only the trial does.
    @Test func onlyTheTrialClosesOrReopensTheBreaker() throws {
        let replica = Replica(url: "http://127.0.0.1:1")
        let start = ContinuousClock.now
        let slow = (0..<5).compactMap { _ in replica.acquire(now: start) }
        for _ in 0..<Replica.failureThreshold {
            try #require(replica.acquire(now: start)).release(failed: true, now: start)
        }
        #expect(replica.snapshot.breakerOpen)
        let trial = try #require(replica.acquire(now: start + .seconds(1)))
        // An old request succeeds while the trial runs: the breaker stays open, no second trial.
        slow[0].release(failed: false, now: start + .seconds(1))
        #expect(replica.state.withLock { $0.openUntil } != nil)
        #expect(replica.acquire(now: start + .seconds(1)) == nil)
        // Old requests fail: they neither reopen the breaker nor lengthen its next cooldown.
        let cooldown = replica.state.withLock { $0.cooldown }
        for lease in slow.dropFirst() { lease.release(failed: true, now: start + .seconds(1)) }
        #expect(replica.state.withLock { ($0.cooldown, $0.openUntil) } == (cooldown, start + .milliseconds(500)))
        trial.release(failed: false, now: start + .seconds(1))
        #expect(!replica.snapshot.breakerOpen)
        #expect(replica.acquire(now: start + .seconds(1))?.isTrial == false)
    }

    /// A replica found ready again (restarted) has its breaker closed at once; a trial sent
    /// before that and failing after does not reopen it, and a new trial is not blocked by it.
    @Test func aHealthResetOutranksAnEarlierTrial() throws {
        let replica = Replica(url: "http://127.0.0.1:1")
        let start = ContinuousClock.now
        for _ in 0..<Replica.failureThreshold {
            try #require(replica.acquire(now: start)).release(failed: true, now: start)
        }
        let staleTrial = try #require(replica.acquire(now: start + .seconds(1)))
        #expect(staleTrial.isTrial)
        replica.recordHealth(ready: false)
        replica.recordHealth(ready: true)
        #expect(replica.state.withLock { $0.openUntil } == nil)
        staleTrial.release(failed: true, now: start + .seconds(2))
        #expect(replica.state.withLock { ($0.openUntil, $0.consecutiveFailures, $0.outstanding) } == (nil, 0, 0))
        // Open again by new failures: a trial goes through after the cooldown.
        for _ in 0..<Replica.failureThreshold {
            try #require(replica.acquire(now: start + .seconds(3))).release(failed: true, now: start + .seconds(3))
        }
        #expect(replica.acquire(now: start + .seconds(4))?.isTrial == true)
    }

    @Test func theLeastLoadedReplicaIsChosen() {
        let replicas = (1...3).map { Replica(url: "http://127.0.0.1:\($0)") }
        let pool = ReplicaPool(replicas)
        var random = SeededGenerator(seed: 5)
        var held: [Replica.Lease] = []
        for _ in 0..<6 { held.append(pool.acquire(excluding: [], random: &random)!) }
        #expect(replicas.map(\.outstanding) == [2, 2, 2])
        held[0].release(failed: false, now: .now)
        let next = pool.acquire(excluding: [], random: &random)!
        #expect(next.replica.url == held[0].replica.url)
        #expect(pool.acquire(excluding: Set(replicas.map(\.url)), random: &random) == nil)
    }
}

@Suite("Canary judgement")
struct CanaryTests {
    private let plan = CanaryPlan(version: "2", replicas: ["http://127.0.0.1:2"], steps: [5, 50, 100], intervalSeconds: 1,
                                  maxErrorRate: 0.01, maxP99Milliseconds: 50, minRequests: 20)

    @Test func limitsAreJudgedOnEnoughRequests() {
        func summary(_ requests: Int, _ errorRate: Double, _ p99: Double) -> VersionStats.Summary {
            VersionStats.Summary(requests: requests, errorRate: errorRate, p50Milliseconds: p99 / 2, p99Milliseconds: p99, shadowCompared: 0, shadowDisagreementRate: nil)
        }
        #expect(CanaryController.verdict(summary(10, 1, 5), plan: plan, final: true) == nil)
        #expect(CanaryController.verdict(summary(100, 0.005, 5), plan: plan, final: true) == nil)
        #expect(CanaryController.verdict(summary(100, 0.05, 5), plan: plan, final: false)?.contains("error rate 5.00%") == true)
        #expect(CanaryController.verdict(summary(50, 0, 80), plan: plan, final: false) == nil)
        #expect(CanaryController.verdict(summary(50, 0, 80), plan: plan, final: true)?.contains("p99 80.0 ms") == true)
    }

    @Test func theCanaryComesFirstAndTheStableVersionsShareTheRest() {
        let stable = DeploymentSpec(model: "m", targets: [
            .init(version: "1", weight: 3, replicas: ["http://127.0.0.1:1"]),
            .init(version: "1b", weight: 1, replicas: ["http://127.0.0.1:3"]),
        ])
        let spec = CanaryController.spec(stable: stable, plan: plan, percent: 20)
        #expect(spec.targets.map(\.version) == ["2", "1", "1b"])
        #expect(spec.targets.map(\.weight) == [20, 60, 20])
        #expect((try? spec.validated()) != nil)
        #expect(throws: WharfError.self) { try CanaryPlan(version: "2", replicas: ["http://a"], steps: [50, 25, 100]).validated() }
        #expect(throws: WharfError.self) { try CanaryPlan(version: "2", replicas: ["http://a"], steps: [5, 50]).validated() }
    }

    /// A deployments file from an older gateway (or edited by hand) is held to today's rules
    /// when the gateway starts: URLs normalized, a spec that names a replica twice refused.
    @Test func storedSpecsAreCheckedWhenLoaded() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("deployments-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try DeploymentStore(file: file).set(DeploymentSpec(model: "m", targets: [.init(version: "1", weight: 100, replicas: ["http://127.0.0.1:1"])]),
                                            actor: "t", action: "set", detail: "")
        let written = try String(contentsOfFile: file, encoding: .utf8)
        let replica = #""http:\/\/127.0.0.1:1""#
        #expect(written.contains(replica))
        try written.replacingOccurrences(of: replica, with: #""http:\/\/127.0.0.1:1\/""#).write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try DeploymentStore(file: file).entry("m")?.spec.targets[0].replicas == ["http://127.0.0.1:1"])
        try written.replacingOccurrences(of: replica, with: #""http:\/\/127.0.0.1:1", "http:\/\/127.0.0.1:1\/""#).write(toFile: file, atomically: true, encoding: .utf8)
        do {
            _ = try DeploymentStore(file: file)
            Issue.record("a spec naming one replica twice was loaded")
        } catch {
            #expect(error.message.hasPrefix(file + ": deployment m: targets[0] (version 1): replica"))
            #expect(error.message.contains("is listed twice"))
        }
    }

    /// `rollback` after a rollout goes back to the spec before it: after a promotion, the old
    /// stable spec (not the last step, which already gave the new version everything); after a
    /// rollout stopped by hand, what it went back to before the rollout began.
    @Test func aRolloutRollsBackToTheSpecBeforeIt() async throws {
        let store = try DeploymentStore(file: nil)
        let canaries = CanaryController(store: store, logger: Logger(label: "test"), checkEvery: .milliseconds(20))
        func spec(_ version: String) -> DeploymentSpec {
            DeploymentSpec(model: "m", targets: [.init(version: version, weight: 100, replicas: ["http://127.0.0.1:1"])])
        }
        func waitFor(_ condition: () -> Bool) async throws {
            // Generous: the whole suite runs at once on two cores (it took 0.2 s alone).
            let deadline = ContinuousClock.now + .seconds(120)
            while !condition(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        }
        try store.set(spec("0"), actor: "t", action: "set", detail: "")
        try store.set(spec("1"), actor: "t", action: "set", detail: "")
        #expect(store.entry("m")?.previous == spec("0"))

        // No requests: too few to judge, so every step passes and the new version is promoted.
        _ = try canaries.start(model: "m", plan: CanaryPlan(version: "2", replicas: ["http://127.0.0.1:2"], steps: [50, 100], intervalSeconds: 0.1),
                               actor: "t")
        try await waitFor { canaries.status("m")?.state != "running" }
        #expect(canaries.status("m")?.state == "promoted")
        #expect(store.entry("m")?.spec.targets.map(\.version) == ["2"])
        #expect(store.entry("m")?.previous == spec("1"))

        // Stopped by hand at its first step: version 2 alone again, and rollback still goes to 1.
        _ = try canaries.start(model: "m", plan: CanaryPlan(version: "3", replicas: ["http://127.0.0.1:3"], steps: [50, 100], intervalSeconds: 60),
                               actor: "t")
        try await waitFor { store.entry("m")?.spec.targets.count == 2 }
        #expect(store.entry("m")?.spec.targets.map(\.version) == ["3", "2"])
        // Changes by hand wait for no canary (a step would undo them).
        #expect(throws: WharfError.self) { try canaries.withoutRunningCanary("m") { () throws(WharfError) in } }
        #expect(try canaries.abort(model: "m", actor: "t", reason: "by hand"))
        #expect(throws: Never.self) { try canaries.withoutRunningCanary("m") { () throws(WharfError) in } }
        #expect(store.entry("m")?.spec.targets.map(\.version) == ["2"])
        #expect(store.entry("m")?.previous == spec("1"))
    }

    /// The bulkhead counts a model's requests across spec changes: requests of the old spec
    /// still running count against the new one's limit.
    @Test func requestsInFlightOutliveASpecChange() throws {
        let store = try DeploymentStore(file: nil)
        let spec = DeploymentSpec(model: "m", targets: [.init(version: "1", weight: 100, replicas: ["http://127.0.0.1:1"])])
        try store.set(spec, actor: "t", action: "set", detail: "")
        for _ in 0..<3 { _ = store.deployment("m")?.inFlight.enter() }
        var changed = spec
        changed.targets.append(.init(version: "2", weight: 0, replicas: ["http://127.0.0.1:2"]))
        try store.set(changed, actor: "t", action: "set", detail: "")
        #expect(store.deployment("m")?.spec == changed)
        #expect(store.deployment("m")?.inFlight.value == 3)
    }

    @Test func answersAreComparedByValue() {
        let a = #"{"model_name":"m","outputs":[{"name":"p","data":[0.5,0.25]}]}"#
        let b = #"{"outputs":[{"data":[0.5000000001,0.25],"name":"p"}],"model_name":"m","model_version":"2"}"#
        let c = #"{"outputs":[{"name":"p","data":[0.5,0.75]}]}"#
        #expect(OutputComparison.agree(.init(string: a), .init(string: b)))
        #expect(!OutputComparison.agree(.init(string: a), .init(string: c)))
    }
}

@Suite("The inference path's parsing")
struct ForwardingParsingTests {
    private func target(_ uri: String, method: NIOHTTP1.HTTPMethod = .POST) -> InferenceForwarder.Target? {
        InferenceForwarder.target(of: HTTPRequestHead(version: .http1_1, method: method, uri: uri))
    }

    @Test func inferencePathsAreRecognisedAndNothingElse() {
        #expect(target("/v2/models/champ/infer") == .init(model: "champ", version: nil))
        #expect(target("/v2/models/champ/infer?debug=1") == .init(model: "champ", version: nil))
        #expect(target("/v2/models/champ/versions/canary/infer") == .init(model: "champ", version: "canary"))
        // Left to the router (which answers 404 or 405 in its usual way).
        #expect(target("/v2/models/champ/infer", method: .GET) == nil)
        #expect(target("/v2/models/champ") == nil)
        #expect(target("/v2/models//infer") == nil)
        #expect(target("/v2/models/infer") == nil)
        #expect(target("/v2/models/champ/versions//infer") == nil)
        #expect(target("/v2/models/champ/versions/1/2/infer") == nil)
        #expect(target("/v2/models/champ/other/1/infer") == nil)
        #expect(target("/v2/models/champ/inferx") == nil)
        #expect(target("/v1/models/champ/infer") == nil)
        // Names are the router's to check: a hostile one is taken, then refused with 400.
        #expect(target("/v2/models/..%2F/infer") == .init(model: "..%2F", version: nil))
    }

    @Test func replicaURLsAreReadOnce() {
        let plain = UpstreamEndpoint(url: "http://10.0.0.5:8080")
        #expect(plain?.host == "10.0.0.5" && plain?.port == 8080 && plain?.pathPrefix == "" && plain?.authority == "10.0.0.5:8080")
        let prefixed = UpstreamEndpoint(url: "http://models.internal/champ/")
        #expect(prefixed?.host == "models.internal" && prefixed?.port == 80 && prefixed?.pathPrefix == "/champ")
        let v6 = UpstreamEndpoint(url: "http://[::1]:9000")
        #expect(v6?.host == "::1" && v6?.port == 9000 && v6?.authority == "[::1]:9000")
        // https goes through async-http-client; nonsense is refused.
        #expect(UpstreamEndpoint(url: "https://10.0.0.5:8443") == nil)
        #expect(UpstreamEndpoint(url: "http://") == nil)
        #expect(UpstreamEndpoint(url: "http://host:0") == nil)
        #expect(UpstreamEndpoint(url: "http://host:99999") == nil)
        #expect(UpstreamEndpoint(url: "http://user@host:80") == nil)
        #expect(UpstreamEndpoint(url: "http://host/a b") == nil)
        #expect(UpstreamEndpoint(url: "http://host/a\r\nx: y") == nil)
    }
}

@Suite("Reading replicas' answers")
struct UpstreamResponseParserTests {
    private func parser(maxBody: Int = 1 << 20) -> UpstreamResponseParser {
        UpstreamResponseParser(maxBodyBytes: maxBody)
    }

    /// Feeds `text` in pieces of `piece` bytes; the answer once it is whole.
    private func read(_ text: String, piece: Int = .max) throws -> UpstreamResponseParser.Answer? {
        var parser = parser()
        let bytes = Array(text.utf8)
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + piece)
            if let answer = try parser.feed(ByteBuffer(bytes: bytes[start..<end])) {
                #expect(end == bytes.count, "the answer ended before its last byte")
                return answer
            }
            start = end
        }
        return nil
    }

    private func failure(_ text: String, maxBody: Int = 1 << 20) -> UpstreamResponseParser.Failure? {
        var parser = parser(maxBody: maxBody)
        do {
            _ = try parser.feed(ByteBuffer(string: text))
            return nil
        } catch {
            return error
        }
    }

    @Test func aLengthDelimitedAnswerKeepsOnlyThePassedHeaders() throws {
        let text = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Wharf-Model-Version:  3 \r\nx-internal: secret\r\n"
            + "Content-Length: 11\r\n\r\n{\"ok\":true}"
        for piece in [1, 2, 7, 1000] {
            let answer = try #require(try read(text, piece: piece))
            #expect(answer.status == .ok)
            #expect(answer.keepAlive)
            #expect(String(buffer: answer.body) == #"{"ok":true}"#)
            #expect(answer.headers.first(name: "content-type") == "application/json")
            #expect(answer.headers.first(name: "x-wharf-model-version") == "3")
            var written = ByteBuffer()
            answer.headers.write(into: &written)
            #expect(String(buffer: written) == "\r\ncontent-type: application/json\r\nx-wharf-model-version: 3")
        }
    }

    @Test func interimAnswersAreSkippedAndChunkedBodiesJoined() throws {
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5;ext=1\r\nhello\r\n1A\r\n, the model is overloaded.\r\n0\r\nx-trailer: t\r\n\r\n"
        for piece in [1, 3, 1000] {
            let answer = try #require(try read(text, piece: piece))
            #expect(answer.status == .serviceUnavailable)
            #expect(answer.headers.first(name: "retry-after") == "1")
            #expect(String(buffer: answer.body) == "hello, the model is overloaded.")
            #expect(answer.keepAlive)
        }
    }

    @Test func theConnectionIsKeptOnlyWhenTheReplicaSaysSo() throws {
        #expect(try read("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")?.keepAlive == false)
        #expect(try read("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")?.keepAlive == false)
        #expect(try read("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")?.keepAlive == true)
        #expect(try read("HTTP/1.1 204 No Content\r\n\r\n")?.body.readableBytes == 0)
    }

    @Test func anAnswerWithoutLengthEndsWithTheConnection() throws {
        var parser = parser()
        #expect(try parser.feed(ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\npart one, ")) == nil)
        #expect(try parser.feed(ByteBuffer(string: "part two")) == nil)
        let finished = parser.finishAtClose()
        let answer = try #require(finished)
        #expect(String(buffer: answer.body) == "part one, part two")
        #expect(!answer.keepAlive)
        // A length-delimited answer cut short is not whole.
        var cut = self.parser()
        #expect(try cut.feed(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")) == nil)
        #expect(cut.finishAtClose() == nil)
        #expect(cut.hasStarted)
    }

    @Test func ambiguousOrBrokenFramingIsRefused() {
        let malformed: [String] = [
            "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
            "HTTP/1.1 2x0 OK\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "ICY 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\n: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ]
        for text in malformed {
            guard case .malformed = failure(text) else {
                Issue.record("accepted: \(text.debugDescription)")
                continue
            }
        }
        #expect(failure("HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n", maxBody: 1000) == .tooLarge)
        #expect(failure("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7D0\r\n", maxBody: 1000) == .tooLarge)
        #expect(failure("HTTP/1.1 200 OK\r\nx: " + String(repeating: "a", count: 70_000)) != nil)
    }

    @Test func requestHeadsPassOnlyTheTensorHeadersAndTheID() throws {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "inference-header-content-length", value: "a\r\nx-injected: 1")
        headers.add(name: "x-other", value: "v")
        var random = SeededGenerator(seed: 1)
        let made = RequestID(given: "bad id", random: &random)
        let forwarded = ForwardedRequestHeaders(headers, requestID: made)
        let lane = UpstreamLane(endpoint: try #require(UpstreamEndpoint(url: "http://10.0.0.5:8080/base")), model: "m")
        let start = UpstreamRequestBytes.headStart(for: lane)
        let small = UpstreamRequestBytes.request(start: start, headers: forwarded, body: ByteBuffer(string: "{}"))
        // A value that could break the framing is left out; an unacceptable id is replaced.
        #expect(made.string.count == 16 && made.string != "bad id")
        #expect(String(buffer: small.head) == "POST /base/v2/models/m/infer HTTP/1.1\r\nhost: 10.0.0.5:8080\r\ncontent-type: application/json"
            + "\r\nx-request-id: \(made.string)\r\ncontent-length: 2\r\n\r\n{}")
        #expect(small.body == nil)
        // A large body is not copied into the head's buffer.
        let large = ByteBuffer(repeating: UInt8(ascii: "x"), count: UpstreamRequestBytes.inlineBodyLimit + 1)
        let given = ForwardedRequestHeaders(HTTPHeaders(), requestID: RequestID(given: "client-7", random: &random))
        let split = UpstreamRequestBytes.request(start: start, headers: given, body: large)
        #expect(String(buffer: split.head) == "POST /base/v2/models/m/infer HTTP/1.1\r\nhost: 10.0.0.5:8080\r\nx-request-id: client-7"
            + "\r\ncontent-length: \(large.readableBytes)\r\n\r\n")
        #expect(split.body == large)
    }
}

@Suite("Plain inference requests, read at the byte level")
struct PlainInferenceRequestTests {
    private func parse(_ text: String, maxBody: Int = 1 << 20) -> PlainInferenceRequest.Parsed {
        PlainInferenceRequest.parse(ByteBuffer(string: text), maxBodyBytes: maxBody)
    }

    private func isOther(_ text: String, maxBody: Int = 1 << 20) -> Bool {
        if case .other = parse(text, maxBody: maxBody) { return true }
        return false
    }

    @Test func plainRequestsAreTakenWithEveryHeader() throws {
        let head = "POST /v2/models/champ/infer HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nAuthorization: Bearer k\r\n"
            + "X-User:  42 \r\nConnection: keep-alive\r\nContent-Length: 7\r\n\r\n"
        guard case .request(let request) = parse(head + "{\"a\":1}") else {
            Issue.record("not taken")
            return
        }
        #expect(request.model == "champ" && request.version == nil && request.path == "/v2/models/champ/infer")
        #expect(request.headLength == head.utf8.count && request.contentLength == 7)
        #expect(request.first(name: "authorization") == "Bearer k")
        #expect(request.first(name: "X-User") == "42")
        #expect(request.first(name: "x-api-key") == nil)
        #expect(request.value(request.contentType).map { String(buffer: $0) } == "application/json")
        #expect(request.fields.map(\.name) == ["Host", "Content-Type", "Authorization", "X-User", "Connection", "Content-Length"])
        guard case .request(let versioned) = parse("POST /v2/models/champ/versions/canary/infer HTTP/1.1\r\nContent-Length: 0\r\n\r\n") else {
            Issue.record("versioned path not taken")
            return
        }
        #expect(versioned.model == "champ" && versioned.version == "canary")
    }

    @Test func partialHeadsWait() {
        for text in ["P", "POST /v2/mod", "POST /v2/models/champ/infer HTTP/1.1\r\nContent-Length: 7\r\n"] {
            guard case .incomplete = parse(text) else {
                Issue.record("not waiting for more: \(text.debugDescription)")
                continue
            }
        }
    }

    @Test func anythingElseIsLeftToTheCodec() {
        let plain = "POST /v2/models/champ/infer HTTP/1.1\r\n"
        let others = [
            "GET /v2/health/ready HTTP/1.1\r\n\r\n",
            "POST /v1/deployments HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "POST /v2/models/champ/infer?x=1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "POST /v2/models/ch%61mp/infer HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "POST /v2/models/champ/inferx HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "POST /v2/models/champ/other/1/infer HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "POST /v2/models//infer HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "POST /v2/models/champ/infer HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
            plain + "Transfer-Encoding: chunked\r\n\r\n",
            plain + "Content-Length: 1\r\nContent-Length: 1\r\n\r\n",
            plain + "Content-Length: +1\r\n\r\n",
            plain + "Expect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            plain + "Connection: close\r\nContent-Length: 1\r\n\r\n",
            plain + "Upgrade: h2c\r\nContent-Length: 1\r\n\r\n",
            plain + "Host: gw\r\n\r\n",
            plain + "X-A: 1\r\n folded\r\nContent-Length: 1\r\n\r\n",
            plain + "X-A: 1\nContent-Length: 1\r\n\r\n",
            plain + "X-A: caf\u{E9}\r\nContent-Length: 1\r\n\r\n",
            plain + "Bad Name: 1\r\nContent-Length: 1\r\n\r\n",
            plain + "X-A: " + String(repeating: "a", count: 9000),
        ]
        for text in others where !isOther(text) {
            Issue.record("taken: \(text.prefix(120).debugDescription)")
        }
        #expect(isOther(plain + "Content-Length: 2000\r\n\r\n", maxBody: 1000))
    }
}

/// The byte-level reader must never take a request that NIO's HTTP/1 parser (which reads
/// everything else on the connection) would frame differently: mutated requests are read by
/// both, and every one the reader takes must be, for NIO, the same method, target, headers and
/// body length, with the next request starting where the reader says.
@Suite("The byte-level reader agrees with NIO's parser")
struct PlainRequestDifferentialTests {
    private static let base = Array(("POST /v2/models/champ/infer HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        + "X-A: v\r\nContent-Length: 5\r\n\r\nhello").utf8)
    private static let sentinel = Array("GET /sentinel HTTP/1.1\r\nHost: gw\r\n\r\n".utf8)
    private static let bytes: [UInt8] = [0x0D, 0x0A, 0x20, 0x09, 0x3A, 0x2C, 0x30, 0x35, 0x39, 0x61, 0x41, 0x00, 0x7F, 0x80, 0xFF,
                                         0x2F, 0x3F, 0x25, 0x2D, 0x2B, 0x3B, 0x22]
    private static let insertions = ["Transfer-Encoding: chunked\r\n", "Content-Length: 5\r\n", "Content-Length: 6\r\n", " folded\r\n",
                                     "\r\n", "Connection: close\r\n", "Content-Length: 05\r\n", "X-B: \u{1}\r\n", "Expect: 100-continue\r\n"]

    private func mutate(_ request: [UInt8], random: inout some RandomNumberGenerator) -> [UInt8] {
        var bytes = request
        let headEnd = request.count - 5
        for _ in 0...Int.random(in: 0...2, using: &random) {
            let at = Int.random(in: 0..<headEnd, using: &random)
            switch Int.random(in: 0..<4, using: &random) {
            case 0: bytes[min(at, bytes.count - 1)] = Self.bytes.randomElement(using: &random)!
            case 1: bytes.insert(Self.bytes.randomElement(using: &random)!, at: min(at, bytes.count))
            case 2: if bytes.count > 10 { bytes.remove(at: min(at, bytes.count - 1)) }
            default:
                // At a line start, so that whole header lines come and go.
                let lineStarts = bytes.indices.filter { $0 > 0 && bytes[$0 - 1] == 0x0A && $0 < headEnd }
                if let start = lineStarts.randomElement(using: &random) {
                    bytes.insert(contentsOf: Array(Self.insertions.randomElement(using: &random)!.utf8), at: start)
                }
            }
        }
        return bytes
    }

    /// NIO's reading of `bytes`: the first request's head and body length, and whether the
    /// sentinel came next; nil when NIO refuses the bytes.
    private func nioReading(_ bytes: [UInt8]) -> (head: HTTPRequestHead, bodyBytes: Int, sentinelNext: Bool)? {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder()))
        defer { _ = try? channel.finish() }
        guard (try? channel.writeInbound(ByteBuffer(bytes: bytes))) != nil else { return nil }
        var parts: [HTTPServerRequestPart] = []
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) { parts.append(part) }
        guard case .head(let head)? = parts.first else { return nil }
        var bodyBytes = 0
        var index = 1
        while index < parts.count, case .body(let chunk) = parts[index] {
            bodyBytes += chunk.readableBytes
            index += 1
        }
        guard index < parts.count, case .end = parts[index] else { return nil }
        var sentinelNext = false
        if index + 1 < parts.count, case .head(let next) = parts[index + 1] { sentinelNext = next.uri == "/sentinel" }
        return (head, bodyBytes, sentinelNext)
    }

    @Test func everyRequestTakenIsFramedTheSameByNIO() {
        var random = SeededGenerator(seed: 2026)
        var taken = 0
        for round in 0..<3000 {
            let bytes = round == 0 ? Self.base : mutate(Self.base, random: &random)
            guard case .request(let request) = PlainInferenceRequest.parse(ByteBuffer(bytes: bytes), maxBodyBytes: 1 << 20) else {
                continue
            }
            // The reader frames the request as head + Content-Length bytes.
            guard request.headLength + request.contentLength <= bytes.count else { continue }
            // What follows the request (a mutation may have pushed head lines into the body) is
            // replaced by the sentinel: where the next request starts is what must agree.
            let framed = Array(bytes[0..<(request.headLength + request.contentLength)])
            taken += 1
            guard let nio = nioReading(framed + Self.sentinel) else {
                Issue.record("taken here, refused by NIO: \(String(decoding: bytes, as: UTF8.self).debugDescription)")
                continue
            }
            #expect(nio.head.method == .POST && nio.head.uri == request.path && nio.head.version == .http1_1)
            #expect(nio.bodyBytes == request.contentLength, "\(String(decoding: bytes, as: UTF8.self).debugDescription)")
            #expect(nio.head.headers.map(\.name) == request.fields.map(\.name))
            #expect(nio.head.headers.map { $0.value.trimmingCharacters(in: .whitespaces) } == request.fields.map(\.value))
            // The headers read here are NIO's first of each name.
            for name in ["content-type", "x-request-id", "authorization", "x-api-key"] {
                #expect(request.first(name: name) == nio.head.headers.first(name: name).map { $0.trimmingCharacters(in: .whitespaces) })
            }
            #expect(nio.sentinelNext, "\(String(decoding: bytes, as: UTF8.self).debugDescription)")
        }
        #expect(taken > 300, "too few mutated requests were taken to compare (\(taken))")
    }
}
