import Foundation
import Testing

/// The command line other issues and scripts rely on: `predict`, `inspect`, `bench`.
@Suite("wharf command line")
struct CommandLineTests {
    private func fixture(_ relative: String) -> String { WharfCLI.fixtures.appendingPathComponent(relative).path }

    private func numbers(_ csv: String) -> (header: String, rows: [[Double]]) {
        let lines = csv.split(whereSeparator: \.isNewline)
        guard let header = lines.first else { return ("", []) }
        return (String(header), lines.dropFirst().map { $0.split(separator: ",").map { Double($0) ?? .nan } })
    }

    @Test("predict writes the library's predictions with a header", arguments: [
        "xgb3_binary_logistic", "xgb3_multi_softprob_4class", "lgb_feature_names", "lgb_linear_tree", "linear_logreg_multinomial_3",
    ])
    func predictMatchesLibrary(name: String) throws {
        let model = try FileManager.default.contentsOfDirectory(atPath: fixture("models"))
            .first { $0.hasPrefix(name + ".") && !$0.hasSuffix(".csv") }!
        let result = try WharfCLI.run(["predict", "--model", fixture("models/\(model)"), "--input", fixture("models/\(name).input.csv")])
        #expect(result.status == 0, "\(result.stderr)")
        let got = numbers(result.stdout)
        let want = numbers(try String(contentsOfFile: fixture("models/\(name).expected.csv"), encoding: .utf8))
        #expect(got.header == want.header)
        #expect(got.rows.count == want.rows.count)
        for (gotRow, wantRow) in zip(got.rows, want.rows) {
            for (a, b) in zip(gotRow, wantRow) { #expect(abs(a - b) <= 1e-6) }
        }
    }

    @Test("predict --output writes a file; columns are matched by name in any order")
    func predictToFileByName() throws {
        // The LightGBM fixture has feature names: reverse the columns and add a label column.
        let original = try String(contentsOfFile: fixture("models/lgb_feature_names.input.csv"), encoding: .utf8)
        let rows = original.split(whereSeparator: \.isNewline).map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        let shuffled = rows.enumerated().map { index, cells in
            ([index == 0 ? "label" : "1"] + cells.reversed().map(String.init)).joined(separator: ",")
        }.joined(separator: "\n")
        let input = try WharfCLI.temporaryFile("reversed.csv", contents: shuffled + "\n")
        let output = input + ".out.csv"
        let result = try WharfCLI.run(["predict", "--model", fixture("models/lgb_feature_names.txt"), "--input", input, "--output", output])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.isEmpty)
        let got = numbers(try String(contentsOfFile: output, encoding: .utf8))
        let want = numbers(try String(contentsOfFile: fixture("models/lgb_feature_names.expected.csv"), encoding: .utf8))
        #expect(got.rows.count == want.rows.count)
        for (gotRow, wantRow) in zip(got.rows, want.rows) { #expect(abs(gotRow[0] - wantRow[0]) <= 1e-12) }
    }

    @Test("a bad cell names its line and column; exit status 2")
    func badCell() throws {
        let header = (0..<8).map { "f\($0)" }.joined(separator: ",")
        let good = (0..<8).map { _ in "0.5" }.joined(separator: ",")
        let bad = (0..<8).map { $0 == 3 ? "abc" : "1" }.joined(separator: ",")
        let input = try WharfCLI.temporaryFile("bad-cell.csv", contents: "\(header)\n\(good)\n\(bad)\n")
        let result = try WharfCLI.run(["predict", "--model", fixture("models/xgb3_binary_logistic.json"), "--input", input])
        #expect(result.status == 2)
        #expect(result.stderr.contains("line 3, column 4 (f3)"), "\(result.stderr)")
        #expect(result.stderr.contains("\"abc\" is not a number"))
    }

    @Test("a column-count mismatch names the line")
    func columnCountMismatch() throws {
        let header = (0..<8).map { "f\($0)" }.joined(separator: ",")
        let input = try WharfCLI.temporaryFile("short-row.csv", contents: "\(header)\n1,2,3\n")
        let result = try WharfCLI.run(["predict", "--model", fixture("models/xgb3_binary_logistic.json"), "--input", input])
        #expect(result.status == 2)
        #expect(result.stderr.contains("line 2: 3 columns, but the header has 8"), "\(result.stderr)")
    }

    @Test("a header without the model's features is refused")
    func wrongHeader() throws {
        let input = try WharfCLI.temporaryFile("wrong-header.csv", contents: "a,b\n1,2\n")
        let result = try WharfCLI.run(["predict", "--model", fixture("models/xgb3_binary_logistic.json"), "--input", input])
        #expect(result.status == 2)
        #expect(result.stderr.contains("2 columns but the model reads 8 features"), "\(result.stderr)")
    }

    @Test("empty and NaN cells are missing values")
    func missingCells() throws {
        let header = (0..<8).map { "f\($0)" }.joined(separator: ",")
        let input = try WharfCLI.temporaryFile("missing.csv", contents: "\(header)\n,,,,,,,\nNaN,NaN,NaN,NaN,NaN,NaN,NaN,NaN\n")
        let result = try WharfCLI.run(["predict", "--model", fixture("models/xgb3_binary_logistic.json"), "--input", input])
        #expect(result.status == 0, "\(result.stderr)")
        let rows = numbers(result.stdout).rows
        #expect(rows.count == 2)
        #expect(rows[0] == rows[1])
    }

    @Test("a hostile model file is an error, not a crash")
    func hostileModel() throws {
        let result = try WharfCLI.run(["inspect", "--model", fixture("hostile/xgb_cycle.json")])
        #expect(result.status == 2)
        #expect(result.stderr.contains("reached twice"))
        let missing = try WharfCLI.run(["inspect", "--model", "/nonexistent/model.json"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("cannot be read"))
    }

    @Test("inspect describes the model as JSON")
    func inspect() throws {
        let result = try WharfCLI.run(["inspect", "--model", fixture("models/lgb_multiclass_3.txt")])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["format"] as? String == "lightgbm_text")
        #expect(object["task"] as? String == "multiclass")
        #expect(object["classes"] as? [String] == ["0", "1", "2"])
        #expect((object["features"] as? Int).map { $0 > 0 } == true)
        #expect((object["trees"] as? Int).map { $0 > 0 } == true)
        #expect((object["depth"] as? Int).map { $0 > 0 } == true)
        #expect(object["feature_names"] is [String])
    }

    @Test("bench --json reports rows per second and microseconds per call")
    func benchJSON() throws {
        let result = try WharfCLI.run([
            "bench", "--model", fixture("models/xgb3_binary_logistic.json"), "--rows", "2000", "--batch", "100", "--threads", "2", "--json",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect((object["rows_per_second"] as? Double).map { $0 > 0 } == true)
        #expect((object["micros_per_call"] as? Double).map { $0 > 0 } == true)
        #expect(object["rows"] as? Int == 4000)
    }
}

@Suite("wharf serve command line")
struct ServeCommandLineTests {
    @Test("serve refuses bad arguments with a clear message", arguments: [
        ([String](), "give either --model NAME=FILE"),
        (["--model", "novalue"], "expected NAME=FILE"),
        (["--model", "a=/nonexistent/model.json"], "no such file"),
        (["--model-repository", "/nonexistent/dir"], "is not a directory"),
        (["--model", "a b=x.json"], "letters, digits"),
    ])
    func badArguments(arguments: [String], message: String) throws {
        let result = try WharfCLI.run(["serve"] + arguments + ["--port", "0"])
        #expect(result.status == 2)
        #expect(result.stderr.contains(message), "\(result.stderr)")
    }
}

extension ServeCommandLineTests {
    /// Every service refuses a port past 65535: NIO took 99999 modulo 65536 and listened on
    /// 34463, without a word.
    @Test("a port past 65535 is refused, not wrapped", arguments: [
        ["serve", "--model", "a=b.json"], ["gateway", "--admin-key", "0123456789abcdef"], ["registry", "--token", "t"], ["hub"],
        ["pipeline", "serve", "p.yaml"],
    ])
    func portsPast65535(arguments: [String]) throws {
        let result = try WharfCLI.run(arguments + ["--port", "99999"])
        #expect(result.status == 64)
        #expect(result.stderr.contains("--port is 99999: ports are 0 (a free one) … 65535"), "\(result.stderr)")
    }

    /// A service URL with a port past 65535 is refused with a message: async-http-client trapped
    /// on it (an IP address and port 99999), and every command given one crashed.
    @Test("a service URL with a port past 65535 is an error, not a crash", arguments: [
        (["models", "list", "--registry", "http://127.0.0.1:99999"], "the registry URL \"http://127.0.0.1:99999\" has port"),
        (["deploy", "status", "m", "--gateway", "http://127.0.0.1:99999", "--key", "k"], "the gateway URL \"http://127.0.0.1:99999\" has port"),
        (["serve", "--registry", "http://127.0.0.1:99999", "--model", "m@production", "--port", "0"], "--registry \"http://127.0.0.1:99999\" has port"),
        (["serve", "--hub", "http://127.0.0.1:99999", "--model", "m=x.json", "--port", "0"], "--hub \"http://127.0.0.1:99999\" has port"),
        (["dataset", "build", "--view", "v", "--labels", "x.csv", "--out", "y.csv", "--hub", "http://127.0.0.1:99999"], "the hub URL \"http://127.0.0.1:99999\" has port"),
        (["deploy", "rollout", "m", "--version", "2", "--replicas", "http://127.0.0.1:99999", "--gateway", "http://127.0.0.1:1", "--registry", "http://127.0.0.1:1"],
         "candidate replicas: replica \"http://127.0.0.1:99999\" has port"),
    ])
    func servicePortsPast65535(arguments: [String], message: String) throws {
        let result = try WharfCLI.run(arguments)
        #expect(result.status == 2 || result.status == 64, "exit status \(result.status)")
        #expect(result.stderr.contains(message), "\(result.stderr)")
    }

    /// The real process: it becomes ready, answers, and exits cleanly on SIGTERM.
    @Test("serve starts, answers, and exits 0 on SIGTERM")
    func serveLifecycle() async throws {
        let port = WharfCLI.ports(1)
        let model = WharfCLI.fixtures.appendingPathComponent("models/xgb3_binary_logistic.json").path
        let process = Process()
        process.executableURL = WharfCLI.executable
        process.arguments = ["serve", "--model", "m=\(model)", "--port", String(port), "--log-format", "json"]
        let logs = Pipe()
        process.standardError = logs
        try process.run()
        defer { if process.isRunning { process.interrupt() } }
        let ready = try await WharfCLI.waitForStatus("http://127.0.0.1:\(port)/v2/health/ready", status: 200)
        #expect(ready)
        let (body, status) = try await WharfCLI.post(
            "http://127.0.0.1:\(port)/v2/models/m/infer",
            body: #"{"inputs":[{"name":"x","shape":[1,8],"datatype":"FP32","data":[1,2,3,4,5,6,7,8]}]}"#)
        #expect(status == 200)
        #expect(body.contains("\"probability\""))
        process.terminate()
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning, Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!process.isRunning)
        #expect(process.terminationStatus == 0)
        // --log-format json: every line is one JSON object with a message.
        let lines = String(decoding: logs.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["message"] is String, "\(line)")
        }
        #expect(lines.contains { $0.contains("model loaded") })
    }

    @Test("the gateway refuses an empty or short admin key, and a number of threads or a shutdown timeout out of range")
    func gatewayAdminKeyLength() throws {
        let empty = try WharfCLI.run(["gateway", "--port", "0", "--admin-key", ""])
        #expect(empty.status == 2)
        #expect(empty.stderr.contains("the admin key (--admin-key or WHARF_GATEWAY_ADMIN_KEY) is empty: give one of at least 16"), "\(empty.stderr)")
        let short = try WharfCLI.run(["gateway", "--port", "0", "--admin-key", "secret"])
        #expect(short.status == 2)
        #expect(short.stderr.contains("is 6 bytes long"), "\(short.stderr)")
        for threads in ["0", "257"] {
            let refused = try WharfCLI.run(["gateway", "--port", "0", "--admin-key", "0123456789abcdef", "--forwarding-threads", threads])
            #expect(refused.status == 2 && refused.stderr.contains("--forwarding-threads must be 1…256"), "\(refused.stderr)")
        }
        for seconds in ["0", "3601", "nan"] {
            let refused = try WharfCLI.run(["gateway", "--port", "0", "--admin-key", "0123456789abcdef", "--shutdown-timeout-seconds", seconds])
            #expect(refused.status == 2 && refused.stderr.contains("--shutdown-timeout-seconds must be 0.01 … 3600"), "\(refused.stderr)")
        }
    }

    @Test("deploy set --spec: the file's model must be the one named, and no flag is ignored")
    func deploySpecFile() throws {
        let spec = try WharfCLI.temporaryFile("churn-spec.json", contents: #"{"model":"churn","targets":[{"version":"1","weight":100,"replicas":["http://127.0.0.1:1"]}]}"#)
        // No gateway listens there: each is refused before anything is sent.
        let gateway = ["--gateway", "http://127.0.0.1:1", "--key", "unused-key-0000000"]
        let other = try WharfCLI.run(["deploy", "set", "fraud", "--spec", spec] + gateway)
        #expect(other.status == 2)
        #expect(other.stderr.contains("is the spec of model churn, not fraud"), "\(other.stderr)")
        let mixed = try WharfCLI.run(["deploy", "set", "churn", "--spec", spec, "--retries", "3"] + gateway)
        #expect(mixed.status == 2)
        #expect(mixed.stderr.contains("--spec holds the whole deployment"), "\(mixed.stderr)")
        let twice = try WharfCLI.run(["deploy", "set", "churn", "--target", "1=100@http://127.0.0.1:1,http://127.0.0.1:1/"] + gateway)
        #expect(twice.status == 2)
        #expect(twice.stderr.contains("is listed twice"), "\(twice.stderr)")
    }
}
