#if canImport(Glibc)
import Glibc
#endif
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import WharfClient

/// One service run as a child process: what to run, and where it says it is ready.
public struct ServiceProcess: Sendable, Hashable {
    public var name: String
    public var arguments: [String]
    /// Polled until it answers 200 before the service counts as ready.
    public var readyURL: String?
    /// Added to the inherited environment: secrets go here, never in the arguments (which any
    /// user of the machine can read).
    public var environment: [String: String]

    public init(name: String, arguments: [String], readyURL: String?, environment: [String: String] = [:]) {
        self.name = name
        self.arguments = arguments
        self.readyURL = readyURL
        self.environment = environment
    }
}

/// Runs services as separate processes and keeps them running: a process that exits without
/// being asked to is started again after a backoff (0.5 s, doubling to 30 s; back to 0.5 s once
/// it has run for 30 s). Every line a child prints is prefixed with its name.
public final class Supervisor: Sendable {
    public enum LogFormat: Sendable { case text, json }

    let executable: String
    let logFormat: LogFormat
    let logger: Logger
    private let children = Mutex([String: Child]())
    private let output = Mutex(())

    final class Child: @unchecked Sendable {
        // Guarded by the supervisor's `children` lock.
        var process: Process?
        var stopping = false
        var restarts = 0
        var backoff: Double = 0.5
        var startedAt = Date()
        let service: ServiceProcess

        init(service: ServiceProcess) {
            self.service = service
        }
    }

    public init(executable: String, logFormat: LogFormat, logger: Logger) {
        self.executable = executable
        self.logFormat = logFormat
        self.logger = logger
    }

    /// Starts `service` and keeps it running until `stop`.
    public func start(_ service: ServiceProcess) throws {
        let child = Child(service: service)
        children.withLock { $0[service.name] = child }
        try launch(child)
    }

    public func restarts(of name: String) -> Int {
        children.withLock { $0[name]?.restarts ?? 0 }
    }

    public func processIdentifier(of name: String) -> Int32? {
        children.withLock { $0[name]?.process?.processIdentifier }
    }

    /// The variable that tells a child the supervisor's pid (``stopWithSupervisor()``).
    static let supervisorVariable = "WHARF_SUPERVISOR_PID"

    /// In a child started by a supervisor: stops this process gracefully (SIGTERM to itself)
    /// once the supervisor is gone, however it went (SIGKILL, a crash, the OOM killer), so no
    /// service outlives it holding its port. A thread checks the parent once a second; the
    /// kernel's parent-death signal is not used because it follows the thread that spawned the
    /// child, and the supervisor spawns from Swift's pool, whose threads come and go.
    public static func stopWithSupervisor() {
        guard let text = ProcessInfo.processInfo.environment[supervisorVariable], let supervisor = Int32(text) else { return }
        // Not passed on: a process this one starts has another parent.
        unsetenv(supervisorVariable)
        let watch = Thread {
            while getppid() == supervisor { sleep(1) }
            kill(getpid(), SIGTERM)
        }
        watch.name = "wharf-supervisor-watch"
        watch.start()
    }

    private func launch(_ child: Child) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = child.service.arguments
        process.environment = ProcessInfo.processInfo.environment.merging(child.service.environment) { _, new in new }
            .merging([Self.supervisorVariable: String(getpid())]) { _, new in new }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let prefix = child.service.name
        let buffer = Mutex([UInt8]())
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self else { return }
            if data.isEmpty {
                handle.readabilityHandler = nil
                return
            }
            let lines: [String] = buffer.withLock { pending in
                pending.append(contentsOf: data)
                var lines: [String] = []
                while let newline = pending.firstIndex(of: 0x0A) {
                    lines.append(String(decoding: pending[..<newline], as: UTF8.self))
                    pending.removeSubrange(...newline)
                }
                return lines
            }
            for line in lines { self.emit(prefix, line) }
        }
        process.terminationHandler = { [weak self] process in
            self?.exited(child, status: process.terminationStatus)
        }
        try process.run()
        // A restart that raced `stop` (it passed the stopping check before `stop` looked at
        // the old process): the new process would never be signalled.
        let stopped = children.withLock { _ in
            child.process = process
            child.startedAt = Date()
            return child.stopping
        }
        if stopped {
            process.terminate()
            return
        }
        logger.info("started", metadata: ["service": "\(prefix)", "pid": "\(process.processIdentifier)"])
    }

    private func exited(_ child: Child, status: Int32) {
        let delay: Double? = children.withLock { _ in
            guard !child.stopping else { return nil }
            if Date().timeIntervalSince(child.startedAt) > 30 { child.backoff = 0.5 }
            let delay = child.backoff
            child.backoff = min(child.backoff * 2, 30)
            child.restarts += 1
            return delay
        }
        guard let delay else { return }
        logger.warning("exited; restarting", metadata: ["service": "\(child.service.name)", "status": "\(status)", "in_seconds": "\(delay)"])
        Task {
            try? await Task.sleep(for: .milliseconds(Int(delay * 1000)))
            guard !self.children.withLock({ _ in child.stopping }) else { return }
            do {
                try self.launch(child)
            } catch {
                self.logger.error("restart failed", metadata: ["service": "\(child.service.name)", "error": "\(error)"])
                self.exited(child, status: -1)
            }
        }
    }

    /// Stops the named services in order: SIGTERM, then SIGKILL after `grace`.
    public func stop(_ names: [String], grace: Duration = .seconds(10)) async {
        for name in names {
            guard let child = children.withLock({ $0[name] }) else { continue }
            let process: Process? = children.withLock { _ in
                child.stopping = true
                return child.process
            }
            guard let process, process.isRunning else { continue }
            process.terminate()
            let deadline = ContinuousClock.now + grace
            while process.isRunning, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                logger.warning("did not stop in time; killed", metadata: ["service": "\(name)"])
            }
        }
    }

    public var names: [String] { children.withLock { Array($0.keys) } }

    /// Waits until the service's ready URL answers 200 — from the service itself: a failure
    /// to start (a port already taken, and another process answering on it) is an error, not
    /// "ready".
    public func waitReady(_ service: ServiceProcess, timeout: Duration = .seconds(60)) async throws {
        guard let url = service.readyURL else { return }
        let deadline = ContinuousClock.now + timeout
        let restartsBefore = restarts(of: service.name)
        while ContinuousClock.now < deadline {
            let running = children.withLock { $0[service.name]?.process?.isRunning ?? false }
            guard running, restarts(of: service.name) == restartsBefore else {
                throw SupervisorError(message: "\(service.name) exited before it was ready (see its log above)")
            }
            if let response = try? await RegistryClient.failFast.execute(HTTPClientRequest(url: url), timeout: .seconds(1)) {
                _ = try? await response.body.collect(upTo: 1 << 20)
                if response.status == .ok { return }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw SupervisorError(message: "\(service.name) was not ready within \(timeout)")
    }

    private func emit(_ service: String, _ line: String) {
        let text: String
        switch logFormat {
        case .text:
            text = "[\(service)] \(line)\n"
        case .json:
            // A child already logging JSON gets its service added; anything else is wrapped.
            if line.hasPrefix("{"), line.hasSuffix("}") {
                text = "{\"service\":\(Self.quoted(service)),\(line.dropFirst())\n"
            } else {
                text = "{\"service\":\(Self.quoted(service)),\"message\":\(Self.quoted(line))}\n"
            }
        }
        output.withLock { _ in FileHandle.standardOutput.write(Data(text.utf8)) }
    }

    static func quoted(_ text: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [text], options: [])) ?? Data("[\"\"]".utf8)
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }
}

public struct SupervisorError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

