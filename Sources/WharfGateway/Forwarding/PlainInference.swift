#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1
import WharfCore
import WharfHTTP

/// The bytes of an answer on the forwarding plane.
enum PlainAnswer {
    /// The status line, the headers `writeHeaders` writes (each as `\r\nname: value`), the
    /// gateway's own, and the body: a small body in the head's buffer (one write and one
    /// buffer to write), a large one apart, not copied.
    static func bytes(
        status: HTTPResponseStatus, body: ByteBuffer, requestID: RequestID, serverName: String, writeHeaders: (inout ByteBuffer) -> Void
    ) -> (head: ByteBuffer, body: ByteBuffer?) {
        let inline = body.readableBytes <= UpstreamRequestBytes.inlineBodyLimit
        var head = ByteBufferAllocator().buffer(capacity: 320 + (inline ? body.readableBytes : 0))
        if status == .ok {
            head.writeStaticString("HTTP/1.1 200 OK")
        } else {
            head.writeStaticString("HTTP/1.1 ")
            head.writeString(String(status.code))
            head.writeStaticString(" ")
            head.writeString(status.reasonPhrase)
        }
        writeHeaders(&head)
        head.writeStaticString("\r\nx-request-id: ")
        requestID.write(into: &head)
        head.writeStaticString("\r\ncontent-length: ")
        head.writeString(String(body.readableBytes))
        head.writeStaticString("\r\nserver: ")
        head.writeString(serverName)
        head.writeStaticString("\r\n\r\n")
        guard inline else { return (head, body) }
        head.writeImmutableBuffer(body)
        return (head, nil)
    }

    /// An error's answer (``InferenceForwarder/Settings/errorAnswer(_:method:path:requestID:)``).
    static func bytes(error: ErrorAnswer, requestID: RequestID, serverName: String) -> (head: ByteBuffer, body: ByteBuffer?) {
        bytes(status: HTTPResponseStatus(statusCode: error.status.code), body: error.body, requestID: requestID, serverName: serverName) { head in
            for (name, value) in HTTPHeaders(error.headers) {
                head.writeStaticString("\r\n")
                head.writeString(name)
                head.writeStaticString(": ")
                head.writeString(value)
            }
        }
    }
}

/// A plain inference request's head, read strictly: what the forwarding plane answers itself.
/// Its headers stay in the bytes read; the few the gateway reads are found as they are parsed.
struct PlainInferenceRequest: RequestHeaderLookup {
    var model: String
    var version: String?
    /// The request line and headers, without the blank line: a slice of the bytes read.
    var head: ByteBuffer
    /// Where in `head` the path is.
    var pathRange: Range<Int>
    /// Where in `head` the values of the headers read here are (the first of each name).
    var contentType: Range<Int>?
    var inferenceHeaderContentLength: Range<Int>?
    var requestID: Range<Int>?
    var authorization: Range<Int>?
    var apiKey: Range<Int>?
    /// Bytes of the request line and headers, with the blank line.
    var headLength: Int
    var contentLength: Int

    enum Parsed {
        /// Could still be one: more bytes are needed.
        case incomplete
        /// Anything else, or doubtful: for NIO's codec.
        case other
        case request(PlainInferenceRequest)
    }

    static let maxHeadBytes = 8192
    static let maxHeaders = 64

    var path: String {
        String(buffer: head.getSlice(at: pathRange.lowerBound, length: pathRange.count)!)
    }

    /// The bytes of a value found while parsing.
    func value(_ range: Range<Int>?) -> ByteBuffer? {
        range.map { head.getSlice(at: $0.lowerBound, length: $0.count)! }
    }

    /// The value of the first header named `name` (any case).
    func first(name: String) -> String? {
        switch name {
        case "authorization": return value(authorization).map { String(buffer: $0) }
        case "x-api-key": return value(apiKey).map { String(buffer: $0) }
        case "x-request-id": return value(requestID).map { String(buffer: $0) }
        case "content-type": return value(contentType).map { String(buffer: $0) }
        default:
            var name = name
            return name.withUTF8 { wanted in
                var found: String?
                forEachField { fieldName, value in
                    if found == nil, HTTPHeadBytes.equalsIgnoringCase(fieldName, UnsafeRawBufferPointer(wanted)) {
                        found = String(decoding: value, as: UTF8.self)
                    }
                }
                return found
            }
        }
    }

    /// Every header, in order, names as sent and values without the spaces around them.
    var fields: [(name: String, value: String)] {
        var fields: [(name: String, value: String)] = []
        forEachField { fields.append((String(decoding: $0, as: UTF8.self), String(decoding: $1, as: UTF8.self))) }
        return fields
    }

    private func forEachField(_ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Void) {
        head.withUnsafeReadableBytes { bytes in
            var lines = HTTPHeadBytes.Lines(bytes)
            _ = lines.next()
            while let line = lines.next() {
                if let (name, value) = HTTPHeadBytes.field(line) { body(name, value) }
            }
        }
    }

    static func parse(_ buffer: ByteBuffer, maxBodyBytes: Int) -> Parsed {
        buffer.withUnsafeReadableBytes { bytes in
            let parsed = parse(bytes, maxBodyBytes: maxBodyBytes)
            guard case .request(var request) = parsed else { return parsed }
            request.head = buffer.getSlice(at: buffer.readerIndex, length: request.headLength - 4)!
            return .request(request)
        }
    }

    /// Parses `bytes`; a request's `head` is left empty, for the caller to set.
    private static func parse(_ bytes: UnsafeRawBufferPointer, maxBodyBytes: Int) -> Parsed {
        let prefix: StaticString = "POST /v2/models/"
        let known = min(bytes.count, prefix.utf8CodeUnitCount)
        guard memcmp(bytes.baseAddress!, prefix.utf8Start, known) == 0 else { return .other }
        guard let end = HTTPHeadBytes.headEnd(in: bytes, within: maxHeadBytes + 4) else {
            // A head with a bare LF never ends in CRLF CRLF here: NIO's parser judges it (a 400)
            // rather than the client waiting for the silence limit.
            return bytes.count > maxHeadBytes || HTTPHeadBytes.hasBareLineFeed(bytes) ? .other : .incomplete
        }
        var lines = HTTPHeadBytes.Lines(UnsafeRawBufferPointer(rebasing: bytes[0..<end]))
        guard let requestLine = lines.next(), let (model, version, path) = target(requestLine) else { return .other }
        func range(_ part: UnsafeRawBufferPointer) -> Range<Int> {
            let start = part.baseAddress.map { $0 - bytes.baseAddress! } ?? 0
            return start..<(start + part.count)
        }
        var request = PlainInferenceRequest(
            model: model, version: version, head: ByteBuffer(), pathRange: range(path), headLength: end + 4, contentLength: 0)
        var contentLength: Int?
        var count = 0
        while let line = lines.next() {
            count += 1
            guard count <= maxHeaders, let (name, value) = HTTPHeadBytes.field(line) else { return .other }
            // Visible ASCII, spaces and tabs only.
            guard value.allSatisfy({ ($0 >= 0x20 && $0 < 0x7F) || $0 == 0x09 }) else { return .other }
            // By length first: most names are none of these.
            switch name.count {
            case 14 where HTTPHeadBytes.equalsLowercase(name, "content-length"):
                guard contentLength == nil, !value.isEmpty, value.count <= 15 else { return .other }
                var length = 0
                for byte in value {
                    let digit = byte &- UInt8(ascii: "0")
                    guard digit < 10 else { return .other }
                    length = length * 10 + Int(digit)
                }
                contentLength = length
            case 10 where HTTPHeadBytes.equalsLowercase(name, "connection"):
                guard HTTPHeadBytes.equalsLowercase(value, "keep-alive") else { return .other }
            case 17 where HTTPHeadBytes.equalsLowercase(name, "transfer-encoding"),
                 6 where HTTPHeadBytes.equalsLowercase(name, "expect"),
                 7 where HTTPHeadBytes.equalsLowercase(name, "upgrade"):
                return .other
            case 12 where HTTPHeadBytes.equalsLowercase(name, "content-type"):
                if request.contentType == nil { request.contentType = range(value) }
            case 12 where HTTPHeadBytes.equalsLowercase(name, "x-request-id"):
                if request.requestID == nil { request.requestID = range(value) }
            case 13 where HTTPHeadBytes.equalsLowercase(name, "authorization"):
                if request.authorization == nil { request.authorization = range(value) }
            case 9 where HTTPHeadBytes.equalsLowercase(name, "x-api-key"):
                if request.apiKey == nil { request.apiKey = range(value) }
            case 31 where HTTPHeadBytes.equalsLowercase(name, "inference-header-content-length"):
                if request.inferenceHeaderContentLength == nil { request.inferenceHeaderContentLength = range(value) }
            default:
                break
            }
        }
        // A bare CR or LF anywhere in the head: NIO's parser judges it.
        guard !lines.failed, let contentLength, contentLength <= maxBodyBytes else { return .other }
        request.contentLength = contentLength
        return .request(request)
    }

    /// `POST /v2/models/{m}/infer HTTP/1.1` or `…/{m}/versions/{v}/infer …`, names of letters,
    /// digits, '.', '_' and '-' only.
    private static func target(_ line: UnsafeRawBufferPointer) -> (String, String?, UnsafeRawBufferPointer)? {
        let method = "POST ".utf8.count
        let version: StaticString = " HTTP/1.1"
        guard line.count > method + version.utf8CodeUnitCount,
              memcmp(line.baseAddress! + line.count - version.utf8CodeUnitCount, version.utf8Start, version.utf8CodeUnitCount) == 0
        else { return nil }
        let path = UnsafeRawBufferPointer(rebasing: line[method..<(line.count - version.utf8CodeUnitCount)])
        // Names of plain characters only: a query, an escape or anything odd goes to the codec.
        guard let target = InferenceForwarder.target(path: path),
              target.model.utf8.allSatisfy(isNameByte), target.version?.utf8.allSatisfy(isNameByte) ?? true
        else { return nil }
        return (target.model, target.version, path)
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"): true
        default: false
        }
    }
}
