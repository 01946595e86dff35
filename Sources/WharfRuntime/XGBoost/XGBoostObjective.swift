#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import WharfCore

/// The XGBoost objectives Wharf evaluates, with their base-score and output transforms
/// (FORMATS.md §1.5). Arithmetic is float32, as in XGBoost, so margins match bit for bit.
enum XGBoostObjective: Sendable {
    case logistic(task: ModelTask)
    case logitRaw
    case softprob
    case softmax
    case identity
    case exponential

    init(name: String) throws(WharfError) {
        switch name {
        case "binary:logistic": self = .logistic(task: .binary)
        case "reg:logistic": self = .logistic(task: .regression)
        case "binary:logitraw": self = .logitRaw
        case "multi:softprob": self = .softprob
        case "multi:softmax": self = .softmax
        case "reg:squarederror", "reg:linear", "reg:absoluteerror", "reg:pseudohubererror",
            "reg:quantileerror", "reg:squaredlogerror":
            self = .identity
        case "count:poisson", "reg:gamma", "reg:tweedie": self = .exponential
        default:
            throw WharfError(.unsupportedModel, "XGBoost objective \"\(name)\" is not supported (ranking, survival and custom objectives are not evaluated)")
        }
    }

    var task: ModelTask {
        switch self {
        case .logistic(let task): task
        case .logitRaw: .binary
        case .softprob, .softmax: .multiclass
        case .identity, .exponential: .regression
        }
    }

    var outputKind: OutputKind {
        switch self {
        case .logistic(let task): task == .binary ? .probability : .value
        case .logitRaw: .margin
        case .softprob: .probabilities
        case .softmax: .classIndex
        case .identity, .exponential: .value
        }
    }

    /// `base_score` is stored in the objective's output space; this is its margin.
    func margin(fromBaseScore score: Float) -> Float {
        switch self {
        case .logistic: -logf(1 / score - 1)
        case .exponential: logf(score)
        case .logitRaw, .softprob, .softmax, .identity: score
        }
    }

    /// Transforms one row's margins (`groupCount` values) into its output row.
    @inline(__always)
    func transform(_ margins: UnsafeMutablePointer<Float>, groupCount: Int, into output: UnsafeMutablePointer<Double>) {
        switch self {
        case .logistic: output[0] = Double(Self.sigmoid(margins[0]))
        case .logitRaw, .identity: output[0] = Double(margins[0])
        case .exponential: output[0] = Double(expf(margins[0]))
        case .softprob:
            var largest = margins[0]
            for group in 1..<max(groupCount, 1) { largest = max(largest, margins[group]) }
            var sum = 0.0
            for group in 0..<groupCount {
                margins[group] = expf(margins[group] - largest)
                sum += Double(margins[group])
            }
            let total = Float(sum)
            for group in 0..<groupCount { output[group] = Double(margins[group] / total) }
        case .softmax:
            var best = 0
            for group in 1..<max(groupCount, 1) where margins[group] > margins[best] { best = group }
            output[0] = Double(best)
        }
    }

    /// XGBoost's `common::Sigmoid`: the exponent is clamped so `expf` cannot overflow.
    @inline(__always)
    static func sigmoid(_ x: Float) -> Float {
        1 / (expf(min(-x, 88.7)) + 1)
    }
}
