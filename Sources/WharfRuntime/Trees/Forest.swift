/// A validated, flattened tree ensemble: all trees' nodes in one contiguous array, each tree laid
/// out breadth-first so the top levels that every row visits share cache lines.
///
/// Built only through ``build(trees:groups:weights:groupCount:featureCount:categorySets:categoryWords:linearLeaves:)``,
/// which checks every index, so evaluation can read without bounds checks.
struct Forest<Semantics: SplitSemantics>: Sendable {
    typealias Scalar = Semantics.Scalar

    let nodes: [TreeNode<Scalar>]
    /// Indexed like `nodes`: the value of each leaf (0 at splits).
    let leafValues: [Scalar]
    let roots: [Int32]
    let depths: [Int32]
    /// Output group (class) of each tree.
    let groups: [Int32]
    /// Multiplier of each tree's leaf value (XGBoost dart's `weight_drop`; else 1).
    let weights: [Scalar]
    let groupCount: Int
    let featureCount: Int
    let categorySets: [CategorySet]
    let categoryWords: [UInt32]
    let linearLeaves: LinearLeaves?
    /// Categorical or exact-rule splits: the loop must look at each node's flags.
    let hasSpecialSplits: Bool

    /// Deepest path from a root to a leaf, over all trees.
    var maxDepth: Int { Int(depths.max() ?? 0) }

    var treeCount: Int { roots.count }

    /// Features used by at least one categorical split.
    var categoricalFeatures: [Int] {
        Set(nodes.lazy.filter { $0.flags.contains(.categorical) }.map { featureOf($0) }).sorted()
    }

    /// The model feature a node splits on (numeric splits index a copy of it).
    func featureOf(_ node: TreeNode<Scalar>) -> Int {
        node.feature >= featureCount ? node.feature - featureCount : node.feature
    }

    /// Every numeric threshold used on each feature, for synthetic benchmark data.
    func thresholds() -> [[Double]] {
        var result = Array(repeating: [Double](), count: featureCount)
        for (index, node) in nodes.enumerated() where Int(node.left) != index && !node.flags.contains(.categorical) {
            result[featureOf(node)].append(Double(node.threshold))
        }
        return result
    }

    init(
        nodes: [TreeNode<Scalar>],
        leafValues: [Scalar],
        roots: [Int32],
        depths: [Int32],
        groups: [Int32],
        weights: [Scalar],
        groupCount: Int,
        featureCount: Int,
        categorySets: [CategorySet],
        categoryWords: [UInt32],
        linearLeaves: LinearLeaves?
    ) {
        self.nodes = nodes
        self.leafValues = leafValues
        self.roots = roots
        self.depths = depths
        self.groups = groups
        self.weights = weights
        self.groupCount = groupCount
        self.featureCount = featureCount
        self.categorySets = categorySets
        self.categoryWords = categoryWords
        self.linearLeaves = linearLeaves
        self.hasSpecialSplits = nodes.contains { !$0.flags.isDisjoint(with: .special) }
    }
}
