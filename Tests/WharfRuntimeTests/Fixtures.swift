import Foundation
import Testing
import WharfCore
import WharfRuntime

/// The committed fixtures made by `scripts/make_fixtures.sh` with the real libraries.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        var name: String
        var library: String
        var format: String
        var objective: String
        var task: String
        var features: Int
        var classes: Int
        var trees: Int
        var model: String
        var input: String
        var expected: String
        var tolerance: Double
        var notes: String?

        var testDescription: String { name }

        func path(_ relative: String) -> String { Fixtures.directory.appendingPathComponent(relative).path }
    }

    private struct Manifest: Decodable {
        var cases: [Case]
    }

    static let cases: [Case] = {
        let url = directory.appendingPathComponent("manifest.json")
        guard let data = try? Data(contentsOf: url),
            let manifest = try? JSONDecoder().decode(Manifest.self, from: data)
        else { return [] }
        return manifest.cases
    }()

    static func bytes(_ relative: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: directory.appendingPathComponent(relative)))
    }

    /// A CSV of numbers with a header row, as a row-major matrix.
    static func matrix(_ relative: String) throws -> (header: [String], rows: [[Double]]) {
        let text = String(decoding: try bytes(relative), as: UTF8.self)
        var lines = text.split(whereSeparator: \.isNewline).map(String.init)
        let header = lines.removeFirst().split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let rows = lines.map { line in
            line.split(separator: ",", omittingEmptySubsequences: false).map { Double($0) ?? .nan }
        }
        return (header, rows)
    }
}
