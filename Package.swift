// swift-tools-version:6.2
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "wharf",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "wharf", targets: ["wharf"]),
        .library(name: "WharfCore", targets: ["WharfCore"]),
        .library(name: "WharfRuntime", targets: ["WharfRuntime"]),
        .library(name: "WharfHTTP", targets: ["WharfHTTP"]),
        .library(name: "WharfServing", targets: ["WharfServing"]),
        .library(name: "WharfClient", targets: ["WharfClient"]),
        .library(name: "WharfRegistry", targets: ["WharfRegistry"]),
        .library(name: "WharfGateway", targets: ["WharfGateway"]),
        .library(name: "WharfDeploy", targets: ["WharfDeploy"]),
        .library(name: "WharfBus", targets: ["WharfBus"]),
        .library(name: "WharfFeatures", targets: ["WharfFeatures"]),
        .library(name: "WharfPipelines", targets: ["WharfPipelines"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        .target(name: "WharfCore", swiftSettings: strictSettings),
        .target(name: "WharfRuntime", dependencies: ["WharfCore"], swiftSettings: strictSettings),
        .target(
            name: "WharfHTTP",
            dependencies: [
                "WharfCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "WharfClient",
            dependencies: [
                "WharfCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "WharfRegistry",
            dependencies: [
                "WharfCore",
                "WharfHTTP",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // Swift 6.3.1's optimizer crashes (LLVM coroutine splitting, signal 11) on this
            // module's route closures in release builds; the registry is not a hot path, so it
            // is built unoptimized until the toolchain is fixed.
            swiftSettings: strictSettings + [.unsafeFlags(["-Onone"], .when(configuration: .release))]
        ),
        // epoll and eventfd, which Glibc's module leaves out: the gateway's forwarding plane.
        .systemLibrary(name: "CWharfEpoll", path: "Sources/CWharfEpoll"),
        .target(
            name: "WharfGateway",
            dependencies: [
                .target(name: "CWharfEpoll", condition: .when(platforms: [.linux])),
                "WharfCore",
                "WharfHTTP",
                "WharfClient",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "WharfBus",
            dependencies: [
                "WharfCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "WharfPipelines",
            dependencies: [
                "WharfCore",
                "WharfRuntime",
                "WharfClient",
                "WharfHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "WharfFeatures",
            dependencies: [
                "WharfCore",
                "WharfHTTP",
                "WharfBus",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "WharfDeploy",
            dependencies: [
                "WharfCore",
                "WharfClient",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "WharfServing",
            dependencies: [
                "WharfCore",
                "WharfRuntime",
                "WharfHTTP",
                "WharfClient",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "wharf",
            dependencies: [
                "WharfCore",
                "WharfRuntime",
                "WharfHTTP",
                "WharfServing",
                "WharfClient",
                "WharfRegistry",
                "WharfGateway",
                "WharfDeploy",
                "WharfFeatures",
                "WharfPipelines",
                "WharfBus",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "WharfCoreTests", dependencies: ["WharfCore"], swiftSettings: strictSettings),
        .testTarget(name: "WharfRuntimeTests", dependencies: ["WharfCore", "WharfRuntime"], swiftSettings: strictSettings),
        .testTarget(
            name: "WharfServingTests",
            dependencies: [
                "WharfCore",
                "WharfRuntime",
                "WharfHTTP",
                "WharfServing",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "WharfRegistryTests",
            dependencies: [
                "WharfCore",
                "WharfClient",
                "WharfHTTP",
                "WharfRegistry",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "WharfBusTests", dependencies: ["WharfCore", "WharfBus"], swiftSettings: strictSettings),
        .testTarget(
            name: "WharfFeaturesTests",
            dependencies: [
                "WharfCore",
                "WharfBus",
                "WharfFeatures",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "WharfPipelinesTests", dependencies: ["WharfCore", "WharfRuntime", "WharfPipelines"], swiftSettings: strictSettings),
        .testTarget(
            name: "WharfDeployTests",
            dependencies: ["WharfCore", "WharfDeploy"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "WharfGatewayTests",
            dependencies: [
                "WharfCore",
                "WharfHTTP",
                "WharfGateway",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "wharfTests", dependencies: ["wharf"], swiftSettings: strictSettings),
    ],
    swiftLanguageModes: [.v6]
)
