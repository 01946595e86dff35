import Foundation
#if canImport(Glibc)
import Glibc
#endif
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

    /// FP32 data holds float32 values, as numpy and the binary extension give them: each number
    /// becomes the Float nearest to its nearest double, wherever "datatype" comes in the input.
    @Test func fp32DataIsRoundedToFloat() throws {
        let texts = ["0.1", "-2.5e-3", "123456789.123456789", "3.4028234e38", "1e-40", "16777217", "-0", "0.30157917737960815"]
        let data = texts.joined(separator: ",")
        let first = try decode(#"{"inputs":[{"name":"x","shape":[\#(texts.count)],"datatype":"FP32","data":[\#(data)]}]}"#)
        let last = try decode(#"{"inputs":[{"name":"x","shape":[\#(texts.count)],"data":[\#(data)],"datatype":"FP32"}]}"#)
        let fp64 = try decode(#"{"inputs":[{"name":"x","shape":[\#(texts.count)],"datatype":"FP64","data":[\#(data)]}]}"#)
        let floats = texts.map { Double(Float(Double($0)!)).bitPattern }
        #expect(first.inputs[0].data.map(\.bitPattern) == floats)
        #expect(last.inputs[0].data.map(\.bitPattern) == floats)
        #expect(fp64.inputs[0].data.map(\.bitPattern) == texts.map { Double($0)!.bitPattern })
        #expect(first.inputs[0].data[0] != 0.1)
    }

    @Test func fp32BeyondFloatRangeIsAnError() throws {
        #expect(failure(#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,-1e39]}]}"#).contains("-1e+39 is beyond the range of FP32"))
        #expect(failure(#"{"inputs":[{"name":"x","shape":[2],"data":[1e39,1],"datatype":"FP32"}]}"#).contains("input 'x': 1e+39 is beyond the range of FP32 (±3.4028234663852886e+38)"))
        #expect(try decode(#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP64","data":[1e39]}]}"#).inputs[0].data == [1e39])
    }

    /// FP16 and BF16 data likewise hold values of their types, rounded to nearest (ties to
    /// even) from the number, as the binary extension carries them.
    @Test func fp16AndBF16DataAreRoundedToTheirTypes() throws {
        func decoded(_ texts: [String], _ datatype: String) throws -> [UInt64] {
            let request = try decode(#"{"inputs":[{"name":"x","shape":[\#(texts.count)],"datatype":"\#(datatype)","data":[\#(texts.joined(separator: ","))]}]}"#)
            return request.inputs[0].data.map(\.bitPattern)
        }
        // BF16 reference: ties-to-even on a float's top 16 bits, for numbers a float holds exactly.
        func bfloat(_ value: Float) -> Double {
            let bits = value.bitPattern
            return Double(Float(bitPattern: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000))
        }
        let bf16 = ["1", "1.00390625", "1.01171875", "-2.5", "3e38", "1e-39", "-0", "0.1"]
        #expect(try decoded(bf16, "BF16") == bf16.map { bfloat(Float($0)!).bitPattern })
        #expect(try decoded(["0.1", "65504", "65519", "-2.5e-3", "1e-8", "6e-8", "1e-5", "-0", "3.14159"], "FP16")
            == [0x1.998p-4, 65_504, 65_504, -0x1.47cp-9, 0, 0x1p-24, 0x1.5p-17, -0.0, 0x1.92p1].map(\.bitPattern))  // numpy.float16 of each
        #expect(failure(#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[65520]}]}"#).contains("65520.0 is beyond the range of FP16 (±65504.0)"))
        #expect(failure(#"{"inputs":[{"name":"x","shape":[1],"data":[-3.4e38],"datatype":"BF16"}]}"#).contains("is beyond the range of BF16"))
        // Past a double's range (read as infinity): beyond every floating-point type, both orders
        // of datatype and data.
        for type in ["FP16", "BF16", "FP32", "FP64"] {
            #expect(failure(#"{"inputs":[{"name":"x","shape":[2],"datatype":"\#(type)","data":[1,1e400]}]}"#).contains("a number is beyond the range of \(type)"), "\(type)")
            #expect(failure(#"{"inputs":[{"name":"x","shape":[2],"data":[-1e400,1],"datatype":"\#(type)"}]}"#).contains("a number is beyond the range of \(type)"), "\(type)")
        }
    }

    /// Runs of numbers are read straight through only after a comma and at most one space;
    /// every other spacing and every fault goes through the token loop, with the same result.
    @Test func numberRunsWithAnySpacing() throws {
        let data = "[[1,2, 3,  4,\n5,-6, -7,0.5e1 ,8], [9,-1E-2,\t10, 11 ,12,13,14,15,16]]"
        let request = try decode(#"{"inputs":[{"name":"x","shape":[2,9],"datatype":"FP64","data":\#(data)}]}"#)
        #expect(request.inputs[0].data == [1, 2, 3, 4, 5, -6, -7, 5, 8, 9, -0.01, 10, 11, 12, 13, 14, 15, 16])
        let faults = [
            ("[1, ,2]", "unexpected ','"), ("[1,-]", "expected a number"), ("[1, 2 3]", "expected ',' or ']'"),
            ("[1,2,]", "unexpected ']'"), ("[1, -x]", "expected a number"), ("[1,2", "expected ',' or ']'"),
        ]
        for (data, message) in faults {
            let text = failure(#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP64","data":\#(data)}]}"#)
            #expect(text.contains(message), "\(data): \(text)")
        }
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
        #expect(failure(#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[300]}]}"#).contains("300.0 is not an INT8 value"))
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
        // The same for JSON data of each narrower floating-point type (rounded after reading).
        for datatype in ["FP32", "FP16", "BF16"] {
            let json = Array(#"{"inputs":[{"name":"x","shape":[2,3],"datatype":"\#(datatype)","data":[[1.5,-2e-3,65504],[3e38,null,0.1]]}]}"#.utf8)
            for _ in 0..<1000 {
                var bytes = json
                let index = Int.random(in: 0..<bytes.count, using: &random)
                bytes[index] = Array("0123456789[]{},:\"-e.E+".utf8).randomElement(using: &random)!
                _ = try? bytes.withUnsafeBytes { try InferenceRequestDecoder.decode($0, headerLength: nil) }
            }
        }
    }
}

@Suite("JSON numbers are read exactly")
struct JSONNumberTests {
    /// Long printed doubles, as Python and numpy write them, take the Eisel–Lemire path (and,
    /// this request being large, the chunked reader); each must read back as exactly the double
    /// the standard library reads.
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

extension JSONNumberTests {
    private func decodeNumbers(_ texts: [String]) throws -> [Double] {
        let json = #"{"inputs":[{"name":"x","shape":[\#(texts.count)],"datatype":"FP64","data":[\#(texts.joined(separator: ","))]}]}"#
        return try Array(json.utf8).withUnsafeBytes { try InferenceRequestDecoder.decode($0, headerLength: nil) }.inputs[0].data
    }

    /// Decimals of 1 to 22 digits with powers of ten from -140 to 140 (beyond the Eisel–Lemire
    /// table at both ends), and the hard cases: exact half-way points between doubles, values
    /// a hair either side of them, the largest and smallest normal doubles and subnormals.
    @Test func decimalsOfEveryShapeMatchStrtod() throws {
        var random = SeededGenerator(seed: 11)
        var texts: [String] = []
        for _ in 0..<40_000 {
            let digits = Int(random.next() % 22) + 1
            var mantissa = ""
            for position in 0..<digits {
                let digit = random.next() % 10
                mantissa.append(String(position == 0 && digit == 0 ? 1 : digit))
            }
            let exponent = Int(random.next() % 281) - 140
            texts.append("\(random.next() & 1 == 0 ? "-" : "")\(mantissa)e\(exponent)")
        }
        for _ in 0..<5_000 {
            // The decimal of a half-way point: a double's significand, doubled, plus one, times
            // 2^(e-1); its exact decimal has at most 17 + 1 significant digits here.
            let significand = (random.next() >> 11) | (1 << 52)
            let halfway = Double(significand) + 0.5
            texts.append(String(format: "%.1f", halfway))
            texts.append(String(format: "%.1f", halfway).dropLast() + "49999")
            texts.append(String(format: "%.1f", halfway).dropLast() + "50001")
            let scaled = Double(bitPattern: random.next() & 0x7FEF_FFFF_FFFF_FFFF)
            texts.append(String(format: "%.18e", scaled))
        }
        texts += ["1.7976931348623157e308", "2.2250738585072014e-308", "2.2250738585072011e-308",
                  "4.9406564584124654e-324", "1e-400", "9007199254740993", "9007199254740992.5", "0e50", "0.000000e-999"]
        // Past the largest double (strtod gives infinity): beyond FP64's range, a 400.
        for overflow in ["1.7976931348623159e308", "1e400", "-1e400"] {
            #expect(throws: WharfError.self) { try decodeNumbers([overflow]) }
        }
        let values = try decodeNumbers(texts)
        var mismatches: [String] = []
        for (text, value) in zip(texts, values) {
            let expected = strtod(text, nil)
            if expected.bitPattern != value.bitPattern, !(expected.isNaN && value.isNaN) { mismatches.append(text) }
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(10))")
    }

    /// Every entry of the table of powers is normalised, and those known by heart are exact
    /// (the strtod comparison above checks the rest through the values they produce).
    @Test func powersOfTenAreNormalised() {
        for (index, power) in DecimalToDouble.powers.enumerated() {
            #expect(power.high >> 63 == 1, "10^\(index + DecimalToDouble.exponentRange.lowerBound) not normalised")
        }
        // 10^0 is exactly 2^127 · 1, 10^1 = 0b1010 << 124, 10^27 = 5^27 · 2^27, exact in 128 bits.
        let table = DecimalToDouble.powers
        let zero = -DecimalToDouble.exponentRange.lowerBound
        #expect(table[zero].high == 1 << 63 && table[zero].low == 0)
        #expect(table[zero + 1].high == 0b1010 << 60 && table[zero + 1].low == 0)
        // 5^-1 = 0.0011 0011 ... in binary: the pattern 0xCCCC... after normalising.
        #expect(table[zero - 1].high == 0xCCCC_CCCC_CCCC_CCCC && table[zero - 1].low == 0xCCCC_CCCC_CCCC_CCCC)
    }
}

@Suite("Large arrays read in chunks")
struct ChunkedDataTests {
    private func decode(_ json: String) throws(WharfError) -> InferenceRequest {
        let bytes = Array(json.utf8)
        let result: Result<InferenceRequest, WharfError> = bytes.withUnsafeBytes { raw in
            Result { () throws(WharfError) in try InferenceRequestDecoder.decode(raw, headerLength: nil) }
        }
        return try result.get()
    }

    private func rows(_ count: Int) -> [[String]] {
        var random = SeededGenerator(seed: 3)
        return (0..<count).map { _ in
            (0..<30).map { column in
                switch random.next() % 50 {
                case 0: "null"
                case 1: "true"
                case 2: "false"
                default: String(Double(bitPattern: random.next() >> 2) * (column.isMultiple(of: 2) ? 1 : -1))
                }
            }
        }
    }

    private func request(_ data: String, rows: Int) -> String {
        #"{"inputs":[{"name":"x","shape":[\#(rows),30],"datatype":"FP64","data":\#(data)}]}"#
    }

    /// Flat, nested, with blanks: the same values, in order, as a small request would read.
    @Test func flatAndNestedLargeArraysAreRead() throws {
        let table = rows(4_000)
        let expected: [Double] = table.flatMap { $0 }.map { text -> Double in
            switch text {
            case "null": .nan
            case "true": 1
            case "false": 0
            default: Double(text)!
            }
        }
        let flat = "[" + table.flatMap { $0 }.joined(separator: ",") + "]"
        let nested = "[" + table.map { "[" + $0.joined(separator: ", ") + "]" }.joined(separator: ",\n ") + "]"
        for data in [flat, nested] {
            #expect(data.utf8.count > 64 * 1024)
            let values = try decode(request(data, rows: 4_000)).inputs[0].data
            #expect(values.count == expected.count)
            #expect(zip(values, expected).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) })
        }
    }

    /// FP32 in chunks: every value the Float nearest to it, as in one pass.
    @Test func largeFP32ArraysAreRoundedToFloat() throws {
        var random = SeededGenerator(seed: 5)
        let texts = (0..<(2_000 * 30)).map { _ in String(Double(Int64(bitPattern: random.next()) % 10_000_000_000) / 12_345.678) }
        let json = #"{"inputs":[{"name":"x","shape":[2000,30],"datatype":"FP32","data":[\#(texts.joined(separator: ","))]}]}"#
        #expect(json.utf8.count > 64 * 1024)
        let values = try decode(json).inputs[0].data
        #expect(values.map(\.bitPattern) == texts.map { Double(Float(Double($0)!)).bitPattern })
    }

    /// A fault anywhere in a large array (at a chunk's edge too) gets the message and byte
    /// offset the one-pass reader gives, which the small-array tests pin down.
    @Test func faultsInLargeArraysAreReportedAsInOnePass() {
        let values = rows(3_000).flatMap { $0 }
        let flat = "[" + values.joined(separator: ",") + "]"
        let middle = flat.index(flat.startIndex, offsetBy: flat.utf8.count / 2)
        let comma = flat[middle...].firstIndex(of: ",")!
        let faults: [(String, String)] = [
            (flat.replacingCharacters(in: comma...comma, with: ",,"), "unexpected ','"),
            (flat.replacingCharacters(in: comma...comma, with: " "), "expected ',' or ']'"),
            (String(flat.dropLast()) + ",]", "unexpected ']'"),
            (flat.replacingCharacters(in: comma...comma, with: ",\"s\","), "data holds a string"),
            (flat.replacingCharacters(in: comma...comma, with: ",[1,2],"), "holds 90000 values, but data has 90002"),
            (flat.replacingCharacters(in: comma...comma, with: ",1e,"), "expected digits in exponent"),
            (String(flat.dropLast()), "expected ',' or ']'"),
        ]
        for (data, message) in faults {
            let json = request(data, rows: 3_000)
            let offset = Array(json.utf8).firstIndex(of: UInt8(ascii: "["))!
            do {
                _ = try decode(json)
                Issue.record("decoded despite: \(message)")
            } catch {
                #expect(error.message.contains(message), "\(message) -> \(error.message)")
                // The offset is where the fault is, well past where the array opens.
                let at = error.message.split(separator: " ").dropFirst(5).first.flatMap { Int($0.dropLast()) }
                #expect((at ?? 0) > offset, "\(error.message)")
            }
        }
    }
}
