import WharfCore

/// A strict, bounded JSON reader for model files, built on WharfCore's byte scanner (the same
/// one that decodes inference requests).
///
/// It accepts RFC 8259 JSON plus the non-finite literals `NaN`, `Infinity` and `-Infinity`
/// (which XGBoost writes for some statistics). Nesting is limited to ``maxDepth`` so a hostile
/// file cannot exhaust the stack, and every error names the byte offset where it was found.
struct JSONParser {
    static let maxDepth = JSONScanner.maxDepth

    /// Parses a whole document; trailing non-whitespace is an error.
    static func parse(_ data: [UInt8]) throws(WharfError) -> JSONValue {
        let result: Result<JSONValue, JSONScanner.Failure> = data.withUnsafeBytes { bytes in
            var scanner = JSONScanner(bytes)
            return Result { () throws(JSONScanner.Failure) -> JSONValue in
                let value = try parseValue(&scanner, depth: 0)
                guard scanner.peek() == nil else { throw scanner.failure("unexpected content after the JSON document") }
                return value
            }
        }
        switch result {
        case .success(let value): return value
        case .failure(let failure):
            throw WharfError(.invalidModel, "invalid JSON at byte \(failure.offset): \(failure.message)")
        }
    }

    private static func parseValue(_ scanner: inout JSONScanner, depth: Int) throws(JSONScanner.Failure) -> JSONValue {
        guard let byte = scanner.peek() else { throw scanner.failure("unexpected end of input") }
        switch byte {
        case UInt8(ascii: "{"): return try parseObject(&scanner, depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(&scanner, depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try scanner.readString())
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool(try scanner.readBool())
        case UInt8(ascii: "n"):
            guard scanner.readNull() else { throw scanner.failure("unexpected character") }
            return .null
        default: return .number(try parseNumber(&scanner))
        }
    }

    private static func parseNumber(_ scanner: inout JSONScanner) throws(JSONScanner.Failure) -> Double {
        if scanner.matchLiteral("NaN") { return .nan }
        if scanner.matchLiteral("Infinity") { return .infinity }
        if scanner.matchLiteral("-Infinity") { return -.infinity }
        return try scanner.readNumber()
    }

    private static func parseObject(_ scanner: inout JSONScanner, depth: Int) throws(JSONScanner.Failure) -> JSONValue {
        guard depth <= maxDepth else { throw scanner.failure("nesting deeper than \(maxDepth) levels") }
        var members: [String: JSONValue] = [:]
        try scanner.readObject { scanner, key throws(JSONScanner.Failure) in
            let value = try parseValue(&scanner, depth: depth)
            guard members.updateValue(value, forKey: key) == nil else { throw scanner.failure("duplicate key \"\(key)\"") }
        }
        return .object(members)
    }

    /// Numeric arrays are the bulk of a model file: they are read straight into [Double].
    private static func parseArray(_ scanner: inout JSONScanner, depth: Int) throws(JSONScanner.Failure) -> JSONValue {
        guard depth <= maxDepth else { throw scanner.failure("nesting deeper than \(maxDepth) levels") }
        var numbers: [Double] = []
        var values: [JSONValue] = []
        var allNumbers = true
        try scanner.readArray { scanner throws(JSONScanner.Failure) in
            if allNumbers, let byte = scanner.peek(), startsNumber(byte) {
                numbers.append(try parseNumber(&scanner))
                return
            }
            if allNumbers {
                allNumbers = false
                values = numbers.map(JSONValue.number)
                numbers = []
            }
            values.append(try parseValue(&scanner, depth: depth))
        }
        return allNumbers ? .numbers(numbers) : .array(values)
    }

    private static func startsNumber(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
            || byte == UInt8(ascii: "N") || byte == UInt8(ascii: "I")
    }
}
