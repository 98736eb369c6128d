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

    func testDecodesRandomAndFileInputsAndTheOutputRequest() throws {
        let random = try JobSpec.decode(from: Data(Self.job(inputs: #"{"kind": "random", "seed": 7}"#).utf8))
        XCTAssertEqual(random.inputs.seed, 7)
        XCTAssertNil(random.outputs)
        XCTAssertEqual(try random.inputs.requireFiles(), [])
        let files = try JobSpec.decode(from: Data(Self.job(
            inputs: #"{"kind": "files", "files": [{"name": "x:0", "file": "jobs/j1/input0.bin", "shape": [1, 8], "dtype": "float32"}]}"#,
            outputs: #", "outputs": {"file": "jobs/j1/outputs.bin"}"#).utf8))
        XCTAssertNil(files.inputs.seed)
        XCTAssertEqual(try files.inputs.requireFiles(),
                       [InputFile(name: "x:0", file: "jobs/j1/input0.bin", shape: [1, 8], dtype: "float32")])
        XCTAssertEqual(files.outputs?.file, "jobs/j1/outputs.bin")
        let empty = try JobSpec.decode(from: Data(Self.job(inputs: #"{"kind": "files"}"#).utf8))
        XCTAssertThrowsError(try empty.inputs.requireFiles())
    }

    func testInputFilesAreCheckedAndOutputsWrittenInOrder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("jobs/j1"), withIntermediateDirectories: true)
        let paths = RunnerPaths(documents: dir)
        try Data(count: 32).write(to: dir.appendingPathComponent("jobs/j1/input0.bin"))
        let good = InputFile(name: "x", file: "jobs/j1/input0.bin", shape: [1, 8], dtype: "float32")
        XCTAssertEqual(try TensorFiles.read(good, paths: paths).count, 32)
        var short = good
        short.shape = [1, 9]
        XCTAssertThrowsError(try TensorFiles.read(short, paths: paths))
        var odd = good
        odd.dtype = "complex64"
        XCTAssertThrowsError(try TensorFiles.read(odd, paths: paths))

        let a = TensorReport(name: "a", shape: [2], dtype: "int8", bytes: 2)
        let b = TensorReport(name: "b", shape: [1], dtype: "float32", bytes: 4)
        let report = try TensorFiles.write([(report: a, data: Data([1, 2])), (report: b, data: Data([3, 4, 5, 6]))],
                                           to: "jobs/j1/outputs.bin", paths: paths)
        XCTAssertEqual(report.file, "jobs/j1/outputs.bin")
        XCTAssertEqual(report.tensors, [a, b])
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("jobs/j1/outputs.bin")), Data([1, 2, 3, 4, 5, 6]))
    }

    func testResultCarriesTheOutputs() throws {
        var result = BenchResult.failure(
            jobID: "j1", message: "x",
            device: DeviceReport(machine: "m", osVersion: "17.5", osBuild: nil, aneCores: nil),
            environment: EnvironmentReport(thermalTimeline: [], lowPower: false, batteryState: nil, cooldownWaitedS: nil),
            engine: "coreml", appVersion: "test")
        result.outputs = OutputsReport(file: "jobs/j1/outputs.bin",
                                       tensors: [TensorReport(name: "y", shape: [1, 4], dtype: "float32", bytes: 16)],
                                       error: nil)
        let back = try JSONDecoder().decode(BenchResult.self, from: JSONEncoder().encode(result))
        XCTAssertEqual(back.outputs?.tensors.first?.bytes, 16)
        XCTAssertEqual(OutputsReport.unavailable("no").error, "no")
    }

    private static func job(inputs: String, outputs: String = "") -> String {
        """
        {"schema": "iosbench.job/1", "job_id": "j1", "engine": "tflite",
         "model": {"path": "jobs/j1/model.tflite", "format": "tflite", "sha256": "\(String(repeating: "a", count: 64))"},
         "tflite": {"delegate": "cpu", "num_threads": 1, "op_profile": false},
         "inputs": \(inputs)\(outputs),
         "run": {"warmup": 1, "iterations": 2, "cold_load_repeats": 1, "timeout_s": 60},
         "preconditions": {"max_thermal_start": "nominal", "forbid_low_power": true, "cooldown_wait_s": 0}}
        """
    }
}
