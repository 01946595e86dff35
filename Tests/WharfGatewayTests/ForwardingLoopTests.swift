#if os(Linux)
import Glibc
import NIOConcurrencyHelpers
import NIOCore
import Testing
@testable import WharfGateway

/// The forwarding plane's own event loop: its timers and the tasks other threads give it.
@Suite("The forwarding plane's loop")
struct ForwardingLoopTests {
    /// Timers run in the order of their deadlines, a cancelled one never, and an action may
    /// schedule another (the idle check reschedules itself from its own action: it once hit an
    /// exclusivity violation, the heap still being changed while the action ran).
    @Test func timersRunInOrderAndMayScheduleMore() async throws {
        let loop = try ForwardingLoop()
        loop.start()
        let fired = NIOLockedValueBox<[String]>([])
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            loop.execute {
                let now = NIODeadline.now()
                loop.schedule(at: now + .milliseconds(30)) {
                    fired.withLockedValue { $0.append("c") }
                    loop.schedule(at: .now()) {
                        fired.withLockedValue { $0.append("d") }
                        done.resume()
                    }
                }
                loop.schedule(at: now + .milliseconds(10)) { fired.withLockedValue { $0.append("a") } }
                let cancelled = loop.schedule(at: now + .milliseconds(20)) { fired.withLockedValue { $0.append("never") } }
                loop.schedule(at: now + .milliseconds(20)) { fired.withLockedValue { $0.append("b") } }
                cancelled.cancel()
            }
        }
        #expect(fired.withLockedValue { $0 } == ["a", "b", "c", "d"])
        loop.stop()
        await loop.waitForExit()
    }

    /// Tasks from other threads run on the loop's one thread, in the order given, and a socket
    /// watched there is told when it can be read.
    @Test func tasksRunInOrderAndSocketsAreWatched() async throws {
        final class Reader: LoopSocket, @unchecked Sendable {
            let fd: Int32
            let got: CheckedContinuation<[UInt8], Never>
            init(fd: Int32, got: CheckedContinuation<[UInt8], Never>) {
                self.fd = fd
                self.got = got
            }
            func readable(events: UInt32) {
                var buffer = [UInt8](repeating: 0, count: 16)
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                got.resume(returning: Array(buffer[..<max(0, count)]))
            }
            func writable() {}
        }
        let loop = try ForwardingLoop()
        loop.start()
        let order = NIOLockedValueBox<[Int]>([])
        let threads = NIOLockedValueBox(Set<UInt>())
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<100 {
                loop.execute {
                    order.withLockedValue { $0.append(index) }
                    threads.withLockedValue { _ = $0.insert(UInt(pthread_self())) }
                }
                if index == 50 { group.addTask { await Task.yield() } }
            }
        }
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        let (ours, theirs) = (pair[0], pair[1])
        defer {
            close(ours)
            close(theirs)
        }
        let bytes = await withCheckedContinuation { (got: CheckedContinuation<[UInt8], Never>) in
            let reader = Reader(fd: ours, got: got)
            loop.execute {
                loop.watch(reader.fd, reader, events: ForwardingLoop.reads)
                _ = [UInt8](arrayLiteral: 1, 2, 3).withUnsafeBytes { send(theirs, $0.baseAddress, $0.count, 0) }
            }
        }
        #expect(bytes == [1, 2, 3])
        #expect(order.withLockedValue { $0 } == Array(0..<100))
        #expect(threads.withLockedValue { $0.count } == 1)
        loop.execute { loop.forget(ours) }
        loop.stop()
        await loop.waitForExit()
    }

    /// Two sockets ready in one batch: the first told closes the other, and a new socket gets
    /// the closed one's descriptor number and is watched. The closed socket's event, still in
    /// the batch, must not reach the new one (it once failed a replica connection still
    /// connecting, which takes any readable event for a refused connect).
    @Test func anEventOfAClosedDescriptorDoesNotReachItsNextSocket() async throws {
        final class Recorder: LoopSocket, @unchecked Sendable {
            var told = 0
            func readable(events: UInt32) { told += 1 }
            func writable() { told += 1 }
        }
        final class Closer: LoopSocket, @unchecked Sendable {
            let loop: ForwardingLoop
            let fd: Int32
            var other: Closer?
            var replacement: (fd: Int32, peer: Int32, socket: Recorder)?
            init(loop: ForwardingLoop, fd: Int32) {
                self.loop = loop
                self.fd = fd
            }
            func readable(events: UInt32) {
                guard let other else { return }
                self.other = nil
                other.other = nil
                loop.forget(other.fd)
                close(other.fd)
                var pair: [Int32] = [0, 0]
                guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { return }
                let recorder = Recorder()
                loop.watch(pair[0], recorder, events: ForwardingLoop.reads)
                replacement = (pair[0], pair[1], recorder)
            }
            func writable() {}
        }
        let loop = try ForwardingLoop()
        loop.start()
        var first: [Int32] = [0, 0]
        var second: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &first) == 0)
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &second) == 0)
        let peers = [first[1], second[1]]
        let a = Closer(loop: loop, fd: first[0])
        let b = Closer(loop: loop, fd: second[0])
        (a.other, b.other) = (b, a)
        let (closedFD, told, replacementFD) = await withCheckedContinuation { (done: CheckedContinuation<(Int32, Int, Int32), Never>) in
            loop.execute {
                loop.watch(a.fd, a, events: ForwardingLoop.reads)
                loop.watch(b.fd, b, events: ForwardingLoop.reads)
                // Both readable before the loop waits again: one batch.
                for peer in peers { _ = [UInt8](arrayLiteral: 1).withUnsafeBytes { send(peer, $0.baseAddress, $0.count, 0) } }
                // After the next pass's events (timers run after them), whose batch has both.
                loop.schedule(at: .now() + .milliseconds(2)) {
                    // The batch is over: which closed which, and what the new socket was told.
                    let closer = a.replacement != nil ? a : b
                    let closed = closer === a ? b : a
                    done.resume(returning: (closed.fd, closer.replacement?.socket.told ?? -1, closer.replacement?.fd ?? -1))
                }
            }
        }
        // The point of the test: the new socket took the closed one's number.
        #expect(replacementFD == closedFD)
        #expect(told == 0)
        let leftOpen = [first[1], second[1], a.fd == closedFD ? b.fd : a.fd] + [a, b].compactMap { $0.replacement.map { [$0.fd, $0.peer] } }.flatMap { $0 }
        loop.execute { for fd in leftOpen { loop.forget(fd) } }
        loop.stop()
        await loop.waitForExit()
        for fd in leftOpen { close(fd) }
    }
}
#endif
