import CoreML
import Foundation
import RunnerCore

/// Core ML measurements: on-device compile, cold and warm loads, first prediction, warm-ups,
/// per-prediction latency samples, and (iOS 17.4+) the anticipated compute plan. With fixed inputs
/// (`inputs.kind == files`) every prediction uses them; with an output request the outputs of the
/// last timed prediction go to one file as float32, for quantlab to compare on the host.
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

        // 3. Inputs, reused for every prediction: the pushed files, else seeded random or zeros.
        let files = try job.inputs.requireFiles()
        let inputs: MLFeatureProvider
        if files.isEmpty {
            var factory = InputFactory(seed: job.inputs.seed ?? 0, zeros: job.inputs.kind == "zeros")
            inputs = try factory.features(for: model.modelDescription)
        } else {
            inputs = try FileInputs.features(files, for: model.modelDescription, paths: paths,
                                             sample: 0, of: job.outputs?.samples ?? 1)
        }
        let options = MLPredictionOptions()

        // 4. First prediction, warm-ups (discarded from latency), timed predictions.
        progress("predicting")
        let (_, firstMs) = try Clock.time { try model.prediction(from: inputs, options: options) }
        timing.firstPrediction = firstMs
        timing.warmup = try Clock.samples(job.run.warmup) { _ = try model.prediction(from: inputs, options: options) }
        telemetry.record()
        let energyStart = telemetry.taskEnergyNanojoules()
        var last: MLFeatureProvider?
        timing.latency = try Clock.samples(job.run.iterations) {
            last = try model.prediction(from: inputs, options: options)
        }
        let energyEnd = telemetry.taskEnergyNanojoules()
        _ = telemetry.physFootprint()
        telemetry.record()
        var outputs: OutputsReport?
        if let request = job.outputs, let samples = request.samples {
            progress("running \(samples) samples")
            outputs = OutputWriter.runBatch(model, files: files, samples: samples, options: options,
                                            to: request.file, paths: paths)
        } else if let request = job.outputs {
            progress("writing outputs")
            outputs = OutputWriter.write(last, description: model.modelDescription, to: request.file, paths: paths)
        }

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
        result.outputs = outputs

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

/// Fixed inputs from the raw tensor files quantlab pushed: each file fills the multi-array input of
/// its name, converted from the file's type (float32, float16, int32, ...) to the input's data type.
enum FileInputs {
    static func features(_ files: [InputFile], for description: MLModelDescription,
                         paths: RunnerPaths, sample: Int = 0, of samples: Int = 1) throws -> MLFeatureProvider {
        let wanted = description.inputDescriptionsByName
        guard files.count == wanted.count else {
            throw RunnerError.badJob("\(files.count) input files for \(wanted.count) model inputs")
        }
        var values: [String: MLFeatureValue] = [:]
        for file in files {
            guard let feature = wanted[file.name] else {
                let names = wanted.keys.sorted().joined(separator: ", ")
                throw RunnerError.badJob("input file for \(file.name), but the model's inputs are \(names)")
            }
            guard feature.type == .multiArray, let constraint = feature.multiArrayConstraint else {
                throw RunnerError.engine("input \(file.name) is not a multi-array; only tensor inputs take files")
            }
            let data = try TensorFiles.read(file, paths: paths, sample: sample, of: samples)
            let array = try MLMultiArray(shape: file.shape.map { NSNumber(value: $0) }, dataType: constraint.dataType)
            guard array.count == file.shape.reduce(1, *) else {
                throw RunnerError.badJob("input \(file.name): shape \(file.shape) does not fill the array")
            }
            try fill(array, from: data, dtype: file.dtype, name: file.name)
            values[file.name] = MLFeatureValue(multiArray: array)
        }
        return try MLDictionaryFeatureProvider(dictionary: values)
    }

    /// A fresh MLMultiArray is contiguous, so the linear subscript walks it in row-major order.
    private static func fill(_ array: MLMultiArray, from data: Data, dtype: String, name: String) throws {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            switch dtype {
            case "float32":
                let src = raw.bindMemory(to: Float.self)
                for i in 0..<array.count { array[i] = NSNumber(value: src[i]) }
            #if arch(arm64)
            case "float16":  // Swift's Float16 exists on arm64 only (phones, Apple-silicon simulators)
                let src = raw.bindMemory(to: Float16.self)
                for i in 0..<array.count { array[i] = NSNumber(value: Float(src[i])) }
            #endif
            case "float64":
                let src = raw.bindMemory(to: Double.self)
                for i in 0..<array.count { array[i] = NSNumber(value: src[i]) }
            case "int32":
                let src = raw.bindMemory(to: Int32.self)
                for i in 0..<array.count { array[i] = NSNumber(value: src[i]) }
            default:
                throw RunnerError.badJob("input \(name): Core ML inputs take float32, float16, float64 or int32 files, not \(dtype)")
            }
        }
    }
}

/// The outputs of the last timed prediction as float32, in output-name order, to one file.
enum OutputWriter {
    static func write(_ provider: MLFeatureProvider?, description: MLModelDescription, to file: String,
                      paths: RunnerPaths) -> OutputsReport {
        guard let provider else { return OutputsReport.unavailable("no timed prediction ran") }
        do {
            return try TensorFiles.write(tensors(of: provider, description: description), to: file, paths: paths)
        } catch {
            return OutputsReport.unavailable("could not write the outputs: \(error)")
        }
    }

    /// Every output of one prediction as float32, in output-name order.
    static func tensors(of provider: MLFeatureProvider, description: MLModelDescription) throws
        -> [(report: TensorReport, data: Data)] {
        var tensors: [(report: TensorReport, data: Data)] = []
        for name in description.outputDescriptionsByName.keys.sorted() {
            guard let array = provider.featureValue(for: name)?.multiArrayValue else {
                throw RunnerError.engine("output \(name) is not a multi-array; only tensor outputs are written")
            }
            // converting reads through the array's strides (Core ML outputs may be padded)
            let floats = MLShapedArray<Float>(converting: array).scalars
            let data = floats.withUnsafeBytes { Data($0) }
            let report = TensorReport(name: name, shape: array.shape.map { $0.intValue }, dtype: "float32",
                                      bytes: data.count)
            tensors.append((report: report, data: data))
        }
        return tensors
    }

    /// A batch job: one prediction per sample of the input files, every sample's outputs written
    /// sample after sample. A failure is reported in `outputs.error`.
    static func runBatch(_ model: MLModel, files: [InputFile], samples: Int, options: MLPredictionOptions,
                         to file: String, paths: RunnerPaths) -> OutputsReport {
        do {
            var all: [[(report: TensorReport, data: Data)]] = []
            for sample in 0..<samples {
                let inputs = try FileInputs.features(files, for: model.modelDescription, paths: paths,
                                                     sample: sample, of: samples)
                let provider = try model.prediction(from: inputs, options: options)
                all.append(try tensors(of: provider, description: model.modelDescription))
            }
            return try TensorFiles.writeBatch(all, to: file, paths: paths)
        } catch {
            return OutputsReport.unavailable("could not run the samples: \(error)")
        }
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
