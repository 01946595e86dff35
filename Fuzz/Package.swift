// swift-tools-version:6.2
// A separate package so the fuzzing flags (-sanitize=fuzzer) never touch the main build.
// Build and run it with scripts/fuzz.sh.
import PackageDescription

let package = Package(
    name: "WharfFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "wharf", path: "..")],
    targets: [
        .target(name: "FuzzSupport"),
        .executableTarget(
            name: "FuzzModelLoader",
            dependencies: ["FuzzSupport", .product(name: "WharfRuntime", package: "wharf")],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
        .executableTarget(
            name: "FuzzInferenceRequest",
            dependencies: ["FuzzSupport", .product(name: "WharfCore", package: "wharf")],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
    ]
)
