import CoreML
import Foundation
import RunnerCore

/// MLComputePlan → per-op preferred/supported device and estimated cost.
/// Everything here is what Core ML *anticipates*; it is not a measurement.
@available(iOS 17.4, *)
enum ComputePlanDump {
    static func load(compiledURL: URL, configuration: MLModelConfiguration) async throws -> ComputePlanReport {
        let plan = try await MLComputePlan.load(contentsOf: compiledURL, configuration: configuration)
        var ops: [PlanOp] = []
        switch plan.modelStructure {
        case .program(let program):
            for (name, function) in program.functions.sorted(by: { $0.key < $1.key }) {
                walk(block: function.block, function: name, plan: plan, into: &ops)
            }
        case .neuralNetwork(let network):
            for layer in network.layers {
                let usage = plan.deviceUsage(for: layer)
                ops.append(PlanOp(function: "main", index: ops.count, op: layer.type,
                                  preferred: usage.map { deviceName($0.preferred) } ?? "unknown",
                                  supported: usage.map { $0.supported.map(deviceName) } ?? [],
                                  costWeight: nil))
            }
        case .pipeline, .unsupported:
            break
        @unknown default:
            break
        }
        return ComputePlanReport(ops: ops)
    }

    /// Depth-first over a block, recursing into nested blocks (control flow).
    private static func walk(block: MLModelStructure.Program.Block, function: String,
                             plan: MLComputePlan, into ops: inout [PlanOp]) {
        for operation in block.operations {
            let usage = plan.deviceUsage(for: operation)
            let cost = plan.estimatedCost(of: operation)
            ops.append(PlanOp(function: function, index: ops.count, op: operation.operatorName,
                              preferred: usage.map { deviceName($0.preferred) } ?? "unknown",
                              supported: usage.map { $0.supported.map(deviceName) } ?? [],
                              costWeight: cost?.weight))
            for inner in operation.blocks {
                walk(block: inner, function: function, plan: plan, into: &ops)
            }
        }
    }

    static func deviceName(_ device: MLComputeDevice) -> String {
        switch device {
        case .cpu: return "cpu"
        case .gpu: return "gpu"
        case .neuralEngine: return "neuralEngine"
        @unknown default: return "unknown"
        }
    }
}
