import Foundation

/// The result the app writes to `Documents/results/<id>.json` (schema `iosbench.result/1`).
/// Property names follow `ios_runner/schema/result.schema.json`; a Python test checks the CodingKeys.
public struct BenchResult: Codable {
    public static let schemaName = "iosbench.result/1"

    public var schema: String = BenchResult.schemaName
    public var jobID: String
    public var status: String
    public var error: String?
    public var device: DeviceReport
    public var environment: EnvironmentReport
    public var timingMs: Timing
    public var memory: MemoryReport?
    public var energy: EnergyReport?
    public var computePlan: ComputePlanReport?
    public var tfliteOpProfile: [OpProfileEntry]?
    /// Where the output tensors went, when the job asked for them.
    public var outputs: OutputsReport?
    /// A sustained job's windows (see `SustainedRun`).
    public var sustained: SustainedReport?
    public var runner: RunnerReport

    enum CodingKeys: String, CodingKey {
        case schema
        case jobID = "job_id"
        case status
        case error
        case device
        case environment
        case timingMs = "timing_ms"
        case memory
        case energy
        case computePlan = "compute_plan"
        case tfliteOpProfile = "tflite_op_profile"
        case outputs
        case sustained
        case runner
    }

    public init(jobID: String, status: String, error: String?, device: DeviceReport,
                environment: EnvironmentReport, timingMs: Timing, runner: RunnerReport) {
        self.jobID = jobID
        self.status = status
        self.error = error
        self.device = device
        self.environment = environment
        self.timingMs = timingMs
        self.runner = runner
    }

    /// A `failed` result carrying `message`, with whatever was measured before the failure.
    public static func failure(jobID: String, message: String, device: DeviceReport,
                               environment: EnvironmentReport, engine: String,
                               appVersion: String) -> BenchResult {
        BenchResult(jobID: jobID, status: "failed", error: message, device: device,
                    environment: environment, timingMs: Timing(),
                    runner: RunnerReport(appVersion: appVersion, engine: engine, engineDetail: nil))
    }
}

public struct DeviceReport: Codable {
    /// `hw.machine`, e.g. `iPhone15,2`.
    public var machine: String
    public var osVersion: String
    public var osBuild: String?
    public var aneCores: Int?

    enum CodingKeys: String, CodingKey {
        case machine
        case osVersion = "os_version"
        case osBuild = "os_build"
        case aneCores = "ane_cores"
    }

    public init(machine: String, osVersion: String, osBuild: String?, aneCores: Int?) {
        self.machine = machine
        self.osVersion = osVersion
        self.osBuild = osBuild
        self.aneCores = aneCores
    }
}

public struct ThermalSample: Codable {
    /// Seconds since the job started.
    public var tS: Double
    /// `nominal`, `fair`, `serious` or `critical`.
    public var state: String

    enum CodingKeys: String, CodingKey {
        case tS = "t_s"
        case state
    }

    public init(tS: Double, state: String) {
        self.tS = tS
        self.state = state
    }
}

public struct EnvironmentReport: Codable {
    public var thermalTimeline: [ThermalSample]
    public var lowPower: Bool
    public var batteryState: String?
    public var cooldownWaitedS: Double?

    enum CodingKeys: String, CodingKey {
        case thermalTimeline = "thermal_timeline"
        case lowPower = "low_power"
        case batteryState = "battery_state"
        case cooldownWaitedS = "cooldown_waited_s"
    }

    public init(thermalTimeline: [ThermalSample], lowPower: Bool, batteryState: String?, cooldownWaitedS: Double?) {
        self.thermalTimeline = thermalTimeline
        self.lowPower = lowPower
        self.batteryState = batteryState
        self.cooldownWaitedS = cooldownWaitedS
    }
}

/// Every duration in milliseconds; per-sample arrays, no statistics (the host computes those).
public struct Timing: Codable {
    public var compile: Double?
    public var loadCold: [Double] = []
    public var loadWarm: [Double] = []
    public var firstPrediction: Double?
    public var warmup: [Double] = []
    public var latency: [Double] = []

    enum CodingKeys: String, CodingKey {
        case compile
        case loadCold = "load_cold"
        case loadWarm = "load_warm"
        case firstPrediction = "first_prediction"
        case warmup
        case latency
    }

    public init() {}
}

/// `phys_footprint` from `task_vm_info`, in bytes.
public struct MemoryReport: Codable {
    public var physFootprintBeforeLoad: Int
    public var physFootprintAfterLoad: Int
    public var physFootprintPeak: Int
    public var osProcAvailable: Int?

    enum CodingKeys: String, CodingKey {
        case physFootprintBeforeLoad = "phys_footprint_before_load"
        case physFootprintAfterLoad = "phys_footprint_after_load"
        case physFootprintPeak = "phys_footprint_peak"
        case osProcAvailable = "os_proc_available"
    }

    public init(before: Int, after: Int, peak: Int, available: Int?) {
        physFootprintBeforeLoad = before
        physFootprintAfterLoad = after
        physFootprintPeak = peak
        osProcAvailable = available
    }
}

/// The kernel's estimate of energy billed to this process (task_info power info), over the timed predictions.
public struct EnergyReport: Codable {
    public var taskEnergyNjDelta: Double
    public var predictions: Int
    public var label: String

    enum CodingKeys: String, CodingKey {
        case taskEnergyNjDelta = "task_energy_nj_delta"
        case predictions
        case label
    }

    public init(taskEnergyNjDelta: Double, predictions: Int, label: String) {
        self.taskEnergyNjDelta = taskEnergyNjDelta
        self.predictions = predictions
        self.label = label
    }
}

/// MLComputePlan output: what Core ML anticipates, not what it measured.
public struct ComputePlanReport: Codable {
    public var label: String = "anticipated"
    public var ops: [PlanOp]

    enum CodingKeys: String, CodingKey {
        case label
        case ops
    }

    public init(ops: [PlanOp]) {
        self.ops = ops
    }
}

public struct PlanOp: Codable {
    public var function: String
    public var index: Int
    public var op: String
    /// `cpu`, `gpu`, `neuralEngine` or `unknown`.
    public var preferred: String
    public var supported: [String]
    public var costWeight: Double?

    enum CodingKeys: String, CodingKey {
        case function
        case index
        case op
        case preferred
        case supported
        case costWeight = "cost_weight"
    }

    public init(function: String, index: Int, op: String, preferred: String, supported: [String], costWeight: Double?) {
        self.function = function
        self.index = index
        self.op = op
        self.preferred = preferred
        self.supported = supported
        self.costWeight = costWeight
    }
}

public struct OpProfileEntry: Codable {
    public var index: Int
    public var opName: String
    public var subgraph: Int
    public var avgUs: Double
    public var count: Int

    enum CodingKeys: String, CodingKey {
        case index
        case opName = "op_name"
        case subgraph
        case avgUs = "avg_us"
        case count
    }

    public init(index: Int, opName: String, subgraph: Int, avgUs: Double, count: Int) {
        self.index = index
        self.opName = opName
        self.subgraph = subgraph
        self.avgUs = avgUs
        self.count = count
    }
}

/// The output tensors of the last timed run: their raw bytes, one after the other, in `tensors` order.
public struct OutputsReport: Codable {
    /// Relative to Documents; nil when no file was written.
    public var file: String?
    public var tensors: [TensorReport]
    /// Why no outputs were written (the timings stand).
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case file
        case tensors
        case error
    }

    public init(file: String?, tensors: [TensorReport], error: String?) {
        self.file = file
        self.tensors = tensors
        self.error = error
    }

    /// No outputs, and why.
    public static func unavailable(_ reason: String) -> OutputsReport {
        OutputsReport(file: nil, tensors: [], error: reason)
    }
}

public struct TensorReport: Codable, Equatable {
    public var name: String
    public var shape: [Int]
    /// numpy dtype name of the bytes written (Core ML outputs: always `float32`).
    public var dtype: String
    public var bytes: Int

    enum CodingKeys: String, CodingKey {
        case name
        case shape
        case dtype
        case bytes
    }

    public init(name: String, shape: [Int], dtype: String, bytes: Int) {
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.bytes = bytes
    }
}

public struct RunnerReport: Codable {
    public var appVersion: String
    public var engine: String
    public var engineDetail: String?
    /// The runtime's release the app was built with (ExecuTorch's SwiftPM package); nil: not known.
    public var engineVersion: String?

    enum CodingKeys: String, CodingKey {
        case appVersion = "app_version"
        case engine
        case engineDetail = "engine_detail"
        case engineVersion = "engine_version"
    }

    public init(appVersion: String, engine: String, engineDetail: String?, engineVersion: String? = nil) {
        self.appVersion = appVersion
        self.engine = engine
        self.engineDetail = engineDetail
        self.engineVersion = engineVersion
    }
}
