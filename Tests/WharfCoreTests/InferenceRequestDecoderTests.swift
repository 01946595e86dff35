import Foundation
import Testing
import WharfCore

@Suite("OIP request decoding")
struct InferenceRequestDecoderTests {
    private func decode(_ json: String, binary: [UInt8] = [], headerLength: Int? = nil) throws(WharfError) -> InferenceRequest {
        let bytes = Array(json.utf8) + binary
        let length = headerLength ?? (binary.isEmpty ? nil : json.utf8.count)
        let result: Result<InferenceRequest, WharfError> = bytes.withUnsafeBytes { raw in
            Result { () throws(WharfError) in try InferenceRequestDecoder.decode(raw, headerLength: length) }
        }
        return try result.get()
    }

    private func failure(_ json: String, binary: [UInt8] = [], headerLength: Int? = nil) -> String {
        do {
            _ = try decode(json, binary: binary, headerLength: headerLength)
            return "decoded"
        } catch {
            #expect(error.code == .invalidInput)
            return error.message
        }
    }

    @Test func flatAndNestedDataAreTheSame() throws {
        let flat = try decode(#"{"id":"a1","inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6]}]}"#)
        let nested = try decode(#"{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP64","data":[[1,2,3],[4,5,6]]}]}"#)
        #expect(flat.id == "a1")
        #expect(flat.inputs[0].data == [1, 2, 3, 4, 5, 6])
        #expect(nested.inputs[0].data == flat.inputs[0].data)
        #expect(flat.inputs[0].shape == [2, 3])
        #expect(flat.inputs[0].datatype == .fp32)
    }

    @Test func numbersAreCorrectlyRounded() throws {
        let texts = ["0.1", "-2.5e-3", "123456789.123456789", "1e308", "4.9406564584124654e-324", "0.30000000000000004", "1E5", "-0", "17"]
        let request = try decode(#"{"inputs":[{"name":"x","shape":[\#(texts.count)],"datatype":"FP64","data":[\#(texts.joined(separator: ","))]}]}"#)
        #expect(request.inputs[0].data == texts.map { Double($0)! })
    }

    @Test func parametersOutputsAndUnknownKeys() throws {
        let request = try decode(#"""
            {"id": 7, "unknown": {"deep": [1, {"x": null}]}, "parameters": {"binary_data_output": true, "entity_id": "u1", "k": 3},
             "inputs": [{"name": "x", "shape": [1], "datatype": "BOOL", "data": [true]}],
             "outputs": [{"name": "probability", "parameters": {"binary_data": false}}]}
            """#)
        #expect(request.id == "7")
        #expect(request.parameters["binary_data_output"] == .bool(true))
        #expect(request.parameters["entity_id"] == .string("u1"))
        #expect(request.parameters["k"] == .number(3))
        #expect(request.inputs[0].data == [1])
        #expect(request.outputs?.map(\.name) == ["probability"])
        #expect(request.outputs?[0].parameters["binary_data"] == .bool(false))
    }

    @Test func binaryTensors() throws {
        var binary: [UInt8] = []
        for value in [Float(1.5), -2, 0.25] { withUnsafeBytes(of: value.bitPattern.littleEndian) { binary += $0 } }
        for value in [Int64(-3), 9] { withUnsafeBytes(of: value.littleEndian) { binary += $0 } }
        binary += [0x00, 0x3C]  // FP16 1.0
        binary += [0x80, 0x3F]  // BF16 1.0
        let json = #"""
            {"inputs":[{"name":"a","shape":[1,3],"datatype":"FP32","parameters":{"binary_data_size":12}},
            {"name":"b","shape":[2],"datatype":"INT64","parameters":{"binary_data_size":16}},
            {"name":"c","shape":[1],"datatype":"FP16","parameters":{"binary_data_size":2}},
            {"name":"d","shape":[1],"datatype":"BF16","parameters":{"binary_data_size":2}}]}
            """#
        let request = try decode(json, binary: binary)
        #expect(request.inputs.map(\.data) == [[1.5, -2, 0.25], [-3, 9], [1], [1]])
    }

    @Test func errorsNameTheProblem() {
        #expect(failure(#"{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3]}]}"#).contains("input 'x': shape [2, 3] holds 6 values, but data has 3"))
        #expect(failure(#"{"inputs":[{"name":"x","shape":[1000000000,1000000000],"datatype":"FP32","data":[1]}]}"#).contains("shape dimension 1000000000.0 must be a whole number"))
        #expect(failure(#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP99","data":[1]}]}"#).contains("unknown datatype \"FP99\""))
        #expect(failure(#"{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["a"]}]}"#).contains("BYTES"))
        #expect(failure(#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[300]}]}"#).contains("300.0 is not a INT8 value"))
        #expect(failure(#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#).contains("input 'x' has no data"))
        #expect(failure(#"{"inputs":[]}"#).contains("no inputs"))
        #expect(failure(#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}"#).contains("malformed request JSON"))
        #expect(failure(#"[1,2]"#).contains("must be a JSON object"))
        #expect(failure("").contains("must be a JSON object"))
        #expect(failure(#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]} trailing"#).contains("Inference-Header-Content-Length"))
        // A lying binary_data_size, a lying header length, truncated binary data.
        #expect(failure(#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#, binary: [0, 0, 0, 0]).contains("binary_data_size is 4 bytes, but shape [2] of FP32 takes 8"))
        #expect(failure(#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#, binary: [0, 0, 0, 0]).contains("declare 8 bytes of binary data, but 4 bytes follow"))
        #expect(failure(#"{"inputs":[]}"#, headerLength: 1_000_000).contains("Inference-Header-Content-Length is 1000000"))
        #expect(failure(String(repeating: "[", count: 100_000)).contains("must be a JSON object"))
        #expect(failure(#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":"# + String(repeating: "[", count: 1000) + "1" + String(repeating: "]", count: 1000) + "}]}").contains("deeper"))
    }

    /// Seeded random corruption of valid requests: decoding either succeeds or throws a
    /// WharfError; it never crashes.
    @Test func corruptedRequestsFailCleanly() {
        var binary: [UInt8] = []
        for value in 0..<30 { withUnsafeBytes(of: Float(value).bitPattern.littleEndian) { binary += $0 } }
        let json = Array(#"{"id":"r","parameters":{"binary_data_output":true},"inputs":[{"name":"input-0","shape":[1,30],"datatype":"FP32","parameters":{"binary_data_size":120}}],"outputs":[{"name":"probability"}]}"#.utf8)
        var random = SeededGenerator(seed: 99)
        for round in 0..<3000 {
            var bytes = json + binary
            var headerLength: Int? = json.count
            switch round % 4 {
            case 0: bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            case 1: bytes.removeLast(Int.random(in: 1...bytes.count, using: &random))
            case 2: headerLength = Int.random(in: -5...(bytes.count + 5), using: &random)
            default:
                let index = Int.random(in: 0..<json.count, using: &random)
                bytes[index] = Array("0123456789[]{},:\"-e.".utf8).randomElement(using: &random)!
            }
            _ = try? bytes.withUnsafeBytes { try InferenceRequestDecoder.decode($0, headerLength: headerLength) }
        }
    }
}

@Suite("JSON numbers are read exactly")
struct JSONNumberTests {
    /// Long printed doubles, as Python and numpy write them, take the extended fast path; each
    /// must read back as exactly the double the standard library reads.
    @Test func printedDoublesRoundTrip() throws {
        var random = SeededGenerator(seed: 5)
        var texts: [String] = []
        for _ in 0..<20_000 {
            let bits = random.next()
            let value = Double(bitPattern: (bits & 0x800F_FFFF_FFFF_FFFF) | (UInt64(1023 - 40 + Int(bits >> 52 & 63)) << 52))
            texts.append(value.description)
            texts.append(String(Float(value)))
            texts.append(String(format: "%.17g", value))
            texts.append(String(format: "%.19e", value))
        }
        texts += ["0.10000000149011612", "9007199254740993", "1.7976931348623157e308", "2.2250738585072014e-308", "123456789012345678", "0.30000000000000004"]
        let json = #"{"inputs":[{"name":"x","shape":[\#(texts.count)],"datatype":"FP64","data":[\#(texts.joined(separator: ","))]}]}"#
        let request = try Array(json.utf8).withUnsafeBytes { try InferenceRequestDecoder.decode($0, headerLength: nil) }
        var mismatches = 0
        for (text, value) in zip(texts, request.inputs[0].data) where Double(text)! != value {
            mismatches += 1
        }
        #expect(mismatches == 0)
    }
}

extension JSONNumberTests {
    @Test func digitRunsOfEveryLength() throws {
        var texts: [String] = []
        for length in 1...30 {
            let digits = String((0..<length).map { Character(String(($0 * 7 + 3) % 10)) })
            texts += [digits, "0.\(digits)", "\(digits).5", "-0.0000\(digits)", "1\(digits)e-20", "0.\(String(repeating: "0", count: length))1"]
        }
        let json = #"{"inputs":[{"name":"x","shape":[\#(texts.count)],"datatype":"FP64","data":[\#(texts.joined(separator: ","))]}]}"#
        let request = try Array(json.utf8).withUnsafeBytes { try InferenceRequestDecoder.decode($0, headerLength: nil) }
        for (text, value) in zip(texts, request.inputs[0].data) {
            #expect(Double(text)! == value, "\(text)")
        }
    }
}
