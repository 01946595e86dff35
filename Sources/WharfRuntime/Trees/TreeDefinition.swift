/// One tree as a model file describes it, before validation and flattening: struct-of-arrays
/// over its nodes, node 0 the root. A node is a leaf when `left[i] == -1`.
struct TreeDefinition<Scalar: BinaryFloatingPoint & Sendable> {
    var left: [Int] = []
    var right: [Int] = []
    var feature: [Int] = []
    /// Threshold, leaf value, or category-set index (see ``TreeNode/value``).
    var value: [Scalar] = []
    var flags: [SplitFlags] = []
    /// For LightGBM linear trees: the leaf ordinal of each leaf node (else empty).
    var linearLeaf: [Int] = []

    var count: Int { left.count }

    mutating func appendSplit(feature: Int, value: Scalar, flags: SplitFlags, left: Int, right: Int) {
        self.left.append(left)
        self.right.append(right)
        self.feature.append(feature)
        self.value.append(value)
        self.flags.append(flags)
    }

    mutating func appendLeaf(value: Scalar) {
        left.append(-1)
        right.append(-1)
        feature.append(0)
        self.value.append(value)
        flags.append([])
    }
}
