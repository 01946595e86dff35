import WharfCore

/// Reads an XGBoost model (JSON or UBJSON, already parsed to a ``JSONValue``).
///
/// Every tree in the file is evaluated, as `Booster.predict` does on a loaded file; an
/// early-stopped model's `best_iteration` is reported in the metadata notes but not applied
/// (FORMATS.md §1.4, item 8).
struct XGBoostReader {
    /// Category codes at or above this are refused: the bitset would be absurdly large.
    static let categoryCodeLimit = 1 << 24
    /// Bitset words over all categorical splits (64 MiB): a few bytes of file can name a large
    /// code, so the total is bounded, not only each code.
    static let categoryWordLimit = 1 << 24

    static func read(_ document: JSONValue, format: ModelFormat) throws(WharfError) -> (ModelMetadata, XGBoostEvaluator) {
        let root = JSONNode(document)
        let learner = try root.member("learner")
        let parameters = try learner.member("learner_model_param")
        let featureCount = try parameters.member("num_feature").int(in: 1...TreeNode<Float>.maxFeatureCount)
        let classCount = try parameters.optionalMember("num_class")?.int(in: 0...1_000_000) ?? 0
        if let targets = try parameters.optionalMember("num_target"), try targets.int(in: 0...Int.max) > 1 {
            throw targets.error("multi-target models (num_target > 1) are not supported")
        }

        let objectiveName = try learner.member("objective").member("name").string()
        let objective = try XGBoostObjective(name: objectiveName)
        let groupCount: Int
        switch objective {
        case .softprob, .softmax:
            guard classCount >= 2 else { throw parameters.error("num_class must be at least 2 for \(objectiveName)") }
            groupCount = classCount
        default:
            groupCount = 1
        }

        let booster = try learner.member("gradient_booster")
        let boosterName = try booster.member("name").string()
        let model: JSONNode
        var dartWeights: [Double]?
        switch boosterName {
        case "gbtree":
            model = try booster.member("model")
        case "dart":
            model = try booster.member("gbtree").member("model")
            dartWeights = try booster.member("weight_drop").doubles()
        default:
            throw try booster.member("name").error("booster \"\(boosterName)\" is not supported (gbtree and dart are)")
        }

        let treeNodes = try model.member("trees").array()
        let treeInfo = try model.member("tree_info").ints(count: treeNodes.count, in: 0...Int(Int32.max))
        if let dartWeights, dartWeights.count != treeNodes.count {
            throw try booster.member("weight_drop").error("has \(dartWeights.count) weights for \(treeNodes.count) trees")
        }

        var categorySets: [CategorySet] = []
        var categoryWords: [UInt32] = []
        var trees: [TreeDefinition<Float>] = []
        trees.reserveCapacity(treeNodes.count)
        for tree in treeNodes {
            trees.append(try readTree(tree, categorySets: &categorySets, categoryWords: &categoryWords))
        }

        let baseScores = try parseBaseScore(parameters.member("base_score"), groupCount: groupCount)
        // In the objective's output space, as XGBoost checks when it loads (ProbToMargin): a
        // logistic base score outside (0, 1) would make every margin NaN or infinite.
        switch objective {
        case .logistic where !baseScores.allSatisfy({ $0 > 0 && $0 < 1 }):
            throw try parameters.member("base_score").error("must lie strictly between 0 and 1 for \(objectiveName)")
        case .exponential where !baseScores.allSatisfy({ $0 > 0 }):
            throw try parameters.member("base_score").error("must be above 0 for \(objectiveName)")
        default:
            break
        }
        let forest = try Forest<XGBoostSplits>.build(
            trees: trees,
            groups: treeInfo,
            weights: (dartWeights ?? Array(repeating: 1, count: trees.count)).map { Float($0) },
            groupCount: groupCount,
            featureCount: featureCount,
            categorySets: categorySets,
            categoryWords: categoryWords
        )

        let featureNames = try learner.optionalMember("feature_names")?.strings() ?? []
        if !featureNames.isEmpty, featureNames.count != featureCount {
            throw try learner.member("feature_names").error("has \(featureNames.count) names for \(featureCount) features")
        }
        var notes: [String] = []
        if let attributes = try learner.optionalMember("attributes"),
            let best = try attributes.optionalMember("best_iteration")
        {
            let iteration = try best.numberOrNumericString()
            // Only a note, but Int(nan) or Int(1e300) would trap: a hostile value is an error.
            guard let round = Int(exactly: iteration), (0...Int(Int32.max)).contains(round) else {
                throw best.error("best_iteration must be a whole number ≥ 0")
            }
            notes.append("early-stopped at best_iteration \(round); Wharf evaluates all \(trees.count) trees in the file, as Booster.predict does")
        }
        if boosterName == "dart" { notes.append("dart: each tree is scaled by its weight_drop") }
        let version = try root.optionalMember("version")?.ints(in: 0...100_000).map(String.init).joined(separator: ".")

        let metadata = ModelMetadata(
            format: format,
            task: objective.task,
            objective: objectiveName,
            featureCount: featureCount,
            featureNames: featureNames.isEmpty ? nil : featureNames,
            categoricalFeatures: forest.categoricalFeatures,
            classes: objective.task == .regression ? [] : (0..<max(groupCount, 2)).map(String.init),
            output: .standard(kind: objective.outputKind, classCount: groupCount),
            treeCount: forest.treeCount,
            maxDepth: forest.maxDepth,
            producer: version.map { "xgboost \($0)" },
            notes: notes
        )
        let evaluator = XGBoostEvaluator(
            forest: forest,
            baseMargins: baseScores.map { objective.margin(fromBaseScore: $0) },
            objective: objective
        )
        return (metadata, evaluator)
    }

    /// `"5E-1"` (xgboost 2.x) or `"[2.5733334E-1]"` / `"[a,b,c]"` (3.x): one value for every
    /// group, or one per group.
    private static func parseBaseScore(_ node: JSONNode, groupCount: Int) throws(WharfError) -> [Float] {
        var values: [Float] = []
        if case .number(let number) = node.value {
            values = [Float(number)]
        } else {
            var text = Substring(try node.string())
            if text.first == "[", text.last == "]" { text = text.dropFirst().dropLast() }
            for part in text.split(separator: ",", omittingEmptySubsequences: false) {
                guard let value = Float(part.trimmingPrefix(" ")) else {
                    throw node.error("\"\(text)\" is not a number or a list of numbers")
                }
                values.append(value)
            }
        }
        guard values.allSatisfy(\.isFinite) else { throw node.error("base_score must be finite") }
        if values.count == 1 { return Array(repeating: values[0], count: groupCount) }
        guard values.count == groupCount else {
            throw node.error("has \(values.count) values for \(groupCount) output groups")
        }
        return values
    }

    private static func readTree(
        _ tree: JSONNode,
        categorySets: inout [CategorySet],
        categoryWords: inout [UInt32]
    ) throws(WharfError) -> TreeDefinition<Float> {
        let parameters = try tree.member("tree_param")
        let nodeCount = try parameters.member("num_nodes").int(in: 1...Int(Int32.max))
        if let leafVector = try parameters.optionalMember("size_leaf_vector"), try leafVector.int(in: 0...Int.max) > 1 {
            throw leafVector.error("vector leaves (multi-target trees) are not supported")
        }
        let indexRange = -1...Int(Int32.max)
        let left = try tree.member("left_children").ints(count: nodeCount, in: indexRange)
        let right = try tree.member("right_children").ints(count: nodeCount, in: indexRange)
        let features = try tree.member("split_indices").ints(count: nodeCount, in: 0...Int(Int32.max))
        let conditions = try tree.member("split_conditions").doubles(count: nodeCount)
        let defaultLeft = try tree.member("default_left").ints(count: nodeCount, in: 0...1)
        let splitTypes = try tree.optionalMember("split_type")?.ints(count: nodeCount, in: 0...1)
            ?? Array(repeating: 0, count: nodeCount)

        // Category sets of this tree, by node.
        var setOfNode: [Int: Int] = [:]
        if splitTypes.contains(1) {
            let nodes = try tree.member("categories_nodes").ints(in: 0...(nodeCount - 1))
            let segments = try tree.member("categories_segments").ints(count: nodes.count, in: 0...Int(Int32.max))
            let sizes = try tree.member("categories_sizes").ints(count: nodes.count, in: 0...Int(Int32.max))
            let categories = try tree.member("categories").ints(in: 0...(categoryCodeLimit - 1))
            for (index, node) in nodes.enumerated() {
                let start = segments[index]
                let end = start + sizes[index]
                guard end <= categories.count else {
                    throw try tree.member("categories_segments").error("segment \(index) reaches past the end of categories")
                }
                let codes = categories[start..<end]
                let wordCount = ((codes.max() ?? 0) >> 5) + 1
                var words = [UInt32](repeating: 0, count: wordCount)
                for code in codes { words[code >> 5] |= 1 << UInt32(code & 31) }
                setOfNode[node] = categorySets.count
                categorySets.append(CategorySet(start: Int32(categoryWords.count), count: Int32(wordCount)))
                categoryWords.append(contentsOf: words)
                guard categoryWords.count <= categoryWordLimit else {
                    throw tree.error("category sets need more than \(categoryWordLimit) bitset words; codes this large are implausible")
                }
            }
        }

        var definition = TreeDefinition<Float>()
        for node in 0..<nodeCount {
            if left[node] == -1 {
                guard right[node] == -1 else { throw tree.error("node \(node) has a right child but no left child") }
                definition.appendLeaf(value: Float(conditions[node]))
                continue
            }
            var flags: SplitFlags = .missingNaN
            if defaultLeft[node] == 1 { flags.insert(.defaultLeft) }
            var value = Float(conditions[node])
            if splitTypes[node] == 1 {
                guard let set = setOfNode[node] else { throw tree.error("categorical node \(node) has no category set") }
                // XGBoost sends a category in the set right, everything else left.
                flags.formUnion([.categorical, .notInSetGoesLeft])
                value = Float(set)
            }
            definition.appendSplit(feature: features[node], value: value, flags: flags, left: left[node], right: right[node])
        }
        return definition
    }
}
