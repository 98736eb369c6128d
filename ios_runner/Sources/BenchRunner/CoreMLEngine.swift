import CoreML
import Foundation
import RunnerCore

/// Core ML measurements: on-device compile, cold and warm loads, first prediction, warm-ups,
/// per-prediction latency samples, and (iOS 17.4+) the anticipated compute plan.
struct CoreMLEngine {
    let job: JobSpec
    let spec: CoreMLSpec
    let paths: RunnerPaths
    let telemetry: Telemetry

    static func computeUnits(_ name: String) throws -> MLComputeUnits {
        switch name {
        case "cpuOnly": return .cpuOnly
        case "cpuAndGPU": return .cpuAndGPU
        case "cpuAndNeuralEngine": return .cpuAndNeuralEngine
        case "all": return .all
        default: throw RunnerError.badJob("unknown compute units \(name)")
        }
    }

    /// Neural Engine core count from `MLModel.availableComputeDevices`, nil when there is none.
    static func neuralEngineCores() -> Int? {
        for device in MLModel.availableComputeDevices {
            if case .neuralEngine(let ane) = device {
                return ane.totalCoreCount
            }
        }
        return nil
    }

    func run(progress: (String) -> Void) async throws -> BenchResult {
        let modelURL = try paths.resolve(job.model.path)
        let config = MLModelConfiguration()
        config.computeUnits = try CoreMLEngine.computeUnits(spec.computeUnits)
        var timing = Timing()

        // 1. Compile on the device (an .mlpackage/.mlmodel becomes an .mlmodelc); timed on its own.
        let compiledURL: URL
        if spec.compileOnDevice || job.model.format != "mlmodelc" {
            progress("compiling")
            let (url, compileMs) = try await Clock.timeAsync { try await MLModel.compileModel(at: modelURL) }
            compiledURL = url
            timing.compile = compileMs
        } else {
            compiledURL = modelURL
        }
        defer {
            if compiledURL != modelURL { try? FileManager.default.removeItem(at: compiledURL) }
        }

        // 2. Loads: the first includes device specialization (seconds on the Neural Engine); then warm loads.
        let footprintBefore = telemetry.physFootprint()
        progress("loading")
        var loadedModel: MLModel?
        for _ in 0..<max(job.run.coldLoadRepeats, 1) {
            let (loaded, ms) = try await Clock.timeAsync {
                try await MLModel.load(contentsOf: compiledURL, configuration: config)
            }
            if timing.loadCold.isEmpty { timing.loadCold.append(ms) } else { timing.loadWarm.append(ms) }
            loadedModel = loaded
        }
        guard let model = loadedModel else { throw RunnerError.engine("model did not load") }
        let footprintAfter = telemetry.physFootprint()

        // 3. Inputs, reused for every prediction.
        var factory = InputFactory(seed: job.inputs.seed, zeros: job.inputs.kind == "zeros")
        let inputs = try factory.features(for: model.modelDescription)
        let options = MLPredictionOptions()

        // 4. First prediction, warm-ups (discarded from latency), timed predictions.
        progress("predicting")
        let (_, firstMs) = try Clock.time { try model.prediction(from: inputs, options: options) }
        timing.firstPrediction = firstMs
        timing.warmup = try Clock.samples(job.run.warmup) { _ = try model.prediction(from: inputs, options: options) }
        telemetry.record()
        let energyStart = telemetry.taskEnergyNanojoules()
        timing.latency = try Clock.samples(job.run.iterations) {
            _ = try model.prediction(from: inputs, options: options)
        }
        let energyEnd = telemetry.taskEnergyNanojoules()
        _ = telemetry.physFootprint()
        telemetry.record()

        var result = BenchResult(
            jobID: job.jobID, status: "ok", error: nil, device: Telemetry.deviceReport(),
            environment: telemetry.environment(cooldownWaitedS: nil), timingMs: timing,
            runner: RunnerReport(appVersion: Telemetry.appVersion, engine: "coreml",
                                 engineDetail: "computeUnits=\(spec.computeUnits)"))
        result.memory = MemoryReport(before: footprintBefore, after: footprintAfter,
                                     peak: telemetry.peakFootprint, available: telemetry.availableMemory())
        if let start = energyStart, let end = energyEnd, end >= start, job.run.iterations > 0 {
            result.energy = EnergyReport(taskEnergyNjDelta: end - start, predictions: job.run.iterations,
                                         label: Telemetry.energyLabel)
        }

        // 5. Anticipated placement per op (iOS 17.4+).
        if spec.computePlan {
            progress("compute plan")
            if #available(iOS 17.4, *) {
                result.computePlan = try await ComputePlanDump.load(compiledURL: compiledURL, configuration: config)
            }
        }
        return result
    }
}

/// Seeded inputs for every multi-array feature of a model (same seed → same inputs).
struct InputFactory {
    var rng: SplitMix64
    let zeros: Bool

    init(seed: UInt64, zeros: Bool) {
        rng = SplitMix64(seed: seed)
        self.zeros = zeros
    }

    mutating func features(for description: MLModelDescription) throws -> MLFeatureProvider {
        var values: [String: MLFeatureValue] = [:]
        for (name, feature) in description.inputDescriptionsByName.sorted(by: { $0.key < $1.key }) {
            guard feature.type == .multiArray, let constraint = feature.multiArrayConstraint else {
                throw RunnerError.engine("input \(name) is not a multi-array; only tensor inputs are supported")
            }
            let array = try MLMultiArray(shape: constraint.shape, dataType: constraint.dataType)
            for i in 0..<array.count {
                array[i] = NSNumber(value: zeros ? 0.0 : rng.nextUnitSigned())
            }
            values[name] = MLFeatureValue(multiArray: array)
        }
        return try MLDictionaryFeatureProvider(dictionary: values)
    }
}

/// Small deterministic generator (SplitMix64), so inputs do not depend on the OS's random source.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    mutating func nextUnitSigned() -> Double {
        Double(next() >> 11) / Double(1 << 53) * 2.0 - 1.0
    }
}
