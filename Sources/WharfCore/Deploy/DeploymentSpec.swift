/// How the gateway serves one model: which versions answer, in what shares, on which
/// model-server replicas, with what protection. Managed through `/v1/deployments` and
/// `wharf deploy`; see docs/gateway.md.
public struct DeploymentSpec: Sendable, Hashable, Codable {
    /// One version of the model and where it runs.
    public struct Target: Sendable, Hashable, Codable {
        /// The version's label: a registry version number ("3") or an alias ("production").
        public var version: String
        /// Share of the traffic, relative to the other targets' weights (0 takes none).
        public var weight: Double
        /// Base URLs of the model-server replicas serving this version (`http://10.0.0.5:8080`).
        public var replicas: [String]

        public init(version: String, weight: Double, replicas: [String]) {
            self.version = version
            self.weight = weight
            self.replicas = replicas
        }

        enum CodingKeys: String, CodingKey, CaseIterable { case version, weight, replicas }

        public init(from decoder: any Decoder) throws {
            try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
            let container = try decoder.container(keyedBy: CodingKeys.self)
            version = try container.decode(String.self, forKey: .version)
            weight = try container.decode(Double.self, forKey: .weight)
            replicas = try container.decode([String].self, forKey: .replicas)
        }
    }

    /// A version that gets a copy of a share of the traffic; its answers are compared with the
    /// primary's and recorded, never returned.
    public struct Shadow: Sendable, Hashable, Codable {
        public var version: String
        /// Fraction of requests copied, 0…1.
        public var share: Double
        public var replicas: [String]

        public init(version: String, share: Double, replicas: [String]) {
            self.version = version
            self.share = share
            self.replicas = replicas
        }

        enum CodingKeys: String, CodingKey, CaseIterable { case version, share, replicas }

        public init(from decoder: any Decoder) throws {
            try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
            let container = try decoder.container(keyedBy: CodingKeys.self)
            version = try container.decode(String.self, forKey: .version)
            share = try container.decode(Double.self, forKey: .share)
            replicas = try container.decode([String].self, forKey: .replicas)
        }
    }

    /// The model name clients use (`/v2/models/{model}/infer`).
    public var model: String
    public var targets: [Target]
    public var shadow: Shadow?
    /// Route by this request header (a user or entity id) with consistent hashing, so one key
    /// keeps one version while the weights allow it.
    public var stickyHeader: String?
    /// Per-attempt timeout of a forwarded request, milliseconds.
    public var timeoutMilliseconds: Int
    /// Attempts on other replicas when a connection fails (inference is a pure function, so a
    /// request cut by a dying replica is also retried).
    public var retries: Int
    /// Requests of this deployment in flight at most; beyond, 503 at once (a bulkhead: a slow
    /// model cannot take what other models need).
    public var maxConcurrency: Int

    public init(model: String, targets: [Target], shadow: Shadow? = nil, stickyHeader: String? = nil,
                timeoutMilliseconds: Int = 10_000, retries: Int = 2, maxConcurrency: Int = 256) {
        self.model = model
        self.targets = targets
        self.shadow = shadow
        self.stickyHeader = stickyHeader
        self.timeoutMilliseconds = timeoutMilliseconds
        self.retries = retries
        self.maxConcurrency = maxConcurrency
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case model, targets, shadow, retries
        case stickyHeader = "sticky_header"
        case timeoutMilliseconds = "timeout_ms"
        case maxConcurrency = "max_concurrency"
    }

    public init(from decoder: any Decoder) throws {
        try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        model = try container.decode(String.self, forKey: .model)
        targets = try container.decode([Target].self, forKey: .targets)
        shadow = try container.decodeIfPresent(Shadow.self, forKey: .shadow)
        stickyHeader = try container.decodeIfPresent(String.self, forKey: .stickyHeader)
        timeoutMilliseconds = try container.decodeIfPresent(Int.self, forKey: .timeoutMilliseconds) ?? 10_000
        retries = try container.decodeIfPresent(Int.self, forKey: .retries) ?? 2
        maxConcurrency = try container.decodeIfPresent(Int.self, forKey: .maxConcurrency) ?? 256
    }

    /// The largest weight: weights are relative, and their sum must stay a finite number.
    public static let maxWeight = 1_000_000.0

    /// Refuses a spec that cannot route: names, weights, replica URLs (each version's without
    /// repeats), limits. Returns the spec with its replica URLs normalized (no trailing `/`).
    public func validated() throws(WharfError) -> DeploymentSpec {
        var spec = self
        try RegistryName.check(model, kind: "model")
        guard !targets.isEmpty else { throw WharfError(.invalidInput, "deployment \(model): targets must name at least one version") }
        var seen: Set<String> = []
        for (index, target) in targets.enumerated() {
            let label = "deployment \(model): targets[\(index)]"
            try RegistryName.check(target.version, kind: "version")
            guard seen.insert(target.version).inserted else { throw WharfError(.invalidInput, "\(label): version \(target.version) is listed twice") }
            guard target.weight.isFinite, target.weight >= 0, target.weight <= Self.maxWeight else {
                throw WharfError(.invalidInput, "\(label): weight must be a number 0 … \(Int(Self.maxWeight))")
            }
            guard !target.replicas.isEmpty else { throw WharfError(.invalidInput, "\(label): version \(target.version) needs at least one replica URL") }
            spec.targets[index].replicas = try ReplicaAddress.checkList(target.replicas, "\(label) (version \(target.version))")
        }
        guard targets.contains(where: { $0.weight > 0 }) else { throw WharfError(.invalidInput, "deployment \(model): at least one target needs a weight above 0") }
        if let shadow {
            try RegistryName.check(shadow.version, kind: "version")
            // Figures are kept by version: a shadow's copies would count as that target's requests.
            guard !targets.contains(where: { $0.version == shadow.version }) else {
                throw WharfError(.invalidInput, "deployment \(model): the shadow's version \(shadow.version) is also a target: shadow another version")
            }
            guard shadow.share.isFinite, shadow.share >= 0, shadow.share <= 1 else {
                throw WharfError(.invalidInput, "deployment \(model): shadow.share must be between 0 and 1")
            }
            guard !shadow.replicas.isEmpty else { throw WharfError(.invalidInput, "deployment \(model): the shadow needs at least one replica URL") }
            spec.shadow!.replicas = try ReplicaAddress.checkList(shadow.replicas, "deployment \(model): shadow")
        }
        if let stickyHeader {
            guard !stickyHeader.isEmpty, stickyHeader.count <= 64, stickyHeader.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw WharfError(.invalidInput, "deployment \(model): sticky_header must be a header name")
            }
        }
        guard (1...600_000).contains(timeoutMilliseconds) else { throw WharfError(.invalidInput, "deployment \(model): timeout_ms must be 1…600000") }
        guard (0...5).contains(retries) else { throw WharfError(.invalidInput, "deployment \(model): retries must be 0…5") }
        guard (1...100_000).contains(maxConcurrency) else { throw WharfError(.invalidInput, "deployment \(model): max_concurrency must be 1…100000") }
        return spec
    }
}

/// A progressive rollout: the new version's share goes through `steps` (percentages), one
/// step an `interval`, while its live error rate and p99 stay within limits; crossing one
/// rolls back at once.
public struct CanaryPlan: Sendable, Hashable, Codable {
    public var version: String
    public var replicas: [String]
    public var steps: [Double]
    public var intervalSeconds: Double
    /// Highest tolerated share of failed requests of the new version, 0…1.
    public var maxErrorRate: Double
    public var maxP99Milliseconds: Double?
    /// Requests the new version must have answered in a step before it is judged.
    public var minRequests: Int

    public init(version: String, replicas: [String], steps: [Double] = [5, 25, 50, 100], intervalSeconds: Double = 30,
                maxErrorRate: Double = 0.01, maxP99Milliseconds: Double? = nil, minRequests: Int = 20) {
        self.version = version
        self.replicas = replicas
        self.steps = steps
        self.intervalSeconds = intervalSeconds
        self.maxErrorRate = maxErrorRate
        self.maxP99Milliseconds = maxP99Milliseconds
        self.minRequests = minRequests
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case version, replicas, steps
        case intervalSeconds = "interval_seconds"
        case maxErrorRate = "max_error_rate"
        case maxP99Milliseconds = "max_p99_ms"
        case minRequests = "min_requests"
    }

    /// Only `version` and `replicas` are required; the rest default as in ``init(version:replicas:steps:intervalSeconds:maxErrorRate:maxP99Milliseconds:minRequests:)``
    /// (and in the OpenAPI document).
    public init(from decoder: any Decoder) throws {
        try UnknownKeys.refuseInInput(decoder, CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = CanaryPlan(version: "", replicas: [])
        version = try container.decode(String.self, forKey: .version)
        replicas = try container.decode([String].self, forKey: .replicas)
        steps = try container.decodeIfPresent([Double].self, forKey: .steps) ?? defaults.steps
        intervalSeconds = try container.decodeIfPresent(Double.self, forKey: .intervalSeconds) ?? defaults.intervalSeconds
        maxErrorRate = try container.decodeIfPresent(Double.self, forKey: .maxErrorRate) ?? defaults.maxErrorRate
        maxP99Milliseconds = try container.decodeIfPresent(Double.self, forKey: .maxP99Milliseconds)
        minRequests = try container.decodeIfPresent(Int.self, forKey: .minRequests) ?? defaults.minRequests
    }

    /// Returns the plan with its replica URLs normalized, as ``DeploymentSpec/validated()`` does.
    public func validated() throws(WharfError) -> CanaryPlan {
        try RegistryName.check(version, kind: "version")
        guard !replicas.isEmpty else { throw WharfError(.invalidInput, "canary: the new version needs at least one replica URL") }
        var plan = self
        plan.replicas = try ReplicaAddress.checkList(replicas, "canary (version \(version))")
        guard !steps.isEmpty, steps.allSatisfy({ $0 > 0 && $0 <= 100 }), steps == steps.sorted(), steps.last == 100 else {
            throw WharfError(.invalidInput, "canary: steps must rise from above 0 to 100, like 5,25,50,100")
        }
        guard intervalSeconds >= 0.1, intervalSeconds <= 86_400 else { throw WharfError(.invalidInput, "canary: interval must be 0.1 s … 1 day") }
        guard maxErrorRate >= 0, maxErrorRate <= 1 else { throw WharfError(.invalidInput, "canary: max error rate must be 0…1") }
        if let maxP99Milliseconds, !(maxP99Milliseconds > 0) { throw WharfError(.invalidInput, "canary: max p99 must be above 0") }
        guard minRequests >= 0 else { throw WharfError(.invalidInput, "canary: min requests must be ≥ 0") }
        return plan
    }
}
