import Foundation

/// Decoding errors as people read them: "signature.features must be an array", not
/// Foundation's debug dump. Shared by every service's JSON API.
public enum JSONErrors {
    public static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            let text = codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return text.isEmpty ? "the body" : String(text.drop { $0 == "." })
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(path(context.codingPath + [key])) is missing"
        case .typeMismatch(let type, let context): return "\(path(context.codingPath)) must be \(describe(type))"
        case .valueNotFound(let type, let context): return "\(path(context.codingPath)) must be \(describe(type)), not null"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "malformed JSON" : "\(path(context.codingPath)): \(context.debugDescription)"
        @unknown default: return "malformed JSON"
        }
    }

    /// ``describe(_:)`` for an error decoding `data`. Foundation on Linux reports a number that
    /// does not fit the type asked for (`1.5` or `1e30` where a whole number is needed) as
    /// invalid JSON, with no path; when the text is valid JSON, that is what it says.
    public static func describe(_ error: DecodingError, in data: Data) -> String {
        if case .dataCorrupted(let context) = error, context.codingPath.isEmpty,
           (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil {
            return "the JSON is valid, but a number in it does not fit its field (a fraction, or one too large, where a whole number is needed)"
        }
        return describe(error)
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Double.Type: "a number"
        case is Bool.Type: "true or false"
        case is [Any].Type: "an array"
        default: "an object"
        }
    }
}
