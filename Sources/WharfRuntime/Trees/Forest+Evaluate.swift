extension Forest {
    /// Rows walked together down one tree: with a few dozen features they stay in L1 cache
    /// together with the tree.
    static var rowBlock: Int { 64 }
    /// Row values held per block at most; wide models walk fewer rows at a time.
    static var blockValues: Int { 16_384 }
    /// Batches smaller than this walk several trees at once for each row instead.
    static var smallBatch: Int { 8 }

    /// Adds each tree's leaf value to its group's margin, in tree order (so XGBoost's float32
    /// margins are reproduced bit for bit).
    ///
    /// - Parameters:
    ///   - input: `rows × featureCount` values, row-major; NaN is missing.
    ///   - margins: `rows × groupCount` accumulators, already holding the base margins.
    func accumulate(input: UnsafePointer<Double>, rows: Int, margins: UnsafeMutablePointer<Scalar>) {
        let blockRows = max(1, min(Self.rowBlock, Self.blockValues / featureCount))
        nodes.withUnsafeBufferPointer { nodes in
            leafValues.withUnsafeBufferPointer { leaves in
                // Rows are converted once to the comparison precision, not at every node.
                withUnsafeTemporaryAllocation(of: Scalar.self, capacity: blockRows * featureCount) { scratch in
                    let walker = Walker(forest: self, nodes: nodes.baseAddress!, leaves: leaves.baseAddress!)
                    var start = 0
                    while start < rows {
                        let count = min(blockRows, rows - start)
                        let block = scratch.baseAddress!
                        for index in 0..<(count * featureCount) {
                            block[index] = Semantics.prepare(input[start * featureCount + index])
                        }
                        if count < Self.smallBatch {
                            walker.treesAtOnce(block: block, rows: count, margins: margins + start * groupCount)
                        } else {
                            walker.rowsAtOnce(block: block, rows: count, margins: margins + start * groupCount)
                        }
                        start += count
                    }
                }
            }
        }
    }
}

/// The evaluation loop over raw pointers into a validated forest.
private struct Walker<Semantics: SplitSemantics> {
    typealias Scalar = Semantics.Scalar

    let forest: Forest<Semantics>
    let nodes: UnsafePointer<TreeNode<Scalar>>
    let leaves: UnsafePointer<Scalar>

    /// One step down from `index` for `row`: left child, or the one beside it.
    @inline(__always)
    func step(_ index: Int32, _ row: UnsafePointer<Scalar>) -> Int32 {
        let node = nodes[Int(index)]
        let x = row[node.feature]
        let flags = node.flags
        if _slowPath(flags.rawValue & SplitFlags.special.rawValue != 0) {
            return node.left + Int32(bit(!forest.specialGoesLeft(Double(x), threshold: node.threshold, flags: flags)))
        }
        let left = bit(x <= node.threshold) | (bit(x != x) & flags.bit(.nanGoesLeft))
        return node.left + Int32(left ^ 1)
    }

    @inline(__always)
    func leafValue(_ index: Int32, _ row: UnsafePointer<Scalar>) -> Scalar {
        if let linear = forest.linearLeaves {
            return forest.linearValue(linear, index: Int(index), fallback: leaves[Int(index)], row: row)
        }
        return leaves[Int(index)]
    }

    /// Each tree in turn, for all rows of the block, level by level: the walks of different
    /// rows are independent, so the CPU overlaps many of them.
    func rowsAtOnce(block: UnsafePointer<Scalar>, rows: Int, margins: UnsafeMutablePointer<Scalar>) {
        let featureCount = forest.featureCount
        let groupCount = forest.groupCount
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: rows) { cursor in
            let cursor = cursor.baseAddress!
            forest.roots.withUnsafeBufferPointer { roots in
                for tree in 0..<roots.count {
                    let root = roots[tree]
                    for row in 0..<rows { cursor[row] = root }
                    for _ in 0..<forest.depths[tree] {
                        for row in 0..<rows {
                            cursor[row] = step(cursor[row], block + row * featureCount)
                        }
                    }
                    let group = Int(forest.groups[tree])
                    let weight = forest.weights[tree]
                    for row in 0..<rows {
                        margins[row * groupCount + group] += leafValue(cursor[row], block + row * featureCount) * weight
                    }
                }
            }
        }
    }

    /// For each row, four trees at a time: a single row still gets four overlapping walks.
    func treesAtOnce(block: UnsafePointer<Scalar>, rows: Int, margins: UnsafeMutablePointer<Scalar>) {
        let featureCount = forest.featureCount
        let groupCount = forest.groupCount
        let treeCount = forest.treeCount
        forest.roots.withUnsafeBufferPointer { roots in
            forest.depths.withUnsafeBufferPointer { depths in
                for rowIndex in 0..<rows {
                    let row = block + rowIndex * featureCount
                    let out = margins + rowIndex * groupCount
                    var tree = 0
                    while tree + 4 <= treeCount {
                        var c0 = roots[tree], c1 = roots[tree + 1], c2 = roots[tree + 2], c3 = roots[tree + 3]
                        // Leaves loop on themselves, so the deepest of the four sets the count.
                        let depth = max(max(depths[tree], depths[tree + 1]), max(depths[tree + 2], depths[tree + 3]))
                        for _ in 0..<depth {
                            c0 = step(c0, row)
                            c1 = step(c1, row)
                            c2 = step(c2, row)
                            c3 = step(c3, row)
                        }
                        out[Int(forest.groups[tree])] += leafValue(c0, row) * forest.weights[tree]
                        out[Int(forest.groups[tree + 1])] += leafValue(c1, row) * forest.weights[tree + 1]
                        out[Int(forest.groups[tree + 2])] += leafValue(c2, row) * forest.weights[tree + 2]
                        out[Int(forest.groups[tree + 3])] += leafValue(c3, row) * forest.weights[tree + 3]
                        tree += 4
                    }
                    while tree < treeCount {
                        var c = roots[tree]
                        for _ in 0..<depths[tree] { c = step(c, row) }
                        out[Int(forest.groups[tree])] += leafValue(c, row) * forest.weights[tree]
                        tree += 1
                    }
                }
            }
        }
    }
}

extension Forest {
    /// Categorical and zero-as-missing splits, off the fast path.
    func specialGoesLeft(_ value: Double, threshold: Scalar, flags: SplitFlags) -> Bool {
        let x = Semantics.specialValue(value)
        if x.isNaN { return flags.contains(flags.contains(.categorical) ? .nanGoesLeft : .defaultLeft) }
        if !flags.contains(.categorical) {
            // Zero as missing: zero (after LightGBM's rounding of tiny values) takes the default.
            return x == 0 ? flags.contains(.defaultLeft) : Scalar(x) <= threshold
        }
        let outside = flags.contains(.notInSetGoesLeft)
        // Both libraries truncate the value to an integer code; negative or huge codes are in no set.
        guard x >= 0, x < 16_777_216 else { return outside }
        let code = Int(x)
        let set = categorySets[Int(threshold)]
        let word = code >> 5
        guard word < Int(set.count) else { return outside }
        let inSet = (categoryWords[Int(set.start) + word] >> UInt32(code & 31)) & 1 == 1
        return inSet ? !outside : outside
    }

    /// A LightGBM linear leaf: its constant plus its terms, or the plain leaf value when one of
    /// its features is missing.
    func linearValue(_ leaves: LinearLeaves, index: Int, fallback: Scalar, row: UnsafePointer<Scalar>) -> Scalar {
        let slot = Int(leaves.slotOfNode[index])
        var sum = leaves.constants[slot]
        for term in Int(leaves.offsets[slot])..<Int(leaves.offsets[slot + 1]) {
            let raw = Double(row[Int(leaves.features[term])])
            if raw.isNaN { return fallback }
            sum += LightGBMSplits.specialValue(raw) * leaves.coefficients[term]
        }
        return Scalar(sum)
    }
}
