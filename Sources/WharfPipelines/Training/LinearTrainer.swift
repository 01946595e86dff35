import Foundation
import WharfCore

/// L2-regularized linear models: least squares (regression), logistic (binary) and softmax
/// (multiclass) regression, fitted by L-BFGS on standardized features. The standardization is
/// recorded in the model, and a missing value stands for the feature's mean there as here.
///
/// Objective (mean over rows, intercepts not penalized):
/// `loss(b + W·z) + l2 / 2 · ‖W‖²`, with `z = (x − mean) / scale` and 0 for a missing value.
public struct LinearTrainer: Sendable {
    public var task: ModelTask
    /// The L2 penalty on the weights (mean-loss scale).
    public var l2: Double
    public var maxIterations: Int
    /// Stops when the gradient's largest component falls below this.
    public var tolerance: Double

    public init(task: ModelTask, l2: Double = 1e-3, maxIterations: Int = 500, tolerance: Double = 1e-7) {
        self.task = task
        self.l2 = l2
        self.maxIterations = maxIterations
        self.tolerance = tolerance
    }

    /// Reads `--param key=value` settings: `l2`, `max_iter`, `tol`.
    public init(task: ModelTask, parameters: [String: String]) throws(WharfError) {
        self.init(task: task)
        for (key, value) in parameters {
            switch key {
            case "l2", "lambda", "alpha":
                guard let number = Double(value), number >= 0, number.isFinite else { throw WharfError(.invalidInput, "--param \(key) must be a number ≥ 0") }
                l2 = number
            case "max_iter", "max_iterations":
                guard let number = Int(value), number >= 1 else { throw WharfError(.invalidInput, "--param \(key) must be a whole number ≥ 1") }
                maxIterations = number
            case "tol", "tolerance":
                guard let number = Double(value), number > 0 else { throw WharfError(.invalidInput, "--param \(key) must be a number > 0") }
                tolerance = number
            default:
                throw WharfError(.invalidInput, "--param \(key) is not a linear parameter (l2, max_iter, tol)")
            }
        }
    }

    public struct Fitted: Sendable {
        /// Wharf linear JSON (docs/linear-format.md): what `ModelLoader` reads.
        public var model: [UInt8]
        public var iterations: Int
        public var loss: Double
        /// The gradient's largest component at the end (how close to the optimum).
        public var gradientNorm: Double
        public var converged: Bool
    }

    public func fit(_ data: TrainingData) throws(WharfError) -> Fitted {
        let classes = try data.classCount(for: task)
        let outputs = task == .multiclass ? classes : 1
        let d = data.featureCount
        let n = data.rows

        // Standardize once; a missing value becomes 0 (the mean).
        var mean = [Double](repeating: 0, count: d)
        var scale = [Double](repeating: 1, count: d)
        for j in 0..<d {
            var count = 0.0, sum = 0.0, squares = 0.0
            for i in 0..<n {
                let value = data.values[i * d + j]
                guard !value.isNaN else { continue }
                guard value.isFinite else { throw WharfError(.invalidInput, "row \(i + 1), \(data.featureNames[j]): \(value) is not a finite number") }
                count += 1
                sum += value
                squares += value * value
            }
            guard count > 0 else { continue }
            mean[j] = sum / count
            let variance = max(0, squares / count - mean[j] * mean[j])
            scale[j] = variance > 1e-24 ? variance.squareRoot() : 1
        }
        var z = [Double](repeating: 0, count: n * d)
        for i in 0..<n {
            for j in 0..<d {
                let value = data.values[i * d + j]
                z[i * d + j] = value.isNaN ? 0 : (value - mean[j]) / scale[j]
            }
        }

        // θ: per output, d weights then the intercept.
        let width = d + 1
        var theta = [Double](repeating: 0, count: outputs * width)
        switch task {
        case .regression:
            theta[d] = data.labels.reduce(0, +) / Double(n)
        case .binary:
            let positive = min(max(data.labels.reduce(0, +) / Double(n), 1e-6), 1 - 1e-6)
            theta[d] = log(positive / (1 - positive))
        case .multiclass:
            var counts = [Double](repeating: 1e-6, count: outputs)
            for label in data.labels { counts[Int(label)] += 1 }
            for k in 0..<outputs { theta[k * width + d] = log(counts[k] / Double(n)) }
        }

        let objective = Objective(task: task, z: z, labels: data.labels, rows: n, features: d, outputs: outputs, l2: l2)
        let result = LBFGS(maxIterations: maxIterations, tolerance: tolerance).minimize(&theta) { theta, gradient in
            objective.evaluate(theta, gradient: &gradient)
        }
        guard result.loss.isFinite, theta.allSatisfy(\.isFinite) else {
            throw WharfError(.invalidInput, "training diverged (a loss of \(result.loss)): check the labels and features")
        }

        var writer = JSONWriter(capacity: 256 + outputs * d * 24)
        writer.raw(#"{"format":"wharf-linear","version":1,"producer":"wharf train (linear, l2="#)
        writer.raw("\(l2))\",\"task\":")
        writer.string(task.rawValue)
        writer.raw(#","link":"#)
        writer.string(task == .regression ? "identity" : task == .binary ? "logistic" : "softmax")
        writer.raw(#","features":["#)
        for (j, name) in data.featureNames.enumerated() {
            if j > 0 { writer.raw(",") }
            writer.string(name)
        }
        writer.raw("]")
        if task != .regression {
            writer.raw(#","classes":["#)
            for k in 0..<classes {
                if k > 0 { writer.raw(",") }
                writer.string(String(k))
            }
            writer.raw("]")
        }
        writer.raw(#","coefficients":["#)
        for k in 0..<outputs {
            if k > 0 { writer.raw(",") }
            writer.raw("[")
            for j in 0..<d {
                if j > 0 { writer.raw(",") }
                writer.number(theta[k * width + j])
            }
            writer.raw("]")
        }
        writer.raw(#"],"intercepts":["#)
        for k in 0..<outputs {
            if k > 0 { writer.raw(",") }
            writer.number(theta[k * width + d])
        }
        writer.raw(#"],"standardization":{"mean":["#)
        for j in 0..<d {
            if j > 0 { writer.raw(",") }
            writer.number(mean[j])
        }
        writer.raw(#"],"scale":["#)
        for j in 0..<d {
            if j > 0 { writer.raw(",") }
            writer.number(scale[j])
        }
        writer.raw("]}}\n")
        return Fitted(model: writer.bytes, iterations: result.iterations, loss: result.loss, gradientNorm: result.gradientNorm, converged: result.converged)
    }
}

/// The mean loss and its gradient over standardized rows.
struct Objective: Sendable {
    let task: ModelTask
    let z: [Double]
    let labels: [Double]
    let rows: Int
    let features: Int
    let outputs: Int
    let l2: Double

    func evaluate(_ theta: [Double], gradient: inout [Double]) -> Double {
        let d = features
        let width = d + 1
        for index in gradient.indices { gradient[index] = 0 }
        var loss = 0.0
        var margins = [Double](repeating: 0, count: outputs)
        var residuals = [Double](repeating: 0, count: outputs)
        z.withUnsafeBufferPointer { z in
            theta.withUnsafeBufferPointer { theta in
                gradient.withUnsafeMutableBufferPointer { gradient in
                    for i in 0..<rows {
                        let row = z.baseAddress! + i * d
                        for k in 0..<outputs {
                            var margin = theta[k * width + d]
                            let w = theta.baseAddress! + k * width
                            for j in 0..<d { margin += w[j] * row[j] }
                            margins[k] = margin
                        }
                        let y = labels[i]
                        switch task {
                        case .regression:
                            let error = margins[0] - y
                            loss += 0.5 * error * error
                            residuals[0] = error
                        case .binary:
                            let m = margins[0]
                            // log(1 + e^m) − y·m, computed without overflow.
                            loss += (m > 0 ? m + log1p(exp(-m)) : log1p(exp(m))) - y * m
                            residuals[0] = 1 / (1 + exp(-m)) - y
                        case .multiclass:
                            let top = margins.max()!
                            var total = 0.0
                            for k in 0..<outputs { total += exp(margins[k] - top) }
                            let logTotal = top + log(total)
                            loss += logTotal - margins[Int(y)]
                            for k in 0..<outputs { residuals[k] = exp(margins[k] - logTotal) - (k == Int(y) ? 1 : 0) }
                        }
                        for k in 0..<outputs {
                            let r = residuals[k]
                            let g = gradient.baseAddress! + k * width
                            for j in 0..<d { g[j] += r * row[j] }
                            g[d] += r
                        }
                    }
                }
            }
        }
        let n = Double(rows)
        loss /= n
        for index in gradient.indices { gradient[index] /= n }
        for k in 0..<outputs {
            for j in 0..<d {
                let w = theta[k * width + j]
                loss += 0.5 * l2 * w * w
                gradient[k * width + j] += l2 * w
            }
        }
        return loss
    }
}

/// Limited-memory BFGS with a backtracking (Armijo) line search.
struct LBFGS {
    var maxIterations: Int
    var tolerance: Double
    var memory = 10

    struct Result {
        var iterations: Int
        var loss: Double
        var gradientNorm: Double
        var converged: Bool
    }

    func minimize(_ x: inout [Double], _ evaluate: ([Double], inout [Double]) -> Double) -> Result {
        let count = x.count
        var gradient = [Double](repeating: 0, count: count)
        var loss = evaluate(x, &gradient)
        var steps: [[Double]] = []
        var changes: [[Double]] = []
        var rhos: [Double] = []
        func norm(_ v: [Double]) -> Double { v.reduce(0) { max($0, abs($1)) } }
        func dot(_ a: [Double], _ b: [Double]) -> Double {
            var total = 0.0
            for index in a.indices { total += a[index] * b[index] }
            return total
        }
        var iteration = 0
        while iteration < maxIterations {
            if norm(gradient) < tolerance { return Result(iterations: iteration, loss: loss, gradientNorm: norm(gradient), converged: true) }
            iteration += 1
            // The two-loop recursion: direction = −H·g.
            var q = gradient
            var alphas = [Double](repeating: 0, count: steps.count)
            for index in stride(from: steps.count - 1, through: 0, by: -1) {
                alphas[index] = rhos[index] * dot(steps[index], q)
                for j in 0..<count { q[j] -= alphas[index] * changes[index][j] }
            }
            if let lastStep = steps.last, let lastChange = changes.last {
                let gamma = dot(lastStep, lastChange) / dot(lastChange, lastChange)
                for j in 0..<count { q[j] *= gamma }
            } else {
                let size = max(norm(gradient), 1e-12)
                for j in 0..<count { q[j] /= size }
            }
            for index in 0..<steps.count {
                let beta = rhos[index] * dot(changes[index], q)
                for j in 0..<count { q[j] += steps[index][j] * (alphas[index] - beta) }
            }
            var direction = q.map { -$0 }
            var slope = dot(direction, gradient)
            if !(slope < 0) {
                // Not a descent direction (curvature information went stale): steepest descent.
                direction = gradient.map { -$0 }
                slope = dot(direction, gradient)
                steps.removeAll()
                changes.removeAll()
                rhos.removeAll()
            }
            var step = 1.0
            var candidate = x
            var candidateGradient = gradient
            var candidateLoss = loss
            var accepted = false
            for _ in 0..<40 {
                for j in 0..<count { candidate[j] = x[j] + step * direction[j] }
                candidateLoss = evaluate(candidate, &candidateGradient)
                if candidateLoss.isFinite, candidateLoss <= loss + 1e-4 * step * slope {
                    accepted = true
                    break
                }
                step *= 0.5
            }
            guard accepted else { return Result(iterations: iteration, loss: loss, gradientNorm: norm(gradient), converged: false) }
            let s = (0..<count).map { candidate[$0] - x[$0] }
            let y = (0..<count).map { candidateGradient[$0] - gradient[$0] }
            let curvature = dot(s, y)
            if curvature > 1e-12 {
                steps.append(s)
                changes.append(y)
                rhos.append(1 / curvature)
                if steps.count > memory {
                    steps.removeFirst()
                    changes.removeFirst()
                    rhos.removeFirst()
                }
            }
            let improvement = loss - candidateLoss
            x = candidate
            gradient = candidateGradient
            loss = candidateLoss
            if improvement <= 1e-15 * max(1, abs(loss)) {
                return Result(iterations: iteration, loss: loss, gradientNorm: norm(gradient), converged: norm(gradient) < tolerance * 100)
            }
        }
        return Result(iterations: iteration, loss: loss, gradientNorm: norm(gradient), converged: norm(gradient) < tolerance)
    }
}
