import Foundation

/// A YAML value as Wharf's declarative files (feature views, pipelines) use it.
public indirect enum YAMLValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's text as written, so that JSON gets it unchanged.
    case number(String)
    case string(String)
    case sequence([YAMLValue])
    /// In the order written (keys are unique).
    case mapping([YAMLEntry])

    public subscript(key: String) -> YAMLValue? {
        guard case .mapping(let entries) = self else { return nil }
        return entries.first { $0.key == key }?.value
    }

    /// The same value as JSON, for decoding with `JSONDecoder` into the API's own types, so a
    /// file and a request are checked by the same code.
    public func jsonBytes() -> [UInt8] {
        var writer = JSONWriter(capacity: 256)
        write(to: &writer)
        return writer.bytes
    }

    private func write(to writer: inout JSONWriter) {
        switch self {
        case .null: writer.raw("null")
        case .bool(let value): writer.raw(value ? "true" : "false")
        case .number(let text): writer.raw(text)
        case .string(let text): writer.string(text)
        case .sequence(let items):
            writer.raw("[")
            for (index, item) in items.enumerated() {
                if index > 0 { writer.raw(",") }
                item.write(to: &writer)
            }
            writer.raw("]")
        case .mapping(let entries):
            writer.raw("{")
            for (index, entry) in entries.enumerated() {
                if index > 0 { writer.raw(",") }
                writer.string(entry.key)
                writer.raw(":")
                entry.value.write(to: &writer)
            }
            writer.raw("}")
        }
    }

    /// Decodes a file's value into `type`, naming the file in the error.
    public func decode<T: Decodable>(_ type: T.Type, from file: String) throws(WharfError) -> T {
        // A file a person wrote: keys a type does not read are refused where it checks.
        let decoder = JSONDecoder()
        decoder.userInfo[.refusesUnknownKeys] = true
        let data = Data(jsonBytes())
        do {
            return try decoder.decode(type, from: data)
        } catch let error as DecodingError {
            throw WharfError(.invalidInput, "\(file): \(JSONErrors.describe(error, in: data))")
        } catch {
            throw WharfError(.invalidInput, "\(file): \(error)")
        }
    }
}

public struct YAMLEntry: Sendable, Equatable {
    public var key: String
    public var value: YAMLValue
}

/// Reads the block-style YAML that configuration files are written in: mappings, sequences
/// (including `- key: value` items), flow collections (`[a, b]`, `{k: v}`), plain, single- and
/// double-quoted scalars, literal (`|`) and folded (`>`) blocks, and comments. Anchors, tags,
/// multiple documents and complex keys are refused with the line they are on, not guessed at.
public struct YAMLReader {
    public static func parse(_ text: String, file: String = "YAML") throws(WharfError) -> YAMLValue {
        var reader = YAMLReader(text: text, file: file)
        return try reader.document()
    }

    private struct Line {
        var number: Int
        var indent: Int
        /// Without indentation and comment.
        var content: String
        var raw: String
    }

    private let file: String
    private var lines: [Line] = []
    private var position = 0
    private let rawLines: [String]
    /// How many collections the current node is inside: the reader recurses, and a file nested
    /// thousands deep (by indentation or brackets) would overflow the stack, not be refused.
    private var depth = 0
    static let maxDepth = 64

    private init(text: String, file: String) {
        self.file = file
        rawLines = text.replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n")
    }

    private func error(_ line: Int, _ message: String) -> WharfError {
        WharfError(.invalidInput, "\(file), line \(line): \(message)")
    }

    private mutating func document() throws(WharfError) -> YAMLValue {
        for (index, raw) in rawLines.enumerated() {
            let number = index + 1
            let indentation = raw.prefix { $0 == " " || $0 == "\t" }
            if indentation.contains("\t") { throw error(number, "indent with spaces, not tabs") }
            let content = try Self.stripComment(String(raw.dropFirst(indentation.count)), line: number, file: file).trimmingCharacters(in: .whitespaces)
            if content.isEmpty { continue }
            if content == "---", lines.isEmpty { continue }
            if content == "---" || content == "..." { throw error(number, "one document per file") }
            if content.hasPrefix("%") { throw error(number, "directives are not supported") }
            lines.append(Line(number: number, indent: indentation.count, content: content, raw: raw))
        }
        guard !lines.isEmpty else { return .null }
        let value = try node(indent: lines[0].indent)
        if position < lines.count { throw error(lines[position].number, "unexpected indentation") }
        return value
    }

    /// The node starting at the current line, whose lines are indented by `indent`.
    private mutating func node(indent: Int) throws(WharfError) -> YAMLValue {
        let line = lines[position]
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maxDepth else { throw error(line.number, "nested deeper than \(Self.maxDepth) levels") }
        if line.content == "-" || line.content.hasPrefix("- ") { return try sequence(indent: line.indent) }
        if try Self.splitKey(line.content, line: line.number, file: file) != nil { return try mapping(indent: line.indent) }
        position += 1
        return try inline(line.content, line: line.number)
    }

    private mutating func sequence(indent: Int) throws(WharfError) -> YAMLValue {
        var items: [YAMLValue] = []
        while position < lines.count, lines[position].indent == indent {
            let line = lines[position]
            guard line.content == "-" || line.content.hasPrefix("- ") else { break }
            let rest = String(line.content.dropFirst()).drop { $0 == " " }
            if rest.isEmpty {
                position += 1
                if position < lines.count, lines[position].indent > indent {
                    items.append(try node(indent: lines[position].indent))
                } else {
                    items.append(.null)
                }
            } else {
                // `- key: value` opens a mapping whose keys line up with `key`: read the rest
                // of this line as if it were a line of its own, indented that far.
                lines[position].indent = indent + (line.content.count - rest.count)
                lines[position].content = String(rest)
                items.append(try node(indent: lines[position].indent))
            }
        }
        if position < lines.count, lines[position].indent > indent {
            throw error(lines[position].number, "unexpected indentation in a sequence")
        }
        return .sequence(items)
    }

    private mutating func mapping(indent: Int) throws(WharfError) -> YAMLValue {
        var entries: [YAMLEntry] = []
        var seen = Set<String>()
        while position < lines.count, lines[position].indent == indent {
            let line = lines[position]
            guard let (key, value) = try Self.splitKey(line.content, line: line.number, file: file) else {
                throw error(line.number, "expected \"key: value\"")
            }
            guard seen.insert(key).inserted else { throw error(line.number, "the key \(key) appears twice") }
            position += 1
            let parsed: YAMLValue
            if value.isEmpty {
                if position < lines.count, lines[position].indent > indent {
                    parsed = try node(indent: lines[position].indent)
                } else if position < lines.count, lines[position].indent == indent, lines[position].content == "-" || lines[position].content.hasPrefix("- ") {
                    parsed = try sequence(indent: indent)  // a sequence may sit at its key's indentation
                } else {
                    parsed = .null
                }
            } else if let style = value.first, style == "|" || style == ">" {
                parsed = .string(try block(style: style, header: value, parentIndent: indent, line: line.number))
            } else {
                parsed = try inline(value, line: line.number)
            }
            entries.append(YAMLEntry(key: key, value: parsed))
        }
        if position < lines.count, lines[position].indent > indent {
            throw error(lines[position].number, "unexpected indentation in a mapping")
        }
        return .mapping(entries)
    }

    /// A literal (`|`) or folded (`>`) block: the raw lines indented deeper than the key.
    private mutating func block(style: Character, header: String, parentIndent: Int, line: Int) throws(WharfError) -> String {
        let chomp = header.dropFirst()
        guard chomp.isEmpty || chomp == "-" || chomp == "+" else { throw error(line, "block header \(header) is not supported (use |, |-, >, >-)") }
        // Block content is read from the raw text: comments and blank lines belong to it.
        var collected: [String] = []
        var rawIndex = line  // the raw line after the header (0-based index == header's number)
        var blockIndent: Int?
        while rawIndex < rawLines.count {
            let raw = rawLines[rawIndex]
            let spaces = raw.prefix { $0 == " " }.count
            if raw.trimmingCharacters(in: .whitespaces).isEmpty {
                collected.append("")
                rawIndex += 1
                continue
            }
            if spaces <= parentIndent { break }
            if blockIndent == nil { blockIndent = spaces }
            guard let blockIndent, spaces >= blockIndent else { break }
            collected.append(String(raw.dropFirst(blockIndent)))
            rawIndex += 1
        }
        while position < lines.count, lines[position].number <= rawIndex { position += 1 }
        var trailing = 0
        while let last = collected.last, last.isEmpty {
            collected.removeLast()
            trailing += 1
        }
        var text: String
        if style == "|" {
            text = collected.joined(separator: "\n")
        } else {
            text = ""
            for (index, part) in collected.enumerated() {
                // A blank line is a line break; otherwise lines are joined by a space.
                if part.isEmpty {
                    text += "\n"
                } else {
                    if index > 0, !collected[index - 1].isEmpty { text += " " }
                    text += part
                }
            }
        }
        if chomp != "-", !collected.isEmpty { text += "\n" }
        if chomp == "+" { text += String(repeating: "\n", count: trailing) }
        return text
    }

    // MARK: - Scalars and flow collections

    private func inline(_ text: String, line: Int) throws(WharfError) -> YAMLValue {
        if text.first == "&" || text.first == "*" || text.first == "!" {
            throw error(line, "anchors, aliases and tags are not supported")
        }
        if text.first == "[" || text.first == "{" {
            var flow = FlowParser(characters: Array(text), line: line, file: file)
            let value = try flow.value()
            flow.skipSpaces()
            if flow.index < flow.characters.count { throw error(line, "unexpected text after a flow collection") }
            return value
        }
        return try Self.scalar(text, line: line, file: file)
    }

    static func scalar(_ text: String, line: Int, file: String) throws(WharfError) -> YAMLValue {
        if text.first == "\"" || text.first == "'" {
            var characters = Array(text)[...]
            let value = try quoted(&characters, line: line, file: file)
            guard characters.allSatisfy({ $0 == " " }) else { throw WharfError(.invalidInput, "\(file), line \(line): unexpected text after a quoted string") }
            return .string(value)
        }
        switch text {
        case "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        default: break
        }
        if isNumber(text) { return .number(text.hasPrefix("+") ? String(text.dropFirst()) : text) }
        return .string(text)
    }

    /// JSON's number syntax (an optional `+` aside): what JSON can carry unchanged.
    private static func isNumber(_ text: String) -> Bool {
        var characters = Array(text.utf8)[...]
        if characters.first == UInt8(ascii: "+") || characters.first == UInt8(ascii: "-") { characters = characters.dropFirst() }
        func digits() -> Int {
            let count = characters.prefix { $0 >= 0x30 && $0 <= 0x39 }.count
            characters = characters.dropFirst(count)
            return count
        }
        let whole = characters
        guard digits() > 0 else { return false }
        if whole.first == UInt8(ascii: "0"), whole.count > 1, let second = whole.dropFirst().first, second >= 0x30, second <= 0x39 { return false }
        if characters.first == UInt8(ascii: ".") {
            characters = characters.dropFirst()
            guard digits() > 0 else { return false }
        }
        if characters.first == UInt8(ascii: "e") || characters.first == UInt8(ascii: "E") {
            characters = characters.dropFirst()
            if characters.first == UInt8(ascii: "+") || characters.first == UInt8(ascii: "-") { characters = characters.dropFirst() }
            guard digits() > 0 else { return false }
        }
        return characters.isEmpty
    }

    static func quoted(_ characters: inout ArraySlice<Character>, line: Int, file: String) throws(WharfError) -> String {
        let quote = characters.removeFirst()
        var value = ""
        while let character = characters.first {
            characters.removeFirst()
            if character == quote {
                if quote == "'", characters.first == "'" {
                    characters.removeFirst()
                    value.append("'")
                    continue
                }
                return value
            }
            if quote == "\"", character == "\\" {
                guard let escaped = characters.first else { break }
                characters.removeFirst()
                switch escaped {
                case "n": value.append("\n")
                case "t": value.append("\t")
                case "r": value.append("\r")
                case "0": value.append("\0")
                case "\\", "\"", "/": value.append(escaped)
                case "u":
                    let hex = String(characters.prefix(4))
                    guard hex.count == 4, let code = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(code) else {
                        throw WharfError(.invalidInput, "\(file), line \(line): a bad \\u escape")
                    }
                    characters = characters.dropFirst(4)
                    value.unicodeScalars.append(scalar)
                default: throw WharfError(.invalidInput, "\(file), line \(line): unknown escape \\\(escaped)")
                }
                continue
            }
            value.append(character)
        }
        throw WharfError(.invalidInput, "\(file), line \(line): a quoted string is not closed (strings span one line)")
    }

    /// `key: value` (or `key:`), the key plain or quoted; nil when the line is not a key.
    static func splitKey(_ content: String, line: Int, file: String) throws(WharfError) -> (String, String)? {
        var characters = Array(content)[...]
        let key: String
        if characters.first == "\"" || characters.first == "'" {
            key = try quoted(&characters, line: line, file: file)
            guard characters.first == ":" else { return nil }
            characters.removeFirst()
            guard characters.isEmpty || characters.first == " " else { return nil }
        } else {
            if characters.first == "[" || characters.first == "{" { return nil }
            guard let colon = characters.indices.first(where: { characters[$0] == ":" && ($0 + 1 == characters.endIndex || characters[$0 + 1] == " ") }) else {
                return nil
            }
            key = String(characters[..<colon]).trimmingCharacters(in: .whitespaces)
            characters = characters[(colon + 1)...]
            if key.hasPrefix("? ") { throw WharfError(.invalidInput, "\(file), line \(line): complex keys are not supported") }
        }
        return (key, String(characters).trimmingCharacters(in: .whitespaces))
    }

    /// Drops a `#` comment (at the start or after a space, outside quotes).
    static func stripComment(_ text: String, line: Int, file: String) throws(WharfError) -> String {
        var quote: Character?
        var previous: Character = " "
        for (offset, character) in text.enumerated() {
            if let open = quote {
                if character == open { quote = nil }
            } else if character == "\"" || character == "'" {
                // A quote opens a string only where a scalar can start.
                if previous == " " || previous == "[" || previous == "{" || previous == "," || previous == ":" { quote = character }
            } else if character == "#", previous == " " || previous == "\t" {
                return String(text.prefix(offset))
            }
            previous = character
        }
        return text
    }
}

/// `[a, "b", {k: v}]` and `{k: v, l: [1, 2]}` on one line.
private struct FlowParser {
    var characters: [Character]
    var index = 0
    let line: Int
    let file: String
    var depth = 0

    init(characters: [Character], line: Int, file: String) {
        self.characters = characters
        self.line = line
        self.file = file
    }

    func error(_ message: String) -> WharfError {
        WharfError(.invalidInput, "\(file), line \(line): \(message)")
    }

    mutating func skipSpaces() {
        while index < characters.count, characters[index] == " " { index += 1 }
    }

    /// The items of a flow collection whose opening bracket is at `index`, each read by `item`,
    /// separated by commas, up to `closing`.
    mutating func collection(closing: Character, kind: String, _ item: (inout FlowParser) throws(WharfError) -> Void) throws(WharfError) {
        index += 1
        skipSpaces()
        if index < characters.count, characters[index] == closing {
            index += 1
            return
        }
        while true {
            try item(&self)
            skipSpaces()
            guard index < characters.count else { throw error("a \(closing == "]" ? "[" : "{") is not closed") }
            if characters[index] == closing {
                index += 1
                return
            }
            guard characters[index] == "," else { throw error("expected , or \(closing) in a flow \(kind)") }
            index += 1
        }
    }

    /// `key: value` inside a flow mapping.
    mutating func entry() throws(WharfError) -> YAMLEntry {
        skipSpaces()
        let key: String
        if index < characters.count, characters[index] == "\"" || characters[index] == "'" {
            var rest = characters[index...]
            key = try YAMLReader.quoted(&rest, line: line, file: file)
            index = rest.startIndex
        } else {
            let start = index
            while index < characters.count, characters[index] != ":", characters[index] != ",", characters[index] != "}" { index += 1 }
            key = String(characters[start..<index]).trimmingCharacters(in: .whitespaces)
        }
        skipSpaces()
        guard index < characters.count, characters[index] == ":" else { throw error("expected : after \(key) in a flow mapping") }
        index += 1
        return YAMLEntry(key: key, value: try value())
    }

    /// One collection deeper; the reader recurses, so the depth is bounded.
    mutating func enter() throws(WharfError) {
        guard depth < YAMLReader.maxDepth else { throw error("nested deeper than \(YAMLReader.maxDepth) levels") }
        depth += 1
    }

    mutating func value() throws(WharfError) -> YAMLValue {
        skipSpaces()
        guard index < characters.count else { throw error("a flow collection ends too soon") }
        switch characters[index] {
        case "[":
            try enter()
            defer { depth -= 1 }
            var items: [YAMLValue] = []
            try collection(closing: "]", kind: "sequence") { parser throws(WharfError) in items.append(try parser.value()) }
            return .sequence(items)
        case "{":
            try enter()
            defer { depth -= 1 }
            var entries: [YAMLEntry] = []
            try collection(closing: "}", kind: "mapping") { parser throws(WharfError) in
                let entry = try parser.entry()
                guard !entries.contains(where: { $0.key == entry.key }) else { throw parser.error("the key \(entry.key) appears twice") }
                entries.append(entry)
            }
            return .mapping(entries)
        case "\"", "'":
            var rest = characters[index...]
            let text = try YAMLReader.quoted(&rest, line: line, file: file)
            index = rest.startIndex
            return .string(text)
        default:
            let start = index
            while index < characters.count, !",]}".contains(characters[index]) { index += 1 }
            let text = String(characters[start..<index]).trimmingCharacters(in: .whitespaces)
            guard !text.isEmpty else { throw error("an empty item in a flow collection") }
            return try YAMLReader.scalar(text, line: line, file: file)
        }
    }
}
