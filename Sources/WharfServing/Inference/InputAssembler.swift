import WharfCore

/// Turns a request's input tensors into the row-major matrix a model reads.
///
/// Two layouts are accepted: one tensor of shape `[N, F]` (or `[F]` for one row), whatever its
/// name; or one tensor per feature, each `[N]` or `[N, 1]`, named after the model's features
/// (`f0`, `f1`, … for models without names, as XGBoost names them).
package enum InputAssembler {
    package static func matrix(for request: InferenceRequest, metadata: ModelMetadata) throws(WharfError) -> (values: [Double], rows: Int) {
        let features = metadata.featureCount
        // The names only when they decide: making "f0", "f1", … was a sixth of the time of a
        // one-row answer. A lone 1-D input named after a feature is one of a per-feature
        // request (the others missing), not a row: read as a row it would be answered wrongly.
        if request.inputs.count == 1,
           request.inputs[0].shape.count == 2 || !isFeatureName(request.inputs[0].name, metadata) {
            return try singleTensor(request.inputs[0], features: features)
        }
        return try perFeature(request.inputs, names: featureNames(metadata))
    }

    /// Whether `name` is one of the model's features, without making the list of names.
    private static func isFeatureName(_ name: String, _ metadata: ModelMetadata) -> Bool {
        if let names = metadata.featureNames { return names.contains(name) }
        guard name.hasPrefix("f"), let index = Int(name.dropFirst()), String(index) == name.dropFirst() else { return false }
        return (0..<metadata.featureCount).contains(index)
    }

    /// The model's feature names, or `f0`, `f1`, … (XGBoost's) for a model without any.
    private static func featureNames(_ metadata: ModelMetadata) -> [String] {
        metadata.featureNames ?? (0..<metadata.featureCount).map { "f\($0)" }
    }

    private static func singleTensor(_ input: RequestInput, features: Int) throws(WharfError) -> ([Double], Int) {
        let shape = input.shape
        switch shape.count {
        case 2 where shape[1] == features:
            return (input.data, shape[0])
        case 1 where shape[0] == features:
            return (input.data, 1)
        case 1 where features == 1:
            return (input.data, shape[0])
        default:
            throw WharfError(.invalidInput, "input '\(input.name)': shape \(shape) does not fit the model's \(features) features; send [N, \(features)], or one [N] tensor per feature")
        }
    }

    private static func perFeature(_ inputs: [RequestInput], names: [String]) throws(WharfError) -> ([Double], Int) {
        var byName: [String: RequestInput] = [:]
        for input in inputs {
            guard byName.updateValue(input, forKey: input.name) == nil else {
                throw WharfError(.invalidInput, "input '\(input.name)' is given twice")
            }
        }
        let known = Set(names)
        if let stranger = inputs.first(where: { !known.contains($0.name) }) {
            throw WharfError(.invalidInput, "input '\(stranger.name)' is not a feature of the model (\(names.prefix(5).joined(separator: ", "))\(names.count > 5 ? ", …" : ""))")
        }
        let missing = names.filter { byName[$0] == nil }
        guard missing.isEmpty else {
            throw WharfError(.invalidInput, "missing \(missing.count) feature input(s): \(missing.prefix(5).joined(separator: ", "))\(missing.count > 5 ? ", …" : "")")
        }
        var rows: Int?
        for input in inputs {
            guard input.shape.count == 1 || (input.shape.count == 2 && input.shape[1] == 1) else {
                throw WharfError(.invalidInput, "input '\(input.name)': shape \(input.shape) must be [N] or [N, 1] for a per-feature tensor")
            }
            if let rows, rows != input.shape[0] {
                throw WharfError(.invalidInput, "input '\(input.name)' has \(input.shape[0]) rows, other inputs have \(rows)")
            }
            rows = input.shape[0]
        }
        let count = rows ?? 0
        var values = [Double](repeating: 0, count: count * names.count)
        for (feature, name) in names.enumerated() {
            let data = byName[name]!.data
            for row in 0..<count { values[row * names.count + feature] = data[row] }
        }
        return (values, count)
    }
}
