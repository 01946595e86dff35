import Dispatch
import Foundation
import WharfCore

/// Histogram-based gradient boosted decision trees, written as XGBoost JSON so that the runtime
/// and xgboost itself read the model.
///
/// Features are binned once (up to `maxBin` bins from quantiles of the float32 values, one more
/// bin for missing values); each node's gradient histogram is built for the smaller child only,
/// the larger one's being the parent's minus it. Splits compare in float32 exactly as xgboost
/// evaluates (`x < threshold` goes left), and each split learns the side missing values take.
/// Growth is depth-wise (`max_depth`) or leaf-wise (`grow_policy=lossguide`, `max_leaves`).
/// Histograms are built on all cores, each thread taking some of the features, so a seed gives
/// the same model whatever the thread count.
public struct GBDTTrainer: Sendable {
    public var task: ModelTask
    public var rounds = 100
    public var learningRate = 0.1
    public var maxDepth = 6
    public var maxLeaves = 0
    public var lossGuide = false
    public var lambda = 1.0
    public var alpha = 0.0
    public var minChildWeight = 1.0
    public var gamma = 0.0
    public var subsample = 1.0
    public var columnSample = 1.0
    public var maxBin = 255
    public var minDataInBin = 3
    public var earlyStoppingRounds = 0
    public var seed: UInt64 = 0
    public var threads = ProcessInfo.processInfo.activeProcessorCount
    /// Rows × features below which a node's histogram is built on one thread (a hand-off
    /// costs more than it saves on small nodes).
    var parallelWork = 1 << 20

    public init(task: ModelTask) {
        self.task = task
    }

    /// Reads `--param key=value` settings (XGBoost's names, and LightGBM's where they differ).
    public init(task: ModelTask, parameters: [String: String], seed: UInt64) throws(WharfError) {
        self.init(task: task)
        self.seed = seed
        func number(_ key: String, _ value: String, _ range: ClosedRange<Double>) throws(WharfError) -> Double {
            guard let parsed = Double(value), range.contains(parsed) else {
                throw WharfError(.invalidInput, "--param \(key) must be a number in \(range.lowerBound)…\(range.upperBound)")
            }
            return parsed
        }
        func whole(_ key: String, _ value: String, _ range: ClosedRange<Int>) throws(WharfError) -> Int {
            guard let parsed = Int(value), range.contains(parsed) else {
                throw WharfError(.invalidInput, "--param \(key) must be a whole number in \(range.lowerBound)…\(range.upperBound)")
            }
            return parsed
        }
        for (key, value) in parameters {
            switch key {
            case "num_rounds", "n_estimators", "num_boost_round", "num_iterations": rounds = try whole(key, value, 1...100_000)
            case "learning_rate", "eta": learningRate = try number(key, value, 1e-6...1)
            case "max_depth": maxDepth = try whole(key, value, 0...30)
            case "max_leaves", "num_leaves": maxLeaves = try whole(key, value, 0...1 << 20)
            case "grow_policy":
                guard value == "depthwise" || value == "lossguide" else { throw WharfError(.invalidInput, "--param grow_policy is depthwise or lossguide") }
                lossGuide = value == "lossguide"
            case "lambda", "reg_lambda", "lambda_l2": lambda = try number(key, value, 0...1e9)
            case "alpha", "reg_alpha", "lambda_l1": alpha = try number(key, value, 0...1e9)
            case "min_child_weight", "min_sum_hessian_in_leaf": minChildWeight = try number(key, value, 0...1e12)
            case "gamma", "min_split_loss", "min_split_gain": gamma = try number(key, value, 0...1e12)
            case "subsample", "bagging_fraction": subsample = try number(key, value, 1e-3...1)
            case "colsample_bytree", "feature_fraction": columnSample = try number(key, value, 1e-3...1)
            case "max_bin": maxBin = try whole(key, value, 2...255)
            case "min_data_in_bin": minDataInBin = try whole(key, value, 1...1_000_000)
            case "early_stopping_rounds": earlyStoppingRounds = try whole(key, value, 0...100_000)
            case "nthread", "num_threads": threads = try whole(key, value, 1...256)
            default:
                throw WharfError(.invalidInput, "--param \(key) is not a gbdt parameter")
            }
        }
        if lossGuide, maxLeaves == 0 { maxLeaves = 31 }
        if lossGuide, parameters["max_depth"] == nil { maxDepth = 0 }
    }

    public struct Fitted: Sendable {
        /// XGBoost JSON.
        public var model: [UInt8]
        public var trees: Int
        public var bestRound: Int
        /// The validation metric per round (logloss, mlogloss or rmse), when a validation set was given.
        public var validationHistory: [Double]
    }

    // MARK: - Fitting

    public func fit(_ data: TrainingData, validation: TrainingData? = nil) throws(WharfError) -> Fitted {
        guard earlyStoppingRounds == 0 || validation != nil else {
            throw WharfError(.invalidInput, "early_stopping_rounds needs a validation set (--valid): without one nothing could stop early")
        }
        let classes = try data.classCount(for: task)
        let outputs = task == .multiclass ? classes : 1
        if let validation {
            guard validation.featureNames == data.featureNames else { throw WharfError(.invalidInput, "the validation set must have the training set's features") }
            _ = try validation.classCount(for: task)
            if task == .multiclass, let bad = validation.labels.firstIndex(where: { Int($0) >= classes }) {
                throw WharfError(.invalidInput, "validation row \(bad + 1): class \(Int(validation.labels[bad])) does not occur in the training data")
            }
        }
        let n = data.rows
        let d = data.featureCount
        let bins = Binning(data, maxBin: maxBin, minDataInBin: minDataInBin)
        let binned = bins.bin(data)

        // Starting margins.
        var base = [Double](repeating: 0, count: outputs)
        let baseScore: [Float]
        switch task {
        case .regression:
            base[0] = data.labels.reduce(0, +) / Double(n)
            baseScore = [Float(base[0])]
            base[0] = Double(baseScore[0])
        case .binary:
            let p = Float(min(max(data.labels.reduce(0, +) / Double(n), 1e-6), 1 - 1e-6))
            baseScore = [p]
            base[0] = log(Double(p) / (1 - Double(p)))
        case .multiclass:
            var counts = [Double](repeating: 1, count: outputs)
            for label in data.labels { counts[Int(label)] += 1 }
            let logs = counts.map { log($0 / Double(n + outputs)) }
            let center = logs.reduce(0, +) / Double(outputs)
            baseScore = logs.map { Float($0 - center) }
            base = baseScore.map(Double.init)
        }

        var margins = [Double](repeating: 0, count: n * outputs)
        for i in 0..<n { for k in 0..<outputs { margins[i * outputs + k] = base[k] } }
        var validationMargins: [Double] = []
        if let validation {
            validationMargins = [Double](repeating: 0, count: validation.rows * outputs)
            for i in 0..<validation.rows { for k in 0..<outputs { validationMargins[i * outputs + k] = base[k] } }
        }

        var random = SeededGenerator(seed: seed ^ 0x5DEE_CE66_D1CE_4E5B)
        var trees: [Tree] = []
        var history: [Double] = []
        var best = (round: 0, score: Double.infinity)
        var gradients = [Double](repeating: 0, count: n)
        var hessians = [Double](repeating: 0, count: n)
        var probabilities = [Double](repeating: 0, count: task == .multiclass ? n * outputs : 0)
        for round in 0..<rounds {
            // Rows and columns drawn for this round's trees.
            var rows: [Int32] = []
            if subsample < 1 {
                rows.reserveCapacity(Int(Double(n) * subsample) + 16)
                for i in 0..<n where random.nextUnit() < subsample { rows.append(Int32(i)) }
            } else {
                rows = (0..<n).map(Int32.init)
            }
            var columns = Array(0..<d)
            if columnSample < 1 {
                for index in stride(from: d - 1, to: 0, by: -1) { columns.swapAt(index, Int(random.next() % UInt64(index + 1))) }
                columns = Array(columns.prefix(max(1, Int((Double(d) * columnSample).rounded())))).sorted()
            }
            // Multiclass: every class's tree this round starts from the same probabilities.
            if task == .multiclass { softmax(margins, outputs: outputs, into: &probabilities) }
            for k in 0..<outputs {
                gradientsAndHessians(labels: data.labels, margins: margins, probabilities: probabilities, outputs: outputs, output: k,
                                     gradients: &gradients, hessians: &hessians)
                let (tree, leafRows) = grow(binned: binned, bins: bins, features: d, rows: rows, columns: columns, gradients: gradients, hessians: hessians)
                if rows.count == n {
                    // Every row is in a leaf: move its margin by the leaf's value (as stored, in float32).
                    for (leaf, members) in leafRows {
                        let value = Double(Float(tree.weights[leaf]))
                        for row in members { margins[Int(row) * outputs + k] += value }
                    }
                } else {
                    tree.apply(values: data.values, features: d, rows: n) { i, value in margins[i * outputs + k] += value }
                }
                if let validation {
                    tree.apply(values: validation.values, features: d, rows: validation.rows) { i, value in validationMargins[i * outputs + k] += value }
                }
                trees.append(tree)
            }
            if let validation {
                let score = metric(labels: validation.labels, margins: validationMargins, outputs: outputs)
                history.append(score)
                if score < best.score - 1e-12 { best = (round, score) }
                if earlyStoppingRounds > 0, round - best.round >= earlyStoppingRounds { break }
            }
        }
        let kept = validation != nil && earlyStoppingRounds > 0 ? (best.round + 1) * outputs : trees.count
        let model = XGBoostJSON.write(task: task, classes: classes, featureNames: data.featureNames, baseScore: baseScore,
                                      trees: Array(trees.prefix(kept)), outputs: outputs)
        // The round the written model ends at: the best one when it stopped early, else the last.
        return Fitted(model: model, trees: kept, bestRound: kept / outputs - 1, validationHistory: history)
    }

    private func softmax(_ margins: [Double], outputs: Int, into probabilities: inout [Double]) {
        for i in 0..<(margins.count / outputs) {
            var top = -Double.infinity
            for c in 0..<outputs { top = max(top, margins[i * outputs + c]) }
            var total = 0.0
            for c in 0..<outputs {
                let e = exp(margins[i * outputs + c] - top)
                probabilities[i * outputs + c] = e
                total += e
            }
            for c in 0..<outputs { probabilities[i * outputs + c] /= total }
        }
    }

    private func gradientsAndHessians(labels: [Double], margins: [Double], probabilities: [Double], outputs: Int, output k: Int,
                                      gradients: inout [Double], hessians: inout [Double]) {
        for i in 0..<labels.count {
            let y = labels[i]
            switch task {
            case .regression:
                gradients[i] = margins[i] - y
                hessians[i] = 1
            case .binary:
                let p = 1 / (1 + exp(-margins[i]))
                gradients[i] = p - y
                hessians[i] = max(p * (1 - p), 1e-16)
            case .multiclass:
                let p = probabilities[i * outputs + k]
                gradients[i] = p - (Int(y) == k ? 1 : 0)
                hessians[i] = max(2 * p * (1 - p), 1e-16)
            }
        }
    }

    /// Logloss, multiclass logloss or RMSE: lower is better.
    private func metric(labels: [Double], margins: [Double], outputs: Int) -> Double {
        var total = 0.0
        for i in 0..<labels.count {
            switch task {
            case .regression:
                let error = margins[i] - labels[i]
                total += error * error
            case .binary:
                let p = min(max(1 / (1 + exp(-margins[i])), 1e-15), 1 - 1e-15)
                total -= labels[i] == 1 ? log(p) : log(1 - p)
            case .multiclass:
                var top = -Double.infinity
                for c in 0..<outputs { top = max(top, margins[i * outputs + c]) }
                var sum = 0.0
                for c in 0..<outputs { sum += exp(margins[i * outputs + c] - top) }
                total -= margins[i * outputs + Int(labels[i])] - top - log(sum)
            }
        }
        let mean = total / Double(max(labels.count, 1))
        return task == .regression ? mean.squareRoot() : mean
    }

    // MARK: - Growing one tree

    private struct Candidate {
        var node: Int
        var rows: [Int32]
        var histogram: [Double]  // (gradient, hessian) per feature bin, bins.stride per feature
        var gradient: Double
        var hessian: Double
        var depth: Int
        var split: Split?
    }

    struct Split {
        var feature: Int
        /// Bins up to this one go left.
        var bin: Int
        var missingLeft: Bool
        var gain: Double
        var left: (gradient: Double, hessian: Double)
        var right: (gradient: Double, hessian: Double)
    }

    /// With `lambda` 0, a node whose rows have no curvature would divide 0 by 0: its weight is
    /// 0 rather than a NaN leaf no reader could load (defensive: splits keep rows on both sides).
    private func leafWeight(_ gradient: Double, _ hessian: Double) -> Double {
        let g = gradient > alpha ? gradient - alpha : gradient < -alpha ? gradient + alpha : 0
        let h = hessian + lambda
        return h > 0 ? -g / h : 0
    }

    private func score(_ gradient: Double, _ hessian: Double) -> Double {
        let g = gradient > alpha ? gradient - alpha : gradient < -alpha ? gradient + alpha : 0
        let h = hessian + lambda
        return h > 0 ? g * g / h : 0
    }

    /// The tree, and the rows that ended in each leaf (so their margins move without walking the tree).
    private func grow(binned: [UInt8], bins: Binning, features d: Int, rows: [Int32], columns: [Int],
                      gradients: [Double], hessians: [Double]) -> (Tree, [(leaf: Int, rows: [Int32])]) {
        var tree = Tree()
        var rootGradient = 0.0, rootHessian = 0.0
        for row in rows {
            rootGradient += gradients[Int(row)]
            rootHessian += hessians[Int(row)]
        }
        let root = tree.addLeaf(weight: leafWeight(rootGradient, rootHessian), hessian: rootHessian, parent: Int32.max)
        var open = [Candidate(node: root, rows: rows, histogram: histogram(binned: binned, bins: bins, features: d, rows: rows, gradients: gradients, hessians: hessians),
                              gradient: rootGradient, hessian: rootHessian, depth: 0)]
        open[0].split = bestSplit(open[0], bins: bins, columns: columns)
        var finished: [(leaf: Int, rows: [Int32])] = []
        if open[0].split == nil { finished.append((root, rows)) }
        var leaves = 1
        while true {
            // Depth-wise: the shallowest open node first (ties by creation); leaf-wise: the best gain.
            let eligible = open.indices.filter { open[$0].split != nil && (maxDepth == 0 || open[$0].depth < maxDepth) }
            guard !eligible.isEmpty, maxLeaves == 0 || leaves < maxLeaves else { break }
            let chosen = lossGuide
                ? eligible.max { open[$0].split!.gain < open[$1].split!.gain || (open[$0].split!.gain == open[$1].split!.gain && $0 > $1) }!
                : eligible.min { (open[$0].depth, open[$0].node) < (open[$1].depth, open[$1].node) }!
            let parent = open.remove(at: chosen)
            let split = parent.split!
            // Partition the rows.
            var left: [Int32] = []
            var right: [Int32] = []
            left.reserveCapacity(parent.rows.count)
            right.reserveCapacity(parent.rows.count)
            let missingBin = UInt8(bins.missingBin)
            for row in parent.rows {
                let bin = binned[Int(row) * d + split.feature]
                let goesLeft = bin == missingBin ? split.missingLeft : Int(bin) <= split.bin
                if goesLeft { left.append(row) } else { right.append(row) }
            }
            let leftNode = tree.addLeaf(weight: leafWeight(split.left.gradient, split.left.hessian), hessian: split.left.hessian, parent: Int32(parent.node))
            let rightNode = tree.addLeaf(weight: leafWeight(split.right.gradient, split.right.hessian), hessian: split.right.hessian, parent: Int32(parent.node))
            tree.setSplit(parent.node, feature: split.feature, threshold: bins.threshold(feature: split.feature, bin: split.bin),
                          missingLeft: split.missingLeft, gain: split.gain, left: leftNode, right: rightNode)
            leaves += 1
            // The smaller child's histogram is built; the larger one's is the parent's minus it.
            let smallIsLeft = left.count <= right.count
            let small = histogram(binned: binned, bins: bins, features: d, rows: smallIsLeft ? left : right, gradients: gradients, hessians: hessians)
            var large = parent.histogram
            for index in large.indices { large[index] -= small[index] }
            var leftChild = Candidate(node: leftNode, rows: left, histogram: smallIsLeft ? small : large,
                                      gradient: split.left.gradient, hessian: split.left.hessian, depth: parent.depth + 1)
            var rightChild = Candidate(node: rightNode, rows: right, histogram: smallIsLeft ? large : small,
                                       gradient: split.right.gradient, hessian: split.right.hessian, depth: parent.depth + 1)
            let canGrow = maxDepth == 0 || parent.depth + 1 < maxDepth
            if canGrow {
                leftChild.split = bestSplit(leftChild, bins: bins, columns: columns)
                rightChild.split = bestSplit(rightChild, bins: bins, columns: columns)
            }
            for child in [leftChild, rightChild] {
                if child.split != nil { open.append(child) } else { finished.append((child.node, child.rows)) }
            }
        }
        finished += open.map { ($0.node, $0.rows) }
        for index in tree.weights.indices where tree.isLeaf(index) { tree.weights[index] *= learningRate }
        return (tree, finished)
    }

    /// Gradient and hessian sums per (feature, bin) over `rows`. Threads split the features,
    /// not the rows: each feature's sums are added in row order by one thread, so the model is
    /// the same whatever the thread count, and there is nothing to add up afterwards.
    private func histogram(binned: [UInt8], bins: Binning, features d: Int, rows: [Int32], gradients: [Double], hessians: [Double]) -> [Double] {
        let stride = bins.stride
        var total = [Double](repeating: 0, count: d * stride * 2)
        @Sendable func build(_ features: Range<Int>, into histogram: UnsafeMutablePointer<Double>) {
            binned.withUnsafeBufferPointer { binned in
                rows.withUnsafeBufferPointer { rows in
                    gradients.withUnsafeBufferPointer { gradients in
                        hessians.withUnsafeBufferPointer { hessians in
                            for row in rows {
                                let row = Int(row)
                                let g = gradients[row], h = hessians[row]
                                let codes = binned.baseAddress! + row * d
                                for feature in features {
                                    let slot = (feature * stride + Int(codes[feature])) * 2
                                    histogram[slot] += g
                                    histogram[slot + 1] += h
                                }
                            }
                        }
                    }
                }
            }
        }
        let workers = min(threads, d)
        // Small nodes are not worth a thread hand-off.
        guard workers > 1, rows.count * d >= parallelWork else {
            total.withUnsafeMutableBufferPointer { build(0..<d, into: $0.baseAddress!) }
            return total
        }
        total.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let shared = buffer.baseAddress!
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                build((worker * d / workers)..<((worker + 1) * d / workers), into: shared)
            }
        }
        return total
    }

    private func bestSplit(_ node: Candidate, bins: Binning, columns: [Int]) -> Split? {
        let parentScore = score(node.gradient, node.hessian)
        var best: Split?
        let stride = bins.stride
        for feature in columns {
            let count = bins.binCount[feature]
            guard count > 1 else { continue }
            let base = feature * stride * 2
            let missingGradient = node.histogram[base + bins.missingBin * 2]
            let missingHessian = node.histogram[base + bins.missingBin * 2 + 1]
            let hasMissing = missingHessian > 0
            var leftGradient = 0.0, leftHessian = 0.0
            for bin in 0..<(count - 1) {
                leftGradient += node.histogram[base + bin * 2]
                leftHessian += node.histogram[base + bin * 2 + 1]
                // Missing values right, then (when this node has any) left.
                for missingLeft in hasMissing ? 0...1 : 0...0 {
                    let lg = leftGradient + (missingLeft == 1 ? missingGradient : 0)
                    let lh = leftHessian + (missingLeft == 1 ? missingHessian : 0)
                    let rg = node.gradient - lg
                    let rh = node.hessian - lh
                    guard lh >= minChildWeight, rh >= minChildWeight, lh > 0, rh > 0 else { continue }
                    let gain = 0.5 * (score(lg, lh) + score(rg, rh) - parentScore) - gamma
                    guard gain > 1e-12, gain > (best?.gain ?? 0) else { continue }
                    best = Split(feature: feature, bin: bin, missingLeft: missingLeft == 1, gain: gain, left: (lg, lh), right: (rg, rh))
                }
            }
        }
        return best
    }
}

/// Per feature, the float32 thresholds that cut its values into bins.
struct Binning: Sendable {
    /// thresholds[feature][b]: bin b holds values below it (and at or above the one before).
    var thresholds: [[Float]]
    var binCount: [Int]
    /// Bins per feature in the histogram, the missing bin last.
    let stride: Int
    let missingBin: Int

    /// `minDataInBin`: each bin holds at least this many of the sampled values (as LightGBM's
    /// `min_data_in_bin`), so small data gets fewer, fuller bins.
    init(_ data: TrainingData, maxBin: Int, minDataInBin: Int = 3) {
        let maxBins = min(maxBin, 254)
        var thresholds: [[Float]] = []
        var binCount: [Int] = []
        let n = data.rows
        let d = data.featureCount
        // Quantiles from at most 200,000 rows, evenly spaced.
        let step = max(1, n / 200_000)
        for feature in 0..<d {
            var values: [Float] = []
            values.reserveCapacity(n / step + 1)
            var row = 0
            while row < n {
                let value = data.values[row * d + feature]
                if !value.isNaN { values.append(Float(value)) }
                row += step
            }
            values.sort()
            var distinct: [(value: Float, count: Int)] = []
            for value in values {
                if let last = distinct.last, last.value == value {
                    distinct[distinct.count - 1].count += 1
                } else {
                    distinct.append((value, 1))
                }
            }
            let bins = max(1, min(maxBins, values.count / max(1, minDataInBin)))
            var cuts: [Float] = []
            if distinct.count <= bins {
                cuts = distinct.dropFirst().map(\.value)
            } else {
                // Cut where the running count passes each quantile, on distinct values.
                let total = Double(values.count)
                var seen = 0
                var next = 1
                for (index, entry) in distinct.enumerated() where index > 0 {
                    seen += distinct[index - 1].count
                    if Double(seen) >= total * Double(next) / Double(bins) {
                        cuts.append(entry.value)
                        while Double(seen) >= total * Double(next) / Double(bins) { next += 1 }
                        if cuts.count == bins - 1 { break }
                    }
                }
            }
            thresholds.append(cuts)
            binCount.append(cuts.count + 1)
        }
        self.thresholds = thresholds
        self.binCount = binCount
        // Histograms are as wide as the feature with the most bins, plus the missing bin.
        let widest = binCount.max() ?? 1
        stride = widest + 1
        missingBin = widest
    }

    func threshold(feature: Int, bin: Int) -> Float { thresholds[feature][bin] }

    /// Row-major bin codes, the missing bin for NaN.
    func bin(_ data: TrainingData) -> [UInt8] {
        let n = data.rows
        let d = data.featureCount
        var codes = [UInt8](repeating: 0, count: n * d)
        for i in 0..<n {
            for j in 0..<d {
                let value = data.values[i * d + j]
                codes[i * d + j] = value.isNaN ? UInt8(missingBin) : UInt8(Self.code(Float(value), thresholds[j]))
            }
        }
        return codes
    }

    /// How many thresholds are at or below `value` (the bin where `value < threshold` first holds).
    static func code(_ value: Float, _ cuts: [Float]) -> Int {
        var low = 0, high = cuts.count
        while low < high {
            let middle = (low + high) / 2
            if value < cuts[middle] { high = middle } else { low = middle + 1 }
        }
        return low
    }
}

/// One tree in XGBoost's array layout.
struct Tree: Sendable {
    var left: [Int32] = []
    var right: [Int32] = []
    var parents: [Int32] = []
    var features: [Int32] = []
    var thresholds: [Float] = []
    var defaultLeft: [Bool] = []
    var weights: [Double] = []
    var gains: [Double] = []
    var hessians: [Double] = []

    func isLeaf(_ node: Int) -> Bool { left[node] == -1 }

    mutating func addLeaf(weight: Double, hessian: Double, parent: Int32) -> Int {
        left.append(-1)
        right.append(-1)
        parents.append(parent)
        features.append(0)
        thresholds.append(0)
        defaultLeft.append(false)
        weights.append(weight)
        gains.append(0)
        hessians.append(hessian)
        return left.count - 1
    }

    mutating func setSplit(_ node: Int, feature: Int, threshold: Float, missingLeft: Bool, gain: Double, left leftChild: Int, right rightChild: Int) {
        left[node] = Int32(leftChild)
        right[node] = Int32(rightChild)
        features[node] = Int32(feature)
        thresholds[node] = threshold
        defaultLeft[node] = missingLeft
        gains[node] = gain
    }

    /// The leaf value of every row, as xgboost would find it (float32 comparisons).
    func apply(values: [Double], features d: Int, rows: Int, _ add: (Int, Double) -> Void) {
        for i in 0..<rows {
            var node = 0
            while !isLeaf(node) {
                let value = values[i * d + Int(features[node])]
                node = Int(value.isNaN ? (defaultLeft[node] ? left[node] : right[node]) : (Float(value) < thresholds[node] ? left[node] : right[node]))
            }
            add(i, Double(Float(weights[node])))
        }
    }
}
