/// Decodes OIP v2 inference requests straight from the request bytes: JSON, or a JSON header
/// followed by binary tensors (the binary tensor data extension, `Inference-Header-Content-Length`).
///
/// Nothing is allocated by a size the client declares: shapes are checked against the data that
/// is really there, and binary sizes against the bytes that really follow. Every error is a
/// ``WharfError/Code/invalidInput`` naming the input and what was wrong.
///
/// ```swift
/// let request = try body.withUnsafeReadableBytes {
///     try InferenceRequestDecoder.decode($0, headerLength: headerLength)
/// }
/// ```
public enum InferenceRequestDecoder {
    /// Elements one tensor may hold (64 Mi); a shape beyond this is refused before anything else.
    public static let maxElements = 1 << 26

    public static func decode(_ body: UnsafeRawBufferPointer, headerLength: Int?) throws(WharfError) -> InferenceRequest {
        var jsonEnd = body.count
        if let headerLength {
            guard headerLength >= 0, headerLength <= body.count else {
                throw WharfError(.invalidInput, "Inference-Header-Content-Length is \(headerLength), but the body has \(body.count) bytes")
            }
            jsonEnd = headerLength
        }
        var scanner = JSONScanner(UnsafeRawBufferPointer(rebasing: body[0..<jsonEnd]))
        var request = InferenceRequest(inputs: [])
        var binarySizes: [Int?] = []
        var sawInputs = false
        do {
            guard scanner.peek() == UInt8(ascii: "{") else { throw scanner.failure("the request must be a JSON object") }
            try scanner.readObject { scanner, key throws(JSONScanner.Failure) in
                switch key {
                case "id":
                    request.id = try readIdentifier(&scanner)
                case "parameters":
                    request.parameters = try readParameters(&scanner)
                case "inputs":
                    sawInputs = true
                    try scanner.readArray { scanner throws(JSONScanner.Failure) in
                        let (input, binarySize) = try readInput(&scanner, index: request.inputs.count)
                        request.inputs.append(input)
                        binarySizes.append(binarySize)
                    }
                case "outputs":
                    var outputs: [RequestedOutput] = []
                    try scanner.readArray { scanner throws(JSONScanner.Failure) in
                        outputs.append(try readRequestedOutput(&scanner))
                    }
                    request.outputs = outputs
                default:
                    try scanner.skipValue()
                }
            }
            if scanner.peek() != nil {
                throw scanner.failure(
                    headerLength == nil
                        ? "unexpected content after the JSON request (binary tensors need an Inference-Header-Content-Length header)"
                        : "unexpected content after the JSON header")
            }
        } catch let failure as JSONScanner.Failure {
            throw WharfError(.invalidInput, "malformed request JSON at byte \(failure.offset): \(failure.message)")
        } catch {
            throw WharfError(.invalidInput, "\(error)")
        }
        guard sawInputs, !request.inputs.isEmpty else { throw WharfError(.invalidInput, "the request has no inputs") }
        try attachBinaryData(&request, sizes: binarySizes, binary: UnsafeRawBufferPointer(rebasing: body[jsonEnd...]))
        return request
    }

    private static func readIdentifier(_ scanner: inout JSONScanner) throws(JSONScanner.Failure) -> String? {
        switch scanner.peek() {
        case UInt8(ascii: "\""): return try scanner.readString()
        case UInt8(ascii: "n"): _ = scanner.readNull(); return nil
        default:
            let number = try scanner.readNumber()
            return number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        }
    }

    static func readParameters(_ scanner: inout JSONScanner) throws(JSONScanner.Failure) -> [String: InferenceParameter] {
        var parameters: [String: InferenceParameter] = [:]
        if scanner.readNull() { return parameters }
        try scanner.readObject { scanner, key throws(JSONScanner.Failure) in
            switch scanner.peek() {
            case UInt8(ascii: "\""): parameters[key] = .string(try scanner.readString())
            case UInt8(ascii: "t"), UInt8(ascii: "f"): parameters[key] = .bool(try scanner.readBool())
            case UInt8(ascii: "{"), UInt8(ascii: "["), UInt8(ascii: "n"): try scanner.skipValue()
            default: parameters[key] = .number(try scanner.readNumber())
            }
        }
        return parameters
    }

    private static func readRequestedOutput(_ scanner: inout JSONScanner) throws(JSONScanner.Failure) -> RequestedOutput {
        var output = RequestedOutput(name: "")
        try scanner.readObject { scanner, key throws(JSONScanner.Failure) in
            switch key {
            case "name": output.name = try scanner.readString()
            case "parameters": output.parameters = try readParameters(&scanner)
            default: try scanner.skipValue()
            }
        }
        return output
    }

    /// An input as written; checked once every key is read.
    private static func readInput(_ scanner: inout JSONScanner, index: Int) throws(JSONScanner.Failure) -> (RequestInput, Int?) {
        var name: String?
        var shape: [Int]?
        var datatypeName: String?
        var parameters: [String: InferenceParameter] = [:]
        var data: [Double]?
        var dataReadAsFloat = false
        let start = scanner.position
        try scanner.readObject { scanner, key throws(JSONScanner.Failure) in
            switch key {
            case "name": name = try scanner.readString()
            case "shape":
                var dimensions: [Int] = []
                try scanner.readArray { scanner throws(JSONScanner.Failure) in
                    let value = try scanner.readNumber()
                    guard value >= 0, value <= Double(maxElements), value == value.rounded() else {
                        throw scanner.failure("input \(index): shape dimension \(value) must be a whole number in 0...\(maxElements)")
                    }
                    dimensions.append(Int(value))
                }
                shape = dimensions
            case "datatype": datatypeName = try scanner.readString()
            case "parameters": parameters = try readParameters(&scanner)
            case "data":
                var values: [Double] = []
                // Sized from the shape when it came first, but never beyond what the body can hold.
                if let shape {
                    let count = shape.reduce(1) { min($0.multipliedReportingOverflow(by: $1).partialValue, maxElements) }
                    values.reserveCapacity(max(0, min(count, scanner.bytes.count / 2)))
                }
                // FP32 values are read as such when the datatype came first (as clients write
                // it); otherwise they are narrowed once every key is read.
                dataReadAsFloat = datatypeName == TensorDatatype.fp32.rawValue
                try scanner.readNumericData(into: &values, maxElements: maxElements, asFloat: dataReadAsFloat)
                data = values
            default: try scanner.skipValue()
            }
        }
        let label = name.map { "input '\($0)'" } ?? "input \(index)"
        guard let name, !name.isEmpty else { throw JSONScanner.Failure(offset: start, message: "\(label) has no name") }
        guard let datatypeName else { throw JSONScanner.Failure(offset: start, message: "\(label) has no datatype") }
        guard let datatype = TensorDatatype(rawValue: datatypeName) else {
            throw JSONScanner.Failure(offset: start, message: "\(label): unknown datatype \"\(datatypeName)\"")
        }
        guard datatype != .bytes else {
            throw JSONScanner.Failure(offset: start, message: "\(label): BYTES tensors are not supported; send numbers (FP32, FP64, INT*, UINT*, BOOL)")
        }
        guard let shape else { throw JSONScanner.Failure(offset: start, message: "\(label) has no shape") }
        var count = 1
        for dimension in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow, product <= maxElements else {
                throw JSONScanner.Failure(offset: start, message: "\(label): shape \(shape) holds more than \(maxElements) elements")
            }
            count = product
        }
        var binarySize: Int?
        if let declared = parameters["binary_data_size"] {
            guard let size = declared.numberValue, size >= 0, size == size.rounded(), size <= Double(Int32.max) * 64 else {
                throw JSONScanner.Failure(offset: start, message: "\(label): binary_data_size must be a whole number of bytes")
            }
            guard data == nil else { throw JSONScanner.Failure(offset: start, message: "\(label) has both data and binary_data_size") }
            let expected = count * datatype.byteWidth!
            guard Int(size) == expected else {
                throw JSONScanner.Failure(
                    offset: start, message: "\(label): binary_data_size is \(Int(size)) bytes, but shape \(shape) of \(datatype.rawValue) takes \(expected)")
            }
            binarySize = Int(size)
        } else {
            guard let data else { throw JSONScanner.Failure(offset: start, message: "\(label) has no data") }
            guard data.count == count else {
                throw JSONScanner.Failure(offset: start, message: "\(label): shape \(shape) holds \(count) values, but data has \(data.count)")
            }
            if let range = datatype.integerRange, let bad = data.first(where: { !range.contains($0) || $0 != $0.rounded() }) {
                throw JSONScanner.Failure(offset: start, message: "\(label): \(bad) is not \(datatype.rawValue.hasPrefix("INT") || datatype.rawValue.hasPrefix("FP") ? "an" : "a") \(datatype.rawValue) value")
            }
            // JSON cannot write infinity: one read here is a number past a double's range (1e400).
            if datatype == .fp64, data.contains(where: \.isInfinite) {
                throw JSONScanner.Failure(offset: start, message: "\(label): a number is beyond the range of FP64 (±\(Double.greatestFiniteMagnitude))")
            }
        }
        // Narrower floating-point data is rounded to its type, as in binary (FP32 read as such
        // already when its datatype came first).
        if datatype == .fp16 || datatype == .bf16 || (datatype == .fp32 && !dataReadAsFloat), let values = data {
            var narrowed = values
            for index in narrowed.indices {
                guard let value = datatype.narrowed(values[index]) else {
                    let written = values[index].isFinite ? "\(values[index])" : "a number"
                    throw JSONScanner.Failure(
                        offset: start, message: "\(label): \(written) is beyond the range of \(datatype.rawValue) (±\(datatype.largestFinite ?? 0))")
                }
                narrowed[index] = value
            }
            data = narrowed
        }
        return (RequestInput(name: name, shape: shape, datatype: datatype, parameters: parameters, data: data ?? []), binarySize)
    }

    private static func attachBinaryData(_ request: inout InferenceRequest, sizes: [Int?], binary: UnsafeRawBufferPointer) throws(WharfError) {
        let declared = sizes.reduce(0) { $0 + ($1 ?? 0) }
        guard declared == binary.count else {
            throw WharfError(.invalidInput, "the inputs declare \(declared) bytes of binary data, but \(binary.count) bytes follow the JSON header")
        }
        var offset = 0
        for (index, size) in sizes.enumerated() {
            guard let size else { continue }
            let bytes = UnsafeRawBufferPointer(rebasing: binary[offset..<(offset + size)])
            request.inputs[index].data = BinaryTensor.decode(bytes, as: request.inputs[index].datatype)
            offset += size
        }
    }
}
