import WharfCore

/// A bounded reader for Universal Binary JSON (draft 12), the format XGBoost writes by default.
///
/// Every count and length in the file is checked against the bytes that remain before anything
/// is allocated, so a file that claims a 2 GB array in 1 KB fails at once instead of exhausting
/// memory. Nesting is limited like ``JSONParser``.
struct UBJSONParser {
    private let bytes: [UInt8]
    private var position = 0
    private var depth = 0

    static func parse(_ data: [UInt8]) throws(WharfError) -> JSONValue {
        var parser = UBJSONParser(bytes: data)
        let value = try parser.parseValue()
        guard parser.position == data.count else {
            throw parser.error("unexpected content after the UBJSON document")
        }
        return value
    }

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    private var remaining: Int { bytes.count - position }

    private func error(_ message: String) -> WharfError {
        WharfError(.invalidModel, "invalid UBJSON at byte \(position): \(message)")
    }

    private mutating func readByte() throws(WharfError) -> UInt8 {
        guard position < bytes.count else { throw error("unexpected end of input") }
        defer { position += 1 }
        return bytes[position]
    }

    private mutating func readBigEndian(_ count: Int) throws(WharfError) -> UInt64 {
        guard remaining >= count else { throw error("unexpected end of input") }
        var value: UInt64 = 0
        for index in 0..<count { value = value << 8 | UInt64(bytes[position + index]) }
        position += count
        return value
    }

    private mutating func parseValue() throws(WharfError) -> JSONValue {
        var marker = try readByte()
        while marker == UInt8(ascii: "N") { marker = try readByte() }
        return try parseValue(marker: marker)
    }

    private mutating func parseValue(marker: UInt8) throws(WharfError) -> JSONValue {
        switch marker {
        case UInt8(ascii: "Z"): return .null
        case UInt8(ascii: "T"): return .bool(true)
        case UInt8(ascii: "F"): return .bool(false)
        case UInt8(ascii: "S"), UInt8(ascii: "C"), UInt8(ascii: "H"):
            return .string(try parseStringBody(marker: marker))
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "{"): return try parseObject()
        default:
            guard let number = try parseNumber(marker: marker) else {
                throw error("unknown type marker 0x\(String(marker, radix: 16))")
            }
            return .number(number)
        }
    }

    /// Reads a number of the given type, or returns nil when `marker` is not a numeric type.
    private mutating func parseNumber(marker: UInt8) throws(WharfError) -> Double? {
        switch marker {
        case UInt8(ascii: "i"): return Double(Int8(truncatingIfNeeded: try readBigEndian(1)))
        case UInt8(ascii: "U"): return Double(UInt8(truncatingIfNeeded: try readBigEndian(1)))
        case UInt8(ascii: "I"): return Double(Int16(truncatingIfNeeded: try readBigEndian(2)))
        case UInt8(ascii: "l"): return Double(Int32(truncatingIfNeeded: try readBigEndian(4)))
        case UInt8(ascii: "L"): return Double(Int64(bitPattern: try readBigEndian(8)))
        case UInt8(ascii: "d"): return Double(Float(bitPattern: UInt32(truncatingIfNeeded: try readBigEndian(4))))
        case UInt8(ascii: "D"): return Double(bitPattern: try readBigEndian(8))
        default: return nil
        }
    }

    private static func elementSize(_ marker: UInt8) -> Int? {
        switch marker {
        case UInt8(ascii: "i"), UInt8(ascii: "U"), UInt8(ascii: "C"): 1
        case UInt8(ascii: "I"): 2
        case UInt8(ascii: "l"), UInt8(ascii: "d"): 4
        case UInt8(ascii: "L"), UInt8(ascii: "D"): 8
        case UInt8(ascii: "Z"), UInt8(ascii: "T"), UInt8(ascii: "F"): 0
        default: nil
        }
    }

    /// A length or count: an integer value with its own type marker, never negative.
    private mutating func parseLength(what: String) throws(WharfError) -> Int {
        let marker = try readByte()
        guard let value = try parseNumber(marker: marker), marker != UInt8(ascii: "d"), marker != UInt8(ascii: "D")
        else { throw error("\(what) must be an integer") }
        guard value >= 0, value <= Double(Int32.max) else { throw error("\(what) \(value) is out of range") }
        return Int(value)
    }

    private mutating func parseStringBody(marker: UInt8) throws(WharfError) -> String {
        if marker == UInt8(ascii: "C") {
            return String(decoding: [try readByte()], as: UTF8.self)
        }
        let length = try parseLength(what: "string length")
        guard length <= remaining else {
            throw error("string length \(length) exceeds the \(remaining) bytes left in the file")
        }
        defer { position += length }
        return String(decoding: bytes[position..<position + length], as: UTF8.self)
    }

    private mutating func enter() throws(WharfError) {
        depth += 1
        guard depth <= JSONParser.maxDepth else { throw error("nesting deeper than \(JSONParser.maxDepth) levels") }
    }

    /// Reads the optional `$type` and `#count` header of an optimized container.
    private mutating func parseContainerHeader() throws(WharfError) -> (type: UInt8?, count: Int?) {
        var type: UInt8?
        var count: Int?
        if position < bytes.count, bytes[position] == UInt8(ascii: "$") {
            position += 1
            type = try readByte()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "#") else {
                throw error("a typed container must also give its count")
            }
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "#") {
            position += 1
            let declared = try parseLength(what: "container count")
            // Every element takes at least one byte unless its type carries no payload.
            let minimumSize = type.map { Self.elementSize($0) ?? 1 } ?? 1
            if minimumSize > 0, declared > remaining / minimumSize {
                throw error("container count \(declared) exceeds what the \(remaining) bytes left can hold")
            }
            // A typed container of values with no payload (Z, T, F, N) costs the file nothing per
            // element and memory for each: nested, a few kilobytes would ask for gigabytes.
            // XGBoost never writes one.
            if minimumSize == 0, declared > 0 {
                throw error("a typed container of \(declared) payload-free values is not a model's")
            }
            count = declared
        }
        return (type, count)
    }

    private mutating func parseArray() throws(WharfError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        let (type, count) = try parseContainerHeader()
        if let count {
            if let type, let size = Self.elementSize(type), size > 0, type != UInt8(ascii: "C") {
                var numbers = [Double]()
                numbers.reserveCapacity(count)
                for _ in 0..<count {
                    numbers.append(try parseNumber(marker: type)!)
                }
                return .numbers(numbers)
            }
            var values: [JSONValue] = []
            for _ in 0..<count {
                values.append(try parseElement(type: type))
            }
            return Self.compact(values)
        }
        var values: [JSONValue] = []
        while true {
            guard position < bytes.count else { throw error("unexpected end of input in an array") }
            if bytes[position] == UInt8(ascii: "]") {
                position += 1
                return Self.compact(values)
            }
            values.append(try parseValue())
        }
    }

    private mutating func parseElement(type: UInt8?) throws(WharfError) -> JSONValue {
        if let type { try parseValue(marker: type) } else { try parseValue() }
    }

    private static func compact(_ values: [JSONValue]) -> JSONValue {
        var numbers: [Double] = []
        numbers.reserveCapacity(values.count)
        for value in values {
            guard case .number(let number) = value else { return .array(values) }
            numbers.append(number)
        }
        return .numbers(numbers)
    }

    private mutating func parseObject() throws(WharfError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        let (type, count) = try parseContainerHeader()
        var members: [String: JSONValue] = [:]
        var parsed = 0
        while true {
            if let count {
                if parsed == count { return .object(members) }
            } else {
                guard position < bytes.count else { throw error("unexpected end of input in an object") }
                if bytes[position] == UInt8(ascii: "}") {
                    position += 1
                    return .object(members)
                }
            }
            // Keys carry no 'S' marker: a length, then UTF-8 bytes.
            let key = try parseStringBody(marker: UInt8(ascii: "S"))
            let value = try parseElement(type: type)
            guard members.updateValue(value, forKey: key) == nil else { throw error("duplicate key \"\(key)\"") }
            parsed += 1
        }
    }
}
