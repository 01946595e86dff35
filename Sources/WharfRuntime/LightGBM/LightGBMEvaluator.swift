/// Evaluates a LightGBM forest in double precision: raw scores summed over trees, averaged for
/// random forests, then the objective's transform.
struct LightGBMEvaluator: Sendable {
    let forest: Forest<LightGBMSplits>
    let objective: LightGBMObjective
    /// Random forests (`average_output`) divide by the number of iterations before the transform.
    let averageOver: Double?

    private static var chunk: Int { 256 }

    func predict(input: UnsafePointer<Double>, rows: Int, output: UnsafeMutablePointer<Double>, outputWidth: Int) {
        let classCount = forest.groupCount
        withUnsafeTemporaryAllocation(of: Double.self, capacity: Self.chunk * classCount) { scratch in
            let scores = scratch.baseAddress!
            var start = 0
            while start < rows {
                let count = min(Self.chunk, rows - start)
                scores.update(repeating: 0, count: count * classCount)
                forest.accumulate(input: input + start * forest.featureCount, rows: count, margins: scores)
                for row in 0..<count {
                    let rowScores = scores + row * classCount
                    if let averageOver {
                        for k in 0..<classCount { rowScores[k] /= averageOver }
                    }
                    objective.transform(rowScores, classCount: classCount, into: output + (start + row) * outputWidth)
                }
                start += count
            }
        }
    }
}
