/// One node of a flattened forest, laid out for the evaluation loop: 16 bytes for XGBoost's
/// `Float` trees, 24 for LightGBM's `Double` trees.
///
/// Leaves point to themselves on both sides, so a tree can be walked a fixed number of steps
/// (its depth) for many rows in lockstep, without a branch on "is this a leaf".
struct TreeNode<Scalar: BinaryFloatingPoint & Sendable>: Sendable {
    /// Split threshold; at a leaf, the leaf value; at a categorical split, the index of its
    /// category set in ``Forest/categorySets``.
    var value: Scalar
    /// Feature index in the low 24 bits, ``SplitFlags`` in the high 8.
    var featureAndFlags: UInt32
    var left: Int32
    var right: Int32

    static var maxFeatureIndex: Int { (1 << 24) - 1 }

    @inline(__always) var feature: Int { Int(featureAndFlags & 0x00FF_FFFF) }
    @inline(__always) var flags: SplitFlags { SplitFlags(rawValue: featureAndFlags & 0xFF00_0000) }
}

/// How a split treats missing values and categories; stored in the high byte of
/// ``TreeNode/featureAndFlags``.
struct SplitFlags: OptionSet, Sendable {
    let rawValue: UInt32
    /// Missing values go left (else right).
    static let defaultLeft = SplitFlags(rawValue: 1 << 24)
    /// NaN is a missing value.
    static let missingNaN = SplitFlags(rawValue: 1 << 25)
    /// Zero (and NaN) is a missing value: LightGBM's `zero_as_missing`.
    static let missingZero = SplitFlags(rawValue: 1 << 26)
    /// A categorical split: the value indexes a category set.
    static let categorical = SplitFlags(rawValue: 1 << 27)
    /// For categorical splits: categories outside the set go left (XGBoost) rather than right.
    static let notInSetGoesLeft = SplitFlags(rawValue: 1 << 28)
}
