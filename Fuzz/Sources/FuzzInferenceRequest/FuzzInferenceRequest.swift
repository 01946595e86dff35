import FuzzSupport
import WharfCore

/// libFuzzer entry point for the OIP request decoder: any bytes, with the first two bytes
/// choosing a header length (so the binary extension's framing is fuzzed too), must decode or
/// fail with a WharfError; never crash, hang or allocate by a declared size.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInferenceRequest(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let start, count >= 2 else { return 0 }
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    let selector = Int(bytes[0]) << 8 | Int(bytes[1])
    let body = UnsafeRawBufferPointer(rebasing: bytes[2...])
    let headerLength: Int? = selector == 0xFFFF ? nil : selector % (body.count + 2)
    _ = try? InferenceRequestDecoder.decode(body, headerLength: headerLength)
    return 0
}

@_cdecl("FuzzInferenceRequest_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { data, size in fuzzInferenceRequest(data, size) }
}
