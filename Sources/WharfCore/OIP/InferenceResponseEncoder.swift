/// Writes OIP v2 inference responses: all JSON, or a JSON header followed by the outputs marked
/// binary (the binary tensor data extension; the header's length goes in
/// `Inference-Header-Content-Length`).
public enum InferenceResponseEncoder {
    public struct Encoded: Sendable {
        public var body: [UInt8]
        /// Set when binary outputs follow the JSON header.
        public var headerLength: Int?
    }

    public static func encode(_ response: InferenceResponse) -> Encoded {
        var json = JSONWriter()
        json.raw("{\"model_name\":")
        json.string(response.modelName)
        if let version = response.modelVersion {
            json.raw(",\"model_version\":")
            json.string(version)
        }
        if let id = response.id {
            json.raw(",\"id\":")
            json.string(id)
        }
        if !response.parameters.isEmpty {
            json.raw(",\"parameters\":")
            json.parameters(response.parameters)
        }
        json.raw(",\"outputs\":[")
        var binary: [UInt8] = []
        for (index, output) in response.outputs.enumerated() {
            if index > 0 { json.raw(",") }
            json.raw("{\"name\":")
            json.string(output.name)
            json.raw(",\"datatype\":\"")
            json.raw(output.datatype.rawValue)
            json.raw("\",\"shape\":[")
            for (index, dimension) in output.shape.enumerated() {
                if index > 0 { json.raw(",") }
                json.integer(dimension)
            }
            json.raw("]")
            if output.binary {
                let before = binary.count
                BinaryTensor.encode(output.data, as: output.datatype, into: &binary)
                json.raw(",\"parameters\":{\"binary_data_size\":\(binary.count - before)}")
            } else {
                json.raw(",\"data\":[")
                json.numbers(output.data, as: output.datatype)
                json.raw("]")
            }
            json.raw("}")
        }
        json.raw("]}")
        if response.outputs.contains(where: \.binary) {
            let headerLength = json.bytes.count
            return Encoded(body: json.bytes + binary, headerLength: headerLength)
        }
        return Encoded(body: json.bytes, headerLength: nil)
    }
}
