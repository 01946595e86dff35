import Foundation
import WharfCore

/// The JetStream API requests and answers the bus uses (JSON over `$JS.API.*` request/reply;
/// https://docs.nats.io/reference/reference-protocols/nats_api_reference).
enum JetStreamAPI {
    struct Empty: Codable {}

    struct Paging: Encodable {
        var offset: Int
    }

    /// An error answer: `{"error": {"code": 404, "err_code": 10059, "description": "stream not found"}}`.
    struct Failure: Error, Decodable, CustomStringConvertible {
        var code: Int
        var errorCode: Int?
        var detail: String?

        enum CodingKeys: String, CodingKey {
            case code
            case errorCode = "err_code"
            case detail = "description"
        }

        var description: String { "JetStream error \(code)\(errorCode.map { "/\($0)" } ?? ""): \(detail ?? "no description")" }
    }

    private struct FailureEnvelope: Decodable {
        var error: Failure?
    }

    static func failure(in payload: [UInt8]) throws -> Failure? {
        guard payload.count < 64 << 10, payload.containsError else { return nil }
        return try JSONDecoder().decode(FailureEnvelope.self, from: Data(payload)).error
    }

    struct StreamConfig: Codable {
        var name: String
        var description: String?
        var subjects: [String]
        var retention = "limits"
        var storage = "file"
        var discard = "old"
        var numReplicas = 1
        var allowDirect = true

        init(name: String, description: String?, subjects: [String]) {
            self.name = name
            self.description = description
            self.subjects = subjects
        }

        enum CodingKeys: String, CodingKey {
            case name, description, subjects, retention, storage, discard
            case numReplicas = "num_replicas"
            case allowDirect = "allow_direct"
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decode(String.self, forKey: .name)
            description = try container.decodeIfPresent(String.self, forKey: .description)
            subjects = try container.decodeIfPresent([String].self, forKey: .subjects) ?? []
        }
    }

    struct StreamState: Decodable {
        var messages: Int
        var firstSeq: Int64
        var lastSeq: Int64

        enum CodingKeys: String, CodingKey {
            case messages
            case firstSeq = "first_seq"
            case lastSeq = "last_seq"
        }
    }

    struct StreamInfo: Decodable {
        var config: StreamConfig
        var state: StreamState
    }

    struct StreamList: Decodable {
        var total: Int
        var streams: [StreamInfo]?
    }

    struct Purge: Encodable {
        var seq: Int64?
        var keep: Int?
    }

    struct DeleteResponse: Decodable {
        var success: Bool
    }

    struct PurgeResponse: Decodable {
        var purged: Int
    }

    struct ConsumerCreate: Encodable {
        var streamName: String
        var config: ConsumerConfig

        enum CodingKeys: String, CodingKey {
            case streamName = "stream_name"
            case config
        }
    }

    struct ConsumerConfig: Encodable {
        var durableName: String
        var deliverPolicy = "all"
        var ackPolicy = "explicit"
        var ackWaitNanoseconds: Int64
        var maxDeliver = -1
        var maxAckPending = 65_536
        var filterSubject: String
        var replayPolicy = "instant"

        init(durableName: String, ackWaitNanoseconds: Int64, filterSubject: String) {
            self.durableName = durableName
            self.ackWaitNanoseconds = ackWaitNanoseconds
            self.filterSubject = filterSubject
        }

        enum CodingKeys: String, CodingKey {
            case durableName = "durable_name"
            case deliverPolicy = "deliver_policy"
            case ackPolicy = "ack_policy"
            case ackWaitNanoseconds = "ack_wait"
            case maxDeliver = "max_deliver"
            case maxAckPending = "max_ack_pending"
            case filterSubject = "filter_subject"
            case replayPolicy = "replay_policy"
        }
    }

    struct ConsumerInfo: Decodable {
        struct Floor: Decodable {
            var streamSeq: Int64
            enum CodingKeys: String, CodingKey { case streamSeq = "stream_seq" }
        }

        var ackFloor: Floor
        enum CodingKeys: String, CodingKey { case ackFloor = "ack_floor" }
    }

    /// The sequence of a publish acknowledgement `{"stream":"S","seq":N}` (or nil when it is an
    /// error), read without a JSON decoder: a batch has thousands of them.
    static func publishAckSequence(_ payload: [UInt8]) -> Int64? {
        guard !payload.containsError else { return nil }
        let marker = Array(#""seq":"#.utf8)
        guard payload.count >= marker.count else { return nil }
        for start in 0...(payload.count - marker.count) where payload[start] == marker[0] && Array(payload[start..<(start + marker.count)]) == marker {
            var index = start + marker.count
            while index < payload.count, payload[index] == UInt8(ascii: " ") { index += 1 }
            var value: Int64 = 0
            var digits = 0
            while index < payload.count, payload[index] >= 0x30, payload[index] <= 0x39, digits < 18 {
                value = value * 10 + Int64(payload[index] - 0x30)
                digits += 1
                index += 1
            }
            return digits > 0 ? value : nil
        }
        return nil
    }

    /// The stream sequence in a delivery's ack subject:
    /// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`
    /// (and the newer form with a domain and account hash first and a random token last).
    static func streamSequence(ackSubject: String) -> Int64? {
        let tokens = ackSubject.split(separator: ".", omittingEmptySubsequences: false)
        guard tokens.count >= 9, tokens[0] == "$JS", tokens[1] == "ACK" else { return nil }
        return Int64(tokens[tokens.count == 9 ? 5 : 7])
    }
}

private extension [UInt8] {
    var containsError: Bool {
        let marker = Array(#""error""#.utf8)
        guard count >= marker.count else { return false }
        for start in 0...(count - marker.count) where self[start] == marker[0] && self[start + 1] == marker[1] {
            if Array(self[start..<(start + marker.count)]) == marker { return true }
        }
        return false
    }
}
