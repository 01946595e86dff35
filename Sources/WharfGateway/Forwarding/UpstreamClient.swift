import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import WharfCore

/// Where a plain-HTTP replica listens, read once from its URL (`http://host[:port][/prefix]`).
struct UpstreamEndpoint: Hashable, Sendable {
    var host: String
    var port: Int
    /// Put before `/v2/...` (a replica behind a path-routing proxy); empty for most.
    var pathPrefix: String
    /// The `Host` header: as written in the URL.
    var authority: String

    /// nil for URLs the raw client does not speak (https: TLS goes through async-http-client)
    /// and for those ``ReplicaAddress`` refuses (a validated spec has none).
    init?(url: String) {
        guard let address = try? ReplicaAddress(url), address.scheme == .http else { return nil }
        host = address.host
        port = address.port
        pathPrefix = address.pathPrefix
        authority = address.authority
    }

    /// Host and port tell replicas apart; the prefix and authority are left out of the hash
    /// (still compared): a lane is looked up for every forwarded request.
    func hash(into hasher: inout Hasher) {
        hasher.combine(host)
        hasher.combine(port)
    }
}

/// What a pool of connections is kept for: one replica, and one model on it. Two models served
/// by one server get connections of their own, so a model that hangs fills only its own (and
/// its own queue), never the other's: the per-deployment bulkhead holds on shared servers too.
struct UpstreamLane: Hashable, Sendable {
    var endpoint: UpstreamEndpoint
    var model: String
}

/// Why a forwarded request got no answer.
enum UpstreamError: Error, Equatable {
    /// No connection could be made (refused, unreachable): nothing was sent.
    case connectFailed(String)
    /// The connection closed or broke before the whole answer came back.
    case connectionLost
    /// No whole answer before the deadline; the connection was closed.
    case timedOut
    /// The answer was larger than the client takes.
    case responseTooLarge
    /// The answer was not HTTP/1.1 the gateway can read.
    case badAnswer
}

struct UpstreamResponse {
    var status: HTTPResponseStatus
    var headers: AnswerHeaders
    var body: ByteBuffer
}

/// Told the outcome of a forwarded request, once, on the loop that sent it. The router's
/// per-request object: one reference, where a completion closure cost an allocation a request.
protocol UpstreamReceiver: AnyObject {
    func upstreamFinished(_ outcome: Result<UpstreamResponse, UpstreamError>)
}

/// The gateway's HTTP/1.1 client for forwarding inference: keep-alive connections to each
/// replica, opened and used on the event loop of the client connection that needs them, so a
/// forwarded request never leaves its thread (no task, no hop, no lock on the way). Each event
/// loop has its own pool, with at most `connectionsPerEndpoint` connections to each replica for
/// each model; requests beyond wait, in order, for the next free one.
final class UpstreamClient: Sendable {
    let connectionsPerEndpoint: Int
    /// Largest answer taken from a replica.
    static let maxResponseBytes = 256 << 20
    /// Pooled connections unused this long are closed within half as long again: before Wharf
    /// services close a silent connection (60 s), so the race of a reuse against the replica's
    /// close is rare (and resent if lost).
    static let idleTimeout = TimeAmount.seconds(30)
    private let pools = NIOLockedValueBox([ObjectIdentifier: NIOLoopBound<UpstreamLoopPool>]())

    init(connectionsPerEndpoint: Int) {
        self.connectionsPerEndpoint = max(1, connectionsPerEndpoint)
    }

    /// This loop's pool; made on first use. Call on `eventLoop`, once per client connection.
    func pool(for eventLoop: any EventLoop) -> UpstreamLoopPool {
        let key = ObjectIdentifier(eventLoop)
        let bound = pools.withLockedValue { pools in
            if let existing = pools[key] { return existing }
            let made = NIOLoopBound(UpstreamLoopPool(eventLoop: eventLoop, connectionsPerEndpoint: connectionsPerEndpoint), eventLoop: eventLoop)
            pools[key] = made
            return made
        }
        return bound.value
    }

    /// Closes every pooled connection (requests in flight are failed).
    func shutdown() async {
        let all = pools.withLockedValue { pools in
            defer { pools = [:] }
            return Array(pools.values)
        }
        for bound in all {
            try? await bound.eventLoop.submit { bound.value.closeAll() }.get()
        }
    }
}

/// The connections of one thread, by replica and model (``UpstreamLane``): what is kept, what
/// waits and for how long, whatever carries the bytes. `Transport` opens connections and keeps
/// time: NIO's event loops (``NIOUpstreamTransport``) or the forwarding plane's own loops. Used
/// only on that thread.
///
/// Not an ``UpstreamPool`` itself: a generic class's conformance runs its unspecialized code
/// (the generic parameter's metadata passed at run time), so each pool is a small final class
/// that holds its lanes (``UpstreamLoopPool``, ``PlaneUpstreamPool``).
final class UpstreamLanes<Transport: UpstreamTransport>: ExchangeOwner {
    let transport: Transport
    let connectionsPerEndpoint: Int
    private var endpoints: [UpstreamLane: EndpointConnections] = [:]
    private var closed = false

    final class EndpointConnections {
        /// Free connections, the most recently used last (taken first, so the others can age out).
        var idle: [Transport.Connection] = []
        /// Open or being opened.
        var count = 0
        var waiting = CircularBuffer<UpstreamExchange>()
        /// The request line and `host` of every request of this lane, written once.
        let headStart: ByteBuffer

        init(lane: UpstreamLane) {
            headStart = UpstreamRequestBytes.headStart(for: lane)
        }
    }

    init(transport: Transport, connectionsPerEndpoint: Int) {
        self.transport = transport
        self.connectionsPerEndpoint = connectionsPerEndpoint
    }

    func execute(
        _ lane: UpstreamLane, headers: ForwardedRequestHeaders, body: ByteBuffer, timeout: TimeAmount, receiver: any UpstreamReceiver
    ) {
        guard !closed else { return receiver.upstreamFinished(.failure(.connectionLost)) }
        let connections = self.connections(for: lane)
        let bytes = UpstreamRequestBytes.request(start: connections.headStart, headers: headers, body: body)
        let exchange = UpstreamExchange(lane: lane, head: bytes.head, body: bytes.body, deadline: .now() + timeout, receiver: receiver)
        exchange.pool = self
        if let deadline = deadlines.watch(exchange) { setTimer(for: deadline) }
        dispatch(exchange, to: connections)
    }

    /// Connections open or being opened for `lane` (what the per-lane cap counts).
    func connectionCount(_ lane: UpstreamLane) -> Int { endpoints[lane]?.count ?? 0 }

    private func connections(for lane: UpstreamLane) -> EndpointConnections {
        if let known = endpoints[lane] { return known }
        let made = EndpointConnections(lane: lane)
        endpoints[lane] = made
        return made
    }

    // MARK: Deadlines

    private var deadlines = ExchangeDeadlines()
    private var timer: Transport.Timer?

    private func setTimer(for deadline: NIODeadline) {
        timer?.cancel()
        timer = transport.schedule(at: deadline) {
            self.timer = nil
            let (expired, next) = self.deadlines.expire(now: .now())
            if let next { self.setTimer(for: next) }
            ExchangeDeadlines.fail(expired)
        }
    }

    /// Called as each exchange finishes: drops finished ones from the front.
    func exchangeFinished() {
        deadlines.dropFinished()
    }

    // MARK: Connections

    /// Gives the exchange a connection of its lane: an idle one, a new one, or a place in the queue.
    private func dispatch(_ exchange: UpstreamExchange, to connections: EndpointConnections) {
        while let connection = connections.idle.popLast() {
            if connection.isUsable {
                connection.send(exchange)
                return
            }
        }
        if connections.count < connectionsPerEndpoint {
            connect(exchange.lane, connections, first: exchange)
        } else {
            connections.waiting.append(exchange)
        }
    }

    private func connect(_ lane: UpstreamLane, _ connections: EndpointConnections, first exchange: UpstreamExchange) {
        connections.count += 1
        transport.connect(lane, pool: self) { result in
            switch result {
            case .success(let connection):
                connection.isCounted = true
                if exchange.isFinished {
                    self.release(connection)
                } else {
                    connection.send(exchange)
                }
            case .failure(let error):
                connections.count -= 1
                exchange.fail(.connectFailed("\(error)"))
                // Those queued behind it would wait for a connection that will not come: the
                // replica is down, so fail them now rather than at their deadline.
                while let waiting = connections.waiting.popFirst() { waiting.fail(.connectFailed("\(error)")) }
            }
        }
    }

    /// A connection finished its exchange and may carry another.
    func release(_ connection: Transport.Connection) {
        guard !closed, let connections = endpoints[connection.lane] else {
            connection.close()
            return
        }
        while let next = connections.waiting.popFirst() {
            if !next.isFinished {
                connection.send(next)
                return
            }
        }
        connection.idleSince = .now()
        connections.idle.append(connection)
        if sweep == nil { scheduleSweep() }
    }

    // MARK: Idle connections
    //
    // A connection unused for `idleTimeout` is closed, so that replicas taken out of every
    // deployment (a rolled-back canary, a moved server) do not keep connections forever.

    private var sweep: Transport.Timer?

    private func scheduleSweep() {
        sweep = transport.schedule(at: .now() + .nanoseconds(UpstreamClient.idleTimeout.nanoseconds / 2)) { self.sweepIdle() }
    }

    private func sweepIdle() {
        sweep = nil
        let oldest = NIODeadline.now() - UpstreamClient.idleTimeout
        var anyIdle = false
        for (lane, connections) in endpoints {
            // Oldest first: the list is in the order the connections were freed.
            while let first = connections.idle.first, first.idleSince < oldest {
                connections.idle.removeFirst()
                first.close()
            }
            anyIdle = anyIdle || !connections.idle.isEmpty
            if connections.count == 0, connections.waiting.isEmpty {
                endpoints[lane] = nil
            }
        }
        if anyIdle, !closed { scheduleSweep() }
    }

    /// A connection closed (by either side): it no longer counts, and a waiting exchange may
    /// open a new one.
    func connectionClosed(_ lane: UpstreamLane) {
        guard let connections = endpoints[lane] else { return }
        connections.count -= 1
        connections.idle.removeAll { !$0.isUsable }
        while let next = connections.waiting.popFirst() {
            if !next.isFinished {
                if closed {
                    next.fail(.connectionLost)
                } else {
                    connect(lane, connections, first: next)
                    return
                }
            }
        }
    }

    /// A request that failed on a kept-alive connection before any answer arrived: the replica
    /// most likely closed the idle connection as it was reused. Sent again, once, on another.
    func resend(_ exchange: UpstreamExchange) {
        exchange.resent = true
        dispatch(exchange, to: connections(for: exchange.lane))
    }

    func closeAll() {
        closed = true
        timer?.cancel()
        sweep?.cancel()
        for connections in endpoints.values {
            while let waiting = connections.waiting.popFirst() { waiting.fail(.connectionLost) }
            for connection in connections.idle { connection.close() }
            connections.idle = []
        }
    }
}

/// What ``UpstreamLanes`` needs of the thread it runs on: connections and timers.
protocol UpstreamTransport {
    associatedtype Connection: LaneConnection
    associatedtype Timer: CancellableTimer

    /// Runs `action` on the pool's thread at `deadline`, unless cancelled first.
    func schedule(at deadline: NIODeadline, _ action: @escaping () -> Void) -> Timer
    /// Opens a connection for `lane`; `completion` runs once, on the pool's thread.
    func connect(_ lane: UpstreamLane, pool: UpstreamLanes<Self>, completion: @escaping (Result<Connection, any Error>) -> Void)
    func callback<Value: Sendable>(_ completion: @escaping (Value) -> Void) -> @Sendable (Value) -> Void
}

protocol CancellableTimer {
    func cancel()
}

/// A keep-alive connection to a replica, carrying one exchange at a time.
protocol LaneConnection: ExchangeCarrier {
    var lane: UpstreamLane { get }
    /// Open and carrying nothing.
    var isUsable: Bool { get }
    /// When it was last put back in the pool.
    var idleSince: NIODeadline { get set }
    /// Whether the pool counted this connection (its connect succeeded): only then does its
    /// close give back the place it holds in the lane's count.
    var isCounted: Bool { get set }
    func send(_ exchange: UpstreamExchange)
}

/// The bytes of a request to a replica.
enum UpstreamRequestBytes {
    /// `POST {prefix}/v2/models/{model}/infer HTTP/1.1` and the `host` line, without the line end.
    static func headStart(for lane: UpstreamLane) -> ByteBuffer {
        let endpoint = lane.endpoint
        var start = ByteBufferAllocator().buffer(capacity: 64 + endpoint.pathPrefix.utf8.count + lane.model.utf8.count + endpoint.authority.utf8.count)
        start.writeStaticString("POST ")
        start.writeString(endpoint.pathPrefix)
        start.writeStaticString("/v2/models/")
        start.writeString(lane.model)
        start.writeStaticString("/infer HTTP/1.1\r\nhost: ")
        start.writeString(endpoint.authority)
        return start
    }

    /// Bodies up to this size are sent in the head's buffer.
    static let inlineBodyLimit = 16 * 1024

    /// The request written out: `start`, the headers, `content-length`, and a small body in the
    /// same buffer (one write and one segment for the usual one-row request; the copy is
    /// cheaper than a second buffer through the write path). A larger body stays apart, not
    /// copied.
    static func request(start: ByteBuffer, headers: ForwardedRequestHeaders, body: ByteBuffer) -> (head: ByteBuffer, body: ByteBuffer?) {
        let inline = body.readableBytes <= inlineBodyLimit
        var head = ByteBufferAllocator().buffer(capacity: start.readableBytes + 192 + (inline ? body.readableBytes : 0))
        head.writeImmutableBuffer(start)
        headers.write(into: &head)
        head.writeStaticString("\r\ncontent-length: ")
        head.writeString(String(body.readableBytes))
        head.writeStaticString("\r\n\r\n")
        guard inline else { return (head, body) }
        head.writeImmutableBuffer(body)
        return (head, nil)
    }
}

/// The pool of a NIO event loop.
final class UpstreamLoopPool: UpstreamPool {
    let lanes: UpstreamLanes<NIOUpstreamTransport>
    var random = SeededGenerator(seed: UInt64.random(in: .min ... .max))

    init(eventLoop: any EventLoop, connectionsPerEndpoint: Int) {
        lanes = UpstreamLanes(transport: NIOUpstreamTransport(eventLoop: eventLoop), connectionsPerEndpoint: connectionsPerEndpoint)
    }

    var eventLoop: any EventLoop { lanes.transport.eventLoop }

    func execute(_ lane: UpstreamLane, headers: ForwardedRequestHeaders, body: ByteBuffer, timeout: TimeAmount, receiver: any UpstreamReceiver) {
        lanes.execute(lane, headers: headers, body: body, timeout: timeout, receiver: receiver)
    }

    func callback<Value: Sendable>(_ completion: @escaping (Value) -> Void) -> @Sendable (Value) -> Void {
        lanes.transport.callback(completion)
    }

    func connectionCount(_ lane: UpstreamLane) -> Int { lanes.connectionCount(lane) }

    func closeAll() { lanes.closeAll() }
}

extension Scheduled: CancellableTimer {}

/// Connections and timers on a NIO event loop.
struct NIOUpstreamTransport: UpstreamTransport {
    let eventLoop: any EventLoop

    func schedule(at deadline: NIODeadline, _ action: @escaping () -> Void) -> Scheduled<Void> {
        eventLoop.assumeIsolated().scheduleTask(deadline: deadline, action)
    }

    func connect(
        _ lane: UpstreamLane, pool: UpstreamLanes<Self>, completion: @escaping (Result<UpstreamConnection, any Error>) -> Void
    ) {
        let endpoint = lane.endpoint
        let bound = NIOLoopBound(pool, eventLoop: eventLoop)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(1))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(UpstreamConnection(lane: lane, pool: bound.value))
                }
            }
        bootstrap.connect(host: endpoint.host, port: endpoint.port).assumeIsolated().whenComplete { result in
            completion(result.flatMap { channel in
                Result {
                    do {
                        return try channel.pipeline.syncOperations.handler(type: UpstreamConnection.self)
                    } catch {
                        channel.close(promise: nil)
                        throw error
                    }
                }
            })
        }
    }

    func callback<Value: Sendable>(_ completion: @escaping (Value) -> Void) -> @Sendable (Value) -> Void {
        let bound = NIOLoopBound(completion, eventLoop: eventLoop)
        let eventLoop = self.eventLoop
        return { value in eventLoop.execute { bound.value(value) } }
    }
}


/// One forwarded request: what to send, where the answer goes, its deadline.
final class UpstreamExchange {
    let lane: UpstreamLane
    /// The request line and headers, ready to send, with the body when it is small.
    let head: ByteBuffer
    /// A body too large to go in `head`'s buffer.
    let body: ByteBuffer?
    let deadline: NIODeadline
    private var receiver: (any UpstreamReceiver)?
    /// Told when this exchange finishes.
    var pool: (any ExchangeOwner)?
    /// The connection carrying it now.
    var connection: (any ExchangeCarrier)?
    var resent = false
    private(set) var isFinished = false

    init(lane: UpstreamLane, head: ByteBuffer, body: ByteBuffer?, deadline: NIODeadline, receiver: any UpstreamReceiver) {
        self.lane = lane
        self.head = head
        self.body = body
        self.deadline = deadline
        self.receiver = receiver
    }

    func succeed(_ response: UpstreamResponse) {
        finish(.success(response))
    }

    func fail(_ error: UpstreamError) {
        finish(.failure(error))
    }

    /// The first outcome wins; later ones (a timeout racing the answer) are dropped.
    private func finish(_ outcome: Result<UpstreamResponse, UpstreamError>) {
        guard !isFinished else { return }
        isFinished = true
        connection = nil
        let receiver = self.receiver
        self.receiver = nil
        pool?.exchangeFinished()
        pool = nil
        receiver?.upstreamFinished(outcome)
    }
}

/// One keep-alive connection to a replica on NIO, carrying one exchange at a time. It writes
/// the request's bytes and reads the answer itself (``ExchangeOnConnection``): no HTTP codec in
/// the pipeline.
final class UpstreamConnection: ChannelInboundHandler, RemovableChannelHandler, LaneConnection {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let lane: UpstreamLane
    private let pool: UpstreamLanes<NIOUpstreamTransport>
    private var context: ChannelHandlerContext?
    var idleSince = NIODeadline.now()
    private let exchange = ExchangeOnConnection()
    private var isClosed = false
    var isCounted = false

    init(lane: UpstreamLane, pool: UpstreamLanes<NIOUpstreamTransport>) {
        self.lane = lane
        self.pool = pool
    }

    var isUsable: Bool { !isClosed && exchange.isIdle && (context?.channel.isActive ?? false) }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func send(_ exchange: UpstreamExchange) {
        guard let context, !isClosed else {
            pool.resend(exchange)
            return
        }
        self.exchange.start(exchange, on: self)
        if let body = exchange.body {
            context.write(wrapOutboundOut(exchange.head), promise: nil)
            context.writeAndFlush(wrapOutboundOut(body), promise: nil)
        } else {
            context.writeAndFlush(wrapOutboundOut(exchange.head), promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch exchange.received(unwrapInboundIn(data)) {
        case .waiting: break
        case .keep: pool.release(self)
        case .close: close()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
        self.context = nil
    }

    private func finish() {
        guard !isClosed else { return }
        isClosed = true
        if let lost = exchange.closed() { pool.resend(lost) }
        if isCounted { pool.connectionClosed(lane) }
    }

    func close() {
        guard let context, !isClosed else { return }
        context.close(promise: nil)
    }
}

/// A connection's side of the exchanges it carries, one at a time: the one it carries now and
/// its answer as it comes back, whatever reads the bytes. A class: finishing an exchange calls
/// out (its client is answered and may send the next request), and no access to the
/// connection's own properties may span that.
final class ExchangeOnConnection {
    private var current: UpstreamExchange?
    private var parser = UpstreamResponseParser(maxBodyBytes: UpstreamClient.maxResponseBytes)
    /// Whether this connection carried an exchange before the current one.
    private var reused = false

    var isIdle: Bool { current == nil }

    func start(_ exchange: UpstreamExchange, on carrier: any ExchangeCarrier) {
        current = exchange
        exchange.connection = carrier
        parser.reset()
    }

    enum AfterRead {
        /// More of the answer is to come.
        case waiting
        /// The answer was whole, and the connection may carry another.
        case keep
        case close
    }

    /// Bytes from the replica; the answer, once whole, goes to the exchange.
    func received(_ bytes: ByteBuffer) -> AfterRead {
        // Nothing was asked: a replica that talks out of turn is not to be trusted.
        guard let exchange = current else { return .close }
        let answer: UpstreamResponseParser.Answer?
        do {
            answer = try parser.feed(bytes)
        } catch {
            current = nil
            exchange.fail(error == .tooLarge ? .responseTooLarge : .badAnswer)
            return .close
        }
        guard let answer else { return .waiting }
        current = nil
        reused = true
        exchange.succeed(UpstreamResponse(status: answer.status, headers: answer.headers, body: answer.body))
        return answer.keepAlive ? .keep : .close
    }

    /// The connection closed. An answer whose end is the close is whole; a request lost on a
    /// kept-alive connection before any answer came (the replica most likely closed it as it
    /// was reused) is returned, to be sent again once; any other fails.
    func closed() -> UpstreamExchange? {
        guard let exchange = current else { return nil }
        current = nil
        exchange.connection = nil
        if let answer = parser.finishAtClose() {
            exchange.succeed(UpstreamResponse(status: answer.status, headers: answer.headers, body: answer.body))
        } else if reused, !parser.hasStarted, !exchange.resent, !exchange.isFinished {
            return exchange
        } else {
            exchange.fail(.connectionLost)
        }
        return nil
    }
}

/// Where exchanges are sent from: the NIO client (``UpstreamLoopPool``, on an event loop) or the
/// forwarding plane's (on a ``ForwardingLoop``). Used only on its own thread.
protocol UpstreamPool: AnyObject {
    /// For traffic splits, replica ties and request ids on this thread: drawing from the
    /// system's generator costs a system call each time.
    var random: SeededGenerator { get set }

    /// Sends one inference request of the lane's model (`POST {prefix}/v2/models/{model}/infer`);
    /// `receiver` hears of its outcome once, on this pool's thread.
    func execute(_ lane: UpstreamLane, headers: ForwardedRequestHeaders, body: ByteBuffer, timeout: TimeAmount, receiver: any UpstreamReceiver)

    /// A function that may be called once from any thread and calls `completion` on this pool's
    /// thread (answers of https replicas come from async-http-client's).
    func callback<Value: Sendable>(_ completion: @escaping (Value) -> Void) -> @Sendable (Value) -> Void
}

/// Told when one of its exchanges finishes.
protocol ExchangeOwner: AnyObject {
    func exchangeFinished()
}

/// A connection carrying an exchange: closed when the exchange runs out of time.
protocol ExchangeCarrier: AnyObject {
    func close()
}

/// The deadlines of a pool's exchanges, with one timer for the pool rather than one per
/// request (scheduling and cancelling a task for each request was about 5 % of the gateway's
/// time). Exchanges are watched in the order they started, which is the order of their
/// deadlines when they share a timeout; the timer is set for the earliest deadline, and when it
/// fires every exchange still watched is checked.
struct ExchangeDeadlines {
    /// Exchanges that may still be running, oldest first; finished ones leave from the front.
    private var watched = CircularBuffer<UpstreamExchange>()
    private var timerDeadline: NIODeadline?

    /// Watches `exchange`; returns the deadline the timer must be set for, when it changes.
    mutating func watch(_ exchange: UpstreamExchange) -> NIODeadline? {
        watched.append(exchange)
        if let timerDeadline, timerDeadline <= exchange.deadline { return nil }
        timerDeadline = exchange.deadline
        return exchange.deadline
    }

    mutating func dropFinished() {
        while let first = watched.first, first.isFinished { watched.removeFirst() }
    }

    /// The timer fired: takes every exchange past its deadline off the list, and returns them
    /// with the deadline to set the timer for next, if any.
    ///
    /// The list and the timer are settled before any exchange is failed (``fail(_:)``): failing
    /// one answers its client at once, and a client with a pipelined request then starts its
    /// next exchange, which must find itself watched (it was once lost here, and hung with a
    /// stuck replica).
    mutating func expire(now: NIODeadline) -> (expired: [UpstreamExchange], next: NIODeadline?) {
        var running = CircularBuffer<UpstreamExchange>(initialCapacity: watched.count)
        var expired: [UpstreamExchange] = []
        var earliest: NIODeadline?
        for exchange in watched where !exchange.isFinished {
            if exchange.deadline <= now {
                expired.append(exchange)
            } else {
                running.append(exchange)
                earliest = min(earliest ?? exchange.deadline, exchange.deadline)
            }
        }
        watched = running
        timerDeadline = earliest
        return (expired, earliest)
    }

    /// Fails exchanges past their deadline and closes the connections they were on (their
    /// state is unknown).
    static func fail(_ expired: [UpstreamExchange]) {
        for exchange in expired {
            let connection = exchange.connection
            exchange.fail(.timedOut)
            connection?.close()
        }
    }
}
