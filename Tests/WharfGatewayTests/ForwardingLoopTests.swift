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
}
#endif
