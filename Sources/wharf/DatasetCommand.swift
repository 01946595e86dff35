import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import WharfClient
import WharfCore
import WharfRuntime

struct DatasetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset",
        abstract: "Build training sets from the feature log.",
        subcommands: [Build.self]
    )

    struct Build: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Join labels with a view's features as of each label's time (point in time: never a later value).",
            discussion: """
                Each row of --labels names an entity (--entity-column) and a time (--time-column, RFC 3339 \
                or seconds since 1970). The output keeps the label file's columns and adds one column per \
                feature of the view: the latest value observed at or before that row's time, within the \
                view's TTL; empty when there is none. With --labels-stream the labels are events of a hub \
                stream instead (labels arriving in real time): each event gives a row of its entity, its \
                time and its --label field.
                """
        )
        @Option(help: "The hub's URL (WHARF_HUB_URL; default http://127.0.0.1:8082).") var hub: String?
        @Option(help: "The feature view.") var view: String
        @Option(help: "The labels CSV.") var labels: String?
        @Option(help: "A hub stream whose events are the labels (instead of --labels).") var labelsStream: String?
        @Option(help: "With --labels-stream: the event field that is the label.") var label: String?
        @Option(help: "The column naming the entity.") var entityColumn = "entity"
        @Option(help: "The column holding each label's time.") var timeColumn = "time"
        @Option(help: "Where to write the training set.") var out: String

        struct Answer: Decodable {
            var rows: [Row]
            struct Row: Decodable { var features: [String: FeatureValueText] }
        }

        /// A feature value as the hub writes it, kept as text for the CSV.
        struct FeatureValueText: Decodable {
            var text: String
            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let flag = try? container.decode(Bool.self) { text = flag ? "1" : "0" }
                else if let number = try? container.decode(Double.self) { text = number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number) }
                else { text = try container.decode(String.self) }
            }
        }

        func run() async throws {
            try await reportingErrors {
                try RegistryName.check(view, kind: "view")
                let base = try ServiceURL.check(hub ?? ProcessInfo.processInfo.environment["WHARF_HUB_URL"] ?? "http://127.0.0.1:8082", "the hub URL")
                let records: [[String]]
                switch (labels, labelsStream, label) {
                case (let file?, nil, nil):
                    records = try CSVRecords.read(try readFile(file))
                case (nil, let stream?, let field?):
                    records = try await labelRecords(base, stream: stream, field: field)
                default:
                    throw WharfError(.invalidInput, "give --labels FILE, or --labels-stream STREAM with --label FIELD")
                }
                let header = records[0]
                guard let entityIndex = header.firstIndex(of: entityColumn), let timeIndex = header.firstIndex(of: timeColumn) else {
                    throw WharfError(.invalidInput, "\(labels ?? "the labels") needs the columns \(entityColumn) and \(timeColumn) (it has \(header.joined(separator: ", ")))")
                }
                var features: [String]?
                var output = ""
                for chunk in stride(from: 1, to: records.count, by: 10_000) {
                    let rows = records[chunk..<min(records.count, chunk + 10_000)]
                    let body = try JSONSerialization.data(withJSONObject: ["rows": rows.map { row -> [String: Any] in
                        let time = row[timeIndex]
                        return ["entity": row[entityIndex], "time": Double(time).map { $0 as Any } ?? time]
                    }])
                    var request = HTTPClientRequest(url: "\(base)/v1/features/\(view)/lookup")
                    request.method = .POST
                    request.headers.add(name: "content-type", value: "application/json")
                    request.body = .bytes(ByteBuffer(bytes: body))
                    let response: HTTPClientResponse
                    do {
                        response = try await RegistryClient.failFast.execute(request, timeout: .seconds(300))
                    } catch {
                        throw WharfError(.unavailable, "cannot reach the hub at \(base): \(error)")
                    }
                    let bytes = try await response.body.collect(upTo: 512 << 20)
                    guard response.status.code == 200 else { throw RegistryClient.failure(response.status, bytes) }
                    let answer = try JSONDecoder().decode(Answer.self, from: Data(bytes.readableBytesView))
                    if features == nil {
                        features = try await viewFeatures(base)
                        output = (header + features!).map(CSVRecords.escape).joined(separator: ",") + "\n"
                    }
                    for (row, found) in zip(rows, answer.rows) {
                        let values = features!.map { found.features[$0]?.text ?? "" }
                        output += (row + values).map(CSVRecords.escape).joined(separator: ",") + "\n"
                    }
                }
                if features == nil { output = header.map(CSVRecords.escape).joined(separator: ",") + "\n" }
                try writeFileAtomically(out, Array(output.utf8))
                writeStandardOutput("\(records.count - 1) rows with \(features?.count ?? 0) features → \(out)\n")
            }
        }

        /// The whole stream, page by page, as label rows: entity, time (seconds), the label.
        private func labelRecords(_ base: String, stream: String, field: String) async throws -> [[String]] {
            struct Page: Decodable {
                struct Event: Decodable { var entity: String; var seconds: Double; var event: String }
                var events: [Event]
                var next: Int64
            }
            try RegistryName.check(stream, kind: "stream")
            var rows = [[entityColumn, timeColumn, field]]
            var from: Int64 = 1
            while true {
                let response: HTTPClientResponse
                do {
                    response = try await RegistryClient.failFast.execute(
                        HTTPClientRequest(url: "\(base)/v1/streams/\(stream)/events?from=\(from)&limit=10000"), timeout: .seconds(60))
                } catch {
                    throw WharfError(.unavailable, "cannot reach the hub at \(base): \(error)")
                }
                let bytes = try await response.body.collect(upTo: 256 << 20)
                guard response.status.code == 200 else { throw RegistryClient.failure(response.status, bytes) }
                let page = try JSONDecoder().decode(Page.self, from: Data(bytes.readableBytesView))
                for event in page.events {
                    guard let object = try JSONSerialization.jsonObject(with: Data(event.event.utf8)) as? [String: Any], let value = object[field] else {
                        throw WharfError(.invalidInput, "stream \(stream): an event of \(event.entity) has no field \(field)")
                    }
                    let text: String = switch value {
                    case let flag as Bool: flag ? "1" : "0"
                    case let number as NSNumber: number.stringValue
                    default: "\(value)"
                    }
                    rows.append([event.entity, String(event.seconds), text])
                }
                if page.events.isEmpty { break }
                from = page.next
            }
            guard rows.count > 1 else { throw WharfError(.invalidInput, "stream \(stream) has no labels yet") }
            return rows
        }

        private func viewFeatures(_ base: String) async throws -> [String] {
            struct Views: Decodable {
                struct View: Decodable { var name: String; var features: [String] }
                var views: [View]
            }
            let response = try await RegistryClient.failFast.execute(HTTPClientRequest(url: "\(base)/v1/views"), timeout: .seconds(30))
            let bytes = try await response.body.collect(upTo: 16 << 20)
            guard let found = try JSONDecoder().decode(Views.self, from: Data(bytes.readableBytesView)).views.first(where: { $0.name == view }) else {
                throw WharfError(.notFound, "the hub has no view \(view)")
            }
            return found.features
        }
    }
}
