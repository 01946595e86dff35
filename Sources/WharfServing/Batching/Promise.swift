import Synchronization

/// A result that one task fulfils and another awaits, in either order.
final class Promise<Value: Sendable>: Sendable {
    private enum State {
        case pending
        case waiting(CheckedContinuation<Value, any Error>)
        case done(Result<Value, any Error>)
    }

    private let state = Mutex(State.pending)
    /// Set when a batch takes the job this promise answers (under the batcher's lock).
    private let taken = Atomic(false)

    func markTaken() { taken.store(true, ordering: .releasing) }
    var isTaken: Bool { taken.load(ordering: .acquiring) }

    func fulfil(_ result: Result<Value, any Error>) {
        let waiter: CheckedContinuation<Value, any Error>? = state.withLock { state in
            switch state {
            case .pending:
                state = .done(result)
                return nil
            case .waiting(let continuation):
                state = .done(result)
                return continuation
            case .done:
                return nil
            }
        }
        waiter?.resume(with: result)
    }

    var value: Value {
        get async throws {
            // Most often the result is already there (the caller evaluated its own batch).
            if case .done(let result)? = state.withLock({ state -> State? in
                if case .done = state { return state }
                return nil
            }) {
                return try result.get()
            }
            return try await withCheckedThrowingContinuation { continuation in
                let ready: Result<Value, any Error>? = state.withLock { state in
                    switch state {
                    case .pending:
                        state = .waiting(continuation)
                        return nil
                    case .done(let result):
                        return result
                    case .waiting:
                        preconditionFailure("a promise is awaited once")
                    }
                }
                if let ready { continuation.resume(with: ready) }
            }
        }
    }
}
