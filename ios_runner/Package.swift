// swift-tools-version:5.9
// RunnerCore: the Foundation-only half of BenchRunner (job/result types, clock, paths).
// Build and test it anywhere Swift runs: `swift build && swift test` (macOS or Linux).
import PackageDescription

let package = Package(
    name: "RunnerCore",
    platforms: [.iOS(.v17), .macOS(.v13)],
    products: [
        .library(name: "RunnerCore", targets: ["RunnerCore"])
    ],
    targets: [
        .target(name: "RunnerCore", path: "Sources/RunnerCore"),
        .testTarget(name: "RunnerCoreTests", dependencies: ["RunnerCore"], path: "Tests/RunnerCoreTests")
    ]
)
