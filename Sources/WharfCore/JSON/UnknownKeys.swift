import Foundation

extension CodingUserInfoKey {
    /// Set to `true` where the JSON is a person's input (an API body, a spec file): the types
    /// that check it refuse a key they do not read, which would otherwise be dropped without a
    /// word (`sticky` for `sticky_header`, `rate_per_sec`: a key with no rate limit). Files this
    /// program wrote itself, and answers of another Wharf service (perhaps newer), are read
    /// without it.
    public static let refusesUnknownKeys = CodingUserInfoKey(rawValue: "wharf.refusesUnknownKeys")!
}

public enum UnknownKeys {
    /// Throws for the first key (by name) of the object being decoded that `keys` does not
    /// name; `what` starts the message ("validate: unknown key againts (known: …)").
    public static func refuse<Keys: CodingKey & CaseIterable>(_ decoder: any Decoder, _ keys: Keys.Type, in what: String? = nil) throws {
        let known = Keys.allCases.map(\.stringValue)
        let container = try decoder.container(keyedBy: AnyKey.self)
        if let unknown = container.allKeys.map(\.stringValue).sorted().first(where: { !known.contains($0) }) {
            throw DecodingError.dataCorrupted(.init(
                codingPath: decoder.codingPath + [AnyKey(stringValue: unknown)],
                debugDescription: "\(what.map { "\($0): " } ?? "")unknown key \(unknown) (known: \(known.sorted().joined(separator: ", ")))"))
        }
    }

    /// ``refuse(_:_:in:)`` where the decoder reads a person's input (``CodingUserInfoKey/refusesUnknownKeys``).
    public static func refuseInInput<Keys: CodingKey & CaseIterable>(_ decoder: any Decoder, _ keys: Keys.Type) throws {
        guard decoder.userInfo[.refusesUnknownKeys] as? Bool == true else { return }
        try refuse(decoder, keys)
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}
