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

@Suite("Batches")
struct BatchConsistencyTests {
    /// Rows are walked in groups of eight (a last, partial group walks its last row again in
    /// the spare places) or, under eight rows, one by one with several trees at once: every
    /// path must give each row bit for bit what it gets alone.
    @Test("a batch gives each row exactly what the row gets alone", arguments: Fixtures.cases)
    func batchEqualsSingleRows(_ fixture: Fixtures.Case) throws {
        let model = try ModelLoader.load(path: fixture.path(fixture.model))
        let table = try FeatureTable(csv: try Fixtures.bytes(fixture.input), metadata: model.metadata)
        let features = model.metadata.featureCount
        let width = model.metadata.output.width
        let rows = min(table.rows, 80)
        let alone = try (0..<rows).flatMap { row in
            try model.predict(Array(table.values[(row * features)..<((row + 1) * features)]), rows: 1)
        }
        for batch in [3, 8, 9, 13, 16, 67, rows] where batch <= rows {
            let output = try model.predict(Array(table.values[0..<(batch * features)]), rows: batch)
            let same = (0..<(batch * width)).allSatisfy { output[$0].bitPattern == alone[$0].bitPattern }
            #expect(same, "\(fixture.name): a batch of \(batch) rows differs from the rows alone")
        }
    }
}
