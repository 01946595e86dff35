extension Forest {
    /// Rows walked together down one tree: with a few dozen features they stay in L1 cache
    /// together with the tree.
    static var rowBlock: Int { 64 }
    /// Prepared values held per block at most; wide models walk fewer rows at a time.
    static var blockValues: Int { 16_384 }
    /// Batches smaller than this walk several trees at once for each row instead.
    static var smallBatch: Int { 8 }

    /// Adds each tree's leaf value to its group's margin, in tree order (so XGBoost's float32
    /// margins are reproduced bit for bit).
    ///
    /// Each row is first prepared once: converted to the comparison precision and laid out
    /// twice, NaN kept in the first copy (NaN <= t is false: right) and -infinity for NaN in the
    /// second (left). A numeric split reads the copy that sends NaN its way, so the loop needs
    /// no NaN test at all.
    ///
    /// - Parameters:
    ///   - input: `rows × featureCount` values, row-major; NaN is missing.
    ///   - margins: `rows × groupCount` accumulators, already holding the base margins.
    func accumulate(input: UnsafePointer<Double>, rows: Int, margins: UnsafeMutablePointer<Scalar>) {
        let width = 2 * featureCount
        let blockRows = max(1, min(Self.rowBlock, Self.blockValues / width))
        nodes.withUnsafeBufferPointer { nodes in
            leafValues.withUnsafeBufferPointer { leaves in
                withUnsafeTemporaryAllocation(of: Scalar.self, capacity: blockRows * width) { scratch in
                    let prepared = scratch.baseAddress!
                    var start = 0
                    while start < rows {
                        let count = min(blockRows, rows - start)
                        let raw = input + start * featureCount
                        for row in 0..<count {
                            let source = raw + row * featureCount
                            let right = prepared + row * width
                            let left = right + featureCount
                            for feature in 0..<featureCount {
                                let value = source[feature]
                                let x = Semantics.prepare(value)
                                right[feature] = x
                                left[feature] = value.isNaN ? -.infinity : x
                            }
                        }
                        let block = Block<Scalar>(prepared: prepared, raw: raw, width: width, rawWidth: featureCount)
                        if hasSpecialSplits {
                            Walker<Semantics, MixedSplits>(forest: self, nodes: nodes.baseAddress!, leaves: leaves.baseAddress!)
                                .walk(block, rows: count, margins: margins + start * groupCount)
                        } else {
                            Walker<Semantics, PlainSplits>(forest: self, nodes: nodes.baseAddress!, leaves: leaves.baseAddress!)
                                .walk(block, rows: count, margins: margins + start * groupCount)
                        }
                        start += count
                    }
                }
            }
        }
    }
}

/// Whether a forest has splits off the fast path; a type, so each case gets its own loop.
private protocol WalkMode {
    static var checksFlags: Bool { get }
}

/// Only numeric splits the fast rule expresses: node flags are never read.
private enum PlainSplits: WalkMode {
    static var checksFlags: Bool { false }
}

/// Some categorical or exact-rule splits.
private enum MixedSplits: WalkMode {
    static var checksFlags: Bool { true }
}

/// Rows ready for walking: prepared (two copies per feature) and as given.
private struct Block<Scalar> {
    var prepared: UnsafePointer<Scalar>
    var raw: UnsafePointer<Double>
    var width: Int
    var rawWidth: Int

    @inline(__always) func row(_ index: Int) -> Row<Scalar> {
        Row(prepared: prepared + index &* width, raw: raw + index &* rawWidth)
    }
}

private struct Row<Scalar> {
    var prepared: UnsafePointer<Scalar>
    var raw: UnsafePointer<Double>
}

/// The evaluation loop over raw pointers into a validated forest.
private struct Walker<Semantics: SplitSemantics, Mode: WalkMode> {
    typealias Scalar = Semantics.Scalar
    typealias Block = WharfRuntime.Block<Scalar>
    typealias Row = WharfRuntime.Row<Scalar>

    let forest: Forest<Semantics>
    let nodes: UnsafePointer<TreeNode<Scalar>>
    let leaves: UnsafePointer<Scalar>

    /// One step down from `index`: the left child, or the one beside it.
    @inline(__always)
    func step(_ index: Int32, _ row: Row) -> Int32 {
        let node = nodes[Int(index)]
        var slot = node.featureAndFlags
        if Mode.checksFlags {
            if _slowPath(slot & SplitFlags.special.rawValue != 0) {
                return node.left &+ Int32(bit(!forest.specialGoesLeft(node, row.raw)))
            }
            slot &= 0x00FF_FFFF
        }
        let x = row.prepared[Int(slot)]
        return node.left &+ Int32(bit(!(x <= node.threshold)))
    }

    @inline(__always)
    func leafValue(_ index: Int32, _ row: Row) -> Scalar {
        if let linear = forest.linearLeaves {
            return forest.linearValue(linear, index: Int(index), fallback: leaves[Int(index)], row: row.raw)
        }
        return leaves[Int(index)]
    }

    func walk(_ block: Block, rows: Int, margins: UnsafeMutablePointer<Scalar>) {
        if rows < Forest<Semantics>.smallBatch {
            treesAtOnce(block, rows: rows, margins: margins)
        } else {
            rowsAtOnce(block, rows: rows, margins: margins)
        }
    }

    /// Each tree in turn, for all rows of the block, eight rows at a time from root to leaf:
    /// the eight walks are independent, so the CPU overlaps them, and their cursors stay in
    /// registers (not in an array read and written at every step). A last group of fewer rows
    /// walks the last row again in its spare places and keeps only its own results.
    func rowsAtOnce(_ block: Block, rows: Int, margins: UnsafeMutablePointer<Scalar>) {
        let groupCount = forest.groupCount
        let last = rows &- 1
        forest.roots.withUnsafeBufferPointer { roots in
            for tree in 0..<roots.count {
                let root = roots[tree]
                let depth = forest.depths[tree]
                let group = Int(forest.groups[tree])
                let weight = forest.weights[tree]
                var row = 0
                while row < rows {
                    let r0 = block.row(row), r1 = block.row(min(row &+ 1, last)), r2 = block.row(min(row &+ 2, last))
                    let r3 = block.row(min(row &+ 3, last)), r4 = block.row(min(row &+ 4, last))
                    let r5 = block.row(min(row &+ 5, last)), r6 = block.row(min(row &+ 6, last))
                    let r7 = block.row(min(row &+ 7, last))
                    var c0 = root, c1 = root, c2 = root, c3 = root, c4 = root, c5 = root, c6 = root, c7 = root
                    for _ in 0..<depth {
                        c0 = step(c0, r0)
                        c1 = step(c1, r1)
                        c2 = step(c2, r2)
                        c3 = step(c3, r3)
                        c4 = step(c4, r4)
                        c5 = step(c5, r5)
                        c6 = step(c6, r6)
                        c7 = step(c7, r7)
                    }
                    let out = margins + (row &* groupCount &+ group)
                    let valid = rows &- row
                    out[0] += leafValue(c0, r0) * weight
                    if valid > 1 { out[groupCount] += leafValue(c1, r1) * weight }
                    if valid > 2 { out[2 &* groupCount] += leafValue(c2, r2) * weight }
                    if valid > 3 { out[3 &* groupCount] += leafValue(c3, r3) * weight }
                    if valid > 4 { out[4 &* groupCount] += leafValue(c4, r4) * weight }
                    if valid > 5 { out[5 &* groupCount] += leafValue(c5, r5) * weight }
                    if valid > 6 { out[6 &* groupCount] += leafValue(c6, r6) * weight }
                    if valid > 7 { out[7 &* groupCount] += leafValue(c7, r7) * weight }
                    row &+= 8
                }
            }
        }
    }

    /// For each row, eight trees at a time: a single row still gets eight overlapping walks.
    func treesAtOnce(_ block: Block, rows: Int, margins: UnsafeMutablePointer<Scalar>) {
        let groupCount = forest.groupCount
        let treeCount = forest.treeCount
        forest.roots.withUnsafeBufferPointer { roots in
            forest.depths.withUnsafeBufferPointer { depths in
                for rowIndex in 0..<rows {
                    let row = block.row(rowIndex)
                    let out = margins + rowIndex * groupCount
                    var tree = 0
                    while tree + 8 <= treeCount {
                        var c0 = roots[tree], c1 = roots[tree + 1], c2 = roots[tree + 2], c3 = roots[tree + 3]
                        var c4 = roots[tree + 4], c5 = roots[tree + 5], c6 = roots[tree + 6], c7 = roots[tree + 7]
                        // Leaves loop on themselves, so the deepest of the eight sets the count.
                        var depth = depths[tree]
                        for other in (tree + 1)..<(tree + 8) { depth = max(depth, depths[other]) }
                        for _ in 0..<depth {
                            c0 = step(c0, row)
                            c1 = step(c1, row)
                            c2 = step(c2, row)
                            c3 = step(c3, row)
                            c4 = step(c4, row)
                            c5 = step(c5, row)
                            c6 = step(c6, row)
                            c7 = step(c7, row)
                        }
                        out[Int(forest.groups[tree])] += leafValue(c0, row) * forest.weights[tree]
                        out[Int(forest.groups[tree + 1])] += leafValue(c1, row) * forest.weights[tree + 1]
                        out[Int(forest.groups[tree + 2])] += leafValue(c2, row) * forest.weights[tree + 2]
                        out[Int(forest.groups[tree + 3])] += leafValue(c3, row) * forest.weights[tree + 3]
                        out[Int(forest.groups[tree + 4])] += leafValue(c4, row) * forest.weights[tree + 4]
                        out[Int(forest.groups[tree + 5])] += leafValue(c5, row) * forest.weights[tree + 5]
                        out[Int(forest.groups[tree + 6])] += leafValue(c6, row) * forest.weights[tree + 6]
                        out[Int(forest.groups[tree + 7])] += leafValue(c7, row) * forest.weights[tree + 7]
                        tree += 8
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
    /// Categorical splits and numeric splits with the library's exact rule, off the fast path.
    /// Special splits index the raw row directly.
    func specialGoesLeft(_ node: TreeNode<Scalar>, _ row: UnsafePointer<Double>) -> Bool {
        let value = row[node.feature]
        let flags = node.flags
        if !flags.contains(.categorical) {
            return Semantics.exactGoesLeft(value, threshold: node.threshold, flags: flags)
        }
        let x = Semantics.categoryValue(value)
        if x.isNaN { return flags.contains(.nanGoesLeft) }
        let outside = flags.contains(.notInSetGoesLeft)
        // Both libraries truncate the value to an integer code; negative or huge codes are in no set.
        guard x >= 0, x < 16_777_216 else { return outside }
        let code = Int(x)
        let set = categorySets[Int(node.threshold)]
        let word = code >> 5
        guard word < Int(set.count) else { return outside }
        let inSet = (categoryWords[Int(set.start) + word] >> UInt32(code & 31)) & 1 == 1
        return inSet ? !outside : outside
    }

    /// A LightGBM linear leaf: its constant plus its terms, or the plain leaf value when one of
    /// its features is missing.
    func linearValue(_ leaves: LinearLeaves, index: Int, fallback: Scalar, row: UnsafePointer<Double>) -> Scalar {
        let slot = Int(leaves.slotOfNode[index])
        var sum = leaves.constants[slot]
        for term in Int(leaves.offsets[slot])..<Int(leaves.offsets[slot + 1]) {
            let raw = row[Int(leaves.features[term])]
            if raw.isNaN { return fallback }
            sum += LightGBMSplits.zeroed(raw) * leaves.coefficients[term]
        }
        return Scalar(sum)
    }
}
