import Testing
import WharfCore
import WharfRuntime

/// The compiled fast rule (one comparison on a prepared copy of the input) must route every
/// value exactly as each library's own rule does: a plain reference implementation of each rule
/// (FORMATS.md §1.4, §2.3) is checked over a grid of awkward thresholds and inputs.
@Suite("Split rules match the libraries' own")
struct SplitRuleTests {
    static let kZero = Double(Float(1e-35))

    static let thresholds: [Double] = [
        -.infinity, -1e300, -2.5, -kZero, -1e-36, -0.0, 0, 1e-36, kZero, 1.0000000180025097e-35, 0.5, 3, .infinity,
    ]

    static let inputs: [Double] = [
        .nan, -.infinity, -1e300, -2.5, -2.4999999, -kZero, -5e-36, -1e-40, -0.0, 0, 1e-40, 5e-36, kZero, 2e-35,
        0.4999999, 0.5, 0.5000001, 2.9999999, 3, 3.0000001, 1e300, .infinity,
    ]

    /// A one-split LightGBM model: leaf 0 (value 1) on the left, leaf 1 (value 2) on the right.
    static func lightGBMModel(threshold: Double, decisionType: Int) -> String {
        """
        tree
        version=v4
        num_class=1
        num_tree_per_iteration=1
        label_index=0
        max_feature_idx=0
        objective=regression
        feature_names=x
        feature_infos=[-1:1]
        tree_sizes=1

        Tree=0
        num_leaves=2
        num_cat=0
        split_feature=0
        split_gain=1
        threshold=\(threshold)
        decision_type=\(decisionType)
        left_child=-1
        right_child=-2
        leaf_value=1 2
        leaf_weight=1 1
        leaf_count=1 1
        internal_value=0
        internal_weight=0
        internal_count=2
        is_linear=0
        shrinkage=1


        end of trees
        """
    }

    /// LightGBM's `NumericalDecision`, after its predictor zeroes inputs within ±kZeroThreshold.
    static func lightGBMGoesLeft(_ raw: Double, threshold: Double, decisionType: Int) -> Bool {
        var x = abs(raw) <= kZero ? 0 : raw
        let missingType = (decisionType >> 2) & 3
        let defaultLeft = decisionType & 2 != 0
        if x.isNaN, missingType != 2 { x = 0 }
        if (missingType == 1 && abs(x) <= kZero) || (missingType == 2 && x.isNaN) { return defaultLeft }
        return x <= threshold
    }

    @Test("LightGBM numeric splits", arguments: [0, 2, 4, 6, 8, 10])
    func lightGBM(decisionType: Int) throws {
        for threshold in Self.thresholds {
            let text = Self.lightGBMModel(threshold: threshold, decisionType: decisionType)
            let model = try ModelLoader.load(bytes: Array(text.utf8))
            // Batches of one and of many take different loops: check both.
            let batch = try model.predict(Self.inputs + Self.inputs, rows: 2 * Self.inputs.count)
            for (index, x) in Self.inputs.enumerated() {
                let single = try model.predict([x], rows: 1)[0]
                let want: Double = Self.lightGBMGoesLeft(x, threshold: threshold, decisionType: decisionType) ? 1 : 2
                #expect(single == want, "x=\(x) threshold=\(threshold) decision_type=\(decisionType)")
                #expect(batch[index] == want && batch[index + Self.inputs.count] == want, "batch x=\(x) threshold=\(threshold)")
            }
        }
    }

    /// A one-split XGBoost regression model: left leaf 1, right leaf 2.
    static func xgboostModel(threshold: Float, defaultLeft: Bool) -> String {
        let condition = threshold.isNaN ? "NaN" : threshold == .infinity ? "Infinity" : threshold == -.infinity ? "-Infinity" : "\(threshold)"
        return """
        {"learner": {"attributes": {}, "feature_names": [], "feature_types": [],
          "gradient_booster": {"model": {"gbtree_model_param": {"num_parallel_tree": "1", "num_trees": "1"},
            "iteration_indptr": [0, 1], "tree_info": [0],
            "trees": [{"base_weights": [0, 0, 0], "categories": [], "categories_nodes": [], "categories_segments": [],
              "categories_sizes": [], "default_left": [\(defaultLeft ? 1 : 0), 0, 0], "id": 0, "left_children": [1, -1, -1],
              "loss_changes": [0, 0, 0], "parents": [2147483647, 0, 0], "right_children": [2, -1, -1],
              "split_conditions": [\(condition), 1, 2], "split_indices": [0, 0, 0], "split_type": [0, 0, 0],
              "sum_hessian": [1, 1, 1],
              "tree_param": {"num_deleted": "0", "num_feature": "1", "num_nodes": "3", "size_leaf_vector": "1"}}]},
            "name": "gbtree"},
          "learner_model_param": {"base_score": "[0E0]", "boost_from_average": "1", "num_class": "0", "num_feature": "1", "num_target": "1"},
          "objective": {"name": "reg:squarederror", "reg_loss_param": {"scale_pos_weight": "1"}}},
         "version": [3, 2, 0]}
        """
    }

    @Test("XGBoost numeric splits", arguments: [false, true])
    func xgboost(defaultLeft: Bool) throws {
        let thresholds = Self.thresholds.map { Float($0) } + [Float.leastNonzeroMagnitude, -Float.greatestFiniteMagnitude, Float.greatestFiniteMagnitude]
        let inputs = Self.inputs + thresholds.map { Double($0) } + [Double(Float(0.5).nextUp), Double(Float(0.5).nextDown), 0.50000000001]
        for threshold in thresholds {
            let model = try ModelLoader.load(bytes: Array(Self.xgboostModel(threshold: threshold, defaultLeft: defaultLeft).utf8))
            let batch = try model.predict(inputs, rows: inputs.count)
            for (index, x) in inputs.enumerated() {
                // XGBoost: float32 input; NaN takes the default direction; else left iff x < t.
                let left = x.isNaN ? defaultLeft : Float(x) < threshold
                let want: Double = left ? 1 : 2
                #expect(try model.predict([x], rows: 1)[0] == want, "x=\(x) threshold=\(threshold) default_left=\(defaultLeft)")
                #expect(batch[index] == want, "batch x=\(x) threshold=\(threshold)")
            }
        }
    }
}
