import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
import WharfCore
import WharfHTTP
import WharfRuntime
import WharfServing

/// Every OIP endpoint and every error, through the router in process.
@Suite("OIP v2 API")
struct RouterTests {
    @Test func healthAndServerMetadata() async throws {
        let server = await ServingFixtures.server()
        let app = server.buildApplication(logger: ServingFixtures.logger, metrics: ServingFixtures.registry)
        try await app.test(.router) { client in
            try await client.execute(uri: "/v2/health/live", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v2/health/ready", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v2", method: .get) { response in
                let body = try ServingFixtures.json(response.body)
                #expect(body["name"] as? String == "wharf")
                #expect(body["extensions"] as? [String] == ["binary_tensor_data", "model_repository"])
            }
            try await client.execute(uri: "/v2/models", method: .get) { response in
                let json = try ServingFixtures.json(response.body)
                #expect(json["models"] as? [String] == ["binary"])
            }
        }
    }

    @Test func notReadyUntilLoaded() async throws {
        let configuration = ServingConfiguration(port: 0, catalog: .files(["binary": ServingFixtures.model("xgb3_binary_logistic.json")]))
        let server = ModelServer(configuration: configuration, logger: ServingFixtures.logger)
        let app = server.buildApplication(logger: ServingFixtures.logger)
        try await app.test(.router) { client in
            try await client.execute(uri: "/v2/health/live", method: .get) { #expect($0.status == .ok) }
            server.readiness.markShuttingDown()
            try await client.execute(uri: "/v2/health/ready", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                let message = try ServingFixtures.errorMessage(response.body)
                #expect(message != nil)
            }
        }
    }

    @Test func modelMetadataAndReadiness() async throws {
        let server = await ServingFixtures.server(["multi": ServingFixtures.model("lgb_multiclass_3.txt")])
        let app = server.buildApplication(logger: ServingFixtures.logger)
        try await app.test(.router) { client in
            try await client.execute(uri: "/v2/models/multi", method: .get) { response in
                #expect(response.status == .ok)
                let body = try ServingFixtures.json(response.body)
                #expect(body["name"] as? String == "multi")
                #expect(body["versions"] as? [String] == ["1"])
                #expect(body["platform"] as? String == "wharf_lightgbm_text")
                let outputs = body["outputs"] as? [[String: Any]] ?? []
                #expect(outputs.map { $0["name"] as? String } == ["probabilities", "label"])
                #expect(outputs.first?["shape"] as? [Int] == [-1, 3])
            }
            try await client.execute(uri: "/v2/models/multi/versions/1", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v2/models/multi/ready", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v2/models/multi/versions/1/ready", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v2/models/nope", method: .get) { response in
                #expect(response.status == .notFound)
                let message = try ServingFixtures.errorMessage(response.body)
                #expect(message?.contains("\"nope\" is not loaded") == true)
            }
            try await client.execute(uri: "/v2/models/multi/versions/9/ready", method: .get) { response in
                #expect(response.status == .notFound)
                let message = try ServingFixtures.errorMessage(response.body)
                #expect(message?.contains("no version \"9\"") == true)
            }
            try await client.execute(uri: "/v3/unknown", method: .get) { response in
                #expect(response.status == .notFound)
                let message = try ServingFixtures.errorMessage(response.body)
                #expect(message != nil)
            }
        }
    }

    @Test func inferMatchesTheModel() async throws {
        let path = ServingFixtures.model("xgb3_multi_softprob_4class.json")
        let model = try ModelLoader.load(path: path)
        let (values, rows) = try ServingFixtures.rows("xgb3_multi_softprob_4class", model: model)
        let expected = try model.predict(values, rows: rows)
        let server = await ServingFixtures.server(["multi": path])
        let app = server.buildApplication(logger: ServingFixtures.logger)
        try await app.test(.router) { client in
            let body = ServingFixtures.requestBody(values, rows: rows, features: model.metadata.featureCount, id: "req-42")
            try await client.execute(uri: "/v2/models/multi/infer", method: .post, headers: [.contentType: "application/json"], body: body) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.modelVersion] == "1")
                let json = try ServingFixtures.json(response.body)
                #expect(json["id"] as? String == "req-42")
                #expect(json["model_name"] as? String == "multi")
                #expect(json["model_version"] as? String == "1")
                let probabilities = ServingFixtures.outputData(json, "probabilities")
                #expect(probabilities.count == expected.count)
                #expect(zip(probabilities, expected).allSatisfy { abs($0 - $1) <= 1e-12 })
                let labels = ServingFixtures.outputData(json, "label")
                #expect(labels.count == rows)
            }
            // Only the outputs asked for.
            let only = ServingFixtures.requestBody(values, rows: rows, features: model.metadata.featureCount, extra: #","outputs":[{"name":"label"}]"#)
            try await client.execute(uri: "/v2/models/multi/versions/1/infer", method: .post, body: only) { response in
                let outputs = try ServingFixtures.json(response.body)["outputs"] as? [[String: Any]] ?? []
                #expect(outputs.map { $0["name"] as? String } == ["label"])
            }
        }
    }

    @Test func oneTensorPerNamedFeature() async throws {
        let path = ServingFixtures.model("lgb_feature_names.txt")
        let model = try ModelLoader.load(path: path)
        let names = try #require(model.metadata.featureNames)
        let (values, rows) = try ServingFixtures.rows("lgb_feature_names", model: model)
        let expected = try model.predict(values, rows: rows)
        let inputs = names.enumerated().map { feature, name in
            let column = (0..<rows).map { values[$0 * names.count + feature] }.map { $0.isNaN ? "null" : "\($0)" }
            return #"{"name":"\#(name)","shape":[\#(rows)],"datatype":"FP64","data":[\#(column.joined(separator: ","))]}"#
        }
        let server = await ServingFixtures.server(["named": path])
        let app = server.buildApplication(logger: ServingFixtures.logger)
        try await app.test(.router) { client in
            try await client.execute(uri: "/v2/models/named/infer", method: .post, body: ByteBuffer(string: #"{"inputs":[\#(inputs.joined(separator: ","))]}"#)) { response in
                #expect(response.status == .ok)
                let got = ServingFixtures.outputData(try ServingFixtures.json(response.body), "probability")
                #expect(got.count == expected.count)
                #expect(zip(got, expected).allSatisfy { abs($0 - $1) <= 1e-12 })
            }
            // A missing feature is named.
            try await client.execute(uri: "/v2/models/named/infer", method: .post, body: ByteBuffer(string: #"{"inputs":[\#(inputs.dropFirst().joined(separator: ","))]}"#)) { response in
                #expect(response.status == .badRequest)
                let message = try ServingFixtures.errorMessage(response.body)
                #expect(message?.contains(names[0]) == true)
            }
            // One feature's tensor alone, as long as a row: a per-feature request missing the
            // rest, not a row of values.
            let lone = #"{"inputs":[{"name":"\#(names[0])","shape":[\#(names.count)],"datatype":"FP64","data":[\#(Array(repeating: "1", count: names.count).joined(separator: ","))]}]}"#
            try await client.execute(uri: "/v2/models/named/infer", method: .post, body: ByteBuffer(string: lone)) { response in
                #expect(response.status == .badRequest)
                let message = try ServingFixtures.errorMessage(response.body)
                #expect(message?.contains("missing \(names.count - 1) feature input(s)") == true, "\(message ?? "")")
            }
        }
        // The same for a model without names (XGBoost's f0, f1, …); another name is still a row.
        let server2 = await ServingFixtures.server()
        let app2 = server2.buildApplication(logger: ServingFixtures.logger)
        try await app2.test(.router) { client in
            for (name, status) in [("f0", HTTPResponse.Status.badRequest), ("f07", .ok), ("input-0", .ok)] {
                let body = #"{"inputs":[{"name":"\#(name)","shape":[8],"datatype":"FP64","data":[1,2,3,4,5,6,7,8]}]}"#
                try await client.execute(uri: "/v2/models/binary/infer", method: .post, body: ByteBuffer(string: body)) {
                    #expect($0.status == status, "\(name)")
                }
            }
        }
    }

    /// What the stock Triton HTTP client sends by default: no Content-Type, binary inputs, and a
    /// request for binary outputs.
    @Test func tritonClientDefaults() async throws {
        let path = ServingFixtures.model("xgb3_binary_logistic.json")
        let model = try ModelLoader.load(path: path)
        let (values, rows) = try ServingFixtures.rows("xgb3_binary_logistic", model: model)
        let expected = try model.predict(values, rows: rows)
        let features = model.metadata.featureCount
        let binary = values.flatMap { value in withUnsafeBytes(of: Float(value).bitPattern.littleEndian) { Array($0) } }
        let header = #"{"inputs":[{"name":"input-0","shape":[\#(rows),\#(features)],"datatype":"FP32","parameters":{"binary_data_size":\#(binary.count)}}],"outputs":[{"name":"probability","parameters":{"binary_data":true}}],"parameters":{"binary_data_output":true}}"#
        let server = await ServingFixtures.server(["binary": path])
        let app = server.buildApplication(logger: ServingFixtures.logger)
        try await app.test(.router) { client in
            try await client.execute(
                uri: "/v2/models/binary/infer", method: .post,
                headers: [.inferenceHeaderContentLength: String(header.utf8.count)],
                body: ByteBuffer(bytes: Array(header.utf8) + binary)
            ) { response in
                #expect(response.status == .ok)
                let length = try #require(response.headers[.inferenceHeaderContentLength].flatMap { Int($0) })
                let bytes = Array(response.body.readableBytesView)
                let json = try JSONSerialization.jsonObject(with: Data(bytes[..<length])) as? [String: Any]
                let output = (json?["outputs"] as? [[String: Any]])?.first
                #expect((output?["parameters"] as? [String: Any])?["binary_data_size"] as? Int == rows * 8)
                let probabilities = (0..<rows).map { row in
                    bytes[(length + row * 8)..<(length + row * 8 + 8)].withUnsafeBytes { Double(bitPattern: UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
                }
                // FP32 inputs are what XGBoost reads anyway: the answers are the same.
                #expect(probabilities == expected)
            }
        }
    }

    /// JSON FP32 numbers are float32 values, as in binary: a double-precision model (LightGBM)
    /// answers the two alike, and as it answers the rows rounded to float32.
    @Test func jsonFP32IsFloat32LikeBinary() async throws {
        let path = ServingFixtures.model("lgb_binary.txt")
        let model = try ModelLoader.load(path: path)
        let (values, rows) = try ServingFixtures.rows("lgb_binary", model: model)
        let features = model.metadata.featureCount
        let expected = try model.predict(values.map { Double(Float($0)) }, rows: rows)
        let shape = #""shape":[\#(rows),\#(features)],"datatype":"FP32""#
        let data = values.map { $0.isNaN ? "null" : "\($0)" }.joined(separator: ",")
        let json = #"{"inputs":[{"name":"input-0",\#(shape),"data":[\#(data)]}]}"#
        let binary = values.flatMap { value in withUnsafeBytes(of: Float(value).bitPattern.littleEndian) { Array($0) } }
        let header = #"{"inputs":[{"name":"input-0",\#(shape),"parameters":{"binary_data_size":\#(binary.count)}}]}"#
        let server = await ServingFixtures.server(["lgb": path])
        let app = server.buildApplication(logger: ServingFixtures.logger)
        try await app.test(.router) { client in
            var answers: [[Double]] = []
            try await client.execute(uri: "/v2/models/lgb/infer", method: .post, body: ByteBuffer(string: json)) { response in
                #expect(response.status == .ok)
                answers.append(ServingFixtures.outputData(try ServingFixtures.json(response.body), "probability"))
            }
            try await client.execute(
                uri: "/v2/models/lgb/infer", method: .post,
                headers: [.inferenceHeaderContentLength: String(header.utf8.count)],
                body: ByteBuffer(bytes: Array(header.utf8) + binary)
            ) { response in
                #expect(response.status == .ok)
                answers.append(ServingFixtures.outputData(try ServingFixtures.json(response.body), "probability"))
            }
            #expect(answers.count == 2)
            #expect(answers.first == answers.last)
            #expect(answers.first?.count == rows)
            #expect(answers.first.map { zip($0, expected).allSatisfy { abs($0 - $1) <= 1e-12 } } == true)
        }
    }

    @Test func badRequestsGetClearErrors() async throws {
        let server = await ServingFixtures.server(maxBodyBytes: 4096)
        let app = server.buildApplication(logger: ServingFixtures.logger)
        let cases: [(String, HTTPResponse.Status, String)] = [
            ("{not json", .badRequest, "malformed request JSON"),
            (#"{"inputs":[{"name":"x","shape":[1,29],"datatype":"FP32","data":[\#(Array(repeating: "1", count: 29).joined(separator: ","))]}]}"#, .badRequest, "shape [1, 29] does not fit the model's 8 features"),
            (#"{"inputs":[{"name":"x","shape":[1,8],"datatype":"FP32","data":[1]}]}"#, .badRequest, "holds 8 values, but data has 1"),
            (#"{"inputs":[{"name":"x","shape":[1,8],"datatype":"FP32","data":[1,2,3,4,5,6,7,8]}],"outputs":[{"name":"nope"}]}"#, .badRequest, "unknown output 'nope'"),
            (String(repeating: " ", count: 5000), .contentTooLarge, "larger than 4096 bytes"),
        ]
        try await app.test(.router) { client in
            for (body, status, message) in cases {
                try await client.execute(uri: "/v2/models/binary/infer", method: .post, body: ByteBuffer(string: body)) { response in
                    #expect(response.status == status, "\(message)")
                    #expect(response.headers[.contentType] == "application/json")
                    let error = try ServingFixtures.errorMessage(response.body)
                    #expect(error?.contains(message) == true, "\(error ?? "no error") should mention \(message)")
                }
            }
            try await client.execute(uri: "/v2/models/missing/infer", method: .post, body: ServingFixtures.requestBody([1], rows: 1, features: 1)) {
                #expect($0.status == .notFound)
            }
            try await client.execute(
                uri: "/v2/models/binary/infer", method: .post, headers: [.inferenceHeaderContentLength: "abc"], body: ByteBuffer(string: "{}")
            ) { #expect($0.status == .badRequest) }
        }
    }

    /// A full queue answers 503 with `Retry-After`; a request larger than the queue could ever
    /// hold answers 413 (no retry would help).
    @Test func overloadAnswers503WithRetryAfter() async throws {
        // The queue delay keeps the first request's rows queued while the second arrives.
        let server = await ServingFixtures.server(
            ["queued": ServingFixtures.model("xgb3_binary_logistic.json")],
            batching: BatchingSettings(maxBatchRows: 4, maxQueueDelayMilliseconds: 5_000, maxQueuedRows: 4, maxConcurrentBatches: 1))
        let app = server.buildApplication(logger: ServingFixtures.logger, metrics: ServingFixtures.registry)
        try await app.test(.router) { client in
            func rows(_ count: Int) -> ByteBuffer {
                ServingFixtures.requestBody(Array(repeating: 0.5, count: 8 * count), rows: count, features: 8)
            }
            try await client.execute(uri: "/v2/models/queued/infer", method: .post, body: rows(5)) { response in
                #expect(response.status == .contentTooLarge)
                let message = try ServingFixtures.errorMessage(response.body)
                #expect(message?.contains("5 rows") == true && message?.contains("at most 4") == true, "\(message ?? "")")
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await client.execute(uri: "/v2/models/queued/infer", method: .post, body: rows(3)) { #expect($0.status == .ok) }
                }
                // Until the three rows are seen queued (the gauge), then two more do not fit.
                #expect(try await Self.queuedRows(3, model: "queued", client: client, within: .seconds(10)))
                try await client.execute(uri: "/v2/models/queued/infer", method: .post, body: rows(2)) { response in
                    #expect(response.status == .serviceUnavailable)
                    #expect(response.headers[.retryAfter] == "1")
                    let message = try ServingFixtures.errorMessage(response.body)
                    #expect(message?.contains("overloaded") == true)
                }
                try await group.waitForAll()
            }
            // Drained: the gauge is back to zero.
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(String(buffer: response.body).contains(#"wharf_queued_rows{model="queued",version="1"} 0.0"#))
            }
        }
    }

    @Test func requestIDsAreEchoedOrMade() async throws {
        let server = await ServingFixtures.server()
        let app = server.buildApplication(logger: ServingFixtures.logger)
        try await app.test(.router) { client in
            try await client.execute(uri: "/v2/health/live", method: .get, headers: [.requestID: "abc-123"]) {
                #expect($0.headers[.requestID] == "abc-123")
            }
            try await client.execute(uri: "/v2/health/live", method: .get) {
                #expect($0.headers[.requestID]?.count == 16)
            }
        }
        // Made ids are sixteen hex digits and do not repeat.
        let made = (0..<20_000).map { _ in RequestIDs.makeID() }
        #expect(Set(made).count == made.count)
        #expect(made.allSatisfy { $0.utf8.count == 16 && $0.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) } })
    }

    @Test func repositoryLoadUnloadAndIndex() async throws {
        let server = await ServingFixtures.server()
        let app = server.buildApplication(logger: ServingFixtures.logger)
        try await app.test(.router) { client in
            try await client.execute(uri: "/v2/repository/index", method: .post) { response in
                let entries = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [[String: Any]]
                #expect(entries?.first?["state"] as? String == "READY")
            }
            try await client.execute(uri: "/v2/repository/models/binary/load", method: .post) { response in
                #expect(response.status == .ok)
                let json = try ServingFixtures.json(response.body)
                #expect(json["version"] as? String == "2")
            }
            try await client.execute(uri: "/v2/models/binary", method: .get) { response in
                let json = try ServingFixtures.json(response.body)
                #expect(json["versions"] as? [String] == ["1", "2"])
            }
            try await client.execute(uri: "/v2/repository/models/binary/unload", method: .post) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v2/models/binary/ready", method: .get) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/v2/repository/models/binary/unload", method: .post) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/v2/repository/models/other/load", method: .post) { #expect($0.status == .notFound) }
            // A name this server never had stays unknown (a 404, not a 503 kept for good); one
            // that could leave the repository directory is a 400.
            try await client.execute(uri: "/v2/models/other/ready", method: .get) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/v2/repository/models/../load", method: .post) { #expect($0.status == .badRequest) }
            try await client.execute(uri: "/v2/repository/index", method: .post) { response in
                let entries = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [[String: Any]]
                #expect(entries?.first?["state"] as? String == "UNAVAILABLE")
                #expect(entries?.map { $0["name"] as? String } == ["binary"])
            }
            // {"ready": true} lists only the models that can answer.
            try await client.execute(uri: "/v2/repository/index", method: .post, body: ByteBuffer(string: #"{"ready": true}"#)) { response in
                #expect(String(buffer: response.body) == "[]")
            }
            try await client.execute(uri: "/v2/repository/index", method: .post, body: ByteBuffer(string: #"{"ready": 3}"#)) {
                #expect($0.status == .badRequest)
            }
        }
    }

    @Test func metricsAreExposed() async throws {
        let server = await ServingFixtures.server(["metered": ServingFixtures.model("xgb3_binary_logistic.json")])
        let app = server.buildApplication(logger: ServingFixtures.logger, metrics: ServingFixtures.registry)
        try await app.test(.router) { client in
            let body = ServingFixtures.requestBody(Array(repeating: 0.5, count: 8), rows: 1, features: 8)
            try await client.execute(uri: "/v2/models/metered/infer", method: .post, body: body) { #expect($0.status == .ok) }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(text.contains(#"wharf_inference_requests_total{model="metered",version="1",status="ok"}"#))
                #expect(text.contains("wharf_inference_duration_seconds"))
                #expect(text.contains("wharf_batch_rows"))
                // Per route, method and status (the middleware that keeps single-write answers).
                #expect(text.contains(#"hb_requests{http_route="/v2/models/{model}/infer",http_request_method="POST",http_response_status_code="200"}"#))
                #expect(text.contains(#"http_server_request_duration_count{http_route="/v2/models/{model}/infer",http_request_method="POST",http_response_status_code="200"}"#))
            }
        }
    }

    /// Whether the queue gauge of `model` (version 1) shows `rows` within `within`, polled.
    private static func queuedRows(_ rows: Int, model: String, client: some TestClientProtocol, within: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + within
        while ContinuousClock.now < deadline {
            let seen = try await client.execute(uri: "/metrics", method: .get) { response in
                String(buffer: response.body).contains(#"wharf_queued_rows{model="\#(model)",version="1"} \#(rows).0"#)
            }
            if seen { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return false
    }

    /// The request that leads a batch returns once its own rows are done: requests queued after
    /// it are evaluated by a task of their own, not by the leader before it may answer.
    @Test func aBatchLeaderDoesNotWaitForLaterRequests() async throws {
        // A queue delay of 5 s: the leader waits for more rows, then takes two of the three queued.
        let server = await ServingFixtures.server(
            ["leader": ServingFixtures.model("xgb3_binary_logistic.json")],
            batching: BatchingSettings(maxBatchRows: 2, maxQueueDelayMilliseconds: 5_000, maxQueuedRows: 8, maxConcurrentBatches: 1))
        let app = server.buildApplication(logger: ServingFixtures.logger, metrics: ServingFixtures.registry)
        try await app.test(.router) { client in
            let row = ServingFixtures.requestBody(Array(repeating: 0.5, count: 8), rows: 1, features: 8)
            func queued(_ rows: Int) async throws -> Bool {
                try await Self.queuedRows(rows, model: "leader", client: client, within: .seconds(4))
            }
            // Judged only when the three requests were seen queued together, within the delay: a
            // machine too loaded to send them in 5 s proves nothing either way.
            let together = Locked(false)
            let lastDone = Locked(false)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await client.execute(uri: "/v2/models/leader/infer", method: .post, body: row) { #expect($0.status == .ok) }
                    if together.value { #expect(!lastDone.value, "the leader answered only after the request queued last") }
                }
                var seen = try await queued(1)
                group.addTask {
                    try await client.execute(uri: "/v2/models/leader/infer", method: .post, body: row) { #expect($0.status == .ok) }
                }
                seen = try await queued(2) && seen
                group.addTask {
                    try await client.execute(uri: "/v2/models/leader/infer", method: .post, body: row) { #expect($0.status == .ok) }
                    lastDone.withLock { $0 = true }
                }
                seen = try await queued(3) && seen
                together.withLock { $0 = seen }
                try await group.waitForAll()
            }
        }
    }

    /// A version that leaves the server (swapped out beyond the two kept, or unloaded) leaves
    /// `/metrics`: hot swaps do not grow the label sets without bound.
    @Test func retiredVersionsLeaveTheMetrics() async throws {
        let server = await ServingFixtures.server(["retired": ServingFixtures.model("xgb3_binary_logistic.json")])
        let app = server.buildApplication(logger: ServingFixtures.logger, metrics: ServingFixtures.registry)
        try await app.test(.router) { client in
            func exported() async throws -> String {
                try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            }
            #expect(try await exported().contains(#"wharf_inference_requests_total{model="retired",version="1",status="ok"}"#))
            for _ in 0..<2 {
                try await client.execute(uri: "/v2/repository/models/retired/load", method: .post) { #expect($0.status == .ok) }
            }
            let swapped = try await exported()
            #expect(!swapped.contains(#"model="retired",version="1""#))
            #expect(swapped.contains(#"wharf_inference_requests_total{model="retired",version="3",status="ok"}"#))
            try await client.execute(uri: "/v2/repository/models/retired/unload", method: .post) { #expect($0.status == .ok) }
            #expect(try await !exported().contains(#"model="retired",version="#))
        }
    }

    /// Inference paths are recognised without the router (ServingResponder), with the same
    /// parameters, endpoint label and middleware; near misses still go to the router.
    @Test func inferenceTakesTheFastPathWithTheRoutersLabels() async throws {
        let server = await ServingFixtures.server(["fast": ServingFixtures.model("xgb3_binary_logistic.json")])
        let app = server.buildApplication(logger: ServingFixtures.logger, metrics: ServingFixtures.registry)
        try await app.test(.router) { client in
            let body = ServingFixtures.requestBody(Array(repeating: 0.5, count: 8), rows: 1, features: 8)
            try await client.execute(uri: "/v2/models/fast/infer", method: .post, headers: [.requestID: "fast-1"], body: body) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.requestID] == "fast-1")
                let json = try ServingFixtures.json(response.body)
                #expect(json["model_name"] as? String == "fast")
            }
            try await client.execute(uri: "/v2/models/fast/versions/1/infer", method: .post, body: body) { response in
                #expect(response.status == .ok)
                let json = try ServingFixtures.json(response.body)
                #expect(json["model_version"] as? String == "1")
            }
            try await client.execute(uri: "/v2/models/fast/versions/9/infer", method: .post, body: body) { response in
                #expect(response.status == .notFound)
                let message = try ServingFixtures.errorMessage(response.body)
                #expect(message?.contains("9") == true)
                #expect(response.headers[.requestID] != nil)
            }
            try await client.execute(uri: "/v2/models/nope/infer", method: .post, body: body) { #expect($0.status == .notFound) }
            // The router drops the empty segment: the metadata path of a model named "infer".
            try await client.execute(uri: "/v2/models//infer", method: .post, body: body) { #expect($0.status == .methodNotAllowed) }
            try await client.execute(uri: "/v2/models/fast/infer/", method: .post, body: body) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v2/models/fast/versions/1/extra/infer", method: .post, body: body) { #expect($0.status == .notFound) }
            // A known path with a method it does not take: 405, with what it takes.
            try await client.execute(uri: "/v2/models/fast/infer", method: .get) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "POST")
                let message = try ServingFixtures.errorMessage(response.body)
                #expect(message?.contains("GET is not allowed on /v2/models/fast/infer") == true)
            }
            try await client.execute(uri: "/v2/health/live", method: .post) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "GET")
            }
            try await client.execute(uri: "/v2/no/such/path", method: .get) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(text.contains(#"/v2/models/{model}/infer""#), "\(text.prefix(2000))")
                #expect(text.contains(#"/v2/models/{model}/versions/{version}/infer""#))
            }
        }
    }
}
