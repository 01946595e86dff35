/// Evaluates an XGBoost forest: float32 margins from the base score, summed in tree order, then
/// the objective's transform.
struct XGBoostEvaluator: Sendable {
    let forest: Forest<XGBoostSplits>
    let baseMargins: [Float]
    let objective: XGBoostObjective

    /// Rows evaluated per pass, bounding the scratch margins.
    private static var chunk: Int { 256 }

    func predict(input: UnsafePointer<Double>, rows: Int, output: UnsafeMutablePointer<Double>, outputWidth: Int) {
        let groupCount = forest.groupCount
        withUnsafeTemporaryAllocation(of: Float.self, capacity: Self.chunk * groupCount) { scratch in
            let margins = scratch.baseAddress!
            var start = 0
            while start < rows {
                let count = min(Self.chunk, rows - start)
                for row in 0..<count {
                    for group in 0..<groupCount { margins[row * groupCount + group] = baseMargins[group] }
                }
                forest.accumulate(input: input + start * forest.featureCount, rows: count, margins: margins)
                for row in 0..<count {
                    objective.transform(margins + row * groupCount, groupCount: groupCount, into: output + (start + row) * outputWidth)
                }
                start += count
            }
        }
    }
}
