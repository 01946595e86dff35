#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A pull reader over JSON bytes, for decoders that build their values straight from a request
/// body without an intermediate document (the hot path of every inference request).
///
/// Errors carry the byte offset. Nesting of skipped values is bounded.
package struct JSONScanner {
    package struct Failure: Error {
        package var offset: Int
        package var message: String
    }

    package static let maxDepth = 64

    package let bytes: UnsafeRawBufferPointer
    package internal(set) var position = 0
    /// The number tables, looked up once here rather than once a number (each read of a
    /// static goes through its lazy-initialisation check: about 7 % of a large tensor's decode).
    private let exactPowerTable = JSONScanner.exactPowers
    private let powerTable = DecimalToDouble.powerTable

    package init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    package func failure(_ message: String) -> Failure { Failure(offset: position, message: message) }

    @inline(__always) package mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    /// The next non-blank byte, not consumed.
    @inline(__always) package mutating func peek() -> UInt8? {
        skipWhitespace()
        return position < bytes.count ? bytes[position] : nil
    }

    package mutating func expect(_ byte: UInt8) throws(Failure) {
        guard peek() == byte else {
            throw failure(position < bytes.count ? "expected '\(Character(Unicode.Scalar(byte)))'" : "unexpected end of JSON")
        }
        position += 1
    }

    /// Consumes `byte` if it comes next.
    package mutating func consume(_ byte: UInt8) -> Bool {
        guard peek() == byte else { return false }
        position += 1
        return true
    }

    /// Calls `body` for each key of an object, positioned at its value, which `body` must read.
    package mutating func readObject(_ body: (inout JSONScanner, String) throws(Failure) -> Void) throws(Failure) {
        try expect(UInt8(ascii: "{"))
        if consume(UInt8(ascii: "}")) { return }
        repeat {
            let key = try readString()
            try expect(UInt8(ascii: ":"))
            try body(&self, key)
        } while consume(UInt8(ascii: ","))
        try expect(UInt8(ascii: "}"))
    }

    /// Calls `body` for each element of an array, positioned at it.
    package mutating func readArray(_ body: (inout JSONScanner) throws(Failure) -> Void) throws(Failure) {
        try expect(UInt8(ascii: "["))
        if consume(UInt8(ascii: "]")) { return }
        repeat {
            try body(&self)
        } while consume(UInt8(ascii: ","))
        try expect(UInt8(ascii: "]"))
    }

    package mutating func readBool() throws(Failure) -> Bool {
        if matchLiteral("true") { return true }
        if matchLiteral("false") { return false }
        throw failure("expected true or false")
    }

    package mutating func readNull() -> Bool { matchLiteral("null") }

    package mutating func matchLiteral(_ literal: StaticString) -> Bool {
        _ = peek()
        let count = literal.utf8CodeUnitCount
        guard position + count <= bytes.count else { return false }
        let matches = literal.withUTF8Buffer { expected in
            (0..<count).allSatisfy { bytes[position + $0] == expected[$0] }
        }
        if matches { position += count }
        return matches
    }

    package mutating func readString() throws(Failure) -> String {
        try expect(UInt8(ascii: "\""))
        let start = position
        // Fast path: no escapes.
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                defer { position += 1 }
                return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { break }
            position += 1
        }
        position = start
        var utf8: [UInt8] = []
        while true {
            guard position < bytes.count else { throw failure("unterminated string") }
            let byte = bytes[position]
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: utf8, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard position < bytes.count else { throw failure("unterminated string") }
                let escape = bytes[position]
                position += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try readHex4()
                    if (0xD800..<0xDC00).contains(scalar), matchLiteral("\\u") {
                        let low = try readHex4()
                        if (0xDC00..<0xE000).contains(low) { scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00) }
                    }
                    utf8.append(contentsOf: String(Character(Unicode.Scalar(scalar) ?? "\u{FFFD}")).utf8)
                default: throw failure("invalid escape in string")
                }
            case 0..<0x20:
                throw failure("control character in string")
            default:
                utf8.append(byte)
            }
        }
    }

    private mutating func readHex4() throws(Failure) -> UInt32 {
        guard position + 4 <= bytes.count else { throw failure("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            position += 1
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw failure("invalid \\u escape")
            }
            value = value << 4 | digit
        }
        return value
    }

    /// 10^0...10^22, each exact in a double, at a fixed address. Never freed.
    private nonisolated(unsafe) static let exactPowers: UnsafePointer<Double> = {
        let table = UnsafeMutablePointer<Double>.allocate(capacity: 23)
        var value = 1.0
        for exponent in 0...22 {
            table[exponent] = value
            value *= 10
        }
        return UnsafePointer(table)
    }()

    /// Reads a JSON number, correctly rounded: short decimals exactly by the fast path
    /// (at most 15 significant digits and a power of ten up to 22, both exact in a double),
    /// up to 19 digits by ``DecimalToDouble`` (Eisel–Lemire), everything else through strtod.
    package mutating func readNumber() throws(Failure) -> Double {
        _ = peek()
        // Locals, not `self.position`: the loops below then run in registers.
        guard let base = bytes.baseAddress else { throw failure("expected a number") }
        let count = bytes.count
        let start = position
        var index = position
        // The sign without a branch: in a tensor it is as likely as not, so a branch on it is
        // mispredicted half the time.
        var sign: UInt64 = 0
        if index < count {
            let minus = base.load(fromByteOffset: index, as: UInt8.self) == UInt8(ascii: "-")
            sign = UInt64(minus ? 1 : 0) &<< 63
            index &+= minus ? 1 : 0
        }
        var mantissa: UInt64 = 0
        var digits = 0
        var exponent = 0
        @inline(__always) func digit(at offset: Int) -> UInt8? {
            guard offset < count else { return nil }
            let value = base.load(fromByteOffset: offset, as: UInt8.self) &- UInt8(ascii: "0")
            return value < 10 ? value : nil
        }
        let integerStart = index
        if index &+ 1 < count, let value = digit(at: index),
            base.load(fromByteOffset: index &+ 1, as: UInt8.self) == UInt8(ascii: ".")
        {
            // One digit before the point, as most tensor values have: no eight-byte try.
            mantissa = UInt64(value)
            digits = value > 0 ? 1 : 0
            index &+= 1
        } else {
            while digits <= 11, let chunk = Self.eightDigits(base, count, index) {
                digits += mantissa > 0 ? 8 : Self.digitCount(chunk)
                mantissa = mantissa &* 100_000_000 &+ chunk
                index += 8
            }
            while let value = digit(at: index) {
                if digits < 19 { mantissa = mantissa &* 10 &+ UInt64(value) } else { exponent += 1 }
                if mantissa > 0 || digits > 0 { digits += 1 }
                index += 1
            }
        }
        guard index > integerStart else {
            position = index
            throw failure("expected a number")
        }
        if index < count, base.load(fromByteOffset: index, as: UInt8.self) == UInt8(ascii: ".") {
            index += 1
            let fractionStart = index
            while digits <= 11, let chunk = Self.eightDigits(base, count, index) {
                digits += mantissa > 0 ? 8 : Self.digitCount(chunk)
                mantissa = mantissa &* 100_000_000 &+ chunk
                exponent -= 8
                index += 8
            }
            while let value = digit(at: index) {
                if digits < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(value)
                    exponent -= 1
                    if mantissa > 0 { digits += 1 }
                } else {
                    // Past 19 significant digits: too many for the fast paths.
                    digits += 1
                }
                index += 1
            }
            guard index > fractionStart else {
                position = index
                throw failure("expected digits after '.'")
            }
        }
        if index < count, base.load(fromByteOffset: index, as: UInt8.self) | 0x20 == UInt8(ascii: "e") {
            index += 1
            var exponentNegative = false
            if index < count {
                let sign = base.load(fromByteOffset: index, as: UInt8.self)
                if sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
                    exponentNegative = sign == UInt8(ascii: "-")
                    index += 1
                }
            }
            let exponentStart = index
            var written = 0
            while let value = digit(at: index) {
                if written < 100_000 { written = written * 10 + Int(value) }
                index += 1
            }
            guard index > exponentStart else {
                position = index
                throw failure("expected digits in exponent")
            }
            exponent += exponentNegative ? -written : written
        }
        position = index
        if digits <= 15, exponent >= -22, exponent <= 22 {
            let value = Double(mantissa)
            let scaled = exponent < 0 ? value / exactPowerTable[-exponent] : value * exactPowerTable[exponent]
            return Double(bitPattern: scaled.bitPattern | sign)
        }
        if digits <= 19, let value = DecimalToDouble.value(mantissa: mantissa, exponent: exponent, table: powerTable) {
            return Double(bitPattern: value.bitPattern | sign)
        }
        return try slowNumber(start: start)
    }

    /// `value`, a number read at `start`, as an FP32 value: the `Float` nearest to it (what numpy
    /// and the binary tensor extension give for FP32), as a `Double`. Beyond `Float`'s range it
    /// is an error.
    @inline(__always)
    func narrowedToFloat(_ value: Double, readAt start: Int) throws(Failure) -> Double {
        let float = Float(value)
        // A JSON number is never infinite as written: infinity here is an overflow, of FP32 or
        // (1e400) of the double it was read as.
        if _slowPath(float.isInfinite) {
            throw Failure(offset: start, message: "\(value.isFinite ? "\(value)" : "a number") is beyond the range of FP32 (±\(Double(Float.greatestFiniteMagnitude)))")
        }
        return Double(float)
    }

    private func slowNumber(start: Int) throws(Failure) -> Double {
        let length = position - start
        guard length < 512 else { throw Failure(offset: start, message: "number literal longer than 512 characters") }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: length + 1) { buffer in
            for index in 0..<length { buffer[index] = CChar(bitPattern: bytes[start + index]) }
            buffer[length] = 0
            return strtod(buffer.baseAddress!, nil)
        }
    }

    /// The value of the eight bytes at `offset` when all are digits (read eight at a time, as
    /// fast_float does), else nil.
    @inline(__always)
    private static func eightDigits(_ base: UnsafeRawPointer, _ count: Int, _ offset: Int) -> UInt64? {
        guard offset + 8 <= count else { return nil }
        let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        let high: UInt64 = 0xF0F0_F0F0_F0F0_F0F0
        guard (word & high) | (((word &+ 0x0606_0606_0606_0606) & high) >> 4) == 0x3333_3333_3333_3333 else { return nil }
        var value = word &- 0x3030_3030_3030_3030
        value = (value &* 10) &+ (value >> 8)
        let low = (value & 0x0000_00FF_0000_00FF) &* (100 &+ (1_000_000 << 32))
        let upper = ((value >> 16) & 0x0000_00FF_0000_00FF) &* (1 &+ (10_000 << 32))
        return (low &+ upper) >> 32
    }

    /// Significant digits of a number below 10^8 (0 for 0), by comparisons: a loop of
    /// divisions here was a fifth of the time of reading "0.30157917737960815".
    @inline(__always)
    private static func digitCount(_ value: UInt64) -> Int {
        if value < 10_000 {
            if value < 100 { return value == 0 ? 0 : (value < 10 ? 1 : 2) }
            return value < 1_000 ? 3 : 4
        }
        if value < 1_000_000 { return value < 100_000 ? 5 : 6 }
        return value < 10_000_000 ? 7 : 8
    }

    /// Reads a number, or nested arrays of numbers, booleans (1 and 0) and nulls (NaN),
    /// flattened row-major into `values`: one loop, no recursion, no closure per element, since
    /// a tensor's data is most of an inference request. Large arrays are read in parallel
    /// chunks (``readNumericDataInChunks``), with the same result and the same errors.
    ///
    /// `asFloat`: numbers are FP32 values (``narrowedToFloat(_:readAt:)``).
    package mutating func readNumericData(into values: inout [Double], maxElements: Int, maxDepth: Int = 32, asFloat: Bool = false) throws(Failure) {
        if try readNumericDataInChunks(into: &values, maxElements: maxElements, maxDepth: maxDepth, asFloat: asFloat) { return }
        var state = DataTokenState(expectingValue: true, justOpened: false)
        try readDataTokens(into: &values, maxElements: maxElements, maxDepth: maxDepth, state: &state, wholeValue: true, asFloat: asFloat)
    }

    /// Where the token loop stands: after '[' or ',' a value must come; after a value, ',' or ']'.
    struct DataTokenState {
        var expectingValue: Bool
        var justOpened: Bool
    }

    /// The token loop of numeric data. `wholeValue`: read one value (a number or an array) and
    /// stop where it ends, checking the nesting. Otherwise read every token up to the end of the
    /// bytes, a chunk of an array whose brackets were already matched (so nesting is relative).
    mutating func readDataTokens(
        into values: inout [Double], maxElements: Int, maxDepth: Int, state: inout DataTokenState, wholeValue: Bool, asFloat: Bool
    ) throws(Failure) {
        var depth = 0
        while true {
            guard let byte = peek() else {
                if wholeValue { throw failure("unexpected end of JSON in data") }
                return
            }
            switch byte {
            case UInt8(ascii: "["):
                guard state.expectingValue else { throw failure("expected ',' or ']' in data") }
                depth += 1
                guard depth <= maxDepth else { throw failure("data nested deeper than \(maxDepth) levels") }
                position += 1
                state.justOpened = true
                continue
            case UInt8(ascii: "]"):
                guard depth > 0 || !wholeValue, !state.expectingValue || state.justOpened else { throw failure("unexpected ']' in data") }
                depth -= 1
                position += 1
                state.expectingValue = false
            case UInt8(ascii: ","):
                guard depth > 0 || !wholeValue, !state.expectingValue else { throw failure("unexpected ',' in data") }
                position += 1
                state.expectingValue = true
            case UInt8(ascii: "t"), UInt8(ascii: "f"):
                guard state.expectingValue else { throw failure("expected ',' or ']' in data") }
                values.append(try readBool() ? 1 : 0)
                state.expectingValue = false
            case UInt8(ascii: "n"):
                guard state.expectingValue, readNull() else { throw failure("unexpected character in data") }
                values.append(.nan)
                state.expectingValue = false
            case UInt8(ascii: "\""):
                throw failure("data holds a string: BYTES tensors are not supported, only numbers and booleans")
            default:
                guard state.expectingValue else { throw failure("expected ',' or ']' in data") }
                // Inside an array, a run of numbers written "1.5, 2.5, ..." is read straight
                // through: a comma, at most one space and a number's first byte go on to the
                // next number without a turn of the token loop. Anything else ends the run and
                // the loop reads it, so the result and the errors are the same.
                let inArray = depth > 0 || !wholeValue
                while true {
                    guard values.count < maxElements else { throw failure("data holds more than \(maxElements) elements") }
                    let start = position
                    let value = try readNumber()
                    values.append(asFloat ? try narrowedToFloat(value, readAt: start) : value)
                    guard inArray, let next = nextNumberInRun() else { break }
                    position = next
                }
                state.expectingValue = false
            }
            state.justOpened = false
            if wholeValue, depth <= 0 { return }
        }
    }

    /// Where the next number of a run starts, when a comma, at most one space and a number's
    /// first byte come next; nil otherwise.
    @inline(__always)
    private func nextNumberInRun() -> Int? {
        guard position &+ 2 < bytes.count, bytes[position] == UInt8(ascii: ",") else { return nil }
        var next = position &+ 1
        if bytes[next] == UInt8(ascii: " ") { next &+= 1 }
        let byte = bytes[next]
        return byte &- UInt8(ascii: "0") < 10 || byte == UInt8(ascii: "-") ? next : nil
    }

    /// Skips one value of any kind.
    package mutating func skipValue(depth: Int = 0) throws(Failure) {
        guard depth < Self.maxDepth else { throw failure("nesting deeper than \(Self.maxDepth) levels") }
        switch peek() {
        case UInt8(ascii: "{"):
            try readObject { scanner, _ throws(Failure) in try scanner.skipValue(depth: depth + 1) }
        case UInt8(ascii: "["):
            try readArray { scanner throws(Failure) in try scanner.skipValue(depth: depth + 1) }
        case UInt8(ascii: "\""):
            _ = try readString()
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            _ = try readBool()
        case UInt8(ascii: "n"):
            guard readNull() else { throw failure("unexpected character") }
        case nil:
            throw failure("unexpected end of JSON")
        default:
            _ = try readNumber()
        }
    }
}
