#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization
import WharfCore

/// Scores a CSV file of any size into another, in constant memory: the input is read in
/// chunks cut at record boundaries, each round of `threads` chunks is parsed, predicted and
/// formatted in parallel, and the outputs are written in input order.
///
/// Columns are matched to the model's features as `FeatureTable` matches them; `keep` columns
/// (an id, say) are copied to the output, as written, ahead of the model's output columns.
/// The output appears under its name only when every row was scored: it is written to a
/// temporary file that is renamed at the end, and removed on any error.
public struct BatchScorer {
    public var threads: Int
    /// Bytes of input a thread handles at a time.
    public var chunkBytes: Int
    public var keep: [String]

    public init(threads: Int = 2, chunkBytes: Int = 256 << 10, keep: [String] = []) {
        self.threads = max(1, threads)
        self.chunkBytes = max(4096, chunkBytes)
        self.keep = keep
    }

    public struct Summary: Sendable {
        public var rows: Int
        public var inputBytes: Int
    }

    public func score(model: Model, input: String, output: String) throws(WharfError) -> Summary {
        let inputFile = open(input, O_RDONLY)
        guard inputFile >= 0 else { throw WharfError(.notFound, "cannot read \(input): \(String(cString: strerror(errno)))") }
        defer { close(inputFile) }
        let temporary = output + ".partial-\(getpid())"
        let outputFile = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard outputFile >= 0 else { throw WharfError(.io, "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        var finished = false
        defer {
            close(outputFile)
            if !finished { unlink(temporary) }
        }
        let summary = try score(model: model, reading: inputFile, writing: outputFile)
        guard fsync(outputFile) == 0, rename(temporary, output) == 0 else {
            throw WharfError(.io, "cannot move the scores into \(output): \(String(cString: strerror(errno)))")
        }
        finished = true
        return summary
    }

    private func score(model: Model, reading input: Int32, writing output: Int32) throws(WharfError) -> Summary {
        var reader = ChunkReader(file: input, chunkBytes: chunkBytes)
        guard let headerLine = try reader.header() else { throw WharfError(.invalidInput, "the CSV file is empty: a header row is required") }
        var headerRecords = CSVReader(bytes: headerLine)
        let names = (headerRecords.next()?.fields ?? []).map { $0.trimmingBlanks() }
        let layout = try Layout(names: names, metadata: model.metadata, keep: keep)

        var header = (keep + model.metadata.output.columns).map(CSVRecords.escape).joined(separator: ",")
        header += "\n"
        try Self.write(Array(header.utf8), to: output)

        // Each worker takes the next chunk from the reader, scores it, and hands the result to
        // the writer, which writes results in input order as soon as they are next. At most
        // 2 × threads chunks are between reading and writing, so memory stays bounded.
        let pipeline = Mutex(Pipeline(reader: reader))
        let room = DispatchSemaphore(value: 2 * threads)
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            while true {
                room.wait()
                let taken = pipeline.withLock { pipeline -> (index: Int, chunk: Chunk)? in
                    guard pipeline.failure == nil else { return nil }
                    switch Result(catching: { () throws(WharfError) in try pipeline.reader.next() }) {
                    case .success(let chunk?):
                        defer { pipeline.taken += 1 }
                        return (pipeline.taken, chunk)
                    case .success(nil):
                        return nil
                    case .failure(let error):
                        pipeline.failure = error
                        return nil
                    }
                }
                guard let taken else {
                    room.signal()
                    return
                }
                let result = Result { () throws(WharfError) in try Self.process(taken.chunk, layout: layout, model: model) }
                let written: Int = pipeline.withLock { pipeline in
                    pipeline.done[taken.index] = result
                    var count = 0
                    while let next = pipeline.done.removeValue(forKey: pipeline.written) {
                        pipeline.written += 1
                        count += 1
                        guard pipeline.failure == nil else { continue }
                        switch next {
                        case .success(let (bytes, rows)):
                            if case .failure(let error) = Result(catching: { () throws(WharfError) in try Self.write(bytes, to: output) }) {
                                pipeline.failure = error
                            } else {
                                pipeline.rows += rows
                            }
                        case .failure(let error):
                            pipeline.failure = error
                        }
                    }
                    return count
                }
                for _ in 0..<written { room.signal() }
            }
        }
        let finished = pipeline.withLock { $0 }
        if let failure = finished.failure { throw failure }
        return Summary(rows: finished.rows, inputBytes: finished.reader.bytesRead)
    }

    private struct Pipeline: Sendable {
        var reader: ChunkReader
        var taken = 0
        var written = 0
        var rows = 0
        var done: [Int: Result<(bytes: [UInt8], rows: Int), WharfError>] = [:]
        var failure: WharfError?
    }

    private static func write(_ bytes: [UInt8], to file: Int32) throws(WharfError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(file, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { throw WharfError(.io, "writing the scores failed: \(String(cString: strerror(errno)))") }
            offset += written
        }
    }

    /// Which input column feeds each feature, and which are kept.
    struct Layout: Sendable {
        var columnCount: Int
        /// For each input column, the feature it feeds (-1: none).
        var featureOfColumn: [Int]
        var keptColumns: [Int]
        /// For each input column, its place among the kept columns (-1: not kept).
        var keptSlotOfColumn: [Int]
        var featureCount: Int
        var names: [String]

        init(names: [String], metadata: ModelMetadata, keep: [String]) throws(WharfError) {
            self.names = names
            columnCount = names.count
            featureCount = metadata.featureCount
            var keptColumns: [Int] = []
            for name in keep {
                guard let index = names.firstIndex(of: name) else {
                    throw WharfError(.invalidInput, "--keep \(name): the CSV has no such column (its columns: \(names.prefix(8).joined(separator: ", "))\(names.count > 8 ? ", …" : ""))")
                }
                guard !keptColumns.contains(index) else { throw WharfError(.invalidInput, "--keep names \(name) twice") }
                keptColumns.append(index)
            }
            self.keptColumns = keptColumns
            keptSlotOfColumn = Array(repeating: -1, count: names.count)
            for (slot, column) in keptColumns.enumerated() { keptSlotOfColumn[column] = slot }
            // Kept columns that are not features (an id) must not count as features.
            let candidates = names.indices.filter { !keptColumns.contains($0) || metadata.featureNames?.contains(names[$0]) == true }
            let columns = try FeatureTable.columns(for: metadata, header: candidates.map { names[$0] }).map { candidates[$0] }
            featureOfColumn = Array(repeating: -1, count: names.count)
            for (feature, column) in columns.enumerated() { featureOfColumn[column] = feature }
        }
    }

    /// Parses, predicts and formats one chunk of whole records.
    private static func process(_ chunk: Chunk, layout: Layout, model: Model) throws(WharfError) -> (bytes: [UInt8], rows: Int) {
        let features = layout.featureCount
        let keeps = !layout.keptColumns.isEmpty
        // One row per line break at most (plus a last line without one): the matrix is sized
        // once, missing values already in place.
        let capacity = chunk.lineBreaks + 1
        var values = [Double](repeating: .nan, count: capacity * features)
        /// Per row, the kept fields in --keep order, each followed by a comma.
        var kept: [[UInt8]] = []
        var slots = [[UInt8]](repeating: [], count: layout.keptColumns.count)
        var rows = 0
        try chunk.bytes.withUnsafeBufferPointer { bytes throws(WharfError) in
            try values.withUnsafeMutableBufferPointer { values throws(WharfError) in
                try layout.featureOfColumn.withUnsafeBufferPointer { featureOf throws(WharfError) in
                    try CSVNumber.exactPowers.withUnsafeBufferPointer { powers throws(WharfError) in
                        guard let base = bytes.baseAddress, let powers = powers.baseAddress else { return }
                        var lineStart = 0
                        let end = bytes.count
                        while lineStart < end {
                            var lineEnd = lineStart
                            var quoted = false
                            if chunk.hasQuotes {
                                var inQuotes = false
                                while lineEnd < end, inQuotes || base[lineEnd] != 0x0A {
                                    if base[lineEnd] == UInt8(ascii: "\"") {
                                        inQuotes.toggle()
                                        quoted = true
                                    }
                                    lineEnd += 1
                                }
                            } else {
                                lineEnd = Self.find(0x0A, base, lineStart, end)
                            }
                            var contentEnd = lineEnd
                            if contentEnd > lineStart, base[contentEnd - 1] == 0x0D { contentEnd -= 1 }
                            defer { lineStart = lineEnd + 1 }
                            if contentEnd == lineStart { continue }  // a blank line
                            let row = values.baseAddress! + rows * features
                            if quoted {
                                try parseQuoted(bytes, lineStart, contentEnd, chunk: chunk, layout: layout, into: row, slots: &slots)
                            } else {
                                var column = 0
                                var index = lineStart
                                while true {
                                    guard column < featureOf.count else {
                                        throw chunk.error(at: lineStart, "more columns than the header's \(layout.columnCount)")
                                    }
                                    let feature = featureOf[column]
                                    let delimiter: Int
                                    if feature >= 0 {
                                        let (value, next) = CSVNumber.field(base, index, contentEnd, powers: powers)
                                        guard let value else {
                                            throw chunk.error(at: lineStart, "column \(column + 1) (\(layout.names[column])): \"\(String(decoding: UnsafeBufferPointer(start: base + index, count: min(next - index, 60)), as: UTF8.self))\" is not a number")
                                        }
                                        row[feature] = value
                                        delimiter = next
                                    } else {
                                        delimiter = Self.find(UInt8(ascii: ","), base, index, contentEnd)
                                    }
                                    if keeps, layout.keptSlotOfColumn[column] >= 0 {
                                        slots[layout.keptSlotOfColumn[column]] = Array(UnsafeBufferPointer(start: base + index, count: delimiter - index))
                                    }
                                    column += 1
                                    if delimiter >= contentEnd { break }
                                    index = delimiter + 1
                                }
                                guard column == layout.columnCount else {
                                    throw chunk.error(at: lineStart, "\(column) columns, but the header has \(layout.columnCount)")
                                }
                            }
                            if keeps {
                                var joined: [UInt8] = []
                                for slot in slots {
                                    joined += slot
                                    joined.append(UInt8(ascii: ","))
                                }
                                kept.append(joined)
                            }
                            rows += 1
                        }
                    }
                }
            }
        }
        values.removeLast(values.count - rows * features)
        let width = model.metadata.output.width
        let predictions = try model.predict(values, rows: rows)
        var out: [UInt8] = []
        out.reserveCapacity(rows * (width * 22 + (keeps ? 16 : 0)))
        for row in 0..<rows {
            if keeps { out += kept[row] }
            for column in 0..<width {
                if column > 0 { out.append(UInt8(ascii: ",")) }
                Self.appendNumber(predictions[row * width + column], to: &out)
            }
            out.append(0x0A)
        }
        return (out, rows)
    }

    /// The position of the first `byte` in `start..<end`, or `end`.
    @inline(__always)
    private static func find(_ byte: UInt8, _ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> Int {
        guard start < end, let found = memchr(base + start, Int32(byte), end - start) else { return end }
        return UnsafeRawPointer(base).distance(to: UnsafeRawPointer(found))
    }

    /// A record with quoted fields, read with the RFC 4180 reader.
    private static func parseQuoted(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, chunk: Chunk, layout: Layout,
                                    into row: UnsafeMutablePointer<Double>, slots: inout [[UInt8]]) throws(WharfError) {
        var reader = CSVReader(bytes: Array(bytes[start..<end]))
        guard let record = reader.next(), !record.unterminatedQuote else { throw chunk.error(at: start, "a quoted field is never closed") }
        guard record.fields.count == layout.columnCount else {
            throw chunk.error(at: start, "\(record.fields.count) columns, but the header has \(layout.columnCount)")
        }
        for (column, field) in record.fields.enumerated() {
            let feature = layout.featureOfColumn[column]
            if feature >= 0 {
                let cell = Array(field.utf8)
                guard let value = cell.withUnsafeBufferPointer({ CSVNumber.parse($0, 0, $0.count) }) else {
                    throw chunk.error(at: start, "column \(column + 1) (\(layout.names[column])): \"\(field.prefix(60))\" is not a number")
                }
                row[feature] = value
            }
            if layout.keptSlotOfColumn[column] >= 0 {
                slots[layout.keptSlotOfColumn[column]] = Array(CSVRecords.escape(field).utf8)
            }
        }
    }

    /// The shortest text that reads back as the same double (what `description` writes).
    @inline(__always)
    static func appendNumber(_ value: Double, to out: inout [UInt8]) {
        if value.isNaN {
            out += Array("NaN".utf8)
            return
        }
        out += value.description.utf8
    }
}

/// A run of whole records and where it starts.
struct Chunk: Sendable {
    var bytes: [UInt8]
    /// The 1-based line of the input on which the chunk's first record starts.
    var firstLine: Int
    var hasQuotes: Bool
    var lineBreaks: Int

    func error(at offset: Int, _ message: String) -> WharfError {
        let line = firstLine + bytes[..<offset].reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
        return WharfError(.invalidInput, "line \(line): \(message)")
    }
}

/// Reads a file in chunks that end at a record boundary (a line break outside quotes).
struct ChunkReader {
    let file: Int32
    let chunkBytes: Int
    private var pending: [UInt8] = []
    private var atEnd = false
    private var nextLine = 1
    private(set) var bytesRead = 0

    init(file: Int32, chunkBytes: Int) {
        self.file = file
        self.chunkBytes = chunkBytes
    }

    private mutating func fill(upTo size: Int) throws(WharfError) {
        while !atEnd, pending.count < size {
            let want = size - pending.count
            let old = pending.count
            pending.append(contentsOf: repeatElement(0, count: want))
            let got = pending.withUnsafeMutableBytes { read(file, $0.baseAddress! + old, want) }
            if got < 0, errno == EINTR {
                pending.removeLast(want)
                continue
            }
            guard got >= 0 else { throw WharfError(.io, "reading the input failed: \(String(cString: strerror(errno)))") }
            pending.removeLast(want - got)
            bytesRead += got
            if got == 0 { atEnd = true }
        }
    }

    /// The header line (without its line break), after a UTF-8 byte order mark.
    mutating func header() throws(WharfError) -> [UInt8]? {
        try fill(upTo: chunkBytes)
        if pending.starts(with: [0xEF, 0xBB, 0xBF]) { pending.removeFirst(3) }
        while true {
            if let end = recordEnd(in: pending[...], last: false) {
                let line = Array(pending[..<end])
                pending.removeFirst(end + 1)
                nextLine += 1 + line.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
                return line
            }
            if atEnd {
                defer { pending = [] }
                return pending.isEmpty ? nil : pending
            }
            guard pending.count < 64 << 20 else { throw WharfError(.invalidInput, "the header row is longer than 64 MB") }
            try fill(upTo: pending.count * 2)
        }
    }

    mutating func next() throws(WharfError) -> Chunk? {
        try fill(upTo: chunkBytes)
        guard !pending.isEmpty else { return nil }
        var cut: Int?
        while true {
            if atEnd {
                cut = pending.count
                break
            }
            if let end = recordEnd(in: pending[...], last: true) {
                cut = end + 1
                break
            }
            // One record longer than a chunk: read on.
            guard pending.count < 256 << 20 else { throw WharfError(.invalidInput, "line \(nextLine): a record longer than 256 MB") }
            try fill(upTo: pending.count * 2)
        }
        let length = cut!
        let bytes = Array(pending[..<length])
        pending.removeFirst(length)
        let hasQuotes = bytes.withUnsafeBufferPointer { memchr($0.baseAddress!, Int32(UInt8(ascii: "\"")), $0.count) != nil }
        let lineBreaks = bytes.withUnsafeBufferPointer { buffer in
            var count = 0
            var position = UnsafeRawPointer(buffer.baseAddress!)
            let end = UnsafeRawPointer(buffer.baseAddress! + buffer.count)
            while position < end, let found = memchr(position, 0x0A, end - position) {
                count += 1
                position = UnsafeRawPointer(found) + 1
            }
            return count
        }
        let chunk = Chunk(bytes: bytes, firstLine: nextLine, hasQuotes: hasQuotes, lineBreaks: lineBreaks)
        nextLine += lineBreaks
        return chunk
    }

    /// The index of the first (or, with `last`, the last) line break outside quotes.
    private func recordEnd(in bytes: ArraySlice<UInt8>, last: Bool) -> Int? {
        let hasQuotes = bytes.withUnsafeBufferPointer { memchr($0.baseAddress!, Int32(UInt8(ascii: "\"")), $0.count) != nil }
        if !hasQuotes {
            return last ? bytes.lastIndex(of: 0x0A) : bytes.firstIndex(of: 0x0A)
        }
        var inQuotes = false
        var found: Int?
        for index in bytes.indices {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                inQuotes.toggle()
            } else if byte == 0x0A, !inQuotes {
                if !last { return index }
                found = index
            }
        }
        return found
    }
}

/// A CSV cell as a number: empty or NaN is missing (NaN); surrounding blanks are ignored.
enum CSVNumber {
    /// The field that starts at `start` and ends at the next comma (or `end`): its value (nil
    /// when it is not a number) and where it ends. Plain decimals (`-0.123`, `42`) take one
    /// pass and one exact division; anything else goes through `parse`.
    @inline(__always)
    static func field(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int, powers: UnsafePointer<Double>) -> (Double?, Int) {
        var index = start
        // The sign without a branch: in a column of features it is as likely as not, so a
        // branch on it is mispredicted half the time.
        var sign: UInt64 = 0
        if index < end {
            let minus = base[index] == UInt8(ascii: "-")
            sign = UInt64(minus ? 1 : 0) &<< 63
            index &+= minus ? 1 : 0
            if !minus, base[index] == UInt8(ascii: "+") { index &+= 1 }
        }
        var mantissa: UInt64 = 0
        var digits = digitRun(base, &index, end, &mantissa)
        var scale = 0
        if index < end, base[index] == UInt8(ascii: ".") {
            index &+= 1
            scale = digitRun(base, &index, end, &mantissa)
            digits &+= scale
        }
        if index == end || base[index] == UInt8(ascii: ",") {
            if digits == 0, index == start { return (.nan, index) }  // an empty cell
            // Both operands exact: one correctly rounded division.
            if digits > 0, digits <= 18, scale <= 22, mantissa <= 1 << 53 {
                let value = Double(mantissa) / powers[scale]
                return (Double(bitPattern: value.bitPattern | sign), index)
            }
        }
        var delimiter = index
        while delimiter < end, base[delimiter] != UInt8(ascii: ",") { delimiter += 1 }
        return (parse(UnsafeBufferPointer(start: base, count: end), start, delimiter), delimiter)
    }

    /// Reads the run of digits at `index` into `mantissa` (wrapping past 19 digits: callers
    /// check the count) and returns how many there were. (Eight bytes at a time measured
    /// slower here: the runs in a CSV of features are short.)
    @inline(__always)
    static func digitRun(_ base: UnsafePointer<UInt8>, _ index: inout Int, _ end: Int, _ mantissa: inout UInt64) -> Int {
        // Wrapping arithmetic: an index never nears Int.max, and the checks cost a tenth of the
        // parse.
        var count = 0
        var at = index
        while at < end {
            let digit = base[at] &- 0x30
            guard digit <= 9 else { break }
            mantissa = mantissa &* 10 &+ UInt64(digit)
            count &+= 1
            at &+= 1
        }
        index = at
        return count
    }

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Double? {
        var start = start
        var end = end
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
        if start == end { return .nan }
        var index = start
        var negative = false
        if bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+") {
            negative = bytes[index] == UInt8(ascii: "-")
            index += 1
        }
        var mantissa: UInt64 = 0
        var digits = 0
        var exponent = 0
        var sawDigit = false
        // More than 19 significant digits do not fit the fast paths: the slow path rounds them.
        var truncated = false
        while index < end, bytes[index] >= 0x30, bytes[index] <= 0x39 {
            sawDigit = true
            if digits < 19 {
                mantissa = mantissa * 10 + UInt64(bytes[index] - 0x30)
                if mantissa > 0 { digits += 1 }
            } else {
                exponent += 1
                truncated = true
            }
            index += 1
        }
        if index < end, bytes[index] == UInt8(ascii: ".") {
            index += 1
            while index < end, bytes[index] >= 0x30, bytes[index] <= 0x39 {
                sawDigit = true
                if digits < 19 {
                    mantissa = mantissa * 10 + UInt64(bytes[index] - 0x30)
                    if mantissa > 0 { digits += 1 }
                    exponent -= 1
                } else {
                    truncated = true
                }
                index += 1
            }
        }
        if sawDigit, index < end, bytes[index] | 0x20 == UInt8(ascii: "e") {
            var exponentIndex = index + 1
            var exponentNegative = false
            if exponentIndex < end, bytes[exponentIndex] == UInt8(ascii: "-") || bytes[exponentIndex] == UInt8(ascii: "+") {
                exponentNegative = bytes[exponentIndex] == UInt8(ascii: "-")
                exponentIndex += 1
            }
            var written = 0
            let exponentStart = exponentIndex
            while exponentIndex < end, bytes[exponentIndex] >= 0x30, bytes[exponentIndex] <= 0x39 {
                if written < 100_000 { written = written * 10 + Int(bytes[exponentIndex] - 0x30) }
                exponentIndex += 1
            }
            if exponentIndex > exponentStart {
                exponent += exponentNegative ? -written : written
                index = exponentIndex
            }
        }
        if sawDigit, index == end, !truncated {
            if mantissa == 0 { return negative ? -0.0 : 0 }
            if digits <= 15, exponent >= -22, exponent <= 22 {
                let value = Double(mantissa)
                let scaled = exponent < 0 ? value / Self.exactPowers[-exponent] : value * Self.exactPowers[exponent]
                return negative ? -scaled : scaled
            }
            if let value = DecimalToDouble.value(mantissa: mantissa, exponent: exponent) { return negative ? -value : value }
        }
        // Anything else (nan, inf, 20+ digits, hex…): the standard library decides.
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
        if text.lowercased() == "nan" { return .nan }
        return Double(text)
    }

    static let exactPowers: [Double] = (0...22).map { exponent in
        var value = 1.0
        for _ in 0..<exponent { value *= 10 }
        return value
    }
}

extension String {
    func trimmingBlanks() -> String {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isBlank($0) }) else { return "" }
        let last = lastIndex(where: { !isBlank($0) })!
        return String(self[first...last])
    }
}
