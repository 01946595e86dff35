import Foundation
import GRDB
import Synchronization
import WharfBus
import WharfCore

/// One value of one feature of one entity, with the event that carried it.
public struct Observation: Sendable, Hashable {
    public var value: StreamDefinition.Scalar
    public var time: Date
    public var offset: Int64

    public init(value: StreamDefinition.Scalar, time: Date, offset: Int64) {
        self.value = value
        self.time = time
        self.offset = offset
    }

    /// Later event time wins; at the same time, the later offset (the one that arrived last).
    func isNewer(than other: Observation) -> Bool {
        time != other.time ? time > other.time : offset > other.offset
    }
}

/// An event as the feature store keeps it: its entity, event time and typed values.
public struct MaterializedEvent: Sendable, Hashable {
    public var offset: Int64
    public var entity: String
    public var time: Date
    public var values: [String: StreamDefinition.Scalar]

    public init(offset: Int64, entity: String, time: Date, values: [String: StreamDefinition.Scalar]) {
        self.offset = offset
        self.entity = entity
        self.time = time
        self.values = values
    }
}

/// Where materialized feature values live: every observation (for point-in-time reads) and
/// how far each stream has been read. One contract (`Tests/WharfFeaturesTests`) for each
/// implementation: in memory (tests, one-process use) and SQLite (the hub).
public protocol FeatureStorage: Sendable {
    /// The next offset of `stream` to materialize (1 when never read).
    func position(stream: String) async throws -> Int64
    /// Stores the events read from offsets `from`..<`next` and moves the position to `next`,
    /// atomically. Returns false and stores nothing when the position is no longer `from`
    /// (another reader got there first).
    func apply(stream: String, events: [MaterializedEvent], from: Int64, next: Int64) async throws -> Bool
    /// For each feature, the newest observation at or before `time` (absent: none).
    func values(stream: String, entity: String, features: [String], asOf time: Date) async throws -> [String: Observation]
    /// The newest observation of every feature of every entity: entity → feature → observation.
    func latest(stream: String) async throws -> [String: [String: Observation]]
    /// Forgets observations older than `cutoff`, except each feature's newest; returns how many.
    @discardableResult
    func forget(stream: String, before cutoff: Date) async throws -> Int
}

/// Everything in memory: gone with the process (the log is read again from the start).
public final class InMemoryFeatureStorage: FeatureStorage {
    private struct State {
        var positions: [String: Int64] = [:]
        /// stream → entity → feature → observations sorted oldest first.
        var history: [String: [String: [String: [Observation]]]] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public func position(stream: String) async throws -> Int64 {
        state.withLock { $0.positions[stream] ?? 1 }
    }

    public func apply(stream: String, events: [MaterializedEvent], from: Int64, next: Int64) async throws -> Bool {
        state.withLock { state in
            guard (state.positions[stream] ?? 1) == from else { return false }
            var byEntity = state.history[stream] ?? [:]
            for event in events {
                for (feature, value) in event.values {
                    let observation = Observation(value: value, time: event.time, offset: event.offset)
                    var list = byEntity[event.entity]?[feature] ?? []
                    // Usually appended at the end; a late event is put in its place.
                    let index = list.lastIndex { observation.isNewer(than: $0) }.map { $0 + 1 } ?? 0
                    list.insert(observation, at: index)
                    byEntity[event.entity, default: [:]][feature] = list
                }
            }
            state.history[stream] = byEntity
            state.positions[stream] = next
            return true
        }
    }

    public func values(stream: String, entity: String, features: [String], asOf time: Date) async throws -> [String: Observation] {
        let entityHistory = state.withLock { $0.history[stream]?[entity] } ?? [:]
        var found: [String: Observation] = [:]
        for feature in features {
            if let observation = entityHistory[feature]?.last(where: { $0.time <= time }) { found[feature] = observation }
        }
        return found
    }

    public func latest(stream: String) async throws -> [String: [String: Observation]] {
        let history = state.withLock { $0.history[stream] } ?? [:]
        return history.mapValues { features in features.compactMapValues(\.last) }
    }

    public func forget(stream: String, before cutoff: Date) async throws -> Int {
        state.withLock { state in
            var removed = 0
            guard var byEntity = state.history[stream] else { return 0 }
            for (entity, features) in byEntity {
                for (feature, list) in features {
                    let keep = list.enumerated().filter { $0.element.time >= cutoff || $0.offset == list.count - 1 }.map(\.element)
                    removed += list.count - keep.count
                    byEntity[entity]?[feature] = keep
                }
            }
            state.history[stream] = byEntity
            return removed
        }
    }
}

/// The hub's feature storage: one SQLite file (WAL) under the data directory. Every
/// observation is a row keyed by (stream, entity, feature, time, offset), so a point-in-time
/// read is one index seek per feature, and the position moves in the same transaction as the
/// rows it covers: after a crash, materialization resumes exactly where it stopped.
public final class SQLiteFeatureStorage: FeatureStorage {
    private let pool: DatabasePool

    public init(path: String) throws {
        pool = try SQLiteLog.openPool(path: path)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("1-features") { db in
            try db.execute(sql: """
                CREATE TABLE positions (stream TEXT PRIMARY KEY, next_offset INTEGER NOT NULL);
                CREATE TABLE observations (
                    stream TEXT NOT NULL, entity TEXT NOT NULL, feature TEXT NOT NULL, time REAL NOT NULL, offset INTEGER NOT NULL,
                    kind INTEGER NOT NULL, value,
                    PRIMARY KEY (stream, entity, feature, time, offset)) WITHOUT ROWID;
                """)
        }
        try migrator.migrate(pool)
    }

    private enum Kind: Int64 {
        case number = 0, string = 1, bool = 2
    }

    private static func encode(_ value: StreamDefinition.Scalar) -> (Int64, DatabaseValue)? {
        switch value {
        case .number(let number): (Kind.number.rawValue, number.databaseValue)
        case .string(let text): (Kind.string.rawValue, text.databaseValue)
        case .bool(let flag): (Kind.bool.rawValue, (flag ? 1 : 0).databaseValue)
        case .null: nil
        }
    }

    private static func observation(_ row: Row) -> Observation? {
        let value: StreamDefinition.Scalar
        switch Kind(rawValue: row["kind"]) {
        case .number?: value = .number(row["value"])
        case .string?: value = .string(row["value"])
        case .bool?: value = .bool((row["value"] as Int64) != 0)
        case nil: return nil
        }
        return Observation(value: value, time: Date(timeIntervalSince1970: row["time"]), offset: row["offset"])
    }

    public func position(stream: String) async throws -> Int64 {
        try await pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT next_offset FROM positions WHERE stream = ?", arguments: [stream]) ?? 1
        }
    }

    public func apply(stream: String, events: [MaterializedEvent], from: Int64, next: Int64) async throws -> Bool {
        try await pool.write { db in
            let current = try Int64.fetchOne(db, sql: "SELECT next_offset FROM positions WHERE stream = ?", arguments: [stream]) ?? 1
            guard current == from else { return false }
            let insert = try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO observations (stream, entity, feature, time, offset, kind, value) VALUES (?, ?, ?, ?, ?, ?, ?)
                """)
            for event in events {
                for (feature, value) in event.values {
                    guard let (kind, stored) = Self.encode(value) else { continue }
                    try insert.execute(arguments: [stream, event.entity, feature, event.time.timeIntervalSince1970, event.offset, kind, stored])
                }
            }
            try db.execute(sql: "INSERT INTO positions (stream, next_offset) VALUES (?, ?) ON CONFLICT (stream) DO UPDATE SET next_offset = excluded.next_offset",
                           arguments: [stream, next])
            return true
        }
    }

    public func values(stream: String, entity: String, features: [String], asOf time: Date) async throws -> [String: Observation] {
        try await pool.read { db in
            let select = try db.cachedStatement(sql: """
                SELECT time, offset, kind, value FROM observations
                WHERE stream = ? AND entity = ? AND feature = ? AND time <= ? ORDER BY time DESC, offset DESC LIMIT 1
                """)
            var found: [String: Observation] = [:]
            for feature in features {
                if let row = try Row.fetchOne(select, arguments: [stream, entity, feature, time.timeIntervalSince1970]),
                   let observation = Self.observation(row) {
                    found[feature] = observation
                }
            }
            return found
        }
    }

    public func latest(stream: String) async throws -> [String: [String: Observation]] {
        try await pool.read { db in
            // The last row of each (entity, feature) in key order is its newest.
            let rows = try Row.fetchCursor(db, sql: """
                SELECT entity, feature, time, offset, kind, value FROM observations o
                WHERE stream = ? AND NOT EXISTS (
                    SELECT 1 FROM observations n WHERE n.stream = o.stream AND n.entity = o.entity AND n.feature = o.feature
                    AND (n.time > o.time OR (n.time = o.time AND n.offset > o.offset)))
                """, arguments: [stream])
            var latest: [String: [String: Observation]] = [:]
            while let row = try rows.next() {
                if let observation = Self.observation(row) { latest[row["entity"], default: [:]][row["feature"]] = observation }
            }
            return latest
        }
    }

    public func forget(stream: String, before cutoff: Date) async throws -> Int {
        try await pool.write { db in
            try db.execute(sql: """
                DELETE FROM observations WHERE stream = ? AND time < ? AND EXISTS (
                    SELECT 1 FROM observations n WHERE n.stream = observations.stream AND n.entity = observations.entity
                    AND n.feature = observations.feature
                    AND (n.time > observations.time OR (n.time = observations.time AND n.offset > observations.offset)))
                """, arguments: [stream, cutoff.timeIntervalSince1970])
            return db.changesCount
        }
    }
}
