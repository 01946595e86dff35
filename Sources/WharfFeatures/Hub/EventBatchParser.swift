import WharfCore

/// Reads a batch of events straight from the request bytes: a JSON array of objects, or NDJSON
/// (one object a line). Each event's fields are scalars; a malformed event is reported by its
/// index and the others still count, but bytes that are not JSON at all fail the batch.
enum EventBatchParser {
    /// The events in order: each its fields, or why it was refused.
    static func parse(_ bytes: UnsafeRawBufferPointer, maxEvents: Int) throws(WharfError) -> [Result<[(String, StreamDefinition.Scalar)], WharfError>] {
        var scanner = JSONScanner(bytes)
        var events: [Result<[(String, StreamDefinition.Scalar)], WharfError>] = []
        do {
            if scanner.peek() == UInt8(ascii: "[") {
                try scanner.readArray { scanner throws(JSONScanner.Failure) in
                    guard events.count < maxEvents else { throw scanner.failure("more than \(maxEvents) events in one batch") }
                    events.append(try readEvent(&scanner))
                }
                guard scanner.peek() == nil else { throw scanner.failure("unexpected content after the array") }
            } else {
                // NDJSON: objects one after another (blank lines and any whitespace between are fine).
                while scanner.peek() != nil {
                    guard events.count < maxEvents else { throw scanner.failure("more than \(maxEvents) events in one batch") }
                    events.append(try readEvent(&scanner))
                }
            }
        } catch let failure as JSONScanner.Failure {
            throw WharfError(.invalidInput, "malformed events at byte \(failure.offset): \(failure.message)")
        } catch {
            throw WharfError(.invalidInput, "malformed events: \(error)")
        }
        guard !events.isEmpty else { throw WharfError(.invalidInput, "the batch holds no events") }
        return events
    }

    private static func readEvent(_ scanner: inout JSONScanner) throws(JSONScanner.Failure) -> Result<[(String, StreamDefinition.Scalar)], WharfError> {
        guard scanner.peek() == UInt8(ascii: "{") else {
            try scanner.skipValue()
            return .failure(WharfError(.invalidInput, "an event must be a JSON object"))
        }
        var fields: [(String, StreamDefinition.Scalar)] = []
        var nested: String?
        try scanner.readObject { scanner, key throws(JSONScanner.Failure) in
            switch scanner.peek() {
            case UInt8(ascii: "\""): fields.append((key, .string(try scanner.readString())))
            case UInt8(ascii: "t"), UInt8(ascii: "f"): fields.append((key, .bool(try scanner.readBool())))
            case UInt8(ascii: "n"):
                guard scanner.readNull() else { throw scanner.failure("unexpected character") }
                fields.append((key, .null))
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                nested = nested ?? key
                try scanner.skipValue()
            default: fields.append((key, .number(try scanner.readNumber())))
            }
        }
        if let nested { return .failure(WharfError(.invalidInput, "\(nested) must be a single value, not an object or array")) }
        return .success(fields)
    }
}
