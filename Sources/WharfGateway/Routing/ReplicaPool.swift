import Synchronization
import WharfCore

/// One model-server replica as the gateway sees it: requests in flight, the last active health
/// check, and a circuit breaker fed by the requests themselves (passive ejection).
public final class Replica: Sendable {
    public let url: String
    /// Where the raw forwarding client connects; nil for https replicas.
    let endpoint: UpstreamEndpoint?

    struct State {
        var outstanding = 0
        /// From the active checks of `/v2/health/ready`; a new replica is trusted until the
        /// first check says otherwise.
        var ready = true
        var consecutiveFailures = 0
        /// While set and in the future, the breaker is open: the replica gets no requests.
        var openUntil: ContinuousClock.Instant?
        var cooldown: Duration = .milliseconds(500)
        /// After the cooldown one trial request is let through (half-open).
        var trialInFlight = false
        /// Counts the health check's resets: a trial let through before one no longer judges.
        var generation = 0
    }

    let state = Mutex(State())
    /// Consecutive failures that open the breaker.
    static let failureThreshold = 3
    static let maximumCooldown: Duration = .seconds(15)

    public init(url: String) {
        self.url = url
        self.endpoint = UpstreamEndpoint(url: url)
    }

    public struct Snapshot: Sendable, Hashable, Codable {
        public var url: String
        public var outstanding: Int
        public var ready: Bool
        public var breakerOpen: Bool
        public var consecutiveFailures: Int

        enum CodingKeys: String, CodingKey {
            case url, outstanding, ready
            case breakerOpen = "breaker_open"
            case consecutiveFailures = "consecutive_failures"
        }
    }

    public var snapshot: Snapshot {
        let now = ContinuousClock.now
        return state.withLock {
            Snapshot(url: url, outstanding: $0.outstanding, ready: $0.ready,
                     breakerOpen: $0.openUntil.map { $0 > now } ?? false, consecutiveFailures: $0.consecutiveFailures)
        }
    }

    /// One request's hold on a replica, given back with ``release(failed:now:)``.
    struct Lease: Sendable {
        let replica: Replica
        /// The one request let through a half-open breaker: its outcome alone closes or reopens it.
        let isTrial: Bool
        fileprivate let generation: Int

        /// The request is over; `failed` when the replica could not answer (connection, 503, timeout).
        func release(failed: Bool, now: ContinuousClock.Instant) {
            replica.release(failed: failed, trial: isTrial, generation: generation, now: now)
        }
    }

    /// Takes the replica for one request if it may have one now; counts it in flight.
    func acquire(now: ContinuousClock.Instant) -> Lease? {
        let admitted: (trial: Bool, generation: Int)? = state.withLock { state in
            guard state.ready else { return nil }
            var trial = false
            if let openUntil = state.openUntil {
                guard now >= openUntil, !state.trialInFlight else { return nil }
                state.trialInFlight = true
                trial = true
            }
            state.outstanding += 1
            return (trial, state.generation)
        }
        return admitted.map { Lease(replica: self, isTrial: $0.trial, generation: $0.generation) }
    }

    private func release(failed: Bool, trial: Bool, generation: Int, now: ContinuousClock.Instant) {
        state.withLock { state in
            state.outstanding -= 1
            // Sent before the health check found the replica ready again (and reset it): the
            // breaker's state is the reset's, not this request's to judge.
            guard generation == state.generation else { return }
            if trial {
                state.trialInFlight = false
                if failed {
                    // Open again, each time for longer, up to the maximum.
                    state.openUntil = now + state.cooldown
                    state.cooldown = min(state.cooldown * 2, Self.maximumCooldown)
                } else {
                    state.consecutiveFailures = 0
                    state.openUntil = nil
                    state.cooldown = .milliseconds(500)
                }
                return
            }
            // While the breaker is open only its trial judges the replica: requests sent before
            // it opened, ending since, neither lengthen nor close it.
            guard state.openUntil == nil else { return }
            if failed {
                state.consecutiveFailures += 1
                if state.consecutiveFailures >= Self.failureThreshold {
                    state.openUntil = now + state.cooldown
                    state.cooldown = min(state.cooldown * 2, Self.maximumCooldown)
                }
            } else {
                state.consecutiveFailures = 0
                state.cooldown = .milliseconds(500)
            }
        }
    }

    /// An active health check's result. A replica that is ready again (restarted, say) gets
    /// its breaker closed at once rather than after the cooldown. One that stayed ready keeps an
    /// open breaker: a server whose readiness answers while its inferences fail or hang is
    /// exactly what the breaker is for.
    func recordHealth(ready: Bool) {
        state.withLock { state in
            let wasReady = state.ready
            state.ready = ready
            if ready, !wasReady {
                state.openUntil = nil
                state.consecutiveFailures = 0
                state.cooldown = .milliseconds(500)
                state.trialInFlight = false
                state.generation += 1
            }
        }
    }

    var outstanding: Int { state.withLock { $0.outstanding } }
}

/// The replicas of one version: least outstanding requests, ties broken at random.
public struct ReplicaPool: Sendable {
    public let replicas: [Replica]

    public init(_ replicas: [Replica]) {
        self.replicas = replicas
    }

    /// A replica for one request (already acquired), not among `excluded`; nil when none may
    /// take one now. The least loaded first; replicas with equal load are drawn at random, so
    /// idle replicas share. Runs for every forwarded request, so it allocates nothing.
    func acquire(excluding excluded: Set<String>, random: inout some RandomNumberGenerator) -> Replica.Lease? {
        let now = ContinuousClock.now
        var passed = [Bool](repeating: false, count: 0)
        var passedBits: UInt64 = 0
        func isPassed(_ index: Int) -> Bool { index < 64 ? passedBits & (1 << UInt64(index)) != 0 : passed[index - 64] }
        func pass(_ index: Int) {
            if index < 64 { passedBits |= 1 << UInt64(index) } else { passed[index - 64] = true }
        }
        if replicas.count > 64 { passed = [Bool](repeating: false, count: replicas.count - 64) }
        while true {
            var best = -1
            var bestLoad = Int.max
            var ties: UInt64 = 0
            for index in replicas.indices where !isPassed(index) {
                let replica = replicas[index]
                if !excluded.isEmpty, excluded.contains(replica.url) {
                    pass(index)
                    continue
                }
                let load = replica.outstanding
                if load < bestLoad {
                    (best, bestLoad, ties) = (index, load, 1)
                } else if load == bestLoad {
                    // Reservoir sampling: each of the tied replicas is kept with equal chance.
                    ties += 1
                    if random.next(upperBound: ties) == 0 { best = index }
                }
            }
            guard best >= 0 else { return nil }
            if let lease = replicas[best].acquire(now: now) { return lease }
            pass(best)
        }
    }
}
