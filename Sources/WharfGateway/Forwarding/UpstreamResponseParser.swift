import NIOCore
import NIOHTTP1

/// Reads a replica's HTTP/1.1 answers from the bytes of its connection, as they arrive.
///
/// The gateway sends one request at a time on a connection and keeps only a few headers of the
/// answer, so it reads answers itself rather than through NIO's decoder and the pipeline steps
/// around it (a tenth to a fifth of the gateway's user CPU per request). Strict where framing
/// is decided: CRLF line ends, one `Content-Length` or `chunked`, nothing after the answer.
/// Anything it cannot read is an error, and the connection is then closed.
struct UpstreamResponseParser {
    enum Failure: Error, Equatable {
        case malformed(String)
        case tooLarge
    }

    /// A whole answer: status, the headers passed back, body, and whether the connection stays open.
    struct Answer {
        var status: HTTPResponseStatus
        var headers: AnswerHeaders
        var body: ByteBuffer
        var keepAlive: Bool
    }

    /// ``AnswerHeaders/names`` as bytes, for comparing without `String`; other headers are read
    /// and dropped.
    private static let keptNames = AnswerHeaders.names.map { Array($0.utf8) }
    let maxBodyBytes: Int
    static let maxHeadBytes = 64 * 1024
    static let maxChunkLineBytes = 1024

    private enum Framing {
        case length(Int)
        case chunked(ChunkState)
        case untilClose
    }

    private enum ChunkState {
        case size
        case data(Int)
        case dataEnd
        case trailers
    }

    private struct Head {
        var status: HTTPResponseStatus
        var headers: AnswerHeaders
        var keepAlive: Bool
        var framing: Framing
    }

    private var pending: ByteBuffer?
    private var head: Head?
    private var body: ByteBuffer?
    private var bodyBytes = 0
    /// Bytes of the answer seen so far (head or body): a connection that closes after some
    /// arrived did not just drop an idle request.
    private(set) var hasStarted = false

    init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    /// Ready for the next answer on the same connection.
    mutating func reset() {
        pending = nil
        head = nil
        body = nil
        bodyBytes = 0
        hasStarted = false
    }

    /// Takes the bytes that arrived; returns the answer once all of it has. Bytes after a
    /// whole answer are an error (nothing else was asked).
    mutating func feed(_ bytes: ByteBuffer) throws(Failure) -> Answer? {
        guard bytes.readableBytes > 0 else { return nil }
        hasStarted = true
        if pending == nil || pending!.readableBytes == 0 {
            pending = bytes
        } else {
            var incoming = bytes
            pending!.writeBuffer(&incoming)
        }
        while true {
            if head == nil {
                guard let parsed = try readHead() else { return nil }
                // 1xx is an interim answer (100 Continue, say): the real one follows.
                if parsed.status.code < 200 {
                    guard parsed.status != .switchingProtocols else { throw .malformed("the replica switched protocols") }
                    continue
                }
                head = parsed
            }
            guard let answer = try readBody() else { return nil }
            if let pending, pending.readableBytes > 0 { throw .malformed("bytes after the answer") }
            reset()
            return answer
        }
    }

    /// The answer when the connection closed: only one delimited by the close is whole.
    mutating func finishAtClose() -> Answer? {
        guard let head, case .untilClose = head.framing else { return nil }
        var body = self.body ?? ByteBuffer()
        if var rest = pending { body.writeBuffer(&rest) }
        reset()
        return Answer(status: head.status, headers: head.headers, body: body, keepAlive: false)
    }

    // MARK: Head

    private mutating func readHead() throws(Failure) -> Head? {
        guard var buffer = pending else { return nil }
        let scanned = buffer.withUnsafeReadableBytes { HTTPHeadBytes.headEnd(in: $0, within: Self.maxHeadBytes + 4) }
        guard let end = scanned else {
            if buffer.readableBytes > Self.maxHeadBytes { throw .malformed("an answer head over \(Self.maxHeadBytes) bytes") }
            return nil
        }
        guard end <= Self.maxHeadBytes else { throw .malformed("an answer head over \(Self.maxHeadBytes) bytes") }
        let head = try buffer.withUnsafeReadableBytes { bytes throws(Failure) in
            try parseHead(UnsafeRawBufferPointer(rebasing: bytes[0..<end]), in: buffer)
        }
        buffer.moveReaderIndex(forwardBy: end + 4)
        pending = buffer
        return head
    }

    /// The status line and headers (without the blank line): `bytes`, the readable bytes of
    /// `buffer`, whose slices hold the values passed back.
    private func parseHead(_ bytes: UnsafeRawBufferPointer, in buffer: ByteBuffer) throws(Failure) -> Head {
        var lines = HTTPHeadBytes.Lines(bytes)
        guard let statusLine = lines.next() else {
            throw .malformed(lines.failed ? "a bare CR or LF in the answer head" : "an empty answer head")
        }
        // HTTP/1.x SSS[ reason]
        guard statusLine.count >= 12,
            Self.matches(statusLine, "HTTP/1."),
            statusLine[7] == UInt8(ascii: "0") || statusLine[7] == UInt8(ascii: "1"),
            statusLine[8] == UInt8(ascii: " "),
            statusLine.count == 12 || statusLine[12] == UInt8(ascii: " ")
        else { throw .malformed("not an HTTP/1.x status line") }
        var code = 0
        for index in 9..<12 {
            let digit = statusLine[index] &- UInt8(ascii: "0")
            guard digit < 10 else { throw .malformed("a status code that is not three digits") }
            code = code * 10 + Int(digit)
        }
        guard code >= 100 else { throw .malformed("status code \(code)") }
        let isHTTP11 = statusLine[7] == UInt8(ascii: "1")

        var headers = AnswerHeaders()
        var contentLength: Int?
        var chunked = false
        var close = !isHTTP11
        while let line = lines.next() {
            guard let (name, value) = HTTPHeadBytes.field(line) else { throw .malformed("a header line without a valid name") }
            guard !value.contains(0) else { throw .malformed("a header value with a NUL byte") }
            if HTTPHeadBytes.equalsLowercase(name, "content-length") {
                var length = 0
                guard !value.isEmpty, value.count <= 18 else { throw .malformed("an invalid Content-Length") }
                for byte in value {
                    let digit = byte &- UInt8(ascii: "0")
                    guard digit < 10 else { throw .malformed("an invalid Content-Length") }
                    length = length * 10 + Int(digit)
                }
                guard contentLength == nil || contentLength == length else { throw .malformed("two different Content-Lengths") }
                contentLength = length
            } else if HTTPHeadBytes.equalsLowercase(name, "transfer-encoding") {
                // Only chunked, alone, is taken: another coding would leave the body unreadable.
                guard HTTPHeadBytes.equalsLowercase(value, "chunked"), !chunked else { throw .malformed("a transfer coding other than chunked") }
                chunked = true
            } else if HTTPHeadBytes.equalsLowercase(name, "connection") {
                Self.forEachToken(value) { token in
                    if HTTPHeadBytes.equalsLowercase(token, "close") { close = true }
                    if HTTPHeadBytes.equalsLowercase(token, "keep-alive") { close = false }
                }
            } else {
                for (index, kept) in Self.keptNames.enumerated() where kept.count == name.count {
                    if kept.withUnsafeBytes({ HTTPHeadBytes.equalsLowercase(name, $0) }) {
                        // The first of a name is passed back, as `HTTPHeaders.first` would.
                        if headers[index] == nil {
                            headers[index] = buffer.getSlice(at: buffer.readerIndex + (value.baseAddress.map { $0 - bytes.baseAddress! } ?? 0), length: value.count)
                        }
                        break
                    }
                }
            }
        }
        guard !lines.failed else { throw .malformed("a bare CR or LF in the answer head") }
        guard !(chunked && contentLength != nil) else { throw .malformed("both Content-Length and chunked") }
        let framing: Framing
        if code < 200 || code == 204 || code == 304 {
            framing = .length(0)
        } else if chunked {
            framing = .chunked(.size)
        } else if let contentLength {
            guard contentLength <= maxBodyBytes else { throw .tooLarge }
            framing = .length(contentLength)
        } else {
            framing = .untilClose
            close = true
        }
        return Head(status: HTTPResponseStatus(statusCode: code), headers: headers, keepAlive: !close, framing: framing)
    }

    // MARK: Body

    private mutating func readBody() throws(Failure) -> Answer? {
        guard var state = head else { return nil }
        defer { head = state }
        switch state.framing {
        case .length(let remaining):
            guard remaining > 0 else { return answer(state, body: body ?? ByteBuffer()) }
            guard var buffer = pending else { return nil }
            // The whole body in the bytes at hand (the usual case): a slice, no copy.
            if body == nil, buffer.readableBytes >= remaining {
                let slice = buffer.readSlice(length: remaining)!
                pending = buffer
                return answer(state, body: slice)
            }
            let take = min(remaining, buffer.readableBytes)
            var part = buffer.readSlice(length: take)!
            pending = buffer
            if body == nil { body = ByteBuffer(); body!.reserveCapacity(remaining) }
            body!.writeBuffer(&part)
            state.framing = .length(remaining - take)
            return remaining == take ? answer(state, body: body!) : nil
        case .untilClose:
            guard var buffer = pending else { return nil }
            try append(&buffer, count: buffer.readableBytes)
            pending = buffer
            return nil
        case .chunked(var chunk):
            guard var buffer = pending else { return nil }
            defer {
                pending = buffer
                state.framing = .chunked(chunk)
            }
            while true {
                switch chunk {
                case .size:
                    guard let line = try Self.readLine(&buffer, limit: Self.maxChunkLineBytes) else { return nil }
                    var size = 0
                    var digits = 0
                    for byte in line {
                        guard let value = Self.hexValue(byte) else {
                            guard digits > 0, byte == UInt8(ascii: ";") || byte == 0x20 || byte == 0x09 else { throw .malformed("an invalid chunk size") }
                            break  // chunk extensions are ignored
                        }
                        digits += 1
                        guard digits <= 15 else { throw .malformed("an invalid chunk size") }
                        size = size << 4 | value
                    }
                    guard digits > 0 else { throw .malformed("an invalid chunk size") }
                    guard bodyBytes + size <= maxBodyBytes else { throw .tooLarge }
                    chunk = size == 0 ? .trailers : .data(size)
                case .data(let remaining):
                    guard buffer.readableBytes > 0 else { return nil }
                    let take = min(remaining, buffer.readableBytes)
                    try append(&buffer, count: take)
                    chunk = take == remaining ? .dataEnd : .data(remaining - take)
                case .dataEnd:
                    guard buffer.readableBytes >= 2 else { return nil }
                    guard buffer.readInteger(as: UInt16.self) == 0x0D0A else { throw .malformed("a chunk not followed by CRLF") }
                    chunk = .size
                case .trailers:
                    guard let line = try Self.readLine(&buffer, limit: Self.maxHeadBytes) else { return nil }
                    if line.isEmpty {
                        pending = buffer
                        return answer(state, body: body ?? ByteBuffer())
                    }
                }
            }
        }
    }

    private mutating func append(_ buffer: inout ByteBuffer, count: Int) throws(Failure) {
        guard bodyBytes + count <= maxBodyBytes else { throw .tooLarge }
        var part = buffer.readSlice(length: count)!
        if body == nil { body = part } else { body!.writeBuffer(&part) }
        bodyBytes += count
    }

    private func answer(_ head: Head, body: ByteBuffer) -> Answer {
        Answer(status: head.status, headers: head.headers, body: body, keepAlive: head.keepAlive)
    }

    // MARK: Bytes

    /// One CRLF-ended line (without the CRLF), consumed; nil until it has arrived.
    private static func readLine(_ buffer: inout ByteBuffer, limit: Int) throws(Failure) -> [UInt8]? {
        let view = buffer.readableBytesView
        guard let lf = view.firstIndex(of: 0x0A) else {
            if view.count > limit { throw .malformed("a line over \(limit) bytes") }
            return nil
        }
        let length = lf - view.startIndex
        guard length >= 1, view[lf - 1] == 0x0D else { throw .malformed("a line not ended by CRLF") }
        let line = buffer.readBytes(length: length - 1)!
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// Calls `body` with each comma-separated element of a header value, trimmed.
    private static func forEachToken(_ value: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
        var start = 0
        while start <= value.count {
            var end = start
            while end < value.count, value[end] != UInt8(ascii: ",") { end += 1 }
            var low = start
            var high = end
            while low < high, value[low] == 0x20 || value[low] == 0x09 { low += 1 }
            while high > low, value[high - 1] == 0x20 || value[high - 1] == 0x09 { high -= 1 }
            body(UnsafeRawBufferPointer(rebasing: value[low..<high]))
            start = end + 1
        }
    }

    private static func matches(_ bytes: UnsafeRawBufferPointer, _ prefix: StaticString) -> Bool {
        prefix.withUTF8Buffer { expected in
            bytes.count >= expected.count && (0..<expected.count).allSatisfy { bytes[$0] == expected[$0] }
        }
    }
}
