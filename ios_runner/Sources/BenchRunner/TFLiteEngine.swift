import Foundation
import RunnerCore
#if canImport(TensorFlowLite)
import TensorFlowLite
#endif

/// TFLite measurements through TensorFlowLiteSwift (CocoaPods, subspecs CoreML + Metal):
/// cold/warm interpreter creation, first inference, warm-ups, per-inference samples. With fixed
/// inputs (`inputs.kind == files`) every run uses them; with an output request the output tensors
/// of the last timed run go to one file, raw, for quantlab to compare on the host.
///
/// Per-op times: the Swift Interpreter does not expose `TfLiteInterpreterOptions`, so the C
/// telemetry profiler (`TfLiteInterpreterOptionsSetTelemetryProfiler`) cannot be attached from
/// here; when a job asks for `op_profile`, the result says so in `engine_detail` and carries no
/// `tflite_op_profile` rather than an invented one.
struct TFLiteEngine {
    let job: JobSpec
    let spec: TFLiteSpec
    let paths: RunnerPaths
    let telemetry: Telemetry

    func run(progress: (String) -> Void) throws -> BenchResult {
        #if canImport(TensorFlowLite)
        let modelPath = try paths.resolve(job.model.path).path
        var timing = Timing()
        let footprintBefore = telemetry.physFootprint()
        progress("loading")
        var created: Interpreter?
        for _ in 0..<max(job.run.coldLoadRepeats, 1) {
            let (made, ms) = try Clock.time { try makeInterpreter(modelPath: modelPath) }
            if timing.loadCold.isEmpty { timing.loadCold.append(ms) } else { timing.loadWarm.append(ms) }
            created = made
        }
        guard let interpreter = created else { throw RunnerError.engine("interpreter was not created") }
        let footprintAfter = telemetry.physFootprint()

        progress("setting inputs")
        try setInputs(interpreter)

        progress("invoking")
        let (_, firstMs) = try Clock.time { try interpreter.invoke() }
        timing.firstPrediction = firstMs
        timing.warmup = try Clock.samples(job.run.warmup) { try interpreter.invoke() }
        telemetry.record()
        let energyStart = telemetry.taskEnergyNanojoules()
        timing.latency = try Clock.samples(job.run.iterations) { try interpreter.invoke() }
        let energyEnd = telemetry.taskEnergyNanojoules()
        _ = telemetry.physFootprint()
        var outputs: OutputsReport?
        if let request = job.outputs, let samples = request.samples {
            progress("running \(samples) samples")
            outputs = runBatch(interpreter, samples: samples, to: request.file)
        } else if let request = job.outputs {
            progress("writing outputs")
            outputs = writeOutputs(interpreter, to: request.file)
        }

        var detail = "delegate=\(spec.delegate) threads=\(spec.numThreads)"
        if spec.opProfile {
            detail += "; op profile unavailable: TensorFlowLiteSwift does not expose the C telemetry profiler"
        }
        var result = BenchResult(
            jobID: job.jobID, status: "ok", error: nil, device: Telemetry.deviceReport(),
            environment: telemetry.environment(cooldownWaitedS: nil), timingMs: timing,
            runner: RunnerReport(appVersion: Telemetry.appVersion, engine: "tflite", engineDetail: detail))
        result.memory = MemoryReport(before: footprintBefore, after: footprintAfter,
                                     peak: telemetry.peakFootprint, available: telemetry.availableMemory())
        if let start = energyStart, let end = energyEnd, end >= start, job.run.iterations > 0 {
            result.energy = EnergyReport(taskEnergyNjDelta: end - start, predictions: job.run.iterations,
                                         label: Telemetry.energyLabel)
        }
        result.outputs = outputs
        return result
        #else
        throw RunnerError.engine("this build has no TensorFlowLite; run `pod install` (see ios_runner/README.md)")
        #endif
    }

    #if canImport(TensorFlowLite)
    /// numpy's name for a tensor type (the case name: `float32`, `int8`, `uInt8` → `uint8`, ...).
    static func dtypeName(_ type: Tensor.DataType) -> String {
        let name = String(describing: type)
        return name == "uInt8" ? "uint8" : name.lowercased()
    }

    /// The job's inputs into the input tensors, kept for every run: the pushed files (`files`, by
    /// position; a file whose shape differs from the tensor's resizes it), else seeded random bytes
    /// or zeros.
    private func setInputs(_ interpreter: Interpreter) throws {
        let files = try job.inputs.requireFiles()
        if !files.isEmpty {
            guard files.count == interpreter.inputTensorCount else {
                throw RunnerError.badJob("\(files.count) input files for \(interpreter.inputTensorCount) model inputs")
            }
            var resized = false
            for (index, file) in files.enumerated() {
                let tensor = try interpreter.input(at: index)
                let dtype = TFLiteEngine.dtypeName(tensor.dataType)
                guard dtype == file.dtype else {
                    throw RunnerError.badJob("input \(index) (\(tensor.name)) is \(dtype); its file \(file.file) is \(file.dtype)")
                }
                if tensor.shape.dimensions != file.shape {
                    try interpreter.resizeInput(at: index, to: Tensor.Shape(file.shape))
                    resized = true
                }
            }
            if resized { try interpreter.allocateTensors() }
            let samples = job.outputs?.samples ?? 1  // a batch job's timed runs use its first sample
            for (index, file) in files.enumerated() {
                try interpreter.copy(TensorFiles.read(file, paths: paths, sample: 0, of: samples), toInputAt: index)
            }
            return
        }
        var rng = SplitMix64(seed: job.inputs.seed ?? 0)
        for index in 0..<interpreter.inputTensorCount {
            let tensor = try interpreter.input(at: index)
            let count = tensor.data.count
            var bytes = [UInt8](repeating: 0, count: count)
            if job.inputs.kind != "zeros" {
                if tensor.dataType == .float32 {
                    let floats = (0..<(count / 4)).map { _ in Float(rng.nextUnitSigned()) }
                    bytes = floats.withUnsafeBytes { Array($0) }
                } else {
                    bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                }
            }
            try interpreter.copy(Data(bytes), toInputAt: index)
        }
    }

    /// Every output tensor of the last run, raw, in the interpreter's output order. A failure is
    /// reported in the result (`outputs.error`) and leaves the timings standing.
    private func writeOutputs(_ interpreter: Interpreter, to file: String) -> OutputsReport {
        do {
            return try TensorFiles.write(outputTensors(interpreter), to: file, paths: paths)
        } catch {
            return OutputsReport.unavailable("could not write the outputs: \(error)")
        }
    }

    private func outputTensors(_ interpreter: Interpreter) throws -> [(report: TensorReport, data: Data)] {
        var tensors: [(report: TensorReport, data: Data)] = []
        for index in 0..<interpreter.outputTensorCount {
            let tensor = try interpreter.output(at: index)
            let report = TensorReport(name: tensor.name, shape: tensor.shape.dimensions,
                                      dtype: TFLiteEngine.dtypeName(tensor.dataType), bytes: tensor.data.count)
            tensors.append((report: report, data: tensor.data))
        }
        return tensors
    }

    /// A batch job: one invoke per sample of the input files, every sample's outputs kept, written
    /// to one file sample after sample. A failure is reported in `outputs.error`.
    private func runBatch(_ interpreter: Interpreter, samples: Int, to file: String) -> OutputsReport {
        do {
            let files = try job.inputs.requireFiles()
            var all: [[(report: TensorReport, data: Data)]] = []
            for sample in 0..<samples {
                for (index, input) in files.enumerated() {
                    try interpreter.copy(TensorFiles.read(input, paths: paths, sample: sample, of: samples),
                                         toInputAt: index)
                }
                try interpreter.invoke()
                all.append(try outputTensors(interpreter))
            }
            return try TensorFiles.writeBatch(all, to: file, paths: paths)
        } catch {
            return OutputsReport.unavailable("could not run the samples: \(error)")
        }
    }

    private func makeInterpreter(modelPath: String) throws -> Interpreter {
        var options = Interpreter.Options()
        options.threadCount = spec.numThreads
        var delegates: [Delegate] = []
        switch spec.delegate {
        case "cpu":
            break
        case "metal":
            var metal = MetalDelegate.Options()
            metal.isPrecisionLossAllowed = spec.metal?.precisionLoss ?? false
            switch spec.metal?.waitType ?? "passive" {
            case "active": metal.waitType = .active
            case "aggressive": metal.waitType = .aggressive
            default: metal.waitType = .passive
            }
            delegates.append(MetalDelegate(options: metal))
        case "coreml":
            var coreml = CoreMLDelegate.Options()
            coreml.enabledDevices = spec.coreml?.enabledDevices == "all" ? .all : .neuralEngine
            coreml.minNodesPerPartition = spec.coreml?.minNodesPerPartition ?? 2
            guard let delegate = CoreMLDelegate(options: coreml) else {
                throw RunnerError.engine("the TFLite Core ML delegate is unavailable on this device (no Neural Engine)")
            }
            delegates.append(delegate)
        default:
            throw RunnerError.badJob("unknown TFLite delegate \(spec.delegate)")
        }
        let interpreter = try Interpreter(modelPath: modelPath, options: options, delegates: delegates)
        try interpreter.allocateTensors()
        return interpreter
    }
    #endif
}
