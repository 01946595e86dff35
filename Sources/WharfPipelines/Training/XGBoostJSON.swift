import WharfCore

/// Trees written as an XGBoost 3 JSON model (the layout `Booster.save_model` writes), so that
/// xgboost and the runtime load what `wharf train` makes.
enum XGBoostJSON {
    static func write(task: ModelTask, classes: Int, featureNames: [String], baseScore: [Float], trees: [Tree], outputs: Int) -> [UInt8] {
        var w = JSONWriter(capacity: 4096 + trees.reduce(0) { $0 + $1.left.count * 96 })
        func floats(_ values: some Sequence<Float>) {
            w.raw("[")
            for (index, value) in values.enumerated() {
                if index > 0 { w.raw(",") }
                w.raw(value.description)
            }
            w.raw("]")
        }
        func ints(_ values: some Sequence<Int>) {
            w.raw("[")
            for (index, value) in values.enumerated() {
                if index > 0 { w.raw(",") }
                w.raw(String(value))
            }
            w.raw("]")
        }
        let objective = switch task {
        case .regression: "reg:squarederror"
        case .binary: "binary:logistic"
        case .multiclass: "multi:softprob"
        }
        w.raw(#"{"learner":{"attributes":{},"feature_names":["#)
        for (index, name) in featureNames.enumerated() {
            if index > 0 { w.raw(",") }
            w.string(name)
        }
        w.raw(#"],"feature_types":["#)
        w.raw(Array(repeating: #""float""#, count: featureNames.count).joined(separator: ","))
        w.raw(#"],"gradient_booster":{"model":{"cats":{"enc":[],"feature_segments":[],"sorted_idx":[]},"gbtree_model_param":{"num_parallel_tree":"1","num_trees":""#)
        w.raw("\(trees.count)\"},\"iteration_indptr\":")
        ints(Swift.stride(from: 0, through: trees.count, by: outputs))
        w.raw(#","tree_info":"#)
        ints(trees.indices.map { $0 % outputs })
        w.raw(#","trees":["#)
        for (id, tree) in trees.enumerated() {
            if id > 0 { w.raw(",") }
            let nodes = tree.left.count
            w.raw(#"{"base_weights":"#)
            floats(tree.weights.map { Float($0) })
            w.raw(#","categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[],"default_left":"#)
            ints(tree.defaultLeft.map { $0 ? 1 : 0 })
            w.raw(",\"id\":\(id),\"left_children\":")
            ints(tree.left.map(Int.init))
            w.raw(#","loss_changes":"#)
            floats(tree.gains.map { Float($0) })
            w.raw(#","parents":"#)
            ints(tree.parents.map { $0 == Int32.max ? 2_147_483_647 : Int($0) })
            w.raw(#","right_children":"#)
            ints(tree.right.map(Int.init))
            // A leaf's split condition holds its value, as xgboost writes it.
            w.raw(#","split_conditions":"#)
            floats((0..<nodes).map { tree.isLeaf($0) ? Float(tree.weights[$0]) : tree.thresholds[$0] })
            w.raw(#","split_indices":"#)
            ints(tree.features.map(Int.init))
            w.raw(#","split_type":"#)
            ints(repeatElement(0, count: nodes))
            w.raw(#","sum_hessian":"#)
            floats(tree.hessians.map { Float($0) })
            w.raw(#","tree_param":{"num_deleted":"0","num_feature":""#)
            w.raw("\(featureNames.count)\",\"num_nodes\":\"\(nodes)\",\"size_leaf_vector\":\"1\"}}")
        }
        w.raw(#"]},"name":"gbtree"},"learner_model_param":{"base_score":"["#)
        w.raw(baseScore.map(\.description).joined(separator: ","))
        w.raw(#"]","boost_from_average":"1","num_class":""#)
        w.raw("\(task == .multiclass ? classes : 0)\",\"num_feature\":\"\(featureNames.count)\",\"num_target\":\"1\"},\"objective\":{\"name\":\"\(objective)\",")
        switch task {
        case .binary: w.raw(#""reg_loss_param":{"scale_pos_weight":"1"}}"#)
        case .multiclass: w.raw(#""softmax_multiclass_param":{"num_class":""# + "\(classes)\"}}")
        case .regression: w.raw(#""reg_loss_param":{"scale_pos_weight":"1"}}"#)
        }
        w.raw("},\"version\":[3,2,0]}\n")
        return w.bytes
    }
}
