import Foundation
import RunnerCore
#if canImport(ExecuTorch)
import ExecuTorch
#endif

/// ExecuTorch measurements through ExecuTorch's Apple `Module` (SwiftPM package `executorch`, with
/// `backend_xnnpack` and `kernels_optimized` linked: see project.yml): a `.pte` loaded cold (a new
/// Module, `load("forward")`) and warm, first inference, warm-ups, per-inference samples, in the
/// same result shape as the TFLite and Core ML engines. With fixed inputs (`inputs.kind == files`)
/// every run uses them, by position; with an output request the outputs of the last timed run go to
/// one file, raw.
///
/// Per-op times: the Apple Module passes no event tracer to the runtime (`ExecuTorchModule.mm`
/// loads methods with `event_tracer = nullptr`), so there is no ETDump to write; a job that asks
/// for `op_profile` says so in `engine_detail` rather than carrying an invented profile. Threads:
/// the Module exposes no thread count; XNNPACK uses ExecuTorch's threadpool default.
struct ExecuTorchEngine {
    /// The ExecuTorch release the app links (project.yml's SwiftPM branch), reported in every result.
    static let version = "1.4.1"

    let job: JobSpec
    let spec: ExecuTorchSpec
    let paths: RunnerPaths
    let telemetry: Telemetry

    func run(progress: (String) -> Void) throws -> BenchResult {
        #if canImport(ExecuTorch)
        let modelPath = try paths.resolve(job.model.path).path
        var timing = Timing()
        let footprintBefore = telemetry.physFootprint()
        progress("loading")
        var loaded: Module?
        for _ in 0..<max(job.run.coldLoadRepeats, 1) {
            let (made, ms) = try Clock.time { () throws -> Module in
                let module = Module(filePath: modelPath)
                try module.load("forward")
                return module
            }
            if timing.loadCold.isEmpty { timing.loadCold.append(ms) } else { timing.loadWarm.append(ms) }
            loaded = made
        }
        guard let module = loaded else { throw RunnerError.engine("the ExecuTorch module was not loaded") }
        let footprintAfter = telemetry.physFootprint()

        progress("setting inputs")
        let samples = job.outputs?.samples ?? 1
        let inputs = try makeInputs(module, sample: 0, of: samples)

        progress("running")
        var outputs: [Value] = []
        let (_, firstMs) = try Clock.time { outputs = try module.forward(inputs) }
        timing.firstPrediction = firstMs
        timing.warmup = try Clock.samples(job.run.warmup) { outputs = try module.forward(inputs) }
        telemetry.record()
        let energyStart = telemetry.taskEnergyNanojoules()
        timing.latency = try Clock.samples(job.run.iterations) { outputs = try module.forward(inputs) }
        let energyEnd = telemetry.taskEnergyNanojoules()
        _ = telemetry.physFootprint()
        var report: OutputsReport?
        if let request = job.outputs, let count = request.samples {
            progress("running \(count) samples")
            report = runBatch(module, samples: count, to: request.file)
        } else if let request = job.outputs {
            progress("writing outputs")
            do {
                report = try TensorFiles.write(outputTensors(outputs), to: request.file, paths: paths)
            } catch {
                report = OutputsReport.unavailable("could not write the outputs: \(error)")
            }
        }

        var detail = "backend=\(spec.backend) (ExecuTorch Module, threadpool default)"
        if spec.opProfile {
            detail += "; op profile unavailable: ExecuTorch's Apple Module passes no event tracer, so no ETDump"
        }
        var result = BenchResult(
            jobID: job.jobID, status: "ok", error: nil, device: Telemetry.deviceReport(),
            environment: telemetry.environment(cooldownWaitedS: nil), timingMs: timing,
            runner: RunnerReport(appVersion: Telemetry.appVersion, engine: "executorch", engineDetail: detail,
                                 engineVersion: ExecuTorchEngine.version))
        result.memory = MemoryReport(before: footprintBefore, after: footprintAfter,
                                     peak: telemetry.peakFootprint, available: telemetry.availableMemory())
        if let start = energyStart, let end = energyEnd, end >= start, job.run.iterations > 0 {
            result.energy = EnergyReport(taskEnergyNjDelta: end - start, predictions: job.run.iterations,
                                         label: Telemetry.energyLabel)
        }
        result.outputs = report
        return result
        #else
        throw RunnerError.engine("this build has no ExecuTorch; add its SwiftPM package (see ios_runner/README.md)")
        #endif
    }

    #if canImport(ExecuTorch)
    /// numpy's name for an ExecuTorch data type; nil for one the runner does not handle.
    static func dtypeName(_ type: DataType) -> String? {
        switch type {
        case .float: return "float32"
        case .half: return "float16"
        case .double: return "float64"
        case .char: return "int8"
        case .byte: return "uint8"
        case .short: return "int16"
        case .int: return "int32"
        case .long: return "int64"
        case .bool: return "bool"
        default: return nil
        }
    }

    /// The program's inputs, by position: the pushed files (`files`; sample `sample` of a batch
    /// file), else seeded random values (floats in [-1, 1), other types random bytes) or zeros.
    private func makeInputs(_ module: Module, sample: Int, of samples: Int) throws -> [AnyTensor] {
        let meta = try module.methodMetadata("forward")
        let files = try job.inputs.requireFiles()
        if !files.isEmpty && files.count != meta.inputTensorMetadata.count {
            throw RunnerError.badJob("\(files.count) input files for \(meta.inputTensorMetadata.count) program inputs")
        }
        var rng = SplitMix64(seed: job.inputs.seed ?? 0)
        var tensors: [AnyTensor] = []
        for index in 0..<meta.inputTensorMetadata.count {
            guard let tensor = meta.inputTensorMetadata[index] else {
                throw RunnerError.badJob("program input \(index) is not a tensor")
            }
            guard let dtype = ExecuTorchEngine.dtypeName(tensor.dataType) else {
                throw RunnerError.badJob("program input \(index) has a data type the runner does not handle")
            }
            let count = tensor.shape.reduce(1, *) * (TensorFiles.elementSize(dtype) ?? 1)
            var data: Data
            if !files.isEmpty {
                guard files[index].dtype == dtype else {
                    throw RunnerError.badJob("input \(index) is \(dtype); its file \(files[index].file) is \(files[index].dtype)")
                }
                data = try TensorFiles.read(files[index], paths: paths, sample: sample, of: samples)
            } else if job.inputs.kind == "zeros" {
                data = Data(count: count)
            } else if dtype == "float32" {
                let floats = (0..<(count / 4)).map { _ in Float(rng.nextUnitSigned()) }
                data = floats.withUnsafeBytes { Data($0) }
            } else {
                data = Data((0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            }
            tensors.append(AnyTensor(data: data, shape: tensor.shape, dataType: tensor.dataType))
        }
        return tensors
    }

    /// Every tensor output, raw, in the program's output order.
    private func outputTensors(_ outputs: [Value]) throws -> [(report: TensorReport, data: Data)] {
        var tensors: [(report: TensorReport, data: Data)] = []
        for (index, value) in outputs.enumerated() {
            guard let tensor = value.anyTensor else { continue }
            var data = Data()
            tensor.bytes { pointer, count, type in
                data = Data(bytes: pointer, count: count * size(ofDataType: type))
            }
            let dtype = ExecuTorchEngine.dtypeName(tensor.dataType) ?? "unknown"
            tensors.append((report: TensorReport(name: "output_\(index)", shape: tensor.shape,
                                                 dtype: dtype, bytes: data.count), data: data))
        }
        return tensors
    }

    /// A batch job: one forward per sample of the input files, every sample's outputs kept.
    private func runBatch(_ module: Module, samples: Int, to file: String) -> OutputsReport {
        do {
            var all: [[(report: TensorReport, data: Data)]] = []
            for sample in 0..<samples {
                all.append(try outputTensors(module.forward(makeInputs(module, sample: sample, of: samples))))
            }
            return try TensorFiles.writeBatch(all, to: file, paths: paths)
        } catch {
            return OutputsReport.unavailable("could not run the samples: \(error)")
        }
    }
    #endif
}
