extension Forest {
    /// Rows walked together down one tree. 64 rows of a few dozen features stay in L1 cache
    /// together with the tree, and their walks are independent, so the CPU overlaps them.
    static var rowBlock: Int { 64 }
    /// Trees walked together for one row when a batch is too small to fill a row block.
    static var treeBlock: Int { 16 }

    /// Adds each tree's leaf value to its group's margin, in tree order.
    ///
    /// - Parameters:
    ///   - input: `rows × featureCount` values, row-major; NaN is missing.
    ///   - margins: `rows × groupCount` accumulators, already holding the base margins.
    func accumulate(input: UnsafePointer<Double>, rows: Int, margins: UnsafeMutablePointer<Scalar>) {
        nodes.withUnsafeBufferPointer { nodes in
            leafValues.withUnsafeBufferPointer { leaves in
                if rows >= 8 {
                    accumulateByRowBlocks(nodes: nodes.baseAddress!, leaves: leaves.baseAddress!, input: input, rows: rows, margins: margins)
                } else {
                    accumulateByTreeBlocks(nodes: nodes.baseAddress!, leaves: leaves.baseAddress!, input: input, rows: rows, margins: margins)
                }
            }
        }
    }

    /// One step down the tree from `index` for the row at `row`.
    @inline(__always)
    private func step(_ index: Int32, nodes: UnsafePointer<TreeNode<Scalar>>, row: UnsafePointer<Double>) -> Int32 {
        let node = nodes[Int(index)]
        let raw = row[node.feature]
        let flags = node.flags
        if _slowPath(flags.rawValue & SplitFlags.special.rawValue != 0) {
            return node.left + Int32(bit(!specialGoesLeft(raw, threshold: node.threshold, flags: flags)))
        }
        let x = Semantics.prepare(raw)
        let left = bit(x <= node.threshold) | (bit(x != x) & flags.bit(.nanGoesLeft))
        return node.left + Int32(left ^ 1)
    }

    /// Categorical and zero-as-missing splits, off the fast path.
    private func specialGoesLeft(_ raw: Double, threshold: Scalar, flags: SplitFlags) -> Bool {
        let x = Semantics.specialValue(raw)
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

    @inline(__always)
    private func leafValue(_ index: Int32, leaves: UnsafePointer<Scalar>, row: UnsafePointer<Double>) -> Scalar {
        if let linearLeaves {
            return linearValue(linearLeaves, index: Int(index), fallback: leaves[Int(index)], row: row)
        }
        return leaves[Int(index)]
    }

    private func linearValue(_ leaves: LinearLeaves, index: Int, fallback: Scalar, row: UnsafePointer<Double>) -> Scalar {
        let slot = Int(leaves.slotOfNode[index])
        var sum = leaves.constants[slot]
        for term in Int(leaves.offsets[slot])..<Int(leaves.offsets[slot + 1]) {
            let raw = row[Int(leaves.features[term])]
            if raw.isNaN { return fallback }
            sum += LightGBMSplits.specialValue(raw) * leaves.coefficients[term]
        }
        return Scalar(sum)
    }

    private func accumulateByRowBlocks(
        nodes: UnsafePointer<TreeNode<Scalar>>,
        leaves: UnsafePointer<Scalar>,
        input: UnsafePointer<Double>,
        rows: Int,
        margins: UnsafeMutablePointer<Scalar>
    ) {
        let featureCount = featureCount
        let groupCount = groupCount
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: Self.rowBlock) { cursor in
            let cursor = cursor.baseAddress!
            var blockStart = 0
            while blockStart < rows {
                let count = min(Self.rowBlock, rows - blockStart)
                let block = input + blockStart * featureCount
                let blockMargins = margins + blockStart * groupCount
                for tree in 0..<roots.count {
                    let root = roots[tree]
                    for row in 0..<count { cursor[row] = root }
                    for _ in 0..<depths[tree] {
                        for row in 0..<count {
                            cursor[row] = step(cursor[row], nodes: nodes, row: block + row * featureCount)
                        }
                    }
                    let group = Int(groups[tree])
                    let weight = weights[tree]
                    for row in 0..<count {
                        blockMargins[row * groupCount + group] +=
                            leafValue(cursor[row], leaves: leaves, row: block + row * featureCount) * weight
                    }
                }
                blockStart += count
            }
        }
    }

    private func accumulateByTreeBlocks(
        nodes: UnsafePointer<TreeNode<Scalar>>,
        leaves: UnsafePointer<Scalar>,
        input: UnsafePointer<Double>,
        rows: Int,
        margins: UnsafeMutablePointer<Scalar>
    ) {
        let featureCount = featureCount
        let groupCount = groupCount
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: Self.treeBlock) { cursor in
            let cursor = cursor.baseAddress!
            for rowIndex in 0..<rows {
                let row = input + rowIndex * featureCount
                let rowMargins = margins + rowIndex * groupCount
                var first = 0
                while first < roots.count {
                    let count = min(Self.treeBlock, roots.count - first)
                    var depth: Int32 = 0
                    for lane in 0..<count {
                        cursor[lane] = roots[first + lane]
                        depth = max(depth, depths[first + lane])
                    }
                    for _ in 0..<depth {
                        for lane in 0..<count {
                            cursor[lane] = step(cursor[lane], nodes: nodes, row: row)
                        }
                    }
                    // Summed in tree order: XGBoost's float32 margins are reproduced bit for bit.
                    for lane in 0..<count {
                        rowMargins[Int(groups[first + lane])] +=
                            leafValue(cursor[lane], leaves: leaves, row: row) * weights[first + lane]
                    }
                    first += count
                }
            }
        }
    }
}
