import Foundation
import Testing
import WharfBus
import WharfCore

/// The NATS protocol parser on byte streams, cut at every possible place.
@Suite("NATS protocol parser")
struct NATSParserTests {
    static let stream: [UInt8] = Array((
        "INFO {\"server_id\":\"x\",\"version\":\"2.9.10\",\"headers\":true,\"max_payload\":1048576}\r\n"
        + "+OK\r\n"
        + "PING\r\n"
        + "MSG orders.new 7 11\r\nhello world\r\n"
        + "MSG orders.new 7 _INBOX.abc 0\r\n\r\n"
        + "HMSG $JS.ACK 9 _INBOX.r 43 48\r\nNATS/1.0\r\nNats-Msg-Id: 17\r\nX-Shard:  3 \r\n\r\nhello\r\n"
        + "HMSG _INBOX.r 9 28 28\r\nNATS/1.0 404 No Messages\r\n\r\n\r\n"
        + "MSG bin 1 4\r\n\r\n\r\n\r\n"
        + "PONG\r\n"
        + "-ERR 'Stale Connection'\r\n"
    ).utf8)

    static let expected: [NATSServerOperation] = [
        .info(Array("{\"server_id\":\"x\",\"version\":\"2.9.10\",\"headers\":true,\"max_payload\":1048576}".utf8)),
        .ok,
        .ping,
        .message(NATSMessage(subject: "orders.new", subscription: "7", replyTo: nil, headers: [], status: nil, payload: Array("hello world".utf8))),
        .message(NATSMessage(subject: "orders.new", subscription: "7", replyTo: "_INBOX.abc", headers: [], status: nil, payload: [])),
        .message(NATSMessage(subject: "$JS.ACK", subscription: "9", replyTo: "_INBOX.r", headers: [("Nats-Msg-Id", "17"), ("X-Shard", "3")], status: nil, payload: Array("hello".utf8))),
        .message(NATSMessage(subject: "_INBOX.r", subscription: "9", replyTo: nil, headers: [], status: 404, payload: [])),
        .message(NATSMessage(subject: "bin", subscription: "1", replyTo: nil, headers: [], status: nil, payload: [0x0D, 0x0A, 0x0D, 0x0A])),
        .pong,
        .error("Stale Connection"),
    ]

    @Test func aWholeStreamParses() throws {
        var parser = NATSParser()
        #expect(try parser.feed(Self.stream) == Self.expected)
    }

    /// Split at every byte, and in random pieces: the same operations.
    @Test func anySplitOfTheStreamParsesTheSame() throws {
        for cut in 0...Self.stream.count {
            var parser = NATSParser()
            let operations = try parser.feed(Self.stream[..<cut]) + parser.feed(Self.stream[cut...])
            #expect(operations == Self.expected, "cut at \(cut)")
        }
        var parser = NATSParser()
        var operations: [NATSServerOperation] = []
        for byte in Self.stream { operations += try parser.feed([byte]) }
        #expect(operations == Self.expected)
        var random = SeededGenerator(seed: 9)
        for _ in 0..<200 {
            var parser = NATSParser()
            var operations: [NATSServerOperation] = []
            var index = 0
            while index < Self.stream.count {
                let size = Int(random.next() % 17) + 1
                operations += try parser.feed(Self.stream[index..<min(Self.stream.count, index + size)])
                index += size
            }
            #expect(operations == Self.expected)
        }
    }

    @Test func protocolViolationsAreErrors() {
        let bad = [
            "HELLO\r\n",
            "MSG a 1 -3\r\n",
            "MSG a\r\n",
            "MSG a 1 2\r\nabXY",
            "HMSG a 1 10 5\r\n",
            "HMSG a 1 5 5\r\nXXXXX\r\n",
            "MSG a 1 99999999999\r\n",
            String(repeating: "x", count: 5000),
        ]
        for text in bad {
            var parser = NATSParser(maxPayload: 1 << 20)
            #expect(throws: NATSParser.ProtocolError.self, "\(text.prefix(30))") { try parser.feed(Array(text.utf8)) }
        }
    }

    @Test func clientOperationsAreEncoded() throws {
        #expect(String(decoding: try NATSClientOperation.publish(subject: "a.b", payload: Array("hi".utf8)), as: UTF8.self) == "PUB a.b 2\r\nhi\r\n")
        let published = try NATSClientOperation.publish(subject: "a.b", replyTo: "_INBOX.1", headers: [("Nats-Msg-Id", "7")], payload: Array("hi".utf8))
        #expect(String(decoding: published, as: UTF8.self) == "HPUB a.b _INBOX.1 28 30\r\nNATS/1.0\r\nNats-Msg-Id: 7\r\n\r\nhi\r\n")
        // What the client writes, the parser (as a server would relay it) reads back.
        var parser = NATSParser()
        let firstLineEnd = try #require(published.firstIndex(of: 0x0A))
        let relayed = "HMSG a.b 1 _INBOX.1 28 30\r\n" + String(decoding: published[(firstLineEnd + 1)...], as: UTF8.self)
        let operations = try parser.feed(Array(relayed.utf8))
        #expect(operations == [.message(NATSMessage(subject: "a.b", subscription: "1", replyTo: "_INBOX.1", headers: [("Nats-Msg-Id", "7")], status: nil, payload: Array("hi".utf8)))])
        #expect(String(decoding: try NATSClientOperation.subscribe(subject: "$JS.API.>", subscription: "4"), as: UTF8.self) == "SUB $JS.API.> 4\r\n")
        for bad in ["", "a b", "a..b", ".a", "a.", "a\r\n"] {
            #expect(throws: WharfError.self) { try NATSClientOperation.publish(subject: bad, payload: []) }
        }
        #expect(String(decoding: NATSClientOperation.connect(name: "wharf"), as: UTF8.self).hasPrefix("CONNECT {\"verbose\":false"))
    }
}
