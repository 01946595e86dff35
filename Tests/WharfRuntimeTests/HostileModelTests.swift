import Foundation
import Testing
import WharfCore
import WharfRuntime

/// Broken and malicious model files get a typed error that names the problem: never a crash,
/// a hang or an unbounded allocation. The corpus is made by scripts/make_hostile_corpus.py.
@Suite("Hostile model files")
struct HostileModelTests {
    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        var file: String
        var code: String
        var contains: String
        var testDescription: String { file }
    }

    private struct Manifest: Decodable {
        var cases: [Case]
    }

    static let directory = Fixtures.directory.appendingPathComponent("hostile")

    static let cases: [Case] = {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent("manifest.json")),
            let manifest = try? JSONDecoder().decode(Manifest.self, from: data)
        else { return [] }
        return manifest.cases
    }()

    @Test("every corpus file is listed with its expected error")
    func corpusIsComplete() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path).filter { $0 != "manifest.json" }
        #expect(files.count >= 50)
        #expect(Set(files) == Set(Self.cases.map(\.file)))
    }

    @Test("each file is refused with a typed error naming the problem", arguments: cases)
    func refused(_ hostile: Case) {
        let path = Self.directory.appendingPathComponent(hostile.file).path
        do {
            let model = try ModelLoader.load(path: path)
            Issue.record("\(hostile.file) loaded as \(model.metadata.format) instead of failing")
        } catch {
            #expect(error.code.description == hostile.code, "\(hostile.file): \(error)")
            #expect(error.message.contains(hostile.contains), "\(hostile.file): \(error.message)")
        }
    }

    /// Seeded random corruption of every real fixture: each mutant either loads (and then
    /// predicts without trouble) or fails with a WharfError. Anything else crashes the test.
    @Test("mutated fixtures load or fail cleanly", arguments: Fixtures.cases.filter { $0.name.hasSuffix("_3") || $0.name.contains("categorical") || $0.name.contains("ubj") || $0.name.contains("linear_tree") })
    func mutations(_ fixture: Fixtures.Case) throws {
        let original = try Fixtures.bytes(fixture.model)
        var generator = SeededGenerator(seed: UInt64(fixture.name.utf8.reduce(0) { $0 &* 31 &+ Int($1) }.magnitude) ^ 0x5EED)
        var loaded = 0
        for round in 0..<150 {
            var bytes = original
            switch round % 3 {
            case 0:
                bytes.removeLast(Int.random(in: 1...bytes.count, using: &generator))
            case 1:
                for _ in 0..<Int.random(in: 1...8, using: &generator) {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                }
            default:
                // Digits are where sizes and indices live: change one to another digit.
                let digits = bytes.indices.filter { bytes[$0] >= 0x30 && bytes[$0] <= 0x39 }
                if let index = digits.randomElement(using: &generator) {
                    bytes[index] = UInt8.random(in: 0x30...0x39, using: &generator)
                }
            }
            guard let model = try? ModelLoader.load(bytes: bytes) else { continue }
            loaded += 1
            let rows = 4
            let input = (0..<(rows * model.metadata.featureCount)).map { _ in Double.random(in: -3...3, using: &generator) }
            let output = try model.predict(input, rows: rows)
            #expect(output.count == rows * model.metadata.output.width)
        }
        #expect(loaded < 150)
    }
}
