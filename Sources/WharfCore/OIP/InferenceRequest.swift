/// An OIP v2 inference request (`$inference_request`), decoded by ``InferenceRequestDecoder``.
///
/// Tensor data arrives flattened, row-major, as doubles: every numeric datatype converts to
/// double exactly (INT64 and UINT64 beyond 2^53 round), which is what Wharf's models read.
public struct InferenceRequest: Sendable {
    public var id: String?
    public var parameters: [String: InferenceParameter]
    public var inputs: [RequestInput]
    /// The outputs asked for; nil asks for all of them.
    public var outputs: [RequestedOutput]?

    public init(
        id: String? = nil,
        parameters: [String: InferenceParameter] = [:],
        inputs: [RequestInput],
        outputs: [RequestedOutput]? = nil
    ) {
        self.id = id
        self.parameters = parameters
        self.inputs = inputs
        self.outputs = outputs
    }
}

/// One input tensor of a request (`$request_input`).
public struct RequestInput: Sendable {
    public var name: String
    public var shape: [Int]
    public var datatype: TensorDatatype
    public var parameters: [String: InferenceParameter]
    /// The elements, flattened row-major; `shape`'s product of them.
    public var data: [Double]

    public init(name: String, shape: [Int], datatype: TensorDatatype, parameters: [String: InferenceParameter] = [:], data: [Double]) {
        self.name = name
        self.shape = shape
        self.datatype = datatype
        self.parameters = parameters
        self.data = data
    }
}

/// An output asked for by name (`$request_output`), possibly in binary (`"binary_data": true`).
public struct RequestedOutput: Sendable {
    public var name: String
    public var parameters: [String: InferenceParameter]

    public init(name: String, parameters: [String: InferenceParameter] = [:]) {
        self.name = name
        self.parameters = parameters
    }
}
