import Foundation
import Testing
import WharfCore
@testable import WharfRuntime

/// Files and values at the edges of the formats, read as the reference libraries read them.
@Suite("Format edges")
struct FormatEdgeTests {
    private func bytes(_ relative: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: Fixtures.directory.appendingPathComponent(relative)))
    }

    private func rows(_ model: Model) -> [Double] {
        var random = SystemRandomNumberGenerator()
        return (0..<(20 * model.metadata.featureCount)).map { _ in Double.random(in: -3...3, using: &random) }
    }

    /// A LightGBM file with CRLF line ends (saved on Windows) loads, and predicts as the LF one.
    @Test func lightGBMWithCRLFLineEnds() throws {
        let unix = try bytes("models/lgb_binary.txt")
        let windows = Array(String(decoding: unix, as: UTF8.self).replacingOccurrences(of: "\n", with: "\r\n").utf8)
        let (a, b) = (try ModelLoader.load(bytes: unix), try ModelLoader.load(bytes: windows))
        let input = rows(a)
        #expect(try a.predict(input, rows: 20) == b.predict(input, rows: 20))
    }

    /// A JSON model after a UTF-8 byte order mark loads, and predicts as without it.
    @Test func jsonAfterAByteOrderMark() throws {
        let plain = try bytes("models/xgb3_binary_logistic.json")
        let (a, b) = (try ModelLoader.load(bytes: plain), try ModelLoader.load(bytes: [0xEF, 0xBB, 0xBF] + plain))
        let input = rows(a)
        #expect(try a.predict(input, rows: 20) == b.predict(input, rows: 20))
    }

    /// LightGBM truncates a categorical value to an int before testing it: -0.5 is category 0
    /// (XGBoost refuses any x < 0, which stays so).
    @Test func lightGBMCategoriesTruncateTowardZero() throws {
        let model = try ModelLoader.load(bytes: try bytes("models/lgb_categorical.txt"))
        // Columns 0 and 4 are categorical (feature_infos lists their categories).
        var zero = [9.0, 0.0, 5.0, 146.0, 0.0, -0.37]
        var negative = zero
        negative[4] = -0.5
        #expect(try model.predict(negative, rows: 1) == model.predict(zero, rows: 1))
        zero[0] = 0
        negative = zero
        negative[0] = -0.9
        #expect(try model.predict(negative, rows: 1) == model.predict(zero, rows: 1))
        // -1 is below every code: not the same as 0.
        var belowZero = zero
        belowZero[0] = -1
        #expect(try model.predict(belowZero, rows: 1) == model.predict(belowZero.map { $0 == -1 ? -7 : $0 }, rows: 1))
    }

    /// A field holding a CRLF line break is quoted when written ("\r\n" is one Character, equal
    /// to neither "\n" nor "\r").
    @Test func aCRLFInsideAFieldIsQuoted() {
        #expect(CSVRecords.escape("a\r\nb") == "\"a\r\nb\"")
        #expect(CSVRecords.escape("plain") == "plain")
    }
}
