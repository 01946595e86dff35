import WharfCore

/// Splits CSV text (RFC 4180: quoted fields, doubled quotes, CRLF or LF) into records.
///
/// Records are produced one at a time so a caller can convert and drop them as it goes.
struct CSVReader: Sequence, IteratorProtocol {
    private let bytes: [UInt8]
    private var position = 0
    /// 1-based line number where the next record starts.
    private(set) var line = 1

    init(bytes: [UInt8]) {
        self.bytes = bytes
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
    }

    /// The next record and the line it started on, or nil at the end. A record with an
    /// unterminated quote is returned as far as it goes and flagged.
    mutating func next() -> (line: Int, fields: [String], unterminatedQuote: Bool)? {
        // Blank lines separate nothing; skip them.
        while position < bytes.count, bytes[position] == 0x0A || bytes[position] == 0x0D {
            if bytes[position] == 0x0A { line += 1 }
            position += 1
        }
        guard position < bytes.count else { return nil }
        let startLine = line
        var fields: [String] = []
        var field: [UInt8] = []
        var inQuotes = false
        while position < bytes.count {
            let byte = bytes[position]
            position += 1
            if inQuotes {
                if byte == UInt8(ascii: "\"") {
                    if position < bytes.count, bytes[position] == UInt8(ascii: "\"") {
                        field.append(byte)
                        position += 1
                    } else {
                        inQuotes = false
                    }
                } else {
                    if byte == 0x0A { line += 1 }
                    field.append(byte)
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                inQuotes = true
            case UInt8(ascii: ","):
                fields.append(String(decoding: field, as: UTF8.self))
                field.removeAll(keepingCapacity: true)
            case 0x0A:
                line += 1
                fields.append(String(decoding: field, as: UTF8.self))
                return (startLine, fields, false)
            case 0x0D:
                break
            default:
                field.append(byte)
            }
        }
        fields.append(String(decoding: field, as: UTF8.self))
        return (startLine, fields, inQuotes)
    }
}
