import Hummingbird
import WharfCore

/// `GET /v1/runs?pipeline=P&limit=N`, read the same way by the registry (which stores runs) and
/// the pipeline service (which starts them).
public struct RunQuery: Sendable {
    public var pipeline: String?
    public var limit: Int

    public init(_ request: Request) throws(WharfError) {
        pipeline = request.uri.queryParameters["pipeline"].map(String.init)
        if let pipeline { try RegistryName.check(pipeline, kind: "pipeline") }
        let text = request.uri.queryParameters["limit"].map(String.init) ?? "100"
        guard let limit = Int(text), (1...1000).contains(limit) else {
            throw WharfError(.invalidInput, "limit: \"\(text.prefix(20))\" must be a whole number from 1 to 1000")
        }
        self.limit = limit
    }
}
