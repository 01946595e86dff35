import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import WharfCore
import WharfRuntime
import WharfServing

enum ServingFixtures {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func model(_ name: String) -> String { fixtures.appendingPathComponent("models/\(name)").path }

    /// One Prometheus registry for the whole test process: swift-metrics is bootstrapped once.
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()

    static let logger: Logger = {
        var logger = Logger(label: "wharf.tests")
        logger.logLevel = .warning
        return logger
    }()

    /// A server over fixture models, loaded and ready before the first request.
    static func server(
        _ models: [String: String] = ["binary": model("xgb3_binary_logistic.json")],
        batching: BatchingSettings = BatchingSettings(),
        maxBodyBytes: Int = 1 << 20,
        idleTimeout: Duration? = .seconds(60)
    ) async -> ModelServer {
        _ = registry
        let configuration = ServingConfiguration(host: "127.0.0.1", port: 0, catalog: .files(models), batching: batching, maxBodyBytes: maxBodyBytes,
                                                 idleTimeout: idleTimeout)
        let server = ModelServer(configuration: configuration, logger: logger)
        await server.manager.loadAll()
        server.readiness.markLoaded()
        return server
    }

    /// Rows of a fixture's input CSV, row-major.
    static func rows(_ fixture: String, model: Model) throws -> (values: [Double], rows: Int) {
        let data = try Data(contentsOf: fixtures.appendingPathComponent("models/\(fixture).input.csv"))
        let table = try FeatureTable(csv: [UInt8](data), metadata: model.metadata)
        return (table.values, table.rows)
    }

    static func json(_ buffer: ByteBuffer) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))
        guard let dictionary = object as? [String: Any] else { throw WharfError(.internalError, "not a JSON object") }
        return dictionary
    }

    /// An OIP JSON request body for `rows` rows; NaN as null.
    static func requestBody(_ values: [Double], rows: Int, features: Int, id: String? = nil, extra: String = "") -> ByteBuffer {
        let data = values.map { $0.isNaN ? "null" : "\($0)" }.joined(separator: ",")
        let idField = id.map { #""id":"\#($0)","# } ?? ""
        return ByteBuffer(string: #"{\#(idField)"inputs":[{"name":"input-0","shape":[\#(rows),\#(features)],"datatype":"FP64","data":[\#(data)]}]\#(extra)}"#)
    }

    static func errorMessage(_ buffer: ByteBuffer) throws -> String? {
        try json(buffer)["error"] as? String
    }

    static func outputData(_ body: [String: Any], _ name: String) -> [Double] {
        let outputs = body["outputs"] as? [[String: Any]] ?? []
        let output = outputs.first { $0["name"] as? String == name }
        return (output?["data"] as? [Any])?.compactMap { ($0 as? NSNumber)?.doubleValue } ?? []
    }
}
