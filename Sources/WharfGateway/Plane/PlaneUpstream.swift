#if os(Linux)
import CWharfEpoll
import Dispatch
import Glibc
import NIOCore
import WharfCore

/// The pool of a forwarding loop: the same lanes, caps, queues and deadlines as on NIO's
/// event loops, on sockets of its own.
final class PlaneUpstreamPool: UpstreamPool {
    let lanes: UpstreamLanes<PlaneUpstreamTransport>
    var random = SeededGenerator(seed: UInt64.random(in: .min ... .max))

    init(loop: ForwardingLoop, connectionsPerEndpoint: Int) {
        lanes = UpstreamLanes(transport: PlaneUpstreamTransport(loop: loop), connectionsPerEndpoint: connectionsPerEndpoint)
    }

    func execute(_ lane: UpstreamLane, headers: ForwardedRequestHeaders, body: ByteBuffer, timeout: TimeAmount, receiver: any UpstreamReceiver) {
        lanes.execute(lane, headers: headers, body: body, timeout: timeout, receiver: receiver)
    }

    func callback<Value: Sendable>(_ completion: @escaping (Value) -> Void) -> @Sendable (Value) -> Void {
        lanes.transport.callback(completion)
    }

    func closeAll() { lanes.closeAll() }
}

extension LoopTimer: CancellableTimer {}

/// Connections and timers on a ``ForwardingLoop``.
struct PlaneUpstreamTransport: UpstreamTransport {
    let loop: ForwardingLoop
    /// A connection not made within this is given up (as NIO's `connectTimeout`).
    static let connectTimeout = TimeAmount.seconds(1)

    func schedule(at deadline: NIODeadline, _ action: @escaping () -> Void) -> LoopTimer {
        loop.schedule(at: deadline, action)
    }

    func connect(_ lane: UpstreamLane, pool: UpstreamLanes<Self>, completion: @escaping (Result<PlaneUpstreamConnection, any Error>) -> Void) {
        let connection = PlaneUpstreamConnection(lane: lane, pool: pool, loop: loop)
        let endpoint = lane.endpoint
        if let address = try? SocketAddress(ipAddress: endpoint.host, port: endpoint.port) {
            connection.open(address, completion: completion)
            return
        }
        // A name: resolved off the loop (getaddrinfo blocks), then connected on it.
        let waiting = LoopBound((connection, completion))
        let loop = self.loop
        DispatchQueue.global().async {
            let resolved = Result { try SocketAddress.makeAddressResolvingHost(endpoint.host, port: endpoint.port) }
            loop.execute {
                let (connection, completion) = waiting.value
                switch resolved {
                case .success(let address): connection.open(address, completion: completion)
                case .failure(let error): completion(.failure(error))
                }
            }
        }
    }

    func callback<Value: Sendable>(_ completion: @escaping (Value) -> Void) -> @Sendable (Value) -> Void {
        let bound = LoopBound(completion)
        let loop = self.loop
        return { value in loop.execute { bound.value(value) } }
    }
}

/// A value that only its loop's thread touches, carried across threads to be used there.
final class LoopBound<Value>: @unchecked Sendable {
    let value: Value

    init(_ value: Value) {
        self.value = value
    }
}

/// One keep-alive connection to a replica on a forwarding loop, carrying one exchange at a time.
final class PlaneUpstreamConnection: LaneConnection, LoopSocket {
    let lane: UpstreamLane
    private let pool: UpstreamLanes<PlaneUpstreamTransport>
    private let loop: ForwardingLoop
    private var fd: Int32 = -1
    var idleSince = NIODeadline.now()
    var isCounted = false
    private let exchange = ExchangeOnConnection()
    private var outbound = OutboundBytes()
    private var writeWatched = false

    private enum State {
        case connecting(completion: (Result<PlaneUpstreamConnection, any Error>) -> Void, timer: LoopTimer)
        case open
        case closed
    }

    private var state = State.closed

    init(lane: UpstreamLane, pool: UpstreamLanes<PlaneUpstreamTransport>, loop: ForwardingLoop) {
        self.lane = lane
        self.pool = pool
        self.loop = loop
    }

    var isUsable: Bool {
        guard case .open = state else { return false }
        return exchange.isIdle
    }

    fileprivate func open(_ address: SocketAddress, completion: @escaping (Result<PlaneUpstreamConnection, any Error>) -> Void) {
        fd = socket(address.protocol.rawValue, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return completion(.failure(PlaneError.system("socket", errno))) }
        PlaneSockets.setNoDelay(fd)
        let result = address.withSockAddr { connect(fd, $0, socklen_t($1)) }
        guard result == 0 || errno == EINPROGRESS else {
            let error = PlaneError.system("connect to \(address)", errno)
            Glibc.close(fd)
            fd = -1
            return completion(.failure(error))
        }
        let timer = loop.schedule(at: .now() + PlaneUpstreamTransport.connectTimeout) { [self] in
            failConnect(PlaneError.system("connect to \(address)", ETIMEDOUT))
        }
        state = .connecting(completion: completion, timer: timer)
        // Writable once connected (or failed).
        loop.watch(fd, self, events: EPOLLOUT.rawValue)
        writeWatched = true
    }

    private func failConnect(_ error: any Error) {
        guard case .connecting(let completion, let timer) = state else { return }
        timer.cancel()
        state = .closed
        loop.forget(fd)
        Glibc.close(fd)
        completion(.failure(error))
    }

    func send(_ exchange: UpstreamExchange) {
        guard case .open = state else { return pool.resend(exchange) }
        self.exchange.start(exchange, on: self)
        outbound.append(exchange.head)
        if let body = exchange.body { outbound.append(body) }
        flush()
    }

    private func flush() {
        switch outbound.flush(fd) {
        case .all:
            if writeWatched {
                writeWatched = false
                loop.change(fd, events: EPOLLIN.rawValue)
            }
        case .some:
            if !writeWatched {
                writeWatched = true
                loop.change(fd, events: EPOLLIN.rawValue | EPOLLOUT.rawValue)
            }
        case .failed:
            close()
        }
    }

    func writable() {
        switch state {
        case .connecting(let completion, let timer):
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
            guard failure == 0 else { return failConnect(PlaneError.system("connect", failure)) }
            timer.cancel()
            state = .open
            writeWatched = false
            loop.change(fd, events: EPOLLIN.rawValue)
            completion(.success(self))
        case .open:
            flush()
        case .closed:
            break
        }
    }

    func readable(events: UInt32) {
        guard case .open = state else {
            // A failed connect reports an error before it is writable.
            if case .connecting = state { failConnect(PlaneError.system("connect", ECONNREFUSED)) }
            return
        }
        let scratch = loop.scratch
        let count = recv(fd, scratch.baseAddress, scratch.count, 0)
        guard count > 0 else {
            if count < 0, errno == EAGAIN || errno == EINTR { return }
            return close()
        }
        var bytes = ByteBufferAllocator().buffer(capacity: count)
        bytes.writeBytes(UnsafeRawBufferPointer(rebasing: scratch[0..<count]))
        switch exchange.received(bytes) {
        case .waiting: break
        case .keep: pool.release(self)
        case .close: close()
        }
    }

    func close() {
        switch state {
        case .connecting:
            failConnect(PlaneError.system("connect", ECONNABORTED))
        case .open:
            state = .closed
            loop.forget(fd)
            Glibc.close(fd)
            outbound = OutboundBytes()
            if let lost = exchange.closed() { pool.resend(lost) }
            if isCounted { pool.connectionClosed(lane) }
        case .closed:
            break
        }
    }
}

/// Bytes waiting for a socket to take them, in order.
struct OutboundBytes {
    private var queue = CircularBuffer<ByteBuffer>()

    var isEmpty: Bool { queue.isEmpty }

    mutating func append(_ bytes: ByteBuffer) {
        if bytes.readableBytes > 0 { queue.append(bytes) }
    }

    enum Flushed {
        case all
        /// The socket's buffer is full: the rest waits until it is writable.
        case some
        case failed
    }

    /// Writes what the socket takes now.
    mutating func flush(_ fd: Int32) -> Flushed {
        while let first = queue.first {
            let written = first.withUnsafeReadableBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 {
                if errno == EINTR { continue }
                return errno == EAGAIN || errno == EWOULDBLOCK ? .some : .failed
            }
            if written == first.readableBytes {
                queue.removeFirst()
            } else {
                queue[queue.startIndex].moveReaderIndex(forwardBy: written)
                return .some
            }
        }
        return .all
    }
}

enum PlaneSockets {
    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }
}
#endif
