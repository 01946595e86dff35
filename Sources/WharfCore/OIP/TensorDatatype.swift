/// A tensor element type of the Open Inference Protocol v2, spelled as on the wire.
public enum TensorDatatype: String, Sendable, Hashable, Codable, CaseIterable {
    case bool = "BOOL"
    case uint8 = "UINT8"
    case uint16 = "UINT16"
    case uint32 = "UINT32"
    case uint64 = "UINT64"
    case int8 = "INT8"
    case int16 = "INT16"
    case int32 = "INT32"
    case int64 = "INT64"
    case fp16 = "FP16"
    case bf16 = "BF16"
    case fp32 = "FP32"
    case fp64 = "FP64"
    case bytes = "BYTES"

    /// Bytes per element in the binary tensor extension; nil for BYTES (length-prefixed).
    public var byteWidth: Int? {
        switch self {
        case .bool, .uint8, .int8: 1
        case .uint16, .int16, .fp16, .bf16: 2
        case .uint32, .int32, .fp32: 4
        case .uint64, .int64, .fp64: 8
        case .bytes: nil
        }
    }

    /// The range of values an integer type holds; nil for floating-point types and BYTES.
    var integerRange: ClosedRange<Double>? {
        switch self {
        case .bool: 0...1
        case .uint8: 0...Double(UInt8.max)
        case .uint16: 0...Double(UInt16.max)
        case .uint32: 0...Double(UInt32.max)
        case .uint64: 0...Double(UInt64.max)
        case .int8: Double(Int8.min)...Double(Int8.max)
        case .int16: Double(Int16.min)...Double(Int16.max)
        case .int32: Double(Int32.min)...Double(Int32.max)
        case .int64: Double(Int64.min)...Double(Int64.max)
        case .fp16, .bf16, .fp32, .fp64, .bytes: nil
        }
    }

    /// `value` rounded to the nearest value of this floating-point type (ties to even), as a
    /// double: what the binary extension carries for the type. Nil beyond the type's range.
    /// The value itself for FP64 and the integer types.
    func narrowed(_ value: Double) -> Double? {
        switch self {
        case .fp32:
            let float = Float(value)
            return float.isInfinite ? nil : Double(float)
        case .fp16: return Self.rounded(value, significandBits: 10, exponents: -14...15)
        case .bf16: return Self.rounded(value, significandBits: 7, exponents: -126...127)
        default: return value
        }
    }

    /// The largest finite value of a narrower floating-point type.
    var largestFinite: Double? {
        switch self {
        case .fp32: Double(Float.greatestFiniteMagnitude)
        case .fp16: 65_504
        case .bf16: Double(sign: .plus, exponent: 127, significand: 2 - 0x1p-7)
        case .fp64: Double.greatestFiniteMagnitude
        default: nil
        }
    }

    /// Rounds to a binary format of `significandBits` stored bits and normal exponents
    /// `exponents` (subnormals below): a multiple of the format's spacing at the value, found
    /// exactly in double arithmetic (the scalings are by powers of two).
    private static func rounded(_ value: Double, significandBits: Int, exponents: ClosedRange<Int>) -> Double? {
        guard !value.isInfinite else { return nil }
        guard value.isFinite, value != 0 else { return value }
        let spacing = Double(sign: .plus, exponent: max(Int(value.exponent), exponents.lowerBound) - significandBits, significand: 1)
        let result = (value / spacing).rounded(.toNearestOrEven) * spacing
        return abs(result) < Double(sign: .plus, exponent: exponents.upperBound + 1, significand: 1) ? result : nil
    }
}
