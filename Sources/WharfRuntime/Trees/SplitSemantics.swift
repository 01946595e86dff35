/// How one library's trees route a row: the precision of comparisons and the rules for missing
/// values. A generic parameter, so the evaluation loop is specialized per library with no
/// dynamic dispatch inside it.
protocol SplitSemantics: Sendable {
    associatedtype Scalar: BinaryFloatingPoint & Sendable

    /// Converts an input value to the space thresholds are compared in.
    static func prepare(_ x: Double) -> Scalar

    /// True when a numeric split sends `x` (already prepared) left.
    static func goesLeft(_ x: Scalar, threshold: Scalar, flags: SplitFlags) -> Bool
}

/// XGBoost: inputs are rounded to float32; left iff `x < threshold`; NaN follows the node's
/// default direction (FORMATS.md §1.4).
enum XGBoostSplits: SplitSemantics {
    @inline(__always) static func prepare(_ x: Double) -> Float { Float(x) }

    @inline(__always)
    static func goesLeft(_ x: Float, threshold: Float, flags: SplitFlags) -> Bool {
        // NaN compares false, so it goes left only through the default direction.
        (x < threshold) || (x.isNaN && flags.contains(.defaultLeft))
    }
}

/// LightGBM: everything in double; inputs within ±kZeroThreshold are zero; left iff
/// `x <= threshold`; missing-value handling per node type (FORMATS.md §2.3).
enum LightGBMSplits: SplitSemantics {
    /// `kZeroThreshold` is the float literal `1e-35f` widened to double, not the double `1e-35`.
    static let zeroThreshold = Double(Float(1e-35))

    @inline(__always) static func prepare(_ x: Double) -> Double {
        abs(x) <= zeroThreshold ? 0 : x
    }

    @inline(__always)
    static func goesLeft(_ x: Double, threshold: Double, flags: SplitFlags) -> Bool {
        let isNaN = x.isNaN
        // Where NaN is not the missing marker, it is read as zero.
        let value = isNaN ? 0 : x
        let isMissing = (isNaN && flags.contains(.missingNaN)) || (value == 0 && flags.contains(.missingZero))
        return isMissing ? flags.contains(.defaultLeft) : value <= threshold
    }
}
