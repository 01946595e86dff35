import Testing
import WharfCore

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
}
