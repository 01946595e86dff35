// swift-tools-version:6.2
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "wharf",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "wharf", targets: ["wharf"]),
        .library(name: "WharfCore", targets: ["WharfCore"]),
        .library(name: "WharfRuntime", targets: ["WharfRuntime"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        .target(name: "WharfCore", swiftSettings: strictSettings),
        .target(
            name: "WharfRuntime",
            dependencies: ["WharfCore"],
            swiftSettings: strictSettings + [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
        ),
        .executableTarget(
            name: "wharf",
            dependencies: [
                "WharfCore",
                "WharfRuntime",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "WharfCoreTests", dependencies: ["WharfCore"], swiftSettings: strictSettings),
        .testTarget(
            name: "WharfRuntimeTests",
            dependencies: ["WharfCore", "WharfRuntime"],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "wharfTests", dependencies: ["wharf"], swiftSettings: strictSettings),
    ],
    swiftLanguageModes: [.v6]
)
