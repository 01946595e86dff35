/// A parsed JSON (or UBJSON) document, as the model readers need it.
///
/// Arrays made only of numbers are kept as one contiguous `[Double]` (`numbers`), because model
/// files are mostly long numeric arrays and a boxed value per element would cost ten times the
/// memory.
enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case numbers([Double])
    case array([JSONValue])
    case object([String: JSONValue])

    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .numbers, .array: "an array"
        case .object: "an object"
        }
    }
}
