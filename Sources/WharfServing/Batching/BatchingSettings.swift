#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import WharfCore

/// How one model's concurrent requests are merged into evaluations.
///
/// Defaults suit a small server: evaluation starts as soon as the model is free (no added
/// latency at low load); while it is busy, requests queue and the next evaluation takes them
/// all, up to `maxBatchRows`. A queue over `maxQueuedRows` answers 503 with `Retry-After`.
///
/// | key (settings file) | default | meaning |
/// | --- | --- | --- |
/// | `max_batch_rows` | 1024 | rows one evaluation takes at most |
/// | `max_queue_delay_ms` | 0 | extra wait for more rows before evaluating (0: none) |
/// | `max_queued_rows` | 65536 | rows waiting at most before requests are refused |
/// | `max_concurrent_batches` | cores | evaluations of this model at once |
public struct BatchingSettings: Sendable, Hashable, Codable {
    public var maxBatchRows: Int
    public var maxQueueDelayMilliseconds: Double
    public var maxQueuedRows: Int
    public var maxConcurrentBatches: Int

    public init(
        maxBatchRows: Int = 1024,
        maxQueueDelayMilliseconds: Double = 0,
        maxQueuedRows: Int = 65_536,
        maxConcurrentBatches: Int = BatchingSettings.processorCount
    ) {
        self.maxBatchRows = maxBatchRows
        self.maxQueueDelayMilliseconds = maxQueueDelayMilliseconds
        self.maxQueuedRows = maxQueuedRows
        self.maxConcurrentBatches = maxConcurrentBatches
    }

    /// Read once: glibc's sysconf opens /sys/devices/system/cpu/online on every call, which
    /// cost a few percent of a small request when it was read per batch.
    public static let processorCount: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    enum CodingKeys: String, CodingKey, CaseIterable {
        case maxBatchRows = "max_batch_rows"
        case maxQueueDelayMilliseconds = "max_queue_delay_ms"
        case maxQueuedRows = "max_queued_rows"
        case maxConcurrentBatches = "max_concurrent_batches"
    }

    public init(from decoder: any Decoder) throws {
        // `max_queue_delay` for `max_queue_delay_ms` would be a setting silently not applied.
        try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
        let defaults = BatchingSettings()
        let container = try decoder.container(keyedBy: CodingKeys.self)
        maxBatchRows = try container.decodeIfPresent(Int.self, forKey: .maxBatchRows) ?? defaults.maxBatchRows
        maxQueueDelayMilliseconds = try container.decodeIfPresent(Double.self, forKey: .maxQueueDelayMilliseconds) ?? defaults.maxQueueDelayMilliseconds
        maxQueuedRows = try container.decodeIfPresent(Int.self, forKey: .maxQueuedRows) ?? defaults.maxQueuedRows
        maxConcurrentBatches = try container.decodeIfPresent(Int.self, forKey: .maxConcurrentBatches) ?? defaults.maxConcurrentBatches
    }

    /// Refuses settings that cannot work.
    public func validated() throws(WharfError) -> BatchingSettings {
        guard maxBatchRows >= 1, maxQueuedRows >= maxBatchRows, maxConcurrentBatches >= 1,
            maxQueueDelayMilliseconds >= 0, maxQueueDelayMilliseconds <= 10_000
        else {
            throw WharfError(.invalidInput, "batching settings need max_batch_rows >= 1, max_queued_rows >= max_batch_rows, max_concurrent_batches >= 1 and 0 <= max_queue_delay_ms <= 10000")
        }
        return self
    }
}
