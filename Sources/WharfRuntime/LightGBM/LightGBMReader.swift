import WharfCore

/// Reads a LightGBM text model (`save_model` / `model_to_string`): the header, every
/// `Tree=` block up to `end of trees`, and nothing after it.
///
/// Declared sizes (`num_leaves`, `num_cat`, …) are only checked against the arrays actually
/// present, never used to allocate, so a hostile header cannot reserve memory.
struct LightGBMReader {
    /// One `key=value` block (the header or one tree) with the line each key was on.
    private struct Block {
        var name: String
        var values: [String: (line: Int, text: Substring)] = [:]
        var bareLines: Set<String> = []

        func error(_ key: String, _ message: String) -> WharfError {
            let line = values[key].map { "line \($0.line), " } ?? ""
            return WharfError(.invalidModel, "LightGBM \(line)\(name) \(key): \(message)")
        }

        func text(_ key: String) throws(WharfError) -> Substring {
            guard let entry = values[key] else {
                throw WharfError(.invalidModel, "LightGBM \(name): missing required key \"\(key)\"")
            }
            return entry.text
        }

        func int(_ key: String, in range: ClosedRange<Int>) throws(WharfError) -> Int {
            let text = try text(key)
            guard let value = Int(text), range.contains(value) else {
                throw error(key, "\"\(text.prefix(40))\" is not an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return value
        }

        func doubles(_ key: String, count: Int) throws(WharfError) -> [Double] {
            // `count` comes from the file: check it, never reserve by it.
            var result: [Double] = []
            for (index, token) in try text(key).split(separator: " ").enumerated() {
                guard let value = Double(token) else { throw error(key, "element \(index) \"\(token.prefix(40))\" is not a number") }
                result.append(value)
            }
            guard result.count == count else { throw error(key, "has \(result.count) values, expected \(count)") }
            return result
        }

        func ints(_ key: String, count: Int?, in range: ClosedRange<Int>) throws(WharfError) -> [Int] {
            var result: [Int] = []
            for (index, token) in try text(key).split(separator: " ").enumerated() {
                guard let value = Int(token), range.contains(value) else {
                    throw error(key, "element \(index) \"\(token.prefix(40))\" is not an integer in \(range.lowerBound)...\(range.upperBound)")
                }
                result.append(value)
            }
            if let count, result.count != count { throw error(key, "has \(result.count) values, expected \(count)") }
            return result
        }
    }

    static func read(_ data: [UInt8]) throws(WharfError) -> (ModelMetadata, LightGBMEvaluator) {
        let text = String(decoding: data, as: UTF8.self)
        var header = Block(name: "header")
        var trees: [Block] = []
        var current: Block? = nil
        var sawEnd = false
        // "\r\n" is one Character in Swift: a split on "\n" alone left a CRLF file one line.
        for (offset, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let line = rawLine.last == "\r" ? rawLine.dropLast() : rawLine
            let number = offset + 1
            if line == "end of trees" {
                sawEnd = true
                break
            }
            if line.isEmpty { continue }
            if line.hasPrefix("Tree=") {
                if let current { trees.append(current) }
                current = Block(name: String(line))
                continue
            }
            guard let equals = line.firstIndex(of: "=") else {
                if current == nil { header.bareLines.insert(String(line)) }
                continue
            }
            let key = String(line[..<equals])
            let value = line[line.index(after: equals)...]
            if current != nil {
                current!.values[key] = (number, value)
            } else {
                header.values[key] = (number, value)
            }
        }
        if let current { trees.append(current) }
        guard sawEnd else {
            throw WharfError(.invalidModel, "LightGBM: no \"end of trees\" line (the file is truncated or not a LightGBM model)")
        }

        let featureCount = try header.int("max_feature_idx", in: 0...(TreeNode<Double>.maxFeatureCount - 1)) + 1
        let classCount = try header.int("num_class", in: 1...1_000_000)
        let treesPerIteration = try header.values["num_tree_per_iteration"] == nil
            ? classCount : header.int("num_tree_per_iteration", in: 1...1_000_000)
        guard treesPerIteration == classCount else {
            throw header.error("num_tree_per_iteration", "is \(treesPerIteration) but num_class is \(classCount)")
        }
        let objectiveLine = String(try header.text("objective"))
        let objective = try LightGBMObjective(line: objectiveLine, classCount: classCount)
        let objectiveName = String(objectiveLine.split(separator: " ").first ?? "")
        guard !trees.isEmpty else { throw WharfError(.invalidModel, "LightGBM: the model has no trees") }

        var definitions: [TreeDefinition<Double>] = []
        var categorySets: [CategorySet] = []
        var categoryWords: [UInt32] = []
        var linearLeaves: [LinearLeafDefinition] = []
        let anyLinear = trees.contains { $0.values["is_linear"]?.text == "1" }
        for tree in trees {
            definitions.append(
                try readTree(tree, featureCount: featureCount, categorySets: &categorySets, categoryWords: &categoryWords,
                             linearLeaves: &linearLeaves, anyLinear: anyLinear)
            )
        }
        let averageOutput = header.bareLines.contains("average_output")
        // LightGBM predicts with whole iterations (a tree a class each): a partial one at the
        // end would be added to the first classes here, and differ from LightGBM.
        guard definitions.count % classCount == 0 else {
            throw WharfError(.invalidModel, "LightGBM: \(definitions.count) trees for \(classCount) classes: not a whole number of iterations")
        }
        let iterations = definitions.count / classCount
        let forest = try Forest<LightGBMSplits>.build(
            trees: definitions,
            groups: definitions.indices.map { $0 % classCount },
            weights: Array(repeating: 1, count: definitions.count),
            groupCount: classCount,
            featureCount: featureCount,
            categorySets: categorySets,
            categoryWords: categoryWords,
            linearLeaves: anyLinear ? linearLeaves : nil
        )

        var featureNames: [String]?
        if header.values["feature_names"] != nil {
            let names = try header.text("feature_names").split(separator: " ").map(String.init)
            guard names.count == featureCount else {
                throw header.error("feature_names", "has \(names.count) names for \(featureCount) features")
            }
            featureNames = names
        }
        let task = objective.task(objectiveName: objectiveName)
        var notes: [String] = []
        if averageOutput { notes.append("random forest: class sums are averaged over \(iterations) iterations") }
        if anyLinear { notes.append("linear trees") }
        let metadata = ModelMetadata(
            format: .lightgbmText,
            task: task,
            objective: objectiveLine,
            featureCount: featureCount,
            featureNames: featureNames,
            categoricalFeatures: forest.categoricalFeatures,
            classes: task == .regression ? [] : (0..<max(classCount, 2)).map(String.init),
            output: .standard(kind: objective.outputKind(task: task), classCount: classCount),
            treeCount: forest.treeCount,
            maxDepth: forest.maxDepth,
            producer: header.values["version"].map { "lightgbm \($0.text)" },
            notes: notes
        )
        let evaluator = LightGBMEvaluator(
            forest: forest,
            objective: objective,
            averageOver: averageOutput ? Double(max(iterations, 1)) : nil
        )
        return (metadata, evaluator)
    }

    private static func readTree(
        _ tree: Block,
        featureCount: Int,
        categorySets: inout [CategorySet],
        categoryWords: inout [UInt32],
        linearLeaves: inout [LinearLeafDefinition],
        anyLinear: Bool
    ) throws(WharfError) -> TreeDefinition<Double> {
        let leafCount = try tree.int("num_leaves", in: 1...Int(Int32.max / 2))
        let internalCount = leafCount - 1
        let leafValues = try tree.doubles("leaf_value", count: leafCount)
        var definition = TreeDefinition<Double>()
        let isLinear = try tree.values["is_linear"] == nil ? false : tree.int("is_linear", in: 0...1) == 1

        if internalCount > 0 {
            let features = try tree.ints("split_feature", count: internalCount, in: 0...(featureCount - 1))
            let thresholds = try tree.doubles("threshold", count: internalCount)
            let decisionTypes = try tree.ints("decision_type", count: internalCount, in: 0...255)
            let childRange = -leafCount...(internalCount - 1)
            let left = try tree.ints("left_child", count: internalCount, in: childRange)
            let right = try tree.ints("right_child", count: internalCount, in: childRange)
            let categoryCount = try tree.values["num_cat"] == nil ? 0 : tree.int("num_cat", in: 0...internalCount)
            var setBase = categorySets.count
            if categoryCount > 0 {
                let boundaries = try tree.ints("cat_boundaries", count: categoryCount + 1, in: 0...Int(Int32.max))
                var words: [UInt32] = []
                for (index, token) in try tree.text("cat_threshold").split(separator: " ").enumerated() {
                    guard let word = UInt32(token) else {
                        throw tree.error("cat_threshold", "element \(index) \"\(token.prefix(40))\" is not a 32-bit unsigned integer")
                    }
                    words.append(word)
                }
                guard boundaries.first == 0, boundaries.last == words.count,
                    zip(boundaries, boundaries.dropFirst()).allSatisfy({ $0 <= $1 })
                else { throw tree.error("cat_boundaries", "must rise from 0 to the \(words.count) words of cat_threshold") }
                setBase = categorySets.count
                let wordBase = categoryWords.count
                for index in 0..<categoryCount {
                    categorySets.append(
                        CategorySet(start: Int32(wordBase + boundaries[index]), count: Int32(boundaries[index + 1] - boundaries[index]))
                    )
                }
                categoryWords.append(contentsOf: words)
                guard categoryWords.count < Int(Int32.max) else { throw tree.error("cat_threshold", "too many category words") }
            }
            // Internal nodes keep their indices; leaf j becomes node internalCount + j.
            func node(_ child: Int) -> Int { child >= 0 ? child : internalCount + ~child }
            for index in 0..<internalCount {
                let decision = decisionTypes[index]
                var flags: SplitFlags = []
                var value = thresholds[index]
                if decision & 1 == 1 {
                    // NaN and codes outside the bitset go right: no default-left, not "outside goes left".
                    flags = [.categorical, .missingNaN]
                    guard let category = Int(exactly: value), category >= 0, category < categoryCount else {
                        throw tree.error("threshold", "categorical node \(index) names category set \(value), but the tree has \(categoryCount)")
                    }
                    value = Double(setBase + category)
                } else {
                    if decision & 2 != 0 { flags.insert(.defaultLeft) }
                    switch (decision >> 2) & 3 {
                    case 1: flags.insert(.missingZero)
                    case 2: flags.insert(.missingNaN)
                    default: break
                    }
                }
                definition.appendSplit(feature: features[index], value: value, flags: flags, left: node(left[index]), right: node(right[index]))
            }
        }
        for value in leafValues { definition.appendLeaf(value: value) }

        if anyLinear {
            definition.linearLeaf = Array(repeating: -1, count: internalCount) + (0..<leafCount).map { linearLeaves.count + $0 }
            if isLinear {
                let constants = try tree.doubles("leaf_const", count: leafCount)
                let featureCounts = try tree.ints("num_features", count: leafCount, in: 0...featureCount)
                let total = featureCounts.reduce(0, +)
                let features = try tree.ints("leaf_features", count: total, in: 0...(featureCount - 1))
                let coefficients = try tree.doubles("leaf_coeff", count: total)
                var start = 0
                for leaf in 0..<leafCount {
                    let end = start + featureCounts[leaf]
                    linearLeaves.append(
                        LinearLeafDefinition(constant: constants[leaf], features: Array(features[start..<end]), coefficients: Array(coefficients[start..<end]))
                    )
                    start = end
                }
            } else {
                // A plain tree in a linear model: its leaves are constants.
                for value in leafValues { linearLeaves.append(LinearLeafDefinition(constant: value, features: [], coefficients: [])) }
            }
        }
        return definition
    }
}
