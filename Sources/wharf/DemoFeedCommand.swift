import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import WharfClient
import WharfCore
import WharfRuntime

/// The demo's data source (`wharf up --demo` runs it): patients arrive a few at a time. Their
/// measurements go to the hub's features stream and, through the gateway, to the model in
/// production; their diagnoses arrive one tick later on the labels stream, as labels do. The
/// retraining pipeline watches the labels.
struct DemoFeedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-feed",
        abstract: "Feed the demo: patients' measurements, predictions through the gateway, then their diagnoses.",
        shouldDisplay: false
    )

    @Option(help: "The hub (token: WHARF_HUB_TOKEN).") var hub = "http://127.0.0.1:8082"
    @Option(help: "The gateway the predictions go through.") var gateway = "http://127.0.0.1:8080"
    @Option(help: "The model asked.") var model = "demo"
    @Option(help: "Rows drawn from (their label column is the diagnosis).") var rows = "examples/breast-cancer/train.csv"
    @Option(help: "The label column.") var label = "diagnosis"
    @Option(help: "The features stream.") var featuresStream = "cancer-features"
    @Option(help: "The labels stream.") var labelsStream = "cancer-labels"
    @Option(help: "Patients per tick.") var batch = 10
    @Option(help: "Time between ticks: 2s, 500ms.") var every = "1s"
    @Option(help: "Relative noise on each measurement, so every patient is new.") var noise = 0.01
    @Option(help: "Random seed.") var seed: UInt64 = 7

    func validate() throws {
        try checkServiceURL(hub, option: "--hub")
        try checkServiceURL(gateway, option: "--gateway")
    }

    func run() async throws {
        try await reportingErrors {
            guard let token = ProcessInfo.processInfo.environment["WHARF_HUB_TOKEN"] else { throw WharfError(.invalidInput, "set WHARF_HUB_TOKEN") }
            guard (1...1000).contains(batch) else { throw WharfError(.invalidInput, "--batch must be 1…1000") }
            let records = try CSVRecords.read(try readFile(rows))
            let header = records[0]
            guard let labelIndex = header.firstIndex(of: label) else { throw WharfError(.invalidInput, "\(rows) has no column \(label)") }
            let table = records.dropFirst().compactMap { row -> (features: [Double], label: Double)? in
                let numbers = row.map { Double($0) }
                guard numbers.allSatisfy({ $0 != nil }), row.count == header.count else { return nil }
                return (numbers.enumerated().filter { $0.offset != labelIndex }.map { $0.element! }, numbers[labelIndex]!)
            }
            guard !table.isEmpty else { throw WharfError(.invalidInput, "\(rows) has no complete numeric row") }
            let names = header.enumerated().filter { $0.offset != labelIndex }.map(\.element)
            let tick = Duration.milliseconds(Int64(try parseSeconds(every) * 1000))

            var random = SeededGenerator(seed: seed)
            var next = 0
            var pendingLabels: [(patient: String, label: Double)] = []
            var fed = 0, answered = 0, failed = 0, labelled = 0
            let run = UInt64(Date().timeIntervalSince1970)
            while !Task.isCancelled {
                let now = Date().timeIntervalSince1970
                // Yesterday's patients' diagnoses are in.
                if !pendingLabels.isEmpty {
                    let events = pendingLabels.map { ["patient": $0.patient, "ts": now, label: $0.label] as [String: Any] }
                    if try await post(hub + "/v1/streams/\(labelsStream)/events", events, token: token) { labelled += events.count }
                    pendingLabels = []
                }
                var events: [[String: Any]] = []
                var inputs: [[Double]] = []
                for _ in 0..<batch {
                    let (features, diagnosis) = table[next % table.count]
                    next += 1
                    let measured = features.map { $0 * (1 + noise * (2 * random.nextUnit() - 1)) }
                    let patient = "p\(run)-\(next)"
                    var event: [String: Any] = ["patient": patient, "ts": now]
                    for (name, value) in zip(names, measured) { event[name] = value }
                    events.append(event)
                    inputs.append(measured)
                    pendingLabels.append((patient, diagnosis))
                }
                if try await post(hub + "/v1/streams/\(featuresStream)/events", events, token: token) { fed += events.count }
                for input in inputs {
                    if await predict(input) { answered += 1 } else { failed += 1 }
                }
                if (next / batch) % 15 == 0 {
                    writeStandardOutput("\(fed) patients measured, \(labelled) diagnosed; predictions \(answered) answered, \(failed) failed\n")
                }
                try await Task.sleep(for: tick)
            }
        }
    }

    /// Appends events; false (and a line saying why) when the hub refused them.
    private func post(_ url: String, _ events: [[String: Any]], token: String) async throws -> Bool {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "authorization", value: "Bearer \(token)")
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: events)))
        do {
            let response = try await RegistryClient.failFast.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            guard response.status == .ok else {
                writeStandardOutput("the hub answered \(response.status.code): \(String(buffer: body).prefix(200))\n")
                return false
            }
            return true
        } catch {
            writeStandardOutput("cannot reach the hub: \(error)\n")
            return false
        }
    }

    private func predict(_ input: [Double]) async -> Bool {
        var request = HTTPClientRequest(url: "\(gateway)/v2/models/\(model)/infer")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        let data = input.map { String($0) }.joined(separator: ",")
        request.body = .bytes(ByteBuffer(string: #"{"inputs":[{"name":"input-0","shape":[1,\#(input.count)],"datatype":"FP64","data":[\#(data)]}]}"#))
        guard let response = try? await RegistryClient.failFast.execute(request, timeout: .seconds(5)) else { return false }
        _ = try? await response.body.collect(upTo: 1 << 20)
        return response.status == .ok
    }
}
