import HTTPTypes
import Hummingbird
import NIOCore
import WharfCore

extension Response {
    /// A JSON response from bytes a ``JSONWriter`` (or an encoder) produced.
    public static func json(_ bytes: [UInt8], status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// An empty 200, the body health probes expect.
    public static var emptyOK: Response { Response(status: .ok) }
}
