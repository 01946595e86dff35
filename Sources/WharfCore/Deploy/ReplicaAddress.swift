/// A model-server replica's base URL, read once: `http[s]://host[:port][/prefix]`.
///
/// Deployment specs and canary plans are checked with it when they arrive, so a URL the
/// gateway could not forward to is a 400 that says what is wrong, not a failure of every request
/// routed there later; the gateway's forwarding client reads host, port and prefix from it.
public struct ReplicaAddress: Sendable, Hashable {
    public enum Scheme: String, Sendable {
        case http, https
    }

    public var scheme: Scheme
    /// Without the brackets of an IPv6 address.
    public var host: String
    public var port: Int
    /// Put before `/v2/...` (a replica behind a path-routing proxy); empty for most, and never
    /// ending in `/`.
    public var pathPrefix: String
    /// The `Host` header: host and port as written in the URL.
    public var authority: String

    /// The longest URL taken.
    public static let maxLength = 512

    /// `what` names the URL in errors: a replica's, or a service's ("the registry URL").
    public init(_ url: String, what: String = "replica") throws(WharfError) {
        func refuse(_ why: String) -> WharfError {
            WharfError(.invalidInput, "\(what) \"\(url.prefix(80))\" \(why)")
        }
        guard url.utf8.count <= Self.maxLength else { throw refuse("is longer than \(Self.maxLength) bytes") }
        let rest: Substring
        // Schemes are case-insensitive (RFC 3986); the normalized URL writes them in lower case.
        let start = url.prefix(8).lowercased()
        if start.hasPrefix("http://") {
            scheme = .http
            rest = url.dropFirst("http://".count)
        } else if start.hasPrefix("https://") {
            scheme = .https
            rest = url.dropFirst("https://".count)
        } else {
            throw refuse("must be an http:// or https:// URL")
        }
        // The prefix and authority go into request lines and headers as they are.
        guard url.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else { throw refuse("must not contain spaces or control characters") }
        guard !rest.contains("?"), !rest.contains("#") else { throw refuse("must not have a query or fragment: it is a base URL") }
        var hostPort = rest
        var prefix = Substring("")
        if let slash = rest.firstIndex(of: "/") {
            hostPort = rest[..<slash]
            prefix = rest[slash...]
            while prefix.hasSuffix("/") { prefix.removeLast() }
        }
        guard !hostPort.isEmpty else { throw refuse("has no host") }
        guard !hostPort.contains("@") else { throw refuse("must not carry a user name or password") }
        authority = String(hostPort)
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw refuse("has an IPv6 address without its closing ]") }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw refuse("has something other than :port after its IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = String(hostPort[..<colon])
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = String(hostPort)
        }
        guard !host.isEmpty else { throw refuse("has no host") }
        if let portText {
            guard (1...5).contains(portText.count), portText.allSatisfy({ $0.isASCII && $0.isNumber }), let port = Int(portText), (1...65535).contains(port) else {
                throw refuse("has port \"\(portText.prefix(16))\": it must be a number 1…65535")
            }
            self.port = port
        } else {
            port = scheme == .http ? 80 : 443
        }
        pathPrefix = String(prefix)
    }

    /// The URL as the gateway keeps it: as given, less the trailing slashes, so that
    /// `url + "/v2/health/ready"` is the health route.
    public var normalized: String {
        "\(scheme.rawValue)://\(authority)\(pathPrefix)"
    }

    /// Two URLs with the same identity reach the same server (host names compared without case,
    /// the default port written or not).
    public var identity: String {
        let bracketed = host.contains(":") ? "[\(host.lowercased())]" : host.lowercased()
        return "\(scheme.rawValue)://\(bracketed):\(port)\(pathPrefix)"
    }

    /// Checks a list of replica URLs (one version's, a shadow's, a canary's) and returns them
    /// normalized; the same replica twice in one list is refused (it would take twice its
    /// share and split its breaker and health state in two).
    public static func checkList(_ urls: [String], _ label: String) throws(WharfError) -> [String] {
        var seen: [String: String] = [:]
        var normalized: [String] = []
        normalized.reserveCapacity(urls.count)
        for url in urls {
            let address: ReplicaAddress
            do {
                address = try ReplicaAddress(url)
            } catch {
                throw WharfError(error.code, "\(label): \(error.message)")
            }
            if let earlier = seen[address.identity] {
                throw WharfError(.invalidInput, "\(label): replica \"\(url.prefix(80))\" is listed twice (also as \"\(earlier.prefix(80))\")")
            }
            seen[address.identity] = url
            normalized.append(address.normalized)
        }
        return normalized
    }
}

/// The base URL of a Wharf service a client calls (registry, gateway, hub), checked as a
/// replica's is: http(s), a host, a port 1…65535, no query. async-http-client traps on a port
/// past 65535 with an IP address (`http://127.0.0.1:99999` crashed every command given it), so
/// every client checks its URL before the first request.
public enum ServiceURL {
    @discardableResult
    public static func check(_ url: String, _ what: String) throws(WharfError) -> String {
        // A Unix domain socket (async-http-client's http+unix://, https+unix://, unix://) has a
        // path, not a port: passed on as given.
        let scheme = url.prefix { $0 != ":" }.lowercased()
        if url.dropFirst(scheme.count).hasPrefix("://"), ["http+unix", "https+unix", "unix"].contains(scheme) {
            var trimmed = url
            while trimmed.hasSuffix("/") { trimmed.removeLast() }
            return trimmed
        }
        return try ReplicaAddress(url, what: what).normalized
    }
}
