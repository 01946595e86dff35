#if os(Linux)
import CWharfEpoll
import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The gateway's front door on Linux: it listens on the gateway's address and forwards plain
/// inference requests on its own epoll loops (``ForwardingLoop``, one per core), below NIO.
/// A connection's first request that is anything else (the deployment API, metadata, health,
/// metrics, an unusual inference request) hands the connection to NIO, with the bytes read so
/// far, where the gateway's router serves it as it serves connections NIO accepts; the router
/// also listens on an internal loopback port of its own, which nothing needs to know.
///
/// Why: NIO's channel machinery alone cost about 23 µs of CPU a forwarded request on the
/// benchmark's 2-core VM, as much as nginx's whole work, and two thirds of the gateway's. The
/// routing, admission, retries, deadlines, shadows and figures are the same objects on both.
final class ForwardingPlane: Service, Sendable {
    let settings: InferenceForwarder.Settings
    let host: String
    let port: Int
    let threads: Int
    let connectionsPerReplica: Int
    /// On SIGTERM, how long the answers owed may take; the connections still open then are closed.
    let shutdownTimeout: TimeAmount
    let logger: Logger
    /// The router's connection setup, given once the HTTP server is built.
    let adoption = ChannelAdoption()
    private let handedOver: AsyncStream<HandedOver>
    private let handOvers: AsyncStream<HandedOver>.Continuation
    private let adopted = NIOLockedValueBox(Adopted())
    /// Set once, by the first of a graceful shutdown and a cancellation.
    private let stopping = NIOLockedValueBox(false)

    /// The connections NIO took from the loops, and how far the shutdown has come for them.
    private struct Adopted {
        var channels: [ObjectIdentifier: any Channel] = [:]
        /// Each channel is asked to close once its answers are written.
        var quiescing = false
        /// The shutdown timeout passed: each is closed.
        var closing = false
    }

    struct HandedOver: Sendable {
        var fd: Int32
        var bytes: ByteBuffer?
    }

    init(
        settings: InferenceForwarder.Settings, host: String, port: Int, threads: Int, connectionsPerReplica: Int, shutdownTimeout: TimeAmount,
        logger: Logger
    ) {
        self.settings = settings
        self.host = host
        self.port = port
        self.threads = max(1, threads)
        self.connectionsPerReplica = max(1, connectionsPerReplica)
        self.shutdownTimeout = shutdownTimeout
        self.logger = logger
        (handedOver, handOvers) = AsyncStream.makeStream(of: HandedOver.self)
    }

    func run() async throws {
        let (listener, address) = try Self.listen(host: host, port: port)
        defer { close(listener) }
        logger.info("wharf gateway listening", metadata: ["address": "\(address)"])
        let loops = try (0..<threads).map { _ in
            PlaneLoop(loop: try ForwardingLoop(), plane: self, listener: listener, connectionsPerReplica: connectionsPerReplica)
        }
        for home in loops {
            let bound = LoopBound(home)
            home.loop.execute { bound.value.startAccepting() }
            home.loop.start()
        }
        let drains = loops.map { _ in Drain() }
        let closingLate = NIOLockedValueBox<Scheduled<Void>?>(nil)
        let bounds = loops.map { LoopBound($0) }
        let stop: @Sendable (TimeAmount) -> Void = { timeout in
            self.beginShutdown(listener: listener, loops: bounds, drains: drains, timeout: timeout, closingLate: closingLate)
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withDiscardingTaskGroup { group in
                    for await connection in handedOver {
                        group.addTask { await self.serve(connection) }
                    }
                }
            } onGracefulShutdown: {
                stop(self.shutdownTimeout)
            }
        } onCancel: {
            // Another service failed, or the process is asked to stop at once: no time is given.
            stop(.zero)
        }
        closingLate.withLockedValue { $0?.cancel() }
        for (home, drain) in zip(loops, drains) {
            await drain.wait()
            let bound = LoopBound(home)
            home.loop.execute { bound.value.closeUpstream() }
            home.loop.stop()
            await home.loop.waitForExit()
        }
    }

    /// No new connection (they are refused from here on, and those not yet accepted reset);
    /// each open one closes once the answer owed to it is written, or when `timeout` has
    /// passed. Connections a loop hands to NIO meanwhile are still served (the stream of them
    /// ends once every loop has drained) and get the same quiesce.
    private func beginShutdown(
        listener: Int32, loops: [LoopBound<PlaneLoop>], drains: [Drain], timeout: TimeAmount, closingLate: NIOLockedValueBox<Scheduled<Void>?>
    ) {
        guard stopping.withLockedValue({ stopping in
            defer { stopping = true }
            return !stopping
        }) else { return }
        logger.info("wharf gateway shutting down: answering what is owed", metadata: ["timeout": "\(timeout)"])
        shutdown(listener, Int32(SHUT_RD))
        for (bound, drain) in zip(loops, drains) {
            bound.value.loop.execute { bound.value.quiesce(closingAfter: timeout) { drain.finish() } }
        }
        let handOvers = self.handOvers
        Task {
            for drain in drains { await drain.wait() }
            handOvers.finish()
        }
        let open = adopted.withLockedValue { adopted in
            adopted.quiescing = true
            return Array(adopted.channels.values)
        }
        for channel in open { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        closingLate.withLockedValue {
            $0 = NIOSingletons.posixEventLoopGroup.next().scheduleTask(in: timeout) { self.closeAdoptedChannels() }
        }
    }

    /// The shutdown timeout passed: the connections NIO took that are still open are closed.
    private func closeAdoptedChannels() {
        let open = adopted.withLockedValue { adopted in
            adopted.closing = true
            return Array(adopted.channels.values)
        }
        guard !open.isEmpty else { return }
        logger.warning("shutdown timeout: closing connections whose answers were not taken", metadata: ["connections": "\(open.count)"])
        for channel in open { channel.close(promise: nil) }
    }

    /// Called on a loop's thread: NIO takes the connection from here.
    func adopt(fd: Int32, bytes: ByteBuffer?) {
        guard case .enqueued = handOvers.yield(HandedOver(fd: fd, bytes: bytes)) else {
            // Stopped (the loops drained, or cancelled): no one will serve it.
            close(fd)
            return
        }
    }

    private func serve(_ connection: HandedOver) async {
        guard let setup = adoption.channel else {
            close(connection.fd)
            return
        }
        let logger = self.logger
        let value: ForwardingHTTP1Channel.Value
        do {
            value = try await ClientBootstrap(group: NIOSingletons.posixEventLoopGroup)
                .channelOption(.allowRemoteHalfClosure, value: true)
                .withConnectedSocket(connection.fd) { channel in
                    setup.setup(channel: channel, bytes: connection.bytes, logger: logger)
                }
        } catch {
            logger.warning("a connection could not be handed to the router", metadata: ["error": "\(error)"])
            return
        }
        let key = ObjectIdentifier(value.channel)
        // Taken while shutting down (a loop's hand-over waited for its answers to leave): told
        // at once, as the others were.
        let (quiescing, closing) = adopted.withLockedValue { adopted in
            adopted.channels[key] = value.channel
            return (adopted.quiescing, adopted.closing)
        }
        if closing {
            value.channel.close(promise: nil)
        } else if quiescing {
            value.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        await setup.handle(value: value, logger: logger)
        adopted.withLockedValue { _ = $0.channels.removeValue(forKey: key) }
    }

    /// A listening socket on `host`:`port` (0: any free port), and where it listens.
    static func listen(host: String, port: Int) throws -> (Int32, SocketAddress) {
        let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        let fd = socket(address.protocol.rawValue, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw PlaneError.system("socket", errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard address.withSockAddr({ bind(fd, $0, socklen_t($1)) }) == 0, Glibc.listen(fd, 256) == 0 else {
            let failure = errno
            close(fd)
            throw PlaneError.system("listen on \(host):\(port)", failure)
        }
        // The port taken, when 0 was asked for: at the same place, in network order, in
        // `sockaddr_in` and `sockaddr_in6`.
        let taken = withUnsafeTemporaryAllocation(byteCount: 128, alignment: 8) { storage -> Int? in
            var length = socklen_t(storage.count)
            guard getsockname(fd, storage.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length) == 0 else { return nil }
            return Int(storage[2]) << 8 | Int(storage[3])
        }
        guard let taken, let ip = address.ipAddress, let actual = try? SocketAddress(ipAddress: ip, port: taken) else { return (fd, address) }
        return (fd, actual)
    }
}

/// Done once, awaited from elsewhere.
private final class Drain: Sendable {
    private let state = NIOLockedValueBox<(done: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func finish() {
        let waiter = state.withLockedValue { state in
            state.done = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let done = state.withLockedValue { state in
                if !state.done { state.waiter = continuation }
                return state.done
            }
            if done { continuation.resume() }
        }
    }
}
#endif
