import Foundation
import Testing
import WharfCore
import WharfPipelines
import WharfRuntime

/// The linear trainer against what must hold at the optimum, with the fitted models read back
/// and evaluated by the runtime, as `wharf serve` would.
@Suite("Linear trainer")
struct LinearTrainerTests {
    func gaussian(_ random: inout SeededGenerator) -> Double {
        let u = Double.random(in: Double.ulpOfOne..<1, using: &random)
        let v = Double.random(in: 0..<1, using: &random)
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }

    /// Without a penalty, least squares has one answer: the normal equations', solved here
    /// independently (Gaussian elimination on the raw features).
    @Test func leastSquaresMatchesTheNormalEquations() throws {
        var random = SeededGenerator(seed: 7)
        let n = 2000
        var values: [Double] = []
        var labels: [Double] = []
        for _ in 0..<n {
            let x1 = gaussian(&random) * 10 + 5, x2 = gaussian(&random) * 0.1
            values += [x1, x2]
            labels.append(2 + 3 * x1 - 40 * x2 + gaussian(&random))
        }
        let data = try TrainingData(featureNames: ["x1", "x2"], values: values, labels: labels)
        let fitted = try LinearTrainer(task: .regression, l2: 0, tolerance: 1e-10).fit(data)
        #expect(fitted.converged)

        // Normal equations for [1, x1, x2].
        var a = [[Double]](repeating: [0, 0, 0, 0], count: 3)
        for i in 0..<n {
            let row = [1, values[2 * i], values[2 * i + 1]]
            for r in 0..<3 {
                for c in 0..<3 { a[r][c] += row[r] * row[c] }
                a[r][3] += row[r] * labels[i]
            }
        }
        for pivot in 0..<3 {
            for r in 0..<3 where r != pivot {
                let factor = a[r][pivot] / a[pivot][pivot]
                for c in 0..<4 { a[r][c] -= factor * a[pivot][c] }
            }
        }
        let solution = (0..<3).map { a[$0][3] / a[$0][$0] }

        let model = try ModelLoader.load(bytes: fitted.model)
        #expect(model.metadata.task == .regression && model.metadata.featureNames == ["x1", "x2"])
        let probes: [Double] = [0, 0, 1, 0, 0, 1, -3, 0.25]
        let predicted = try model.predict(probes, rows: 4)
        for row in 0..<4 {
            let expected = solution[0] + solution[1] * probes[2 * row] + solution[2] * probes[2 * row + 1]
            #expect(abs(predicted[row] - expected) < 1e-6 * max(1, abs(expected)), "row \(row): \(predicted[row]) vs \(expected)")
        }
    }

    /// At the optimum of a logistic or softmax loss with a free intercept, the predicted
    /// probabilities of each class sum to its count over the training rows.
    @Test(arguments: [ModelTask.binary, .multiclass])
    func classificationIsCalibratedOnItsTrainingData(_ task: ModelTask) throws {
        var random = SeededGenerator(seed: 11)
        let n = 3000
        let classes = task == .binary ? 2 : 4
        var values: [Double] = []
        var labels: [Double] = []
        for _ in 0..<n {
            let label = Int.random(in: 0..<classes, using: &random)
            let x1 = Double(label) * 1.5 + gaussian(&random), x2 = gaussian(&random) * 100
            // Some missing values: they stand for the mean.
            values += [Double.random(in: 0..<1, using: &random) < 0.05 ? .nan : x1, x2]
            labels.append(Double(label))
        }
        let data = try TrainingData(featureNames: ["signal", "noise"], values: values, labels: labels)
        let trainer = LinearTrainer(task: task, l2: 1e-4, tolerance: 1e-9)
        let fitted = try trainer.fit(data)
        #expect(fitted.converged, "gradient \(fitted.gradientNorm) after \(fitted.iterations) iterations")
        #expect(try trainer.fit(data).model == fitted.model, "training is deterministic")

        let model = try ModelLoader.load(bytes: fitted.model)
        let predicted = try model.predict(values, rows: n)
        let width = model.metadata.output.width
        var correct = 0
        var sums = [Double](repeating: 0, count: classes)
        for i in 0..<n {
            let probabilities = task == .binary ? [1 - predicted[i], predicted[i]] : Array(predicted[(i * width)..<((i + 1) * width)])
            for k in 0..<classes { sums[k] += probabilities[k] }
            if probabilities.indices.max(by: { probabilities[$0] < probabilities[$1] }) == Int(labels[i]) { correct += 1 }
        }
        for k in 0..<classes {
            let count = Double(labels.filter { $0 == Double(k) }.count)
            #expect(abs(sums[k] - count) / Double(n) < 1e-6, "class \(k): \(sums[k]) vs \(count)")
        }
        #expect(Double(correct) / Double(n) > (task == .binary ? 0.7 : 0.5))
    }

    @Test func badInputsAreRefused() throws {
        let values: [Double] = [1, 2, 3]
        #expect(throws: WharfError.self) { try LinearTrainer(task: .binary).fit(try TrainingData(featureNames: ["x"], values: values, labels: [0, 1, 2])) }
        #expect(throws: WharfError.self) { try LinearTrainer(task: .multiclass).fit(try TrainingData(featureNames: ["x"], values: values, labels: [0, 1.5, 1])) }
        #expect(throws: WharfError.self) { try LinearTrainer(task: .regression).fit(try TrainingData(featureNames: ["x"], values: [1, .infinity, 3], labels: [0, 1, 2])) }
        #expect(throws: WharfError.self) { try LinearTrainer(task: .binary, parameters: ["depth": "3"]) }
        #expect(throws: WharfError.self) { try TrainingData(csv: Array("a,b\n1,2\n".utf8), label: "y") }
        let csv = try TrainingData(csv: Array("a,y,b\n1,0,\n2,1,5\n".utf8), label: "y")
        #expect(csv.featureNames == ["a", "b"] && csv.labels == [0, 1] && csv.values[1].isNaN)
    }
}
