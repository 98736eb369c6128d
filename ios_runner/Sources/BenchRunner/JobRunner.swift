import Foundation
import RunnerCore

/// Reads `Documents/jobs/<id>/job.json`, enforces the preconditions, runs the engine, and writes
/// `Documents/results/<id>.json` (temp + rename) followed by `<id>.done`, with a heartbeat in
/// `Documents/status.json`. Every failure still produces a result with `status: failed`.
@MainActor
final class JobRunner: ObservableObject {
    @Published var phase: String = "idle"
    @Published var lastJob: String?

    let paths: RunnerPaths

    init(paths: RunnerPaths = .standard()) {
        self.paths = paths
    }

    /// The job named by `-jobPath jobs/<id>/job.json` in the launch arguments, if any.
    static func jobPathArgument(_ arguments: [String] = CommandLine.arguments) -> String? {
        guard let flag = arguments.firstIndex(of: "-jobPath"), flag + 1 < arguments.count else { return nil }
        return arguments[flag + 1]
    }

    func runFromLaunchArguments() async {
        guard let jobPath = JobRunner.jobPathArgument() else {
            paths.writeStatus(state: "idle", jobID: nil, phase: nil)
            return
        }
        await run(jobPath: jobPath)
    }

    func run(jobPath: String) async {
        Telemetry.keepAwake(true)
        defer { Telemetry.keepAwake(false) }
        let telemetry = Telemetry()
        var jobID = URL(fileURLWithPath: jobPath).deletingLastPathComponent().lastPathComponent
        var engine = "coreml"
        let result: BenchResult
        do {
            let job = try JobSpec.decode(from: Data(contentsOf: paths.resolve(jobPath)))
            jobID = job.jobID
            engine = job.engine.rawValue
            lastJob = jobID
            report("checking preconditions", jobID)
            try telemetry.checkLowPower(forbid: job.preconditions.forbidLowPower)
            let waited = try await telemetry.waitForThermal(maxState: job.preconditions.maxThermalStart,
                                                            waitS: job.preconditions.cooldownWaitS)
            var measured = try await measure(job: job, telemetry: telemetry)
            measured.environment.cooldownWaitedS = waited
            result = measured
        } catch {
            result = BenchResult.failure(jobID: jobID, message: String(describing: error),
                                         device: Telemetry.deviceReport(),
                                         environment: telemetry.environment(cooldownWaitedS: nil),
                                         engine: engine, appVersion: Telemetry.appVersion)
        }
        do {
            try paths.writeResult(result)
            report("done", jobID)
        } catch {
            report("could not write result: \(error)", jobID)
        }
        paths.writeStatus(state: "idle", jobID: jobID, phase: "done")
    }

    private func measure(job: JobSpec, telemetry: Telemetry) async throws -> BenchResult {
        let progress: (String) -> Void = { [weak self] phase in
            Task { @MainActor in self?.report(phase, job.jobID) }
        }
        switch job.engine {
        case .coreml:
            guard let spec = job.coreml else { throw RunnerError.badJob("engine coreml without a coreml section") }
            return try await CoreMLEngine(job: job, spec: spec, paths: paths, telemetry: telemetry).run(progress: progress)
        case .tflite:
            guard let spec = job.tflite else { throw RunnerError.badJob("engine tflite without a tflite section") }
            return try TFLiteEngine(job: job, spec: spec, paths: paths, telemetry: telemetry).run(progress: progress)
        case .executorch:
            guard let spec = job.executorch else { throw RunnerError.badJob("engine executorch without an executorch section") }
            return try ExecuTorchEngine(job: job, spec: spec, paths: paths, telemetry: telemetry).run(progress: progress)
        }
    }

    private func report(_ phase: String, _ jobID: String) {
        self.phase = phase
        paths.writeStatus(state: "running", jobID: jobID, phase: phase)
    }
}
