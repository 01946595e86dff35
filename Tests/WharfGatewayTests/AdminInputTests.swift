import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import Testing
import WharfCore
@testable import WharfGateway
import WharfHTTP

/// What the keys, shadow and deployment APIs take, and what they refuse before it can do harm.
@Suite("Admin input")
struct AdminInputTests {
    private func refusal(_ body: () throws(WharfError) -> Void) -> String? {
        do {
            try body()
            return nil
        } catch {
            return error.message
        }
    }

    @Test func anEmptyKeyIsNoKey() throws {
        #expect(AccessControl.presentedKey(bearer: nil, apiKey: "") == nil)
        #expect(AccessControl.presentedKey(bearer: "Bearer ", apiKey: nil) == nil)
        #expect(AccessControl.presentedKey(bearer: "Bearer ", apiKey: "k") == "k")
        #expect(AccessControl.presentedKey(bearer: "Bearer b", apiKey: "k") == "b")
        // Even a gateway whose admin key is the empty string's digest lets no empty header in.
        let access = try AccessControl.load(file: nil, adminKeySHA256: SHA256.hash([]).hex, openInference: false)
        for presented in ["", nil] as [String?] {
            let key = AccessControl.presentedKey(bearer: nil, apiKey: presented)
            #expect(throws: HTTPError.self) { try access.authorize(presentedKey: key, scope: "admin") }
        }
    }

    @Test func rateLimitsMustMeanWhatTheySay() throws {
        let access = try AccessControl.load(file: nil, adminKeySHA256: nil, openInference: false)
        let refused: [(Double?, Double?, String)] = [
            (0, nil, "rate_per_second must be above 0"),
            (-1, nil, "rate_per_second must be above 0"),
            (.infinity, nil, "rate_per_second must be above 0"),
            (2e6, nil, "at most 1000000"),
            (nil, 5, "burst needs a rate_per_second"),
            (1, 0.5, "burst must be 1"),
            (1, .nan, "burst must be 1"),
        ]
        for (rate, burst, reason) in refused {
            let message = refusal { () throws(WharfError) in _ = try access.create(id: "k", scopes: ["infer:*"], ratePerSecond: rate, burst: burst) }
            #expect(message?.hasPrefix("key k: ") == true && message?.contains(reason) == true, "\(String(describing: rate)) \(String(describing: burst)): \(message ?? "taken")")
        }
        #expect(refusal { () throws(WharfError) in _ = try access.create(id: "admin", scopes: ["deploy"], ratePerSecond: nil, burst: nil) }?
            .contains("kept for the bootstrap key") == true)
        #expect(access.all.isEmpty)

        // The slowest rate taken: its Retry-After is a day at most, not an overflow.
        let secret = try access.create(id: "slow", scopes: ["infer:*"], ratePerSecond: 1e-12, burst: nil)
        #expect(try access.authorize(presentedKey: secret, scope: "infer:m")?.id == "slow")
        do {
            _ = try access.authorize(presentedKey: secret, scope: "infer:m")
            Issue.record("the second request got through")
        } catch let error as HTTPError {
            #expect(error.status == .tooManyRequests)
            #expect(error.headers[.retryAfter] == "86400")
        }
    }

    @Test func aKeysFileIsHeldToTheSameRules() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let digest = String(repeating: "ab", count: 32)
        try #"[{"id":"app","sha256":"\#(digest)","scopes":["infer:*"],"rate_per_second":10,"burst":20}]"#.write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try AccessControl.load(file: file, adminKeySHA256: nil, openInference: false).all.map(\.id) == ["app"])
        // Limits an older gateway stored are read as it applied them: rate 0 was no limit, a
        // burst without a rate nothing, a burst below 1 one request.
        try #"[{"id":"a","sha256":"\#(digest)","scopes":["infer:*"],"rate_per_second":0,"burst":4},{"id":"b","sha256":"\#(String(repeating: "cd", count: 32))","scopes":["infer:*"],"rate_per_second":2,"burst":0.5}]"#
            .write(toFile: file, atomically: true, encoding: .utf8)
        let old = try AccessControl.load(file: file, adminKeySHA256: nil, openInference: false).all
        #expect(old.map(\.id) == ["a", "b"])
        #expect(old[0].ratePerSecond == nil && old[0].burst == nil)
        #expect(old[1].ratePerSecond == 2 && old[1].burst == 1)
        try #"[{"id":"app","sha256":"short","scopes":["infer:*"]}]"#.write(toFile: file, atomically: true, encoding: .utf8)
        #expect(refusal { () throws(WharfError) in _ = try AccessControl.load(file: file, adminKeySHA256: nil, openInference: false) }?.hasPrefix(file) == true)
    }

    @Test func onlyShareZeroAloneTurnsTheShadowOff() throws {
        #expect(try ShadowChange(version: nil, share: nil, replicas: nil).shadow(of: "m") == nil)
        #expect(try ShadowChange(version: nil, share: 0, replicas: []).shadow(of: "m") == nil)
        #expect(try ShadowChange(version: "2", share: 0.5, replicas: ["http://a"]).shadow(of: "m") == .init(version: "2", share: 0.5, replicas: ["http://a"]))
        let mistakes: [(ShadowChange, String)] = [
            (ShadowChange(version: "2", share: nil, replicas: ["http://a"]), "share must be above 0"),
            (ShadowChange(version: "2", share: 0, replicas: nil), "share must be above 0"),
            (ShadowChange(version: nil, share: 0, replicas: ["http://a"]), "share must be above 0"),
            (ShadowChange(version: nil, share: 0.1, replicas: ["http://a"]), "version is missing"),
        ]
        for (change, reason) in mistakes {
            #expect(refusal { () throws(WharfError) in _ = try change.shadow(of: "m") }?.contains(reason) == true, "\(change)")
        }
        // Share and replicas are checked with the whole spec.
        var spec = DeploymentSpec(model: "m", targets: [.init(version: "1", weight: 1, replicas: ["http://a"])])
        spec.shadow = try ShadowChange(version: "2", share: -0.1, replicas: ["http://b"]).shadow(of: "m")
        #expect(refusal { () throws(WharfError) in _ = try spec.validated() }?.contains("shadow.share must be between 0 and 1") == true)
    }

    @Test func aShadowIsNotATargetAndWeightsStayFinite() {
        let shadowed = DeploymentSpec(model: "m", targets: [.init(version: "1", weight: 1, replicas: ["http://a"])],
                                      shadow: .init(version: "1", share: 0.1, replicas: ["http://b"]))
        #expect(refusal { () throws(WharfError) in _ = try shadowed.validated() }?.contains("the shadow's version 1 is also a target") == true)
        let huge = DeploymentSpec(model: "m", targets: [.init(version: "1", weight: 1e308, replicas: ["http://a"]),
                                                        .init(version: "2", weight: 1e308, replicas: ["http://b"])])
        #expect(refusal { () throws(WharfError) in _ = try huge.validated() }?.contains("targets[0]: weight must be a number 0 … 1000000") == true)
        let largest = DeploymentSpec(model: "m", targets: [.init(version: "1", weight: 1e6, replicas: ["http://a"])])
        #expect(refusal { () throws(WharfError) in _ = try largest.validated() } == nil)
    }

    @Test func aCanaryPlanNeedsOnlyItsVersionAndReplicas() throws {
        let plan = try JSONDecoder().decode(CanaryPlan.self, from: Data(#"{"version":"2","replicas":["http://a"]}"#.utf8))
        #expect(plan == CanaryPlan(version: "2", replicas: ["http://a"]))
        #expect(plan.steps == [5, 25, 50, 100] && plan.intervalSeconds == 30 && plan.maxErrorRate == 0.01 && plan.minRequests == 20 && plan.maxP99Milliseconds == nil)
        let full = try JSONDecoder().decode(CanaryPlan.self, from: Data(
            #"{"version":"2","replicas":["http://a"],"steps":[50,100],"interval_seconds":2,"max_error_rate":0.5,"max_p99_ms":9,"min_requests":3}"#.utf8))
        #expect(full == CanaryPlan(version: "2", replicas: ["http://a"], steps: [50, 100], intervalSeconds: 2, maxErrorRate: 0.5, maxP99Milliseconds: 9, minRequests: 3))
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(CanaryPlan.self, from: Data(#"{"version":"2"}"#.utf8)) }
    }

    /// A misspelt key in a request body is refused, not dropped: `sticky` for `sticky_header`
    /// left the deployment without stickiness, `rate_per_sec` made a key with no rate limit,
    /// `max_error` a canary with the default guard. Files the gateway wrote itself (and its
    /// answers, read by an older client) are read as before.
    @Test func aMisspeltKeyIsRefusedNotDropped() throws {
        let target = #"{"version":"1","weight":100,"replicas":["http://a"]}"#
        let cases: [(any Decodable.Type, String, String)] = [
            (DeploymentSpec.self, #"{"model":"m","targets":[\#(target)],"sticky":"x-user"}"#, "sticky: unknown key sticky (known: "),
            (DeploymentSpec.self, #"{"model":"m","targets":[{"version":"1","weight":100,"replicas":["http://a"],"replica":"http://b"}]}"#,
             "targets[0].replica: unknown key replica"),
            (DeploymentSpec.self, #"{"model":"m","targets":[\#(target)],"shadow":{"version":"2","share":0.1,"replicas":[],"sample":1}}"#,
             "shadow.sample: unknown key sample"),
            (CanaryPlan.self, #"{"version":"2","replicas":["http://a"],"max_error":0.5}"#, "max_error: unknown key max_error"),
            (DeploymentController<BasicRequestContext>.KeyRequest.self, #"{"id":"k","scopes":["infer:*"],"rate_per_sec":1}"#,
             "rate_per_sec: unknown key rate_per_sec (known: burst, id, rate_per_second, scopes)"),
            (ShadowChange.self, #"{"version":"2","shares":0.5}"#, "shares: unknown key shares"),
        ]
        for (type, body, reason) in cases {
            let message = refusal { () throws(WharfError) in _ = try JSONBody.decode(type, from: Data(body.utf8)) }
            #expect(message?.contains(reason) == true, "\(body): \(message ?? "accepted")")
            // Read leniently where the JSON is not a person's input.
            #expect((try? JSONDecoder().decode(type, from: Data(body.utf8))) != nil, "\(body)")
        }
        // A fraction where a whole number is needed is not "malformed JSON".
        let fraction = refusal { () throws(WharfError) in
            _ = try JSONBody.decode(DeploymentSpec.self, from: Data(#"{"model":"m","targets":[\#(target)],"timeout_ms":1.5}"#.utf8))
        }
        #expect(fraction?.contains("a number in it does not fit its field") == true, "\(fraction ?? "accepted")")
        let malformed = refusal { () throws(WharfError) in _ = try JSONBody.decode(DeploymentSpec.self, from: Data(#"{"model":"#.utf8)) }
        #expect(malformed?.contains("malformed JSON") == true, "\(malformed ?? "accepted")")
    }

    /// The shadow's version cannot become a canary while it is the shadow: its figures would mix.
    @Test func theShadowsVersionCannotStartACanary() throws {
        let store = try DeploymentStore(file: nil)
        let canaries = CanaryController(store: store, logger: .init(label: "test"))
        try store.set(DeploymentSpec(model: "m", targets: [.init(version: "1", weight: 1, replicas: ["http://127.0.0.1:1"])],
                                     shadow: .init(version: "2", share: 0.5, replicas: ["http://127.0.0.1:2"])),
                      actor: "t", action: "set", detail: "")
        let message = refusal { () throws(WharfError) in _ = try canaries.start(model: "m", plan: CanaryPlan(version: "2", replicas: ["http://127.0.0.1:3"]), actor: "t") }
        #expect(message?.contains("version 2 is the shadow of m") == true)
        #expect(canaries.status("m") == nil)
    }

    /// A change is on disk before it routes: when the file cannot be written the change is
    /// refused and nothing changes; replicas no deployment names are dropped.
    @Test func aChangeThatCannotBeSavedIsNotMade() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try DeploymentStore(file: directory + "/deployments.json")
        func spec(_ replica: String) -> DeploymentSpec {
            DeploymentSpec(model: "m", targets: [.init(version: "1", weight: 1, replicas: [replica])])
        }
        try store.set(spec("http://127.0.0.1:1"), actor: "t", action: "set", detail: "")
        try store.set(spec("http://127.0.0.1:2"), actor: "t", action: "set", detail: "")
        #expect(store.directory.all.map(\.url) == ["http://127.0.0.1:2"])

        // The file's place is taken by a directory (so the rename fails, even for root): the
        // next change fails, and the old spec still routes.
        let file = directory + "/deployments.json"
        try FileManager.default.removeItem(atPath: file)
        try FileManager.default.createDirectory(atPath: file + "/blocked", withIntermediateDirectories: true)
        let message = refusal { () throws(WharfError) in try store.set(spec("http://127.0.0.1:3"), actor: "t", action: "set", detail: "") }
        #expect(message?.contains("cannot save the deployments") == true, "\(message ?? "saved")")
        #expect(store.entry("m")?.spec == spec("http://127.0.0.1:2"))
        #expect(store.deployment("m")?.spec == spec("http://127.0.0.1:2"))
        #expect(store.entry("m")?.history.count == 2)
        #expect(store.directory.all.map(\.url) == ["http://127.0.0.1:2"])
        #expect(throws: WharfError.self) { try store.delete("m") }
        #expect(store.deployment("m") != nil && store.entry("m") != nil)
    }
}

/// The per-lane connection count, which caps connections to a replica, is given back once per
/// connection: failed connects used to give it back twice and drive it below zero.
@Suite("Upstream connection count")
struct UpstreamConnectionCountTests {
    final class Outcomes: UpstreamReceiver, @unchecked Sendable {
        var results: [Result<UpstreamResponse, UpstreamError>] = []
        func upstreamFinished(_ outcome: Result<UpstreamResponse, UpstreamError>) { results.append(outcome) }
    }

    @Test func failedConnectsGiveTheirPlaceBackOnce() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let client = UpstreamClient(connectionsPerEndpoint: 2)
        // A port nothing listens on: bound, then closed.
        let probe = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(probe.localAddress?.port)
        try await probe.close()
        let lane = UpstreamLane(endpoint: try #require(UpstreamEndpoint(url: "http://127.0.0.1:\(port)")), model: "m")
        let outcomes = Outcomes()
        let headers = ForwardedRequestHeaders(contentType: nil, inferenceHeaderContentLength: nil, requestID: .made(1))
        try await loop.submit {
            let pool = client.pool(for: loop)
            for _ in 0..<5 { pool.execute(lane, headers: headers, body: ByteBuffer(string: "{}"), timeout: .seconds(5), receiver: outcomes) }
        }.get()
        // Every request fails (refused), then the channels' closes have run.
        for _ in 0..<200 where try await loop.submit({ outcomes.results.count }).get() < 5 { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(100))
        let (count, failures) = try await loop.submit { (client.pool(for: loop).connectionCount(lane), outcomes.results.count) }.get()
        #expect(failures == 5)
        #expect(count == 0)
        await client.shutdown()
        try await group.shutdownGracefully()
    }
}
