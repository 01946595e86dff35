#if os(Linux)
import CWharfEpoll
import Glibc
import NIOCore
import HTTPTypes
import Logging
import NIOHTTP1
import WharfCore

/// A client connection on the forwarding plane.
///
/// Plain inference requests (``PlainInferenceRequest``) are read, admitted, routed and answered
/// here, one at a time, in order. The first request that is anything else hands the connection,
/// from that request's first byte on, to NIO and the gateway's router for good (once the answers
/// written here have left): ``ForwardingPlane`` gives the socket and the bytes read to a NIO
/// channel with the same pipeline as a connection NIO accepted (the codec and the
/// ``InferenceForwarder``), so only NIO's parser ever judges a doubtful request.
final class PlaneConnection: LoopSocket, InferenceReceiver {
    private let home: PlaneLoop
    private let fd: Int32
    /// Bytes read and not yet taken.
    private var pending: ByteBuffer?
    /// The head at the front of `pending`, read while its body is still arriving.
    private var headRead: PlainInferenceRequest?
    /// Whether that request was admitted when its head arrived (a rate limit would count it twice).
    private var headAdmitted = false
    /// A request forwarded whose answer is not written yet, and its id.
    private var forwarded: (request: PlainInferenceRequest, id: RequestID)?
    private var busy = false
    /// Shutting down, or a refused request whose body will not be read: close after the answer.
    private var quiesceHeld = false
    /// Closing once the writes have left: no request is taken meanwhile.
    private var closing = false
    /// The client closed its side after sending: answer what came whole, then close.
    private var inputClosed = false
    /// A pipelined request waits for the answer before it: nothing more is read meanwhile.
    private var readsPaused = false
    /// The next request is the router's: the connection goes to NIO once the writes have left.
    private var handOverWaiting = false
    /// A request refused at its head: after its answer the connection is shut for writing and
    /// its unread body read and dropped for a while before the close, since a close with bytes
    /// unread resets the connection, and the reset can destroy the answer before the client
    /// reads it.
    private var lingersAfterAnswer = false
    private var lingering = false
    private var lingerTimer: LoopTimer?
    /// Longest a refused request's body is read and dropped after its answer.
    static let lingerLimit = TimeAmount.seconds(2)
    /// Closed, or handed to NIO.
    private var isGone = false
    private var outbound = OutboundBytes()
    private var watching: UInt32 = EPOLLIN.rawValue
    /// When the client last sent bytes or got an answer: a connection silent for the idle
    /// timeout while no answer is owed is closed.
    private var lastHeard = NIODeadline.now()
    private var silenceTimer: LoopTimer?

    init(fd: Int32, home: PlaneLoop) {
        self.fd = fd
        self.home = home
    }

    func start() {
        home.loop.watch(fd, self, events: watching)
        if let timeout = home.settings.idleTimeout { checkSilence(after: timeout) }
    }

    private func checkSilence(after delay: TimeAmount) {
        silenceTimer = home.loop.schedule(at: .now() + delay) { [self] in
            silenceTimer = nil
            guard let timeout = home.settings.idleTimeout, !isGone else { return }
            let quiet = NIODeadline.now() - lastHeard
            // Waiting for a replica is the gateway's silence, not the client's.
            if quiet >= timeout, !busy {
                closeNow()
            } else {
                checkSilence(after: busy ? timeout : timeout - quiet)
            }
        }
    }

    // MARK: Events

    func readable(events: UInt32) {
        guard !isGone else { return }
        let scratch = home.loop.scratch
        let count = recv(fd, scratch.baseAddress, scratch.count, 0)
        if lingering {
            if count == 0 || (count < 0 && errno != EAGAIN && errno != EINTR) { closeNow() }
            return
        }
        if count > 0 {
            lastHeard = .now()
            let bytes = UnsafeRawBufferPointer(rebasing: scratch[0..<count])
            if pending == nil || pending!.readableBytes == 0 {
                var fresh = ByteBufferAllocator().buffer(capacity: count)
                fresh.writeBytes(bytes)
                pending = fresh
            } else {
                pending!.writeBytes(bytes)
            }
            takeRequests()
            // Reads stop only while a pipelined request waits for the answer before it.
            // Or while the next waits to be handed over: nothing is taken meanwhile, so what came
            // would pile up.
            if !isGone, busy || handOverWaiting, let pending, pending.readableBytes > 0 {
                readsPaused = true
                updateInterest()
            }
        } else if count == 0 {
            // Both ways shut (a reset after the end): nothing more will come or leave.
            if inputClosed, events & EPOLLHUP.rawValue != 0 { return closeNow() }
            inputClosed = true
            updateInterest()
            takeRequests()
            if !isGone, !busy, !handOverWaiting { closeAfterWrites() }
        } else if errno != EAGAIN, errno != EINTR {
            closeNow()
        }
    }

    func writable() {
        guard !isGone else { return }
        flush()
    }

    /// Shutting down, and the answer owed was not taken in time: closed whatever is left.
    func abandon() {
        closeNow()
    }

    /// Shutting down: close once the answer owed has been written (a request whose body is
    /// still arriving is owed one too), or hand over the request waiting for NIO.
    func quiesce() {
        guard !isGone else { return }
        if busy || headRead != nil || handOverWaiting {
            quiesceHeld = true
        } else {
            closeAfterWrites()
        }
    }

    // MARK: Requests

    /// Forwards the next whole request, or hands the connection on at the first that is not a
    /// plain inference request. One request at a time: the next waits for this one's answer.
    private func takeRequests() {
        while !isGone, !busy, !closing, !handOverWaiting, let buffer = pending, buffer.readableBytes > 0 {
            let parsed: PlainInferenceRequest.Parsed
            if let headRead {
                parsed = .request(headRead)
            } else {
                parsed = PlainInferenceRequest.parse(buffer, maxBodyBytes: home.settings.maxBodyBytes)
            }
            switch parsed {
            case .incomplete:
                return
            case .other:
                return handOver()
            case .request(let request):
                guard buffer.readableBytes >= request.headLength + request.contentLength else {
                    if headRead == nil {
                        headRead = request
                        // Admitted before its body is waited for (up to --max-body-bytes): a
                        // refused request is answered now, and the connection closed, since its
                        // body will not be read.
                        do {
                            try home.settings.admit(model: request.model, headers: request)
                            headAdmitted = true
                        } catch {
                            headRead = nil
                            pending = nil
                            busy = true
                            quiesceHeld = true
                            lingersAfterAnswer = true
                            let requestID = RequestID(given: request.value(request.requestID), random: &home.upstream.random)
                            answer(error: error, request: request, requestID: requestID)
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
                forward(request, body: body, admitted: admitted)
            }
        }
    }

    private func forward(_ request: PlainInferenceRequest, body: ByteBuffer, admitted: Bool) {
        let requestID = RequestID(given: request.value(request.requestID), random: &home.upstream.random)
        if !admitted {
            do {
                try home.settings.admit(model: request.model, headers: request)
            } catch {
                return answer(error: error, request: request, requestID: requestID)
            }
        }
        forwarded = (request, requestID)
        let headers = ForwardedRequestHeaders(
            contentType: request.value(request.contentType), inferenceHeaderContentLength: request.value(request.inferenceHeaderContentLength),
            requestID: requestID)
        home.settings.router.route(
            model: request.model, version: request.version, body: body, headers: request, forwarded: headers, pool: home.upstream, receiver: self)
    }

    func inferenceFinished(_ result: Result<InferenceRouter.Forwarded, any Error>) {
        guard let (request, requestID) = forwarded else { return }
        forwarded = nil
        // The client is gone: the answer has nowhere to go.
        guard !isGone else { return }
        switch result {
        case .success(let answer):
            write(PlainAnswer.bytes(status: answer.status, body: answer.body, requestID: requestID, serverName: home.settings.serverName) {
                answer.headers.write(into: &$0)
            })
        case .failure(let error):
            self.answer(error: error, request: request, requestID: requestID)
        }
    }

    private func answer(error: any Error, request: PlainInferenceRequest, requestID: RequestID) {
        let error = home.settings.errorAnswer(error, method: .post, path: request.path, requestID: requestID.string)
        write(PlainAnswer.bytes(error: error, requestID: requestID, serverName: home.settings.serverName))
    }

    /// Writes an answer and takes the next request.
    private func write(_ bytes: (head: ByteBuffer, body: ByteBuffer?)) {
        outbound.append(bytes.head)
        if let body = bytes.body { outbound.append(body) }
        busy = false
        lastHeard = .now()
        flush()
        guard !isGone else { return }
        if quiesceHeld { return closeAfterWrites() }
        takeRequests()
        guard !isGone else { return }
        if inputClosed, !busy, !handOverWaiting { return closeAfterWrites() }
        if !busy, !handOverWaiting, readsPaused {
            readsPaused = false
            updateInterest()
        }
    }

    // MARK: Writes, closes and the hand-over

    private func flush() {
        switch outbound.flush(fd) {
        case .all:
            if closing { return lingersAfterAnswer ? linger() : closeNow() }
            if handOverWaiting { return handOver() }
            updateInterest()
        case .some:
            updateInterest()
        case .failed:
            closeNow()
        }
    }

    private func updateInterest() {
        var wanted: UInt32 = 0
        if !inputClosed, !readsPaused, !closing || lingering { wanted |= EPOLLIN.rawValue }
        if !outbound.isEmpty { wanted |= EPOLLOUT.rawValue }
        guard wanted != watching else { return }
        watching = wanted
        home.loop.change(fd, events: wanted)
    }

    /// Closes once everything written has left: a close at once would cut an answer the socket
    /// has not taken whole.
    private func closeAfterWrites() {
        closing = true
        if outbound.isEmpty {
            lingersAfterAnswer ? linger() : closeNow()
        } else {
            updateInterest()
        }
    }

    /// The answer has left: no more is written, and what the client still sends is dropped
    /// until it closes its side or the limit passes.
    private func linger() {
        guard !lingering else { return }
        lingering = true
        shutdown(fd, Int32(SHUT_WR))
        if inputClosed { return closeNow() }
        updateInterest()
        lingerTimer = home.loop.schedule(at: .now() + Self.lingerLimit) { [self] in closeNow() }
    }

    private func closeNow() {
        guard !isGone else { return }
        isGone = true
        silenceTimer?.cancel()
        lingerTimer?.cancel()
        home.loop.forget(fd)
        Glibc.close(fd)
        home.ended(self)
    }

    /// From here on NIO reads this connection, from the first byte not taken here.
    private func handOver() {
        guard outbound.isEmpty else {
            handOverWaiting = true
            return
        }
        isGone = true
        silenceTimer?.cancel()
        home.loop.forget(fd)
        home.ended(self)
        home.plane.adopt(fd: fd, bytes: pending)
        pending = nil
    }
}

/// What one forwarding loop holds: its thread, its replica connections and its clients.
final class PlaneLoop: LoopSocket {
    let loop: ForwardingLoop
    let plane: ForwardingPlane
    let upstream: PlaneUpstreamPool
    let settings: InferenceForwarder.Settings
    private let listener: Int32
    private var clients: [ObjectIdentifier: PlaneConnection] = [:]
    private var accepting = false
    private var quiescing = false
    private var drained: (() -> Void)?

    init(loop: ForwardingLoop, plane: ForwardingPlane, listener: Int32, connectionsPerReplica: Int) {
        self.loop = loop
        self.plane = plane
        self.listener = listener
        settings = plane.settings
        upstream = PlaneUpstreamPool(loop: loop, connectionsPerEndpoint: connectionsPerReplica)
    }

    /// Watches the listener (shared by every loop; one of them is woken for each connection).
    func startAccepting() {
        accepting = true
        loop.watch(listener, self, events: EPOLLIN.rawValue | EPOLLEXCLUSIVE.rawValue)
    }

    func readable(events: UInt32) {
        guard accepting else { return }
        // A few at a time, so that a burst of connections does not hold up the requests.
        for _ in 0..<16 {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else {
                if errno == EMFILE || errno == ENFILE {
                    // Out of descriptors: the listener stays readable, so stop watching it a while.
                    plane.logger.error("out of file descriptors: not accepting connections for 100 ms")
                    accepting = false
                    loop.forget(listener)
                    loop.schedule(at: .now() + .milliseconds(100)) { [self] in
                        if !quiescing { startAccepting() }
                    }
                }
                return
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            PlaneSockets.setNoDelay(fd)
            let connection = PlaneConnection(fd: fd, home: self)
            clients[ObjectIdentifier(connection)] = connection
            connection.start()
        }
    }

    func writable() {}

    func ended(_ connection: PlaneConnection) {
        clients[ObjectIdentifier(connection)] = nil
        if quiescing, clients.isEmpty, let drained {
            self.drained = nil
            drained()
        }
    }

    /// Stops accepting and closes every connection once its owed answer is written, or when
    /// `timeout` has passed; `drained` runs when the last has closed.
    func quiesce(closingAfter timeout: TimeAmount, drained: @escaping () -> Void) {
        quiescing = true
        if accepting {
            accepting = false
            loop.forget(listener)
        }
        self.drained = drained
        for connection in Array(clients.values) { connection.quiesce() }
        if clients.isEmpty, let waiting = self.drained {
            self.drained = nil
            return waiting()
        }
        loop.schedule(at: .now() + timeout) { [self] in
            guard !clients.isEmpty else { return }
            plane.logger.warning("shutdown timeout: closing connections whose answers were not taken", metadata: ["connections": "\(clients.count)"])
            for connection in Array(clients.values) { connection.abandon() }
        }
    }

    /// After the drain: the replica connections.
    func closeUpstream() {
        upstream.closeAll()
    }
}
#endif
