import HTTPTypes
import Hummingbird
import NIOCore
import Prometheus

/// `GET /metrics`: the Prometheus text exposition of a registry that the executable bootstrapped
/// swift-metrics with. Libraries only record through swift-metrics; they never own a backend.
public struct MetricsEndpoint<Context: RequestContext>: Sendable {
    let registry: PrometheusCollectorRegistry

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    public func addRoutes(to router: Router<Context>) {
        router.get("/metrics") { _, _ in
            var bytes: [UInt8] = []
            bytes.reserveCapacity(16_384)
            registry.emit(into: &bytes)
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes))
            )
        }
    }
}
