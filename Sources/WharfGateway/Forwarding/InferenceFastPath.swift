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

/// The gateway's inference path at the byte level: the first handler of each client
/// connection, ahead of NIO's HTTP/1 codec.
///
/// A connection that sends only plain inference requests (`POST /v2/models/{m}[/versions/{v}]/infer`,
/// HTTP/1.1, one `Content-Length`, keep-alive: what inference clients send) has them read,
/// forwarded and answered here, from and to bytes, without the HTTP decoder, encoder and the
/// pipeline steps between them (a quarter to a third of the gateway's user CPU per request).
/// The first request that is anything else (another route, another method or version, a query,
/// `Transfer-Encoding`, `Expect`, `Connection: close`, an unusual byte) hands the connection,
/// from that request's first byte on, to the codec and the handlers behind it for good: once
/// the answer owed here has been written, the bytes are passed on untouched. Deciding where a
/// request ends needs no judgement here (one `Content-Length`, nothing that could disagree
/// with it), and everything doubtful is left to NIO's parser.
final class InferenceFastPath: ChannelDuplexHandler, RemovableChannelHandler, InferenceReceiver {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private let settings: InferenceForwarder.Settings
    private var upstream: UpstreamLoopPool?
    /// Handed to the codec: every byte is passed on.
    private var passingThrough = false
    /// Bytes read and not yet taken.
    private var pending: ByteBuffer?
    /// The head at the front of `pending`, read while its body is still arriving.
    private var headRead: PlainInferenceRequest?
    /// Whether the request whose head was read was already admitted (key, scope, rate limit,
    /// bulkhead): checked when its head arrives, so that a body is not buffered for a request
    /// that will be refused, and not checked twice (a rate limit would count it twice).
    private var headAdmitted = false
    /// A request forwarded whose answer is not written yet.
    private var busy = false
    /// That request, and its id.
    private var forwarded: (request: PlainInferenceRequest, id: RequestID)?
    private var context: ChannelHandlerContext?
    private var readHeld = false
    private var quiesceHeld = false
    /// Closing once the writes have left: no request is taken meanwhile.
    private var closing = false
    /// The client closed its side after sending: answer what came whole, then close.
    private var inputClosed = false
    /// Between a read and the read-complete event that ends its cycle.
    private var inReadCycle = false
    private var isRemoved = false
    /// When the client last sent bytes or got an answer: a connection silent for the idle
    /// timeout, while no answer is owed, is closed (a client that stopped in the middle of a
    /// body would otherwise hold it for ever). After a hand-over to the codec,
    /// ``InferenceForwarder`` keeps the same limit (Hummingbird's timer would not see the
    /// inference answered there, and would close busy connections).
    private var lastHeard = NIODeadline.now()
    private var silenceTimer: Scheduled<Void>?

    init(settings: InferenceForwarder.Settings) {
        self.settings = settings
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        upstream = settings.router.upstream.pool(for: context.eventLoop)
        if let timeout = settings.idleTimeout { checkSilence(after: timeout, context: context) }
        // Reads are asked for here, after each read cycle, until the hand-over: NIO's own
        // request after each cycle would pass through every handler behind this one, which
        // have nothing to say while the connection is read here (2 % of the gateway's CPU).
        try? context.channel.syncOptions?.setOption(.autoRead, value: false)
        if context.channel.isActive { context.read() }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.read()
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        isRemoved = true
        self.context = nil
        silenceTimer?.cancel()
        silenceTimer = nil
    }

    private func checkSilence(after delay: TimeAmount, context: ChannelHandlerContext) {
        silenceTimer = context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            self.silenceTimer = nil
            guard let timeout = self.settings.idleTimeout, !self.passingThrough, !self.isRemoved else { return }
            let quiet = NIODeadline.now() - self.lastHeard
            // Waiting for a replica is the gateway's silence, not the client's.
            if quiet >= timeout, !self.busy {
                context.close(promise: nil)
            } else {
                self.checkSilence(after: self.busy ? timeout : timeout - quiet, context: context)
            }
        }
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !passingThrough else {
            context.fireChannelRead(data)
            return
        }
        inReadCycle = true
        lastHeard = .now()
        var incoming = unwrapInboundIn(data)
        if pending == nil || pending!.readableBytes == 0 {
            pending = incoming
        } else {
            pending!.writeBuffer(&incoming)
        }
        takeRequests(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadCycle = false
        // The handlers behind have seen nothing while the requests are taken here.
        if passingThrough {
            context.fireChannelReadComplete()
        } else {
            read(context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if !passingThrough, case ChannelEvent.inputClosed? = event as? ChannelEvent {
            // The handlers behind would close the connection at once, losing the answers owed.
            inputClosed = true
            takeRequests(context: context)
            if !busy, !passingThrough { closeAfterWrites(context) }
            return
        }
        guard !passingThrough, event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        // Shutting down: close once the answer owed has been written (the router's handlers
        // behind do not know of it).
        if busy {
            quiesceHeld = true
        } else {
            closeAfterWrites(context)
        }
    }

    /// Closes once everything written has left: a close at once fails the writes still
    /// pending (the part of a large answer the socket has not taken yet), and the client gets
    /// a cut answer. Writes complete in order, so an empty one completes after them.
    private func closeAfterWrites(_ context: ChannelHandlerContext) {
        closing = true
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(ByteBuffer())), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    /// Forwards the next whole request, or hands the connection on at the first that is not a
    /// plain inference request. One request at a time: the next waits for this one's answer.
    private func takeRequests(context: ChannelHandlerContext) {
        while !passingThrough, !busy, !closing, let buffer = pending, buffer.readableBytes > 0 {
            let parsed: PlainInferenceRequest.Parsed
            if let headRead {
                parsed = .request(headRead)
            } else {
                parsed = PlainInferenceRequest.parse(buffer, maxBodyBytes: settings.maxBodyBytes)
            }
            switch parsed {
            case .incomplete:
                return
            case .other:
                handOver(context: context)
                return
            case .request(let request):
                guard buffer.readableBytes >= request.headLength + request.contentLength else {
                    if headRead == nil {
                        headRead = request
                        // Admitted before its body is waited for (up to --max-body-bytes): a
                        // refused request is answered now, and the connection closed, since
                        // its body will not be read.
                        do {
                            try settings.admit(model: request.model, headers: request)
                            headAdmitted = true
                        } catch {
                            headRead = nil
                            pending = nil
                            busy = true
                            quiesceHeld = true
                            let requestID = RequestID(given: request.value(request.requestID), random: &upstream!.random)
                            answer(error: error, request: request, requestID: requestID, context: context)
                        }
                    }
                    return
                }
                headRead = nil
                var rest = buffer
                rest.moveReaderIndex(forwardBy: request.headLength)
                let body = rest.readSlice(length: request.contentLength)!
                pending = rest.readableBytes > 0 ? rest : nil
                busy = true
                let admitted = headAdmitted
                headAdmitted = false
                forward(request, body: body, admitted: admitted, context: context)
            }
        }
    }

    /// From here on the codec reads this connection.
    private func handOver(context: ChannelHandlerContext) {
        passingThrough = true
        silenceTimer?.cancel()
        silenceTimer = nil
        // The forwarder behind keeps the silence limit from here on, starting now.
        context.fireUserInboundEventTriggered(ConnectionHandedOver())
        // The handlers behind control reads from here on, as NIO's channel does.
        try? context.channel.syncOptions?.setOption(.autoRead, value: true)
        if let buffer = pending, buffer.readableBytes > 0 {
            pending = nil
            context.fireChannelRead(wrapInboundOut(buffer))
            // Outside a read cycle (after an answer) the codec would wait for one.
            if !inReadCycle { context.fireChannelReadComplete() }
        }
        pending = nil
        if inputClosed { context.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    // MARK: Forwarding

    private func forward(_ request: PlainInferenceRequest, body: ByteBuffer, admitted: Bool, context: ChannelHandlerContext) {
        let requestID = RequestID(given: request.value(request.requestID), random: &upstream!.random)
        if !admitted {
            do {
                try settings.admit(model: request.model, headers: request)
            } catch {
                return answer(error: error, request: request, requestID: requestID, context: context)
            }
        }
        forwarded = (request, requestID)
        let headers = ForwardedRequestHeaders(
            contentType: request.value(request.contentType), inferenceHeaderContentLength: request.value(request.inferenceHeaderContentLength),
            requestID: requestID)
        settings.router.route(
            model: request.model, version: request.version, body: body, headers: request, forwarded: headers, pool: upstream!, receiver: self)
    }

    func inferenceFinished(_ result: Result<InferenceRouter.Forwarded, any Error>) {
        guard !isRemoved, let context, let (request, requestID) = forwarded else { return }
        forwarded = nil
        switch result {
        case .success(let answer):
            self.answer(status: answer.status, body: answer.body, requestID: requestID, context: context) { answer.headers.write(into: &$0) }
        case .failure(let error):
            self.answer(error: error, request: request, requestID: requestID, context: context)
        }
    }

    private func answer(error: any Error, request: PlainInferenceRequest, requestID: RequestID, context: ChannelHandlerContext) {
        let error = settings.errorAnswer(error, method: .post, path: request.path, requestID: requestID.string)
        answer(PlainAnswer.bytes(error: error, requestID: requestID, serverName: settings.serverName), context: context)
    }

    private func answer(
        status: HTTPResponseStatus, body: ByteBuffer, requestID: RequestID, context: ChannelHandlerContext, writeHeaders: (inout ByteBuffer) -> Void
    ) {
        answer(PlainAnswer.bytes(status: status, body: body, requestID: requestID, serverName: settings.serverName, writeHeaders: writeHeaders),
               context: context)
    }

    private func answer(_ bytes: (head: ByteBuffer, body: ByteBuffer?), context: ChannelHandlerContext) {
        if let body = bytes.body {
            context.write(wrapOutboundOut(.byteBuffer(bytes.head)), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.byteBuffer(body)), promise: nil)
        } else {
            context.writeAndFlush(wrapOutboundOut(.byteBuffer(bytes.head)), promise: nil)
        }
        busy = false
        lastHeard = .now()
        if quiesceHeld {
            closeAfterWrites(context)
            return
        }
        takeRequests(context: context)
        if inputClosed, !busy, !passingThrough {
            closeAfterWrites(context)
            return
        }
        if !busy, readHeld {
            readHeld = false
            context.read()
        }
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        // Reads stop only while a pipelined request waits for the answer before it.
        if busy, let pending, pending.readableBytes > 0 {
            readHeld = true
        } else {
            context.read()
        }
    }
}

/// The bytes of an answer on the byte-level paths (``InferenceFastPath``, the forwarding plane).
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

/// A plain inference request's head, read strictly: what ``InferenceFastPath`` answers itself.
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
