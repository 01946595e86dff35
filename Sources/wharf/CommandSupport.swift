import ArgumentParser
import Foundation
import WharfCore
import WharfRuntime

/// Runs a command body, turning a ``WharfError`` into a message on standard error and exit
/// status 2 (the status scripts rely on for "bad input or model").
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as WharfError {
        FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
        throw ExitCode(2)
    }
}

func loadModel(_ path: String) throws(WharfError) -> Model {
    try ModelLoader.load(path: path)
}

func readFile(_ path: String) throws(WharfError) -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw WharfError(.notFound, "cannot read \(path): no such file or no permission")
    }
    return [UInt8](data)
}

func writeStandardOutput(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

func encodeJSON(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
}

/// A port a service listens on: 0 (a free one) or 1…65535. Beyond, NIO would take the number
/// modulo 65536 and listen somewhere else (99999 became 34463) without a word.
func checkListenPort(_ port: Int, option: String = "--port") throws {
    guard (0...65535).contains(port) else { throw ValidationError("\(option) is \(port): ports are 0 (a free one) … 65535") }
}

/// A service URL given on the command line, checked before anything starts (a usage error).
func checkServiceURL(_ url: String?, option: String) throws {
    guard let url else { return }
    do {
        try ServiceURL.check(url, option)
    } catch {
        throw ValidationError(error.message)
    }
}
