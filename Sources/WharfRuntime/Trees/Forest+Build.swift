import WharfCore

extension Forest {
    /// Deeper trees than this are refused: no real library writes them, and the lockstep walk
    /// costs one step per level.
    static var depthLimit: Int { 4096 }

    /// Validates the trees a model file described and flattens them.
    ///
    /// Every child index must be in range and reached exactly once from the root (no cycles, no
    /// shared subtrees), every feature index below `featureCount`, every category set index
    /// valid. Unreachable nodes (XGBoost's deleted nodes) are dropped.
    static func build(
        trees: [TreeDefinition<Scalar>],
        groups: [Int],
        weights: [Scalar],
        groupCount: Int,
        featureCount: Int,
        categorySets: [CategorySet] = [],
        categoryWords: [UInt32] = [],
        linearLeaves: [LinearLeafDefinition]? = nil
    ) throws(WharfError) -> Forest {
        guard featureCount >= 1, featureCount <= TreeNode<Scalar>.maxFeatureCount else {
            throw WharfError(.invalidModel, "feature count \(featureCount) is out of range 1...\(TreeNode<Scalar>.maxFeatureCount)")
        }
        // Every output group has at least one tree; a larger count would only size scratch space.
        guard groupCount >= 1, groupCount <= max(trees.count, 1) else {
            throw WharfError(.invalidModel, "\(groupCount) output groups (classes) for \(trees.count) trees: each group needs a tree")
        }
        precondition(groups.count == trees.count && weights.count == trees.count)
        for set in categorySets {
            guard set.start >= 0, set.count >= 0, Int(set.start) + Int(set.count) <= categoryWords.count else {
                throw WharfError(.invalidModel, "a category set reaches past the end of its bitset words")
            }
        }

        var nodes: [TreeNode<Scalar>] = []
        nodes.reserveCapacity(trees.reduce(0) { $0 + $1.count })
        var leafValues: [Scalar] = []
        leafValues.reserveCapacity(nodes.capacity)
        var roots: [Int32] = []
        var depths: [Int32] = []
        var linear: LinearLeaves? = linearLeaves.map { _ in
            LinearLeaves(slotOfNode: [], constants: [], offsets: [0], features: [], coefficients: [])
        }

        for (treeIndex, tree) in trees.enumerated() {
            guard groups[treeIndex] >= 0, groups[treeIndex] < groupCount else {
                throw WharfError(.invalidModel, "tree \(treeIndex): output group \(groups[treeIndex]) is out of range 0..<\(groupCount)")
            }
            let base = nodes.count
            guard base + tree.count < Int(Int32.max) else {
                throw WharfError(.invalidModel, "the model has more than \(Int32.max) nodes")
            }
            let (order, newIndex, depth) = try breadthFirstOrder(tree, treeIndex: treeIndex)
            roots.append(Int32(base))
            depths.append(Int32(depth))
            for (position, old) in order.enumerated() {
                let here = Int32(base + position)
                if tree.left[old] == -1 {
                    // A leaf is its own left child: every value, infinity too, is <= infinity. It
                    // reads feature 0's copy where NaN is -infinity, so NaN stays too.
                    nodes.append(TreeNode(threshold: .infinity, featureAndFlags: UInt32(featureCount), left: here))
                    leafValues.append(tree.value[old])
                    if let linearLeaves, linear != nil {
                        try appendLinearLeaf(&linear!, tree: tree, node: old, treeIndex: treeIndex, leaves: linearLeaves, featureCount: featureCount)
                    }
                    continue
                }
                let feature = tree.feature[old]
                guard feature >= 0, feature < featureCount else {
                    throw WharfError(.invalidModel, "tree \(treeIndex) node \(old): feature index \(feature) is out of range 0..<\(featureCount)")
                }
                var flags = tree.flags[old]
                var threshold = tree.value[old]
                if flags.contains(.categorical) {
                    guard threshold >= 0, threshold < Scalar(categorySets.count), threshold == threshold.rounded(.towardZero) else {
                        throw WharfError(.invalidModel, "tree \(treeIndex) node \(old): category set \(threshold) does not exist")
                    }
                    if flags.contains(.defaultLeft) { flags.insert(.nanGoesLeft) }
                } else {
                    guard !threshold.isNaN else {
                        throw WharfError(.invalidModel, "tree \(treeIndex) node \(old): the threshold is NaN")
                    }
                    if let (compiled, compiledFlags) = Semantics.compile(threshold: threshold, flags: flags) {
                        (threshold, flags) = (compiled, compiledFlags)
                    } else {
                        flags.insert(.exactRule)
                    }
                }
                // Breadth-first order places the two children side by side, left first.
                let left = newIndex[tree.left[old]]
                precondition(newIndex[tree.right[old]] == left + 1)
                // Numeric splits read the copy of their feature that sends NaN their way: NaN
                // itself goes right, -infinity left (see Forest.accumulate).
                let slot = flags.isDisjoint(with: .special) && flags.contains(.nanGoesLeft) ? feature + featureCount : feature
                nodes.append(TreeNode(threshold: threshold, featureAndFlags: UInt32(slot) | flags.rawValue, left: Int32(base + left)))
                leafValues.append(0)
                if linear != nil { linear!.slotOfNode.append(-1) }
            }
        }
        // Without special splits the loop never looks at flags: keep the bare value index.
        if !nodes.contains(where: { !$0.flags.isDisjoint(with: .special) }) {
            for index in nodes.indices { nodes[index].featureAndFlags &= 0x00FF_FFFF }
        }
        return Forest(
            nodes: nodes,
            leafValues: leafValues,
            roots: roots,
            depths: depths,
            groups: groups.map { Int32($0) },
            weights: weights,
            groupCount: groupCount,
            featureCount: featureCount,
            categorySets: categorySets,
            categoryWords: categoryWords,
            linearLeaves: linear
        )
    }

    /// Walks a tree from node 0, checking each child link; returns the nodes in breadth-first
    /// order, each old node's new position and the tree's depth.
    private static func breadthFirstOrder(
        _ tree: TreeDefinition<Scalar>,
        treeIndex: Int
    ) throws(WharfError) -> (order: [Int], newIndex: [Int], depth: Int) {
        let count = tree.count
        guard count > 0 else { throw WharfError(.invalidModel, "tree \(treeIndex) has no nodes") }
        var order = [0]
        order.reserveCapacity(count)
        var newIndex = [Int](repeating: -1, count: count)
        var nodeDepth = [Int](repeating: 0, count: count)
        newIndex[0] = 0
        var depth = 0
        var head = 0
        while head < order.count {
            let old = order[head]
            head += 1
            let left = tree.left[old]
            let right = tree.right[old]
            if left == -1 || right == -1 {
                guard left == right else {
                    throw WharfError(.invalidModel, "tree \(treeIndex) node \(old) has one child only")
                }
                continue
            }
            for child in [left, right] {
                guard child >= 0, child < count else {
                    throw WharfError(.invalidModel, "tree \(treeIndex) node \(old): child index \(child) is out of range 0..<\(count)")
                }
                guard newIndex[child] == -1 else {
                    throw WharfError(.invalidModel, "tree \(treeIndex) node \(child) is reached twice (a cycle or a shared subtree)")
                }
                newIndex[child] = order.count
                order.append(child)
                nodeDepth[child] = nodeDepth[old] + 1
                depth = max(depth, nodeDepth[child])
                guard depth <= depthLimit else {
                    throw WharfError(.invalidModel, "tree \(treeIndex) is deeper than \(depthLimit) levels")
                }
            }
        }
        return (order, newIndex, depth)
    }

    private static func appendLinearLeaf(
        _ table: inout LinearLeaves,
        tree: TreeDefinition<Scalar>,
        node: Int,
        treeIndex: Int,
        leaves: [LinearLeafDefinition],
        featureCount: Int
    ) throws(WharfError) {
        let ordinal = tree.linearLeaf.isEmpty ? -1 : tree.linearLeaf[node]
        guard ordinal >= 0, ordinal < leaves.count else {
            throw WharfError(.invalidModel, "tree \(treeIndex) node \(node): linear leaf \(ordinal) does not exist")
        }
        let leaf = leaves[ordinal]
        guard leaf.features.count == leaf.coefficients.count else {
            throw WharfError(.invalidModel, "tree \(treeIndex): linear leaf \(ordinal) has \(leaf.features.count) features but \(leaf.coefficients.count) coefficients")
        }
        for feature in leaf.features where feature < 0 || feature >= featureCount {
            throw WharfError(.invalidModel, "tree \(treeIndex): linear leaf \(ordinal) uses feature \(feature), out of range 0..<\(featureCount)")
        }
        table.slotOfNode.append(Int32(table.constants.count))
        table.constants.append(leaf.constant)
        table.features.append(contentsOf: leaf.features.map { Int32($0) })
        table.coefficients.append(contentsOf: leaf.coefficients)
        table.offsets.append(Int32(table.features.count))
    }
}
