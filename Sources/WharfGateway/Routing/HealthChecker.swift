import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// Asks every replica's `/v2/health/ready` every `interval`: a replica that is not ready gets
/// no requests until it is again (then its breaker closes at once).
struct HealthChecker: Service {
    let directory: ReplicaDirectory
    let http: HTTPClient
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await checkAll()
                try? await Task.sleep(for: interval)
            }
        }
    }

    func checkAll() async {
        await withTaskGroup(of: Void.self) { group in
            for replica in directory.all {
                group.addTask {
                    let ready: Bool
                    do {
                        let response = try await http.execute(HTTPClientRequest(url: replica.url + "/v2/health/ready"), deadline: .now() + .seconds(1))
                        _ = try? await response.body.collect(upTo: 1 << 16)
                        ready = response.status.code == 200
                    } catch {
                        ready = false
                    }
                    let was = replica.snapshot.ready
                    replica.recordHealth(ready: ready)
                    if was != ready {
                        logger.info(ready ? "replica ready" : "replica not ready", metadata: ["replica": "\(replica.url)"])
                    }
                }
            }
        }
    }
}
