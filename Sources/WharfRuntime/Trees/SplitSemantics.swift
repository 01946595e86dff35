/// How one library's trees route a row: the precision of comparisons and the rules for missing
/// values. A generic parameter, so the evaluation loop is specialized per library with no
/// dynamic dispatch inside it.
///
/// Each library's rule is compiled, once, into the one rule the fast loop runs: go left iff
/// `x <= threshold`, where `x` comes from one of two copies of the input: one keeps NaN (which
/// compares false, so goes right), the other holds -infinity for NaN (which goes left); a node
/// reads the copy its ``SplitFlags/nanGoesLeft`` names. Splits that rule cannot express keep the
/// library's own rule (``exactGoesLeft(_:threshold:flags:)``) and leave the fast path.
protocol SplitSemantics: Sendable {
    associatedtype Scalar: BinaryFloatingPoint & Sendable

    /// Converts an input value to the precision thresholds are compared in.
    static func prepare(_ x: Double) -> Scalar

    /// The threshold and flags that make the fast rule reproduce the library's numeric split,
    /// or nil when it cannot.
    static func compile(threshold: Scalar, flags: SplitFlags) -> (Scalar, SplitFlags)?

    /// The library's own rule for a numeric split, on the raw input value.
    static func exactGoesLeft(_ x: Double, threshold: Scalar, flags: SplitFlags) -> Bool

    /// The value a categorical split truncates to a category code.
    static func categoryValue(_ x: Double) -> Double
}

/// 0 or 1, without a branch.
@inline(__always) func bit(_ value: Bool) -> UInt32 {
    UInt32(unsafeBitCast(value, to: UInt8.self))
}

/// XGBoost: inputs are rounded to float32; left iff `x < threshold`; NaN follows the node's
/// default direction (FORMATS.md §1.4).
enum XGBoostSplits: SplitSemantics {
    @inline(__always) static func prepare(_ x: Double) -> Float { Float(x) }

    static func compile(threshold: Float, flags: SplitFlags) -> (Float, SplitFlags)? {
        // For float32 x, `x < t` is `x <= t.nextDown`; but nothing is below -infinity.
        guard threshold != -.infinity else { return nil }
        var flags = flags
        if flags.contains(.defaultLeft) { flags.insert(.nanGoesLeft) }
        return (threshold.nextDown, flags)
    }

    static func exactGoesLeft(_ x: Double, threshold: Float, flags: SplitFlags) -> Bool {
        x.isNaN ? flags.contains(.defaultLeft) : Float(x) < threshold
    }

    static func categoryValue(_ x: Double) -> Double { Double(Float(x)) }
}

/// LightGBM: everything in double; inputs within ±kZeroThreshold are zero; left iff
/// `x <= threshold`; missing values per node type (FORMATS.md §2.3).
enum LightGBMSplits: SplitSemantics {
    /// `kZeroThreshold` is the float literal `1e-35f` widened to double, not the double `1e-35`.
    static let zeroThreshold = Double(Float(1e-35))

    @inline(__always) static func prepare(_ x: Double) -> Double { x }

    static func compile(threshold: Double, flags: SplitFlags) -> (Double, SplitFlags)? {
        // Zero as missing sends exact zeros (and tiny values) the default way: not a threshold.
        guard !flags.contains(.missingZero) else { return nil }
        var flags = flags
        // LightGBM first reads |x| <= kZero as 0. A threshold outside that zone compares the
        // same either way; one inside it is moved to the zone's edge so raw inputs need no
        // rewriting: 0 <= t sends the whole zone left, 0 > t sends it right.
        var compiled = threshold
        if threshold >= -zeroThreshold, threshold < zeroThreshold {
            compiled = threshold >= 0 ? zeroThreshold : (-zeroThreshold).nextDown
        }
        // Where NaN is not the missing marker it is read as zero.
        let nanLeft = flags.contains(.missingNaN) ? flags.contains(.defaultLeft) : 0 <= threshold
        if nanLeft { flags.insert(.nanGoesLeft) }
        return (compiled, flags)
    }

    static func exactGoesLeft(_ raw: Double, threshold: Double, flags: SplitFlags) -> Bool {
        var x = zeroed(raw)
        if x.isNaN, !flags.contains(.missingNaN) { x = 0 }
        if (flags.contains(.missingZero) && x == 0) || (flags.contains(.missingNaN) && x.isNaN) {
            return flags.contains(.defaultLeft)
        }
        return x <= threshold
    }

    /// LightGBM truncates to an int before testing `< 0` (`static_cast<int>(fval)`): -0.5 is
    /// code 0, not outside every set (XGBoost does refuse x < 0).
    static func categoryValue(_ x: Double) -> Double { zeroed(x).rounded(.towardZero) }

    @inline(__always) static func zeroed(_ x: Double) -> Double {
        abs(x) <= zeroThreshold ? 0 : x
    }
}
