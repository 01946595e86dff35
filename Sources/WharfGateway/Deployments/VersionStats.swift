import Metrics
import Synchronization

/// Live figures of one deployed version: Prometheus series for people and dashboards, and a
/// window of recent requests for the canary controller's judgement.
final class VersionStats: Sendable {
    private let succeeded: Counter
    private let failed: Counter
    private let latency: Timer
    private let shadowAgreed: Counter
    private let shadowDisagreed: Counter
    private let shadowFailed: Counter

    struct Window {
        var latencies: [Double] = []
        var failures = 0
        var requests = 0
        var shadowCompared = 0
        var shadowDisagreements = 0
    }

    /// Since the last `resetWindow()`; latencies capped so a long step cannot grow it unbounded.
    private let window = Mutex(Window())
    static let windowCapacity = 50_000

    init(deployment: String, version: String) {
        let dimensions = [("deployment", deployment), ("version", version)]
        succeeded = Counter(label: "wharf_gateway_requests_total", dimensions: dimensions + [("status", "ok")])
        failed = Counter(label: "wharf_gateway_requests_total", dimensions: dimensions + [("status", "error")])
        latency = Timer(label: "wharf_gateway_request_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
        shadowAgreed = Counter(label: "wharf_gateway_shadow_comparisons_total", dimensions: dimensions + [("result", "agree")])
        shadowDisagreed = Counter(label: "wharf_gateway_shadow_comparisons_total", dimensions: dimensions + [("result", "disagree")])
        shadowFailed = Counter(label: "wharf_gateway_shadow_comparisons_total", dimensions: dimensions + [("result", "error")])
    }

    func record(failed isFailure: Bool, duration: Duration) {
        (isFailure ? failed : succeeded).increment()
        latency.recordNanoseconds(duration.nanoseconds)
        let milliseconds = duration.milliseconds
        window.withLock { window in
            window.requests += 1
            if isFailure { window.failures += 1 }
            if window.latencies.count < Self.windowCapacity { window.latencies.append(milliseconds) }
        }
    }

    enum ShadowOutcome { case agree, disagree, failed }

    func recordShadow(_ outcome: ShadowOutcome) {
        switch outcome {
        case .agree: shadowAgreed.increment()
        case .disagree: shadowDisagreed.increment()
        case .failed: shadowFailed.increment()
        }
        window.withLock { window in
            window.shadowCompared += 1
            if outcome != .agree { window.shadowDisagreements += 1 }
        }
    }

    struct Summary: Sendable, Hashable, Codable {
        var requests: Int
        var errorRate: Double
        var p50Milliseconds: Double?
        var p99Milliseconds: Double?
        var shadowCompared: Int
        var shadowDisagreementRate: Double?

        enum CodingKeys: String, CodingKey {
            case requests
            case errorRate = "error_rate"
            case p50Milliseconds = "p50_ms"
            case p99Milliseconds = "p99_ms"
            case shadowCompared = "shadow_compared"
            case shadowDisagreementRate = "shadow_disagreement_rate"
        }
    }

    func summary() -> Summary {
        window.withLock { window in
            let sorted = window.latencies.sorted()
            // Nearest rank: the smallest value with at least q of the values at or below it.
            func quantile(_ q: Double) -> Double? {
                guard !sorted.isEmpty else { return nil }
                let rank = Int((Double(sorted.count) * q).rounded(.up))
                return sorted[min(sorted.count, max(1, rank)) - 1]
            }
            return Summary(
                requests: window.requests, errorRate: window.requests == 0 ? 0 : Double(window.failures) / Double(window.requests),
                p50Milliseconds: quantile(0.5), p99Milliseconds: quantile(0.99), shadowCompared: window.shadowCompared,
                shadowDisagreementRate: window.shadowCompared == 0 ? nil : Double(window.shadowDisagreements) / Double(window.shadowCompared))
        }
    }

    func resetWindow() {
        window.withLock { $0 = Window() }
    }
}

extension Duration {
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}
