import Dispatch
import WharfCore

/// Measures a model's evaluation speed on synthetic rows, in process.
///
/// Rows are drawn from the model's own split thresholds (each value a threshold nudged up or
/// down, about 2% missing), so every branch is taken, as with real data, and the measurement
/// does not flatter a predictor that sees one path only. Seeded, so runs are comparable.
public struct PredictionBenchmark: Sendable {
    public struct Result: Sendable, Codable {
        public var rows: Int
        public var batch: Int
        public var threads: Int
        public var seconds: Double
        public var rowsPerSecond: Double
        public var microsPerCall: Double

        enum CodingKeys: String, CodingKey {
            case rows, batch, threads, seconds
            case rowsPerSecond = "rows_per_second"
            case microsPerCall = "micros_per_call"
        }
    }

    public var rows: Int
    public var batch: Int
    public var threads: Int
    public var seed: UInt64

    public init(rows: Int, batch: Int, threads: Int, seed: UInt64 = 42) {
        self.rows = rows
        self.batch = batch
        self.threads = threads
        self.seed = seed
    }

    /// `count` synthetic rows for `model`, row-major.
    public static func syntheticRows(for model: Model, count: Int, seed: UInt64) -> [Double] {
        var generator = SeededGenerator(seed: seed)
        let thresholds = model.splitThresholds()
        let features = model.metadata.featureCount
        var values = [Double](repeating: 0, count: count * features)
        for row in 0..<count {
            for feature in 0..<features {
                let pick = generator.nextUnit()
                let value: Double
                if pick < 0.02 {
                    value = .nan
                } else if let candidates = thresholds[feature].isEmpty ? nil : thresholds[feature] {
                    let threshold = candidates[Int(generator.next() % UInt64(candidates.count))]
                    value = threshold + (generator.nextUnit() - 0.5) * max(abs(threshold), 1) * 0.1
                } else {
                    value = generator.nextUnit() * 4 - 2
                }
                values[row * features + feature] = value
            }
        }
        return values
    }

    /// Runs `rows` rows per thread in calls of `batch` rows, on `threads` threads at once, over
    /// `input` (row-major, cycled through).
    public func run(model: Model, input: [Double]) throws(WharfError) -> Result {
        let features = model.metadata.featureCount
        let available = input.count / features
        guard available >= batch, batch >= 1, threads >= 1, rows >= batch else {
            throw WharfError(.invalidInput, "need batch >= 1, threads >= 1, rows >= batch and at least one batch of input rows")
        }
        let callsPerThread = rows / batch
        let width = model.metadata.output.width
        let batch = batch
        // One warm-up pass fills the caches and faults the pages in.
        try runCalls(model: model, input: input, available: available, calls: min(callsPerThread, 64), offset: 0, width: width)
        let start = DispatchTime.now().uptimeNanoseconds
        let failures = FailureBox()
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            do {
                try runCalls(model: model, input: input, available: available, calls: callsPerThread, offset: thread * 7919, width: width)
            } catch {
                failures.record(error)
            }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if let error = failures.first { throw error }
        let total = callsPerThread * batch * threads
        return Result(
            rows: total,
            batch: batch,
            threads: threads,
            seconds: seconds,
            rowsPerSecond: Double(total) / seconds,
            microsPerCall: seconds * 1e6 / Double(callsPerThread)
        )
    }

    private func runCalls(model: Model, input: [Double], available: Int, calls: Int, offset: Int, width: Int) throws(WharfError) {
        let features = model.metadata.featureCount
        var output = [Double](repeating: 0, count: batch * width)
        try input.withUnsafeBufferPointer { input throws(WharfError) in
            try output.withUnsafeMutableBufferPointer { output throws(WharfError) in
                var first = offset % (available - batch + 1)
                for _ in 0..<calls {
                    let slice = UnsafeBufferPointer(rebasing: input[(first * features)..<((first + batch) * features)])
                    try model.predict(slice, rows: batch, into: output)
                    first += batch
                    if first + batch > available { first = 0 }
                }
            }
        }
    }
}

/// Collects the first error thrown on any benchmark thread.
private final class FailureBox: @unchecked Sendable {
    private let lock = DispatchQueue(label: "wharf.benchmark.failures")
    private var stored: WharfError?

    func record(_ error: any Error) {
        lock.sync { if stored == nil { stored = error as? WharfError ?? WharfError(.internalError, "\(error)") } }
    }

    var first: WharfError? { lock.sync { stored } }
}
