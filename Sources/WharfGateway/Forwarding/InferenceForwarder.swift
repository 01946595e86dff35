#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1
import WharfCore
import WharfHTTP

/// The gateway's inference path, as a channel handler in each client connection, right after
/// the HTTP/1 codec and before Hummingbird: `POST /v2/models/{m}[/versions/{v}]/infer` is
/// read, authorised, routed and forwarded on the connection's own event loop, and answered from
/// there; every other request passes through to Hummingbird's router untouched.
///
/// Why not a route: a Hummingbird route runs in a task, and the forwarding client on its own
/// loop, so each forwarded request woke three threads and copied through two HTTP stacks. Here
/// one thread reads the request, writes it to a pooled replica connection and writes the
/// answer back, with NIO's HTTP/1 types throughout (no conversion to swift-http-types).
///
/// HTTP/1.1 keeps answers in request order. The two paths never overlap on one connection: a
/// request that arrives while the other path still owes an answer waits (and reads stop while
/// one does), and goes on once that answer has been written.
final class InferenceForwarder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    struct Settings: Sendable {
        var router: InferenceRouter
        var access: AccessControl
        var maxBodyBytes: Int
        var serverName: String
        var logger: Logger
        /// A client connection silent this long, while not waiting for an answer, is closed:
        /// idle between requests, or stalled in the middle of one.
        var idleTimeout: TimeAmount? = .seconds(60)

        /// Refuses a hostile model name, or a caller whose key may not infer with the model.
        func admit(model: String, headers: some RequestHeaderLookup) throws {
            try RegistryName.check(model, kind: "model")
            try access.authorizeInference(headers: headers, model: model)
        }

        /// The JSON error answer for `error`, logged with the request id.
        func errorAnswer(_ error: any Error, method: HTTPRequest.Method, path: String, requestID: String) -> ErrorAnswer {
            var logger = self.logger
            logger[metadataKey: "request_id"] = .string(requestID)
            return ErrorAnswer(for: error, method: method, path: String(path.prefix(200)), logger: logger)
        }
    }

    private let settings: Settings

    private enum State {
        case idle
        /// Reading an inference request's body.
        case collecting(Inference)
        /// A body over the limit: 413 is written, the rest of the body is dropped.
        case discarding
        /// Forwarded; the answer is not written yet.
        case awaitingAnswer
        /// Passing a request's parts on to the router.
        case passingThrough
    }

    private struct Inference {
        var head: HTTPRequestHead
        var target: Target
        var requestID: RequestID
        var body: ByteBuffer?
        var closeAfter: Bool
        /// Admitted when its head arrived (not checked again: a rate limit would count it twice).
        var admitted = false
    }

    struct Target: Equatable {
        var model: String
        var version: String?
    }

    private var state = State.idle
    /// Answers the router still owes for requests passed to it.
    private var routerAnswersOwed = 0
    private var waiting = CircularBuffer<HTTPServerRequestPart>()
    /// This loop's connections to the replicas.
    private var upstream: UpstreamLoopPool?
    private var readHeld = false
    private var quiesceHeld = false
    /// Answers written here that have not all left for the socket yet. Shutting down waits for
    /// them: the router's handler closes an idle connection at once, which fails what the socket
    /// has not taken of a large answer.
    private var answersLeaving = 0
    /// The client closed its side while an inference was owed: passed on once it is answered.
    private var inputClosedHeld = false
    /// Parts passed to the router that no read-complete event has followed yet.
    private var passedOnSinceReadComplete = false
    private var isRemoved = false
    /// When the client last sent a part or got a whole answer. A connection silent for the idle
    /// timeout while no answer is owed to it is closed, as on the forwarding plane (which hands
    /// connections to this codec path, where Hummingbird's own timer would not see inference).
    private var lastHeard = NIODeadline.now()
    private var silenceTimer: Scheduled<Void>?
    /// A request the HTTP decoder refused while an answer was owed: the router answers it (400,
    /// and a close) once the answers owed ahead of it are written, not ahead of them.
    private var heldParseError: (any Error)?

    init(settings: Settings) {
        self.settings = settings
    }

    func handlerAdded(context: ChannelHandlerContext) {
        upstream = settings.router.upstream.pool(for: context.eventLoop)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        isRemoved = true
        silenceTimer?.cancel()
        silenceTimer = nil
    }

    /// Whether the client is waiting for an answer (its silence is then not its own).
    private var answerOwed: Bool {
        if case .awaitingAnswer = state { return true }
        if !waiting.isEmpty { return true }
        if case .idle = state, routerAnswersOwed > 0 { return true }
        return false
    }

    private func checkSilence(after delay: TimeAmount, context: ChannelHandlerContext) {
        silenceTimer = context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            self.silenceTimer = nil
            guard let timeout = self.settings.idleTimeout, !self.isRemoved else { return }
            let quiet = NIODeadline.now() - self.lastHeard
            if quiet >= timeout, !self.answerOwed {
                context.close(promise: nil)
            } else {
                self.checkSilence(after: self.answerOwed ? timeout : timeout - quiet, context: context)
            }
        }
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastHeard = .now()
        // Armed when the codec takes the connection (``ConnectionHandedOver``), or here.
        if silenceTimer == nil, let timeout = settings.idleTimeout { checkSilence(after: timeout, context: context) }
        let part = unwrapInboundIn(data)
        if waiting.isEmpty, canTake(part) {
            take(part, context: context)
        } else {
            waiting.append(part)
        }
    }

    /// Whether `part` can be handled now without answering out of order.
    private func canTake(_ part: HTTPServerRequestPart) -> Bool {
        if case .awaitingAnswer = state { return false }
        if case .head(let head) = part, case .idle = state, routerAnswersOwed > 0, Self.target(of: head) != nil { return false }
        return true
    }

    private func take(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch (state, part) {
        case (.idle, .head(let head)):
            guard let target = Self.target(of: head) else {
                routerAnswersOwed += 1
                state = .passingThrough
                passOn(part, context: context)
                return
            }
            let requestID = RequestID(given: head.headers.first(name: "x-request-id"), random: &upstream!.random)
            var inference = Inference(head: head, target: target, requestID: requestID, body: nil, closeAfter: !head.isKeepAlive)
            // Judged at the head: a request that will be refused, or whose declared body is over
            // the limit, is answered before its body is read (and before any `100 Continue`),
            // and the connection closed, the body unread.
            if let declared = head.headers.first(name: "content-length").flatMap({ Int($0) }), declared > settings.maxBodyBytes {
                inference.closeAfter = true
                state = .discarding
                return respond(to: inference, with: bodyTooLarge, context: context)
            }
            do {
                try settings.admit(model: target.model, headers: head.headers)
                inference.admitted = true
            } catch {
                inference.closeAfter = true
                state = .discarding
                return respond(to: inference, with: errorAnswer(error, inference), context: context)
            }
            state = .collecting(inference)
            // curl and others wait (a second, for curl) for leave to send a large body; an
            // HTTP/1.0 client knows no interim answers.
            if head.version.minor >= 1, head.headers[canonicalForm: "expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
        case (.collecting(var inference), .body(var chunk)):
            state = .idle  // drops the state's reference, so the body below is not copied on write
            let size = (inference.body?.readableBytes ?? 0) + chunk.readableBytes
            guard size <= settings.maxBodyBytes else {
                state = .discarding
                inference.closeAfter = true
                respond(to: inference, with: bodyTooLarge, context: context)
                return
            }
            if inference.body == nil {
                inference.body = chunk
            } else {
                inference.body!.writeBuffer(&chunk)
            }
            state = .collecting(inference)
        case (.collecting(let inference), .end):
            state = .awaitingAnswer
            forward(inference, context: context)
        case (.discarding, .end):
            state = .idle
        case (.discarding, _):
            break
        case (.passingThrough, .end):
            state = .idle
            passOn(part, context: context)
        default:
            // Anything else is the router's to judge (it refuses parts out of order).
            passOn(part, context: context)
        }
    }

    private func passOn(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        passedOnSinceReadComplete = true
        context.fireChannelRead(wrapInboundOut(part))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        passedOnSinceReadComplete = false
        context.fireChannelReadComplete()
    }

    /// The model (and deployment version) of an inference request, or nil for other requests:
    /// `POST /v2/models/{m}/infer` or `POST /v2/models/{m}/versions/{v}/infer`, any query, in
    /// origin form or absolute form (`http://host/v2/…`, as a client configured with a proxy
    /// sends it, and as the router reads it).
    static func target(of head: HTTPRequestHead) -> Target? {
        guard head.method == .POST else { return nil }
        return head.uri.utf8.withContiguousStorageIfAvailable { uri -> Target? in
            var start = 0
            if uri.first != UInt8(ascii: "/") {
                // The authority ends at the first of / ? #; only a path may follow it here.
                guard let scheme = uri.firstRange(of: "://".utf8), scheme.lowerBound > 0,
                      let end = uri[scheme.upperBound...].firstIndex(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }),
                      uri[end] == UInt8(ascii: "/")
                else { return nil }
                start = end
            }
            let end = uri[start...].firstIndex(of: UInt8(ascii: "?")) ?? uri.count
            return target(path: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: uri[start..<end])))
        } ?? nil
    }

    /// The model and version an inference path names, `/v2/models/{m}/infer` or
    /// `/v2/models/{m}/versions/{v}/infer` (without a query), or nil for any other path. Both
    /// inference paths read it here; the byte-level one also checks the names' characters.
    static func target(path: UnsafeRawBufferPointer) -> Target? {
        let prefix: StaticString = "/v2/models/"
        let suffix: StaticString = "/infer"
        let end = path.count
        guard end > prefix.utf8CodeUnitCount + suffix.utf8CodeUnitCount,
              memcmp(path.baseAddress!, prefix.utf8Start, prefix.utf8CodeUnitCount) == 0,
              memcmp(path.baseAddress! + end - suffix.utf8CodeUnitCount, suffix.utf8Start, suffix.utf8CodeUnitCount) == 0
        else { return nil }
        let inner = UnsafeRawBufferPointer(rebasing: path[prefix.utf8CodeUnitCount..<(end - suffix.utf8CodeUnitCount)])
        guard let slash = inner.firstIndex(of: UInt8(ascii: "/")) else {
            return Target(model: String(decoding: inner, as: UTF8.self), version: nil)
        }
        // {m}/versions/{v}
        let model = UnsafeRawBufferPointer(rebasing: inner[..<slash])
        let rest = UnsafeRawBufferPointer(rebasing: inner[(slash + 1)...])
        let versions: StaticString = "versions/"
        guard !model.isEmpty, rest.count > versions.utf8CodeUnitCount,
              memcmp(rest.baseAddress!, versions.utf8Start, versions.utf8CodeUnitCount) == 0
        else { return nil }
        let version = UnsafeRawBufferPointer(rebasing: rest[versions.utf8CodeUnitCount...])
        guard !version.contains(UInt8(ascii: "/")) else { return nil }
        return Target(model: String(decoding: model, as: UTF8.self), version: String(decoding: version, as: UTF8.self))
    }

    private func forward(_ inference: Inference, context: ChannelHandlerContext) {
        let model = inference.target.model
        if !inference.admitted {
            do {
                try settings.admit(model: model, headers: inference.head.headers)
            } catch {
                return respond(to: inference, with: errorAnswer(error, inference), context: context)
            }
        }
        settings.router.route(
            model: model, version: inference.target.version, body: inference.body ?? context.channel.allocator.buffer(capacity: 0),
            headers: inference.head.headers, forwarded: ForwardedRequestHeaders(inference.head.headers, requestID: inference.requestID),
            pool: upstream!
        ) { result in
            guard !self.isRemoved else { return }
            switch result {
            case .success(let forwarded):
                self.respond(to: inference, status: forwarded.status, headers: forwarded.headers.httpHeaders, body: forwarded.body, context: context)
            case .failure(let error):
                self.respond(to: inference, with: self.errorAnswer(error, inference), context: context)
            }
        }
    }

    /// The 413 of a body over the limit, declared in the head or found while collecting it.
    private var bodyTooLarge: ErrorAnswer {
        ErrorAnswer(status: .contentTooLarge, message: "the request body is larger than \(settings.maxBodyBytes) bytes")
    }

    private func errorAnswer(_ error: any Error, _ inference: Inference) -> ErrorAnswer {
        let method = (try? HTTPRequest.Method(inference.head.method)) ?? .post
        return settings.errorAnswer(error, method: method, path: inference.head.uri, requestID: inference.requestID.string)
    }

    private func respond(to inference: Inference, with error: ErrorAnswer, context: ChannelHandlerContext) {
        respond(to: inference, status: HTTPResponseStatus(statusCode: error.status.code), headers: HTTPHeaders(error.headers), body: error.body,
                context: context)
    }

    private func respond(to inference: Inference, status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer, context: ChannelHandlerContext) {
        var headers = headers
        headers.add(name: "x-request-id", value: inference.requestID.string)
        headers.add(name: "content-length", value: String(body.readableBytes))
        headers.add(name: "server", value: settings.serverName)
        if inference.closeAfter {
            headers.add(name: "connection", value: "close")
        } else if inference.head.version.major == 1, inference.head.version.minor == 0 {
            headers.add(name: "connection", value: "keep-alive")
        }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: inference.head.version, status: status, headers: headers))), promise: nil)
        if body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        lastHeard = .now()
        if inference.closeAfter {
            // Closed once the answer has left: a close at once fails what the socket has not
            // taken yet of a large answer.
            let written = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
            written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            return
        }
        answersLeaving += 1
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in
            self.answersLeaving -= 1
            self.passOnQuiesceIfDone(context: context)
        }
        if case .awaitingAnswer = state { state = .idle }
        resume(context: context)
    }

    /// Takes the requests that waited, as far as the order allows, then lets reads go on.
    private func resume(context: ChannelHandlerContext) {
        while let part = waiting.first, canTake(part) {
            waiting.removeFirst()
            take(part, context: context)
        }
        // The router's channel hands reads on at the end of a read cycle; this is outside one.
        if passedOnSinceReadComplete {
            passedOnSinceReadComplete = false
            context.fireChannelReadComplete()
        }
        guard waiting.isEmpty, !isBusy else { return }
        if let error = heldParseError {
            heldParseError = nil
            context.fireErrorCaught(error)
        }
        passOnQuiesceIfDone(context: context)
        if inputClosedHeld, routerAnswersOwed == 0 {
            inputClosedHeld = false
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    /// Shutting down, held while something was owed: passed on once nothing is.
    private func passOnQuiesceIfDone(context: ChannelHandlerContext) {
        guard quiesceHeld, routerAnswersOwed == 0, answersLeaving == 0, waiting.isEmpty, !isBusy, !isRemoved else { return }
        quiesceHeld = false
        context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    }

    /// An inference is being read or answered on this connection.
    private var isBusy: Bool {
        switch state {
        case .collecting, .awaitingAnswer, .discarding: true
        case .idle, .passingThrough: false
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The codec reads the connection from now (its start, or the forwarding plane's
        // hand-over): the silence limit holds from here, before NIO's decoder has made a part
        // (a head that never ends makes none).
        if event is ConnectionHandedOver {
            lastHeard = .now()
            if silenceTimer == nil, let timeout = settings.idleTimeout { checkSilence(after: timeout, context: context) }
            return
        }
        // Shutting down: the router's connection handler closes idle connections at once, and it
        // does not see the inference in flight here, so it hears of it once that is answered.
        if event is ChannelShouldQuiesceEvent, isBusy || !waiting.isEmpty || answersLeaving > 0 {
            quiesceHeld = true
            return
        }
        // The client sent its requests and closed its side: the router's handlers would close
        // the connection at once, so they hear of it once the inference owed is answered.
        if case ChannelEvent.inputClosed? = event as? ChannelEvent, isBusy || !waiting.isEmpty {
            inputClosedHeld = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Held only while this handler owes an inference answer ahead of it. Not while a body
        // is being collected (that request will never end: the router answers the error now),
        // nor when only the router owes answers (its own stream keeps their order).
        if error is HTTPParserError, heldParseError == nil, owesInferenceAhead {
            heldParseError = error
            return
        }
        // Bytes after the refused request make the decoder fail again on each read: only the
        // first error counts, or the router would close before the answer owed is written.
        if heldParseError != nil, error is ByteToMessageDecoderError { return }
        context.fireErrorCaught(error)
    }

    /// An inference answer is owed, or a request waits behind one.
    private var owesInferenceAhead: Bool {
        if case .awaitingAnswer = state { return true }
        return !waiting.isEmpty
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        // Reads stop only while pipelined requests wait, so that they cannot pile up. Not while
        // an answer is owed: a client that waits for it sends nothing meanwhile, and stopping
        // reads would cost two epoll_ctl calls a request. (After a refused request the decoder
        // drops what it reads: bytes left unread at the close would reset the connection, and
        // the client could lose the answers written before it.)
        if waiting.isEmpty {
            context.read()
        } else {
            readHeld = true
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        guard case .end = unwrapOutboundIn(data) else { return }
        lastHeard = .now()
        if routerAnswersOwed > 0 {
            routerAnswersOwed -= 1
            if routerAnswersOwed == 0 { resume(context: context) }
        }
    }
}

/// Sent ahead of a connection's first bytes (``HandedOverBytes``): the codec reads this
/// connection from here on, and the forwarder keeps its silence limit.
struct ConnectionHandedOver {}

/// Hummingbird's HTTP/1 child channel with the ``InferenceForwarder`` right after NIO's HTTP/1
/// codec, ahead of the conversion to swift-http-types that Hummingbird's router needs.
struct ForwardingHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    typealias Value = HTTP1Channel.Value

    let inner: HTTP1Channel
    let settings: InferenceForwarder.Settings

    var responder: HTTPChannelHandler.Responder { inner.responder }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        setup(channel: channel, bytes: nil, logger: logger)
    }

    /// With `bytes` already read from the connection (by the forwarding plane, which handed
    /// it over) passed to the codec first.
    func setup(channel: any Channel, bytes: ByteBuffer?, logger: Logger) -> EventLoopFuture<Value> {
        inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let pipeline = channel.pipeline.syncOperations
            let conversion = try pipeline.handler(type: HTTP1ToHTTPServerCodec.self)
            try pipeline.addHandler(InferenceForwarder(settings: settings), position: .before(conversion))
            try pipeline.addHandler(HandedOverBytes(bytes: bytes), position: .first)
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 with the gateway's inference path in front of the router; `adoption`, when
    /// given, learns the connection setup, for the connections the forwarding plane hands over.
    static func forwardingHTTP1(_ settings: InferenceForwarder.Settings, adoption: ChannelAdoption? = nil) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            let channel = ForwardingHTTP1Channel(inner: HTTP1Channel(responder: responder, configuration: .wharf), settings: settings)
            adoption?.channel = channel
            return channel
        }
    }
}

/// The router's connection setup (``ForwardingHTTP1Channel``), known once Hummingbird builds its
/// server, for the connections the forwarding plane hands over.
final class ChannelAdoption: Sendable {
    private let box = NIOLockedValueBox<ForwardingHTTP1Channel?>(nil)

    var channel: ForwardingHTTP1Channel? {
        get { box.withLockedValue { $0 } }
        set { box.withLockedValue { $0 = newValue } }
    }
}

/// First in a connection's pipeline: as it becomes active, before NIO reads the socket, it
/// tells the handlers behind that the codec reads the connection, and passes on the bytes the
/// forwarding plane read from it, if it handed it over.
final class HandedOverBytes: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var bytes: ByteBuffer?

    init(bytes: ByteBuffer?) {
        self.bytes = bytes
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // Added after the channel became active: no `channelActive` will come.
        if context.channel.isActive { handOver(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        handOver(context: context)
    }

    private func handOver(context: ChannelHandlerContext) {
        context.fireUserInboundEventTriggered(ConnectionHandedOver())
        if let bytes, bytes.readableBytes > 0 {
            self.bytes = nil
            context.fireChannelRead(wrapInboundOut(bytes))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
