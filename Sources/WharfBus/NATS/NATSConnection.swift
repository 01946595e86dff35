import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import WharfCore

/// One client connection to a NATS server over SwiftNIO: publish, request/reply (one at a time
/// or pipelined by the thousand) and multi-message replies such as a JetStream pull.
///
/// Replies come back on one wildcard subscription to this connection's inbox
/// (`_INBOX.<random>.*`); each request gets its own token, so any number can be in flight on the
/// one socket. The server's bytes go through `NATSParser` on the event loop; waiting callers are
/// resumed from there, and nothing here blocks the loop.
public final class NATSConnection: Sendable {
    public let serverInfo: ServerInfo
    private let channel: any Channel
    private let inbox: String
    private let state: NIOLockedValueBox<State>

    public struct ServerInfo: Sendable, Decodable {
        public var version: String
        public var maxPayload: Int
        public var headers: Bool?
        public var jetstream: Bool?

        enum CodingKeys: String, CodingKey {
            case version
            case maxPayload = "max_payload"
            case headers, jetstream
        }
    }

    /// Who is waiting for what arrives on a token of the inbox.
    fileprivate enum Waiter {
        /// One reply per token, for a group of tokens that completes when all have answered.
        case reply(ReplyGroup, index: Int)
        /// Several messages on one token, until `isLast` says so.
        case stream(MessageCollector)
    }

    fileprivate struct State {
        var nextToken: UInt64 = 1
        var waiters: [UInt64: Waiter] = [:]
        var failure: WharfError?
    }

    private init(channel: any Channel, serverInfo: ServerInfo, inbox: String) {
        self.channel = channel
        self.serverInfo = serverInfo
        self.inbox = inbox
        self.state = NIOLockedValueBox(State())
    }

    /// Connects, says CONNECT, and waits for the server's PONG so that a refused connection
    /// (authentication, protocol) fails here rather than on first use.
    public static func connect(
        host: String, port: Int, name: String = "wharf", user: String? = nil, password: String? = nil,
        timeout: TimeAmount = .seconds(5), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> NATSConnection {
        let handshake = group.next().makePromise(of: ServerInfo.self)
        let handler = NATSChannelHandler(handshake: handshake)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
                }
                .connect(host: host, port: port).get()
        } catch {
            throw WharfError(.unavailable, "cannot connect to NATS at \(host):\(port): \(error)")
        }
        let timeoutTask = channel.eventLoop.scheduleTask(in: timeout) {
            handshake.fail(WharfError(.unavailable, "NATS at \(host):\(port) did not complete the handshake in time"))
        }
        let info: ServerInfo
        do {
            info = try await handshake.futureResult.get()
            timeoutTask.cancel()
        } catch {
            timeoutTask.cancel()
            try? await channel.close()
            throw error
        }
        let inbox = "_INBOX.\(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased())"
        let connection = NATSConnection(channel: channel, serverInfo: info, inbox: inbox)
        handler.attach(connection)
        try await connection.write(NATSClientOperation.subscribe(subject: "\(inbox).*", subscription: Self.inboxSubscription))
        return connection
    }

    /// The subscription id of the inbox wildcard; a collector's own subscription has its token as id.
    static let inboxSubscription = "inbox"

    public var isActive: Bool { channel.isActive && state.withLockedValue { $0.failure == nil } }

    public func close() async {
        fail(WharfError(.unavailable, "the NATS connection was closed"))
        try? await channel.close()
    }

    /// Fire and forget (a message without a reply, such as a JetStream acknowledgement).
    public func publish(subject: String, headers: [(String, String)] = [], payload: [UInt8]) async throws {
        try checkOpen()
        try await write(try NATSClientOperation.publish(subject: subject, headers: headers, payload: payload))
    }

    /// One request, one reply. A NATS "no responders" status (503) is an `.unavailable` error.
    public func request(subject: String, headers: [(String, String)] = [], payload: [UInt8], timeout: TimeAmount = .seconds(5)) async throws -> NATSMessage {
        try await requests([(subject, headers, payload)], timeout: timeout)[0]
    }

    /// Pipelined requests: all are written at once, in order, and the replies come back in the
    /// same order (each may be a status such as 404 or 503: the caller decides).
    public func requests(_ requests: [(subject: String, headers: [(String, String)], payload: [UInt8])], timeout: TimeAmount = .seconds(5)) async throws -> [NATSMessage] {
        guard !requests.isEmpty else { return [] }
        try checkOpen()
        let group = ReplyGroup(count: requests.count)
        let first = register(count: requests.count) { index in .reply(group, index: index) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(requests.count * 128)
        do {
            for (index, request) in requests.enumerated() {
                try NATSClientOperation.publish(
                    subject: request.subject, replyTo: "\(inbox).\(first + UInt64(index))", headers: request.headers, payload: request.payload, into: &bytes)
            }
        } catch {
            unregister(first: first, count: requests.count)
            throw error
        }
        let buffer = ByteBuffer(bytes: bytes)
        return try await withCheckedThrowingContinuation { continuation in
            group.setContinuation(continuation, connection: self, first: first, timeout: timeout, on: channel.eventLoop)
            channel.writeAndFlush(buffer).whenFailure { [self] error in
                resolve(first: first, count: requests.count, with: .failure(WharfError(.unavailable, "writing to NATS failed: \(error)")))
            }
        }
    }

    /// A request answered by a stream of messages on its reply subject (a JetStream pull):
    /// collects them until `isLast` returns true for one or `timeout` passes (then returns what
    /// came, which may be nothing).
    public func collect(subject: String, payload: [UInt8], timeout: TimeAmount, isLast: @escaping @Sendable (NATSMessage, Int) -> Bool) async throws -> [NATSMessage] {
        try checkOpen()
        let collector = MessageCollector(isLast: isLast)
        let token = register(count: 1) { _ in .stream(collector) }
        // JetStream delivers with each message's own subject, so a pull's answers are told apart
        // by a subscription of their own rather than by the inbox token.
        let deliverTo = "\(inbox)c.\(token)"
        let bytes = try NATSClientOperation.subscribe(subject: deliverTo, subscription: String(token))
            + NATSClientOperation.publish(subject: subject, replyTo: deliverTo, payload: payload)
        return try await withCheckedThrowingContinuation { continuation in
            let deadline = channel.eventLoop.scheduleTask(in: timeout) { [self] in
                resolve(first: token, count: 1, with: nil)
            }
            collector.start(continuation, deadline: deadline)
            channel.writeAndFlush(ByteBuffer(bytes: bytes)).whenFailure { [self] error in
                resolve(first: token, count: 1, with: .failure(WharfError(.unavailable, "writing to NATS failed: \(error)")))
            }
        }
    }

    // MARK: - Routing (event loop side)

    private func register(count: Int, _ make: (Int) -> Waiter) -> UInt64 {
        state.withLockedValue { state in
            let first = state.nextToken
            state.nextToken += UInt64(count)
            for index in 0..<count { state.waiters[first + UInt64(index)] = make(index) }
            return first
        }
    }

    private func unregister(first: UInt64, count: Int) {
        state.withLockedValue { state in
            for index in 0..<count { state.waiters[first + UInt64(index)] = nil }
        }
    }

    /// Ends the waiters of tokens `first..<first+count`: a failure fails them, nil finishes a
    /// collector with what it has.
    fileprivate func resolve(first: UInt64, count: Int, with outcome: Result<Void, WharfError>?) {
        let removed: [Waiter] = state.withLockedValue { state in
            (0..<count).compactMap { state.waiters.removeValue(forKey: first + UInt64($0)) }
        }
        var finished = Set<ObjectIdentifier>()
        for waiter in removed {
            switch waiter {
            case .reply(let group, _):
                guard finished.insert(ObjectIdentifier(group)).inserted else { continue }
                if case .failure(let error) = outcome { group.fail(error) } else { group.fail(WharfError(.unavailable, "NATS did not answer in time")) }
            case .stream(let collector):
                if case .failure(let error) = outcome { collector.fail(error) } else { collector.finish() }
                unsubscribe(first)
            }
        }
    }

    fileprivate func route(_ message: NATSMessage) {
        let token: UInt64
        if message.subscription == Self.inboxSubscription {
            // The token is the subject's last field: read its digits from the end.
            var parsed: UInt64 = 0
            var scale: UInt64 = 1
            var digits = 0
            for byte in message.subject.utf8.reversed() {
                guard byte != UInt8(ascii: ".") else { break }
                guard byte >= 0x30, byte <= 0x39, digits < 19 else { return }
                parsed += UInt64(byte - 0x30) * scale
                scale &*= 10
                digits += 1
            }
            guard digits > 0 else { return }
            token = parsed
        } else {
            guard let parsed = UInt64(message.subscription) else { return }
            token = parsed
        }
        let waiter: Waiter? = state.withLockedValue { state in
            guard let waiter = state.waiters[token] else { return nil }
            if case .reply = waiter { state.waiters[token] = nil }
            return waiter
        }
        switch waiter {
        case .reply(let group, let index)?:
            group.deliver(message, at: index)
        case .stream(let collector)?:
            if collector.add(message) {
                state.withLockedValue { _ = $0.waiters.removeValue(forKey: token) }
                collector.finish()
                unsubscribe(token)
            }
        case nil:
            break
        }
    }

    fileprivate func fail(_ error: WharfError) {
        let waiters: [UInt64: Waiter] = state.withLockedValue { state in
            if state.failure == nil { state.failure = error }
            defer { state.waiters = [:] }
            return state.waiters
        }
        var failed = Set<ObjectIdentifier>()
        for waiter in waiters.values {
            switch waiter {
            case .reply(let group, _):
                if failed.insert(ObjectIdentifier(group)).inserted { group.fail(error) }
            case .stream(let collector):
                collector.fail(error)
            }
        }
    }

    private func unsubscribe(_ token: UInt64) {
        guard channel.isActive else { return }
        channel.writeAndFlush(ByteBuffer(bytes: NATSClientOperation.unsubscribe(subscription: String(token))), promise: nil)
    }

    private func checkOpen() throws {
        if let failure = state.withLockedValue({ $0.failure }) { throw failure }
    }

    private func write(_ bytes: [UInt8]) async throws {
        do {
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
        } catch {
            throw WharfError(.unavailable, "writing to NATS failed: \(error)")
        }
    }
}

/// The replies to a group of pipelined requests; completes once, when all have come or on the
/// first failure.
private final class ReplyGroup: @unchecked Sendable {
    private let lock = NIOLock()
    private var replies: [NATSMessage?]
    private var remaining: Int
    private var continuation: CheckedContinuation<[NATSMessage], any Error>?
    private var early: Result<[NATSMessage], any Error>?
    private var deadline: Scheduled<Void>?

    init(count: Int) {
        replies = Array(repeating: nil, count: count)
        remaining = count
    }

    func setContinuation(
        _ continuation: CheckedContinuation<[NATSMessage], any Error>, connection: NATSConnection, first: UInt64, timeout: TimeAmount, on eventLoop: any EventLoop
    ) {
        let ready: Result<[NATSMessage], any Error>? = lock.withLock {
            if let early { return early }
            self.continuation = continuation
            return nil
        }
        if let ready {
            continuation.resume(with: ready)
            return
        }
        let count = replies.count
        let scheduled = eventLoop.scheduleTask(in: timeout) { [weak connection] () -> Void in
            connection?.resolve(first: first, count: count, with: nil)
        }
        lock.withLock { deadline = scheduled }
    }

    func deliver(_ message: NATSMessage, at index: Int) {
        let done: [NATSMessage]? = lock.withLock {
            guard replies[index] == nil, remaining > 0 else { return nil }
            replies[index] = message
            remaining -= 1
            return remaining == 0 ? replies.map { $0! } : nil
        }
        if let done { complete(.success(done)) }
    }

    func fail(_ error: any Error) {
        complete(.failure(error))
    }

    private func complete(_ result: Result<[NATSMessage], any Error>) {
        let (continuation, deadline): (CheckedContinuation<[NATSMessage], any Error>?, Scheduled<Void>?) = lock.withLock {
            guard early == nil else { return (nil, nil) }
            early = result
            remaining = 0
            defer { self.continuation = nil }
            return (self.continuation, self.deadline)
        }
        deadline?.cancel()
        continuation?.resume(with: result)
    }
}

/// The messages that answer one request, until the last.
private final class MessageCollector: @unchecked Sendable {
    private let lock = NIOLock()
    private let isLast: @Sendable (NATSMessage, Int) -> Bool
    private var messages: [NATSMessage] = []
    private var done = false
    private var failure: (any Error)?
    private var continuation: CheckedContinuation<[NATSMessage], any Error>?
    private var deadline: Scheduled<Void>?

    func start(_ continuation: CheckedContinuation<[NATSMessage], any Error>, deadline: Scheduled<Void>) {
        let finishedEarly: Result<[NATSMessage], any Error>? = lock.withLock {
            if done { return failure.map { .failure($0) } ?? .success(messages) }
            self.continuation = continuation
            self.deadline = deadline
            return nil
        }
        if let finishedEarly {
            deadline.cancel()
            continuation.resume(with: finishedEarly)
        }
    }

    init(isLast: @escaping @Sendable (NATSMessage, Int) -> Bool) {
        self.isLast = isLast
    }

    /// Returns true when this message was the last.
    func add(_ message: NATSMessage) -> Bool {
        lock.withLock {
            guard !done else { return false }
            messages.append(message)
            return isLast(message, messages.count)
        }
    }

    func finish() { complete(.success(())) }
    func fail(_ error: any Error) { complete(.failure(error)) }

    private func complete(_ outcome: Result<Void, any Error>) {
        let (continuation, deadline, messages): (CheckedContinuation<[NATSMessage], any Error>?, Scheduled<Void>?, [NATSMessage]) = lock.withLock {
            guard !done else { return (nil, nil, []) }
            done = true
            if case .failure(let error) = outcome { failure = error }
            defer { self.continuation = nil }
            return (self.continuation, self.deadline, self.messages)
        }
        deadline?.cancel()
        switch outcome {
        case .success: continuation?.resume(returning: messages)
        case .failure(let error): continuation?.resume(throwing: error)
        }
    }
}

/// The channel's one handler: parses what the server sends, answers PING, completes the
/// handshake, and hands messages to the connection.
private final class NATSChannelHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var parser = NATSParser()
    private let handshake: EventLoopPromise<NATSConnection.ServerInfo>
    private var info: NATSConnection.ServerInfo?
    private var connected = false
    private let connectionBox = NIOLockedValueBox<NATSConnection?>(nil)

    init(handshake: EventLoopPromise<NATSConnection.ServerInfo>) {
        self.handshake = handshake
    }

    func attach(_ connection: NATSConnection) {
        connectionBox.withLockedValue { $0 = connection }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let operations: [NATSServerOperation]
        do {
            operations = try parser.feed(buffer.readableBytesView)
        } catch {
            fail(context: context, WharfError(.internalError, "NATS protocol error: \(error)"))
            return
        }
        for operation in operations {
            switch operation {
            case .ping:
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: NATSClientOperation.pong)), promise: nil)
            case .info(let json):
                guard info == nil else { continue }  // later INFOs announce cluster changes
                do {
                    let decoded = try JSONDecoder().decode(NATSConnection.ServerInfo.self, from: Data(json))
                    info = decoded
                    var bytes = NATSClientOperation.connect(name: "wharf")
                    bytes += NATSClientOperation.ping
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: nil)
                } catch {
                    fail(context: context, WharfError(.internalError, "NATS sent an unreadable INFO: \(error)"))
                    return
                }
            case .pong:
                if !connected, let info {
                    connected = true
                    handshake.succeed(info)
                }
            case .ok:
                break
            case .error(let text):
                fail(context: context, WharfError(.unavailable, "NATS error: \(text)"))
                return
            case .message(let message):
                connectionBox.withLockedValue { $0 }?.route(message)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(context: context, WharfError(.unavailable, "the NATS connection closed"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context: context, WharfError(.unavailable, "the NATS connection failed: \(error)"))
    }

    private func fail(context: ChannelHandlerContext, _ error: WharfError) {
        if !connected {
            connected = true
            handshake.fail(error)
        }
        connectionBox.withLockedValue { $0 }?.fail(error)
        context.close(promise: nil)
    }
}
