import Testing
import WharfCore
import WharfRuntime

/// Predictions match the originating library on every committed fixture: models, inputs with
/// missing values and values exactly on split thresholds, and the library's own predictions.
@Suite("Exactness against the originating libraries")
struct ExactnessTests {
    @Test("the manifest lists fixtures")
    func manifestIsPresent() {
        #expect(Fixtures.cases.count >= 40)
    }

    @Test("predictions match the library", arguments: Fixtures.cases)
    func matchesLibrary(_ fixture: Fixtures.Case) throws {
        let model = try ModelLoader.load(path: fixture.path(fixture.model))
        let metadata = model.metadata
        #expect(metadata.format.rawValue == fixture.format)
        #expect(metadata.task.rawValue == fixture.task)
        #expect(metadata.featureCount == fixture.features)
        #expect(metadata.treeCount == fixture.trees)
        if fixture.task != "regression" {
            #expect(metadata.classes.count == fixture.classes)
        }

        let table = try FeatureTable(csv: try Fixtures.bytes(fixture.input), metadata: metadata)
        let expected = try Fixtures.matrix(fixture.expected)
        #expect(expected.header == metadata.output.columns)
        #expect(table.rows == expected.rows.count)

        let predictions = try model.predict(table.values, rows: table.rows)
        let width = metadata.output.width
        var worst = 0.0
        var mismatches: [String] = []
        for (row, values) in expected.rows.enumerated() {
            for (column, want) in values.enumerated() {
                let got = predictions[row * width + column]
                let error = abs(got - want)
                worst = max(worst, error.isNaN ? .infinity : error)
                if !(error <= fixture.tolerance), mismatches.count < 5 {
                    mismatches.append("row \(row) column \(column): got \(got), library \(want)")
                }
            }
        }
        #expect(mismatches.isEmpty, "\(fixture.name): max |diff| \(worst) over tolerance \(fixture.tolerance): \(mismatches)")
    }
}
