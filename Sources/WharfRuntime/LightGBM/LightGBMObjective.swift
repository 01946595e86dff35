#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import WharfCore

/// The `objective=` line of a LightGBM model and the transform it implies (FORMATS.md §2.4).
/// Arithmetic is double, as in LightGBM.
enum LightGBMObjective: Sendable, Equatable {
    case sigmoid(scale: Double)
    case softmax
    case oneVersusAll(scale: Double)
    case identity
    case squareRoot
    case exponential
    case crossEntropyLambda

    init(line: String, classCount: Int) throws(WharfError) {
        let parts = line.split(separator: " ")
        guard let name = parts.first.map(String.init) else {
            throw WharfError(.invalidModel, "LightGBM header: the objective line is empty")
        }
        var options: [String: String] = [:]
        var flags: Set<String> = []
        for part in parts.dropFirst() {
            if let colon = part.firstIndex(of: ":") {
                options[String(part[..<colon])] = String(part[part.index(after: colon)...])
            } else {
                flags.insert(String(part))
            }
        }
        func scale() throws(WharfError) -> Double {
            guard let text = options["sigmoid"] else { return 1 }
            guard let value = Double(text), value.isFinite, value > 0 else {
                throw WharfError(.invalidModel, "LightGBM header: sigmoid:\(text) is not a positive number")
            }
            return value
        }
        switch name {
        case "binary": self = .sigmoid(scale: try scale())
        case "multiclass", "softmax": self = .softmax
        case "multiclassova", "multiclass_ova", "ova", "ovr": self = .oneVersusAll(scale: try scale())
        case "regression", "regression_l2", "l2", "mean_squared_error", "mse", "l2_root", "root_mean_squared_error", "rmse",
            "regression_l1", "l1", "mean_absolute_error", "mae", "huber", "fair", "quantile", "mape",
            "mean_absolute_percentage_error":
            self = flags.contains("sqrt") ? .squareRoot : .identity
        case "poisson", "gamma", "tweedie": self = .exponential
        case "cross_entropy", "xentropy": self = .sigmoid(scale: 1)
        case "cross_entropy_lambda", "xentlambda": self = .crossEntropyLambda
        default:
            throw WharfError(.unsupportedModel, "LightGBM objective \"\(name)\" is not supported (ranking and custom objectives are not evaluated)")
        }
        switch self {
        case .softmax, .oneVersusAll:
            guard classCount >= 2 else {
                throw WharfError(.invalidModel, "LightGBM header: objective \(name) needs num_class >= 2, found \(classCount)")
            }
        default:
            guard classCount == 1 else {
                throw WharfError(.invalidModel, "LightGBM header: objective \(name) needs num_class=1, found \(classCount)")
            }
        }
    }

    func task(objectiveName: String) -> ModelTask {
        switch self {
        case .softmax, .oneVersusAll: .multiclass
        case .sigmoid: objectiveName.hasPrefix("binary") ? .binary : .regression
        default: .regression
        }
    }

    func outputKind(task: ModelTask) -> OutputKind {
        switch task {
        case .binary: .probability
        case .multiclass: .probabilities
        case .regression: .value
        }
    }

    @inline(__always)
    func transform(_ scores: UnsafeMutablePointer<Double>, classCount: Int, into output: UnsafeMutablePointer<Double>) {
        switch self {
        case .sigmoid(let scale): output[0] = 1 / (1 + exp(-scale * scores[0]))
        case .identity: output[0] = scores[0]
        case .squareRoot:
            let score = scores[0]
            output[0] = (score < 0 ? -score : score) * score
        case .exponential: output[0] = exp(scores[0])
        case .crossEntropyLambda: output[0] = log1p(exp(scores[0]))
        case .oneVersusAll(let scale):
            for k in 0..<classCount { output[k] = 1 / (1 + exp(-scale * scores[k])) }
        case .softmax:
            output.update(from: scores, count: classCount)
            applySoftmax(output, count: classCount)
        }
    }
}
