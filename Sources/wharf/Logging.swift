import ArgumentParser
import Foundation
import Logging

enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text
    case json
}

/// Bootstraps swift-log once for the process: human-readable lines, or one JSON object per line
/// for log collectors. Only the executable does this; libraries just take a `Logger`.
func bootstrapLogging(format: LogFormat, level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        var handler: any LogHandler
        switch format {
        case .text: handler = TextLogHandler(label: label)
        case .json: handler = JSONLogHandler(label: label)
        }
        handler.logLevel = level
        return handler
    }
}

/// A handler that keeps its metadata as given and merges it with a line's own when it writes.
protocol MetadataKeepingLogHandler: LogHandler {
    var metadata: Logger.Metadata { get set }
}

extension MetadataKeepingLogHandler {
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func merged(_ event: LogEvent) -> Logger.Metadata {
        metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 })
    }
}

/// Human-readable lines on standard error, as swift-log's StreamLogHandler writes them, but
/// with the metadata formatted when a line is written rather than whenever it changes: servers
/// set a request id on every request's logger, and re-formatting all the metadata there cost
/// a few percent of a small inference request.
struct TextLogHandler: MetadataKeepingLogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    func log(event: LogEvent) {
        let pairs = merged(event).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        var time = timeval()
        gettimeofday(&time, nil)
        var seconds = time.tv_sec
        var parts = tm()
        localtime_r(&seconds, &parts)
        var stamp = [Int8](repeating: 0, count: 32)
        strftime(&stamp, stamp.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        let line = "\(String(cString: stamp)) \(event.level) \(label):\(pairs.isEmpty ? "" : " " + pairs) [\(event.source)] \(event.message)\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}

/// One JSON object per line on standard error: time, level, label, message, metadata.
struct JSONLogHandler: MetadataKeepingLogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    func log(event: LogEvent) {
        var fields: [String: String] = [
            "time": ISO8601DateFormatter().string(from: Date()),
            "level": event.level.rawValue,
            "label": label,
            "message": "\(event.message)",
        ]
        for (key, value) in merged(event) {
            fields[key] = "\(value)"
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(fields) else { return }
        FileHandle.standardError.write(data + Data("\n".utf8))
    }
}
