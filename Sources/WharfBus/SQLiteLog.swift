import Foundation
import GRDB
import WharfCore

/// The embedded bus: an append-only log in one SQLite file (WAL) under the data directory.
///
/// A publish is one transaction: the stream's next offset is read, the batch is inserted with
/// one prepared statement, the next offset is stored, and the commit makes the batch durable
/// (`synchronous=NORMAL` in WAL mode: a committed batch survives a process crash). A consumer's
/// acknowledged offset is a row of its own, so it survives restarts too.
public final class SQLiteLog: MessageBus {
    private let pool: DatabasePool

    public init(path: String) throws {
        pool = try Self.openPool(path: path)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("1-log") { db in
            try db.execute(sql: """
                CREATE TABLE streams (name TEXT PRIMARY KEY, configuration TEXT NOT NULL, next_offset INTEGER NOT NULL);
                CREATE TABLE messages (
                    stream TEXT NOT NULL, offset INTEGER NOT NULL, key TEXT NOT NULL, time REAL NOT NULL, payload BLOB NOT NULL,
                    PRIMARY KEY (stream, offset)) WITHOUT ROWID;
                CREATE INDEX messages_by_time ON messages (stream, time);
                CREATE TABLE consumers (stream TEXT NOT NULL, name TEXT NOT NULL, acknowledged INTEGER NOT NULL, PRIMARY KEY (stream, name));
                """)
        }
        try migrator.migrate(pool)
    }

    public func createStream(_ configuration: StreamConfiguration) async throws {
        let configuration = try configuration.validated()
        let encoded = String(decoding: try JSONEncoder().encode(configuration), as: UTF8.self)
        try await pool.write { db in
            try db.execute(
                sql: "INSERT INTO streams (name, configuration, next_offset) VALUES (?, ?, 1) ON CONFLICT (name) DO UPDATE SET configuration = excluded.configuration",
                arguments: [configuration.name, encoded])
        }
    }

    public func streams() async throws -> [StreamConfiguration] {
        try await pool.read { db in
            try String.fetchAll(db, sql: "SELECT configuration FROM streams ORDER BY name").map {
                try JSONDecoder().decode(StreamConfiguration.self, from: Data($0.utf8))
            }
        }
    }

    private static func nextOffset(_ db: Database, _ stream: String) throws -> Int64 {
        guard let next = try Int64.fetchOne(db, sql: "SELECT next_offset FROM streams WHERE name = ?", arguments: [stream]) else {
            throw BusErrors.unknownStream(stream)
        }
        return next
    }

    public func publish(stream: String, _ messages: [OutgoingMessage]) async throws -> [Int64] {
        try await pool.write { db in
            let first = try Self.nextOffset(db, stream)
            let insert = try db.cachedStatement(sql: "INSERT INTO messages (stream, offset, key, time, payload) VALUES (?, ?, ?, ?, ?)")
            for (index, message) in messages.enumerated() {
                try insert.execute(arguments: [stream, first + Int64(index), message.key, message.time.timeIntervalSince1970, Data(message.payload)])
            }
            try db.execute(sql: "UPDATE streams SET next_offset = ? WHERE name = ?", arguments: [first + Int64(messages.count), stream])
            return (0..<messages.count).map { first + Int64($0) }
        }
    }

    public func read(stream: String, from offset: Int64, limit: Int) async throws -> [BusMessage] {
        try await pool.read { db in
            _ = try Self.nextOffset(db, stream)
            return try Row.fetchAll(
                db, sql: "SELECT offset, key, time, payload FROM messages WHERE stream = ? AND offset >= ? ORDER BY offset LIMIT ?",
                arguments: [stream, offset, max(0, limit)]
            ).map { row in
                BusMessage(stream: stream, offset: row["offset"], key: row["key"], time: Date(timeIntervalSince1970: row["time"]),
                           payload: [UInt8](row["payload"] as Data))
            }
        }
    }

    public func firstOffset(stream: String, atOrAfter time: Date) async throws -> Int64? {
        try await pool.read { db in
            _ = try Self.nextOffset(db, stream)
            return try Int64.fetchOne(db, sql: "SELECT MIN(offset) FROM messages WHERE stream = ? AND time >= ?",
                                      arguments: [stream, time.timeIntervalSince1970])
        }
    }

    public func fetch(stream: String, consumer: String, limit: Int) async throws -> [BusMessage] {
        try BusErrors.checkConsumer(consumer)
        let after = try await acknowledged(stream: stream, consumer: consumer)
        return try await read(stream: stream, from: after + 1, limit: limit)
    }

    public func acknowledge(stream: String, consumer: String, through offset: Int64) async throws {
        try BusErrors.checkConsumer(consumer)
        try await pool.write { db in
            let next = try Self.nextOffset(db, stream)
            guard offset < next else {
                throw WharfError(.invalidInput, "offset \(offset) is beyond the end of stream \(stream) (last \(next - 1))")
            }
            try db.execute(
                sql: """
                    INSERT INTO consumers (stream, name, acknowledged) VALUES (?, ?, ?)
                    ON CONFLICT (stream, name) DO UPDATE SET acknowledged = MAX(acknowledged, excluded.acknowledged)
                    """,
                arguments: [stream, consumer, offset])
        }
    }

    public func acknowledged(stream: String, consumer: String) async throws -> Int64 {
        try await pool.read { db in
            _ = try Self.nextOffset(db, stream)
            return try Int64.fetchOne(db, sql: "SELECT acknowledged FROM consumers WHERE stream = ? AND name = ?", arguments: [stream, consumer]) ?? 0
        }
    }

    public func enforceRetention(stream: String, now: Date) async throws -> Int {
        guard let configuration = try await streams().first(where: { $0.name == stream }) else { throw BusErrors.unknownStream(stream) }
        return try await pool.write { db in
            var removed = 0
            if let maxAge = configuration.maxAgeSeconds {
                // From the old end only (offsets stay dense): up to the first message young enough.
                let cutoff = now.addingTimeInterval(-maxAge).timeIntervalSince1970
                let keepFrom = try Int64.fetchOne(db, sql: "SELECT MIN(offset) FROM messages WHERE stream = ? AND time >= ?", arguments: [stream, cutoff])
                    ?? Int64.max
                try db.execute(sql: "DELETE FROM messages WHERE stream = ? AND offset < ?", arguments: [stream, keepFrom])
                removed += db.changesCount
            }
            if let maxMessages = configuration.maxMessages {
                let last = try Int64.fetchOne(db, sql: "SELECT MAX(offset) FROM messages WHERE stream = ?", arguments: [stream]) ?? 0
                try db.execute(sql: "DELETE FROM messages WHERE stream = ? AND offset <= ?", arguments: [stream, last - Int64(maxMessages)])
                removed += db.changesCount
            }
            return removed
        }
    }

    public func bounds(stream: String) async throws -> StreamBounds {
        try await pool.read { db in
            _ = try Self.nextOffset(db, stream)
            let row = try Row.fetchOne(db, sql: "SELECT MIN(offset) AS first, MAX(offset) AS last, COUNT(*) AS count FROM messages WHERE stream = ?", arguments: [stream])
            return StreamBounds(first: row?["first"] ?? 0, last: row?["last"] ?? 0, count: row?["count"] ?? 0)
        }
    }
}

extension SQLiteLog {
    /// An embedded SQLite file as the hub keeps its data: WAL (GRDB's pool), `synchronous=NORMAL`
    /// (a committed transaction survives the process being killed), and a wait rather than an
    /// error when another connection holds the write lock.
    public static func openPool(path: String) throws -> DatabasePool {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        return try DatabasePool(path: path, configuration: configuration)
    }
}
