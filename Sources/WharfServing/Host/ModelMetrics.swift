import Metrics

/// One model version's metrics, made once when it loads, so answering a request costs no
/// metric lookups. Labels are bounded: model, version, status.
struct ModelMetrics: Sendable {
    let succeeded: Counter
    let invalid: Counter
    let overloaded: Counter
    let latency: Timer
    let rows: Counter

    init(name: String, version: String) {
        let dimensions = [("model", name), ("version", version)]
        succeeded = Counter(label: "wharf_inference_requests_total", dimensions: dimensions + [("status", "ok")])
        invalid = Counter(label: "wharf_inference_requests_total", dimensions: dimensions + [("status", "invalid")])
        overloaded = Counter(label: "wharf_inference_requests_total", dimensions: dimensions + [("status", "overloaded")])
        latency = Timer(label: "wharf_inference_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
        rows = Counter(label: "wharf_inference_rows_total", dimensions: dimensions)
    }

    /// Removes this version's series from the registry: a version that leaves the server
    /// leaves `/metrics` too, so hot swaps do not grow it without bound.
    func destroy() {
        succeeded.destroy()
        invalid.destroy()
        overloaded.destroy()
        latency.destroy()
        rows.destroy()
    }
}
