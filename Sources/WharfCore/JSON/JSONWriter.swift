/// Appends JSON text to a byte buffer, for encoders on hot paths that cannot afford a
/// `JSONEncoder` per response.
public struct JSONWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    public mutating func raw(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    public mutating func string(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// A number as the shortest text that reads back to the same double; non-finite as null.
    public mutating func number(_ value: Double) {
        if value.isFinite {
            if value == value.rounded(), abs(value) < 1e15 {
                integer(Int(value))
            } else {
                // The same text as `description`, written straight into the bytes: a printed
                // double is over 15 bytes, so `description` allocated a string for each one.
                value.write(to: &self)
            }
        } else {
            raw("null")
        }
    }

    /// An integer's decimal digits, written in place (labels and shapes: every response has some).
    public mutating func integer(_ value: Int) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        guard magnitude >= 10 else {
            bytes.append(UInt8(ascii: "0") + UInt8(magnitude))
            return
        }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var count = 0
            while magnitude > 0 {
                digits[19 - count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[(20 - count)...]))
        }
    }

    mutating func numbers(_ values: [Double], as datatype: TensorDatatype) {
        for (index, value) in values.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            switch datatype {
            case .bool: raw(value == 0 ? "false" : "true")
            case .fp32:
                // A double beyond Float's range is infinite as FP32: null, as JSON has no inf.
                let single = Float(value)
                if single.isFinite { single.write(to: &self) } else { raw("null") }
            default: number(value)
            }
        }
    }

    mutating func parameters(_ parameters: [String: InferenceParameter]) {
        bytes.append(UInt8(ascii: "{"))
        for (index, key) in parameters.keys.sorted().enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            string(key)
            bytes.append(UInt8(ascii: ":"))
            switch parameters[key]! {
            case .string(let text): string(text)
            case .number(let value): number(value)
            case .bool(let flag): raw(flag ? "true" : "false")
            }
        }
        bytes.append(UInt8(ascii: "}"))
    }
}

/// Lets the standard library print numbers into the bytes: `Double` and `Float` write their
/// shortest round-trip text through `_writeASCII`, from a buffer on the stack.
extension JSONWriter: TextOutputStream {
    public mutating func write(_ string: String) {
        bytes.append(contentsOf: string.utf8)
    }

    public mutating func _writeASCII(_ buffer: UnsafeBufferPointer<UInt8>) {
        bytes.append(contentsOf: buffer)
    }
}
