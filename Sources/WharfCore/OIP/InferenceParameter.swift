/// A value in an OIP `parameters` object: a string, a number or a boolean.
public enum InferenceParameter: Sendable, Hashable {
    case string(String)
    case number(Double)
    case bool(Bool)

    public var boolValue: Bool? {
        switch self {
        case .bool(let value): value
        case .number(let value): value != 0
        case .string(let value): ["true", "1"].contains(value.lowercased()) ? true : ["false", "0"].contains(value.lowercased()) ? false : nil
        }
    }

    public var numberValue: Double? {
        switch self {
        case .number(let value): value
        case .string(let value): Double(value)
        case .bool: nil
        }
    }
}
