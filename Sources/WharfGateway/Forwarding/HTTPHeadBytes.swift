/// The byte-level pieces of HTTP/1.1 heads shared by the gateway's two readers: the requests of
/// plain inference clients (``PlainInferenceRequest``, on the forwarding plane) and the answers of replicas
/// (``UpstreamResponseParser``).
enum HTTPHeadBytes {
    /// Offset of the CRLF CRLF that ends a head, searched for in the first `limit` bytes; nil
    /// if it is not there (yet).
    static func headEnd(in bytes: UnsafeRawBufferPointer, within limit: Int) -> Int? {
        let count = min(bytes.count, limit)
        guard count >= 4 else { return nil }
        var index = 0
        while index <= count - 4 {
            let fourth = bytes[index + 3]
            if fourth != 0x0A {
                // No match can start before the byte three ahead unless it is the CR.
                index += fourth == 0x0D ? 1 : 4
                continue
            }
            if bytes[index] == 0x0D, bytes[index + 1] == 0x0A, bytes[index + 2] == 0x0D { return index }
            index += 1
        }
        return nil
    }

    /// Whether `bytes` hold an LF with no CR before it.
    static func hasBareLineFeed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        while let found = bytes[index...].firstIndex(of: 0x0A) {
            if found == 0 || bytes[found - 1] != 0x0D { return true }
            index = found + 1
        }
        return false
    }

    /// A header line's name (RFC 9110 token characters, not empty) and its value without the
    /// spaces and tabs around it; nil for a line that is not a field.
    static func field(_ line: UnsafeRawBufferPointer) -> (name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)? {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > 0 else { return nil }
        let name = UnsafeRawBufferPointer(rebasing: line[..<colon])
        guard name.allSatisfy(isTokenByte) else { return nil }
        var start = colon + 1
        var end = line.count
        while start < end, line[start] == 0x20 || line[start] == 0x09 { start += 1 }
        while end > start, line[end - 1] == 0x20 || line[end - 1] == 0x09 { end -= 1 }
        return (name, UnsafeRawBufferPointer(rebasing: line[start..<end]))
    }

    /// RFC 9110 token characters.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
            UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"): true
        default: false
        }
    }

    /// Whether `bytes`, ASCII-lowercased, equal `lowercase`.
    static func equalsLowercase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        lowercase.withUTF8Buffer { equalsLowercase(bytes, UnsafeRawBufferPointer($0)) }
    }

    static func equalsLowercase(_ bytes: UnsafeRawBufferPointer, _ lowercase: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count == lowercase.count else { return false }
        for index in 0..<bytes.count where lowered(bytes[index]) != lowercase[index] {
            return false
        }
        return true
    }

    /// Whether `first` and `second` are equal but for the case of ASCII letters.
    static func equalsIgnoringCase(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> Bool {
        guard first.count == second.count else { return false }
        for index in 0..<first.count where lowered(first[index]) != lowered(second[index]) {
            return false
        }
        return true
    }

    private static func lowered(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }

    /// The CRLF-ended lines of a head (without the blank line that ends it), each without its
    /// CRLF. A bare CR or LF ends the lines and sets `failed`: the caller refuses the head.
    struct Lines {
        let bytes: UnsafeRawBufferPointer
        var position = 0
        private(set) var failed = false

        init(_ bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
        }

        mutating func next() -> UnsafeRawBufferPointer? {
            guard !failed, position < bytes.count else { return nil }
            let start = position
            while position < bytes.count {
                let byte = bytes[position]
                if byte == 0x0D, position + 1 < bytes.count, bytes[position + 1] == 0x0A {
                    defer { position += 2 }
                    return UnsafeRawBufferPointer(rebasing: bytes[start..<position])
                }
                if byte == 0x0D || byte == 0x0A {
                    failed = true
                    return nil
                }
                position += 1
            }
            return UnsafeRawBufferPointer(rebasing: bytes[start..<position])
        }
    }
}
