import WharfCore

/// Reads Wharf linear JSON (docs/linear-format.md).
struct LinearModelReader {
    static let formatName = "wharf-linear"

    static func read(_ document: JSONValue) throws(WharfError) -> (ModelMetadata, LinearModel) {
        let root = JSONNode(document)
        let version = try root.member("version").int(in: 0...Int.max)
        guard version == 1 else { throw try root.member("version").error("version \(version) is not supported (1 is)") }
        let taskNode = try root.member("task")
        guard let task = ModelTask(rawValue: try taskNode.string()) else {
            throw taskNode.error("must be \"regression\", \"binary\" or \"multiclass\"")
        }
        let linkNode = try root.member("link")
        guard let link = LinearModel.Link(rawValue: try linkNode.string()) else {
            throw linkNode.error("must be \"identity\", \"logistic\" or \"softmax\"")
        }
        let expectedLink: LinearModel.Link = switch task {
        case .regression: .identity
        case .binary: .logistic
        case .multiclass: .softmax
        }
        guard link == expectedLink else { throw linkNode.error("a \(task.rawValue) model must use the \(expectedLink.rawValue) link") }

        let features = try root.member("features").strings()
        guard !features.isEmpty, features.count <= TreeNode<Double>.maxFeatureCount else {
            throw try root.member("features").error("must name between 1 and \(TreeNode<Double>.maxFeatureCount) features")
        }
        let classes = try root.optionalMember("classes")?.strings() ?? []
        let outputs: Int
        switch task {
        case .regression: outputs = 1
        case .binary:
            guard classes.count == 2 else { throw try root.member("classes").error("a binary model needs exactly 2 classes") }
            outputs = 1
        case .multiclass:
            guard classes.count >= 2 else { throw try root.member("classes").error("a multiclass model needs at least 2 classes") }
            outputs = classes.count
        }

        let rowsNode = try root.member("coefficients")
        let rows = try rowsNode.array()
        guard rows.count == outputs else { throw rowsNode.error("has \(rows.count) rows, expected \(outputs)") }
        var coefficients: [Double] = []
        coefficients.reserveCapacity(outputs * features.count)
        for row in rows { coefficients.append(contentsOf: try row.doubles(count: features.count)) }
        let intercepts = try root.member("intercepts").doubles(count: outputs)

        var mean: [Double]?
        var scale: [Double]?
        if let standardization = try root.optionalMember("standardization") {
            mean = try standardization.member("mean").doubles(count: features.count)
            let scaleNode = try standardization.member("scale")
            scale = try scaleNode.doubles(count: features.count)
            guard scale!.allSatisfy({ $0.isFinite && $0 != 0 }) else { throw scaleNode.error("every scale must be finite and non-zero") }
        }
        guard (coefficients + intercepts + (mean ?? [])).allSatisfy(\.isFinite) else {
            throw rowsNode.error("coefficients, intercepts and means must be finite")
        }

        let kind: OutputKind = switch task {
        case .regression: .value
        case .binary: .probability
        case .multiclass: .probabilities
        }
        var output = OutputLayout.standard(kind: kind, classCount: classes.count)
        if task == .multiclass { output.columns = classes.map { "probability_\($0)" } }
        let metadata = ModelMetadata(
            format: .wharfLinear,
            task: task,
            objective: "linear:\(link.rawValue)",
            featureCount: features.count,
            featureNames: features,
            classes: classes,
            output: output,
            treeCount: 0,
            maxDepth: 0,
            producer: try root.optionalMember("producer")?.string()
        )
        let model = LinearModel(
            link: link, featureCount: features.count, coefficients: coefficients, intercepts: intercepts, mean: mean, scale: scale
        )
        return (metadata, model)
    }
}
