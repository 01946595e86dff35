import Foundation
import WharfCore

/// The NATS client protocol (https://docs.nats.io/reference/reference-protocols/nats-protocol),
/// as much as a JetStream bus needs: what the server sends, parsed by a pure state machine fed
/// any slices of the byte stream, and what the client sends, encoded.
///
/// No Swift NATS client is among the packages this project may use; this is the first part of
/// one (the connection over SwiftNIO and the JetStream requests come on top).
public enum NATSServerOperation: Sendable, Hashable {
    case info([UInt8])
    case message(NATSMessage)
    case ping
    case pong
    case ok
    case error(String)
}

public struct NATSMessage: Sendable, Hashable {
    public var subject: String
    public var subscription: String
    public var replyTo: String?
    /// Header lines after the `NATS/1.0` status line (HMSG only), in order.
    public var headers: [(name: String, value: String)]
    /// The status code of an HMSG status line (`NATS/1.0 404 No Messages`), if any.
    public var status: Int?
    public var payload: [UInt8]

    public init(subject: String, subscription: String, replyTo: String?, headers: [(name: String, value: String)], status: Int?, payload: [UInt8]) {
        self.subject = subject
        self.subscription = subscription
        self.replyTo = replyTo
        self.headers = headers
        self.status = status
        self.payload = payload
    }

    public static func == (lhs: NATSMessage, rhs: NATSMessage) -> Bool {
        lhs.subject == rhs.subject && lhs.subscription == rhs.subscription && lhs.replyTo == rhs.replyTo
            && lhs.headers.map(\.name) == rhs.headers.map(\.name) && lhs.headers.map(\.value) == rhs.headers.map(\.value)
            && lhs.status == rhs.status && lhs.payload == rhs.payload
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(subject)
        hasher.combine(subscription)
        hasher.combine(payload)
    }
}

/// Parses the server's byte stream. Feed it whatever a read returned; it returns the complete
/// operations and keeps the rest. A protocol violation is an error, after which the connection
/// must be closed (the parser does not resynchronize).
public struct NATSParser: Sendable {
    public static let maxControlLine = 4096
    public let maxPayload: Int

    private var buffer: [UInt8] = []
    private var start = 0
    /// A MSG/HMSG whose control line is read and whose payload is still coming.
    private var pending: (message: NATSMessage, headerBytes: Int, totalBytes: Int)?

    public init(maxPayload: Int = 64 << 20) {
        self.maxPayload = maxPayload
    }

    public struct ProtocolError: Error, Sendable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(ProtocolError) -> [NATSServerOperation] {
        buffer.append(contentsOf: bytes)
        var operations: [NATSServerOperation] = []
        while true {
            if let waiting = pending {
                // The payload, then CRLF.
                guard buffer.count - start >= waiting.totalBytes + 2 else { break }
                let bodyStart = start
                guard buffer[start + waiting.totalBytes] == 0x0D, buffer[start + waiting.totalBytes + 1] == 0x0A else {
                    throw ProtocolError(message: "a message payload is not followed by CRLF")
                }
                start += waiting.totalBytes + 2
                var message = waiting.message
                if waiting.headerBytes > 0 {
                    try Self.parseHeaders(buffer[bodyStart..<(bodyStart + waiting.headerBytes)], into: &message)
                }
                message.payload = Array(buffer[(bodyStart + waiting.headerBytes)..<(bodyStart + waiting.totalBytes)])
                operations.append(.message(message))
                pending = nil
                continue
            }
            guard let lineEnd = lineEnd() else {
                guard buffer.count - start <= Self.maxControlLine else { throw ProtocolError(message: "a control line is longer than \(Self.maxControlLine) bytes") }
                break
            }
            let lineStart = start
            start = lineEnd + 2
            if let operation = try parseControl(buffer[lineStart..<lineEnd]) { operations.append(operation) }
        }
        // Drop what was consumed now and then, not on every call.
        if start > 65_536 || start == buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
        return operations
    }

    private func lineEnd() -> Int? {
        guard buffer.count - start >= 2 else { return nil }
        return buffer.withUnsafeBufferPointer { bytes -> Int? in
            var index = start
            let last = bytes.count - 1
            while index < last {
                // Find the LF and check the CR before it: one comparison per byte.
                if bytes[index + 1] == 0x0A {
                    if bytes[index] == 0x0D { return index }
                    index += 2
                } else {
                    index += 1
                }
            }
            return nil
        }
    }

    /// The line's space-separated fields, as byte ranges.
    private static func fields(_ line: ArraySlice<UInt8>) -> [Range<Int>] {
        var fields: [Range<Int>] = []
        var index = line.startIndex
        while index < line.endIndex {
            while index < line.endIndex, line[index] == 0x20 || line[index] == 0x09 { index += 1 }
            let fieldStart = index
            while index < line.endIndex, line[index] != 0x20, line[index] != 0x09 { index += 1 }
            if index > fieldStart { fields.append(fieldStart..<index) }
        }
        return fields
    }

    private static func integer(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 18 else { return nil }
        var value = 0
        for byte in bytes {
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            value = value * 10 + Int(byte - 0x30)
        }
        return value
    }

    private static func verbIs(_ bytes: ArraySlice<UInt8>, _ verb: StaticString) -> Bool {
        guard bytes.count == verb.utf8CodeUnitCount else { return false }
        var pointer = verb.utf8Start
        for byte in bytes {
            // ASCII letters compare case-insensitively (the protocol allows either case).
            let expected = pointer.pointee
            guard byte == expected || (byte | 0x20 == expected | 0x20 && expected >= 0x41 && expected <= 0x5A) else { return false }
            pointer += 1
        }
        return true
    }

    private mutating func parseControl(_ line: ArraySlice<UInt8>) throws(ProtocolError) -> NATSServerOperation? {
        guard line.count <= Self.maxControlLine else { throw ProtocolError(message: "a control line is longer than \(Self.maxControlLine) bytes") }
        let fields = Self.fields(line)
        guard let verbRange = fields.first else { throw ProtocolError(message: "an empty control line") }
        let verb = line[verbRange]
        func text(_ range: Range<Int>) -> String { String(decoding: line[range], as: UTF8.self) }
        func malformed(_ what: String) -> ProtocolError {
            ProtocolError(message: "a malformed \(what) line: \(String(decoding: line.prefix(120), as: UTF8.self))")
        }
        if Self.verbIs(verb, "MSG") {
            // MSG <subject> <sid> [reply-to] <#bytes>
            guard fields.count == 4 || fields.count == 5, let size = Self.integer(line[fields[fields.count - 1]]) else { throw malformed("MSG") }
            guard size <= maxPayload else { throw ProtocolError(message: "a payload of \(size) bytes is over the limit of \(maxPayload)") }
            let message = NATSMessage(subject: text(fields[1]), subscription: text(fields[2]), replyTo: fields.count == 5 ? text(fields[3]) : nil,
                                      headers: [], status: nil, payload: [])
            pending = (message, 0, size)
            return nil
        }
        if Self.verbIs(verb, "HMSG") {
            // HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
            guard fields.count == 5 || fields.count == 6, let total = Self.integer(line[fields[fields.count - 1]]),
                  let header = Self.integer(line[fields[fields.count - 2]]), total >= header
            else { throw malformed("HMSG") }
            guard total <= maxPayload else { throw ProtocolError(message: "a payload of \(total) bytes is over the limit of \(maxPayload)") }
            let message = NATSMessage(subject: text(fields[1]), subscription: text(fields[2]), replyTo: fields.count == 6 ? text(fields[3]) : nil,
                                      headers: [], status: nil, payload: [])
            pending = (message, header, total)
            return nil
        }
        if Self.verbIs(verb, "PING") { return .ping }
        if Self.verbIs(verb, "PONG") { return .pong }
        if Self.verbIs(verb, "+OK") { return .ok }
        if Self.verbIs(verb, "-ERR") {
            let rest = String(decoding: line.dropFirst(4), as: UTF8.self).trimmingCharacters(in: CharacterSet(charactersIn: " '"))
            return .error(rest)
        }
        if Self.verbIs(verb, "INFO") {
            guard let brace = line.firstIndex(of: UInt8(ascii: "{")) else { throw ProtocolError(message: "INFO without a JSON object") }
            return .info(Array(line[brace...]))
        }
        throw ProtocolError(message: "an unknown operation \"\(String(decoding: verb.prefix(20), as: UTF8.self))\"")
    }

    /// `NATS/1.0[ status[ description]]\r\n(Name: value\r\n)*\r\n`.
    private static func parseHeaders(_ block: ArraySlice<UInt8>, into message: inout NATSMessage) throws(ProtocolError) {
        let version = Array("NATS/1.0".utf8)
        guard block.count >= version.count, block.prefix(version.count).elementsEqual(version) else {
            throw ProtocolError(message: "headers without a NATS/1.0 line")
        }
        var lineStart = block.startIndex
        var first = true
        while lineStart < block.endIndex {
            var lineEnd = lineStart
            while lineEnd < block.endIndex, block[lineEnd] != 0x0D, block[lineEnd] != 0x0A { lineEnd += 1 }
            let line = block[lineStart..<lineEnd]
            lineStart = lineEnd
            while lineStart < block.endIndex, block[lineStart] == 0x0D || block[lineStart] == 0x0A { lineStart += 1 }
            if first {
                first = false
                let fields = Self.fields(line)
                if fields.count >= 2, let code = Self.integer(line[fields[1]]) { message.status = code }
                continue
            }
            if line.isEmpty { continue }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { throw ProtocolError(message: "a header line without ':'") }
            var valueStart = colon + 1
            var valueEnd = line.endIndex
            while valueStart < valueEnd, line[valueStart] == 0x20 || line[valueStart] == 0x09 { valueStart += 1 }
            while valueEnd > valueStart, line[valueEnd - 1] == 0x20 || line[valueEnd - 1] == 0x09 { valueEnd -= 1 }
            message.headers.append((String(decoding: line[line.startIndex..<colon], as: UTF8.self), String(decoding: line[valueStart..<valueEnd], as: UTF8.self)))
        }
    }
}

/// What the client sends.
public enum NATSClientOperation {
    /// `CONNECT {json}` with the options JetStream needs (headers on, no echo, verbose off).
    public static func connect(name: String, user: String? = nil, password: String? = nil) -> [UInt8] {
        var writer = JSONWriter(capacity: 128)
        writer.raw(#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"echo":false,"lang":"swift","version":"0.1","protocol":1,"name":"#)
        writer.string(name)
        if let user {
            writer.raw(#","user":"#)
            writer.string(user)
        }
        if let password {
            writer.raw(#","pass":"#)
            writer.string(password)
        }
        writer.raw("}")
        return Array("CONNECT ".utf8) + writer.bytes + [0x0D, 0x0A]
    }

    public static func publish(subject: String, replyTo: String? = nil, headers: [(String, String)] = [], payload: [UInt8]) throws(WharfError) -> [UInt8] {
        var bytes: [UInt8] = []
        try publish(subject: subject, replyTo: replyTo, headers: headers, payload: payload, into: &bytes)
        return bytes
    }

    /// Appends the PUB (or HPUB, with headers) to `bytes`: a batch is one buffer.
    public static func publish(subject: String, replyTo: String?, headers: [(String, String)], payload: [UInt8], into bytes: inout [UInt8]) throws(WharfError) {
        try checkSubject(subject)
        if let replyTo { try checkSubject(replyTo) }
        bytes.reserveCapacity(bytes.count + subject.utf8.count + (replyTo?.utf8.count ?? 0) + payload.count + 32 + headers.count * 32)
        var block: [UInt8] = []
        if !headers.isEmpty {
            block = Array("NATS/1.0\r\n".utf8)
            for (name, value) in headers {
                guard !name.isEmpty, name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }),
                      !value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A })
                else { throw WharfError(.invalidInput, "NATS header \(name.prefix(40)) is not a valid header") }
                block.append(contentsOf: name.utf8)
                block.append(contentsOf: ": ".utf8)
                block.append(contentsOf: value.utf8)
                block.append(contentsOf: [0x0D, 0x0A])
            }
            block.append(contentsOf: [0x0D, 0x0A])
        }
        // PUB <subject> [reply] <#bytes> or HPUB <subject> [reply] <#header bytes> <#total bytes>
        bytes.append(contentsOf: (headers.isEmpty ? "PUB " : "HPUB ").utf8)
        bytes.append(contentsOf: subject.utf8)
        if let replyTo {
            bytes.append(0x20)
            bytes.append(contentsOf: replyTo.utf8)
        }
        bytes.append(0x20)
        if !headers.isEmpty {
            appendDecimal(block.count, to: &bytes)
            bytes.append(0x20)
        }
        appendDecimal(block.count + payload.count, to: &bytes)
        bytes.append(contentsOf: [0x0D, 0x0A])
        bytes.append(contentsOf: block)
        bytes.append(contentsOf: payload)
        bytes.append(contentsOf: [0x0D, 0x0A])
    }

    private static func appendDecimal(_ value: Int, to bytes: inout [UInt8]) {
        if value >= 10 { appendDecimal(value / 10, to: &bytes) }
        bytes.append(UInt8(0x30 + value % 10))
    }

    public static func subscribe(subject: String, subscription: String) throws(WharfError) -> [UInt8] {
        try checkSubject(subject)
        return Array("SUB \(subject) \(subscription)\r\n".utf8)
    }

    public static func unsubscribe(subscription: String) -> [UInt8] {
        Array("UNSUB \(subscription)\r\n".utf8)
    }

    public static let ping: [UInt8] = Array("PING\r\n".utf8)
    public static let pong: [UInt8] = Array("PONG\r\n".utf8)

    /// Subjects are dot-separated tokens of printable characters without spaces.
    static func checkSubject(_ subject: String) throws(WharfError) {
        var valid = !subject.isEmpty && subject.utf8.count <= 256
        var previous: UInt8 = UInt8(ascii: ".")
        if valid {
            for byte in subject.utf8 {
                if byte <= 0x20 || byte >= 0x7F || (byte == UInt8(ascii: ".") && previous == UInt8(ascii: ".")) {
                    valid = false
                    break
                }
                previous = byte
            }
        }
        guard valid, previous != UInt8(ascii: ".") else { throw WharfError(.invalidInput, "\"\(subject.prefix(60))\" is not a NATS subject") }
    }
}
