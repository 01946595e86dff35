#if os(Linux)
import CWharfEpoll
import Foundation
import Glibc
import NIOConcurrencyHelpers
import NIOCore

/// A socket watched by a ``ForwardingLoop``: told on the loop's thread when it can be read or
/// written.
protocol LoopSocket: AnyObject {
    /// Readable, at its end (EOF), or failed: `events` says which (`EPOLLHUP`, `EPOLLERR`).
    func readable(events: UInt32)
    func writable()
}

/// One thread with its own epoll set, where the forwarding plane runs client and replica
/// connections with no channel pipeline, promise or per-read buffer in between: what NIO costs
/// a forwarded request (about 23 µs of CPU on the benchmark's VM) was two thirds of the
/// gateway's own CPU, and more than nginx's whole.
///
/// Interest is level-triggered and a readable socket is read once per wake-up: an inference
/// request or answer is one read, so no second read is made only to learn it would block.
/// Everything is confined to the loop's thread except ``execute(_:)``.
final class ForwardingLoop: @unchecked Sendable {
    private let epoll: Int32
    private let wake: Int32
    /// By file descriptor, with the registration's number. A descriptor closed while its
    /// events wait in the current batch can be reused at once by a socket made meanwhile (a new
    /// replica connection): the events carry the number they were registered with, and those of
    /// an older registration are dropped instead of reaching the new socket.
    private var sockets: [(socket: (any LoopSocket)?, registration: UInt32)] = []
    private var registrations: UInt32 = 0
    private let lock = NIOLock()
    private var queued: [@Sendable () -> Void] = []
    private var stopping = false
    private var timers = TimerHeap()
    private let finished = NIOLockedValueBox<CheckedContinuation<Void, Never>?>(nil)
    private let exited = NIOLockedValueBox(false)
    /// Bytes read land here first, then are copied to the buffer that keeps them: one small
    /// allocation a read, sized to what came.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)

    init() throws {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw PlaneError.system("epoll_create1", errno) }
        wake = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard wake >= 0 else {
            close(epoll)
            throw PlaneError.system("eventfd", errno)
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = Self.eventData(fd: wake, registration: 0)
        epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &event)
    }

    deinit {
        close(epoll)
        close(wake)
        scratch.deallocate()
    }

    // MARK: Sockets

    /// `EPOLLIN`, for callers without the system's headers.
    static let reads = EPOLLIN.rawValue

    /// Watches `fd` for `events` (`EPOLLIN`, `EPOLLOUT`, and `EPOLLEXCLUSIVE` for a listener
    /// shared by loops).
    func watch(_ fd: Int32, _ socket: any LoopSocket, events: UInt32) {
        let slot = Int(fd)
        if slot >= sockets.count {
            sockets.append(contentsOf: repeatElement((socket: nil, registration: 0), count: max(slot + 1 - sockets.count, sockets.count)))
        }
        registrations &+= 1
        if registrations == 0 { registrations = 1 }
        sockets[slot] = (socket, registrations)
        var event = epoll_event()
        event.events = events
        event.data.u64 = Self.eventData(fd: fd, registration: registrations)
        epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event)
    }

    func change(_ fd: Int32, events: UInt32) {
        var event = epoll_event()
        event.events = events
        event.data.u64 = Self.eventData(fd: fd, registration: sockets[Int(fd)].registration)
        epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &event)
    }

    /// Stops watching `fd`; the caller closes it (or hands it on).
    func forget(_ fd: Int32) {
        epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil)
        if Int(fd) < sockets.count { sockets[Int(fd)] = (socket: nil, registration: 0) }
    }

    private static func eventData(fd: Int32, registration: UInt32) -> UInt64 {
        UInt64(registration) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    // MARK: Tasks and timers

    /// Runs `task` on the loop's thread, soon; from any thread.
    func execute(_ task: @escaping @Sendable () -> Void) {
        let first = lock.withLock {
            queued.append(task)
            return queued.count == 1
        }
        if first {
            var one: UInt64 = 1
            _ = write(wake, &one, 8)
        }
    }

    /// Runs `action` at `deadline` unless the timer is cancelled first. On the loop's thread.
    @discardableResult
    func schedule(at deadline: NIODeadline, _ action: @escaping () -> Void) -> LoopTimer {
        let timer = LoopTimer(deadline: deadline, action: action)
        timers.push(timer)
        return timer
    }

    // MARK: Running

    /// Starts the thread.
    func start() {
        let box = Unmanaged.passRetained(self)
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        // As NIO's threads: answers to pipelined requests can nest calls deeply.
        pthread_attr_setstacksize(&attributes, 8 << 20)
        var made = pthread_t()
        pthread_create(&made, &attributes, { raw in
            let loop = Unmanaged<ForwardingLoop>.fromOpaque(raw!).takeRetainedValue()
            loop.run()
            return nil
        }, box.toOpaque())
        pthread_attr_destroy(&attributes)
        pthread_detach(made)
    }

    /// Asks the thread to end after its current pass; ``waitForExit()`` returns once it has.
    func stop() {
        execute { [self] in stopping = true }
    }

    func waitForExit() async {
        await withCheckedContinuation { continuation in
            let done = exited.withLockedValue { exited in
                if !exited { finished.withLockedValue { $0 = continuation } }
                return exited
            }
            if done { continuation.resume() }
        }
    }

    private func run() {
        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        while !stopping {
            let ready = epoll_wait(epoll, events, Int32(capacity), timers.timeoutMilliseconds(now: .now()))
            if ready < 0 {
                guard errno == EINTR else { break }
                continue
            }
            for i in 0..<Int(ready) {
                let data = events[i].data.u64
                let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
                let registration = UInt32(truncatingIfNeeded: data >> 32)
                let flags = events[i].events
                if fd == wake {
                    runQueued()
                    continue
                }
                // Forgotten, or the descriptor closed and since watched again for another socket.
                guard Int(fd) < sockets.count, sockets[Int(fd)].registration == registration, let socket = sockets[Int(fd)].socket else { continue }
                if flags & EPOLLOUT.rawValue != 0 {
                    socket.writable()
                    // Closed by what it did, or its descriptor already someone else's.
                    guard sockets[Int(fd)].registration == registration else { continue }
                }
                if flags & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
                    socket.readable(events: flags)
                }
            }
            // One at a time, outside the heap's access: an action may schedule another.
            let now = NIODeadline.now()
            while let timer = timers.popDue(now: now) {
                let action = timer.action
                timer.action = nil
                action?()
            }
        }
        let continuation = exited.withLockedValue { exited in
            exited = true
            return finished.withLockedValue { $0 }
        }
        continuation?.resume()
    }

    private func runQueued() {
        var count: UInt64 = 0
        _ = read(wake, &count, 8)
        let tasks = lock.withLock {
            defer { queued.removeAll(keepingCapacity: true) }
            return queued
        }
        for task in tasks { task() }
    }
}

/// A task for a later time on a ``ForwardingLoop``.
final class LoopTimer {
    let deadline: NIODeadline
    fileprivate var action: (() -> Void)?

    init(deadline: NIODeadline, action: @escaping () -> Void) {
        self.deadline = deadline
        self.action = action
    }

    func cancel() {
        action = nil
    }
}

/// Timers by deadline, earliest first; cancelled ones leave when they come to the top.
private struct TimerHeap {
    private var heap: [LoopTimer] = []

    mutating func push(_ timer: LoopTimer) {
        heap.append(timer)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func popFirst() -> LoopTimer {
        let first = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                guard left < heap.count else { break }
                var smallest = left
                if left + 1 < heap.count, heap[left + 1].deadline < heap[left].deadline { smallest = left + 1 }
                guard heap[smallest].deadline < heap[parent].deadline else { break }
                heap.swapAt(smallest, parent)
                parent = smallest
            }
        }
        return first
    }

    /// How long epoll may wait: until the earliest timer (rounded up to the millisecond), or
    /// for ever.
    mutating func timeoutMilliseconds(now: NIODeadline) -> Int32 {
        while let first = heap.first, first.action == nil { _ = popFirst() }
        guard let first = heap.first else { return -1 }
        let nanoseconds = (first.deadline - now).nanoseconds
        guard nanoseconds > 0 else { return 0 }
        return Int32(min((nanoseconds + 999_999) / 1_000_000, Int64(Int32.max)))
    }

    mutating func popDue(now: NIODeadline) -> LoopTimer? {
        guard let first = heap.first, first.deadline <= now else { return nil }
        return popFirst()
    }
}

enum PlaneError: Error, CustomStringConvertible {
    case system(String, Int32)
    case address(String)

    var description: String {
        switch self {
        case .system(let call, let code): "\(call): \(String(cString: strerror(code)))"
        case .address(let message): message
        }
    }
}
#endif
