import Metrics
import Synchronization
import WharfCore
import WharfRuntime

/// Merges concurrent requests for one model version into batch evaluations, and gives every
/// caller exactly its own rows back.
///
/// No background worker: the request that finds the model idle evaluates the queue itself,
/// batch after batch, until its own rows are done; if more are queued by then, a task takes
/// over the rest (so a leader never waits on later requests). Up to
/// ``BatchingSettings/maxConcurrentBatches`` evaluations run at once. Evaluation happens on
/// Swift's cooperative pool (one thread per core), never on the NIO event loops. Admission is
/// bounded by queued rows, so overload is a fast 503 (a request larger than the whole queue, a
/// 413), not unbounded memory.
final class Batcher: Sendable {
    private struct Job {
        var input: [Double]
        var rows: Int
        var promise: Promise<[Double]>
    }

    private struct State {
        var queue: [Job] = []
        var head = 0
        var queuedRows = 0
        var activeBatches = 0
    }

    let model: Model
    let settings: BatchingSettings
    private let state = Mutex(State())
    private let batchRows: Recorder
    private let queueDepth: Meter

    init(model: Model, settings: BatchingSettings, dimensions: [(String, String)]) {
        self.model = model
        self.settings = settings
        batchRows = Recorder(label: "wharf_batch_rows", dimensions: dimensions, aggregate: true)
        queueDepth = Meter(label: "wharf_queued_rows", dimensions: dimensions)
    }

    func destroyMetrics() {
        batchRows.destroy()
        queueDepth.destroy()
    }

    /// Evaluates `rows` rows (row-major, `featureCount` each) and returns their outputs
    /// (row-major, `output.width` each).
    func predict(_ input: [Double], rows: Int) async throws -> [Double] {
        // More rows than the queue ever holds: no retry can succeed, so not a 503.
        guard rows <= settings.maxQueuedRows else {
            throw WharfError(.payloadTooLarge, "the request has \(rows) rows; this model takes at most \(settings.maxQueuedRows) a request (its max_queued_rows)")
        }
        let promise = Promise<[Double]>()
        let (lead, depth): (Bool, Int) = try state.withLock { state in
            guard state.queuedRows + rows <= settings.maxQueuedRows else {
                throw WharfError(.unavailable, "model is overloaded: \(state.queuedRows) rows are queued (limit \(settings.maxQueuedRows)); retry shortly")
            }
            state.queue.append(Job(input: input, rows: rows, promise: promise))
            state.queuedRows += rows
            guard state.activeBatches < settings.maxConcurrentBatches else { return (false, state.queuedRows) }
            state.activeBatches += 1
            return (true, state.queuedRows)
        }
        queueDepth.set(depth)
        if lead { await drain(answering: promise) }
        return try await promise.value
    }

    /// Evaluates queued jobs until the queue is empty, or, for a request that leads, until its
    /// own rows have been taken into a batch (by it, or by another evaluation running at once):
    /// the rest of the queue is then drained by a task of its own, so a leader's answer never
    /// waits for requests that arrived after it.
    private func drain(answering own: Promise<[Double]>?) async {
        while true {
            if let own, own.isTaken {
                let more = state.withLock { state in
                    guard state.head >= state.queue.count else { return true }
                    state.activeBatches -= 1
                    state.queue.removeAll(keepingCapacity: true)
                    state.head = 0
                    return false
                }
                // The batch slot goes with it (still counted in `activeBatches`).
                if more { Task { await self.drain(answering: nil) } }
                return
            }
            if settings.maxQueueDelayMilliseconds > 0,
                state.withLock({ $0.queuedRows < settings.maxBatchRows })
            {
                try? await Task.sleep(for: .microseconds(Int(settings.maxQueueDelayMilliseconds * 1000)))
            }
            let batch: (jobs: [Job], depth: Int)? = state.withLock { state in
                guard state.head < state.queue.count else {
                    state.activeBatches -= 1
                    state.queue.removeAll(keepingCapacity: true)
                    state.head = 0
                    return nil
                }
                // Always take one job, however large; then whole jobs while they fit.
                var taken = [state.queue[state.head]]
                var rows = taken[0].rows
                state.head += 1
                while state.head < state.queue.count, rows + state.queue[state.head].rows <= settings.maxBatchRows {
                    rows += state.queue[state.head].rows
                    taken.append(state.queue[state.head])
                    state.head += 1
                }
                state.queuedRows -= rows
                for job in taken { job.promise.markTaken() }
                // Taken jobs leave the queue now: it must not keep their inputs alive.
                if state.head == state.queue.count {
                    state.queue.removeAll(keepingCapacity: true)
                    state.head = 0
                } else if state.head >= 64, state.head * 2 > state.queue.count {
                    state.queue.removeFirst(state.head)
                    state.head = 0
                }
                return (taken, state.queuedRows)
            }
            guard let batch else { return }
            queueDepth.set(batch.depth)
            await evaluate(batch.jobs)
        }
    }

    private func evaluate(_ jobs: [Job]) async {
        let width = model.metadata.output.width
        let rows = jobs.reduce(0) { $0 + $1.rows }
        batchRows.record(rows)
        do {
            if jobs.count == 1 {
                jobs[0].promise.fulfil(.success(try await evaluateRows(jobs[0].input, rows: rows)))
                return
            }
            var input: [Double] = []
            input.reserveCapacity(rows * model.metadata.featureCount)
            for job in jobs { input.append(contentsOf: job.input) }
            let output = try await evaluateRows(input, rows: rows)
            var offset = 0
            for job in jobs {
                let count = job.rows * width
                job.promise.fulfil(.success(Array(output[offset..<(offset + count)])))
                offset += count
            }
        } catch {
            for job in jobs { job.promise.fulfil(.failure(error)) }
        }
    }

    /// Rows per part when a large batch is split across cores.
    static var partRows: Int { 256 }

    /// Evaluates a batch; a large one is split into parts evaluated on all cores at once, so a
    /// 1000-row request is answered in a fraction of one core's time.
    private func evaluateRows(_ input: [Double], rows: Int) async throws -> [Double] {
        let parts = min(BatchingSettings.processorCount, rows / Self.partRows)
        guard parts > 1 else { return try model.predict(input, rows: rows) }
        let features = model.metadata.featureCount
        let model = model
        return try await withThrowingTaskGroup(of: (Int, [Double]).self) { group in
            for part in 0..<parts {
                let first = rows * part / parts
                let end = rows * (part + 1) / parts
                let slice = Array(input[(first * features)..<(end * features)])
                group.addTask { (part, try model.predict(slice, rows: end - first)) }
            }
            var results = [[Double]](repeating: [], count: parts)
            for try await (part, output) in group { results[part] = output }
            return results.flatMap { $0 }
        }
    }
}
