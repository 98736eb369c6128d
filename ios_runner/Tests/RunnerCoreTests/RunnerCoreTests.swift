import Foundation
import XCTest
@testable import RunnerCore

final class RunnerCoreTests: XCTestCase {
    func testWriteResultLeavesDoneMarker() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let paths = RunnerPaths(documents: dir)
        let result = BenchResult.failure(
            jobID: "abc", message: "x",
            device: DeviceReport(machine: "m", osVersion: "17.5", osBuild: nil, aneCores: nil),
            environment: EnvironmentReport(thermalTimeline: [], lowPower: false, batteryState: nil, cooldownWaitedS: nil),
            engine: "coreml", appVersion: "test")
        try paths.writeResult(result)
        XCTAssertTrue(FileManager.default.fileExists(atPath: paths.doneMarker("abc").path))
        let back = try JSONDecoder().decode(BenchResult.self, from: Data(contentsOf: paths.resultFile("abc")))
        XCTAssertEqual(back.status, "failed")
    }

    func testResolveRefusesEscapes() {
        let paths = RunnerPaths(documents: URL(fileURLWithPath: "/tmp/docs"))
        XCTAssertThrowsError(try paths.resolve("../etc/passwd"))
    }

    func testSamplesCount() {
        XCTAssertEqual(Clock.samples(3) {}.count, 3)
    }
}
