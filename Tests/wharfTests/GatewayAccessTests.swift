import Foundation
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Keys, scopes, rate limits and the shadow on a gateway process.
@Suite("Gateway access and shadow")
struct GatewayAccessTests {
    static let adminKey = "access-admin-key"

    static func request(_ method: String, _ url: String, key: String? = nil, body: String? = nil) async throws -> (status: Int, json: [String: Any], headers: [AnyHashable: Any]) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.timeoutInterval = 10
        if let key { request.setValue(key, forHTTPHeaderField: "x-api-key") }
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "content-type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as! HTTPURLResponse
        return (http.statusCode, (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:], http.allHeaderFields)
    }

    static let row = #"{"inputs":[{"name":"x","shape":[1,8],"datatype":"FP64","data":[0.1,1,2,3,4,5,6,7]}]}"#

    @Test func keysScopesRateLimitsAndShadow() async throws {
        try await ProcessTestGate.shared.run { try await self.keysScopesRateLimitsAndShadowBody() }
    }

    private func keysScopesRateLimitsAndShadowBody() async throws {
        let base = WharfCLI.ports(3)
        let metrics = WharfCLI.fixtures.appendingPathComponent("metrics")
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-access-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let weak = try GatewayIntegrationTests.Server(["serve", "--model", "champ=\(metrics.appendingPathComponent("champion_weak.json").path)", "--port", String(base + 1)])
        let strong = try GatewayIntegrationTests.Server(["serve", "--model", "champ=\(metrics.appendingPathComponent("champion_strong.json").path)", "--port", String(base + 2)])
        let gateway = try GatewayIntegrationTests.Server(["gateway", "--port", String(base), "--data-dir", data, "--admin-key", Self.adminKey, "--health-interval-ms", "100"])
        defer { [gateway, weak, strong].forEach { $0.stop() } }
        let url = "http://127.0.0.1:\(base)"
        for port in [base, base + 1, base + 2] {
            #expect(try await WharfCLI.waitForStatus("http://127.0.0.1:\(port)/v2/health/ready", status: 200, seconds: 60))
        }
        let spec = #"{"model":"champ","targets":[{"version":"1","weight":100,"replicas":["http://127.0.0.1:\#(base + 1)"]}]}"#
        #expect(try await Self.request("PUT", url + "/v1/deployments/champ", body: spec).status == 401)
        #expect(try await Self.request("PUT", url + "/v1/deployments/champ", key: Self.adminKey, body: spec).status == 200)
        #expect(try await Self.request("PUT", url + "/v1/deployments/champ", key: Self.adminKey, body: #"{"model":"champ","targets":[]}"#).status == 400)
        // One replica twice (with a trailing slash) is refused, and the error names it.
        let twice = #"{"model":"champ","targets":[{"version":"1","weight":100,"replicas":["http://127.0.0.1:\#(base + 1)","http://127.0.0.1:\#(base + 1)/"]}]}"#
        let refused = try await Self.request("PUT", url + "/v1/deployments/champ", key: Self.adminKey, body: twice)
        #expect(refused.status == 400)
        #expect((refused.json["error"] as? String)?.contains("targets[0] (version 1): replica \"http://127.0.0.1:\(base + 1)/\" is listed twice") == true)
        // A known path with a method it does not take: 405 with Allow, also on the inference
        // path, which the forwarder answers before the router.
        let wrongMethod = try await Self.request("GET", url + "/v2/models/champ/infer")
        #expect(wrongMethod.status == 405)
        #expect((wrongMethod.headers["Allow"] ?? wrongMethod.headers["allow"]) as? String == "POST")
        #expect((wrongMethod.json["error"] as? String)?.contains("GET is not allowed") == true)
        #expect(try await Self.request("PATCH", url + "/v1/deployments/champ", key: Self.adminKey).status == 405)

        // A request that will be refused is answered when its head arrives, not after its body
        // (up to --max-body-bytes) has been buffered; the connection closes, its body unread.
        let sent = Date()
        let early = try RawHTTP.exchange(
            port: base, request: "POST /v2/models/champ/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n{\"inputs\":")
        #expect(early.map(\.status) == [401] && Date().timeIntervalSince(sent) < 4, "\(early.map(\.status)) after \(Date().timeIntervalSince(sent)) s")
        // With part of the body sent already: after the 401 the gateway reads and drops what
        // comes (until the client closes, or 2 s), since a close with bytes unread resets the
        // connection, and a reset can destroy the answer before the client reads it (on loopback
        // the answer survives, so what is checked is how the connection ends: a FIN, no reset).
        for _ in 0..<3 {
            let fd = RawHTTP.open(port: base)
            defer { Glibc.close(fd) }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            RawHTTP.write(fd, "POST /v2/models/champ/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n"
                          + String(repeating: "0.5,", count: 75_000))
            var received: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            var last = 0
            var failure: Int32 = 0
            repeat {
                last = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if last > 0 { received += chunk[..<last] } else if last < 0 { failure = errno }
            } while last > 0
            #expect(RawHTTP.parse(received).map(\.status) == [401] && last == 0, "ended by \(last == 0 ? "EOF" : "errno \(failure)")")
        }
        // The same on the codec's path (Expect hands the connection over): no `100 Continue`
        // invites a body that will be refused.
        let expecting = try RawHTTP.exchange(
            port: base, request: "POST /v2/models/champ/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 50000000\r\n\r\n")
        #expect(expecting.map(\.status) == [401], "\(expecting.map(\.status))")

        // Without --open-inference, inference needs a key with an infer scope.
        let anonymous = try await Self.request("POST", url + "/v2/models/champ/infer", body: Self.row)
        #expect(anonymous.status == 401)
        #expect((anonymous.json["error"] as? String)?.contains("API key") == true)
        let created = try await Self.request("POST", url + "/v1/keys", key: Self.adminKey,
                                             body: #"{"id":"app","scopes":["infer:champ"],"rate_per_second":0.1,"burst":2}"#)
        #expect(created.status == 201)
        let appKey = try #require(created.json["key"] as? String)
        let other = try await Self.request("POST", url + "/v1/keys", key: Self.adminKey, body: #"{"id":"other","scopes":["infer:side"]}"#)
        let otherKey = try #require(other.json["key"] as? String)
        #expect(try await Self.request("POST", url + "/v2/models/champ/infer", key: otherKey, body: Self.row).status == 403)
        #expect(try await Self.request("GET", url + "/v1/deployments/champ", key: appKey).status == 403)
        #expect(try await Self.request("POST", url + "/v1/keys", key: appKey, body: #"{"id":"x","scopes":["admin"]}"#).status == 403)
        // A burst of two, then 429 with Retry-After.
        var statuses: [Int] = []
        var retryAfter: String?
        for _ in 0..<3 {
            let answer = try await Self.request("POST", url + "/v2/models/champ/infer", key: appKey, body: Self.row)
            statuses.append(answer.status)
            if answer.status == 429 { retryAfter = answer.headers["Retry-After"] as? String ?? answer.headers["retry-after"] as? String }
        }
        #expect(statuses == [200, 200, 429])
        // One request a ten seconds: the next token is up to 10 s away.
        #expect(retryAfter.flatMap(Int.init).map { (1...10).contains($0) } == true, "\(retryAfter ?? "no Retry-After")")
        #expect(try await Self.request("GET", url + "/v1/keys", key: Self.adminKey).json["keys"] != nil)

        // The shadow gets a copy of every request; its answers (a different model) disagree and
        // are never returned.
        let shadow = #"{"version":"2","share":1,"replicas":["http://127.0.0.1:\#(base + 2)"]}"#
        #expect(try await Self.request("PUT", url + "/v1/deployments/champ/shadow", key: Self.adminKey, body: shadow).status == 200)
        for _ in 0..<10 {
            let answer = try await Self.request("POST", url + "/v2/models/champ/infer", key: Self.adminKey, body: Self.row)
            #expect(answer.status == 200)
            #expect(answer.headers["x-wharf-deployment-version"] as? String ?? answer.headers["X-Wharf-Deployment-Version"] as? String == "1")
        }
        var compared = 0
        var disagreement = 0.0
        let deadline = Date().addingTimeInterval(5)
        while compared < 10, Date() < deadline {
            let status = try await Self.request("GET", url + "/v1/deployments/champ", key: Self.adminKey).json
            let versions = status["versions"] as? [[String: Any]] ?? []
            let live = versions.first { $0["role"] as? String == "shadow" }?["live"] as? [String: Any]
            compared = live?["shadow_compared"] as? Int ?? 0
            disagreement = live?["shadow_disagreement_rate"] as? Double ?? 0
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(compared == 10)
        #expect(disagreement > 0)

        // A shadow change without a share is refused, not taken for "off"; the shadow's version
        // cannot start a canary.
        func shadowVersion() async throws -> String? {
            let spec = try await Self.request("GET", url + "/v1/deployments/champ", key: Self.adminKey).json["spec"] as? [String: Any]
            return (spec?["shadow"] as? [String: Any])?["version"] as? String
        }
        let noShare = try await Self.request("PUT", url + "/v1/deployments/champ/shadow", key: Self.adminKey,
                                             body: #"{"version":"2","replicas":["http://127.0.0.1:\#(base + 2)"]}"#)
        #expect(noShare.status == 400)
        #expect((noShare.json["error"] as? String)?.contains("share must be above 0") == true)
        #expect(try await shadowVersion() == "2")
        let canary = #"{"version":"2","replicas":["http://127.0.0.1:\#(base + 2)"]}"#
        #expect(try await Self.request("POST", url + "/v1/deployments/champ/canary", key: Self.adminKey, body: canary).status == 409)
        #expect(try await Self.request("PUT", url + "/v1/deployments/champ/shadow", key: Self.adminKey, body: #"{"share":0}"#).status == 200)
        #expect(try await shadowVersion() == nil)

        // A canary plan needs only its version and replicas (the rest as documented); a
        // promotion of a version the deployment does not have leaves the rollout running.
        let started = try await Self.request("POST", url + "/v1/deployments/champ/canary", key: Self.adminKey, body: canary)
        #expect(started.status == 202)
        #expect(started.json["steps"] as? [Double] == [5, 25, 50, 100])
        let typo = try await Self.request("POST", url + "/v1/deployments/champ/promote", key: Self.adminKey, body: #"{"version":"tpyo"}"#)
        #expect(typo.status == 404)
        #expect((typo.json["error"] as? String)?.contains("has no version tpyo (its versions: 2, 1)") == true)
        let running = try await Self.request("GET", url + "/v1/deployments/champ", key: Self.adminKey).json
        #expect((running["canary"] as? [String: Any])?["state"] as? String == "running")
        #expect(try await Self.request("POST", url + "/v1/deployments/champ/rollback", key: Self.adminKey).status == 200)

        // Keys whose limits would mean something else than they say are refused.
        for (body, reason) in [(#"{"id":"k1","scopes":["infer:*"],"rate_per_second":0}"#, "rate_per_second must be above 0"),
                               (#"{"id":"k2","scopes":["infer:*"],"burst":5}"#, "burst needs a rate_per_second"),
                               (#"{"id":"admin","scopes":["deploy"]}"#, "kept for the bootstrap key")] {
            let answer = try await Self.request("POST", url + "/v1/keys", key: Self.adminKey, body: body)
            #expect(answer.status == 400)
            #expect((answer.json["error"] as? String)?.contains(reason) == true, "\(body): \(answer.json)")
        }

        // Sticky routing by a header: a user keeps one version on both inference paths (the
        // byte-level reader, and the codec after `Connection: close` hands the connection over),
        // whatever the case of the header's name, and users spread over both versions.
        let sticky = #"{"model":"champ","sticky_header":"X-User","targets":[{"version":"1","weight":50,"replicas":["http://127.0.0.1:\#(base + 1)"]},"#
            + #"{"version":"2","weight":50,"replicas":["http://127.0.0.1:\#(base + 2)"]}]}"#
        #expect(try await Self.request("PUT", url + "/v1/deployments/champ", key: Self.adminKey, body: sticky).status == 200)
        func infer(_ extra: String) -> String {
            "POST /v2/models/champ/infer HTTP/1.1\r\nHost: x\r\nx-api-key: \(Self.adminKey)\r\nContent-Type: application/json\r\n\(extra)"
                + "Content-Length: \(Self.row.utf8.count)\r\n\r\n\(Self.row)"
        }
        var seen: Set<String> = []
        for user in 0..<12 {
            let answers = try RawHTTP.exchange(
                port: base, request: infer("x-user: u\(user)\r\n") + infer("X-USER: u\(user)\r\n") + infer("X-User: u\(user)\r\nConnection: close\r\n"))
            let versions = answers.map { $0.header("x-wharf-deployment-version") ?? "none" }
            #expect(answers.map(\.status) == [200, 200, 200] && Set(versions).count == 1, "user \(user): \(versions)")
            seen.formUnion(versions)
        }
        #expect(seen == ["1", "2"])

        // The OpenAPI document the gateway serves is the one in the repository.
        let document = try String(contentsOf: WharfCLI.packageRoot.appendingPathComponent("docs/gateway-openapi.yaml"), encoding: .utf8)
        let (served, _) = try await URLSession.shared.data(from: URL(string: url + "/openapi.yaml")!)
        #expect(String(decoding: served, as: UTF8.self) == document)
    }
}
