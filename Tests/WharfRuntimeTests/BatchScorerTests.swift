import Foundation
import Testing
import WharfCore
@testable import WharfRuntime

/// `wharf score`'s engine: the same predictions as the in-memory path, whatever the chunking
/// and the number of threads; CSV quirks; errors that name the line and leave no output.
@Suite("Batch scorer")
struct BatchScorerTests {
    private func temporary(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("wharf-score-\(UUID().uuidString)-\(name)").path
    }

    private func scores(_ path: String) throws -> (header: String, rows: [[Double]]) {
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        return (lines[0], lines.dropFirst().filter { !$0.isEmpty }.map { $0.split(separator: ",").map { Double($0)! } })
    }

    /// Tiny chunks and three threads: records cross chunk boundaries, chunks finish out of
    /// order, and the output is still the in-memory prediction, row for row, bit for bit.
    @Test(arguments: Array(Fixtures.cases.prefix(12)))
    func scoresEqualTheInMemoryPredictions(_ fixture: Fixtures.Case) throws {
        let model = try ModelLoader.load(path: fixture.path(fixture.model))
        let table = try FeatureTable(csv: try Fixtures.bytes(fixture.input), metadata: model.metadata)
        let expected = try model.predict(table.values, rows: table.rows)
        let output = temporary("out.csv")
        defer { try? FileManager.default.removeItem(atPath: output) }
        let summary = try BatchScorer(threads: 3, chunkBytes: 4096).score(model: model, input: fixture.path(fixture.input), output: output)
        #expect(summary.rows == table.rows)
        let (header, rows) = try scores(output)
        #expect(header == model.metadata.output.columns.joined(separator: ","))
        #expect(rows.flatMap { $0 }.elementsEqual(expected) { $0 == $1 || ($0.isNaN && $1.isNaN) })
    }

    @Test func quirksOfRealFiles() throws {
        let fixture = try #require(Fixtures.cases.first { $0.features == 8 && $0.classes <= 2 })
        let model = try ModelLoader.load(path: fixture.path(fixture.model))
        // Matched by name: the columns may come in any order.
        let features = try #require(model.metadata.featureNames)
        // A byte order mark, CRLF, a blank line, an id with a comma and a line break in quotes,
        // columns in another order than the model's, and two kept columns in --keep order.
        let rows = [
            ("1", "x", [0.5, 1.0, 4.0, 200.0, Double.nan, 0.4, 1.7, 0.3]),
            ("\"two, \"\"2\"\"\nlines\"", "y", [0.3, 0.0, 4.0, Double.nan, -0.45, 0.05, 1.2, -0.8]),
            ("3", "z", [-1.0, 2.0, 1.0, 10.0, 1.0, 0.1, 0.2, 0.3]),
        ]
        var text = "\u{FEFF}" + (["tag"] + features.reversed() + ["id"]).joined(separator: ",") + "\r\n\r\n"
        for (id, tag, values) in rows {
            text += ([tag] + values.reversed().map { $0.isNaN ? "" : String($0) } + [id]).joined(separator: ",") + "\r\n"
        }
        let input = temporary("in.csv")
        let output = temporary("out.csv")
        try text.write(toFile: input, atomically: true, encoding: .utf8)
        defer { for path in [input, output] { try? FileManager.default.removeItem(atPath: path) } }
        _ = try BatchScorer(threads: 2, chunkBytes: 4096, keep: ["id", "tag"]).score(model: model, input: input, output: output)
        let expected = try model.predict(rows.flatMap(\.2), rows: rows.count)
        let written = try CSVRecords.read(Array(try String(contentsOfFile: output, encoding: .utf8).utf8))
        #expect(written[0] == ["id", "tag"] + model.metadata.output.columns)
        #expect(written.dropFirst().map { Array($0.prefix(2)) } == [["1", "x"], ["two, \"2\"\nlines", "y"], ["3", "z"]])
        #expect(written.dropFirst().map { Double($0[2])! } == expected)
    }

    @Test func badRowsNameTheirLineAndLeaveNoOutput() throws {
        let fixture = try #require(Fixtures.cases.first { $0.features == 8 })
        let model = try ModelLoader.load(path: fixture.path(fixture.model))
        let header = (0..<8).map { "f\($0)" }.joined(separator: ",")
        let good = Array(repeating: "0.5", count: 8).joined(separator: ",")
        let cases: [(String, String)] = [
            (Array(repeating: good, count: 3000).joined(separator: "\n") + "\n0.5,0.5,abc,0.5,0.5,0.5,0.5,0.5\n", "line 3002: column 3 (f2): \"abc\" is not a number"),
            (Array(repeating: good, count: 2000).joined(separator: "\n") + "\n0.5,0.5\n", "line 2002: 2 columns, but the header has 8"),
            (good + "\n" + good + ",9\n", "line 3: more columns than the header's 8"),
            (good + "\n\"open," + good + "\n", "line 3: a quoted field is never closed"),
        ]
        for (body, message) in cases {
            let input = temporary("bad.csv")
            let output = temporary("out.csv")
            try (header + "\n" + body).write(toFile: input, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: input) }
            #expect(throws: WharfError.self) { try BatchScorer(threads: 2, chunkBytes: 4096).score(model: model, input: input, output: output) }
            do {
                _ = try BatchScorer(threads: 2, chunkBytes: 4096).score(model: model, input: input, output: output)
            } catch {
                #expect(error.message.contains(message), "\(error.message)")
            }
            #expect(!FileManager.default.fileExists(atPath: output))
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: FileManager.default.temporaryDirectory.path)
                .filter { $0.hasPrefix((output as NSString).lastPathComponent) }
            #expect(leftovers.isEmpty, "a partial output was left behind")
        }
        #expect(throws: WharfError.self) { try BatchScorer().score(model: model, input: temporary("missing.csv"), output: temporary("o.csv")) }
        #expect(throws: WharfError.self) { try BatchScorer(keep: ["nope"]).score(model: model, input: fixture.path(fixture.input), output: temporary("o.csv")) }
    }

    /// The cell parser agrees with the standard library on every spelling it meets.
    @Test func cellsParseAsTheStandardLibraryReadsThem() {
        var generator = SystemRandomNumberGenerator()
        var texts = ["0", "-0", "+1", "1e5", "1E-5", "-2.5e+3", "  3.5 ", ".5", "5.", "007", "1e400", "-1e-400", "123456789012345678901234",
                     "0.1", "0.30000000000000004", "9007199254740993", "4.9e-324", "1.7976931348623157e308", "inf", "nan", "NaN", ""]
        for _ in 0..<5000 {
            let value = Double(bitPattern: UInt64.random(in: 0...UInt64.max, using: &generator))
            guard value.isFinite else { continue }
            texts.append(value.description)
            texts.append(String(format: "%.6g", value))
            texts.append(String(format: "%.17g", Double.random(in: -1e6...1e6, using: &generator)))
            texts.append(String(Int.random(in: -1_000_000...1_000_000, using: &generator)))
        }
        for text in texts {
            let bytes = Array(text.utf8)
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            let expected = trimmed.isEmpty || trimmed.lowercased() == "nan" ? Double.nan : Double(trimmed)
            let parsed = bytes.withUnsafeBufferPointer { CSVNumber.parse($0, 0, $0.count) }
            let fast = CSVNumber.exactPowers.withUnsafeBufferPointer { powers in
                bytes.withUnsafeBufferPointer { CSVNumber.field($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, 0, $0.count, powers: powers.baseAddress!).0 }
            }
            for got in [parsed, fast] {
                #expect(got?.bitPattern == expected?.bitPattern || (got?.isNaN == true && expected?.isNaN == true), "\(text): \(String(describing: got)) vs \(String(describing: expected))")
            }
        }
    }
}
