import WharfCore

/// The output tensors Wharf answers with, named after what they hold.
///
/// | model | outputs |
/// | --- | --- |
/// | binary classifier | `probability` FP64 [N] (positive class), `label` INT64 [N] (probability > 0.5) |
/// | multiclass | `probabilities` FP64 [N, K], `label` INT64 [N] (most probable class) |
/// | XGBoost `multi:softmax` | `label` INT64 [N] |
/// | XGBoost `binary:logitraw` | `margin` FP64 [N], `label` INT64 [N] (margin > 0) |
/// | regression | `prediction` FP64 [N] |
package enum OutputBuilder {
    struct Spec: Sendable {
        var name: String
        var datatype: TensorDatatype
        var shape: [Int]
    }

    /// The outputs a model offers, with `-1` for the batch dimension.
    static func specs(for metadata: ModelMetadata) -> [Spec] {
        let classes = metadata.output.width
        return switch metadata.output.kind {
        case .probability:
            [Spec(name: "probability", datatype: .fp64, shape: [-1]), Spec(name: "label", datatype: .int64, shape: [-1])]
        case .probabilities:
            [Spec(name: "probabilities", datatype: .fp64, shape: [-1, classes]), Spec(name: "label", datatype: .int64, shape: [-1])]
        case .classIndex:
            [Spec(name: "label", datatype: .int64, shape: [-1])]
        case .margin:
            [Spec(name: "margin", datatype: .fp64, shape: [-1]), Spec(name: "label", datatype: .int64, shape: [-1])]
        case .value:
            [Spec(name: "prediction", datatype: .fp64, shape: [-1])]
        }
    }

    package static func outputs(
        for request: InferenceRequest,
        metadata: ModelMetadata,
        values: [Double],
        rows: Int
    ) throws(WharfError) -> [ResponseOutput] {
        let specs = specs(for: metadata)
        let binaryByDefault = request.parameters["binary_data_output"]?.boolValue ?? false
        let wanted: [(Spec, Bool)]
        if let requested = request.outputs {
            var chosen: [(Spec, Bool)] = []
            for output in requested {
                guard let spec = specs.first(where: { $0.name == output.name }) else {
                    throw WharfError(.invalidInput, "unknown output '\(output.name)'; this model has \(specs.map(\.name).joined(separator: ", "))")
                }
                chosen.append((spec, output.parameters["binary_data"]?.boolValue ?? binaryByDefault))
            }
            wanted = chosen
        } else {
            wanted = specs.map { ($0, binaryByDefault) }
        }
        let width = metadata.output.width
        return wanted.map { spec, binary in
            let data: [Double]
            switch spec.name {
            case "label":
                data = labels(values, rows: rows, width: width, kind: metadata.output.kind)
            default:
                data = values
            }
            let shape = spec.shape.count == 2 ? [rows, width] : [rows]
            return ResponseOutput(name: spec.name, shape: shape, datatype: spec.datatype, data: data, binary: binary)
        }
    }

    private static func labels(_ values: [Double], rows: Int, width: Int, kind: OutputKind) -> [Double] {
        (0..<rows).map { (row: Int) -> Double in
            switch kind {
            case .probability: return values[row] > 0.5 ? 1 : 0
            case .margin: return values[row] > 0 ? 1 : 0
            case .classIndex, .value: return values[row]
            case .probabilities:
                var best = 0
                for column in 1..<max(1, width) where values[row * width + column] > values[row * width + best] { best = column }
                return Double(best)
            }
        }
    }
}
