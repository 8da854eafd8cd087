// swift-tools-version:6.0
import PackageDescription

/// Layers, bottom to top:
/// - `CometWire`: the wire codec (frames, no I/O).
/// - `CometChannels`: channel semantics (rings, positions, registry; plain values, no sockets).
/// - `CometServer`: connection handling on SwiftNIO.
/// - `CometState`: the daemon's state as an image (live upgrade, restart), plain values, no I/O.
/// - `CometFederation`: channels across hosts through NATS JetStream (nats.c), used by `comet-bridge`.
/// - `cometd`: the daemon executable (systemd, configuration, lifecycle).
/// Clients: `Comet` (Swift library) and `comet` (command-line tool).

/// The daemon's per-message paths (codec, rings, delivery) are confined to one event loop and
/// checked by their tests in debug builds; release builds skip the dynamic exclusivity checks
/// there (about a tenth of the daemon's time per message).
let hotPath = SwiftSetting.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))

let package = Package(
    name: "comet",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Comet", targets: ["Comet"]),
        .library(name: "CometWire", targets: ["CometWire"]),
        .executable(name: "cometd", targets: ["cometd"]),
        .executable(name: "comet", targets: ["CometCLI"]),
        .executable(name: "comet-bench", targets: ["CometBench"]),
        .executable(name: "comet-fuzz", targets: ["CometFuzz"]),
        .executable(name: "comet-sim", targets: ["CometSim"]),
        .executable(name: "comet-line-producer", targets: ["CometLineProducer"]),
        .executable(name: "comet-bridge", targets: ["CometBridge"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // NATS JetStream (docs/FEDERATION.md): nats.c, and the few operations comet-bridge needs in
        // C. Only comet-bridge links them: cometd reaches no network.
        .systemLibrary(
            name: "CNATS",
            pkgConfig: "libnats",
            providers: [.apt(["libnats-dev"])]
        ),
        .target(name: "CNATSBridge", dependencies: ["CNATS"], cSettings: [.define("_GNU_SOURCE")]),
        .target(
            name: "CometFederation",
            dependencies: [
                "CNATSBridge", "CometChannels",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .target(
            name: "CometWire",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: [hotPath]
        ),
        .target(name: "CometChannels", swiftSettings: [hotPath]),
        // comet-bridge: NATS export and import as a client of the local cometd (docs/FEDERATION.md).
        .executableTarget(
            name: "CometBridge",
            dependencies: [
                "Comet", "CometWire", "CometFederation",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // The daemon's state as plain values and bytes, for live upgrades and restarts (docs/RESTARTS.md).
        .target(
            name: "CometState",
            dependencies: ["CometChannels", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: [.swiftLanguageMode(.v6), hotPath]
        ),
        // libcomet's own sources as a SwiftPM target, so that `swift test` can drive the C API.
        // The shipped libcomet.so.0 is built by libcomet/Makefile with plain cc.
        .target(
            name: "CComet",
            path: "libcomet",
            exclude: ["Makefile", "libcomet.sym", "comet.pc.in", "tests"],
            sources: ["src"],
            publicHeadersPath: "include",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .target(
            name: "CometServer",
            dependencies: [
                "CometWire", "CometChannels", "CometState",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6), hotPath]
        ),
        .executableTarget(
            name: "cometd",
            dependencies: [
                "CometServer", "CometWire", "CometState", "CSystemd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .target(
            name: "Comet",
            dependencies: [
                "CometWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "CometCLI",
            dependencies: [
                "Comet", "CometWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "CometBench",
            dependencies: [
                "CometWire", "CNATSBridge",
                "Comet",
                "CometSupervision",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Fuzzing: libFuzzer's driver reached through a small C shim (scripts/fuzz builds it with
        // -sanitize=fuzzer; an ordinary build links and says how to build it).
        .target(name: "CFuzzShim"),
        .executableTarget(
            name: "CometFuzz",
            dependencies: ["CometWire", "CFuzzShim", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Deterministic simulation of the daemon core (docs/FLOW.md): virtual time, simulated peers.
        .target(
            name: "CometSimulation",
            dependencies: [
                "CometServer", "CometWire", "CometChannels", "Comet",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // The Swift producer of the systemd fault test (scripts/systemd-faults): stdin lines through
        // `push(contentsOf:)` with automatic reconnection.
        .executableTarget(name: "CometLineProducer", dependencies: ["Comet"], swiftSettings: [.swiftLanguageMode(.v6)]),
        .executableTarget(
            name: "CometSim",
            dependencies: ["CometSimulation", .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(name: "CometWireTests", dependencies: ["CometWire"]),
        .testTarget(name: "CometChannelsTests", dependencies: ["CometChannels"]),
        .testTarget(name: "CometFederationTests", dependencies: ["CometFederation"]),
        .testTarget(name: "CometStateTests", dependencies: ["CometState"]),
        .testTarget(name: "CometSimulationTests", dependencies: ["CometSimulation"]),
        .testTarget(name: "CometClientTests", dependencies: ["Comet", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "CometServerTests", dependencies: ["CometServer", "CometState", .product(name: "NIOCore", package: "swift-nio")]),
        // What systemd does for cometd (socket, NOTIFY_SOCKET, file-descriptor store), for the tests and comet-bench.
        .target(name: "CometSupervision", swiftSettings: [.swiftLanguageMode(.v6)]),
        .testTarget(
            name: "CometIntegrationTests",
            dependencies: ["Comet", "CometWire", "CComet", "CometSupervision"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
