/// An OIP v2 inference response (`$inference_response`), written by ``InferenceResponseEncoder``.
public struct InferenceResponse: Sendable {
    public var modelName: String
    public var modelVersion: String?
    public var id: String?
    public var parameters: [String: InferenceParameter]
    public var outputs: [ResponseOutput]

    public init(
        modelName: String,
        modelVersion: String?,
        id: String?,
        parameters: [String: InferenceParameter] = [:],
        outputs: [ResponseOutput]
    ) {
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.id = id
        self.parameters = parameters
        self.outputs = outputs
    }
}

/// One output tensor (`$response_output`): numbers written in `datatype` (FP64, FP32, INT64,
/// BOOL), as JSON or, when `binary` is set, through the binary tensor extension.
public struct ResponseOutput: Sendable {
    public var name: String
    public var shape: [Int]
    public var datatype: TensorDatatype
    public var data: [Double]
    public var binary: Bool

    public init(name: String, shape: [Int], datatype: TensorDatatype, data: [Double], binary: Bool = false) {
        self.name = name
        self.shape = shape
        self.datatype = datatype
        self.data = data
        self.binary = binary
    }
}
