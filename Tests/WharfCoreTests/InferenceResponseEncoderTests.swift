import Testing
@testable import WharfCore

@Suite("OIP response encoding")
struct InferenceResponseEncoderTests {
    @Test func jsonResponse() {
        let response = InferenceResponse(
            modelName: "demo", modelVersion: "3", id: "req-\"1\"",
            outputs: [
                ResponseOutput(name: "probability", shape: [2], datatype: .fp64, data: [0.25, 0.1]),
                ResponseOutput(name: "label", shape: [2], datatype: .int64, data: [0, 1]),
            ])
        let encoded = InferenceResponseEncoder.encode(response)
        #expect(encoded.headerLength == nil)
        #expect(String(decoding: encoded.body, as: UTF8.self) == #"{"model_name":"demo","model_version":"3","id":"req-\"1\"","outputs":[{"name":"probability","datatype":"FP64","shape":[2],"data":[0.25,0.1]},{"name":"label","datatype":"INT64","shape":[2],"data":[0,1]}]}"#)
    }

    @Test func binaryOutputsFollowTheHeader() {
        let response = InferenceResponse(
            modelName: "demo", modelVersion: nil, id: nil,
            outputs: [
                ResponseOutput(name: "probability", shape: [1], datatype: .fp64, data: [0.5], binary: true),
                ResponseOutput(name: "label", shape: [1], datatype: .int64, data: [1]),
            ])
        let encoded = InferenceResponseEncoder.encode(response)
        let length = try! #require(encoded.headerLength)
        let header = String(decoding: encoded.body[..<length], as: UTF8.self)
        #expect(header.contains(#""parameters":{"binary_data_size":8}"#))
        #expect(!header.contains("model_version"))
        #expect(Array(encoded.body[length...]) == withUnsafeBytes(of: (0.5).bitPattern.littleEndian) { Array($0) })
    }

    /// Integers are written digit by digit in place; every other finite number keeps Swift's
    /// shortest round-trip text.
    @Test func numbersAreWrittenExactly() {
        func text(_ write: (inout JSONWriter) -> Void) -> String {
            var writer = JSONWriter()
            write(&writer)
            return String(decoding: writer.bytes, as: UTF8.self)
        }
        for value in [0, 7, 10, 99, -1, -10, 123_456_789_012_345, Int.max, Int.min] {
            #expect(text { $0.integer(value) } == String(value))
        }
        let numbers: [(Double, String)] = [
            (0, "0"), (-0.0, "0"), (3, "3"), (-42, "-42"), (999_999_999_999_999, "999999999999999"),
            (1e15, "1000000000000000.0"), (0.5, "0.5"), (0.9765836000442505, "0.9765836000442505"), (.nan, "null"), (.infinity, "null"),
        ]
        for (value, expected) in numbers {
            #expect(text { $0.number(value) } == expected, "\(value)")
        }
        // Written in place, the text is `description`'s, and FP32 outputs `Float`'s.
        var random = SeededGenerator(seed: 7)
        for _ in 0..<2000 {
            let value = Double(bitPattern: random.next() & 0x7FEF_FFFF_FFFF_FFFF) * (Bool.random(using: &random) ? 1 : -1)
            guard value != value.rounded() || abs(value) >= 1e15 else { continue }
            #expect(text { $0.number(value) } == value.description)
            #expect(text { $0.numbers([value], as: .fp32) } == (Float(value).isFinite ? Float(value).description : "null"))
        }
    }
}
