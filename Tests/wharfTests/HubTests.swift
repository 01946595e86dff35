import Foundation
import Synchronization
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

    /// A hub process on a free port with a fresh data directory; `stop()` removes both.
    struct RunningHub {
        let server: GatewayIntegrationTests.Server
        let url: String
        let data: String

        func stop() {
            server.stop()
            try? FileManager.default.removeItem(atPath: data)
        }
    }

    static func startHub() async throws -> RunningHub {
        let port = WharfCLI.ports(1)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-hub-\(UUID().uuidString)").path
        let server = try GatewayIntegrationTests.Server(["hub", "--port", String(port), "--data-dir", data, "--token", token])
        let url = "http://127.0.0.1:\(port)"
        #expect(try await WharfCLI.waitForStatus(url + "/v1/health/ready", status: 200))
        return RunningHub(server: server, url: url, data: data)
    }

    static let definition = #"{"name":"clicks","entity_key":"user","time_field":"ts","features":{"seq":"number","page":"string","mobile":"bool"}}"#

    @Test func eventsAreCheckedOneByOne() async throws {
        let hub = try await Self.startHub()
        defer { hub.stop() }
        let url = hub.url
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
        // Numbers JSON reads as infinity, and times that are not seconds since 1970 to tomorrow
        // (milliseconds, say), are refused: stored, they broke every replay page holding them
        // and held up retention.
        let odd = """
            {"user":"u7","ts":1e999,"seq":1}
            {"user":"u7","seq":-1e999}
            {"user":"u7","ts":1700000000000,"seq":1}
            {"user":"u7","ts":-5,"seq":1}
            """
        let refused = try await Self.request("POST", url + "/v1/streams/clicks/events", body: odd)
        #expect(refused.status == 400)
        let reasons = (refused.json["results"] as? [[String: Any]] ?? []).map { ($0["error"] as? String) ?? "" }
        #expect(reasons.count == 4)
        #expect(reasons.enumerated().allSatisfy { index, reason in
            reason.contains(index == 1 ? "seq must be a finite number" : "ts must be seconds since 1970 (or RFC 3339 text) from 1970 to a day from now")
        }, "\(reasons)")

        let replay = try await Self.request("GET", url + "/v1/streams/clicks/events?from=1&limit=10")
        let events = replay.json["events"] as? [[String: Any]] ?? []
        #expect(events.map { $0["entity"] as? String } == ["u1", "42", "u6"])
        #expect((events.first?["event"] as? String)?.contains(#""ts":1795946400"#) == true)
        let since = try await Self.request("GET", url + "/v1/streams/clicks/events?since=2026-11-29T10:00:01Z")
        #expect((since.json["events"] as? [Any])?.count == 2)
    }

    @Test func killNineDuringIngestLosesNothingAcknowledged() async throws {
        try await ProcessTestGate.shared.run { try await self.killNineDuringIngestLosesNothingAcknowledgedBody() }
    }

    private func killNineDuringIngestLosesNothingAcknowledgedBody() async throws {
        let port = WharfCLI.ports(1)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-hub-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let url = "http://127.0.0.1:\(port)"
        var hub = try GatewayIntegrationTests.Server(["hub", "--port", String(port), "--data-dir", data, "--token", Self.token])
        #expect(try await WharfCLI.waitForStatus(url + "/v1/health/ready", status: 200))
        #expect(try await Self.request("PUT", url + "/v1/streams/clicks", body: Self.definition).status == 200)

        // Batches of 200 events with consecutive sequence numbers, until the hub dies.
        let progress = Atomic(0)
        let acknowledged = Task { () -> [Int] in
            var sent: [Int] = []
            var next = 0
            while next < 400_000 {
                let body = (next..<(next + 200)).map { #"{"user":"u\#($0 % 13)","seq":\#($0)}"# }.joined(separator: "\n")
                guard let answer = try? await Self.request("POST", url + "/v1/streams/clicks/events", body: body), answer.status == 200 else { break }
                sent += Array(next..<(next + 200))
                next += 200
                progress.store(next, ordering: .relaxed)
            }
            return sent
        }
        // Killed mid-ingest, once some batches are in.
        while progress.load(ordering: .relaxed) < 1000 { try await Task.sleep(for: .milliseconds(10)) }
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

extension HubTests {
    /// Point in time: each label gets the value observed at or before its own time, never a
    /// later one, even when events arrive out of order; past the TTL a value is missing.
    @Test func featuresAreServedOnlineAndJoinedAsOfEachLabel() async throws {
        let hub = try await Self.startHub()
        defer { hub.stop() }
        let url = hub.url
        #expect(try await Self.request("PUT", url + "/v1/streams/clicks", body: Self.definition).status == 200)
        let view = #"{"name":"activity","stream":"clicks","features":["seq","page"],"ttl_seconds":3600,"required":["seq"]}"#
        #expect(try await Self.request("PUT", url + "/v1/views/activity", body: view).status == 200)
        #expect(try await Self.request("PUT", url + "/v1/views/bad", body: #"{"name":"bad","stream":"clicks","features":["nope"]}"#).status == 400)

        // u1: seq 1 at 10:00, seq 3 at 12:00, and seq 2 at 11:00 arriving last (late).
        let events = """
            {"user":"u1","ts":"2026-11-29T10:00:00Z","seq":1,"page":"home"}
            {"user":"u1","ts":"2026-11-29T12:00:00Z","seq":3}
            {"user":"u2","ts":"2026-11-29T09:00:00Z","seq":7,"page":"cart"}
            {"user":"u1","ts":"2026-11-29T11:00:00Z","seq":2}
            """
        #expect(try await Self.request("POST", url + "/v1/streams/clicks/events", body: events).json["accepted"] as? Int == 4)
        let now = Date()
        let online = try await Self.request("POST", url + "/v1/features/activity/lookup", body: #"{"rows":[{"entity":"u1","time":"2026-11-29T12:30:00Z"}]}"#).json
        let first = (online["rows"] as? [[String: Any]])?.first
        #expect((first?["features"] as? [String: Any])?["seq"] as? Double == 3)
        // page was seen at 10:00: past the one-hour TTL at 12:30.
        #expect((first?["features"] as? [String: Any])?["page"] == nil)
        #expect((first?["expired"] as? [String]) == ["page"])
        _ = now

        let labels = """
            user,ts,clicked
            u1,2026-11-29T09:59:59Z,0
            u1,2026-11-29T10:00:00Z,1
            u1,2026-11-29T11:30:00Z,0
            u1,2026-11-29T12:00:00Z,1
            u1,2026-11-29T13:30:00Z,1
            u2,2026-11-29T09:30:00Z,0
            u2,2026-11-29T10:00:01Z,1
            u3,2026-11-29T10:00:00Z,0
            """
        let labelsFile = try WharfCLI.temporaryFile("labels-\(UUID().uuidString).csv", contents: labels)
        let out = labelsFile + ".train.csv"
        let built = try WharfCLI.run(["dataset", "build", "--hub", url, "--view", "activity", "--labels", labelsFile,
                                      "--entity-column", "user", "--time-column", "ts", "--out", out])
        #expect(built.status == 0, "\(built.stderr)")
        let rows = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(rows == [
            "user,ts,clicked,seq,page",
            "u1,2026-11-29T09:59:59Z,0,,",           // before any event
            "u1,2026-11-29T10:00:00Z,1,1,home",      // at the event's own time
            "u1,2026-11-29T11:30:00Z,0,2,",          // the late event, in its place; page (10:00) past the 1 h TTL
            "u1,2026-11-29T12:00:00Z,1,3,",          // the 12:00 event counts at 12:00
            "u1,2026-11-29T13:30:00Z,1,,",           // seq from 12:00 is past the TTL too
            "u2,2026-11-29T09:30:00Z,0,7,cart",
            "u2,2026-11-29T10:00:01Z,1,,",           // past the TTL
            "u3,2026-11-29T10:00:00Z,0,,",           // unknown entity
        ])
        // Online, a required feature that is missing is a 400 naming it.
        let missing = try await Self.request("GET", url + "/v1/features/activity/u3")
        #expect(missing.status == 400)
        #expect((missing.json["error"] as? String)?.contains("seq") == true)
        // An entity with a space is asked for percent-encoded, as any path segment.
        #expect(try await Self.request("POST", url + "/v1/streams/clicks/events", body: #"{"user":"user 9/b","seq":5}"#).json["accepted"] as? Int == 1)
        let spaced = try await Self.request("GET", url + "/v1/features/activity/user%209%2Fb")
        #expect(spaced.status == 200)
        #expect((spaced.json["features"] as? [String: Any])?["seq"] as? Double == 5)
    }
}

extension HubTests {
    /// A model server with --hub sends its predictions to the hub's `predictions` stream.
    @Test func predictionsAreLoggedToTheHub() async throws {
        try await ProcessTestGate.shared.run {
            let servePort = WharfCLI.ports(1)
            let hub = try await Self.startHub()
            defer { hub.stop() }
            let model = WharfCLI.fixtures.appendingPathComponent("metrics/champion_weak.json").path
            let serve = try GatewayIntegrationTests.Server(["serve", "--model", "champ=\(model)", "--port", String(servePort),
                                                            "--hub", hub.url], environment: ["WHARF_HUB_TOKEN": Self.token])
            defer { serve.stop() }
            #expect(try await WharfCLI.waitForStatus("http://127.0.0.1:\(servePort)/v2/health/ready", status: 200))
            for index in 0..<20 {
                var request = URLRequest(url: URL(string: "http://127.0.0.1:\(servePort)/v2/models/champ/infer")!)
                request.httpMethod = "POST"
                request.setValue("req-\(index)", forHTTPHeaderField: "x-request-id")
                request.httpBody = Data(#"{"inputs":[{"name":"x","shape":[1,8],"datatype":"FP64","data":[0.1,1,2,3,4,5,6,\#(index)]}]}"#.utf8)
                let (_, response) = try await URLSession.shared.data(for: request)
                #expect((response as? HTTPURLResponse)?.statusCode == 200)
            }
            var events: [[String: Any]] = []
            let deadline = Date().addingTimeInterval(10)
            while events.count < 20, Date() < deadline {
                try await Task.sleep(for: .milliseconds(200))
                events = (try? await Self.request("GET", hub.url + "/v1/streams/predictions/events?from=1").json["events"] as? [[String: Any]]) ?? []
            }
            #expect(events.count == 20)
            #expect(Set(events.compactMap { $0["entity"] as? String }) == Set((0..<20).map { "req-\($0)" }))
            let record = try JSONSerialization.jsonObject(with: Data(((events.first?["event"] as? String) ?? "{}").utf8)) as? [String: Any]
            #expect(record?["model"] as? String == "champ")
            #expect(record?["version"] as? String == "1")
            #expect((record?["outputs"] as? String)?.contains("probability") == true)
            #expect((record?["latency_ms"] as? Double).map { $0 > 0 } == true)
        }
    }
}

extension HubTests {
    /// parameters.entity_id: the features a request did not send come from the online store.
    @Test func missingInputsAreFilledFromTheFeatureStore() async throws {
        try await ProcessTestGate.shared.run {
            let servePort = WharfCLI.ports(1)
            let hub = try await Self.startHub()
            defer { hub.stop() }
            let hubURL = hub.url
            let features = (0..<8).map { #""f\#($0)":"number""# }.joined(separator: ",")
            #expect(try await Self.request("PUT", hubURL + "/v1/streams/profile", body: #"{"name":"profile","entity_key":"user","features":{\#(features)}}"#).status == 200)
            #expect(try await Self.request("PUT", hubURL + "/v1/views/profile", body: #"{"name":"profile","stream":"profile","features":["f4","f5","f6","f7"],"required":["f7"]}"#).status == 200)
            #expect(try await Self.request("POST", hubURL + "/v1/streams/profile/events", body: #"{"user":"u1","f4":4,"f5":5,"f6":6,"f7":7}"#).status == 200)

            let model = WharfCLI.fixtures.appendingPathComponent("metrics/champion_strong.json").path
            let serve = try GatewayIntegrationTests.Server(["serve", "--model", "champ=\(model)", "--port", String(servePort), "--hub", hubURL,
                                                            "--feature-view", "profile", "--prediction-sample", "0"])
            defer { serve.stop() }
            let url = "http://127.0.0.1:\(servePort)/v2/models/champ/infer"
            #expect(try await WharfCLI.waitForStatus("http://127.0.0.1:\(servePort)/v2/health/ready", status: 200))
            func probability(_ body: String) async throws -> (Int, Double?) {
                let (status, json) = try await Self.request("POST", url, body: body, token: nil)
                let outputs = json["outputs"] as? [[String: Any]]
                return (status, (outputs?.first?["data"] as? [Double])?.first)
            }
            let full = try await probability(#"{"inputs":[{"name":"x","shape":[1,8],"datatype":"FP64","data":[0.5,1,2,3,4,5,6,7]}]}"#)
            #expect(full.0 == 200)
            // Per-feature tensors for f0…f3 only; f4…f7 come from the store.
            let perFeature = (0..<4).map { #"{"name":"f\#($0)","shape":[1],"datatype":"FP64","data":[\#($0 == 0 ? "0.5" : String($0))]}"# }.joined(separator: ",")
            let filled = try await probability(#"{"inputs":[\#(perFeature)],"parameters":{"entity_id":"u1"}}"#)
            #expect(filled.0 == 200 && filled.1 == full.1)
            // An [N, F] tensor with NaN cells (null in JSON) for the missing ones.
            let cells = try await probability(#"{"inputs":[{"name":"x","shape":[1,8],"datatype":"FP64","data":[0.5,1,2,3,null,null,null,null]}],"parameters":{"entity_id":"u1"}}"#)
            #expect(cells.0 == 200 && cells.1 == full.1)
            // One row as an [F] tensor, filled the same way.
            let row = try await probability(#"{"inputs":[{"name":"x","shape":[8],"datatype":"FP64","data":[0.5,1,2,3,null,null,null,null]}],"parameters":{"entity_id":"u1"}}"#)
            #expect(row.0 == 200 && row.1 == full.1)
            // Inputs the filler cannot place: a 400, not an answer for missing values.
            let (unplaced, unplacedJSON) = try await Self.request(
                "POST", url, body: #"{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP64","data":[0.5,1,2,3,null,null,null,null]}],"parameters":{"entity_id":"u1"}}"#, token: nil)
            #expect(unplaced == 400)
            #expect((unplacedJSON["error"] as? String)?.contains("there is nothing to fill") == true)
            // An entity without the required f7: 400 naming it.
            let (status, json) = try await Self.request("POST", url, body: #"{"inputs":[\#(perFeature)],"parameters":{"entity_id":"nobody"}}"#, token: nil)
            #expect(status == 400)
            #expect((json["error"] as? String)?.contains("f7") == true)
        }
    }
}

extension HubTests {
    /// The hub with its log in NATS JetStream (`--bus`) and its stream and view declared in YAML
    /// (`--definitions`): ingest, online lookups, replay and consumers work as on the embedded
    /// log, and all of it survives a kill -9 of the hub.
    @Test func aHubOnJetStreamDeclaredInYAML() async throws {
        // WharfBusTests.natsIsThereWhenRequired fails when the server is required and absent.
        guard let nats = ProcessInfo.processInfo.environment["WHARF_TEST_NATS_URL"] else { return }
        try await ProcessTestGate.shared.run { try await self.aHubOnJetStreamDeclaredInYAMLBody(nats: nats) }
    }

    private func aHubOnJetStreamDeclaredInYAMLBody(nats: String) async throws {
        // Tests share the NATS server: a stream name of this test's own.
        let stream = "clicks-\(UUID().uuidString.prefix(8).lowercased())"
        let declarations = try WharfCLI.temporaryFile("hub-\(stream).yaml", contents: """
            streams:
              - name: \(stream)
                entity_key: user
                time_field: ts
                features: {seq: number, page: string}
            views:
              - name: activity-\(stream)
                stream: \(stream)
                features: [seq, page]
                required: [seq]   # a lookup without it is refused
            """)
        let port = WharfCLI.ports(1)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-hub-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let arguments = ["hub", "--port", String(port), "--data-dir", data, "--token", Self.token, "--bus", nats, "--definitions", declarations]
        let url = "http://127.0.0.1:\(port)"
        var hub = try GatewayIntegrationTests.Server(arguments)
        #expect(try await WharfCLI.waitForStatus(url + "/v1/health/ready", status: 200))
        #expect(try await Self.request("GET", url + "/v1/streams/\(stream)").status == 200)

        let events = (0..<300).map { #"{"user":"u\#($0 % 13)","ts":\#(1_700_000_000 + $0),"seq":\#($0),"page":"p\#($0)"}"# }.joined(separator: "\n")
        let ingested = try await Self.request("POST", url + "/v1/streams/\(stream)/events", body: events)
        #expect(ingested.status == 200 && ingested.json["accepted"] as? Int == 300)
        let online = try await Self.request("GET", url + "/v1/features/activity-\(stream)/u1")
        #expect((online.json["features"] as? [String: Any])?["seq"] as? Double == 287)
        // An event over the server's max_payload (1 MiB by default) is refused on its own; it
        // used to make the server drop the connection under the whole batch.
        let huge = #"{"user":"big","seq":1,"page":"\#(String(repeating: "x", count: 1_100_000))"}"#
        let mixed = try await Self.request("POST", url + "/v1/streams/\(stream)/events", body: huge + "\n" + #"{"user":"u0","seq":300}"#)
        #expect(mixed.status == 200 && mixed.json["accepted"] as? Int == 1 && mixed.json["rejected"] as? Int == 1)
        let bigError = ((mixed.json["results"] as? [[String: Any]])?.first?["error"] as? String) ?? ""
        #expect(bigError.contains("over the bus's limit of"), "\(bigError)")
        #expect(try await Self.request("POST", url + "/v1/streams/\(stream)/events", body: #"{"user":"u0","seq":301}"#).status == 200)
        #expect(try await Self.request("GET", url + "/v1/features/activity-\(stream)/nobody").status == 400)

        let fetched = try await Self.request("POST", url + "/v1/streams/\(stream)/consumers/trainer/fetch?limit=100").json
        #expect((fetched["events"] as? [[String: Any]])?.map { $0["offset"] as? Int } == (1...100).map { $0 })
        #expect(try await Self.request("POST", url + "/v1/streams/\(stream)/consumers/trainer/ack", body: #"{"offset":100}"#).status == 200)

        hub.kill()
        hub = try GatewayIntegrationTests.Server(arguments)
        defer { hub.stop() }
        #expect(try await WharfCLI.waitForStatus(url + "/v1/health/ready", status: 200))
        let resumed = try await Self.request("POST", url + "/v1/streams/\(stream)/consumers/trainer/fetch?limit=5").json
        #expect((resumed["events"] as? [[String: Any]])?.first?["offset"] as? Int == 101)
        let replay = try await Self.request("GET", url + "/v1/streams/\(stream)/events?from=1&limit=10000").json
        let seqs = try (replay["events"] as? [[String: Any]] ?? []).map { event -> Int in
            let object = try JSONSerialization.jsonObject(with: Data((event["event"] as? String ?? "").utf8)) as? [String: Any]
            return (object?["seq"] as? Double).map { Int($0) } ?? -1
        }
        #expect(seqs == Array(0..<302))
    }
}
