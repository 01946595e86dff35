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
                let body = Array(buffer[start..<(start + waiting.totalBytes)])
                guard buffer[start + waiting.totalBytes] == 0x0D, buffer[start + waiting.totalBytes + 1] == 0x0A else {
                    throw ProtocolError(message: "a message payload is not followed by CRLF")
                }
                start += waiting.totalBytes + 2
                var message = waiting.message
                if waiting.headerBytes > 0 {
                    try Self.parseHeaders(Array(body[..<waiting.headerBytes]), into: &message)
                }
                message.payload = Array(body[waiting.headerBytes...])
                operations.append(.message(message))
                pending = nil
                continue
            }
            guard let lineEnd = lineEnd() else {
                guard buffer.count - start <= Self.maxControlLine else { throw ProtocolError(message: "a control line is longer than \(Self.maxControlLine) bytes") }
                break
            }
            let line = Array(buffer[start..<lineEnd])
            start = lineEnd + 2
            if let operation = try parseControl(line) { operations.append(operation) }
        }
        // Drop what was consumed now and then, not on every call.
        if start > 65_536 || start == buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
        return operations
    }

    private func lineEnd() -> Int? {
        var index = start
        while index + 1 < buffer.count {
            if buffer[index] == 0x0D, buffer[index + 1] == 0x0A { return index }
            index += 1
        }
        return nil
    }

    private mutating func parseControl(_ line: [UInt8]) throws(ProtocolError) -> NATSServerOperation? {
        guard line.count <= Self.maxControlLine else { throw ProtocolError(message: "a control line is longer than \(Self.maxControlLine) bytes") }
        let text = String(decoding: line, as: UTF8.self)
        let parts = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard let verb = parts.first?.uppercased() else { throw ProtocolError(message: "an empty control line") }
        switch verb {
        case "PING": return .ping
        case "PONG": return .pong
        case "+OK": return .ok
        case "-ERR":
            let rest = text.dropFirst(4).trimmingCharacters(in: CharacterSet(charactersIn: " '"))
            return .error(String(rest))
        case "INFO":
            guard let brace = line.firstIndex(of: UInt8(ascii: "{")) else { throw ProtocolError(message: "INFO without a JSON object") }
            return .info(Array(line[brace...]))
        case "MSG":
            // MSG <subject> <sid> [reply-to] <#bytes>
            guard parts.count == 4 || parts.count == 5, let size = Int(parts.last!), size >= 0 else {
                throw ProtocolError(message: "a malformed MSG line: \(text.prefix(120))")
            }
            guard size <= maxPayload else { throw ProtocolError(message: "a payload of \(size) bytes is over the limit of \(maxPayload)") }
            let message = NATSMessage(subject: parts[1], subscription: parts[2], replyTo: parts.count == 5 ? parts[3] : nil, headers: [], status: nil, payload: [])
            pending = (message, 0, size)
            return nil
        case "HMSG":
            // HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
            guard parts.count == 5 || parts.count == 6, let total = Int(parts[parts.count - 1]), let header = Int(parts[parts.count - 2]),
                  header >= 0, total >= header
            else { throw ProtocolError(message: "a malformed HMSG line: \(text.prefix(120))") }
            guard total <= maxPayload else { throw ProtocolError(message: "a payload of \(total) bytes is over the limit of \(maxPayload)") }
            let message = NATSMessage(subject: parts[1], subscription: parts[2], replyTo: parts.count == 6 ? parts[3] : nil, headers: [], status: nil, payload: [])
            pending = (message, header, total)
            return nil
        default:
            throw ProtocolError(message: "an unknown operation \"\(verb.prefix(20))\"")
        }
    }

    /// `NATS/1.0[ status[ description]]\r\n(Name: value\r\n)*\r\n`.
    private static func parseHeaders(_ block: [UInt8], into message: inout NATSMessage) throws(ProtocolError) {
        let text = String(decoding: block, as: UTF8.self)
        var lines = text.components(separatedBy: "\r\n")
        guard let status = lines.first, status.hasPrefix("NATS/1.0") else { throw ProtocolError(message: "headers without a NATS/1.0 line") }
        let statusParts = status.split(separator: " ")
        if statusParts.count >= 2, let code = Int(statusParts[1]) { message.status = code }
        lines.removeFirst()
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { throw ProtocolError(message: "a header line without ':'") }
            message.headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
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
        try checkSubject(subject)
        if let replyTo { try checkSubject(replyTo) }
        let reply = replyTo.map { " \($0)" } ?? ""
        if headers.isEmpty {
            return Array("PUB \(subject)\(reply) \(payload.count)\r\n".utf8) + payload + [0x0D, 0x0A]
        }
        var block = "NATS/1.0\r\n"
        for (name, value) in headers {
            guard !name.contains(":"), !name.contains("\r"), !value.contains("\r"), !value.contains("\n") else {
                throw WharfError(.invalidInput, "NATS header \(name.prefix(40)) is not a valid header")
            }
            block += "\(name): \(value)\r\n"
        }
        block += "\r\n"
        let headerBytes = Array(block.utf8)
        return Array("HPUB \(subject)\(reply) \(headerBytes.count) \(headerBytes.count + payload.count)\r\n".utf8) + headerBytes + payload + [0x0D, 0x0A]
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
        guard !subject.isEmpty, subject.utf8.count <= 256, subject.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }),
              !subject.hasPrefix("."), !subject.hasSuffix("."), !subject.contains("..")
        else { throw WharfError(.invalidInput, "\"\(subject.prefix(60))\" is not a NATS subject") }
    }
}
