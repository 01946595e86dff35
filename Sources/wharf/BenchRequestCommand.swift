import ArgumentParser
import Foundation
import WharfCore
import WharfRuntime
import WharfServing

/// Times the OIP request decoder on a request body, the hot path of every inference request,
/// so that a change to it can be measured before and after (see bench/README.md).
struct BenchRequestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-request",
        abstract: "Measure how fast an OIP inference request body is decoded (and answered, with --model).",
        discussion: """
            Decodes the body again and again for --seconds after a warm-up, and prints the \
            median time of a decode over rounds of --rounds, in microseconds, with the \
            throughput in megabytes and tensor elements a second. With --model, each round \
            also does what the model server does with the request between HTTP and HTTP: \
            the input matrix, the model's evaluation (on this thread, unbatched), the outputs \
            and the encoded response.
            """
    )

    @Option(help: "The request body: OIP JSON, or a JSON header and binary tensors.")
    var body: String

    @Option(help: "Inference-Header-Content-Length of a binary request.")
    var headerLength: Int?

    @Option(help: "A model file: time the whole answer, not only the decode.")
    var model: String?

    @Option(help: "Seconds to measure.")
    var seconds: Double = 2

    @Option(help: "Rounds the time is split into; the median round is reported.")
    var rounds: Int = 9

    @Flag(help: "Print a JSON object.")
    var json = false

    struct Result: Encodable {
        var bytes: Int
        var elements: Int
        var microsPerDecode: Double
        var megabytesPerSecond: Double
        var elementsPerSecond: Double
    }

    func run() throws {
        try reportingErrors {
            let bytes = try readFile(body)
            let headerLength = headerLength
            let loaded = try model.map { try ModelLoader.load(path: $0) }
            func decode() throws -> InferenceRequest {
                let request = try bytes.withUnsafeBytes { try InferenceRequestDecoder.decode($0, headerLength: headerLength) }
                guard let loaded else { return request }
                let (values, rows) = try InputAssembler.matrix(for: request, metadata: loaded.metadata)
                let predictions = try loaded.predict(values, rows: rows)
                let outputs = try OutputBuilder.outputs(for: request, metadata: loaded.metadata, values: predictions, rows: rows)
                let encoded = InferenceResponseEncoder.encode(
                    InferenceResponse(modelName: "bench", modelVersion: "1", id: request.id, outputs: outputs))
                precondition(!encoded.body.isEmpty)
                return request
            }
            let elements = try decode().inputs.reduce(0) { $0 + $1.data.count }
            // Read once: an option's getter is slow enough to show in a profile of this loop.
            let rounds = max(1, rounds)
            let roundTime = Duration.seconds(seconds / Double(rounds))
            let clock = ContinuousClock()
            let warmUpEnd = clock.now + .milliseconds(200)
            while clock.now < warmUpEnd { _ = try decode() }
            var perDecode: [Double] = []
            for _ in 0..<rounds {
                let start = clock.now
                var count = 0
                repeat {
                    _ = try decode()
                    count += 1
                } while clock.now - start < roundTime
                let elapsed = clock.now - start
                perDecode.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
                perDecode[perDecode.count - 1] /= Double(count)
            }
            let median = perDecode.sorted()[perDecode.count / 2]
            let result = Result(
                bytes: bytes.count, elements: elements, microsPerDecode: median * 1e6,
                megabytesPerSecond: Double(bytes.count) / median / 1e6, elementsPerSecond: Double(elements) / median)
            if json {
                writeStandardOutput(try encodeJSON(result))
            } else {
                writeStandardOutput(
                    """
                    body: \(body) (\(bytes.count) bytes, \(elements) elements)\(model.map { "; decoded, evaluated by \($0) and answered" } ?? "")
                    microseconds per decode: \(String(format: "%.1f", result.microsPerDecode))
                    megabytes per second: \(String(format: "%.0f", result.megabytesPerSecond))
                    elements per second: \(Int(result.elementsPerSecond))

                    """
                )
            }
        }
    }
}
