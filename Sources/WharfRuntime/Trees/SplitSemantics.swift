/// How one library's trees route a row: the precision of comparisons and the rules for missing
/// values. A generic parameter, so the evaluation loop is specialized per library with no
/// dynamic dispatch inside it.
///
/// Each library's rule is compiled, once, into the one rule the loop runs:
/// go left iff `x <= threshold`, or `x` is NaN and the node's ``SplitFlags/nanGoesLeft`` is set.
protocol SplitSemantics: Sendable {
    associatedtype Scalar: BinaryFloatingPoint & Sendable

    /// Converts an input value to the precision thresholds are compared in.
    static func prepare(_ x: Double) -> Scalar

    /// The threshold and flags that make the fast rule reproduce the library's numeric split.
    static func compile(threshold: Scalar, flags: SplitFlags) -> (Scalar, SplitFlags)

    /// The value a categorical or zero-as-missing split sees (LightGBM reads inputs within
    /// ±kZeroThreshold as zero).
    static func specialValue(_ x: Double) -> Double
}

/// 0 or 1, without a branch.
@inline(__always) func bit(_ value: Bool) -> UInt32 {
    UInt32(unsafeBitCast(value, to: UInt8.self))
}

/// XGBoost: inputs are rounded to float32; left iff `x < threshold`; NaN follows the node's
/// default direction (FORMATS.md §1.4).
enum XGBoostSplits: SplitSemantics {
    @inline(__always) static func prepare(_ x: Double) -> Float { Float(x) }

    static func compile(threshold: Float, flags: SplitFlags) -> (Float, SplitFlags) {
        var flags = flags
        if flags.contains(.defaultLeft) { flags.insert(.nanGoesLeft) }
        // For float32 x, `x < t` is `x <= t.nextDown`; nothing is below -inf, and x <= NaN is
        // always false.
        return (threshold == -.infinity ? .nan : threshold.nextDown, flags)
    }

    static func specialValue(_ x: Double) -> Double { Double(Float(x)) }
}

/// LightGBM: everything in double; inputs within ±kZeroThreshold are zero; left iff
/// `x <= threshold`; missing values per node type (FORMATS.md §2.3).
enum LightGBMSplits: SplitSemantics {
    /// `kZeroThreshold` is the float literal `1e-35f` widened to double, not the double `1e-35`.
    static let zeroThreshold = Double(Float(1e-35))

    @inline(__always) static func prepare(_ x: Double) -> Double { x }

    static func compile(threshold: Double, flags: SplitFlags) -> (Double, SplitFlags) {
        var flags = flags
        // LightGBM first reads |x| <= kZero as 0. A threshold outside that zone compares the
        // same either way; one inside it is moved to the zone's edge so raw inputs need no
        // rewriting: 0 <= t sends the whole zone left, 0 > t sends it right.
        var compiled = threshold
        if threshold >= -zeroThreshold, threshold < zeroThreshold {
            compiled = threshold >= 0 ? zeroThreshold : (-zeroThreshold).nextDown
        }
        let nanLeft: Bool
        if flags.contains(.missingNaN) {
            nanLeft = flags.contains(.defaultLeft)
        } else {
            // Where NaN is not the missing marker it is read as zero.
            nanLeft = 0 <= threshold
        }
        if nanLeft { flags.insert(.nanGoesLeft) }
        return (compiled, flags)
    }

    @inline(__always) static func specialValue(_ x: Double) -> Double {
        abs(x) <= zeroThreshold ? 0 : x
    }
}
