import FuzzSupport
import WharfRuntime

/// libFuzzer entry point: any byte string is loaded as a model file. It must either load (and
/// then predict a few rows without trouble) or fail with a WharfError; a crash, a sanitizer
/// report, a hang or a large allocation is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzModelLoader(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let start else { return 0 }
    let bytes = [UInt8](UnsafeBufferPointer(start: start, count: count))
    guard let model = try? ModelLoader.load(bytes: bytes) else { return 0 }
    let features = model.metadata.featureCount
    guard features <= 4096 else { return 0 }
    var input = [Double](repeating: 0, count: 3 * features)
    for index in input.indices {
        input[index] = [Double.nan, -1, 0, 0.5, 1e-36, 3, 1e9][index % 7]
    }
    _ = try? model.predict(input, rows: 3)
    return 0
}

@_cdecl("FuzzModelLoader_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { data, size in fuzzModelLoader(data, size) }
}
