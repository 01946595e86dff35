import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The hub as a process: events checked one by one, and a kill -9 during ingest loses no
/// acknowledged event and duplicates none; a consumer resumes after its last acknowledgement.
@Suite("wharf hub")
struct HubTests {
    static let token = "hub-token"

    static func request(_ method: String, _ url: String, body: String? = nil, token: String? = HubTests.token) async throws -> (status: Int, json: [String: Any]) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.timeoutInterval = 10
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "authorization") }
        if let body { request.httpBody = Data(body.utf8) }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as! HTTPURLResponse).statusCode, (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:])
    }

    static let definition = #"{"name":"clicks","entity_key":"user","time_field":"ts","features":{"seq":"number","page":"string","mobile":"bool"}}"#

    @Test func eventsAreCheckedOneByOne() async throws {
        let port = WharfCLI.ports(1)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-hub-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let hub = try GatewayIntegrationTests.Server(["hub", "--port", String(port), "--data-dir", data, "--token", Self.token])
        defer { hub.stop() }
        let url = "http://127.0.0.1:\(port)"
        #expect(try await WharfCLI.waitForStatus(url + "/v1/health/ready", status: 200))
        #expect(try await Self.request("PUT", url + "/v1/streams/clicks", body: Self.definition, token: nil).status == 401)
        #expect(try await Self.request("PUT", url + "/v1/streams/clicks", body: Self.definition).status == 200)
        #expect(try await Self.request("PUT", url + "/v1/streams/other", body: Self.definition).status == 400)

        let batch = """
            {"user":"u1","ts":"2026-11-29T10:00:00Z","seq":1,"page":"home","mobile":true}
            {"user":42,"seq":2}
            {"seq":3}
            {"user":"u2","seq":"four"}
            {"user":"u3","color":"red"}
            {"user":"u4","page":{"nested":1}}
            [1,2]
            {"user":"u5","ts":"yesterday"}
            {"user":"u6","seq":null,"mobile":false}
            """
        let (status, result) = try await Self.request("POST", url + "/v1/streams/clicks/events", body: batch)
        #expect(status == 200)
        #expect(result["accepted"] as? Int == 3 && result["rejected"] as? Int == 6)
        let errors = (result["results"] as? [[String: Any]] ?? []).map { ($0["error"] as? String) ?? "" }
        #expect(errors[0].isEmpty && errors[1].isEmpty && errors[8].isEmpty)
        #expect(errors[2].contains("user (the entity key) is missing"))
        #expect(errors[3].contains("seq must be a number"))
        #expect(errors[4].contains("color is not a feature"))
        #expect(errors[5].contains("page must be a single value"))
        #expect(errors[6].contains("must be a JSON object"))
        #expect(errors[7].contains("not an RFC 3339 time"))
        #expect(try await Self.request("POST", url + "/v1/streams/clicks/events", body: #"[{"seq":1}]"#).status == 400)
        #expect(try await Self.request("POST", url + "/v1/streams/clicks/events", body: #"[{"user":"x",}"#).status == 400)
        #expect(try await Self.request("POST", url + "/v1/streams/nope/events", body: #"[{"user":"x"}]"#).status == 404)

        let replay = try await Self.request("GET", url + "/v1/streams/clicks/events?from=1&limit=10")
        let events = replay.json["events"] as? [[String: Any]] ?? []
        #expect(events.map { $0["entity"] as? String } == ["u1", "42", "u6"])
        #expect((events.first?["event"] as? String)?.contains(#""ts":1795946400"#) == true)
        let since = try await Self.request("GET", url + "/v1/streams/clicks/events?since=2026-11-29T10:00:01Z")
        #expect((since.json["events"] as? [Any])?.count == 2)
    }

    @Test func killNineDuringIngestLosesNothingAcknowledged() async throws {
        let port = WharfCLI.ports(1)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-hub-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let url = "http://127.0.0.1:\(port)"
        var hub = try GatewayIntegrationTests.Server(["hub", "--port", String(port), "--data-dir", data, "--token", Self.token])
        #expect(try await WharfCLI.waitForStatus(url + "/v1/health/ready", status: 200))
        #expect(try await Self.request("PUT", url + "/v1/streams/clicks", body: Self.definition).status == 200)

        // Batches of 200 events with consecutive sequence numbers, until the hub dies.
        let acknowledged = Task { () -> [Int] in
            var sent: [Int] = []
            var next = 0
            while next < 400_000 {
                let body = (next..<(next + 200)).map { #"{"user":"u\#($0 % 13)","seq":\#($0)}"# }.joined(separator: "\n")
                guard let answer = try? await Self.request("POST", url + "/v1/streams/clicks/events", body: body), answer.status == 200 else { break }
                sent += Array(next..<(next + 200))
                next += 200
            }
            return sent
        }
        try await Task.sleep(for: .milliseconds(700))
        hub.kill()
        let sent = await acknowledged.value
        #expect(sent.count >= 1000, "only \(sent.count) events were acknowledged before the kill")

        hub = try GatewayIntegrationTests.Server(["hub", "--port", String(port), "--data-dir", data, "--token", Self.token])
        defer { hub.stop() }
        #expect(try await WharfCLI.waitForStatus(url + "/v1/health/ready", status: 200))
        var stored: [Int] = []
        var from = 1
        while true {
            let page = try await Self.request("GET", url + "/v1/streams/clicks/events?from=\(from)&limit=10000").json
            let events = page["events"] as? [[String: Any]] ?? []
            if events.isEmpty { break }
            for event in events {
                let text = event["event"] as? String ?? ""
                let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
                stored.append((object?["seq"] as? Double).map { Int($0) } ?? -1)
            }
            from = page["next"] as? Int ?? from + events.count
        }
        #expect(Set(stored).count == stored.count, "an event is in the log twice")
        #expect(Set(sent).isSubset(of: Set(stored)), "\(Set(sent).subtracting(stored).count) acknowledged events are missing")
        // A batch cut by the kill is all there or not at all.
        #expect(stored.count % 200 == 0 && stored == Array(0..<stored.count))

        // A consumer resumes after its acknowledgement, across another kill.
        let first = try await Self.request("POST", url + "/v1/streams/clicks/consumers/features/fetch?limit=300").json
        #expect((first["events"] as? [Any])?.count == 300)
        #expect(try await Self.request("POST", url + "/v1/streams/clicks/consumers/features/ack", body: #"{"offset":250}"#).status == 200)
        hub.kill()
        hub = try GatewayIntegrationTests.Server(["hub", "--port", String(port), "--data-dir", data, "--token", Self.token])
        #expect(try await WharfCLI.waitForStatus(url + "/v1/health/ready", status: 200))
        let resumed = try await Self.request("POST", url + "/v1/streams/clicks/consumers/features/fetch?limit=1").json
        #expect((resumed["events"] as? [[String: Any]])?.first?["offset"] as? Int == 251)
    }
}
