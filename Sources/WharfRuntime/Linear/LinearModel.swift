#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A linear, logistic or softmax regression: `z = b + W · standardize(x)`, then the link.
/// The file format is documented in docs/linear-format.md.
struct LinearModel: Sendable {
    enum Link: String, Sendable {
        case identity
        case logistic
        case softmax
    }

    let link: Link
    let featureCount: Int
    /// `outputs × featureCount`, row-major.
    let coefficients: [Double]
    let intercepts: [Double]
    /// Per feature; `(x - mean) / scale` when present. A missing value stands for the mean, so it
    /// contributes nothing.
    let mean: [Double]?
    let scale: [Double]?

    var outputs: Int { intercepts.count }

    func predict(input: UnsafePointer<Double>, rows: Int, output: UnsafeMutablePointer<Double>, outputWidth: Int) {
        coefficients.withUnsafeBufferPointer { weights in
            let weights = weights.baseAddress!
            for row in 0..<rows {
                let x = input + row * featureCount
                let out = output + row * outputWidth
                for k in 0..<outputs {
                    var z = intercepts[k]
                    let w = weights + k * featureCount
                    for j in 0..<featureCount {
                        var value = x[j]
                        if value.isNaN { continue }
                        if let mean, let scale { value = (value - mean[j]) / scale[j] }
                        z += w[j] * value
                    }
                    out[k] = z
                }
                switch link {
                case .identity: break
                case .logistic: out[0] = 1 / (1 + exp(-out[0]))
                case .softmax: applySoftmax(out, count: outputs)
                }
            }
        }
    }
}
