import WharfCore

/// A CSV file read as a model's input: a row-major matrix of `rows × featureCount` doubles.
///
/// Columns are matched to the model's feature names when the header holds all of them (other
/// columns, a label say, are ignored); when the header holds none of them and has exactly one
/// column per feature, columns are taken in order. Empty cells and `NaN` are missing values.
/// Any other cell that is not a number is an error naming its line and column.
///
/// With a `labelColumn` (validation data), that column is read into `labels` and is never a
/// feature; every label must be a number.
public struct FeatureTable: Sendable {
    public var rows: Int
    public var featureCount: Int
    public var values: [Double]
    /// The label column's values, one per row; empty without a label column.
    public var labels: [Double] = []

    public init(csv bytes: [UInt8], metadata: ModelMetadata, labelColumn: String? = nil) throws(WharfError) {
        var reader = CSVReader(bytes: bytes)
        guard let header = reader.next() else { throw WharfError(.invalidInput, "the CSV file is empty: a header row is required") }
        let names = header.fields.map { $0.strippingBlanks() }
        var labelIndex: Int?
        if let labelColumn {
            guard let index = names.firstIndex(of: labelColumn) else {
                throw WharfError(.invalidInput, "the CSV has no label column \"\(labelColumn)\" (its columns: \(names.prefix(8).joined(separator: ", "))\(names.count > 8 ? ", …" : ""))")
            }
            labelIndex = index
        }
        let featureColumns = names.indices.filter { $0 != labelIndex }
        let columns = try Self.columns(for: metadata, header: featureColumns.map { names[$0] }).map { featureColumns[$0] }
        featureCount = metadata.featureCount
        rows = 0
        values = []
        while let record = reader.next() {
            if record.unterminatedQuote {
                throw WharfError(.invalidInput, "line \(record.line): a quoted field is never closed")
            }
            guard record.fields.count == names.count else {
                throw WharfError(.invalidInput, "line \(record.line): \(record.fields.count) columns, but the header has \(names.count)")
            }
            for (feature, column) in columns.enumerated() {
                let cell = record.fields[column].strippingBlanks()
                guard let value = Self.parseCell(cell) else {
                    throw WharfError(.invalidInput, "line \(record.line), column \(column + 1) (\(names[column])): \"\(cell.prefix(60))\" is not a number; feature \(feature) must be numeric, empty or NaN")
                }
                values.append(value)
            }
            if let labelIndex {
                let cell = record.fields[labelIndex].strippingBlanks()
                guard let label = Double(cell), label.isFinite else {
                    throw WharfError(.invalidInput, "line \(record.line), column \(labelIndex + 1) (\(names[labelIndex])): label \"\(cell.prefix(60))\" is not a finite number")
                }
                labels.append(label)
            }
            rows += 1
        }
    }

    static func parseCell(_ cell: String) -> Double? {
        var cell = cell
        // The fast reader gives the standard library's answers (tested), without its cost.
        return cell.withUTF8 { CSVNumber.parse($0, 0, $0.count) }
    }

    /// For each model feature, the CSV column that holds it.
    static func columns(for metadata: ModelMetadata, header: [String]) throws(WharfError) -> [Int] {
        var positions: [String: Int] = [:]
        for (index, name) in header.enumerated() {
            guard positions.updateValue(index, forKey: name) == nil else {
                throw WharfError(.invalidInput, "the CSV header names column \"\(name)\" twice")
            }
        }
        if let features = metadata.featureNames {
            let found = features.compactMap { positions[$0] }
            if found.count == features.count { return found }
            if !found.isEmpty {
                let missing = features.filter { positions[$0] == nil }
                throw WharfError(.invalidInput, "the CSV header lacks \(missing.count) of the model's features: \(missing.prefix(5).joined(separator: ", "))\(missing.count > 5 ? ", …" : "")")
            }
        }
        guard header.count == metadata.featureCount else {
            let why = metadata.featureNames == nil ? "the model has no feature names" : "no column matches a feature name"
            throw WharfError(.invalidInput, "the CSV has \(header.count) columns but the model reads \(metadata.featureCount) features, and \(why)")
        }
        return Array(0..<header.count)
    }
}

extension String {
    /// The string without leading and trailing spaces and tabs.
    fileprivate func strippingBlanks() -> String {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isBlank($0) }) else { return "" }
        let last = lastIndex(where: { !isBlank($0) })!
        return String(self[first...last])
    }
}

/// A CSV file as records of text fields (RFC 4180), for callers that need the cells themselves.
public enum CSVRecords {
    /// Every record, the header first; an unterminated quote or a ragged row names its line.
    public static func read(_ bytes: [UInt8]) throws(WharfError) -> [[String]] {
        var reader = CSVReader(bytes: bytes)
        var records: [[String]] = []
        while let record = reader.next() {
            if record.unterminatedQuote { throw WharfError(.invalidInput, "line \(record.line): a quoted field is never closed") }
            if let width = records.first?.count, record.fields.count != width {
                throw WharfError(.invalidInput, "line \(record.line): \(record.fields.count) columns, but the header has \(width)")
            }
            records.append(record.fields)
        }
        guard !records.isEmpty else { throw WharfError(.invalidInput, "the CSV file is empty: a header row is required") }
        return records
    }

    /// A field as CSV text, quoted when it must be.
    public static func escape(_ field: String) -> String {
        // By bytes: "\r\n" is one Character, equal to neither "\n" nor "\r".
        guard field.utf8.contains(where: { $0 == 0x2C || $0 == 0x22 || $0 == 0x0A || $0 == 0x0D }) else { return field }
        var quoted = "\""
        for character in field {
            if character == "\"" { quoted.append("\"") }
            quoted.append(character)
        }
        return quoted + "\""
    }
}
