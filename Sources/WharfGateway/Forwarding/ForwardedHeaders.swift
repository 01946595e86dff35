import NIOCore
import NIOHTTP1
import WharfCore
import WharfHTTP

// The few headers the gateway passes between clients and replicas, held as bytes: on the
// forwarding plane they are slices of the buffers read, written out as they came, so a forwarded
// request builds no header list and no strings (those made 7 of the 16 allocations a forwarded
// request cost).

/// Looks up a request header by its lowercase name: how the router reads the sticky-routing key
/// and the access check the caller's key, whichever path read the request.
protocol RequestHeaderLookup {
    func first(name: String) -> String?
}

extension HTTPHeaders: RequestHeaderLookup {}

/// Whether a header value taken from an `HTTPHeaders` could break the framing of the bytes it is
/// written into (CR, LF, NUL): such a value is left out.
private func breaksFraming(_ value: String) -> Bool {
    value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0 }
}

/// A request's id: the caller's, as sent (checked printable), or one made here, kept as its
/// number until it is written.
enum RequestID {
    case given(ByteBuffer)
    case made(UInt64)

    /// The caller's id when it is acceptable (``RequestIDs/isAcceptable(bytes:)``), else a new one.
    init(given: ByteBuffer?, random: inout SeededGenerator) {
        if let given, RequestIDs.isAcceptable(bytes: given.readableBytesView) {
            self = .given(given)
        } else {
            self = .made(random.next())
        }
    }

    init(given: String?, random: inout SeededGenerator) {
        self.init(given: given.map { ByteBuffer(string: $0) }, random: &random)
    }

    var string: String {
        switch self {
        case .given(let bytes): String(buffer: bytes)
        case .made(let value): RequestIDs.id(value)
        }
    }

    func write(into buffer: inout ByteBuffer) {
        switch self {
        case .given(let bytes):
            buffer.writeImmutableBuffer(bytes)
        case .made(let value):
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: RequestIDs.idLength) { bytes in
                RequestIDs.writeID(value, into: bytes)
                return RequestIDs.idLength
            }
        }
    }
}

/// The request headers a replica gets besides `host` and `content-length`: how the tensors are
/// encoded, and the request id (so the replica's logs carry it).
struct ForwardedRequestHeaders {
    var contentType: ByteBuffer?
    /// The JSON part's length in a request with binary tensors.
    var inferenceHeaderContentLength: ByteBuffer?
    var requestID: RequestID

    init(contentType: ByteBuffer?, inferenceHeaderContentLength: ByteBuffer?, requestID: RequestID) {
        self.contentType = contentType
        self.inferenceHeaderContentLength = inferenceHeaderContentLength
        self.requestID = requestID
    }

    /// From a request the HTTP codec read. A value that could break the framing of the request
    /// written out (CR, LF, NUL) is left out.
    init(_ headers: HTTPHeaders, requestID: RequestID) {
        func safe(_ name: String) -> ByteBuffer? {
            guard let value = headers.first(name: name), !breaksFraming(value) else { return nil }
            return ByteBuffer(string: value)
        }
        self.init(contentType: safe("content-type"), inferenceHeaderContentLength: safe("inference-header-content-length"), requestID: requestID)
    }

    /// Each header as `\r\nname: value`.
    func write(into buffer: inout ByteBuffer) {
        if let contentType {
            buffer.writeStaticString("\r\ncontent-type: ")
            buffer.writeImmutableBuffer(contentType)
        }
        if let inferenceHeaderContentLength {
            buffer.writeStaticString("\r\ninference-header-content-length: ")
            buffer.writeImmutableBuffer(inferenceHeaderContentLength)
        }
        buffer.writeStaticString("\r\nx-request-id: ")
        requestID.write(into: &buffer)
    }

    /// For async-http-client (https replicas).
    var httpHeaders: HTTPHeaders {
        var headers = HTTPHeaders()
        if let contentType { headers.add(name: "content-type", value: String(buffer: contentType)) }
        if let inferenceHeaderContentLength { headers.add(name: "inference-header-content-length", value: String(buffer: inferenceHeaderContentLength)) }
        headers.add(name: "x-request-id", value: requestID.string)
        return headers
    }
}

/// The headers of a replica's answer passed back to the client (all others are dropped), as the
/// bytes of their values, plus the deployment's label of the version that answered.
struct AnswerHeaders {
    var contentType: ByteBuffer?
    var inferenceHeaderContentLength: ByteBuffer?
    var modelVersion: ByteBuffer?
    var retryAfter: ByteBuffer?
    /// `x-wharf-deployment-version`: set by the router, not taken from the replica.
    var deploymentVersion: String?

    /// The names taken from a replica's answer, lowercase, in the order of ``value(at:)``.
    static let names = ["content-type", "inference-header-content-length", "x-wharf-model-version", "retry-after"]

    init() {}

    /// From an answer read by async-http-client (https replicas).
    init(_ headers: HTTPHeaders) {
        for (index, name) in Self.names.enumerated() {
            if let value = headers.first(name: name), !breaksFraming(value) {
                self[index] = ByteBuffer(string: value)
            }
        }
    }

    /// The value of `names[index]`.
    subscript(index: Int) -> ByteBuffer? {
        get {
            switch index {
            case 0: contentType
            case 1: inferenceHeaderContentLength
            case 2: modelVersion
            default: retryAfter
            }
        }
        set {
            switch index {
            case 0: contentType = newValue
            case 1: inferenceHeaderContentLength = newValue
            case 2: modelVersion = newValue
            default: retryAfter = newValue
            }
        }
    }

    /// The value of a passed header (lowercase name), as text.
    func first(name: String) -> String? {
        if name == "x-wharf-deployment-version" { return deploymentVersion }
        return Self.names.firstIndex(of: name).flatMap { self[$0] }.map { String(buffer: $0) }
    }

    /// Each header as `\r\nname: value`.
    func write(into buffer: inout ByteBuffer) {
        func write(_ line: StaticString, _ value: ByteBuffer?) {
            guard let value else { return }
            buffer.writeStaticString(line)
            buffer.writeImmutableBuffer(value)
        }
        write("\r\ncontent-type: ", contentType)
        write("\r\ninference-header-content-length: ", inferenceHeaderContentLength)
        write("\r\nx-wharf-model-version: ", modelVersion)
        write("\r\nretry-after: ", retryAfter)
        if let deploymentVersion {
            buffer.writeStaticString("\r\nx-wharf-deployment-version: ")
            buffer.writeString(deploymentVersion)
        }
    }

    /// For the HTTP codec's path.
    var httpHeaders: HTTPHeaders {
        var headers = HTTPHeaders()
        for index in Self.names.indices {
            if let value = self[index] { headers.add(name: Self.names[index], value: String(buffer: value)) }
        }
        if let deploymentVersion { headers.add(name: "x-wharf-deployment-version", value: deploymentVersion) }
        return headers
    }
}
