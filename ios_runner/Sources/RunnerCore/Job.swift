import Foundation

/// A job as quantlab writes it to `Documents/jobs/<id>/job.json` (schema `iosbench.job/1`).
/// Property names follow `ios_runner/schema/job.schema.json`; a Python test checks the CodingKeys.
public struct JobSpec: Codable, Equatable {
    public static let schemaName = "iosbench.job/1"

    public var schema: String
    public var jobID: String
    public var engine: Engine
    public var model: ModelSpec
    public var coreml: CoreMLSpec?
    public var tflite: TFLiteSpec?
    public var inputs: InputSpec
    /// Where to write the output tensors after the last timed run; nil: not asked.
    public var outputs: OutputSpec?
    public var run: RunSpec
    public var preconditions: Preconditions

    public enum Engine: String, Codable {
        case coreml
        case tflite
    }

    enum CodingKeys: String, CodingKey {
        case schema
        case jobID = "job_id"
        case engine
        case model
        case coreml
        case tflite
        case inputs
        case outputs
        case run
        case preconditions
    }

    /// Decode and check the schema tag; throws `RunnerError.badJob` otherwise.
    public static func decode(from data: Data) throws -> JobSpec {
        let job = try JSONDecoder().decode(JobSpec.self, from: data)
        guard job.schema == schemaName else {
            throw RunnerError.badJob("unknown job schema \(job.schema), expected \(schemaName)")
        }
        return job
    }
}

public struct ModelSpec: Codable, Equatable {
    /// Relative to the app's Documents folder.
    public var path: String
    public var format: String
    public var sha256: String

    enum CodingKeys: String, CodingKey {
        case path
        case format
        case sha256
    }
}

public struct CoreMLSpec: Codable, Equatable {
    /// `cpuOnly`, `cpuAndGPU`, `cpuAndNeuralEngine` or `all`.
    public var computeUnits: String
    public var compileOnDevice: Bool
    public var computePlan: Bool
    public var mode: String

    enum CodingKeys: String, CodingKey {
        case computeUnits = "compute_units"
        case compileOnDevice = "compile_on_device"
        case computePlan = "compute_plan"
        case mode
    }
}

public struct TFLiteSpec: Codable, Equatable {
    /// `cpu`, `metal` or `coreml`.
    public var delegate: String
    public var numThreads: Int
    public var metal: MetalOptions?
    public var coreml: CoreMLDelegateOptions?
    public var opProfile: Bool

    enum CodingKeys: String, CodingKey {
        case delegate
        case numThreads = "num_threads"
        case metal
        case coreml
        case opProfile = "op_profile"
    }
}

public struct MetalOptions: Codable, Equatable {
    public var precisionLoss: Bool?
    public var waitType: String?

    enum CodingKeys: String, CodingKey {
        case precisionLoss = "precision_loss"
        case waitType = "wait_type"
    }
}

public struct CoreMLDelegateOptions: Codable, Equatable {
    public var enabledDevices: String?
    public var minNodesPerPartition: Int?

    enum CodingKeys: String, CodingKey {
        case enabledDevices = "enabled_devices"
        case minNodesPerPartition = "min_nodes_per_partition"
    }
}

public struct InputSpec: Codable, Equatable {
    /// `random`, `zeros` or `files`.
    public var kind: String
    /// Seed of `random` inputs (absent for `files`).
    public var seed: UInt64?
    /// `files`: one raw tensor file per model input, pushed beside the model.
    public var files: [InputFile]?

    enum CodingKeys: String, CodingKey {
        case kind
        case seed
        case files
    }

    /// The input files of a `files` job; throws `RunnerError.badJob` when there are none.
    public func requireFiles() throws -> [InputFile] {
        guard kind == "files" else { return [] }
        guard let files, !files.isEmpty else {
            throw RunnerError.badJob("inputs of kind files without files")
        }
        return files
    }
}

/// One fixed input: the raw bytes of one tensor (row-major, little-endian), as quantlab made them.
public struct InputFile: Codable, Equatable {
    /// The model's input name (Core ML matches by it; TFLite goes by position).
    public var name: String
    /// Relative to the app's Documents folder.
    public var file: String
    public var shape: [Int]
    /// numpy dtype name: `float32`, `float16`, `int8`, `uint8`, `int32`, ...
    public var dtype: String

    enum CodingKeys: String, CodingKey {
        case name
        case file
        case shape
        case dtype
    }

    public init(name: String, file: String, shape: [Int], dtype: String) {
        self.name = name
        self.file = file
        self.shape = shape
        self.dtype = dtype
    }
}

/// The output request: every output tensor's raw bytes, one after the other, to `file`. With
/// `samples` (a batch job: quantlab evaluate --device), each input file holds that many samples one
/// after the other; after the timed runs the app runs one prediction per sample and writes every
/// sample's outputs, sample after sample.
public struct OutputSpec: Codable, Equatable {
    /// Relative to the app's Documents folder.
    public var file: String
    public var samples: Int?

    enum CodingKeys: String, CodingKey {
        case file
        case samples
    }
}

public struct RunSpec: Codable, Equatable {
    public var warmup: Int
    public var iterations: Int
    public var coldLoadRepeats: Int
    public var timeoutS: Double

    enum CodingKeys: String, CodingKey {
        case warmup
        case iterations
        case coldLoadRepeats = "cold_load_repeats"
        case timeoutS = "timeout_s"
    }
}

public struct Preconditions: Codable, Equatable {
    public var maxThermalStart: String
    public var forbidLowPower: Bool
    public var cooldownWaitS: Double

    enum CodingKeys: String, CodingKey {
        case maxThermalStart = "max_thermal_start"
        case forbidLowPower = "forbid_low_power"
        case cooldownWaitS = "cooldown_wait_s"
    }
}

/// Errors the runner reports in a `failed` result.
public enum RunnerError: Error, CustomStringConvertible {
    case badJob(String)
    case precondition(String)
    case engine(String)
    case timeout(String)

    public var description: String {
        switch self {
        case .badJob(let text): return "bad job: \(text)"
        case .precondition(let text): return "precondition not met: \(text)"
        case .engine(let text): return "engine error: \(text)"
        case .timeout(let text): return "timeout: \(text)"
        }
    }
}
