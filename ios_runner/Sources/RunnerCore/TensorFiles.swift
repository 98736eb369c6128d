import Foundation

/// Raw tensor files: the fixed inputs quantlab pushes beside the model, and the one outputs file
/// it pulls back (every output tensor's bytes, one after the other). quantlab splits, dequantizes
/// and compares them on the host; nothing here interprets the values.
public enum TensorFiles {
    /// Bytes per element of a numpy dtype name; nil for a type the runner does not handle.
    public static func elementSize(_ dtype: String) -> Int? {
        switch dtype {
        case "float64", "int64": return 8
        case "float32", "int32": return 4
        case "float16", "int16": return 2
        case "int8", "uint8", "bool": return 1
        default: return nil
        }
    }

    /// Bytes a tensor of `shape` and `dtype` takes; nil for an unknown dtype.
    public static func byteCount(shape: [Int], dtype: String) -> Int? {
        guard let size = elementSize(dtype) else { return nil }
        return shape.reduce(1, *) * size
    }

    /// The bytes of one input file, checked against its declared shape and dtype; of a batch
    /// file (`of` samples, one after the other), sample `sample`'s.
    public static func read(_ input: InputFile, paths: RunnerPaths, sample: Int = 0, of samples: Int = 1) throws -> Data {
        guard let want = byteCount(shape: input.shape, dtype: input.dtype) else {
            throw RunnerError.badJob("input \(input.name): unsupported dtype \(input.dtype)")
        }
        let url = try paths.resolve(input.file)
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw RunnerError.badJob("input \(input.name): cannot read \(input.file) (\(error.localizedDescription))")
        }
        guard data.count == want * samples else {
            throw RunnerError.badJob(
                "input \(input.name): \(input.file) has \(data.count) bytes; \(samples) sample(s) of shape \(input.shape) \(input.dtype) take \(want * samples)")
        }
        return samples == 1 ? data : data.subdata(in: (sample * want)..<((sample + 1) * want))
    }

    /// Write the tensors' bytes one after the other to `relative` (atomically) and describe them.
    public static func write(_ tensors: [(report: TensorReport, data: Data)], to relative: String,
                             paths: RunnerPaths) throws -> OutputsReport {
        try writeBatch([tensors], to: relative, paths: paths)
    }

    /// A batch job's outputs: each sample's tensors one after the other, sample after sample; the
    /// report describes one sample's tensors.
    public static func writeBatch(_ samples: [[(report: TensorReport, data: Data)]], to relative: String,
                                  paths: RunnerPaths) throws -> OutputsReport {
        let url = try paths.resolve(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        var blob = Data()
        for tensors in samples {
            for tensor in tensors {
                blob.append(tensor.data)
            }
        }
        try blob.write(to: url, options: [.atomic])
        return OutputsReport(file: relative, tensors: (samples.first ?? []).map { $0.report }, error: nil)
    }
}
