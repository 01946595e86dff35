/// Decimal to double, correctly rounded, for the decimals JSON numbers mostly are: at most 19
/// significant digits (a printed double has 17) and a power of ten in a moderate range.
///
/// This is the Eisel–Lemire method (Lemire, "Number Parsing at a Gigabyte per Second", 2021):
/// the mantissa, shifted to the top of a word, is multiplied by a 128-bit truncation of the
/// power of ten, and the top 55 bits of the product are rounded to a double. Where the
/// truncation could have changed the rounding (the bits that decide it are all ones, or it
/// lands on a half-way point), it gives no answer and the caller asks `strtod`. A few
/// nanoseconds a number instead of the tens of an x87 division.
package enum DecimalToDouble {
    /// Powers of ten the table covers; numbers outside go to `strtod`.
    package static var exponentRange: ClosedRange<Int> { -128...128 }

    /// 128-bit mantissas of 10^q for q in `exponentRange`, rounded down, normalised so that the
    /// top bit is set: (high word, low word). Computed once, exactly, by repeated multiplication
    /// and floor division by 5 of multi-word integers (about 0.1 ms).
    package static let powers: [(high: UInt64, low: UInt64)] = exponentRange.map(truncatedPowerOfTen)

    /// `powers` at a fixed address, for loops that look it up once instead of once a number
    /// (each read of a static goes through its lazy-initialisation check). Never freed.
    package nonisolated(unsafe) static let powerTable: UnsafePointer<(high: UInt64, low: UInt64)> = {
        let table = UnsafeMutablePointer<(high: UInt64, low: UInt64)>.allocate(capacity: powers.count)
        table.initialize(from: powers, count: powers.count)
        return UnsafePointer(table)
    }()

    /// mantissa × 10^exponent rounded to the nearest double (ties to even), or nil when this
    /// method cannot decide. `mantissa` holds at most 19 digits.
    @inline(__always)
    package static func value(mantissa: UInt64, exponent: Int) -> Double? {
        value(mantissa: mantissa, exponent: exponent, table: powerTable)
    }

    /// The same, with ``powerTable`` passed in.
    @inline(__always)
    package static func value(mantissa: UInt64, exponent: Int, table: UnsafePointer<(high: UInt64, low: UInt64)>) -> Double? {
        if mantissa == 0 { return 0 }
        guard exponentRange.contains(exponent) else { return nil }
        let leadingZeros = mantissa.leadingZeroBitCount
        let normalized = mantissa << UInt64(leadingZeros)
        let power = table[exponent &- exponentRange.lowerBound]
        var (high, low) = normalized.multipliedFullWidth(by: power.high)
        // Only when the nine bits below the 55 kept are all ones can the low word of the power
        // carry into them; then add its product, and give up if they are still all ones.
        if high & 0x1FF == 0x1FF {
            let (carryHigh, _) = normalized.multipliedFullWidth(by: power.low)
            let (sum, overflow) = low.addingReportingOverflow(carryHigh)
            low = sum
            if overflow { high &+= 1 }
            if high & 0x1FF == 0x1FF, low == .max { return nil }
        }
        let topBit = Int(high >> 63)
        var significand = high >> UInt64(topBit + 9)
        // floor(q · log2(10)) + 63, less the normalising shift, plus the double's bias.
        var biasedExponent = ((217_706 * exponent) >> 16) + 63 + topBit - leadingZeros + 1023
        // Exactly half-way between two doubles as far as these bits tell: undecided.
        if low == 0, high & 0x1FF == 0, significand & 3 == 1 { return nil }
        significand += significand & 1
        significand >>= 1
        if significand >> 53 > 0 {
            significand >>= 1
            biasedExponent += 1
        }
        // Subnormal, zero, infinite: strtod.
        guard biasedExponent >= 1, biasedExponent < 0x7FF else { return nil }
        return Double(bitPattern: UInt64(biasedExponent) << 52 | (significand & 0x000F_FFFF_FFFF_FFFF))
    }

    /// The 128-bit mantissa of 10^q, rounded down. 10^q = 5^q · 2^q, and the power of two only
    /// moves the binary point: for q ≥ 0 the mantissa is 5^q's top 128 bits; for q < 0 it is
    /// floor(2^(127 + z) / 5^-q), where 5^-q has z bits, which lies in [2^127, 2^128).
    static func truncatedPowerOfTen(_ q: Int) -> (high: UInt64, low: UInt64) {
        if q >= 0 {
            var power: [UInt64] = [1]  // little-endian words
            for _ in 0..<q { multiply(&power, by: 5) }
            return topBits(power)
        }
        var divisor: [UInt64] = [1]
        for _ in 0..<(-q) { multiply(&divisor, by: 5) }
        let bits = bitLength(divisor) + 127
        var quotient = [UInt64](repeating: 0, count: bits / 64 + 1)
        quotient[bits / 64] = 1 << UInt64(bits % 64)
        // floor(floor(x / 5) / 5) = floor(x / 25): dividing by 5 again and again is exact.
        for _ in 0..<(-q) { divide(&quotient, by: 5) }
        return topBits(quotient)
    }

    private static func multiply(_ words: inout [UInt64], by factor: UInt64) {
        var carry: UInt64 = 0
        for index in words.indices {
            let (high, low) = words[index].multipliedFullWidth(by: factor)
            let (sum, overflow) = low.addingReportingOverflow(carry)
            words[index] = sum
            carry = high &+ (overflow ? 1 : 0)
        }
        if carry > 0 { words.append(carry) }
    }

    private static func divide(_ words: inout [UInt64], by divisor: UInt64) {
        var remainder: UInt64 = 0
        for index in words.indices.reversed() {
            let (quotient, rest) = divisor.dividingFullWidth((high: remainder, low: words[index]))
            words[index] = quotient
            remainder = rest
        }
        while words.count > 1, words.last == 0 { words.removeLast() }
    }

    private static func bitLength(_ words: [UInt64]) -> Int {
        (words.count - 1) * 64 + (64 - words[words.count - 1].leadingZeroBitCount)
    }

    /// The top 128 bits, shifted so that the highest set bit is bit 127 (truncating below).
    private static func topBits(_ words: [UInt64]) -> (high: UInt64, low: UInt64) {
        let shift = bitLength(words) - 128
        func bit(_ index: Int) -> UInt64 {
            guard index >= 0, index / 64 < words.count else { return 0 }
            return (words[index / 64] >> UInt64(index % 64)) & 1
        }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for index in 0..<64 {
            high |= bit(shift + 64 + index) << UInt64(index)
            low |= bit(shift + index) << UInt64(index)
        }
        return (high, low)
    }
}
