/// One node of a flattened forest, laid out for the evaluation loop: 12 bytes for XGBoost's
/// `Float` trees, 16 for LightGBM's `Double` trees.
///
/// A node's children are adjacent (`left`, `left + 1`), so one step is
/// `next = left + (goes left ? 0 : 1)`. A leaf is its own left child with an infinite
/// threshold, so every row stays on it: a tree is walked a fixed number of steps (its depth)
/// for many rows in lockstep, with no branch on "is this a leaf". Leaf values live apart, in
/// ``Forest/leafValues``.
struct TreeNode<Scalar: BinaryFloatingPoint & Sendable>: Sendable {
    /// Go left iff `x <= threshold` (each library's own rule is folded into the threshold when
    /// the forest is built); at a categorical split, the index of its category set.
    var threshold: Scalar
    /// Index of the value the split reads, in the low 24 bits, ``SplitFlags`` in the high 8.
    /// Numeric splits read a prepared row of two copies of each feature (see
    /// ``Forest/accumulate(input:rows:margins:)``); special splits read the raw row.
    var featureAndFlags: UInt32
    var left: Int32

    /// The most features a tree model may have: prepared rows hold each feature twice.
    static var maxFeatureCount: Int { (1 << 23) - 1 }

    @inline(__always) var feature: Int { Int(featureAndFlags & 0x00FF_FFFF) }
    @inline(__always) var flags: SplitFlags { SplitFlags(rawValue: featureAndFlags & 0xFF00_0000) }
}

/// How a split treats missing values and categories; stored in the high byte of
/// ``TreeNode/featureAndFlags``.
struct SplitFlags: OptionSet, Sendable {
    let rawValue: UInt32
    /// A NaN input goes left (else right). Set at build time from the library's rules.
    static let nanGoesLeft = SplitFlags(rawValue: 1 << 24)
    /// The file's default direction for missing values: left (else right).
    static let defaultLeft = SplitFlags(rawValue: 1 << 25)
    /// The file says NaN is the missing value (LightGBM missing type NaN; every XGBoost split).
    static let missingNaN = SplitFlags(rawValue: 1 << 26)
    /// Zero (and NaN) is the missing value: LightGBM's `zero_as_missing`.
    static let missingZero = SplitFlags(rawValue: 1 << 27)
    /// A categorical split: the threshold indexes a category set.
    static let categorical = SplitFlags(rawValue: 1 << 28)
    /// For categorical splits: categories outside the set go left (XGBoost) rather than right.
    static let notInSetGoesLeft = SplitFlags(rawValue: 1 << 29)
    /// A numeric split the fast rule cannot express (zero as missing, an infinite threshold):
    /// it is evaluated with the library's own rule on the raw input.
    static let exactRule = SplitFlags(rawValue: 1 << 30)

    /// Splits that leave the fast path.
    static let special: SplitFlags = [.categorical, .exactRule]

    /// 0 or 1 for one flag, without a branch.
    @inline(__always) func bit(_ flag: SplitFlags) -> UInt32 { (rawValue & flag.rawValue) == 0 ? 0 : 1 }
}
