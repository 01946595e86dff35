import Foundation
import HTTPTypes
import Hummingbird
import NIOHTTP1
import Synchronization
import WharfCore

/// An API key as stored: its SHA-256 (never the key), its scopes and its rate limit.
///
/// Scopes: `infer:<model>` or `infer:*` (inference), `deploy` (the deployments API), `admin`
/// (everything, keys included).
public struct APIKey: Sendable, Hashable, Codable {
    public var id: String
    public var sha256: String
    public var scopes: [String]
    /// Requests a second the key may make on average; nil: no limit.
    public var ratePerSecond: Double?
    /// Requests the key may make at once after a quiet spell (default: one second's worth).
    public var burst: Double?

    public init(id: String, sha256: String, scopes: [String], ratePerSecond: Double? = nil, burst: Double? = nil) {
        self.id = id
        self.sha256 = sha256
        self.scopes = scopes
        self.ratePerSecond = ratePerSecond
        self.burst = burst
    }

    enum CodingKeys: String, CodingKey {
        case id, sha256, scopes, burst
        case ratePerSecond = "rate_per_second"
    }

    func allows(_ scope: String) -> Bool {
        if scopes.contains("admin") || scopes.contains(scope) { return true }
        if scope.hasPrefix("infer:"), scopes.contains("infer:*") { return true }
        return false
    }

    /// The highest rate and burst taken: beyond, a limit is no limit, and the arithmetic of
    /// the bucket (Retry-After) stays in range.
    static let maxRate = 1_000_000.0

    /// A rate limit that means what it says: a rate above 0 (at most ``maxRate``), a burst of at
    /// least one request, and a burst only with a rate.
    static func checkLimit(ratePerSecond: Double?, burst: Double?, _ label: String) throws(WharfError) {
        if let ratePerSecond {
            guard ratePerSecond.isFinite, ratePerSecond > 0, ratePerSecond <= maxRate else {
                throw WharfError(.invalidInput, "\(label): rate_per_second must be above 0 and at most \(Int(maxRate)) (leave it out for no limit)")
            }
        }
        if let burst {
            guard ratePerSecond != nil else { throw WharfError(.invalidInput, "\(label): burst needs a rate_per_second") }
            guard burst.isFinite, burst >= 1, burst <= maxRate else {
                throw WharfError(.invalidInput, "\(label): burst must be 1 … \(Int(maxRate)) requests")
            }
        }
    }

    static func checkScopes(_ scopes: [String]) throws(WharfError) {
        guard !scopes.isEmpty else { throw WharfError(.invalidInput, "a key needs at least one scope") }
        for scope in scopes where !(["admin", "deploy", "infer:*"].contains(scope)) {
            guard scope.hasPrefix("infer:") else {
                throw WharfError(.invalidInput, "unknown scope \"\(scope.prefix(40))\": use infer:<model>, infer:*, deploy or admin")
            }
            try RegistryName.check(String(scope.dropFirst("infer:".count)), kind: "model")
        }
    }
}

/// Who may do what, and how often: keys by hash, a token bucket per key.
final class AccessControl: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    private let keys: Mutex<[String: APIKey]>
    /// Held through a whole change of the keys (the map and the file), one change at a time.
    private let changes = Mutex(())
    private let buckets = Mutex([String: Bucket]())
    /// Inference without a key (keys still apply when one is sent).
    let openInference: Bool
    private let file: String?

    init(keys: [APIKey], openInference: Bool, file: String?) {
        self.keys = Mutex(Dictionary(keys.map { ($0.sha256, $0) }, uniquingKeysWith: { $1 }))
        self.openInference = openInference
        self.file = file
    }

    /// Loads the keys file (if any) and adds the bootstrap admin key.
    static func load(file: String?, adminKeySHA256: String?, openInference: Bool) throws(WharfError) -> AccessControl {
        var keys: [APIKey] = []
        if let file, let data = FileManager.default.contents(atPath: file) {
            do {
                keys = try JSONDecoder().decode([APIKey].self, from: data)
            } catch {
                throw WharfError(.invalidInput, "\(file) is not a keys file (a JSON array of {id, sha256, scopes}): \(error)")
            }
            // Limits an older gateway stored are read as it applied them (a rate of 0 or below
            // was no limit, a burst below 1 one request, a burst without a rate nothing), so
            // that one old key cannot keep the gateway from starting; the rest is held to
            // today's rules, and a key that breaks them is refused by name.
            for index in keys.indices {
                var key = keys[index]
                if let rate = key.ratePerSecond, rate.isFinite, rate <= 0 { key.ratePerSecond = nil }
                if key.ratePerSecond == nil { key.burst = nil }
                if let rate = key.ratePerSecond, rate.isFinite { key.ratePerSecond = min(rate, APIKey.maxRate) }
                if let burst = key.burst, burst.isFinite { key.burst = min(max(burst, 1), APIKey.maxRate) }
                keys[index] = key
                do {
                    try RegistryName.check(key.id, kind: "key")
                    try RegistryName.checkDigest(key.sha256)
                    try APIKey.checkScopes(key.scopes)
                    try APIKey.checkLimit(ratePerSecond: key.ratePerSecond, burst: key.burst, "key \(key.id)")
                } catch {
                    throw WharfError(.invalidInput, "\(file): \(error.message)")
                }
            }
        }
        if let adminKeySHA256 {
            try RegistryName.checkDigest(adminKeySHA256)
            keys.append(APIKey(id: "admin", sha256: adminKeySHA256, scopes: ["admin"]))
        }
        return AccessControl(keys: keys, openInference: openInference, file: file)
    }

    /// The key allowed to do `scope`, after its rate limit. Errors: 401 (no or unknown key),
    /// 403 (scope), 429 (rate) with Retry-After.
    @discardableResult
    func authorize(_ request: Request, scope: String) throws -> APIKey? {
        try authorize(presentedKey: Self.presentedKey(bearer: request.headers[.authorization], apiKey: request.headers[.apiKey]), scope: scope)
    }

    /// The same for the forwarding path's HTTP/1 headers and the scope `infer:<model>`, without
    /// writing the scope out when no key is presented and inference is open (every request of
    /// an open gateway).
    func authorizeInference(headers: some RequestHeaderLookup, model: String) throws {
        let presented = Self.presentedKey(bearer: headers.first(name: "authorization"), apiKey: headers.first(name: "x-api-key"))
        if presented == nil, openInference { return }
        try authorize(presentedKey: presented, scope: "infer:\(model)")
    }

    func authorize(presentedKey: String?, scope: String) throws -> APIKey? {
        guard let presented = presentedKey else {
            if scope.hasPrefix("infer:"), openInference { return nil }
            throw HTTPError(.unauthorized, headers: [.wwwAuthenticate: "Bearer"], message: "this needs an API key (Authorization: Bearer <key> or X-API-Key)")
        }
        let digest = SHA256.hash(Array(presented.utf8)).hex
        guard let key = keys.withLock({ $0[digest] }) else {
            throw HTTPError(.unauthorized, headers: [.wwwAuthenticate: "Bearer"], message: "the API key is not valid")
        }
        guard key.allows(scope) else {
            throw WharfError(.forbidden, "key \(key.id) lacks the scope \(scope)")
        }
        if let rate = key.ratePerSecond {
            let capacity = max(1, key.burst ?? rate)
            let now = ContinuousClock.now
            let wait: Double? = buckets.withLock { buckets in
                var bucket = buckets[key.id] ?? Bucket(tokens: capacity, updated: now)
                bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated).seconds * rate)
                bucket.updated = now
                defer { buckets[key.id] = bucket }
                guard bucket.tokens >= 1 else { return (1 - bucket.tokens) / rate }
                bucket.tokens -= 1
                return nil
            }
            if let wait {
                // At least one second (the header counts whole seconds); the rate's floor keeps it small.
                throw HTTPError(.tooManyRequests, headers: [.retryAfter: String(Int(min(wait, 86_400).rounded(.up)))],
                                message: "key \(key.id) is over its rate limit of \(rate) requests a second")
            }
        }
        return key
    }

    /// `Authorization: Bearer <key>`, else `X-API-Key`; an empty value is no key.
    static func presentedKey(bearer: String?, apiKey: String?) -> String? {
        if let bearer, bearer.hasPrefix("Bearer ") {
            let token = bearer.dropFirst("Bearer ".count)
            if !token.isEmpty { return String(token) }
        }
        guard let apiKey, !apiKey.isEmpty else { return nil }
        return apiKey
    }

    var all: [APIKey] { keys.withLock { $0.values.sorted { $0.id < $1.id } } }

    /// Creates a key; returns the secret, shown this once.
    func create(id: String, scopes: [String], ratePerSecond: Double?, burst: Double?) throws(WharfError) -> String {
        try RegistryName.check(id, kind: "key")
        // The bootstrap key's id: it is never written to the file, so a key of that name would
        // be lost at the next start.
        guard id != "admin" else { throw WharfError(.invalidInput, "the key id admin is kept for the bootstrap key (--admin-key): choose another") }
        try APIKey.checkScopes(scopes)
        try APIKey.checkLimit(ratePerSecond: ratePerSecond, burst: burst, "key \(id)")
        var random = SystemRandomNumberGenerator()
        let secret = "wk_" + (0..<4).map { _ in String(random.next() as UInt64, radix: 16) }.joined()
        let key = APIKey(id: id, sha256: SHA256.hash(Array(secret.utf8)).hex, scopes: scopes, ratePerSecond: ratePerSecond, burst: burst)
        try changes.withLock { _ throws(WharfError) in
            var all = keys.withLock { $0 }
            guard !all.values.contains(where: { $0.id == id }) else { throw WharfError(.conflict, "a key named \(id) exists") }
            all[key.sha256] = key
            try commit(all)
        }
        return secret
    }

    func delete(id: String) throws(WharfError) {
        try changes.withLock { _ throws(WharfError) in
            var all = keys.withLock { $0 }
            let before = all.count
            all = all.filter { $0.value.id != id }
            guard all.count < before else { throw WharfError(.notFound, "no key named \(id)") }
            try commit(all)
        }
    }

    /// Writes the keys to the file, then makes them the ones in force: a key the file does not
    /// have is not created (nor one it has revoked). Runs under `changes`.
    private func commit(_ all: [String: APIKey]) throws(WharfError) {
        if let file {
            let stored = all.values.filter { $0.id != "admin" }.sorted { $0.id < $1.id }
            do {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try encoder.encode(stored).write(to: URL(fileURLWithPath: file), options: .atomic)
            } catch {
                throw WharfError(.io, "cannot save the keys to \(file)")
            }
        }
        keys.withLock { $0 = all }
    }
}

extension HTTPField.Name {
    static let apiKey = HTTPField.Name("x-api-key")!
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
